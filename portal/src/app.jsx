import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { createApi } from './api.js';
import { forgetToken, takeToken } from './session.js';
import { matchRoute, paths, usePath } from './router.js';
import { ErrorBox, Link, Loading, SessionContext, useSession } from './ui.jsx';
import { EndpointsView } from './views/endpoints.jsx';
import { EndpointView } from './views/endpoint.jsx';
import { DeliveryView } from './views/delivery.jsx';
import { EventsView } from './views/events.jsx';
import { EventView } from './views/event.jsx';

export function App() {
  const [token] = useState(() => takeToken());
  const [phase, setPhase] = useState(token ? 'loading' : 'missing');
  const [session, setSession] = useState(null);
  const [error, setError] = useState(null);
  const [attempt, setAttempt] = useState(0);
  const api = useMemo(() => (token ? createApi({ token, onEnded: () => setPhase('ended') }) : null), [token]);
  // An ended session's token is of no use to anyone: it leaves the tab's storage.
  useEffect(() => {
    if (phase === 'ended') forgetToken();
  }, [phase]);

  useEffect(() => {
    if (!api) return;
    setPhase((p) => (p === 'ended' ? p : 'loading'));
    api.session().then(
      (s) => {
        setSession(s);
        setPhase((p) => (p === 'ended' ? p : 'ready'));
      },
      (e) => {
        if (e.status === 401) setPhase('ended');
        else {
          setError(e);
          setPhase('error');
        }
      },
    );
  }, [api, attempt]);

  // The session ends on its own at expires_at, even if nothing is clicked.
  useEffect(() => {
    if (!session?.expires_at) return undefined;
    const left = Date.parse(session.expires_at) - Date.now();
    if (!(left < 2 ** 31 - 1)) return undefined;
    const t = setTimeout(() => setPhase('ended'), Math.max(0, left));
    return () => clearTimeout(t);
  }, [session]);

  const ctx = useMemo(() => {
    const caps = new Set(session?.capabilities || []);
    return { api, session, can: (c) => c === 'read' || caps.has(c) };
  }, [api, session]);

  if (phase === 'ended' || phase === 'missing') return <Ended missing={phase === 'missing'} />;
  if (phase === 'loading') {
    return (
      <main id="main" class="center">
        <Loading what="your session" />
      </main>
    );
  }
  if (phase === 'error') {
    return (
      <main id="main" class="center">
        <h1>Webhooks</h1>
        <ErrorBox error={error} onRetry={() => setAttempt((a) => a + 1)} title="Could not start the portal" />
      </main>
    );
  }
  return (
    <SessionContext.Provider value={ctx}>
      <Shell />
    </SessionContext.Provider>
  );
}

function Ended({ missing }) {
  return (
    <main id="main" class="center ended" data-testid="session-ended">
      <h1>{missing ? 'No portal session' : 'Your session has ended'}</h1>
      <p>
        {missing
          ? 'This page opens from a link your application gives you. Open the webhooks portal from there.'
          : 'This portal link has expired or was revoked. Open the webhooks portal again from your application to get a new one.'}
      </p>
    </main>
  );
}

function Shell() {
  const path = usePath();
  const route = matchRoute(path);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    window.scrollTo(0, 0);
    requestAnimationFrame(() => document.querySelector('main h1')?.focus());
  }, [path]);
  const section = route.name.startsWith('event') ? 'events' : 'endpoints';
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Webhooks</span>
        <nav aria-label="Portal">
          <Link to={paths.endpoints()} aria-current={section === 'endpoints' ? 'page' : undefined}>
            Endpoints
          </Link>
          <Link to={paths.events()} aria-current={section === 'events' ? 'page' : undefined}>
            Events
          </Link>
        </nav>
        <Access />
      </header>
      <main id="main">
        <Screen route={route} />
      </main>
    </>
  );
}

function Access() {
  const { can } = useSession();
  if (can('manage_endpoints') || can('replay')) return null;
  return (
    <span class="badge access" title="This session can look but not change anything">
      Read only
    </span>
  );
}

function Screen({ route }) {
  switch (route.name) {
    case 'endpoints':
      return <EndpointsView />;
    case 'endpoint':
      return <EndpointView key={route.endpointId} endpointId={route.endpointId} />;
    case 'delivery':
      return <DeliveryView key={route.deliveryId} endpointId={route.endpointId} deliveryId={route.deliveryId} />;
    case 'events':
      return <EventsView />;
    case 'event':
      return <EventView key={route.eventId} eventId={route.eventId} />;
    default:
      return (
        <>
          <h1 tabIndex={-1}>Page not found</h1>
          <p>
            <Link to={paths.endpoints()}>Go to the endpoints</Link>
          </p>
        </>
      );
  }
}
