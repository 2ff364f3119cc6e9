// Runs the browser suite against the contract mock (tests/mock-api.mjs) instead of capy serve.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const mock = spawn(process.execPath, [new URL('./mock-api.mjs', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] });
const line = await new Promise((resolve, reject) => {
  createInterface({ input: mock.stdout }).once('line', resolve);
  mock.once('exit', (c) => reject(new Error(`mock exited ${c}`)));
});
const { base, api_key, org } = JSON.parse(line);
const env = {
  ...process.env,
  BASE_URL: base,
  API_KEY: api_key,
  ORG: org,
  RECEIVER_URL: `${base}/_receiver/ok`,
  FAILING_RECEIVER_URL: `${base}/_receiver/fail`,
  SCREENSHOT_DIR: process.env.SCREENSHOT_DIR || '/tmp/capy-portal-mock-screenshots',
};
const pw = spawn(new URL('../node_modules/.bin/playwright', import.meta.url).pathname, ['test', ...process.argv.slice(2)], { stdio: 'inherit', env });
const code = await new Promise((r) => pw.once('exit', r));
mock.kill();
process.exit(code ?? 1);
