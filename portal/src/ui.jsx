import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useReducer, useRef, useState } from 'preact/hooks';
import { navigate } from './router.js';
import { fmtTime } from './format.js';

export const SessionContext = createContext(null);

/** { api, session, can(capability) } */
export const useSession = () => useContext(SessionContext);

/**
 * Loads data with `fn`, again whenever `deps` or `refresh` change or `reload()` is called. A
 * change of `deps` asks a new question and drops what was shown; `refresh` and `reload()`
 * ask the same one again and keep showing the last answer meanwhile.
 */
export function useLoad(fn, deps, refresh = []) {
  const [state, setState] = useState({ loading: true, data: undefined, error: null });
  const [tick, reload] = useReducer((x) => x + 1, 0);
  const lastDeps = useRef(null);
  useEffect(() => {
    let live = true;
    // A new question (a filter, a page) drops the old rows, so an error never sits above
    // rows that answered a different one.
    const key = JSON.stringify(deps);
    const same = lastDeps.current === key;
    lastDeps.current = key;
    setState((s) => ({ loading: true, data: same ? s.data : undefined, error: null }));
    fn().then(
      (data) => live && setState({ loading: false, data, error: null }),
      (error) => live && setState((s) => ({ loading: false, data: s.data, error })),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, ...refresh, tick]);
  return [state, reload];
}

/** Calls `fn` every `ms` while `active`; stops on unmount. */
export function usePoll(fn, ms, active) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    if (!active) return undefined;
    let timer = null;
    let live = true;
    const tick = async () => {
      try {
        await saved.current();
      } finally {
        if (live) timer = setTimeout(tick, ms);
      }
    };
    timer = setTimeout(tick, ms);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [ms, active]);
}

/** Runs an action, tracking busy and error; returns [run, busy, error, setError]. */
export function useAction(fn) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = useCallback(
    async (...args) => {
      setBusy(true);
      setError(null);
      try {
        return await fn(...args);
      } catch (e) {
        setError(e);
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [fn],
  );
  return [run, busy, error, setError];
}

/**
 * Moves the focus to the page's heading when its content replaces a loading screen and the
 * focus was on the loading heading or lost with it (the router focused that heading).
 */
export function useFocusHeadingWhenLoaded(loaded) {
  useEffect(() => {
    if (!loaded) return;
    const active = document.activeElement;
    if (!active || active === document.body || !active.isConnected) {
      document.querySelector('main h1')?.focus();
    }
  }, [loaded]);
}

export function Link({ to, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}

export function Loading({ what }) {
  return (
    <p class="loading" role="status">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function ErrorBox({ error, onRetry, title }) {
  if (!error) return null;
  return (
    <div class="error-box" role="alert">
      <p>
        {title ? <strong>{title}: </strong> : null}
        {error.message || String(error)}
      </p>
      {onRetry ? (
        <button type="button" class="secondary" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}

export function Empty({ children }) {
  return <p class="empty">{children}</p>;
}

const HEALTH = {
  healthy: 'Healthy',
  degraded: 'Degraded',
  failing: 'Failing',
  disabled: 'Disabled',
};

export function HealthBadge({ health }) {
  const h = HEALTH[health] ? health : 'unknown';
  return <span class={`badge health-${h}`}>{HEALTH[health] || String(health || 'Unknown')}</span>;
}

const STATES = {
  pending: 'Pending',
  delivered: 'Delivered',
  failed: 'Failed',
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Succeeded',
  canceled: 'Canceled',
  done: 'Done',
};

export function StateBadge({ state }) {
  const known = STATES[state];
  return (
    <span class={`badge state-${known ? state : 'unknown'}`} data-state={state}>
      {known || String(state || 'Unknown')}
    </span>
  );
}

export function Time({ iso }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={iso}>
      {fmtTime(iso)}
    </time>
  );
}

/** A secret shown once, with a copy button; gone once dismissed or the page changes. */
export function SecretReveal({ secret, onDone, title = 'Signing secret' }) {
  const [copied, setCopied] = useState(null);
  const input = useRef(null);
  useEffect(() => {
    input.current?.focus();
    input.current?.select();
  }, []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied('Copied to the clipboard.');
    } catch {
      input.current?.select();
      setCopied('Selected: press Ctrl+C (⌘C) to copy.');
    }
  };
  return (
    <section class="secret" aria-label={title} data-testid="secret-reveal">
      <h3>{title}</h3>
      <p>Copy it now: it will not be shown again.</p>
      <div class="secret-row">
        <input
          ref={input}
          readOnly
          value={secret}
          aria-label={title}
          class="mono"
          data-testid="secret-value"
          spellcheck={false}
        />
        <button type="button" onClick={copy}>
          Copy
        </button>
      </div>
      <p class="muted" role="status">
        {copied || ''}
      </p>
      <button type="button" class="secondary" onClick={onDone}>
        I have saved it
      </button>
    </section>
  );
}

/**
 * A button that asks before acting: the question, a confirm and a cancel button appear in
 * place; Escape cancels. `onConfirm` may throw (the error shows beside it).
 */
export function ConfirmButton({ label, question, confirmLabel, onConfirm, danger = false, class: cls = '' }) {
  const [asking, setAsking] = useState(false);
  const [run, busy, error] = useAction(onConfirm);
  const yes = useRef(null);
  const no = useRef(null);
  const opener = useRef(null);
  useEffect(() => {
    // A destructive question starts on Cancel: Enter twice must not delete.
    if (asking) (danger ? no : yes).current?.focus();
  }, [asking]);
  const cancel = () => {
    setAsking(false);
    setTimeout(() => opener.current?.focus(), 0);
  };
  if (!asking) {
    return (
      <span class="confirm">
        <button
          ref={opener}
          type="button"
          class={`${danger ? 'danger' : 'secondary'} ${cls}`}
          onClick={() => setAsking(true)}
        >
          {label}
        </button>
        {error ? (
          <span class="field-error" role="alert">
            {error.message}
          </span>
        ) : null}
      </span>
    );
  }
  return (
    <span
      class="confirm asking"
      role="group"
      aria-label={question}
      onKeyDown={(e) => {
        if (e.key === 'Escape') cancel();
      }}
    >
      <span class="question">{question}</span>
      <button
        ref={yes}
        type="button"
        class={danger ? 'danger' : ''}
        disabled={busy}
        onClick={async () => {
          const r = await run();
          if (r !== undefined) setAsking(false);
        }}
      >
        {busy ? 'Working…' : confirmLabel || label}
      </button>
      <button ref={no} type="button" class="secondary" onClick={cancel} disabled={busy}>
        Cancel
      </button>
      {error ? (
        <span class="field-error" role="alert">
          {error.message}
        </span>
      ) : null}
    </span>
  );
}

export function Field({ id, label, error, hint, children }) {
  return (
    <div class={`field ${error ? 'has-error' : ''}`}>
      <label for={id}>{label}</label>
      {children}
      {hint ? (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
      {error ? (
        <p class="field-error" id={`${id}-error`} role="alert" data-testid={`${id}-error`}>
          {error}
        </p>
      ) : null}
    </div>
  );
}

export const describedBy = (id, error, hint) =>
  [hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(' ') || undefined;

/** Cursor paging: a stack of the cursors that led to each page, so Previous works too. */
export function useCursorPages(resetKey) {
  const [stack, setStack] = useState([null]);
  useEffect(() => setStack([null]), [resetKey]);
  const cursor = stack[stack.length - 1];
  return {
    cursor,
    page: stack.length,
    next: (c) => setStack((s) => [...s, c]),
    prev: () => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)),
    first: () => setStack([null]),
  };
}

export function Pager({ pages, nextCursor, label }) {
  if (pages.page === 1 && !nextCursor) return null;
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" class="secondary" disabled={pages.page === 1} onClick={pages.prev}>
        ← Newer
      </button>
      <span class="muted">Page {pages.page}</span>
      <button type="button" class="secondary" disabled={!nextCursor} onClick={() => pages.next(nextCursor)}>
        Older →
      </button>
    </nav>
  );
}
