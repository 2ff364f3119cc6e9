import { useEffect, useRef, useState } from 'preact/hooks';
import {
  ConfirmButton,
  Empty,
  useFocusHeadingWhenLoaded,
  ErrorBox,
  HealthBadge,
  Link,
  Loading,
  Pager,
  SecretReveal,
  StateBadge,
  Time,
  useAction,
  useCursorPages,
  useLoad,
  usePoll,
  useSession,
} from '../ui.jsx';
import { LatencyChart, VolumeChart } from '../charts.jsx';
import { navigate, paths } from '../router.js';
import { statsWindow } from '../format.js';
import { EndpointForm } from './endpoint-form.jsx';
import { ReplayPanel } from './replay.jsx';

/** There is no single-endpoint GET: the list is small and carries health. */
export async function findEndpoint(api, id) {
  const all = await api.endpoints();
  const ep = all.find((e) => e.id === id);
  if (!ep) {
    const err = new Error('No such endpoint: it may have been deleted.');
    err.status = 404;
    throw err;
  }
  return ep;
}

export function EndpointView({ endpointId }) {
  const { api, can } = useSession();
  const [state, reload] = useLoad(() => findEndpoint(api, endpointId), [endpointId]);
  const [editing, setEditing] = useState(false);
  const [secret, setSecret] = useState(null);
  const [deliveriesTick, setDeliveriesTick] = useState(0);
  const refreshDeliveries = () => setDeliveriesTick((t) => t + 1);
  const manage = can('manage_endpoints');
  const ep = state.data;
  useFocusHeadingWhenLoaded(Boolean(ep));

  const [toggle, toggling, toggleError] = useAction(async () => {
    await api.updateEndpoint(ep.id, { is_active: !ep.is_active });
    reload();
  });

  if (!ep) {
    return (
      <>
        <p class="crumbs">
          <Link to={paths.endpoints()}>← Endpoints</Link>
        </p>
        <h1 tabIndex={-1}>Endpoint</h1>
        {state.loading ? <Loading what="the endpoint" /> : null}
        <ErrorBox error={state.error} onRetry={state.error?.status === 404 ? null : reload} />
      </>
    );
  }

  return (
    <>
      <p class="crumbs">
        <Link to={paths.endpoints()}>← Endpoints</Link>
      </p>
      <div class="page-head">
        <h1 tabIndex={-1} class="mono break">
          {ep.url}
        </h1>
        <HealthBadge health={ep.health} />
      </div>
      {ep.description ? <p class="ep-desc">{ep.description}</p> : null}
      <dl class="facts">
        <div>
          <dt>Event types</dt>
          <dd>{ep.event_types && ep.event_types.length ? ep.event_types.join(', ') : 'All event types'}</dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>{ep.is_active ? 'Enabled' : 'Disabled'}</dd>
        </div>
        {ep.failing_since ? (
          <div>
            <dt>Failing since</dt>
            <dd>
              <Time iso={ep.failing_since} />
            </dd>
          </div>
        ) : null}
        {ep.disable_at ? (
          <div>
            <dt>Will be disabled at</dt>
            <dd>
              <Time iso={ep.disable_at} />
            </dd>
          </div>
        ) : null}
        <div>
          <dt>Created</dt>
          <dd>
            <Time iso={ep.created_at} />
          </dd>
        </div>
        <div>
          <dt>ID</dt>
          <dd class="mono">{ep.id}</dd>
        </div>
      </dl>

      {manage ? (
        <div class="toolbar" role="group" aria-label="Endpoint actions">
          <button type="button" class="secondary" onClick={() => setEditing(!editing)} aria-expanded={editing}>
            Edit
          </button>
          <button type="button" class="secondary" onClick={toggle} disabled={toggling}>
            {ep.is_active ? 'Disable' : 'Enable'}
          </button>
          <ConfirmButton
            label="Rotate secret"
            question="Rotate the signing secret? The old one keeps signing for a grace period."
            confirmLabel="Yes, rotate"
            onConfirm={async () => {
              const r = await api.rotateSecret(ep.id);
              setSecret(r.plaintext_secret);
              return true;
            }}
          />
          <ConfirmButton
            label="Delete"
            danger
            question="Delete this endpoint and its delivery history?"
            confirmLabel="Yes, delete"
            onConfirm={async () => {
              await api.deleteEndpoint(ep.id);
              navigate(paths.endpoints());
              return true;
            }}
          />
          {toggleError ? (
            <span class="field-error" role="alert">
              {toggleError.message}
            </span>
          ) : null}
        </div>
      ) : null}

      {secret ? <SecretReveal title="New signing secret" secret={secret} onDone={() => setSecret(null)} /> : null}

      {manage && editing ? (
        <section class="card" aria-labelledby="edit-title">
          <h2 id="edit-title">Edit endpoint</h2>
          <EndpointForm
            initial={ep}
            partial
            submitLabel="Save changes"
            onCancel={() => setEditing(false)}
            onSubmit={async (body) => {
              if (Object.keys(body).length) await api.updateEndpoint(ep.id, body);
              setEditing(false);
              reload();
            }}
          />
        </section>
      ) : null}

      <StatsPanel endpointId={ep.id} tick={deliveriesTick} />

      {ep.is_active && manage ? <TestEventPanel endpointId={ep.id} onSent={refreshDeliveries} /> : null}
      {ep.is_active && can('replay') ? <ReplayPanel endpointId={ep.id} onStarted={refreshDeliveries} /> : null}
      {!ep.is_active && (manage || can('replay')) ? (
        <p class="empty" data-testid="disabled-note">
          This endpoint is disabled, so nothing is sent to it: {manage ? 'enable it to send a test event or replay.' : 'it must be enabled before a replay.'}
        </p>
      ) : null}

      <DeliveriesPanel endpointId={ep.id} tick={deliveriesTick} />
    </>
  );
}

const RANGES = [
  ['24h', '24 h'],
  ['7d', '7 d'],
  ['30d', '30 d'],
];

function StatsPanel({ endpointId, tick }) {
  const { api } = useSession();
  const [range, setRange] = useState('24h');
  // A radio group is one Tab stop; the arrow keys move the choice (and the focus) along it.
  const onRangeKey = (e) => {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step) return;
    e.preventDefault();
    const i = RANGES.findIndex(([k]) => k === range);
    const next = RANGES[(i + step + RANGES.length) % RANGES.length][0];
    setRange(next);
    e.currentTarget.querySelector(`[data-range="${next}"]`)?.focus();
  };
  const [state, reload] = useLoad(async () => {
    const win = statsWindow(range);
    const stats = await api.stats(endpointId, { since: win.since, until: win.until, period: win.period });
    return { stats, win };
  }, [endpointId, range], [tick]);
  return (
    <section class="card" aria-labelledby="stats-title">
      <div class="section-head">
        <h2 id="stats-title">Deliveries and latency</h2>
        <div class="segmented" role="radiogroup" aria-label="Time range" onKeyDown={onRangeKey}>
          {RANGES.map(([k, label]) => (
            <button
              key={k}
              type="button"
              role="radio"
              aria-checked={range === k ? 'true' : 'false'}
              tabIndex={range === k ? 0 : -1}
              data-range={k}
              class={range === k ? 'on' : ''}
              onClick={() => setRange(k)}
            >
              {label}
            </button>
          ))}
        </div>
      </div>
      <ErrorBox error={state.error} onRetry={reload} title="Could not load the statistics" />
      {state.loading && !state.data ? <Loading what="statistics" /> : null}
      {state.data ? (
        <div class={state.loading ? 'stale' : ''}>
          <VolumeChart stats={state.data.stats} win={state.data.win} />
          <LatencyChart stats={state.data.stats} win={state.data.win} />
        </div>
      ) : null}
    </section>
  );
}

const SETTLED = new Set(['delivered', 'failed']);

/** A delivery's state, polled until it settles. */
export function useSettling(endpointId, initial) {
  const { api } = useSession();
  const [delivery, setDelivery] = useState(initial);
  usePoll(
    async () => {
      setDelivery(await api.delivery(endpointId, delivery.id));
    },
    1000,
    Boolean(delivery && !SETTLED.has(delivery.state)),
  );
  return [delivery, setDelivery];
}

function TestEventPanel({ endpointId, onSent }) {
  const { api } = useSession();
  const [eventType, setEventType] = useState('');
  const [sent, setSent] = useState(null);
  const [send, busy, error] = useAction(async (e) => {
    e.preventDefault();
    const body = eventType.trim() ? { event_type: eventType.trim() } : {};
    const d = await api.sendTest(endpointId, body);
    setSent(d);
    onSent();
  });
  return (
    <section class="card" aria-labelledby="test-title">
      <h2 id="test-title">Send a test event</h2>
      <form class="inline-form" onSubmit={send} noValidate>
        <label for="test-type">Event type (optional)</label>
        <input
          id="test-type"
          type="text"
          placeholder="capy.ping"
          spellcheck={false}
          value={eventType}
          onInput={(e) => setEventType(e.currentTarget.value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Sending…' : 'Send test event'}
        </button>
      </form>
      <ErrorBox error={error} />
      {sent ? <SentDelivery key={sent.id} endpointId={endpointId} initial={sent} onSettled={onSent} /> : null}
    </section>
  );
}

export function SentDelivery({ endpointId, initial, onSettled }) {
  const [d] = useSettling(endpointId, initial);
  const reported = useRef(false);
  useEffect(() => {
    if (SETTLED.has(d.state) && !reported.current) {
      reported.current = true;
      onSettled?.();
    }
  }, [d.state]);
  return (
    <p class="sent" role="status" data-testid="sent-delivery">
      Delivery <Link to={paths.delivery(endpointId, d.id)} class="mono">{d.id}</Link>: <StateBadge state={d.state} />
      {d.state === 'pending' ? <span class="muted"> waiting for the endpoint…</span> : null}
      {d.response_status ? <span class="muted"> HTTP {d.response_status}</span> : null}
      {d.last_error && d.state !== 'delivered' && d.last_error !== `HTTP ${d.response_status}` ? (
        <span class="muted"> {d.last_error}</span>
      ) : null}
    </p>
  );
}

const FILTERS = [
  ['', 'All states'],
  ['pending', 'Pending'],
  ['delivered', 'Delivered'],
  ['failed', 'Failed'],
];

function DeliveriesPanel({ endpointId, tick }) {
  const { api } = useSession();
  const [filter, setFilter] = useState('');
  const pages = useCursorPages(`${endpointId}|${filter}`);
  const [state, reload] = useLoad(
    () => api.deliveries(endpointId, { limit: 20, cursor: pages.cursor, state: filter }),
    [endpointId, filter, pages.cursor],
    [tick],
  );
  const list = state.data?.deliveries;
  const pendingShown = Boolean(list && list.some((d) => d.state === 'pending'));
  usePoll(reload, 2000, pendingShown);
  return (
    <section class="card" aria-labelledby="deliveries-title">
      <div class="section-head">
        <h2 id="deliveries-title">Deliveries</h2>
        <div class="inline-form">
          <label for="state-filter">State</label>
          <select id="state-filter" value={filter} onChange={(e) => setFilter(e.currentTarget.value)}>
            {FILTERS.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
          <button type="button" class="secondary" onClick={reload}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorBox error={state.error} onRetry={reload} title="Could not load the deliveries" />
      {state.loading && !list ? <Loading what="deliveries" /> : null}
      {list && list.length === 0 ? (
        <Empty>{filter ? `No ${filter} deliveries.` : 'No deliveries yet.'}</Empty>
      ) : null}
      {list && list.length > 0 ? (
        <div class="table-wrap">
          <table class="table" data-testid="deliveries-table">
            <thead>
              <tr>
                <th scope="col">Created</th>
                <th scope="col">Event type</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">Status</th>
                <th scope="col">Last error</th>
              </tr>
            </thead>
            <tbody>
              {list.map((d) => (
                <tr key={d.id} data-delivery-id={d.id}>
                  <td>
                    <Link to={paths.delivery(endpointId, d.id)} aria-label={`Delivery ${d.id}`}>
                      <Time iso={d.created_at} />
                    </Link>
                  </td>
                  <td class="mono">{d.event_type}</td>
                  <td>
                    <StateBadge state={d.state} />
                  </td>
                  <td>
                    {d.attempts}/{d.max_attempts}
                  </td>
                  <td>{d.response_status ?? '—'}</td>
                  <td class="clip">{d.last_error || ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {state.data ? <Pager pages={pages} nextCursor={state.data.next_cursor} label="Deliveries" /> : null}
    </section>
  );
}
