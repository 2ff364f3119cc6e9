import { useState } from 'preact/hooks';
import {
  Empty,
  ErrorBox,
  Link,
  Loading,
  StateBadge,
  Time,
  useAction,
  useLoad,
  usePoll,
  useSession,
} from '../ui.jsx';
import { paths } from '../router.js';
import { prettyJson } from '../format.js';
import { fanOutText } from './events.jsx';

export function EventView({ eventId }) {
  const { api, can } = useSession();
  const [state, reload] = useLoad(async () => {
    const [ev, endpoints] = await Promise.all([api.event(eventId), api.endpoints().catch(() => [])]);
    return { ...ev, endpoints };
  }, [eventId]);
  const data = state.data;
  const pending = Boolean(
    data && (data.event.fan_out?.state === 'pending' || data.deliveries.some((d) => d.state === 'pending')),
  );
  usePoll(reload, 1500, pending);
  const urlOf = (id) => data?.endpoints.find((e) => e.id === id)?.url;
  const descOf = (id) => data?.endpoints.find((e) => e.id === id)?.description;
  const ev = data?.event;

  return (
    <>
      <p class="crumbs">
        <Link to={paths.events()}>← Events</Link>
      </p>
      <h1 tabIndex={-1}>
        Event <span class="mono">{eventId}</span>
      </h1>
      {state.loading && !data ? <Loading what="the event" /> : null}
      <ErrorBox error={state.error} onRetry={state.error?.status === 404 ? null : reload} />
      {ev ? (
        <>
          <dl class="facts">
            <div>
              <dt>Event type</dt>
              <dd class="mono">{ev.event_type}</dd>
            </div>
            <div>
              <dt>Published</dt>
              <dd>
                <Time iso={ev.created_at} />
              </dd>
            </div>
            {ev.idempotency_key ? (
              <div>
                <dt>Idempotency key</dt>
                <dd class="mono">{ev.idempotency_key}</dd>
              </div>
            ) : null}
            {ev.fan_out ? (
              <div>
                <dt>Fan-out</dt>
                <dd>
                  {ev.fan_out.state ? <StateBadge state={ev.fan_out.state} /> : null} {fanOutText(ev.fan_out)}
                </dd>
              </div>
            ) : null}
          </dl>
          <section class="card" aria-labelledby="ev-deliveries-title">
            <h2 id="ev-deliveries-title">Deliveries</h2>
            {data.deliveries.length === 0 ? (
              <Empty>No endpoint received this event.</Empty>
            ) : (
              <div class="table-wrap">
                <table class="table" data-testid="event-deliveries">
                  <thead>
                    <tr>
                      <th scope="col">Endpoint</th>
                      <th scope="col">State</th>
                      <th scope="col">Attempts</th>
                      <th scope="col">Status</th>
                      <th scope="col">Last error</th>
                      <th scope="col">Delivered</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.deliveries.map((d) => (
                      <tr key={d.id} data-delivery-id={d.id}>
                        <td>
                          <Link to={paths.delivery(d.endpoint_id, d.id)} class="mono break">
                            {urlOf(d.endpoint_id) || d.endpoint_id}
                          </Link>
                          {descOf(d.endpoint_id) ? <div class="muted small">{descOf(d.endpoint_id)}</div> : null}
                        </td>
                        <td>
                          <StateBadge state={d.state} />
                        </td>
                        <td>{d.attempts}</td>
                        <td>{d.response_status ?? '—'}</td>
                        <td class="clip">{d.last_error || ''}</td>
                        <td>
                          <Time iso={d.delivered_at} />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            {can('replay') ? (
              // A disabled endpoint is sent nothing: it is not offered.
              <SendToEndpoint eventId={eventId} endpoints={data.endpoints.filter((ep) => ep.is_active)} onSent={reload} />
            ) : null}
          </section>
          <section class="card" aria-labelledby="ev-payload-title">
            <h2 id="ev-payload-title">Payload</h2>
            <pre class="json" data-testid="payload" tabIndex={0}>
              {prettyJson(ev.payload)}
            </pre>
          </section>
        </>
      ) : null}
    </>
  );
}

function SendToEndpoint({ eventId, endpoints, onSent }) {
  const { api } = useSession();
  const [target, setTarget] = useState('');
  const [done, setDone] = useState(null);
  const [send, busy, error] = useAction(async (e) => {
    e.preventDefault();
    if (!target) throw new Error('Choose an endpoint.');
    const d = await api.sendToEndpoint(eventId, target);
    setDone(d);
    onSent();
  });
  if (!endpoints.length) return null;
  return (
    <form class="inline-form send-to" onSubmit={send} noValidate>
      <label for="send-to-endpoint">Send to endpoint</label>
      <select id="send-to-endpoint" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
        <option value="">Choose an endpoint…</option>
        {endpoints.map((ep) => (
          <option key={ep.id} value={ep.id}>
            {ep.url}
            {ep.description ? ` — ${ep.description}` : ''}
          </option>
        ))}
      </select>
      <button type="submit" disabled={busy}>
        {busy ? 'Sending…' : 'Send'}
      </button>
      {error ? (
        <span class="field-error" role="alert">
          {error.message}
        </span>
      ) : null}
      {done ? (
        <span role="status" class="muted">
          Queued delivery <span class="mono">{done.id}</span>.
        </span>
      ) : null}
    </form>
  );
}
