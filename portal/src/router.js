import { useEffect, useState } from 'preact/hooks';

export const BASE = '/portal';

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return path;
}

const seg = (s) => decodeURIComponent(s);

/** The portal's screens by path (under /portal). */
export function matchRoute(pathname) {
  const p = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = p.split('/').filter(Boolean);
  try {
    if (parts.length === 0) return { name: 'endpoints' };
    if (parts[0] === 'endpoints' && parts.length === 2) return { name: 'endpoint', endpointId: seg(parts[1]) };
    if (parts[0] === 'endpoints' && parts.length === 4 && parts[2] === 'deliveries')
      return { name: 'delivery', endpointId: seg(parts[1]), deliveryId: seg(parts[3]) };
    if (parts[0] === 'events' && parts.length === 1) return { name: 'events' };
    if (parts[0] === 'events' && parts.length === 2) return { name: 'event', eventId: seg(parts[1]) };
  } catch {
    // a malformed %-escape: not a screen
  }
  return { name: 'not-found' };
}

export const paths = {
  endpoints: () => `${BASE}/`,
  endpoint: (id) => `${BASE}/endpoints/${encodeURIComponent(id)}`,
  delivery: (ep, d) => `${BASE}/endpoints/${encodeURIComponent(ep)}/deliveries/${encodeURIComponent(d)}`,
  events: () => `${BASE}/events`,
  event: (id) => `${BASE}/events/${encodeURIComponent(id)}`,
};
