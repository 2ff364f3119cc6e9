// Chart geometry as pure functions (the SVG is drawn by chart components from these).

/**
 * The API's buckets placed on a full grid from `since` to `until` (one slot per `step` ms),
 * so gaps the API leaves out show as empty slots, not as a shorter chart.
 */
export function fillBuckets(buckets, sinceMs, untilMs, stepMs) {
  const n = Math.max(0, Math.round((untilMs - sinceMs) / stepMs));
  const slots = Array.from({ length: n }, (_, i) => ({
    start: sinceMs + i * stepMs,
    delivered: 0,
    failed: 0,
    attempts: 0,
    p50_ms: null,
    p95_ms: null,
  }));
  for (const b of buckets || []) {
    const t = Date.parse(b.start);
    if (Number.isNaN(t)) continue;
    const i = Math.floor((t - sinceMs) / stepMs);
    if (i < 0 || i >= n) continue;
    const s = slots[i];
    s.delivered += Number(b.delivered || 0);
    s.failed += Number(b.failed || 0);
    s.attempts += Number(b.attempts || 0);
    if (b.p50_ms !== null && b.p50_ms !== undefined) s.p50_ms = Math.max(s.p50_ms ?? 0, Number(b.p50_ms));
    if (b.p95_ms !== null && b.p95_ms !== undefined) s.p95_ms = Math.max(s.p95_ms ?? 0, Number(b.p95_ms));
  }
  return slots;
}

/** Stacked bars: delivered at the bottom, failed on top, scaled to `scaleMax` (default the tallest slot). */
export function stackedBars(slots, width, height, gap = 1, scaleMax = null) {
  const n = slots.length || 1;
  const max = scaleMax ?? Math.max(1, ...slots.map((s) => s.delivered + s.failed));
  const slotW = width / n;
  const w = Math.max(0.5, slotW - gap);
  return slots.map((s, i) => {
    const hd = (s.delivered / max) * height;
    const hf = (s.failed / max) * height;
    return {
      x: i * slotW + gap / 2,
      w,
      delivered: { y: height - hd, h: hd },
      failed: { y: height - hd - hf, h: hf },
    };
  });
}

/**
 * An SVG path through the non-null values (a gap breaks the line), scaled to `max`. A value
 * with no neighbour is a short level stroke across its slot, so it still shows.
 */
export function linePath(values, width, height, max) {
  const n = values.length;
  if (!n) return '';
  const top = Math.max(1, max ?? Math.max(0, ...values.filter((v) => v !== null)));
  const step = width / n;
  const y = (v) => (height - (Math.min(v, top) / top) * height).toFixed(1);
  const known = (i) => i >= 0 && i < n && values[i] !== null && values[i] !== undefined;
  let d = '';
  for (let i = 0; i < n; i++) {
    if (!known(i)) continue;
    if (!known(i - 1) && !known(i + 1)) {
      d += `M${(i * step + step * 0.15).toFixed(1)} ${y(values[i])}L${((i + 1) * step - step * 0.15).toFixed(1)} ${y(values[i])}`;
      continue;
    }
    d += `${known(i - 1) ? 'L' : 'M'}${((i + 0.5) * step).toFixed(1)} ${y(values[i])}`;
  }
  return d;
}

/** A round axis maximum ≥ v: 1, 2, 5, 10, 20, 50… */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
