// The portal token arrives in the URL fragment (#token=capy_portal_…), which browsers never
// send to a server. It moves to sessionStorage (this tab only) and the fragment is cleared, so
// it is neither in the address bar, nor in history, nor in a copied link.

export const STORAGE_KEY = 'capy_portal_token';

/** Takes the token out of the fragment (if any) and returns the session's token, or null. */
export function takeToken(win = globalThis.window) {
  const hash = win.location.hash || '';
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  if (params.has('token')) {
    const token = params.get('token') || '';
    if (token) win.sessionStorage.setItem(STORAGE_KEY, token);
    win.history.replaceState(win.history.state, '', win.location.pathname + win.location.search);
  }
  return win.sessionStorage.getItem(STORAGE_KEY) || null;
}

export function forgetToken(win = globalThis.window) {
  win.sessionStorage.removeItem(STORAGE_KEY);
}

export const CAPABILITIES = ['read', 'manage_endpoints', 'replay'];
