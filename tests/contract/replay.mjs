// Contract replay: sends the examples of openapi/openapi.yaml to a running gateway and checks
// every answer against the document.
//
//   RYDES_URL=http://127.0.0.1:8080 RYDES_ADMIN_TOKEN=... node replay.mjs
//
// For every operation of `paths` (except HEAD/OPTIONS/TRACE) it sends one request per request
// body example (operations without a request body once), with the admin token unless the
// operation has `security: []`. Each answer must have a status the operation documents, a 2xx
// one (the examples are valid requests and the resources they need exist), a documented media
// type, a body that validates against that status's schema (JSON Schema 2020-12 with $refs
// resolved), documented headers whose values validate, `X-Request-Id` echoed, and no member
// that its schema does not describe (an undocumented field is reported like a wrong one).
// List operations with an `after` parameter are also paged once with `limit=1`; GETs and
// DELETEs of a resource are sent once naming none (a documented 404), and every operation
// that needs a token is sent once without one (a documented 401); both with problem bodies
// of their schemas.
//
// Where the values come from:
// - Path and query parameters: the parameter's example whose key is the request example's
//   name (so a parameter's `examples: {fifo: {value: orders.fifo}}` goes with the request
//   example `fifo`), else its first example; a required parameter without an example fails.
// - Names of queues and topics that do not exist on the server are prefixed with a run id
//   (ct<hex>-orders) and created first (FIFO when ending in `.fifo`), along with every queue
//   the messaging examples name (`queue`, `dead_letter_queue`, `recipients`, redrive `to`);
//   existing ones (prebooking-submission, ...) are used as they are.
// - Ids in paths: a resource made for the run, by the collection before `{id}` (`/rides/{id}`
//   takes a ride): GETs get settled ones made first (a ride, a fare, a prebooking whose task
//   succeeded, a finished RFQ, a token), other methods the latest one the replay created
//   (from a `Location` header). Receipts are made by sending and receiving a message.
//   Another parameter whose example equals a replaced one's example gets the same value.
// - Request bodies: timestamps are moved into the future (tomorrow, two hours apart), a
//   `fareId` gets the run id appended.
//
// Order: PUT, POST, PATCH, GET, then DELETE (deepest paths first). Run it against a server
// started with a throwaway database and without the `push` worker (URL subscriptions in the
// examples must not be called). Nothing secret is printed: no request bodies, no tokens.
import crypto from 'node:crypto';
import { loadDoc, operations, deref, mediaExamples, makeValidator, formatErrors, isJson } from './lib.mjs';

const BASE_URL = (process.env.RYDES_URL || process.argv[2] || '').replace(/\/$/, '');
const TOKEN = process.env.RYDES_ADMIN_TOKEN || '';
if (!BASE_URL || !TOKEN) {
    console.error('usage: RYDES_URL=http://host:port RYDES_ADMIN_TOKEN=... node replay.mjs');
    process.exit(2);
}
const RUN = process.env.CONTRACT_RUN_ID || crypto.randomBytes(3).toString('hex');
const PREFIX = `ct${RUN}-`;
const VERBOSE = !!process.env.REPLAY_VERBOSE;
const REQUEST_TIMEOUT_MS = 30000;

const doc = loadDoc();
const compile = makeValidator(doc);
const compileStrict = makeValidator(doc, { strict: true });
const problems = [];
let nrequests = 0;

const redact = (s) =>
    String(s)
        .replace(/rydes_[A-Za-z0-9_-]{16,}/g, 'rydes_***')
        .replace(/\b\d(?:[ -]?\d){11,18}\b/g, '****');
const fail = (where, msg) => problems.push(`${where}: ${redact(msg)}`);

// ---- HTTP -----------------------------------------------------------------------------------
let reqno = 0;
async function http(method, path, { query, body, auth = true, headers = {} } = {}) {
    const url = new URL(BASE_URL + path);
    for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, String(v));
    const rid = `contract-${RUN}-${++reqno}`;
    const h = { 'X-Request-Id': rid, ...headers };
    if (auth) h.Authorization = `Bearer ${TOKEN}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    nrequests++;
    const res = await fetch(url, {
        method: method.toUpperCase(),
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        redirect: 'manual',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    const ctype = (res.headers.get('content-type') || '').split(';')[0].trim().toLowerCase();
    let json;
    if (isJson(ctype) && text.length) {
        try {
            json = JSON.parse(text);
        } catch {
            json = undefined;
        }
    }
    return { status: res.status, headers: res.headers, text, json, ctype, rid };
}

// GET every page of a list: the names of queues or topics.
async function listNames(path, key) {
    const names = new Set();
    let after;
    for (let i = 0; i < 100; i++) {
        const r = await http('get', path, { query: after ? { limit: 1000, after } : { limit: 1000 } });
        if (r.status !== 200 || !r.json) throw new Error(`GET ${path}: ${r.status}`);
        for (const q of r.json[key] || []) names.add(q.name);
        if (!r.json.next) break;
        after = r.json.next;
    }
    return names;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(150);
    }
}

// ---- what to send ---------------------------------------------------------------------------
const QUEUE_KEYS = new Set(['queue', 'dead_letter_queue', 'recipients', 'to']);
const UNIQUE_KEYS = new Set(['fareId', 'fare_id']);
const isMessaging = (p) => /^\/(queues|topics|recipient-list)\b/.test(p);
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

let existing = { queues: new Set(), topics: new Set() };
const rename = (kind, name) => (existing[kind].has(name) ? name : PREFIX + name);
const wanted = { queues: new Set(), topics: new Set() }; // original names to create

let slot = 0;
const future = () => new Date(Date.now() + 86400000 + 2 * 3600000 * slot++).toISOString();

// The body to send for a request example: names mapped, times moved, fare ids made unique.
function prepareBody(path, value, collect) {
    const messaging = isMessaging(path);
    const walk = (v, key) => {
        if (Array.isArray(v)) return v.map((x) => walk(x, key));
        if (v && typeof v === 'object') {
            const out = {};
            for (const [k, x] of Object.entries(v)) {
                // a message's payload is data, not names
                out[k] = messaging && k === 'body' ? walkTimes(x) : walk(x, k);
            }
            return out;
        }
        if (typeof v !== 'string') return v;
        if (messaging && QUEUE_KEYS.has(key) && !/^[a-z]+:\/\//i.test(v)) {
            if (collect) wanted.queues.add(v);
            return rename('queues', v);
        }
        if (UNIQUE_KEYS.has(key)) return `${v}-${RUN}`.slice(0, 64);
        if (TIMESTAMP.test(v)) return future();
        return v;
    };
    const walkTimes = (v) => {
        if (Array.isArray(v)) return v.map(walkTimes);
        if (v && typeof v === 'object')
            return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walkTimes(x)]));
        return typeof v === 'string' && TIMESTAMP.test(v) ? future() : v;
    };
    return walk(value, undefined);
}

function paramExamples(p) {
    const out = [];
    if (p.example !== undefined) out.push(['example', p.example]);
    for (const [k, e] of Object.entries(p.examples || {})) out.push([k, deref(doc, e).value]);
    if (out.length === 0 && p.schema) {
        const s = deref(doc, p.schema);
        if (s.example !== undefined) out.push(['example', s.example]);
        else if (Array.isArray(s.examples) && s.examples.length) out.push(['example', s.examples[0]]);
    }
    return out;
}
function paramExample(p, caseName) {
    const ex = paramExamples(p);
    const keyed = ex.find(([k]) => k === caseName);
    return keyed ? keyed[1] : ex.length ? ex[0][1] : undefined;
}
// What a path parameter names: the segment before it (`/rides/{id}` -> rides), queue and
// topic names by their collection, a subscription by `sub`.
function paramKind(path, name) {
    const segs = path.split('/');
    const i = segs.findIndex((s) => s.startsWith(`{${name}}`));
    return i > 0 ? segs[i - 1] : undefined;
}

// Fixtures: settled ones (made in setup, for GETs) and the latest created (for the rest).
const settled = {};
const latest = {};
const exampleToReal = new Map(); // a parameter example value -> what replaced it

// ---- setup ----------------------------------------------------------------------------------
async function must(what, p) {
    const r = await p;
    if (r.status < 200 || r.status > 299)
        throw new Error(`setup: ${what} answered ${r.status} ${redact(r.json?.detail || r.json?.title || '')}`);
    return r;
}

async function setup(ops) {
    existing = {
        queues: await listNames('/queues', 'queues'),
        topics: await listNames('/topics', 'topics'),
    };
    // every queue and topic name the examples use
    for (const o of ops) {
        for (const p of o.params) {
            if (p.in !== 'path' || p.name !== 'name') continue;
            const kind = paramKind(o.path, 'name');
            if (kind !== 'queues' && kind !== 'topics') continue;
            for (const [, v] of paramExamples(p)) if (typeof v === 'string') wanted[kind].add(v);
        }
        for (const c of o.cases) if (c.raw !== undefined) prepareBody(o.path, c.raw, true);
    }
    const make = async (kind, name) => {
        const real = rename(kind, name);
        if (existing[kind].has(real)) return;
        const r = await http('put', `/${kind}/${encodeURIComponent(real)}`, {
            body: name.endsWith('.fifo') ? { fifo: true } : {},
        });
        if (r.status !== 201 && r.status !== 200)
            throw new Error(`setup: PUT /${kind}/${real} answered ${r.status}`);
    };
    await Promise.all([...wanted.queues].map((n) => make('queues', n)));
    await Promise.all([...wanted.topics].map((n) => make('topics', n)));

    const tasks = [];
    tasks.push(
        (async () => {
            const r = await must('POST /tokens', http('post', '/tokens', { body: { role: 'app', name: `${PREFIX}token` } }));
            settled.tokens = r.json.id;
        })(),
    );
    tasks.push(
        (async () => {
            const r = await must(
                'POST /rides',
                http('post', '/rides', {
                    body: { from: 'Alexanderplatz', to: 'Tempelhofer Feld', customer: `${PREFIX}cust`, duration: 600, distance: 4.2, fare: 12.5 },
                }),
            );
            settled.rides = r.json.id;
            // the fare saga of the ride, when the workers run: wait (bounded) for it to end
            await until(
                'the fare of the ride',
                async () => {
                    const f = await http('get', `/rides/${r.json.id}/fare`);
                    return f.status === 200 && ['succeeded', 'failed'].includes(f.json?.status);
                },
                15000,
            ).catch(() => {});
        })(),
    );
    tasks.push(
        (async () => {
            const fareId = `${PREFIX}fare`;
            await must(
                'POST /fares',
                http('post', '/fares', {
                    body: { customerId: `${PREFIX}cust`, fareId, fareAmount: '$20.00', cc: '4000 0000 0000 0002', expiryDate: '12/30', cvv: '123' },
                }),
            );
            settled.fares = fareId;
            await until(
                'the fare saga',
                async () => {
                    const f = await http('get', `/fares/${fareId}`);
                    return f.status === 200 && ['succeeded', 'failed'].includes(f.json?.status);
                },
                15000,
            ).catch(() => {});
        })(),
    );
    tasks.push(
        (async () => {
            const r = await must(
                'POST /prebookings',
                http('post', '/prebookings', {
                    body: { from: 'Alexanderplatz', to: 'Tempelhofer Feld', customer: `${PREFIX}cust`, when: future() },
                }),
            );
            settled.tasks = r.json.id;
            const t = await until(
                'the prebooking task to succeed',
                async () => {
                    const t = await http('get', `/tasks/${r.json.id}`);
                    if (t.json?.status === 'failed') throw new Error('setup: the prebooking task failed');
                    return t.json?.status === 'succeeded' && t.json;
                },
                20000,
            );
            settled.prebookings = t.links.result.split('/').pop();
        })(),
    );
    tasks.push(
        (async () => {
            const r = await must(
                'POST /rfqs',
                http('post', '/rfqs', { body: { from: 'Alexanderplatz', to: 'Tempelhofer Feld', customer: `${PREFIX}cust`, timeout_in_secs: 1 } }),
            );
            settled.rfqs = r.json.id;
            await until(
                'the RFQ to finish',
                async () => (await http('get', `/rfqs/${r.json.id}/status`)).json?.status === 'done',
                10000,
            );
        })(),
    );
    await Promise.all(tasks);
    // another parameter with the same example as a replaced id gets the same value
    // (GET /retrieve-rfq-status?id= like GET /rfqs/{id}/status)
    for (const o of ops)
        for (const p of o.params) {
            const kind = p.in === 'path' ? paramKind(o.path, p.name) : undefined;
            if (!kind || settled[kind] === undefined) continue;
            for (const [, v] of paramExamples(p)) exampleToReal.set(v, settled[kind]);
        }
}

// A fresh receipt of a message of queue `queue` (sent and received for this purpose).
async function makeReceipt(queue) {
    const fifo = queue.endsWith('.fifo');
    const send = await http('post', `/queues/${encodeURIComponent(queue)}/messages`, {
        body: fifo ? { body: 'receipt', group_id: `${PREFIX}receipt`, dedup_id: crypto.randomUUID() } : { body: 'receipt' },
    });
    if (send.status !== 201) throw new Error(`making a receipt: send answered ${send.status}`);
    const r = await http('post', `/queues/${encodeURIComponent(queue)}/messages:receive`, {
        body: { max_messages: 1, visibility_timeout: 60, wait_seconds: 2 },
    });
    const m = (r.json?.messages || [])[0];
    if (!m) throw new Error(`making a receipt: nothing received from ${queue}`);
    return m.receipt;
}

// Path and query values of one case of an operation.
async function resolveParams(o, caseName) {
    const pathValues = {};
    const query = {};
    for (const p of o.params) {
        if (p.in !== 'path' && p.in !== 'query') continue;
        let v = paramExample(p, caseName);
        if (p.in === 'query') {
            if (p.name === 'after') continue; // cursors are followed, not invented (see page())
            if (v === undefined) {
                if (p.required) throw new Error(`required query parameter ${p.name} has no example`);
                continue;
            }
            if (exampleToReal.has(v)) v = exampleToReal.get(v);
            query[p.name] = v;
            continue;
        }
        const kind = paramKind(o.path, p.name);
        const fixture = kind && (o.method === 'get' ? settled[kind] ?? latest[kind] : latest[kind] ?? settled[kind]);
        let real;
        if (p.name === 'receipt') {
            real = await makeReceipt(pathValues.name);
        } else if ((kind === 'queues' || kind === 'topics') && typeof v === 'string') {
            real = rename(kind, v);
        } else if (p.name === 'sub' && typeof v === 'string') {
            real = PREFIX + v;
        } else if (fixture !== undefined) {
            real = fixture;
        } else if (v !== undefined && exampleToReal.has(v)) {
            real = exampleToReal.get(v);
        } else if (v !== undefined) {
            real = v;
        } else {
            throw new Error(`path parameter ${p.name} has no example and no fixture`);
        }
        pathValues[p.name] = real;
    }
    const path = o.path.replace(/\{([^}]+)\}/g, (_, n) => {
        if (pathValues[n] === undefined) throw new Error(`path parameter ${n} is not declared`);
        return encodeURIComponent(pathValues[n]);
    });
    return { path, query };
}

// ---- checks ---------------------------------------------------------------------------------
function checkResponse(o, label, r, { expect2xx = true } = {}) {
    const where = `${o.where}${label ? ` [${label}]` : ''}`;
    const responses = o.op.responses || {};
    const key = responses[String(r.status)] ? String(r.status) : responses[`${String(r.status)[0]}XX`] ? `${String(r.status)[0]}XX` : responses.default ? 'default' : undefined;
    const problem = r.json && typeof r.json === 'object' ? ` (${r.json.title || ''}: ${r.json.detail || ''}${(r.json.errors || []).map((e) => ` ${e.field}: ${e.message}`).join(';')})` : '';
    if (!key) {
        fail(where, `answered ${r.status}, which the operation does not document${problem}`);
        return;
    }
    if (expect2xx && (r.status < 200 || r.status > 299))
        fail(where, `the example request was refused: ${r.status}${problem}`);
    if (r.headers.get('x-request-id') !== r.rid) fail(where, `X-Request-Id was not echoed`);
    const resp = deref(doc, responses[key]);
    for (const [name, h] of Object.entries(resp.headers || {})) {
        const hd = deref(doc, h);
        const value = r.headers.get(name);
        if (value === null) {
            if (hd.required) fail(where, `${r.status}: required header ${name} is missing`);
            continue;
        }
        if (!hd.schema) continue;
        const s = deref(doc, hd.schema);
        const typed = (s.type === 'integer' || s.type === 'number') && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
        const v = compile(hd.schema);
        if (!v(typed)) fail(where, `${r.status}: header ${name} does not match its schema: ${formatErrors(v.errors)}`);
    }
    const content = resp.content || {};
    const types = Object.keys(content);
    if (types.length === 0) {
        if (r.text.length && o.method !== 'head') fail(where, `${r.status}: a body (${r.ctype}) where none is documented`);
        return;
    }
    const mediaKey = types.find((t) => t.split(';')[0].trim().toLowerCase() === r.ctype) || types.find((t) => t === '*/*');
    if (!mediaKey) {
        fail(where, `${r.status}: Content-Type '${r.ctype}' is not documented (${types.join(', ')})`);
        return;
    }
    const media = content[mediaKey];
    if (!media.schema) return;
    let instance;
    if (isJson(mediaKey)) {
        if (r.json === undefined) {
            fail(where, `${r.status}: the body is not JSON`);
            return;
        }
        instance = r.json;
    } else instance = r.text;
    const v = compile(media.schema);
    if (!v(instance)) {
        fail(where, `${r.status} body does not match its schema:\n      ${formatErrors(v.errors)}`);
        return;
    }
    const vs = compileStrict(media.schema);
    if (!vs(instance)) fail(where, `${r.status} body has members its schema does not describe:\n      ${formatErrors(vs.errors)}`);
}

function remember(o, r) {
    // ids the replay created, from Location and from the body's links
    const loc = r.headers.get('location');
    const take = (uri) => {
        const m = /^\/([^/?#]+)\/([^/?#]+)/.exec(uri || '');
        if (m) latest[m[1]] = decodeURIComponent(m[2]);
    };
    if (loc && o.method !== 'get') take(loc);
}

// Follow a list's cursor once: limit=1, then `after` = the `next` it answered.
async function page(o, path, query, caseName) {
    if (!o.params.some((p) => p.in === 'query' && p.name === 'after')) return;
    const q = { ...query };
    if (o.params.some((p) => p.in === 'query' && p.name === 'limit')) q.limit = 1;
    const first = await http('get', path, { query: q, auth: o.auth });
    checkResponse(o, `${caseName} limit=1`.trim(), first);
    const next = first.json?.next;
    if (typeof next !== 'string') return;
    const second = await http('get', path, { query: { ...q, after: next }, auth: o.auth });
    checkResponse(o, `${caseName} after=next`.trim(), second);
}

// ---- main -----------------------------------------------------------------------------------
const ORDER = { put: 0, post: 1, patch: 2, get: 3, delete: 4 };
const ops = operations(doc)
    // x-rydes-replay: false marks the AWS protocols, which need SigV4 (tested by tests/aws)
    .filter((o) => o.method in ORDER && o.op['x-rydes-replay'] !== false)
    .map((o) => {
        const cases = [];
        const security = o.op.security ?? doc.security;
        o.auth = !(Array.isArray(security) && security.length === 0);
        if (o.op.requestBody) {
            const body = deref(doc, o.op.requestBody);
            for (const [ct, media] of Object.entries(body.content || {})) {
                if (!isJson(ct)) continue;
                for (const ex of mediaExamples(doc, media)) cases.push({ name: ex.name, raw: ex.value });
            }
            if (cases.length === 0) cases.push({ name: 'no example', missing: true });
        } else cases.push({ name: '' });
        return { ...o, cases };
    });
ops.sort((a, b) => ORDER[a.method] - ORDER[b.method] || (a.method === 'delete' ? b.path.split('/').length - a.path.split('/').length : 0));

const started = Date.now();
try {
    // a server that is just starting: wait (bounded) until it is ready
    await until(
        `${BASE_URL}/readyz to answer 200`,
        async () => (await http('get', '/readyz', { auth: false }).catch(() => ({}))).status === 200,
        30000,
    );
    const served = await http('get', '/openapi.json', { auth: false });
    if (served.status !== 200) fail('GET /openapi.json', `answered ${served.status}`);
    else if (JSON.stringify(served.json) !== JSON.stringify(doc))
        console.warn('replay: warning: the server serves another version of openapi.yaml (rebuild it)');
    await setup(ops);
} catch (e) {
    console.error(`replay: ${redact(e.message)}`);
    process.exit(1);
}

for (const o of ops) {
    for (const c of o.cases) {
        const label = c.name;
        if (c.missing) {
            fail(o.where, 'the request body has no JSON example to replay');
            continue;
        }
        try {
            const { path, query } = await resolveParams(o, c.name);
            const body = c.raw === undefined ? undefined : prepareBody(o.path, c.raw, false);
            const r = await http(o.method, path, { query, body, auth: o.auth });
            if (VERBOSE) console.log(`  ${o.method.toUpperCase()} ${path} [${label}] -> ${r.status}`);
            checkResponse(o, label, r);
            remember(o, r);
            if (o.method === 'get') await page(o, path, query, label);
        } catch (e) {
            fail(`${o.where}${label ? ` [${label}]` : ''}`, e.message);
        }
    }
}

// Unknown resources: GETs and DELETEs whose path names a resource, sent with a name or id
// that names nothing, answer a documented status (404) with a body of its schema.
let nmissing = 0;
for (const o of ops) {
    if ((o.method !== 'get' && o.method !== 'delete') || !o.path.includes('{')) continue;
    nmissing++;
    try {
        const path = o.path.replace(/\{([^}]+)\}/g, (_, n) => {
            const p = o.params.find((x) => x.in === 'path' && x.name === n);
            const v = p ? paramExample(p, '') : undefined;
            if (n === 'receipt' && typeof v === 'string') return v; // a well-formed, unknown one
            if (typeof v === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(v)) return crypto.randomUUID();
            return encodeURIComponent(`${PREFIX}missing-${v ?? n}`);
        });
        const query = {};
        for (const p of o.params)
            if (p.in === 'query' && p.required) query[p.name] = paramExample(p, '');
        const r = await http(o.method, path, { query, auth: o.auth });
        checkResponse(o, 'unknown', r, { expect2xx: false });
        if (r.status !== 404) fail(`${o.where} [unknown]`, `answered ${r.status}, not 404`);
    } catch (e) {
        fail(`${o.where} [unknown]`, e.message);
    }
}

// Without a token every operation that needs one answers 401, as documented, with a
// problem body of its schema.
let nauth = 0;
for (const o of ops) {
    if (!o.auth) continue;
    nauth++;
    try {
        const path = o.path.replace(/\{[^}]+\}/g, 'x');
        const r = await http(o.method, path, { auth: false, body: o.op.requestBody ? {} : undefined });
        checkResponse(o, 'no token', r, { expect2xx: false });
        if (r.status !== 401) fail(`${o.where} [no token]`, `answered ${r.status}, not 401`);
    } catch (e) {
        fail(`${o.where} [no token]`, e.message);
    }
}

const secs = ((Date.now() - started) / 1000).toFixed(1);
const ncases = ops.reduce((n, o) => n + o.cases.length, 0) + nmissing + nauth;
if (problems.length) {
    console.error(`replay: ${problems.length} mismatch(es) between openapi.yaml and the server:`);
    for (const p of problems) console.error(`  ${p}`);
    console.error(`replay: ${ncases} cases of ${ops.length} operations, ${nrequests} requests in ${secs}s; ${problems.length} failed`);
    process.exit(1);
}
console.log(`replay: ${ncases} cases of ${ops.length} operations, ${nrequests} requests in ${secs}s: the server answers as documented`);
