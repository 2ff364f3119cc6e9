// An in-memory stand-in for the Capy API contract the portal is built against, with the same
// static-file headers as `capy serve`'s /portal/. For developing and checking the UI while the
// real routes are being built (`npm run e2e:mock`); the real suite runs against `capy serve`
// (tests/tests/portal.rs). It really POSTs to endpoint URLs, so loopback receivers work, and
// it offers two of its own: /_receiver/ok (200) and /_receiver/fail (503).
//
//   node tests/mock-api.mjs [port]   → prints {"base", "api_key", "org"} as one JSON line

import { createServer } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join, normalize, extname } from 'node:path';
import { randomBytes } from 'node:crypto';

const DIST = new URL('../dist/', import.meta.url).pathname;
const ORG = 'org_mock';
const API_KEY = `capy_live_mock${randomBytes(6).toString('hex')}`;
const RETRY = [0, 200, 200];
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let seq = 0;
const ulid = (p) => `${p}_${Date.now().toString(36).padStart(9, '0')}${(seq++).toString(36).padStart(4, '0')}${randomBytes(3).toString('hex')}`;
const now = () => new Date().toISOString();

const sessions = new Map(); // token → session
const endpoints = new Map(); // id → endpoint
const deliveries = new Map(); // id → delivery (with attempt_log)
const events = new Map(); // id → event
const jobs = new Map();

class HttpError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}
const bad = (m) => new HttpError(400, m);

function health(ep) {
  if (!ep.is_active) return 'disabled';
  const mine = [...deliveries.values()].filter((d) => d.endpoint_id === ep.id).flatMap((d) => d.attempt_log);
  mine.sort((a, b) => a.started_at.localeCompare(b.started_at));
  const last5 = mine.slice(-5);
  if (last5.length >= 5 && last5.every((a) => a.error)) return 'failing';
  if (mine.some((a) => a.error && Date.now() - Date.parse(a.started_at) < 864e5)) return 'degraded';
  return 'healthy';
}
const epView = (ep) => ({ ...ep, health: health(ep), failing_since: null, disable_at: null });
const dlvView = ({ attempt_log, ...d }) => d;

function checkUrl(url) {
  if (typeof url !== 'string') throw bad('missing field `url`');
  if (url.trim() !== url) throw bad('url must not have leading or trailing whitespace');
  let u;
  try {
    u = new URL(url);
  } catch {
    throw bad('url is not a valid absolute URL (relative URL without a base)');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw bad(`url scheme "${u.protocol.slice(0, -1)}" is not supported; use https`);
  if (!u.hostname) throw bad('url must have a host');
}
function checkTypes(types) {
  if (!Array.isArray(types)) throw bad('invalid request body: event_types must be a list');
  for (const t of types)
    if (!/^[A-Za-z0-9_.*-]{1,128}$/.test(t))
      throw bad(`each event_types entry ${JSON.stringify(t)} may contain only letters, digits, '_', '.', '-' and '*'`);
}
function checkDescription(d) {
  if (typeof d !== 'string') throw bad('invalid request body: description must be a string');
  if (d.length > 1024) throw bad('description must be at most 1024 characters');
}
const matches = (types, t) =>
  !types.length || types.some((p) => p === '*' || p === t || (p.endsWith('.*') && t.startsWith(p.slice(0, -1))));

async function attempt(d) {
  const ep = endpoints.get(d.endpoint_id);
  const started = Date.now();
  const entry = { attempt: d.attempts + 1, started_at: new Date(started).toISOString(), duration_ms: 0, response_status: null, error: null, response_excerpt: null };
  if (!ep || !ep.is_active) {
    d.state = 'failed';
    d.last_error = ep ? 'endpoint disabled' : 'endpoint deleted';
    return;
  }
  try {
    const r = await fetch(ep.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': d.id },
      body: JSON.stringify({ id: d.event_id, type: d.event_type, timestamp: d.created_at, data: d.payload }),
      redirect: 'manual',
      signal: AbortSignal.timeout(5000),
    });
    entry.response_status = r.status;
    entry.response_excerpt = (await r.text()).slice(0, 256);
    if (r.status < 200 || r.status > 299) entry.error = `HTTP ${r.status}`;
  } catch (e) {
    entry.error = e.name === 'TimeoutError' ? 'timed out after 5 s' : 'connection refused';
  }
  entry.duration_ms = Date.now() - started;
  d.attempt_log.push(entry);
  d.attempts += 1;
  d.response_status = entry.response_status;
  d.updated_at = now();
  if (!entry.error) {
    d.state = 'delivered';
    d.delivered_at = now();
    d.last_error = null;
    d.next_attempt_at = null;
  } else {
    d.last_error = entry.error;
    if (d.attempts >= d.max_attempts) {
      d.state = 'failed';
      d.next_attempt_at = null;
    } else schedule(d, RETRY[RETRY.length - (d.max_attempts - d.attempts)] ?? 200);
  }
}
function schedule(d, ms) {
  d.next_attempt_at = new Date(Date.now() + ms).toISOString();
  setTimeout(() => attempt(d), ms);
}
function newDelivery(ep, ev) {
  const d = {
    id: ulid('dlv'), endpoint_id: ep.id, organization_id: ORG, event_id: ev.id, event_type: ev.event_type,
    payload: ev.payload, state: 'pending', attempts: 0, max_attempts: RETRY.length, next_attempt_at: now(),
    delivered_at: null, response_status: null, last_error: null, created_at: now(), updated_at: now(), attempt_log: [],
  };
  deliveries.set(d.id, d);
  schedule(d, 0);
  return d;
}
function retryDelivery(d) {
  // As the service: a finished delivery gets a fresh schedule on top of the attempts spent.
  d.max_attempts = d.state === 'pending' ? Math.max(d.max_attempts, d.attempts + 1) : d.attempts + RETRY.length;
  d.state = 'pending';
  d.updated_at = now();
  schedule(d, 0);
}
function publish(body) {
  const ev = {
    id: ulid('evt'), organization_id: ORG, event_type: body.event_type, payload: body.payload ?? null,
    idempotency_key: body.idempotency_key ?? null, created_at: now(), fan_out: { state: 'done', endpoints: 0 },
  };
  events.set(ev.id, ev);
  const ids = [];
  for (const ep of endpoints.values()) if (ep.is_active && matches(ep.event_types, ev.event_type)) ids.push(newDelivery(ep, ev).id);
  ev.fan_out.endpoints = ids.length;
  return { event_id: ev.id, delivery_ids: ids };
}
function page(list, query, key) {
  const limit = Math.min(100, Number(query.get('limit') || 50));
  const cursor = query.get('cursor');
  let start = 0;
  if (cursor) {
    start = list.findIndex((x) => x[key] === cursor) + 1;
    if (start === 0) throw bad('cursor is not one this API returned');
  }
  const items = list.slice(start, start + limit);
  const next = start + limit < list.length ? items[items.length - 1][key] : null;
  return [items, next];
}
function stats(epId, query) {
  const period = query.get('period') || 'hour';
  const step = period === 'day' ? 864e5 : 36e5;
  const until = query.get('until') ? Date.parse(query.get('until')) : Date.now();
  const since = query.get('since') ? Date.parse(query.get('since')) : until - 864e5;
  if (Number.isNaN(since) || Number.isNaN(until)) throw bad('since and until must be RFC 3339 times');
  if (until - since > 31 * 864e5) throw bad('the window may span at most 30 days');
  const buckets = new Map();
  const totals = { delivered: 0, failed: 0, attempts: 0 };
  for (const d of deliveries.values()) {
    if (d.endpoint_id !== epId) continue;
    for (const a of d.attempt_log) {
      const t = Date.parse(a.started_at);
      if (t < since || t >= until) continue;
      const s = Math.floor(t / step) * step;
      const b = buckets.get(s) || { start: new Date(s).toISOString(), delivered: 0, failed: 0, attempts: 0, ms: [] };
      b.attempts++;
      b.ms.push(a.duration_ms);
      totals.attempts++;
      const last = a === d.attempt_log[d.attempt_log.length - 1];
      if (last && d.state === 'delivered') (b.delivered++, totals.delivered++);
      if (last && d.state === 'failed') (b.failed++, totals.failed++);
      buckets.set(s, b);
    }
  }
  const q = (ms, p) => ms.sort((x, y) => x - y)[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  return {
    period,
    buckets: [...buckets.values()].sort((a, b) => a.start.localeCompare(b.start)).map(({ ms, ...b }) => ({ ...b, p50_ms: q(ms, 0.5), p95_ms: q(ms, 0.95) })),
    totals,
  };
}
function replayMatches(epId, body) {
  const since = Date.parse(body.since);
  if (Number.isNaN(since)) throw bad('since must be an RFC 3339 time');
  const until = body.until ? Date.parse(body.until) : Infinity;
  const states = body.states || ['failed'];
  return [...deliveries.values()].filter(
    (d) => d.endpoint_id === epId && states.includes(d.state) && Date.parse(d.created_at) >= since && Date.parse(d.created_at) < until &&
      (!body.event_types || body.event_types.includes(d.event_type)),
  );
}

function auth(req, org) {
  const h = req.headers.authorization || '';
  const token = h.startsWith('Bearer ') ? h.slice(7) : '';
  if (token === API_KEY) return { kind: 'key', caps: new Set(['read', 'manage_endpoints', 'replay']) };
  const s = sessions.get(token);
  if (!s || s.revoked || Date.parse(s.expires_at) < Date.now()) throw new HttpError(401, 'missing or invalid credential');
  if (org && org !== s.organization_id) throw new HttpError(403, 'this credential is for another organization');
  return { kind: 'portal', session: s, caps: new Set(s.capabilities) };
}
function need(who, cap) {
  if (!who.caps.has(cap)) throw new HttpError(403, `this portal session may not do that (needs ${cap})`);
}
function endpointOr404(id) {
  const ep = endpoints.get(id);
  if (!ep) throw new HttpError(404, 'no such endpoint');
  return ep;
}

async function api(req, url, body) {
  const p = url.pathname.replace(/\/$/, '');
  const m = req.method;
  let r;
  if (p === '/v1/portal-session' && m === 'GET') {
    const who = auth(req);
    if (who.kind !== 'portal') throw new HttpError(401, 'not a portal session token');
    const { token, revoked, ...view } = who.session;
    return [200, { portal_session: view }];
  }
  if (!(r = p.match(/^\/v1\/organizations\/([^/]+)(\/.*)?$/))) throw new HttpError(404, 'no such route');
  const org = decodeURIComponent(r[1]);
  const rest = r[2] || '';
  const who = auth(req, org);
  if (org !== ORG) throw new HttpError(403, 'this credential is for another organization');
  const seg = rest.split('/').filter(Boolean).map(decodeURIComponent);
  const route = `${m} ${seg.map((s, i) => (i % 2 ? ':' : s)).join('/')}`;
  const q = url.searchParams;
  switch (route) {
    case 'POST portal-sessions': {
      if (who.kind !== 'key') throw new HttpError(403, 'portal sessions are minted with an API key');
      const caps = body?.capabilities ?? ['read', 'manage_endpoints', 'replay'];
      const token = `capy_portal_${randomBytes(24).toString('hex')}`;
      const s = { id: ulid('ps'), organization_id: ORG, capabilities: caps, created_at: now(), expires_at: new Date(Date.now() + (body?.expires_in ?? 86400) * 1000).toISOString(), token };
      sessions.set(token, s);
      const { token: _t, ...view } = s;
      return [201, { portal_session: view, token, url: `http://${req.headers.host}/portal/#token=${token}` }];
    }
    case 'DELETE portal-sessions/:': {
      if (who.kind !== 'key') throw new HttpError(403, 'portal sessions are revoked with an API key');
      for (const s of sessions.values()) if (s.id === seg[1]) s.revoked = true;
      return [200, { deleted: true }];
    }
    case 'GET webhook-endpoints':
      return [200, { webhook_endpoints: [...endpoints.values()].map(epView) }];
    case 'POST webhook-endpoints': {
      need(who, 'manage_endpoints');
      checkUrl(body?.url);
      if (body.description !== undefined) checkDescription(body.description);
      if (body.event_types !== undefined) checkTypes(body.event_types);
      const ep = { id: ulid('ep'), organization_id: ORG, url: body.url, description: body.description ?? '', event_types: body.event_types ?? [], is_active: true, created_at: now(), updated_at: now() };
      endpoints.set(ep.id, ep);
      return [201, { webhook_endpoint: epView(ep), plaintext_secret: `whsec_${randomBytes(32).toString('base64')}` }];
    }
    case 'PATCH webhook-endpoints/:': {
      need(who, 'manage_endpoints');
      const ep = endpointOr404(seg[1]);
      if (body.url !== undefined) checkUrl(body.url);
      if (body.description !== undefined) checkDescription(body.description);
      if (body.event_types !== undefined) checkTypes(body.event_types);
      for (const k of ['url', 'description', 'event_types', 'is_active']) if (body[k] !== undefined) ep[k] = body[k];
      ep.updated_at = now();
      return [200, { webhook_endpoint: epView(ep) }];
    }
    case 'DELETE webhook-endpoints/:':
      need(who, 'manage_endpoints');
      endpointOr404(seg[1]);
      endpoints.delete(seg[1]);
      return [200, { deleted: true }];
    case 'POST webhook-endpoints/:/rotate-secret':
      need(who, 'manage_endpoints');
      return [200, { webhook_endpoint: epView(endpointOr404(seg[1])), plaintext_secret: `whsec_${randomBytes(32).toString('base64')}` }];
    case 'GET webhook-endpoints/:/deliveries': {
      endpointOr404(seg[1]);
      const st = q.get('state');
      const list = [...deliveries.values()].filter((d) => d.endpoint_id === seg[1] && (!st || d.state === st)).reverse();
      const [items, next] = page(list, q, 'id');
      return [200, { deliveries: items.map(dlvView), next_cursor: next }];
    }
    case 'GET webhook-endpoints/:/deliveries/:': {
      const d = deliveries.get(seg[3]);
      if (!d || d.endpoint_id !== seg[1]) throw new HttpError(404, 'no such delivery');
      return [200, { delivery: d }];
    }
    case 'POST webhook-endpoints/:/deliveries/:/retry': {
      need(who, 'replay');
      const d = deliveries.get(seg[3]);
      if (!d || d.endpoint_id !== seg[1]) throw new HttpError(404, 'no such delivery');
      retryDelivery(d);
      return [202, { delivery: dlvView(d) }];
    }
    case 'GET webhook-endpoints/:/stats':
      endpointOr404(seg[1]);
      return [200, { stats: stats(seg[1], q) }];
    case 'POST webhook-endpoints/:/test': {
      need(who, 'manage_endpoints');
      const ep = endpointOr404(seg[1]);
      const ev = { id: ulid('evt'), organization_id: ORG, event_type: body?.event_type || 'capy.test', payload: body?.payload ?? { test: true }, idempotency_key: null, created_at: now(), fan_out: { state: 'done', endpoints: 1 } };
      events.set(ev.id, ev);
      return [202, { delivery: dlvView(newDelivery(ep, ev)) }];
    }
    case 'POST webhook-endpoints/:/replay': {
      need(who, 'replay');
      endpointOr404(seg[1]);
      const found = replayMatches(seg[1], body || {});
      if (body?.dry_run) return [200, { matched: found.length }];
      if ([...jobs.values()].some((j) => j.endpoint_id === seg[1] && ['queued', 'running'].includes(j.state)))
        throw new HttpError(409, 'a replay of this endpoint is already running');
      const job = { id: ulid('job'), kind: 'replay', organization_id: ORG, endpoint_id: seg[1], state: 'running', params: body, matched: found.length, processed: 0, created_at: now(), updated_at: now(), finished_at: null, error: null };
      jobs.set(job.id, job);
      const step = () => {
        if (job.state !== 'running') return;
        const d = found[job.processed];
        if (!d) {
          job.state = 'succeeded';
          job.finished_at = now();
          return;
        }
        retryDelivery(d);
        job.processed++;
        job.updated_at = now();
        setTimeout(step, 150);
      };
      setTimeout(step, 150);
      return [202, { job }];
    }
    case 'GET jobs/:': {
      const j = jobs.get(seg[1]);
      if (!j) throw new HttpError(404, 'no such job');
      return [200, { job: j }];
    }
    case 'POST jobs/:/cancel': {
      need(who, 'replay');
      const j = jobs.get(seg[1]);
      if (!j) throw new HttpError(404, 'no such job');
      if (['queued', 'running'].includes(j.state)) Object.assign(j, { state: 'canceled', finished_at: now() });
      return [200, { job: j }];
    }
    case 'GET events': {
      const t = q.get('event_type');
      const list = [...events.values()].filter((e) => !t || e.event_type === t).reverse();
      const [items, next] = page(list, q, 'id');
      return [200, { events: items, next_cursor: next }];
    }
    case 'POST events':
      if (who.kind !== 'key') throw new HttpError(403, 'events are published with an API key');
      return [202, publish(body)];
    case 'GET events/:': {
      const ev = events.get(seg[1]);
      if (!ev) throw new HttpError(404, 'no such event');
      const ds = [...deliveries.values()].filter((d) => d.event_id === ev.id).map(({ id, endpoint_id, state, attempts, response_status, last_error, delivered_at, next_attempt_at }) => ({ id, endpoint_id, state, attempts, response_status, last_error, delivered_at, next_attempt_at }));
      return [200, { event: ev, deliveries: ds }];
    }
    case 'POST events/:/deliveries': {
      need(who, 'replay');
      const ev = events.get(seg[1]);
      if (!ev) throw new HttpError(404, 'no such event');
      const ep = endpointOr404(body?.endpoint_id);
      return [202, { delivery: dlvView(newDelivery(ep, ev)) }];
    }
    default:
      throw new HttpError(404, 'no such route');
  }
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

function serveStatic(url, res) {
  const rel = url.pathname.slice('/portal/'.length);
  const candidate = normalize(join(DIST, rel));
  let file = join(DIST, 'index.html');
  if (rel && candidate.startsWith(DIST) && existsSync(candidate) && statSync(candidate).isFile()) file = candidate;
  else if (rel.startsWith('assets/')) {
    res.writeHead(404, { 'content-type': 'application/json' });
    return res.end('{"error":"no such file"}');
  }
  res.writeHead(200, {
    'content-type': TYPES[extname(file)] || 'application/octet-stream',
    'cache-control': file.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  res.end(readFileSync(file));
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/portal') {
    res.writeHead(308, { location: '/portal/' });
    return res.end();
  }
  if (url.pathname.startsWith('/portal/')) return serveStatic(url, res);
  if (url.pathname.startsWith('/_receiver/')) {
    for await (const _ of req);
    const ok = url.pathname.endsWith('/ok');
    res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
    return res.end(ok ? 'thanks' : 'unavailable');
  }
  let raw = '';
  for await (const c of req) raw += c;
  let body;
  try {
    body = raw ? JSON.parse(raw) : undefined;
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: 'request body is not valid JSON' }));
  }
  try {
    const [status, json] = await api(req, url, body);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(json));
  } catch (e) {
    const status = e.status || 500;
    if (status === 500) console.error(e);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: status === 500 ? 'internal error' : e.message }));
  }
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  const { port } = server.address();
  console.log(JSON.stringify({ base: `http://127.0.0.1:${port}`, api_key: API_KEY, org: ORG }));
});
