// The Rydes operator dashboard. It asks for an admin token (kept in sessionStorage), then polls
// the gateway's public API with it every two seconds and redraws: the topology as a graph, queue
// depths and throughput as hand-drawn canvas charts, dead-letter queues with a redrive button,
// and the newest rides, tasks, RFQs and fare sagas. No framework, nothing from elsewhere; every
// value from the API reaches the page as text (textContent, SVG text nodes), never as markup.
//
// Throughput comes from /metrics (rydes_queue_operations_total, sent and deleted per queue):
// the difference between two scrapes over the time between them. Those counters belong to the
// process that answers, so behind a load balancer the rates are that process's share.
'use strict';

(() => {
  const TOKEN_KEY = 'rydes.dashboard.token';
  const POLL_MS = 2000;
  const TOPOLOGY_EVERY = 5; // polls between two reloads of topics, subscriptions and queues
  const API_TIMEOUT_MS = 15000; // a request that hangs fails instead of holding the poll
  const REDRIVE_TIMEOUT_MS = 120000; // a redrive of a deep dead-letter queue takes a while
  const HISTORY = 90; // points per chart: three minutes
  const LIST_LIMIT = { rides: 15, tasks: 10, rfqs: 10, fares: 10 };
  const SVGNS = 'http://www.w3.org/2000/svg';

  const state = {
    token: null,
    paused: false,
    tick: 0,
    timer: null,
    busy: false,
    topics: [], // [{name, subs: [subscription]}]
    queueNames: [],
    queues: new Map(), // name -> {info, hist: [{depth, in, out}]}
    counters: null, // the previous /metrics scrape: {t, byQueue: Map name -> {sent, deleted}}
    seen: { rides: null, tasks: null, rfqs: null, fares: null }, // ids already shown
    queueRows: new Map(),
    redriving: new Set(), // queues with a redrive in flight
    session: 0, // counts sign-outs: a poll of an ended session changes nothing
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers -----------------------------------------------------------------------

  // An element with a class and children (strings become text nodes).
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
    }
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function trunc(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  function clock(ts) {
    if (!ts) return '–';
    const d = new Date(ts);
    const today = new Date().toDateString() === d.toDateString();
    const time = d.toLocaleTimeString([], { hour12: false });
    return today ? time : d.toLocaleDateString() + ' ' + time;
  }

  function age(seconds) {
    const s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function rate(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    return v >= 10 ? v.toFixed(0) : v.toFixed(1);
  }

  function money(v) {
    return Number(v).toFixed(2);
  }

  // The last 8 characters: ids are UUIDv7, whose first 8 are the minute they were made in (the
  // same for every row of a busy minute); the tail is random. The full id is the cell's title.
  function shortId(id) {
    return String(id).replace(/^ride-/, '').slice(-8);
  }

  function idCell(id) {
    const td = el('td', 'mono', shortId(id));
    td.title = id;
    return td;
  }

  function pill(text, cls) {
    return el('span', 'pill ' + (cls || text), text);
  }

  // ---- the API ---------------------------------------------------------------------------

  class AuthError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Calls the API with the token; resolves to the JSON body, or throws (AuthError on 401/403,
  // Error with the problem's detail otherwise, or after timeoutMs without an answer).
  async function api(method, path, body, timeoutMs = API_TIMEOUT_MS) {
    if (!state.token) throw new Error('signed out'); // a poll that outlived its session
    const headers = { Authorization: 'Bearer ' + state.token, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let json = null;
    try {
      json = await res.json();
    } catch (e) {
      json = null;
    }
    if (res.status === 401) throw new AuthError(401, 'The gateway refused this token.');
    if (res.status === 403) throw new AuthError(403, 'This token is not an admin token.');
    if (!res.ok) {
      const err = new Error((json && (json.detail || json.title)) || 'HTTP ' + res.status);
      err.status = res.status;
      throw err;
    }
    return json;
  }

  // Every item of a paginated list, following next.
  async function listAll(path, key) {
    const items = [];
    let after = null;
    for (let page = 0; page < 50; page++) {
      const q = after ? '&after=' + encodeURIComponent(after) : '';
      const body = await api('GET', path + '?limit=1000' + q);
      items.push(...(body[key] || []));
      if (!body.next) break;
      after = body.next;
    }
    return items;
  }

  // ---- loading ---------------------------------------------------------------------------

  async function loadTopology() {
    const [topics, queues] = await Promise.all([
      listAll('/topics', 'topics'),
      listAll('/queues', 'queues'),
    ]);
    state.topics = await Promise.all(
      topics.map(async (t) => {
        const path = '/topics/' + encodeURIComponent(t.name) + '/subscriptions';
        return { name: t.name, subs: await listAll(path, 'subscriptions') };
      }),
    );
    state.queueNames = queues.map((q) => q.name);
    for (const name of [...state.queues.keys()])
      if (!state.queueNames.includes(name)) state.queues.delete(name);
    for (const name of [...state.queueRows.keys()])
      if (!state.queueNames.includes(name)) state.queueRows.delete(name);
  }

  async function loadQueueStats() {
    await Promise.all(
      state.queueNames.map(async (name) => {
        try {
          const info = await api('GET', '/queues/' + encodeURIComponent(name));
          const q = state.queues.get(name) || { info: null, hist: [] };
          q.info = info;
          state.queues.set(name, q);
        } catch (e) {
          if (e instanceof AuthError) throw e;
          if (e.status === 404) state.queues.delete(name);
        }
      }),
    );
  }

  // Parses the per-queue operation counters out of the Prometheus text of /metrics.
  function parseCounters(text) {
    const byQueue = new Map();
    for (const line of text.split('\n')) {
      if (!line.startsWith('rydes_queue_operations_total{')) continue;
      const m = /^[a-z_]+\{([^}]*)\}\s+([0-9.eE+-]+)/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const l of m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      if (!labels.queue) continue;
      const c = byQueue.get(labels.queue) || {};
      c[labels.op] = Number(m[2]);
      byQueue.set(labels.queue, c);
    }
    return byQueue;
  }

  // Per-queue rates {in, out} (messages per second) since the previous scrape, or null.
  async function loadRates() {
    let text;
    try {
      const res = await fetch('/metrics', {
        cache: 'no-store',
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      });
      if (!res.ok) return null;
      text = await res.text();
    } catch (e) {
      return null;
    }
    const now = { t: performance.now(), byQueue: parseCounters(text) };
    const prev = state.counters;
    state.counters = now;
    if (!prev || now.byQueue.size === 0) return null;
    const dt = (now.t - prev.t) / 1000;
    const rates = new Map();
    for (const [name, c] of now.byQueue) {
      const p = prev.byQueue.get(name) || {};
      const d = (k) => (c[k] >= (p[k] || 0) ? c[k] - (p[k] || 0) : 0); // a restart resets
      rates.set(name, { in: d('sent') / dt, out: d('deleted') / dt });
    }
    return rates;
  }

  async function loadList(path, key, limit) {
    const body = await api('GET', path + (path.includes('?') ? '&' : '?') + 'limit=' + limit);
    return body[key] || [];
  }

  // ---- the topology graph ----------------------------------------------------------------

  // The queues that are some queue's dead-letter queue, with the queues feeding each.
  function deadLetterSources() {
    const sources = new Map();
    for (const [name, q] of state.queues) {
      const dl = q.info && q.info.attributes && q.info.attributes.dead_letter;
      if (!dl || !dl.queue) continue;
      if (!sources.has(dl.queue)) sources.set(dl.queue, []);
      sources.get(dl.queue).push(name);
    }
    return sources;
  }

  function depthOf(name) {
    const q = state.queues.get(name);
    const s = q && q.info && q.info.stats;
    return s ? (s.available || 0) + (s.in_flight || 0) + (s.delayed || 0) : null;
  }

  // A filter policy in a few words: "fare ≥ 50 · distance ≥ 20".
  function describeFilter(policy) {
    if (!policy || typeof policy !== 'object') return null;
    const ops = { '>=': '≥', '<=': '≤', '=': '=', '>': '>', '<': '<' };
    const cond = (c) => {
      if (c === null || typeof c !== 'object') return '= ' + JSON.stringify(c);
      if (Array.isArray(c.numeric)) {
        const parts = [];
        for (let i = 0; i + 1 < c.numeric.length; i += 2)
          parts.push((ops[c.numeric[i]] || c.numeric[i]) + ' ' + c.numeric[i + 1]);
        return parts.join(' ');
      }
      if ('anything-but' in c) return '≠ ' + JSON.stringify(c['anything-but']);
      if ('prefix' in c) return 'starts ' + JSON.stringify(c.prefix);
      if ('suffix' in c) return 'ends ' + JSON.stringify(c.suffix);
      if ('exists' in c) return c.exists ? 'exists' : 'absent';
      return JSON.stringify(c);
    };
    const keys = Object.keys(policy).map((k) => {
      const v = policy[k];
      if (Array.isArray(v)) return k + ' ' + v.map(cond).join(' | ');
      if (v && typeof v === 'object') return k + ' ' + JSON.stringify(v);
      return k + ' ' + cond(v);
    });
    return keys.join(' · ');
  }

  const G = {
    row: 48,
    h: 38,
    top: 40,
    x: { topic: 16, sub: 262, queue: 566, dlq: 852 },
    w: { topic: 196, sub: 250, queue: 230, dlq: 236 },
  };

  // Places every node: subscriptions one per row under their topic, each topic centred on its
  // subscriptions, each queue level with the subscriptions feeding it where room allows, each
  // dead-letter queue level with its first source.
  function layoutGraph() {
    const dlqSources = deadLetterSources();
    const nodes = { topic: [], sub: [], queue: [], dlq: [] };
    const queueY = new Map();
    const wanted = new Map(); // queue (or url) -> [y of the subscriptions feeding it]
    let y = G.top;
    for (const t of state.topics) {
      const first = y;
      for (const s of t.subs) {
        nodes.sub.push({ topic: t.name, sub: s, y });
        const target = s.queue ? 'q:' + s.queue : 'u:' + (s.url || s.name);
        if (!wanted.has(target)) wanted.set(target, []);
        wanted.get(target).push(y);
        y += G.row;
      }
      if (!t.subs.length) y += G.row;
      nodes.topic.push({ topic: t, y: (first + y - G.row) / 2 });
    }
    let free = G.top;
    const place = (key, kind, name, extra) => {
      const ys = wanted.get(key) || [];
      const want = ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : free;
      const at = Math.max(want, free);
      free = at + G.row;
      nodes[kind].push(Object.assign({ name, y: at }, extra));
      if (kind === 'queue') queueY.set(name, at);
    };
    for (const key of wanted.keys()) {
      if (key.startsWith('u:')) place(key, 'queue', key.slice(2), { url: true });
      else if (!dlqSources.has(key.slice(2))) place(key, 'queue', key.slice(2), {});
    }
    for (const name of state.queueNames)
      if (!wanted.has('q:' + name) && !dlqSources.has(name) && state.queues.has(name))
        place('q:' + name, 'queue', name, {});
    let freeDlq = G.top;
    const dlqs = state.queueNames
      .filter((name) => dlqSources.has(name))
      .map((name) => {
        const ys = dlqSources.get(name).map((s) => queueY.get(s)).filter((v) => v !== undefined);
        return { name, want: ys.length ? Math.min(...ys) : Infinity };
      })
      .sort((a, b) => a.want - b.want); // level with their sources, in the sources' order
    for (const { name, want } of dlqs) {
      const at = Math.max(want === Infinity ? freeDlq : want, freeDlq);
      freeDlq = at + G.row;
      nodes.dlq.push({ name, y: at, sources: dlqSources.get(name) });
    }
    const bottom = Math.max(y, free, freeDlq, G.top + G.row);
    return { nodes, queueY, height: bottom + 4 };
  }

  function edge(x1, y1, x2, y2, cls) {
    const dx = Math.max(30, (x2 - x1) / 2);
    const d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    return svg('path', { d, class: 'edge ' + (cls || '') });
  }

  function badge(x, y, value) {
    const text = value === null ? '–' : String(value);
    const w = Math.max(22, 8 + 7 * text.length);
    return svg(
      'g',
      { class: 'badge' + (value ? '' : ' zero'), transform: `translate(${x - w},${y})` },
      svg('rect', { width: w, height: 18, rx: 9 }),
      svg('text', { x: w / 2, y: 13, 'text-anchor': 'middle' }, text),
    );
  }

  // One node: a box with a bold first line, a small second line and an optional badge.
  function node(kind, name, x, y, w, line2, line2cls, count, full) {
    const g = svg('g', {
      class: 'node ' + kind,
      transform: `translate(${x},${y - G.h / 2})`,
      'data-kind': kind,
      'data-name': name,
    });
    g.append(svg('title', {}, full || name));
    g.append(svg('rect', { width: w, height: G.h, rx: 7 }));
    const room = count === undefined ? w - 20 : w - 56;
    g.append(svg('text', { x: 10, y: 16, class: 'name' }, trunc(name, Math.floor(room / 7.2))));
    if (line2)
      g.append(
        svg('text', { x: 10, y: 30, class: line2cls }, trunc(line2, Math.floor((w - 20) / 6.2))),
      );
    if (count !== undefined) g.append(badge(w - 8, 6, count));
    return g;
  }

  function renderTopology() {
    const { nodes, queueY, height } = layoutGraph();
    const root = $('topology');
    const width = G.x.dlq + G.w.dlq + 16;
    root.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const edges = svg('g', {});
    const boxes = svg('g', {});
    const titles = [
      ['topics', G.x.topic],
      ['subscriptions', G.x.sub],
      ['queues', G.x.queue],
      ['dead-letter queues', G.x.dlq],
    ];
    for (const [t, x] of titles) boxes.append(svg('text', { x, y: 14, class: 'col-title' }, t));
    const topicY = new Map(nodes.topic.map((n) => [n.topic.name, n.y]));
    for (const n of nodes.topic) {
      const subs = n.topic.subs.length;
      const line = subs === 1 ? '1 subscription' : subs + ' subscriptions';
      boxes.append(node('topic', n.topic.name, G.x.topic, n.y, G.w.topic, line, 'all'));
    }
    for (const n of nodes.sub) {
      const filter = describeFilter(n.sub.filter_policy);
      const line = filter || (n.sub.url ? 'all messages, pushed' : 'all messages');
      const full = n.sub.name + (filter ? '\nfilter: ' + JSON.stringify(n.sub.filter_policy) : '');
      boxes.append(
        node('sub', n.sub.name, G.x.sub, n.y, G.w.sub, line, filter ? 'filter' : 'all', undefined, full),
      );
      edges.append(edge(G.x.topic + G.w.topic, topicY.get(n.topic), G.x.sub, n.y));
      const target = n.sub.queue || n.sub.url || n.sub.name;
      const ty = n.sub.queue ? queueY.get(n.sub.queue) : nodes.queue.find((q) => q.url && q.name === target)?.y;
      if (ty !== undefined)
        edges.append(edge(G.x.sub + G.w.sub, n.y, G.x.queue, ty, filter ? 'filtered' : ''));
    }
    for (const n of nodes.queue) {
      if (n.url) {
        boxes.append(node('url', n.name, G.x.queue, n.y, G.w.queue, 'HTTP endpoint', 'all'));
        continue;
      }
      const q = state.queues.get(n.name);
      const s = q && q.info && q.info.stats;
      const last = q && q.hist.length ? q.hist[q.hist.length - 1] : null;
      const line = s
        ? `${s.in_flight} in flight · ${last && last.in !== null ? rate(last.in) + '/s in' : 'idle'}`
        : '';
      boxes.append(node('queue', n.name, G.x.queue, n.y, G.w.queue, line, 'all', depthOf(n.name)));
    }
    for (const n of nodes.dlq) {
      const s = state.queues.get(n.name)?.info?.stats;
      const line = s && depthOf(n.name) ? 'oldest ' + age(s.oldest_age_seconds) : 'empty';
      boxes.append(node('dlq', n.name, G.x.dlq, n.y, G.w.dlq, line, 'all', depthOf(n.name)));
      for (const src of n.sources)
        if (queueY.has(src))
          edges.append(edge(G.x.queue + G.w.queue, queueY.get(src), G.x.dlq, n.y, 'dead'));
    }
    root.replaceChildren(edges, boxes);
  }

  // ---- charts ----------------------------------------------------------------------------

  // Draws series (arrays of numbers or null) into canvas as lines, the first over a light area,
  // scaled to a shared maximum and right-aligned (the newest point at the right edge). colors:
  // one per series, as #rrggbb.
  function drawSpark(canvas, series, colors) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 150;
    const h = canvas.clientHeight || 34;
    if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
      canvas.width = w * dpr;
      canvas.height = h * dpr;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#eef1f6';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, h - 0.5);
    ctx.lineTo(w, h - 0.5);
    ctx.stroke();
    let max = 1;
    for (const s of series) for (const v of s) if (v !== null && v > max) max = v;
    // The window is the history there is (at least 10 polls), so a page just opened shows its
    // first points across the chart rather than in a corner.
    const span = Math.max(10, ...series.map((s) => s.length));
    const step = w / (span - 1);
    series.forEach((s, i) => {
      const off = span - s.length;
      const pts = s.map((v, j) => (v === null ? null : [(off + j) * step, h - 2 - (v / max) * (h - 6)]));
      ctx.beginPath();
      let started = false;
      for (const p of pts) {
        if (!p) continue;
        if (started) ctx.lineTo(p[0], p[1]);
        else ctx.moveTo(p[0], p[1]);
        started = true;
      }
      ctx.strokeStyle = colors[i];
      ctx.lineWidth = 1.6;
      ctx.stroke();
      const real = pts.filter(Boolean);
      if (i === 0 && real.length > 1) {
        ctx.lineTo(real[real.length - 1][0], h);
        ctx.lineTo(real[0][0], h);
        ctx.closePath();
        ctx.fillStyle = colors[i] + '22';
        ctx.fill();
      }
    });
  }

  // ---- tables ----------------------------------------------------------------------------

  function emptyRow(tbody, cols, text) {
    const td = el('td', 'empty', text);
    td.colSpan = cols;
    tbody.replaceChildren(el('tr', null, td));
  }

  // Replaces the rows of table id with one row per item; rows of items not shown before flash.
  function fillTable(id, items, key, makeCells, cols, emptyText) {
    const tbody = $(id).tBodies[0];
    if (!items.length) return emptyRow(tbody, cols, emptyText);
    const seen = state.seen[id];
    const rows = items.map((item) => {
      const tr = el('tr', seen && !seen.has(item[key]) ? 'fresh' : null, ...makeCells(item));
      tr.dataset[id.replace(/s$/, '') + 'Id'] = item[key];
      return tr;
    });
    tbody.replaceChildren(...rows);
    // the rows shown now (all ever seen grew without bound on a screen left open)
    state.seen[id] = new Set(items.map((i) => i[key]));
  }

  function queueRow(name) {
    let r = state.queueRows.get(name);
    if (r) return r;
    const cells = {
      name: el('td', 'clip', name),
      available: el('td', 'num'),
      inflight: el('td', 'num'),
      delayed: el('td', 'num'),
      oldest: el('td', 'num'),
      depth: el('canvas', 'spark'),
      tput: el('canvas', 'spark'),
      tputNow: el('span', 'rate'),
    };
    cells.name.title = name;
    const tr = el(
      'tr',
      null,
      cells.name,
      cells.available,
      cells.inflight,
      cells.delayed,
      cells.oldest,
      el('td', null, cells.depth),
      el('td', null, el('div', 'chartcell', cells.tput, cells.tputNow)),
    );
    tr.dataset.queue = name;
    r = { tr, cells };
    state.queueRows.set(name, r);
    return r;
  }

  function renderQueues() {
    const dlqs = deadLetterSources();
    const names = state.queueNames.filter((n) => state.queues.has(n) && !dlqs.has(n));
    const tbody = $('queues').tBodies[0];
    if (!names.length) return emptyRow(tbody, 7, 'No queues yet.');
    const rows = names.map((name) => {
      const q = state.queues.get(name);
      const s = q.info.stats;
      const r = queueRow(name);
      r.cells.available.textContent = s.available + (s.approximate ? '≈' : '');
      r.cells.inflight.textContent = s.in_flight;
      r.cells.delayed.textContent = s.delayed;
      r.cells.oldest.textContent = s.available + s.in_flight + s.delayed ? age(s.oldest_age_seconds) : '–';
      const last = q.hist[q.hist.length - 1];
      r.cells.tputNow.textContent =
        last && last.in !== null ? `${rate(last.in)} in\n${rate(last.out)} out` : '…';
      return r;
    });
    tbody.replaceChildren(...rows.map((r) => r.tr));
    for (const name of names) {
      const q = state.queues.get(name);
      const r = state.queueRows.get(name);
      drawSpark(r.cells.depth, [q.hist.map((p) => p.depth)], ['#2b7de9']);
      drawSpark(r.cells.tput, [q.hist.map((p) => p.in), q.hist.map((p) => p.out)], ['#2b7de9', '#1f9d55']);
    }
  }

  function renderDlqs() {
    const dlqs = deadLetterSources();
    const names = state.queueNames.filter((n) => dlqs.has(n) && state.queues.has(n));
    const tbody = $('dlqs').tBodies[0];
    if (!names.length) return emptyRow(tbody, 5, 'No dead-letter queues.');
    const rows = names.map((name) => {
      const s = state.queues.get(name).info.stats;
      const n = depthOf(name);
      const button = el('button', 'small danger', 'Redrive');
      button.type = 'button';
      const running = state.redriving.has(name); // a poll must not offer a second one
      button.disabled = running || !s.available;
      if (running) button.textContent = 'Redriving…';
      button.dataset.redrive = name;
      button.addEventListener('click', () => redrive(name, button));
      const from = el('td', 'clip muted', dlqs.get(name).join(', '));
      from.title = dlqs.get(name).join(', ');
      const tr = el(
        'tr',
        null,
        el('td', 'clip', name),
        from,
        el('td', 'num dlq-count' + (n ? ' hot' : ''), n),
        el('td', 'num', n ? age(s.oldest_age_seconds) : '–'),
        el('td', 'num', button),
      );
      tr.dataset.dlq = name;
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  async function redrive(name, button) {
    button.disabled = true;
    button.textContent = 'Redriving…';
    state.redriving.add(name);
    try {
      const body = await api(
        'POST',
        '/queues/' + encodeURIComponent(name) + ':redrive',
        {},
        REDRIVE_TIMEOUT_MS,
      );
      $('dlq-note').textContent = `Moved ${body.moved} message${body.moved === 1 ? '' : 's'} out of ${name}.`;
    } catch (e) {
      if (e instanceof AuthError) return signOut(e.message);
      $('dlq-note').textContent = `Redrive of ${name} failed: ${e.message}`;
    } finally {
      state.redriving.delete(name);
    }
    refresh();
  }

  function renderRides(rides) {
    fillTable('rides', rides, 'id', (r) => [
      el('td', 'nowrap', clock(r.submitted_at)),
      idCell(r.id),
      el('td', 'clip', `${r.from} → ${r.to}`),
      el('td', 'clip', r.customer),
      el('td', 'clip muted', r.unicorn || '–'),
      el('td', 'num', r.distance),
      el('td', 'num', money(r.fare)),
    ], 7, 'No rides yet.');
  }

  function renderTasks(tasks) {
    fillTable('tasks', tasks, 'id', (t) => {
      let detail = t.error ? t.error.title : '';
      if (t.status === 'succeeded') detail = 'prebooked';
      const d = el('td', 'clip muted', detail);
      if (t.error) d.title = `${t.error.title}: ${t.error.detail}`;
      return [el('td', 'nowrap', clock(t.submitted_at)), idCell(t.id), el('td', null, pill(t.status)), d];
    }, 4, 'No tasks yet.');
  }

  function renderRfqs(rfqs) {
    fillTable('rfqs', rfqs, 'id', (r) => {
      const status = r.status === 'done' ? pill(r.completion_reason === 'timeout' ? 'timeout' : 'done', 'done') : pill('running');
      return [
        el('td', 'nowrap', clock(r.submitted_at)),
        idCell(r.id),
        el('td', 'clip', r.customer),
        el('td', null, status),
        el('td', 'num', `${r.response_count}/${r.expected_responses}`),
      ];
    }, 5, 'No RFQs yet.');
  }

  function renderFares(fares) {
    fillTable('fares', fares, 'fare_id', (f) => {
      const steps = el('span', 'steps');
      for (const s of f.steps || []) {
        const box = el('span', 'step ' + s.status);
        box.title = `${s.name}: ${s.status}`;
        steps.append(box);
      }
      const status = el('td', 'nowrap', pill(f.status));
      if (f.needs_operator) status.append(' ', pill('operator', 'operator'));
      return [el('td', 'nowrap', clock(f.created_at)), idCell(f.fare_id), el('td', 'num', money(f.amount)), status, el('td', null, steps)];
    }, 5, 'No fares yet.');
  }

  function renderTiles() {
    const dlqs = deadLetterSources();
    let available = 0, inflight = 0, delayed = 0, dead = 0, rin = null, rout = null;
    for (const [name, q] of state.queues) {
      const s = q.info && q.info.stats;
      if (!s) continue;
      if (dlqs.has(name)) dead += s.available + s.in_flight + s.delayed;
      else {
        available += s.available;
        inflight += s.in_flight;
        delayed += s.delayed;
      }
      const last = q.hist[q.hist.length - 1];
      if (last && last.in !== null) {
        rin = (rin || 0) + last.in;
        rout = (rout || 0) + last.out;
      }
    }
    $('t-available').textContent = available;
    $('t-inflight').textContent = inflight;
    $('t-delayed').textContent = delayed;
    $('t-dead').textContent = dead;
    $('t-dead').parentElement.classList.toggle('hot', dead > 0);
    $('t-in').textContent = rate(rin);
    $('t-out').textContent = rate(rout);
  }

  // ---- the poll loop ---------------------------------------------------------------------

  function setLive(cls, text) {
    $('live').className = 'live ' + cls;
    $('live-text').textContent = text;
  }

  function record(rates) {
    for (const [name, q] of state.queues) {
      const r = rates && rates.get(name);
      q.hist.push({ depth: depthOf(name), in: r ? r.in : null, out: r ? r.out : null });
      if (q.hist.length > HISTORY) q.hist.shift();
    }
  }

  async function poll() {
    if (state.tick % TOPOLOGY_EVERY === 0 || !state.queueNames.length) await loadTopology();
    state.tick++;
    // each panel on its own: one list that fails (a 429, a 503) leaves the others live
    const results = await Promise.allSettled([
      loadQueueStats(),
      loadRates(),
      loadList('/rides?order=newest', 'rides', LIST_LIMIT.rides),
      loadList('/tasks', 'tasks', LIST_LIMIT.tasks),
      loadList('/rfqs', 'rfqs', LIST_LIMIT.rfqs),
      loadList('/fares', 'fares', LIST_LIMIT.fares),
    ]);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    const auth = failed.find((e) => e instanceof AuthError);
    if (auth) throw auth;
    const ok = (i) => results[i].status === 'fulfilled';
    if (ok(0) && ok(1)) {
      record(results[1].value);
      renderTopology();
      renderQueues();
      renderDlqs();
      renderTiles();
    }
    const lists = [renderRides, renderTasks, renderRfqs, renderFares];
    lists.forEach((render, k) => ok(k + 2) && render(results[k + 2].value));
    if (failed.length) {
      const err = new Error(failed[0].message);
      err.partial = failed.length < results.length;
      throw err;
    }
  }

  async function refresh() {
    if (state.busy || !state.token) return;
    state.busy = true;
    const session = state.session;
    try {
      await poll();
      if (session !== state.session) return;
      setLive(state.paused ? 'paused' : 'ok', (state.paused ? 'paused · ' : 'live · ') + clock(new Date()));
      document.body.dataset.loaded = 'true';
    } catch (e) {
      if (session !== state.session) return; // signed out meanwhile: nothing to report
      if (e instanceof AuthError) signOut(e.message);
      else setLive('bad', e.partial ? 'partly stale: ' + e.message : 'unreachable, retrying');
    } finally {
      state.busy = false;
    }
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = setInterval(() => {
      if (!state.paused) refresh();
    }, POLL_MS);
  }

  // ---- sign-in ---------------------------------------------------------------------------

  function showLogin(message) {
    $('dashboard').hidden = true;
    $('session').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  function showDashboard() {
    $('login').hidden = true;
    $('session').hidden = false;
    $('dashboard').hidden = false;
  }

  function signOut(message) {
    state.session++;
    clearInterval(state.timer);
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.counters = null;
    state.queues.clear();
    state.queueRows.clear();
    state.tick = 0;
    showLogin(message);
  }

  async function start(token) {
    state.token = token;
    try {
      await api('GET', '/tasks?limit=1'); // admin only: checks the token and its role
    } catch (e) {
      state.token = null;
      if (e instanceof AuthError) return signOut(e.message);
      return showLogin('The gateway did not answer: ' + e.message);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    showDashboard();
    setLive('', 'loading');
    await refresh();
    schedule();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim();
      $('token').value = '';
      if (token) start(token);
    });
    $('signout').addEventListener('click', () => signOut(''));
    $('pause').addEventListener('click', () => {
      state.paused = !state.paused;
      $('pause').textContent = state.paused ? 'Resume' : 'Pause';
      setLive(state.paused ? 'paused' : 'ok', state.paused ? 'paused' : 'live');
      if (!state.paused) refresh();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) start(saved);
    else showLogin('');
  });
})();
