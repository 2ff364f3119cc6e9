import { useState } from 'preact/hooks';
import { ConfirmButton, ErrorBox, StateBadge, useAction, usePoll, useSession } from '../ui.jsx';
import { fmtCount, REPLAY_PRESETS, replaySince, toLocalInput } from '../format.js';

const DONE = new Set(['succeeded', 'failed', 'canceled']);

/**
 * "Replay failed since…": pick a window, count what it matches (a dry run), then confirm
 * the replay and follow the job until it ends.
 */
export function ReplayPanel({ endpointId, onStarted }) {
  const { api } = useSession();
  const [preset, setPreset] = useState('24h');
  const [custom, setCustom] = useState(() => toLocalInput(Date.now() - 24 * 3600 * 1000));
  const [count, setCount] = useState(null); // { matched, since }
  const [job, setJob] = useState(null);

  const [dryRun, counting, countError, setCountError] = useAction(async (e) => {
    e?.preventDefault();
    setJob(null);
    const since = replaySince(preset, custom);
    if (!since) {
      setCountError(new Error('Pick a valid start time.'));
      return;
    }
    const r = await api.replay(endpointId, { since, states: ['failed'], dry_run: true });
    setCount({ matched: r.matched, since });
  });

  const reset = (fn) => (e) => {
    fn(e.currentTarget.value);
    setCount(null);
  };

  return (
    <section class="card" aria-labelledby="replay-title">
      <h2 id="replay-title">Replay failed deliveries</h2>
      <form class="replay-form" onSubmit={dryRun} noValidate>
        <fieldset>
          <legend>Failed since</legend>
          <div class="segmented">
            {REPLAY_PRESETS.map(([k, label]) => (
              <label key={k} class={preset === k ? 'on' : ''}>
                <input
                  type="radio"
                  name="replay-preset"
                  value={k}
                  checked={preset === k}
                  onChange={reset(setPreset)}
                />
                {label}
              </label>
            ))}
            <label class={preset === 'custom' ? 'on' : ''}>
              <input
                type="radio"
                name="replay-preset"
                value="custom"
                checked={preset === 'custom'}
                onChange={reset(setPreset)}
              />
              Custom
            </label>
          </div>
          {preset === 'custom' ? (
            <div class="field">
              <label for="replay-custom">Start (your local time)</label>
              <input id="replay-custom" type="datetime-local" value={custom} onInput={reset(setCustom)} />
            </div>
          ) : null}
        </fieldset>
        <button type="submit" class="secondary" disabled={counting}>
          {counting ? 'Counting…' : 'Count matching deliveries'}
        </button>
      </form>
      <ErrorBox error={countError} />
      {count ? (
        <div class="replay-confirm">
          <p role="status" data-testid="replay-count">
            <strong data-testid="replay-matched">{fmtCount(count.matched)}</strong>{' '}
            {count.matched === 1 ? 'failed delivery matches' : 'failed deliveries match'}.
          </p>
          {count.matched > 0 ? (
            <ConfirmButton
              label={`Replay ${fmtCount(count.matched)}`}
              question={`Send ${fmtCount(count.matched)} failed ${count.matched === 1 ? 'delivery' : 'deliveries'} again?`}
              confirmLabel="Yes, replay"
              onConfirm={async () => {
                const r = await api.replay(endpointId, { since: count.since, states: ['failed'] });
                setJob(r.job);
                setCount(null);
                onStarted?.();
                return true;
              }}
            />
          ) : null}
        </div>
      ) : null}
      {job ? <JobProgress key={job.id} initial={job} onDone={onStarted} /> : null}
    </section>
  );
}

export function JobProgress({ initial, onDone }) {
  const { api, can } = useSession();
  const [job, setJob] = useState(initial);
  const [error, setError] = useState(null);
  const done = DONE.has(job.state);
  usePoll(
    async () => {
      try {
        const j = await api.job(job.id);
        setJob(j);
        setError(null);
        if (DONE.has(j.state)) onDone?.();
      } catch (e) {
        setError(e);
      }
    },
    1000,
    !done,
  );
  const [cancel, canceling, cancelError] = useAction(async () => {
    await api.cancelJob(job.id);
    setJob(await api.job(job.id));
  });
  const matched = Number(job.matched || 0);
  const processed = Number(job.processed || 0);
  return (
    <div class="job" data-testid="job-progress" data-job-state={job.state}>
      <p role="status">
        Replay job <span class="mono">{job.id}</span>: <StateBadge state={job.state} />{' '}
        <span data-testid="job-processed">
          {fmtCount(processed)} of {fmtCount(matched)}
        </span>{' '}
        processed
      </p>
      <progress max={Math.max(1, matched)} value={Math.min(processed, Math.max(1, matched))} aria-label="Replay progress" />
      {job.error ? <p class="field-error">{job.error}</p> : null}
      {!done && can('replay') ? (
        <button type="button" class="secondary" onClick={cancel} disabled={canceling}>
          Cancel job
        </button>
      ) : null}
      <ErrorBox error={error || cancelError} />
    </div>
  );
}
