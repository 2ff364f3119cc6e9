// The API client: same origin, bearer token, `{"error": "sentence"}` errors. Any 401 ends the
// session for the whole page (onEnded), whatever screen asked.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function query(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export function createApi({ token, onEnded = () => {}, fetchImpl = globalThis.fetch.bind(globalThis) }) {
  let orgBase = null;

  async function request(method, path, body) {
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    const init = { method, headers, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetchImpl(path, init);
    } catch {
      throw new ApiError(0, 'Could not reach the server. Check your connection and try again.');
    }
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (resp.status === 401) {
      onEnded();
      throw new ApiError(401, (json && json.error) || 'Your session has ended.');
    }
    if (!resp.ok) {
      const msg = json && typeof json.error === 'string' ? json.error : `The server answered ${resp.status}.`;
      throw new ApiError(resp.status, msg);
    }
    if (json === null) throw new ApiError(resp.status, 'The server sent an answer this page cannot read.');
    return json;
  }

  const org = (path) => {
    if (!orgBase) throw new Error('no session yet');
    return `${orgBase}${path}`;
  };
  const id = encodeURIComponent;

  return {
    async session() {
      const { portal_session } = await request('GET', '/v1/portal-session');
      orgBase = `/v1/organizations/${id(portal_session.organization_id)}`;
      return portal_session;
    },
    endpoints: () => request('GET', org('/webhook-endpoints')).then((r) => r.webhook_endpoints),
    createEndpoint: (body) => request('POST', org('/webhook-endpoints'), body),
    updateEndpoint: (ep, body) =>
      request('PATCH', org(`/webhook-endpoints/${id(ep)}`), body).then((r) => r.webhook_endpoint),
    deleteEndpoint: (ep) => request('DELETE', org(`/webhook-endpoints/${id(ep)}`)),
    rotateSecret: (ep) => request('POST', org(`/webhook-endpoints/${id(ep)}/rotate-secret`)),
    deliveries: (ep, params) => request('GET', org(`/webhook-endpoints/${id(ep)}/deliveries${query(params)}`)),
    delivery: (ep, d) =>
      request('GET', org(`/webhook-endpoints/${id(ep)}/deliveries/${id(d)}`)).then((r) => r.delivery),
    retry: (ep, d) =>
      request('POST', org(`/webhook-endpoints/${id(ep)}/deliveries/${id(d)}/retry`)).then((r) => r.delivery),
    stats: (ep, params) =>
      request('GET', org(`/webhook-endpoints/${id(ep)}/stats${query(params)}`)).then((r) => r.stats),
    sendTest: (ep, body) => request('POST', org(`/webhook-endpoints/${id(ep)}/test`), body).then((r) => r.delivery),
    replay: (ep, body) => request('POST', org(`/webhook-endpoints/${id(ep)}/replay`), body),
    job: (j) => request('GET', org(`/jobs/${id(j)}`)).then((r) => r.job),
    cancelJob: (j) => request('POST', org(`/jobs/${id(j)}/cancel`)),
    events: (params) => request('GET', org(`/events${query(params)}`)),
    event: (ev) => request('GET', org(`/events/${id(ev)}`)),
    sendToEndpoint: (ev, endpointId) =>
      request('POST', org(`/events/${id(ev)}/deliveries`), { endpoint_id: endpointId }).then((r) => r.delivery),
  };
}
