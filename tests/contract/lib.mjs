// Shared by examples.mjs and replay.mjs: loads openapi/openapi.yaml, walks its operations and
// compiles its schemas as JSON Schema draft 2020-12 (the dialect of OpenAPI 3.1) with Ajv.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
export const DOC_PATH = process.env.OPENAPI_DOC || path.join(here, '../../openapi/openapi.yaml');
export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const BASE = 'https://rydes.invalid/openapi.json';

export function loadDoc(file = DOC_PATH) {
    // yaml's default: duplicate keys are an error, so a key added twice is caught here too
    return YAML.parse(fs.readFileSync(file, 'utf8'), { maxAliasCount: -1 });
}

function pointer(doc, ref) {
    if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
    return ref
        .slice(2)
        .split('/')
        .map((k) => decodeURIComponent(k).replace(/~1/g, '/').replace(/~0/g, '~'))
        .reduce((o, k) => {
            if (o === undefined || !(k in o)) throw new Error(`unresolved $ref ${ref}`);
            return o[k];
        }, doc);
}

// Follows $ref chains of non-schema objects (responses, parameters, request bodies, examples).
export function deref(doc, obj) {
    const seen = new Set();
    while (obj && typeof obj === 'object' && typeof obj.$ref === 'string') {
        if (seen.has(obj.$ref)) throw new Error(`$ref cycle at ${obj.$ref}`);
        seen.add(obj.$ref);
        obj = pointer(doc, obj.$ref);
    }
    return obj;
}

// Every operation of paths (and, with webhooks, of webhooks): {where, path, method, op, params}.
export function operations(doc, { webhooks = false } = {}) {
    const out = [];
    const walk = (section, kind) => {
        for (const [p, raw] of Object.entries(doc[section] || {})) {
            const item = deref(doc, raw);
            for (const m of METHODS) {
                const op = item[m];
                if (!op) continue;
                const byKey = new Map();
                for (const prm of [...(item.parameters || []), ...(op.parameters || [])]) {
                    const d = deref(doc, prm);
                    byKey.set(`${d.in}:${d.name}`, d); // operation-level ones override
                }
                out.push({
                    kind,
                    where: `${m.toUpperCase()} ${kind === 'webhook' ? `webhook ${p}` : p}`,
                    path: p,
                    method: m,
                    op,
                    params: [...byKey.values()],
                });
            }
        }
    };
    walk('paths', 'path');
    if (webhooks) walk('webhooks', 'webhook');
    return out;
}

// The examples of a media type object: [{name, value}] (media-level `example` or `examples`).
export function mediaExamples(doc, media) {
    const out = [];
    if (media.example !== undefined) out.push({ name: 'example', value: media.example });
    for (const [name, ex] of Object.entries(media.examples || {})) {
        const e = deref(doc, ex);
        if (e.externalValue !== undefined && e.value === undefined)
            throw new Error(`example ${name}: externalValue is not supported`);
        out.push({ name, value: e.value, summary: e.summary });
    }
    return out;
}

// A validator factory over the document's schemas: compile(schema) -> ajv validate function.
// The document itself is registered under BASE with every local $ref made absolute, so a
// schema anywhere in it resolves `#/components/schemas/...` the same way.
// With strict, object schemas also get `unevaluatedProperties: false` (see strictify).
export function makeValidator(doc, { strict = false } = {}) {
    const ajv = new Ajv2020({
        strict: false, // OpenAPI's own keywords (x-*, discriminator, ...) are annotations
        allErrors: true,
        validateFormats: true,
        discriminator: false,
    });
    addFormats(ajv);
    // the OpenAPI format registry's numeric formats
    const int = (bits) => ({
        type: 'number',
        validate: (n) => Number.isInteger(n) && n >= -(2 ** (bits - 1)) && n < 2 ** (bits - 1),
    });
    ajv.addFormat('int32', int(32));
    ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isInteger(n) });
    ajv.addFormat('float', { type: 'number', validate: () => true });
    ajv.addFormat('double', { type: 'number', validate: () => true });
    ajv.addFormat('password', true);
    ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
    ajv.addFormat('binary', true);

    const absolutize = (node) => {
        if (Array.isArray(node)) return node.map(absolutize);
        if (!node || typeof node !== 'object') return node;
        const out = {};
        for (const [k, v] of Object.entries(node)) {
            if ((k === '$ref' || k === '$dynamicRef') && typeof v === 'string' && v.startsWith('#'))
                out[k] = BASE + v;
            else out[k] = absolutize(v);
        }
        return out;
    };
    // Only the components are registered as a schema resource (the rest of the document is
    // not JSON Schema); schemas elsewhere are compiled one by one, their refs made absolute.
    const comps = absolutize(doc.components || {});
    const schemas = comps.schemas || {};
    const resolve = (name) => schemas[decodeURIComponent(name).replace(/~1/g, '/').replace(/~0/g, '~')];
    const partialRef = (ref) => ref.replace(COMPONENT, (_, base, name) => `${base.replace(/components\/schemas\/$/, 'partial/')}${name}`);
    const prep = strict ? (x) => strictify(absolutize(x), true, resolve, partialRef) : absolutize;
    ajv.addSchema({
        $id: BASE,
        components: strict
            ? { ...comps, schemas: Object.fromEntries(Object.entries(schemas).map(([k, v]) => [k, strictify(v, true, resolve, partialRef)])) }
            : comps,
        // strict: the components as parts of an instance (see strictify)
        partial: strict
            ? Object.fromEntries(Object.entries(schemas).map(([k, v]) => [k, strictify(v, false, resolve, partialRef)]))
            : {},
    });
    const cache = new Map();
    return (schema) => {
        if (cache.has(schema)) return cache.get(schema);
        const s = prep(schema);
        const v = ajv.compile(s);
        cache.set(schema, v);
        return v;
    };
}

// Strict mode: an instance member that the schema does not describe is an error. Every schema
// that stands for a whole instance (the schema itself and those of properties, items, ...) and
// declares members (properties, or subschemas that do) gets `unevaluatedProperties: false`
// unless it says itself what other members may be; the members that its allOf/oneOf/if/$ref
// subschemas evaluate count as described. A subschema that is only a part of its instance
// (an allOf/oneOf/if branch, a component $ref'd from one) gets nothing itself, and nothing
// below it is made strict (a branch may restate a member's schema in part).
const WHOLE_ONE = new Set(['items', 'additionalProperties', 'contains', 'unevaluatedItems', 'propertyNames']);
const WHOLE_EACH = new Set(['properties', 'patternProperties', '$defs', 'dependentSchemas']);
const PARTS = new Set(['allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else']);
const COMPONENT = /^(.*#\/components\/schemas\/)([^/]+)$/;

function declaresMembers(node, resolve, seen = new Set()) {
    if (!node || typeof node !== 'object' || Array.isArray(node)) return false;
    if (node.properties || node.patternProperties) return true;
    if (typeof node.$ref === 'string') {
        const m = COMPONENT.exec(node.$ref);
        if (m && !seen.has(m[2])) {
            seen.add(m[2]);
            if (declaresMembers(resolve(m[2]), resolve, seen)) return true;
        }
    }
    for (const k of ['allOf', 'anyOf', 'oneOf'])
        if (Array.isArray(node[k]) && node[k].some((x) => declaresMembers(x, resolve, seen))) return true;
    return ['then', 'else'].some((k) => declaresMembers(node[k], resolve, seen));
}

// resolve(name) -> the component schema; partialRef(ref) -> where its partial copy lives.
function strictify(node, whole, resolve, partialRef) {
    if (Array.isArray(node)) return node.map((x) => strictify(x, whole, resolve, partialRef));
    if (!node || typeof node !== 'object') return node;
    const out = {};
    for (const [k, v] of Object.entries(node)) {
        if (WHOLE_EACH.has(k) && v && typeof v === 'object')
            out[k] = Object.fromEntries(
                Object.entries(v).map(([n, s]) => [n, strictify(s, whole, resolve, partialRef)]),
            );
        else if (WHOLE_ONE.has(k) || k === 'prefixItems') out[k] = strictify(v, whole, resolve, partialRef);
        else if (PARTS.has(k)) out[k] = strictify(v, false, resolve, partialRef);
        else if (k === '$ref' && !whole && typeof v === 'string' && COMPONENT.test(v)) out[k] = partialRef(v);
        else out[k] = v;
    }
    if (whole && !('additionalProperties' in node) && !('unevaluatedProperties' in node) &&
        declaresMembers(node, resolve))
        out.unevaluatedProperties = false;
    return out;
}

export function formatErrors(errors, max = 8) {
    const lines = (errors || []).slice(0, max).map((e) => {
        const where = e.instancePath || '(root)';
        const p = e.params || {};
        const member = p.additionalProperty ?? p.unevaluatedProperty;
        const extra = member !== undefined ? `: '${member}'` : '';
        return `${where} ${e.message}${extra} [${e.schemaPath}]`;
    });
    if ((errors || []).length > max) lines.push(`... ${errors.length - max} more`);
    return lines.join('\n      ');
}

// A JSON media type (application/json, application/problem+json, ...).
export const isJson = (ct) => /^application\/([a-z0-9.+-]*\+)?json\b/i.test(ct);
