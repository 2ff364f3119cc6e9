// First-load size: what a browser fetches to show the first screen (index.html, its module
// scripts, modulepreloads and stylesheets), each gzipped as a server would. Fails over budget.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const dist = new URL('../dist/', import.meta.url).pathname;
const BUDGET_JS = 200 * 1024;
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [];
for (const m of html.matchAll(/<script\b[^>]*\bsrc="([^"]+)"/g)) refs.push(['js', m[1]]);
for (const m of html.matchAll(/<link\b[^>]*\brel="modulepreload"[^>]*\bhref="([^"]+)"/g)) refs.push(['js', m[1]]);
for (const m of html.matchAll(/<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"/g)) refs.push(['css', m[1]]);
if (/<script\b(?![^>]*\bsrc=)[^>]*>/.test(html)) {
  console.error('index.html has an inline script: the CSP (script-src self) would refuse it');
  process.exit(1);
}
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const rows = [['html', 'index.html', Buffer.byteLength(html), gz(Buffer.from(html))]];
for (const [kind, href] of refs) {
  const file = join(dist, href.replace(/^\/portal\//, ''));
  const buf = readFileSync(file);
  rows.push([kind, href, buf.length, gz(buf)]);
}
const sum = (k) => rows.filter((r) => r[0] === k).reduce((a, r) => a + r[3], 0);
for (const [kind, name, raw, z] of rows) {
  console.log(`${kind.padEnd(4)} ${name.padEnd(40)} ${String(raw).padStart(8)} B  ${String(z).padStart(7)} B gzipped`);
}
const js = sum('js');
const total = rows.reduce((a, r) => a + r[3], 0);
console.log(`first-load JS: ${js} B gzipped (${(js / 1024).toFixed(1)} KiB of the ${BUDGET_JS / 1024} KiB budget)`);
console.log(`first-load total (html+js+css): ${total} B gzipped`);
if (js > BUDGET_JS) {
  console.error('over the first-load JS budget');
  process.exit(1);
}
