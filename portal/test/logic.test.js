// Unit checks of the portal's pure logic (node --test; no browser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeToken, STORAGE_KEY } from '../src/session.js';
import { createApi, query, ApiError } from '../src/api.js';
import { fieldForError, parseEventTypes } from '../src/fields.js';
import { fillBuckets, linePath, niceMax, stackedBars } from '../src/chart.js';
import { fmtMs, prettyJson, replaySince, statsWindow, HOUR, DAY } from '../src/format.js';
import { matchRoute, paths } from '../src/router.js';

function fakeWindow(href) {
  const url = new URL(href);
  const store = new Map();
  const calls = [];
  return {
    calls,
    location: {
      get hash() { return url.hash; },
      get pathname() { return url.pathname; },
      get search() { return url.search; },
    },
    sessionStorage: {
      getItem: (k) => (store.has(k) ? store.get(k) : null),
      setItem: (k, v) => store.set(k, String(v)),
      removeItem: (k) => store.delete(k),
    },
    history: {
      state: null,
      replaceState: (_s, _t, to) => {
        calls.push(to);
        const next = new URL(to, url);
        url.hash = next.hash;
        url.pathname = next.pathname;
        url.search = next.search;
      },
    },
    url,
  };
}

test('the token moves from the fragment to sessionStorage and the fragment is cleared', () => {
  const w = fakeWindow('http://h/portal/#token=capy_portal_abc');
  assert.equal(takeToken(w), 'capy_portal_abc');
  assert.equal(w.sessionStorage.getItem(STORAGE_KEY), 'capy_portal_abc');
  assert.deepEqual(w.calls, ['/portal/']);
  assert.equal(w.url.href, 'http://h/portal/');
  // A reload (no fragment) keeps the session from storage.
  assert.equal(takeToken(w), 'capy_portal_abc');
  assert.equal(w.calls.length, 1);
});

test('no token anywhere is null; an empty token is not stored', () => {
  assert.equal(takeToken(fakeWindow('http://h/portal/')), null);
  const w = fakeWindow('http://h/portal/#token=');
  assert.equal(takeToken(w), null);
  assert.equal(w.url.hash, '');
});

test('API errors: the sentence, and 401 ends the session', async () => {
  let ended = 0;
  const answers = [
    [200, { portal_session: { id: 'ps_1', organization_id: 'org 1', capabilities: ['read'] } }],
    [400, { error: 'url must use https' }],
    [401, { error: 'invalid credential' }],
    [500, 'not json'],
  ];
  const seen = [];
  const fetchImpl = async (path, init) => {
    seen.push([init.method, path, init.headers.Authorization, init.body]);
    const [status, body] = answers.shift();
    return { status, ok: status < 300, text: async () => (typeof body === 'string' ? body : JSON.stringify(body)) };
  };
  const api = createApi({ token: 'capy_portal_x', fetchImpl, onEnded: () => ended++ });
  const s = await api.session();
  assert.equal(s.id, 'ps_1');
  await assert.rejects(api.createEndpoint({ url: 'http://x' }), (e) => e instanceof ApiError && e.status === 400 && e.message === 'url must use https');
  await assert.rejects(api.endpoints(), (e) => e.status === 401);
  assert.equal(ended, 1);
  await assert.rejects(api.endpoints(), (e) => e.status === 500 && /500/.test(e.message));
  assert.deepEqual(seen[0], ['GET', '/v1/portal-session', 'Bearer capy_portal_x', undefined]);
  assert.equal(seen[1][1], '/v1/organizations/org%201/webhook-endpoints');
  assert.equal(seen[1][3], '{"url":"http://x"}');
});

test('query strings skip empty values', () => {
  assert.equal(query({ limit: 20, cursor: null, state: '' }), '?limit=20');
  assert.equal(query({}), '');
  assert.equal(query({ event_type: 'a b&c' }), '?event_type=a+b%26c');
});

test('validation sentences map to their field', () => {
  assert.equal(fieldForError('url must use https'), 'url');
  assert.equal(fieldForError('missing field `url`'), 'url');
  assert.equal(fieldForError('url is not a valid absolute URL (relative URL without a base)'), 'url');
  assert.equal(fieldForError('example.com resolves to a refused address: loopback'), 'url');
  assert.equal(fieldForError('could not resolve host nope.invalid'), 'url');
  assert.equal(fieldForError('description must be at most 1024 characters'), 'description');
  assert.equal(fieldForError('event_types may list at most 50 names'), 'event_types');
  assert.equal(fieldForError('each event_types entry "a b" may contain only letters'), 'event_types');
  assert.equal(fieldForError('event_types lists "a" twice'), 'event_types');
  assert.equal(fieldForError('request body is not valid JSON'), null);
  assert.equal(fieldForError('unknown field `x`, expected one of `url`, `description`'), null);
  assert.deepEqual(parseEventTypes(' invoice.*, customer.created  x,,'), ['invoice.*', 'customer.created', 'x']);
  assert.deepEqual(parseEventTypes(''), []);
});

test('stats windows are whole buckets', () => {
  const now = Date.parse('2026-12-01T09:14:03Z');
  const w = statsWindow('24h', now);
  assert.equal(w.until, '2026-12-01T10:00:00.000Z');
  assert.equal(w.since, '2026-11-30T10:00:00.000Z');
  assert.equal(w.period, 'hour');
  assert.equal(statsWindow('7d', now).period, 'hour');
  const m = statsWindow('30d', now);
  assert.equal(m.period, 'day');
  assert.equal(Date.parse(m.until) - Date.parse(m.since), 30 * DAY);
});

test('replay presets and custom times', () => {
  const now = Date.parse('2026-12-01T09:00:00Z');
  assert.equal(replaySince('8h', '', now), '2026-12-01T01:00:00.000Z');
  assert.equal(replaySince('7d', '', now), '2026-11-24T09:00:00.000Z');
  assert.equal(replaySince('custom', '', now), null);
  assert.equal(replaySince('custom', 'garbage', now), null);
  assert.ok(replaySince('custom', '2026-11-30T10:00', now));
});

test('buckets fill a full grid; bars and lines scale', () => {
  const since = Date.parse('2026-12-01T00:00:00Z');
  const slots = fillBuckets(
    [
      { start: '2026-12-01T01:00:00Z', delivered: 3, failed: 1, attempts: 5, p50_ms: 20, p95_ms: 80 },
      { start: '2026-11-30T01:00:00Z', delivered: 99 },
    ],
    since,
    since + 4 * HOUR,
    HOUR,
  );
  assert.equal(slots.length, 4);
  assert.deepEqual([slots[0].delivered, slots[1].delivered, slots[1].failed], [0, 3, 1]);
  assert.equal(slots[0].p50_ms, null);
  const bars = stackedBars(slots, 40, 10, 0);
  assert.equal(bars[1].delivered.h, 7.5);
  assert.equal(bars[1].failed.h, 2.5);
  assert.equal(bars[1].failed.y, 0);
  assert.equal(stackedBars(slots, 40, 10, 0, 8)[1].delivered.h, 3.75);
  assert.equal(linePath([null, 10, 20, null, 5], 50, 20, 20), 'M15.0 10.0L25.0 0.0M41.5 15.0L48.5 15.0');
  assert.deepEqual([niceMax(0), niceMax(3), niceMax(7), niceMax(12), niceMax(1000)], [1, 5, 10, 20, 1000]);
});

test('formatting', () => {
  assert.equal(fmtMs(null), '—');
  assert.equal(fmtMs(12.4), '12 ms');
  assert.equal(fmtMs(15000), '15.0 s');
  assert.equal(prettyJson({ a: [1] }), '{\n  "a": [\n    1\n  ]\n}');
  assert.equal(prettyJson(null), 'null');
});

test('routes', () => {
  assert.deepEqual(matchRoute('/portal/'), { name: 'endpoints' });
  assert.deepEqual(matchRoute('/portal'), { name: 'endpoints' });
  assert.deepEqual(matchRoute('/portal/endpoints/ep_1'), { name: 'endpoint', endpointId: 'ep_1' });
  assert.deepEqual(matchRoute(paths.delivery('ep/1', 'dlv_2')), { name: 'delivery', endpointId: 'ep/1', deliveryId: 'dlv_2' });
  assert.deepEqual(matchRoute('/portal/events'), { name: 'events' });
  assert.deepEqual(matchRoute('/portal/events/evt_1'), { name: 'event', eventId: 'evt_1' });
  assert.equal(matchRoute('/portal/nope/x/y').name, 'not-found');
  assert.equal(matchRoute('/portal/events/%E0%A4%A').name, 'not-found');
});
