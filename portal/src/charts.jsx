import { fillBuckets, linePath, niceMax, stackedBars } from './chart.js';
import { fmtCount, fmtMs, fmtTime } from './format.js';

/** 24 small stacked bars (delivered / failed per hour), for the endpoints list. */
export function Sparkline({ stats, win }) {
  const slots = fillBuckets(stats.buckets, Date.parse(win.since), Date.parse(win.until), win.step);
  const W = 96;
  const H = 24;
  const bars = stackedBars(slots, W, H, 1);
  const t = stats.totals || {};
  const label = `Last 24 hours: ${fmtCount(t.delivered)} delivered, ${fmtCount(t.failed)} failed`;
  return (
    <span class="sparkline" title={label}>
      <svg viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={label} preserveAspectRatio="none">
        <rect class="spark-base" x="0" y={H - 1} width={W} height="1" />
        {bars.map((b, i) => (
          <g key={i}>
            {b.delivered.h > 0 ? (
              <rect class="ok" x={b.x} y={b.delivered.y} width={b.w} height={b.delivered.h} />
            ) : null}
            {b.failed.h > 0 ? <rect class="bad" x={b.x} y={b.failed.y} width={b.w} height={b.failed.h} /> : null}
          </g>
        ))}
      </svg>
      <span class="spark-text">
        <span class="ok-text">{fmtCount(t.delivered)}</span> / <span class="bad-text">{fmtCount(t.failed)}</span>
      </span>
    </span>
  );
}

const axisTime = (ms, step) => {
  const s = fmtTime(new Date(ms).toISOString());
  return step >= 24 * 3600 * 1000 ? s.slice(5, 10) : s.slice(5, 16);
};

/** Delivered / failed per bucket, stacked bars with a y axis and first/last times. */
export function VolumeChart({ stats, win }) {
  const slots = fillBuckets(stats.buckets, Date.parse(win.since), Date.parse(win.until), win.step);
  const W = 720;
  const H = 160;
  const max = niceMax(Math.max(0, ...slots.map((s) => s.delivered + s.failed)));
  const bars = stackedBars(slots, W, H, 1, max);
  const t = stats.totals || {};
  return (
    <figure class="chart">
      <figcaption>
        Deliveries per {win.period}: <span class="ok-text">{fmtCount(t.delivered)} delivered</span>,{' '}
        <span class="bad-text">{fmtCount(t.failed)} failed</span>, {fmtCount(t.attempts)}{' '}
        {Number(t.attempts) === 1 ? 'attempt' : 'attempts'}
      </figcaption>
      <div class="chart-body">
        <span class="axis-y" aria-hidden="true">
          <span>{fmtCount(max)}</span>
          <span>0</span>
        </span>
        <svg
          viewBox={`0 0 ${W} ${H}`}
          preserveAspectRatio="none"
          role="img"
          aria-label={`Deliveries per ${win.period}: ${fmtCount(t.delivered)} delivered, ${fmtCount(t.failed)} failed`}
          data-testid="volume-chart"
        >
          <line class="grid" x1="0" x2={W} y1={H / 2} y2={H / 2} />
          <line class="grid" x1="0" x2={W} y1={H - 0.5} y2={H - 0.5} />
          {bars.map((b, i) => (
            <g key={i}>
              <title>{`${axisTime(slots[i].start, win.step)}: ${slots[i].delivered} delivered, ${slots[i].failed} failed`}</title>
              {b.delivered.h > 0 ? (
                <rect class="ok" x={b.x} y={b.delivered.y} width={b.w} height={b.delivered.h} />
              ) : null}
              {b.failed.h > 0 ? <rect class="bad" x={b.x} y={b.failed.y} width={b.w} height={b.failed.h} /> : null}
              <rect class="hit" x={b.x} y="0" width={b.w} height={H} />
            </g>
          ))}
        </svg>
      </div>
      <div class="axis-x" aria-hidden="true">
        <span>{slots.length ? axisTime(slots[0].start, win.step) : ''}</span>
        <span>{slots.length ? axisTime(slots[slots.length - 1].start, win.step) : ''}</span>
      </div>
    </figure>
  );
}

/** p50 and p95 latency per bucket as two lines. */
export function LatencyChart({ stats, win }) {
  const slots = fillBuckets(stats.buckets, Date.parse(win.since), Date.parse(win.until), win.step);
  const W = 720;
  const H = 120;
  const p95 = slots.map((s) => s.p95_ms);
  const p50 = slots.map((s) => s.p50_ms);
  const known = [...p95, ...p50].filter((v) => v !== null);
  const max = niceMax(Math.max(1, ...known));
  const worst95 = known.length ? Math.max(...p95.filter((v) => v !== null), 0) : null;
  const median50 = (() => {
    const v = p50.filter((x) => x !== null).sort((a, b) => a - b);
    return v.length ? v[Math.floor(v.length / 2)] : null;
  })();
  return (
    <figure class="chart">
      <figcaption>
        Latency: <span class="p50-text">p50</span> (typical {fmtMs(median50)}) and{' '}
        <span class="p95-text">p95</span> (worst {fmtMs(worst95)})
      </figcaption>
      {known.length === 0 ? (
        <p class="empty">No attempts in this window.</p>
      ) : (
        <>
          <div class="chart-body">
            <span class="axis-y" aria-hidden="true">
              <span>{fmtMs(max)}</span>
              <span>0</span>
            </span>
            <svg
              viewBox={`0 0 ${W} ${H}`}
              preserveAspectRatio="none"
              role="img"
              aria-label={`Latency p50 typically ${fmtMs(median50)}, p95 at worst ${fmtMs(worst95)}`}
              data-testid="latency-chart"
            >
              <line class="grid" x1="0" x2={W} y1={H / 2} y2={H / 2} />
              <line class="grid" x1="0" x2={W} y1={H - 0.5} y2={H - 0.5} />
              <path class="line p95" d={linePath(p95, W, H, max)} />
              <path class="line p50" d={linePath(p50, W, H, max)} />
            </svg>
          </div>
          <div class="axis-x" aria-hidden="true">
            <span>{axisTime(slots[0].start, win.step)}</span>
            <span>{axisTime(slots[slots.length - 1].start, win.step)}</span>
          </div>
        </>
      )}
    </figure>
  );
}
