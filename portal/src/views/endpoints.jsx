import { useEffect, useRef, useState } from 'preact/hooks';
import {
  ConfirmButton,
  Empty,
  ErrorBox,
  HealthBadge,
  Link,
  Loading,
  SecretReveal,
  useAction,
  useLoad,
  useSession,
} from '../ui.jsx';
import { Sparkline } from '../charts.jsx';
import { paths } from '../router.js';
import { statsWindow } from '../format.js';
import { EndpointForm } from './endpoint-form.jsx';

export function EndpointsView() {
  const { api, can } = useSession();
  const [state, reload] = useLoad(() => api.endpoints(), []);
  const [adding, setAdding] = useState(false);
  const [created, setCreated] = useState(null);
  const manage = can('manage_endpoints');
  const addButton = useRef(null);
  const wasAdding = useRef(false);
  // Closing the form (Cancel, Escape) gives the focus back to the button that opened it.
  useEffect(() => {
    if (wasAdding.current && !adding && !created) addButton.current?.focus();
    wasAdding.current = adding;
  }, [adding]);

  return (
    <>
      <div class="page-head">
        <h1 tabIndex={-1}>Endpoints</h1>
        {manage && !adding ? (
          <button ref={addButton} type="button" onClick={() => setAdding(true)}>
            Add endpoint
          </button>
        ) : null}
      </div>
      {manage && adding ? (
        <section class="card" aria-labelledby="add-title">
          <h2 id="add-title">Add an endpoint</h2>
          <EndpointForm
            submitLabel="Create endpoint"
            onCancel={() => setAdding(false)}
            onSubmit={async (body) => {
              const r = await api.createEndpoint(body);
              setAdding(false);
              setCreated(r);
              reload();
            }}
          />
        </section>
      ) : null}
      {created ? (
        <SecretReveal
          title={`Signing secret for ${created.webhook_endpoint.url}`}
          secret={created.plaintext_secret}
          onDone={() => setCreated(null)}
        />
      ) : null}
      <ErrorBox error={state.error} onRetry={reload} title="Could not load the endpoints" />
      {state.loading && !state.data ? <Loading what="endpoints" /> : null}
      {state.data && state.data.length === 0 ? (
        <Empty>
          No endpoints yet.{manage ? ' Add one to start receiving webhooks.' : ''}
        </Empty>
      ) : null}
      {state.data && state.data.length > 0 ? (
        <ul class="endpoint-list" data-testid="endpoints-list" aria-label="Endpoints">
          {state.data.map((ep) => (
            <EndpointRow key={ep.id} ep={ep} manage={manage} onChanged={reload} />
          ))}
        </ul>
      ) : null}
    </>
  );
}

function EndpointRow({ ep, manage, onChanged }) {
  const { api } = useSession();
  const [active, setActive] = useState(ep.is_active);
  useEffect(() => setActive(ep.is_active), [ep.is_active]);
  const [toggle, busy, error] = useAction(async () => {
    const updated = await api.updateEndpoint(ep.id, { is_active: !active });
    setActive(updated.is_active);
    onChanged();
  });
  return (
    <li class="endpoint-row" data-endpoint-id={ep.id}>
      <div class="ep-main">
        <Link to={paths.endpoint(ep.id)} class="ep-url mono">
          {ep.url}
        </Link>
        {ep.description ? <p class="ep-desc">{ep.description}</p> : null}
        <p class="ep-types muted">
          {ep.event_types && ep.event_types.length ? ep.event_types.join(', ') : 'All event types'}
        </p>
      </div>
      <div class="ep-health">
        <HealthBadge health={ep.health} />
        <EndpointSpark id={ep.id} />
      </div>
      {manage ? (
        <div class="ep-actions">
          <button
            type="button"
            role="switch"
            aria-checked={active ? 'true' : 'false'}
            class={`switch ${active ? 'on' : ''}`}
            disabled={busy}
            onClick={toggle}
            aria-label={`Active: ${ep.url}`}
          >
            <span class="switch-knob" aria-hidden="true" />
            <span>{active ? 'Enabled' : 'Disabled'}</span>
          </button>
          <ConfirmButton
            label="Delete"
            danger
            class="secondary"
            question="Delete this endpoint and its delivery history?"
            confirmLabel="Yes, delete"
            onConfirm={async () => {
              await api.deleteEndpoint(ep.id);
              onChanged();
              // The row and its buttons go: the focus goes to the page's heading.
              document.querySelector('main h1')?.focus();
              return true;
            }}
          />
          {error ? (
            <p class="field-error" role="alert">
              {error.message}
            </p>
          ) : null}
        </div>
      ) : null}
    </li>
  );
}

function EndpointSpark({ id }) {
  const { api } = useSession();
  const [win] = useState(() => statsWindow('24h'));
  const [state] = useLoad(() => api.stats(id, { since: win.since, until: win.until, period: 'hour' }), [id]);
  if (state.error) {
    return (
      <span class="sparkline muted" title={state.error.message}>
        no stats
      </span>
    );
  }
  if (!state.data) {
    return (
      <span class="sparkline muted" data-loading="true">
        …
      </span>
    );
  }
  return <Sparkline stats={state.data} win={win} />;
}
