const pad = (n) => String(n).padStart(2, '0');

/** RFC 3339 → "2026-12-01 09:14:03" in the viewer's time zone; "—" for null. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return '—';
  const n = Number(ms);
  if (n >= 10000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.round(n)} ms`;
}

export function fmtCount(n) {
  return Number(n || 0).toLocaleString('en-US');
}

export function prettyJson(value) {
  try {
    return JSON.stringify(value, null, 2) ?? 'null';
  } catch {
    return String(value);
  }
}

export const HOUR = 3600 * 1000;
export const DAY = 24 * HOUR;

/** The stats window for a range button: hourly for 24 h and 7 d, daily for 30 d. */
export function statsWindow(range, now = Date.now()) {
  const spans = { '24h': [DAY, 'hour'], '7d': [7 * DAY, 'hour'], '30d': [30 * DAY, 'day'] };
  const [span, period] = spans[range] || spans['24h'];
  const step = period === 'hour' ? HOUR : DAY;
  // Whole buckets: until is the end of the current bucket, since is `span` before it.
  const until = Math.ceil(now / step) * step;
  const since = until - span;
  return { since: new Date(since).toISOString(), until: new Date(until).toISOString(), period, step };
}

export const REPLAY_PRESETS = [
  ['8h', '8 hours', 8 * HOUR],
  ['24h', '24 hours', DAY],
  ['3d', '3 days', 3 * DAY],
  ['7d', '7 days', 7 * DAY],
];

/** since for a replay preset, or for a custom `datetime-local` value (local time). */
export function replaySince(preset, custom, now = Date.now()) {
  const p = REPLAY_PRESETS.find(([k]) => k === preset);
  if (p) return new Date(now - p[2]).toISOString();
  if (!custom) return null;
  const d = new Date(custom);
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString();
}

/** A Date → the value a `datetime-local` input takes, in local time. */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function shortId(id) {
  const s = String(id || '');
  return s.length > 14 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s;
}
