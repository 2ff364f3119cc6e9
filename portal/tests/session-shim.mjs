// A stand-in for the portal-session routes in front of a real `capy serve` that does not
// have them yet: it mints shim tokens, answers GET /v1/portal-session, and forwards every
// other request (the portal's files included) to the real server with the API key in place of
// the shim token. Only for running the browser suite's other cases against the real API;
// what only the API can show (a read session's 403s, revocation) is skipped under it
// (SESSION_SHIM=1), because the shim, not the API, would be what it tested. The shim's
// sessions carry the capabilities asked for, so the portal hides controls as it would.
//
//   UPSTREAM=http://127.0.0.1:3000 API_KEY=capy_live_… ORG=org_dev node tests/session-shim.mjs
//   → prints {"base"} as one JSON line

import { createServer, request } from 'node:http';
import { randomBytes } from 'node:crypto';

const UPSTREAM = new URL(process.env.UPSTREAM);
const KEY = process.env.API_KEY;
const ORG = process.env.ORG;
const tokens = new Map();

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const auth = req.headers.authorization || '';
  const bearer = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const send = (status, json) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(json));
  };
  if (url.pathname === '/v1/portal-session') {
    const s = tokens.get(bearer);
    return s ? send(200, { portal_session: s }) : send(401, { error: 'missing or invalid credential' });
  }
  if (req.method === 'POST' && url.pathname === `/v1/organizations/${ORG}/portal-sessions` && bearer === KEY) {
    let raw = '';
    for await (const c of req) raw += c;
    const body = raw ? JSON.parse(raw) : {};
    const token = `capy_portal_shim${randomBytes(16).toString('hex')}`;
    const now = new Date();
    const s = {
      id: `ps_shim${randomBytes(4).toString('hex')}`, organization_id: ORG, capabilities: body.capabilities || ['read', 'manage_endpoints', 'replay'],
      created_at: now.toISOString(), expires_at: new Date(+now + 864e5).toISOString(),
    };
    tokens.set(token, s);
    return send(201, { portal_session: s, token, url: `http://${req.headers.host}/portal/#token=${token}` });
  }
  const headers = { ...req.headers, host: UPSTREAM.host };
  if (tokens.has(bearer)) headers.authorization = `Bearer ${KEY}`;
  const up = request({ host: UPSTREAM.hostname, port: UPSTREAM.port, method: req.method, path: req.url, headers }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => send(502, { error: 'upstream unreachable' }));
  req.pipe(up);
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ base: `http://127.0.0.1:${server.address().port}` })));
