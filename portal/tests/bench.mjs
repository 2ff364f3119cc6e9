// Benchmark (not a test): first-load bytes (gzipped) and the time to the endpoints list
// rendered, median of 10 cold page loads (a new browser context, so no cache, each time).
//
//   PORTAL_URL=http://127.0.0.1:3000/portal/#token=capy_portal_… node tests/bench.mjs
// or `make portal-bench`, which starts its own stack (tests/tests/portal.rs, portal_bench).

import { chromium } from 'playwright-core';
import { gzipSync } from 'node:zlib';
import { CHROMIUM, CHROMIUM_ARGS } from '../playwright.config.mjs';

const url = process.env.PORTAL_URL;
if (!url) {
  console.error('PORTAL_URL (a portal link with #token=…) is required');
  process.exit(2);
}
const RUNS = Number(process.env.BENCH_RUNS || 10);
const origin = new URL(url).origin;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
const times = [];
const bytes = [];
const apiBytes = [];
let rows = 0;
for (let i = 0; i < RUNS; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const bodies = [];
  page.on('response', (r) => {
    if (r.url().startsWith(origin)) bodies.push(r.body().then((b) => [r.url(), b]).catch(() => [r.url(), Buffer.alloc(0)]));
  });
  await page.goto(url);
  // Milliseconds from the navigation's start (the page's time origin) to the list on screen.
  const handle = await page.waitForFunction(
    () => document.querySelector('[data-testid="endpoints-list"] li') && performance.now(),
    null,
    { polling: 'raf', timeout: 30000 },
  );
  times.push(await handle.jsonValue());
  rows = await page.locator('[data-testid="endpoints-list"] li').count();
  await page.waitForLoadState('networkidle');
  const got = await Promise.all(bodies);
  const page_ = got.filter(([u]) => new URL(u).pathname.startsWith('/portal/'));
  const api = got.filter(([u]) => new URL(u).pathname.startsWith('/v1/'));
  bytes.push(page_.reduce((a, [, b]) => a + gzipSync(b, { level: 6 }).length, 0));
  apiBytes.push(api.reduce((a, [, b]) => a + b.length, 0));
  await ctx.close();
}
await browser.close();
console.log(`portal first load, ${RUNS} cold loads, ${rows} endpoints listed`);
console.log(`  first-load bytes (html+js+css, gzipped): median ${median(bytes)} B`);
console.log(`  API responses on the first screen (JSON, uncompressed): median ${median(apiBytes)} B`);
console.log(`  time to endpoints list rendered: median ${median(times).toFixed(0)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)})`);
console.log(`  all loads (ms): ${times.map((t) => t.toFixed(0)).join(' ')}`);
