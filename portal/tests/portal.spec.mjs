// The portal in real headless Chromium against a running API (`capy serve` + moto, started by
// tests/tests/portal.rs; or the contract mock, `npm run e2e:mock`). Synchronisation is
// Playwright's auto-waiting and expect polling only: no sleeps.
//
// Env: BASE_URL, API_KEY, ORG, RECEIVER_URL (answers 2xx), FAILING_RECEIVER_URL (answers 5xx),
// optional PORTAL_URL (a session minted by the caller) and SCREENSHOT_DIR.

import { test as base, expect } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE_URL').replace(/\/$/, '');
const KEY = env('API_KEY');
const ORG = env('ORG');
const OK_URL = env('RECEIVER_URL');
const FAIL_URL = env('FAILING_RECEIVER_URL');
const SHOTS = process.env.SCREENSHOT_DIR || new URL('../screenshots/', import.meta.url).pathname;
mkdirSync(SHOTS, { recursive: true });
const shot = (page, name, fullPage = true) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
const uniq = () => Math.random().toString(36).slice(2, 8);
const orgPath = (p) => `/v1/organizations/${encodeURIComponent(ORG)}${p}`;

async function call(method, path, body, token = KEY) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`${BASE}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: r.status, json };
}
async function ok(method, path, body, expected) {
  const r = await call(method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.json)}`).toBe(expected);
  return r.json;
}
async function mintSession(capabilities) {
  const body = capabilities ? { capabilities } : {};
  const r = await ok('POST', orgPath('/portal-sessions'), body, 201);
  expect(r.token).toMatch(/^capy_portal_/);
  expect(r.url).toContain(`/portal/#token=${r.token}`);
  expect([...r.portal_session.capabilities].sort()).toEqual([...(capabilities || ['read', 'manage_endpoints', 'replay'])].sort());
  // Open it on the origin under test, whatever host name the API put in `url`.
  return { ...r, open: `${BASE}/portal/#token=${r.token}` };
}
const createEndpoint = async (body) => (await ok('POST', orgPath('/webhook-endpoints'), body, 201)).webhook_endpoint;
const publish = (event_type, payload) => ok('POST', orgPath('/events'), { event_type, payload }, 202);
const delivery = async (ep, d) => (await ok('GET', orgPath(`/webhook-endpoints/${ep}/deliveries/${d}`), undefined, 200)).delivery;
/** Polls an endpoint's deliveries until `n` exist and none is pending; returns them. */
async function settledOf(ep, n) {
  const list = async () => (await ok('GET', orgPath(`/webhook-endpoints/${ep}/deliveries?limit=100`), undefined, 200)).deliveries;
  await expect
    .poll(async () => {
      const l = await list();
      return l.length === n && l.every((d) => d.state !== 'pending');
    }, { message: `${n} deliveries of ${ep} settle` })
    .toBe(true);
  return list();
}
async function settled(ep, d) {
  await expect.poll(async () => (await delivery(ep, d)).state, { message: `delivery ${d} settles` }).not.toBe('pending');
  return delivery(ep, d);
}

let full; // the full-capability session for most tests

const test = base.extend({
  // Every page: no dialog may open, no CSP violation, no uncaught error.
  page: async ({ page }, use) => {
    const problems = [];
    page.on('dialog', (d) => {
      problems.push(`dialog opened: ${d.type()} ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/.test(m.text())) problems.push(`CSP: ${m.text()}`);
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push(`third-party request: ${r.url()}`);
    });
    await use(page);
    expect(problems, 'dialogs, CSP violations, page errors, third-party requests').toEqual([]);
  },
});

test.beforeAll(async () => {
  full = process.env.PORTAL_URL
    ? { open: process.env.PORTAL_URL, token: new URL(process.env.PORTAL_URL).hash.replace('#token=', '') }
    : await mintSession();
});

async function openPortal(page, session = full, path = '/portal/') {
  const url = session.open.replace('/portal/', path);
  await page.goto(url);
  return page;
}

test('the token leaves the address bar and the page is served with its security headers', async ({ page }) => {
  const resp = await page.goto(full.open);
  const h = resp.headers();
  expect(h['content-security-policy']).toContain("script-src 'self'");
  expect(h['content-security-policy']).toContain("frame-ancestors 'none'");
  expect(h['content-security-policy']).not.toContain('unsafe-inline');
  expect(h['x-content-type-options']).toBe('nosniff');
  expect(h['referrer-policy']).toBe('no-referrer');
  expect(h['cache-control']).toBe('no-cache');
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeVisible();
  await expect(page).toHaveURL(`${BASE}/portal/`);
  expect(page.url()).not.toContain('capy_portal_');
  expect(page.url()).not.toContain('#');
  expect(await page.evaluate(() => sessionStorage.getItem('capy_portal_token'))).toBe(full.token);
  // A reload keeps the session (from this tab's storage), still with a clean address bar.
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeVisible();
  expect(page.url()).toBe(`${BASE}/portal/`);
});

test('create an endpoint through the form: the API error shows next to the field, then it is listed', async ({ page }) => {
  const bad = 'not a url';
  const apiAnswer = await call('POST', orgPath('/webhook-endpoints'), { url: bad });
  expect(apiAnswer.status).toBe(400);
  await openPortal(page);
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const url = page.getByLabel('URL');
  await url.fill(bad);
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  const err = page.getByTestId('ep-url-error');
  await expect(err).toHaveText(apiAnswer.json.error);
  await expect(url).toHaveAttribute('aria-invalid', 'true');
  await expect(url).toBeFocused();
  await shot(page, 'add-endpoint-error', false);

  const desc = `Orders ${uniq()}`;
  await url.fill(OK_URL);
  await page.getByLabel('Description (optional)').fill(desc);
  await page.getByLabel('Event types').fill('order.*, refund.created');
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  const secret = page.getByTestId('secret-value');
  await expect(secret).toHaveValue(/^whsec_/);
  await page.getByRole('button', { name: 'I have saved it' }).click();
  await expect(page.getByTestId('secret-reveal')).toHaveCount(0);
  const row = page.locator('li.endpoint-row', { hasText: desc });
  await expect(row).toBeVisible();
  await expect(row.getByRole('link', { name: OK_URL })).toBeVisible();
  await expect(row).toContainText('order.*, refund.created');
  await expect(row.locator('.badge')).toHaveText(/Healthy|Degraded|Failing|Disabled/);
  const listed = (await ok('GET', orgPath('/webhook-endpoints'), undefined, 200)).webhook_endpoints;
  expect(listed.some((e) => e.description === desc && e.url === OK_URL)).toBe(true);
});

test('enable/disable and delete with confirmation', async ({ page }) => {
  const desc = `toggle ${uniq()}`;
  const ep = await createEndpoint({ url: OK_URL, description: desc });
  await openPortal(page);
  const row = page.locator(`li[data-endpoint-id="${ep.id}"]`);
  const sw = row.getByRole('switch');
  await expect(sw).toHaveAttribute('aria-checked', 'true');
  await sw.click();
  await expect(sw).toHaveAttribute('aria-checked', 'false');
  await expect(row.locator('.badge')).toHaveText('Disabled');
  const after = (await ok('GET', orgPath('/webhook-endpoints'), undefined, 200)).webhook_endpoints.find((e) => e.id === ep.id);
  expect(after.is_active).toBe(false);
  await sw.click();
  await expect(sw).toHaveAttribute('aria-checked', 'true');

  await row.getByRole('button', { name: 'Delete' }).click();
  // A destructive question starts on Cancel, so Enter twice does not delete.
  await expect(row.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(row).toBeVisible();
  await expect(row.getByRole('button', { name: 'Delete' })).toBeFocused();
  await row.getByRole('button', { name: 'Delete' }).click();
  await row.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(row).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeFocused();
  const gone = (await ok('GET', orgPath('/webhook-endpoints'), undefined, 200)).webhook_endpoints;
  expect(gone.some((e) => e.id === ep.id)).toBe(false);
});

test('edit an endpoint: a bad event type shows the API\'s error next to that field', async ({ page }) => {
  const ep = await createEndpoint({ url: OK_URL, description: `edit ${uniq()}` });
  const bad = 'bad!type';
  const apiAnswer = await call('PATCH', orgPath(`/webhook-endpoints/${ep.id}`), { event_types: [bad] });
  expect(apiAnswer.status).toBe(400);
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  await page.getByRole('button', { name: 'Edit' }).click();
  const types = page.getByLabel('Event types');
  await types.fill(bad);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByTestId('ep-types-error')).toHaveText(apiAnswer.json.error);
  await expect(types).toBeFocused();
  const desc = `edited ${uniq()}`;
  await types.fill('order.created, order.paid');
  await page.getByLabel('Description (optional)').fill(desc);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.locator('.ep-desc')).toHaveText(desc);
  await expect(page.locator('.facts')).toContainText('order.created, order.paid');
  const after = (await ok('GET', orgPath('/webhook-endpoints'), undefined, 200)).webhook_endpoints.find((e) => e.id === ep.id);
  expect(after.description).toBe(desc);
  expect(after.event_types).toEqual(['order.created', 'order.paid']);
  expect(after.url).toBe(OK_URL);
});

test('paging: deliveries 20 and events 25 to a page, next_cursor to the older ones', async ({ page }) => {
  const type = `page.e2e${uniq()}`;
  const ep = await createEndpoint({ url: OK_URL, description: `paging ${uniq()}`, event_types: [type] });
  for (let i = 0; i < 26; i++) await publish(type, { n: i });
  await settledOf(ep.id, 26);
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  const rows = page.getByTestId('deliveries-table').locator('tbody tr');
  await expect(rows).toHaveCount(20);
  const pager = page.getByRole('navigation', { name: 'Deliveries pages' });
  await expect(pager.getByRole('button', { name: '← Newer' })).toBeDisabled();
  await pager.getByRole('button', { name: 'Older →' }).click();
  await expect(rows).toHaveCount(6);
  await expect(pager).toContainText('Page 2');
  await expect(pager.getByRole('button', { name: 'Older →' })).toBeDisabled();
  await pager.getByRole('button', { name: '← Newer' }).click();
  await expect(rows).toHaveCount(20);
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByLabel('Event type').fill(type);
  await page.getByRole('button', { name: 'Filter' }).click();
  const ev = page.getByTestId('events-table').locator('tbody tr');
  await expect(ev).toHaveCount(25);
  await page.getByRole('navigation', { name: 'Events pages' }).getByRole('button', { name: 'Older →' }).click();
  await expect(ev).toHaveCount(1);
});

test('an HTML description renders as text and no dialog fires', async ({ page }) => {
  const evil = '<img src=x onerror=alert(1)>';
  const ep = await createEndpoint({ url: OK_URL, description: evil });
  await openPortal(page);
  const row = page.locator(`li[data-endpoint-id="${ep.id}"]`);
  await expect(row.locator('.ep-desc')).toHaveText(evil);
  await expect(row.locator('img')).toHaveCount(0);
  await row.getByRole('link', { name: OK_URL }).click();
  await expect(page.locator('.ep-desc')).toHaveText(evil);
  await expect(page.locator('main img')).toHaveCount(0);
  // The fixture fails the test if any dialog opened.
});

test('a published event: its delivery appears, the attempt log reads, retry runs a fresh schedule', async ({ page }) => {
  const ep = await createEndpoint({ url: FAIL_URL, description: `failing ${uniq()}`, event_types: ['order.paid'] });
  const pub = await publish('order.paid', { order: 'o_42', amount: 1299, lines: [{ sku: 'capy-plush', qty: 2 }] });
  const [settledOne] = await settledOf(ep.id, 1);
  expect(settledOne.event_id).toBe(pub.event_id);
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  const row = page.locator(`tr[data-delivery-id]`).first();
  await expect(row).toBeVisible();
  // It settles (fails: the receiver answers 503) while the page polls.
  await expect(row.locator('.badge')).toHaveText('Failed');
  const apiView = await delivery(ep.id, await row.getAttribute('data-delivery-id'));
  expect(apiView.id).toBe(settledOne.id);
  await row.getByRole('link').click();
  await expect(page).toHaveURL(new RegExp(`/portal/endpoints/${ep.id}/deliveries/${apiView.id}$`));
  const log = page.getByTestId('attempt-log').locator('tbody tr');
  await expect(log).toHaveCount(apiView.attempt_log.length);
  const first = log.first().locator('td');
  await expect(first.nth(0)).toHaveText(String(apiView.attempt_log[0].attempt));
  await expect(first.nth(2)).toHaveText(String(apiView.attempt_log[0].response_status));
  await expect(first.nth(4)).toHaveText(apiView.attempt_log[0].error);
  await expect(page.getByTestId('payload')).toContainText('"sku": "capy-plush"');
  await shot(page, 'delivery');

  await page.getByRole('button', { name: 'Retry delivery' }).click();
  // A fresh retry schedule on top of the attempts spent (the first run's budget was the
  // schedule's length); the receiver still fails, so it runs to its end while the page polls.
  const schedule = apiView.max_attempts;
  await expect(log).toHaveCount(apiView.attempt_log.length + schedule);
  await expect(page.locator('.page-head .badge')).toHaveText('Failed');
  const after = await delivery(ep.id, apiView.id);
  expect([after.state, after.attempts, after.max_attempts]).toEqual(['failed', apiView.attempts + schedule, apiView.attempts + schedule]);
});

test('rotate the secret: shown once', async ({ page }) => {
  const ep = await createEndpoint({ url: OK_URL, description: `rotate ${uniq()}` });
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  await page.getByRole('button', { name: 'Yes, rotate' }).click();
  const secret = page.getByTestId('secret-value');
  await expect(secret).toHaveValue(/^whsec_[A-Za-z0-9+/=]{20,}$/);
  await expect(secret).toBeFocused();
  const value = await secret.inputValue();
  await page.getByRole('button', { name: 'I have saved it' }).click();
  await expect(page.getByTestId('secret-reveal')).toHaveCount(0);
  await page.reload();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(OK_URL);
  await expect(page.getByTestId('secret-reveal')).toHaveCount(0);
  expect(await page.content()).not.toContain(value);
});

test('replay: the dry-run count equals the API\'s, then the job runs to the end', async ({ page }) => {
  const type = `invoice.e2e${uniq()}`;
  const ep = await createEndpoint({ url: FAIL_URL, description: `replay ${uniq()}`, event_types: [type] });
  for (let i = 0; i < 3; i++) await publish(type, { invoice: `in_${i}` });
  const ids = (await settledOf(ep.id, 3)).map((d) => d.id);
  for (const id of ids) expect((await delivery(ep.id, id)).state).toBe('failed');
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const api = await ok('POST', orgPath(`/webhook-endpoints/${ep.id}/replay`), { since, states: ['failed'], dry_run: true }, 200);
  expect(api.matched).toBe(ids.length);

  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  await page.getByLabel('24 hours').check();
  await page.getByRole('button', { name: 'Count matching deliveries' }).click();
  await expect(page.getByTestId('replay-matched')).toHaveText(String(api.matched));
  await page.getByRole('button', { name: `Replay ${api.matched}` }).click();
  await page.getByRole('button', { name: 'Yes, replay' }).click();
  const job = page.getByTestId('job-progress');
  await expect(job).toBeVisible();
  await expect(job).toHaveAttribute('data-job-state', 'succeeded');
  await expect(page.getByTestId('job-processed')).toHaveText(`${api.matched} of ${api.matched}`);
  // The chart and the table show this endpoint's history.
  await expect(page.getByTestId('volume-chart')).toBeVisible();
  await expect(page.locator('tr[data-delivery-id]')).toHaveCount(ids.length);
  await page.getByRole('radio', { name: '7 d', exact: true }).click();
  await expect(page.getByRole('radio', { name: '7 d', exact: true })).toHaveAttribute('aria-checked', 'true');
  await page.getByRole('radio', { name: '24 h', exact: true }).click();
  await expect(page.getByTestId('volume-chart')).toBeVisible();
  await expect(page.locator('.stale')).toHaveCount(0);
  await shot(page, 'endpoint');
});

test('send a test event and see it delivered', async ({ page }) => {
  const ep = await createEndpoint({ url: OK_URL, description: `test event ${uniq()}` });
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  await expect(page.getByText('No deliveries yet.')).toBeVisible();
  await page.getByRole('button', { name: 'Send test event' }).click();
  const sent = page.getByTestId('sent-delivery');
  await expect(sent.locator('.badge')).toHaveText('Delivered');
  const row = page.locator('tr[data-delivery-id]');
  await expect(row).toHaveCount(1);
  await expect(row.locator('.badge')).toHaveText('Delivered');
  const id = await row.getAttribute('data-delivery-id');
  expect((await delivery(ep.id, id)).state).toBe('delivered');
  // The state filter: nothing failed here.
  await page.getByLabel('State').selectOption('failed');
  await expect(page.getByText('No failed deliveries.')).toBeVisible();
  await page.getByLabel('State').selectOption('delivered');
  await expect(row).toHaveCount(1);
});

test('events log: filter by type, open an event, send it to an endpoint', async ({ page }) => {
  const type = `shipment.e2e${uniq()}`;
  const ep = await createEndpoint({ url: OK_URL, description: `events ${uniq()}`, event_types: [type] });
  const other = await createEndpoint({ url: OK_URL, description: `late subscriber ${uniq()}`, event_types: ['nothing.matches'] });
  const pub = await publish(type, { shipment: 'sh_1', carrier: 'capy-post' });
  await publish(`${type}.other`, { ignored: true });
  const [mine] = await settledOf(ep.id, 1);
  expect(mine.event_id).toBe(pub.event_id);

  await openPortal(page, full, '/portal/events');
  await expect(page.getByRole('heading', { name: 'Events', level: 1 })).toBeVisible();
  await expect(page.getByTestId('events-table')).toBeVisible();
  await page.getByLabel('Event type').fill(type);
  await page.getByRole('button', { name: 'Filter' }).click();
  const rows = page.getByTestId('events-table').locator('tbody tr');
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(type);
  await shot(page, 'events');
  await rows.first().getByRole('link').click();
  await expect(page).toHaveURL(new RegExp(`/portal/events/${pub.event_id}$`));
  const recipients = (await ok('GET', orgPath(`/events/${pub.event_id}`), undefined, 200)).deliveries.length;
  const dl = page.getByTestId('event-deliveries').locator('tbody tr');
  await expect(dl).toHaveCount(recipients);
  await expect(page.locator(`tr[data-delivery-id="${mine.id}"] .badge`)).toHaveText('Delivered');
  await expect(page.locator(`tr[data-delivery-id="${mine.id}"]`)).toContainText(OK_URL);
  await expect(page.getByTestId('payload')).toContainText('"carrier": "capy-post"');
  await page.getByLabel('Send to endpoint').selectOption(other.id);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  await expect(dl).toHaveCount(recipients + 1);
  const [sent] = await settledOf(other.id, 1);
  expect(sent.event_id).toBe(pub.event_id);
  await expect(page.locator(`tr[data-delivery-id="${sent.id}"] .badge`)).toHaveText('Delivered');
  await shot(page, 'event');
});

test('a read session sees no write controls, and its writes are 403', async ({ page }) => {
  const ep = await createEndpoint({ url: FAIL_URL, description: `read only ${uniq()}`, event_types: ['audit.e2e'] });
  const pub = await publish('audit.e2e', { audit: 1 });
  const [dlv] = await settledOf(ep.id, 1);
  const ro = await mintSession(['read']);
  await openPortal(page, ro);
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeVisible();
  await expect(page.locator('header').getByText('Read only')).toBeVisible();
  const row = page.locator(`li[data-endpoint-id="${ep.id}"]`);
  await expect(row).toBeVisible();
  await expect(page.getByRole('button', { name: 'Add endpoint' })).toHaveCount(0);
  await expect(page.getByRole('switch')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Delete' })).toHaveCount(0);
  await shot(page, 'read-only');

  await row.getByRole('link').click();
  await expect(page.getByRole('heading', { name: 'Deliveries', exact: true })).toBeVisible();
  await expect(page.locator('tr[data-delivery-id]')).toHaveCount(1);
  for (const name of ['Edit', 'Disable', 'Rotate secret', 'Delete', 'Send test event', 'Count matching deliveries']) {
    await expect(page.getByRole('button', { name })).toHaveCount(0);
  }
  await page.locator('tr[data-delivery-id] a').click();
  await expect(page.getByTestId('attempt-log')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Retry delivery' })).toHaveCount(0);
  await page.getByRole('link', { name: pub.event_id }).click();
  await expect(page.getByTestId('event-deliveries')).toBeVisible();
  await expect(page.getByLabel('Send to endpoint')).toHaveCount(0);

  const writes = [
    ['POST', '/webhook-endpoints', { url: OK_URL }],
    ['PATCH', `/webhook-endpoints/${ep.id}`, { is_active: false }],
    ['DELETE', `/webhook-endpoints/${ep.id}`],
    ['POST', `/webhook-endpoints/${ep.id}/rotate-secret`],
    ['POST', `/webhook-endpoints/${ep.id}/test`, {}],
    ['POST', `/webhook-endpoints/${ep.id}/deliveries/${dlv.id}/retry`],
    ['POST', `/webhook-endpoints/${ep.id}/replay`, { since: new Date(Date.now() - 3600e3).toISOString() }],
    ['POST', `/events/${pub.event_id}/deliveries`, { endpoint_id: ep.id }],
  ];
  for (const [m, p, b] of writes) {
    const r = await call(m, orgPath(p), b, ro.token);
    expect(r.status, `${m} ${p} with a read session: ${JSON.stringify(r.json)}`).toBe(403);
    expect(typeof r.json.error).toBe('string');
  }
  const still = (await ok('GET', orgPath('/webhook-endpoints'), undefined, 200)).webhook_endpoints.find((e) => e.id === ep.id);
  expect(still.is_active).toBe(true);
  expect((await delivery(ep.id, dlv.id)).attempts).toBe(dlv.attempts);
});

test('a revoked session shows a clear "session ended" screen', async ({ page }) => {
  const ep = await createEndpoint({ url: OK_URL, description: `revoked ${uniq()}` });
  const s = await mintSession();
  await openPortal(page, s);
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeVisible();
  const link = page.locator(`li[data-endpoint-id="${ep.id}"] a.ep-url`);
  await expect(link).toBeVisible();
  // Every call of this screen has answered (the sparklines load after the list).
  await expect(page.locator('.sparkline[data-loading]')).toHaveCount(0);
  const revoked = await ok('DELETE', orgPath(`/portal-sessions/${s.portal_session.id}`), undefined, 200);
  expect(revoked.deleted).toBe(true);
  // The next call the page makes answers 401: the whole page says so.
  await link.click();
  await expect(page.getByRole('heading', { name: 'Your session has ended' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Endpoints' })).toHaveCount(0);
  await expect.poll(() => page.evaluate(() => sessionStorage.getItem('capy_portal_token'))).toBeNull();
  await shot(page, 'session-ended', false);
  // And so does a fresh load of the same link.
  await page.goto(s.open);
  await expect(page.getByRole('heading', { name: 'Your session has ended' })).toBeVisible();
  expect(page.url()).not.toContain('capy_portal_');
  // The token itself is refused by the API.
  expect((await call('GET', '/v1/portal-session', undefined, s.token)).status).toBe(401);
});

test('keyboard only: add an endpoint', async ({ page }) => {
  await openPortal(page);
  await expect(page.getByRole('heading', { name: 'Endpoints', level: 1 })).toBeVisible();
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', { name: 'Skip to content' })).toBeFocused();
  const add = page.getByRole('button', { name: 'Add endpoint' });
  // Tab through the header to the Add button.
  for (let i = 0; i < 6 && !(await add.evaluate((el) => el === document.activeElement)); i++) await page.keyboard.press('Tab');
  await expect(add).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.getByLabel('URL')).toBeFocused();
  // Escape closes the form and gives the focus back to the button; it opens again.
  await page.keyboard.press('Escape');
  await expect(page.getByLabel('URL')).toHaveCount(0);
  await expect(add).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.getByLabel('URL')).toBeFocused();
  await page.keyboard.type(OK_URL);
  await page.keyboard.press('Tab');
  const desc = `keyboard ${uniq()}`;
  await page.keyboard.type(desc);
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('secret-value')).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(page.getByRole('button', { name: 'Copy' })).toBeFocused();
  await expect(page.locator('li.endpoint-row', { hasText: desc })).toBeVisible();
});

test('keyboard only: the time range is one radio group moved by the arrow keys', async ({ page }) => {
  const ep = await createEndpoint({ url: OK_URL, description: `range ${uniq()}` });
  await openPortal(page);
  // From the list by keyboard: the loaded page's heading has the focus, not the document.
  await page.locator(`li[data-endpoint-id="${ep.id}"] a.ep-url`).focus();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { level: 1, name: ep.url })).toBeFocused();
  const group = page.getByRole('radiogroup', { name: 'Time range' });
  const radio = (name) => group.getByRole('radio', { name });
  await expect(radio('24 h')).toHaveAttribute('aria-checked', 'true');
  await expect(radio('7 d')).toHaveAttribute('tabindex', '-1');
  await radio('24 h').focus();
  await page.keyboard.press('ArrowRight');
  await expect(radio('7 d')).toBeFocused();
  await expect(radio('7 d')).toHaveAttribute('aria-checked', 'true');
  await expect(radio('24 h')).toHaveAttribute('tabindex', '-1');
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  await expect(radio('30 d')).toBeFocused();
  await expect(radio('30 d')).toHaveAttribute('aria-checked', 'true');
});

test('a disabled endpoint offers no test event or replay, and is not offered as a target', async ({ page }) => {
  const desc = `off ${uniq()}`;
  const ep = await createEndpoint({ url: OK_URL, description: desc });
  await createEndpoint({ url: OK_URL, description: `on ${uniq()}` });
  const published = await publish('order.created', { n: 1 });
  await ok('PATCH', orgPath(`/webhook-endpoints/${ep.id}`), { is_active: false }, 200);
  await openPortal(page, full, `/portal/endpoints/${ep.id}`);
  await expect(page.getByTestId('disabled-note')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Send test event' })).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'Send a test event' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Enable' })).toBeVisible();
  await openPortal(page, full, `/portal/events/${published.event_id}`);
  const select = page.getByLabel('Send to endpoint');
  await expect(select).toBeVisible();
  await expect(select.locator(`option[value="${ep.id}"]`)).toHaveCount(0);
});

test('a manage_endpoints session (no "read" named) sees the endpoints and may add one, but not replay', async ({ page }) => {
  const ep = await createEndpoint({ url: FAIL_URL, description: `manage only ${uniq()}`, event_types: ['audit.e2e'] });
  const s = await mintSession(['manage_endpoints']);
  await openPortal(page, s, `/portal/endpoints/${ep.id}`);
  await expect(page.getByRole('button', { name: 'Rotate secret' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Deliveries', exact: true })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Replay failed deliveries' })).toHaveCount(0);
});

test('works at 390 px wide', async ({ browser }) => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  await openPortal(page);
  await expect(page.getByTestId('endpoints-list')).toBeVisible();
  await expect(page.locator('.sparkline[data-loading]')).toHaveCount(0);
  await expect(page.locator('.sparkline svg').first()).toBeVisible();
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await shot(page, 'mobile-endpoints', false);
  await page.locator('li.endpoint-row a.ep-url').first().click();
  await expect(page.getByRole('heading', { name: 'Deliveries', exact: true })).toBeVisible();
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await shot(page, 'mobile-endpoint', false);
  await ctx.close();
});

test('the endpoints list screenshot', async ({ page }) => {
  await openPortal(page);
  await expect(page.getByTestId('endpoints-list')).toBeVisible();
  await expect(page.locator('.sparkline[data-loading]')).toHaveCount(0);
  await expect(page.locator('.sparkline svg').first()).toBeVisible();
  await shot(page, 'endpoints');
});
