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
import { fmtMs, prettyJson } from '../format.js';

export function DeliveryView({ endpointId, deliveryId }) {
  const { api, can } = useSession();
  const [state, reload] = useLoad(() => api.delivery(endpointId, deliveryId), [endpointId, deliveryId]);
  const d = state.data;
  usePoll(reload, 1000, Boolean(d && d.state === 'pending'));
  const [retry, retrying, retryError] = useAction(async () => {
    await api.retry(endpointId, deliveryId);
    reload();
  });

  return (
    <>
      <p class="crumbs">
        <Link to={paths.endpoint(endpointId)}>← Endpoint</Link>
      </p>
      <div class="page-head">
        <h1 tabIndex={-1}>
          Delivery <span class="mono">{deliveryId}</span>
        </h1>
        {d ? <StateBadge state={d.state} /> : null}
      </div>
      {state.loading && !d ? <Loading what="the delivery" /> : null}
      <ErrorBox error={state.error} onRetry={state.error?.status === 404 ? null : reload} />
      {d ? (
        <>
          <dl class="facts">
            <div>
              <dt>Event</dt>
              <dd>
                <Link to={paths.event(d.event_id)} class="mono">
                  {d.event_id}
                </Link>
              </dd>
            </div>
            <div>
              <dt>Event type</dt>
              <dd class="mono">{d.event_type}</dd>
            </div>
            <div>
              <dt>Attempts</dt>
              <dd data-testid="delivery-attempts">
                {d.attempts} of {d.max_attempts}
              </dd>
            </div>
            <div>
              <dt>Last status</dt>
              <dd>{d.response_status ?? '—'}</dd>
            </div>
            {d.last_error ? (
              <div>
                <dt>Last error</dt>
                <dd>{d.last_error}</dd>
              </div>
            ) : null}
            <div>
              <dt>Created</dt>
              <dd>
                <Time iso={d.created_at} />
              </dd>
            </div>
            {d.delivered_at ? (
              <div>
                <dt>Delivered</dt>
                <dd>
                  <Time iso={d.delivered_at} />
                </dd>
              </div>
            ) : null}
            {d.state === 'pending' && d.next_attempt_at ? (
              <div>
                <dt>Next attempt</dt>
                <dd>
                  <Time iso={d.next_attempt_at} />
                </dd>
              </div>
            ) : null}
          </dl>
          {can('replay') && d.state !== 'pending' ? (
            <div class="toolbar">
              <button type="button" onClick={retry} disabled={retrying}>
                {retrying ? 'Retrying…' : 'Retry delivery'}
              </button>
              {retryError ? (
                <span class="field-error" role="alert">
                  {retryError.message}
                </span>
              ) : null}
            </div>
          ) : null}
          <section class="card" aria-labelledby="attempts-title">
            <h2 id="attempts-title">Attempts</h2>
            {(d.attempt_log || []).length === 0 ? (
              <Empty>No attempts yet.</Empty>
            ) : (
              <div class="table-wrap">
                <table class="table" data-testid="attempt-log">
                  <thead>
                    <tr>
                      <th scope="col">#</th>
                      <th scope="col">Started</th>
                      <th scope="col">Status</th>
                      <th scope="col">Duration</th>
                      <th scope="col">Error</th>
                      <th scope="col">Response</th>
                    </tr>
                  </thead>
                  <tbody>
                    {d.attempt_log.map((a, i) => (
                      <tr key={`${a.attempt}-${i}`}>
                        <td>{a.attempt}</td>
                        <td>
                          <Time iso={a.started_at} />
                        </td>
                        <td>{a.response_status ?? '—'}</td>
                        <td>{fmtMs(a.duration_ms)}</td>
                        <td>{a.error || ''}</td>
                        <td>
                          {a.response_excerpt ? <code class="excerpt">{a.response_excerpt}</code> : ''}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
          <section class="card" aria-labelledby="payload-title">
            <h2 id="payload-title">Payload</h2>
            <pre class="json" data-testid="payload" tabIndex={0}>
              {prettyJson(d.payload)}
            </pre>
          </section>
        </>
      ) : null}
    </>
  );
}
