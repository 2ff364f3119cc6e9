import { useState } from 'preact/hooks';
import { Empty, ErrorBox, Link, Loading, Pager, StateBadge, Time, useCursorPages, useLoad, useSession } from '../ui.jsx';
import { paths } from '../router.js';

export function fanOutText(f) {
  if (!f) return '—';
  const n = Array.isArray(f.endpoints) ? f.endpoints.length : f.endpoints;
  return n === undefined || n === null ? '' : `${n} endpoint${n === 1 ? '' : 's'}`;
}

export function EventsView() {
  const { api } = useSession();
  const [typeInput, setTypeInput] = useState('');
  const [eventType, setEventType] = useState('');
  const pages = useCursorPages(eventType);
  const [state, reload] = useLoad(
    () => api.events({ limit: 25, cursor: pages.cursor, event_type: eventType }),
    [eventType, pages.cursor],
  );
  const list = state.data?.events;
  return (
    <>
      <h1 tabIndex={-1}>Events</h1>
      <form
        class="inline-form filter"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setEventType(typeInput.trim());
        }}
      >
        <label for="event-type-filter">Event type</label>
        <input
          id="event-type-filter"
          type="search"
          spellcheck={false}
          placeholder="invoice.paid"
          value={typeInput}
          onInput={(e) => setTypeInput(e.currentTarget.value)}
        />
        <button type="submit" class="secondary">
          Filter
        </button>
        {eventType ? (
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setTypeInput('');
              setEventType('');
            }}
          >
            Clear
          </button>
        ) : null}
      </form>
      <ErrorBox error={state.error} onRetry={reload} title="Could not load the events" />
      {state.loading && !list ? <Loading what="events" /> : null}
      {list && list.length === 0 ? (
        <Empty>{eventType ? `No ${eventType} events.` : 'No events yet.'}</Empty>
      ) : null}
      {list && list.length > 0 ? (
        <div class="table-wrap">
          <table class="table" data-testid="events-table">
            <thead>
              <tr>
                <th scope="col">Published</th>
                <th scope="col">Event type</th>
                <th scope="col">ID</th>
                <th scope="col">Fan-out</th>
              </tr>
            </thead>
            <tbody>
              {list.map((ev) => (
                <tr key={ev.id} data-event-id={ev.id}>
                  <td>
                    <Link to={paths.event(ev.id)} aria-label={`Event ${ev.id}`}>
                      <Time iso={ev.created_at} />
                    </Link>
                  </td>
                  <td class="mono">{ev.event_type}</td>
                  <td class="mono">{ev.id}</td>
                  <td>
                    {ev.fan_out?.state ? <StateBadge state={ev.fan_out.state} /> : null} {fanOutText(ev.fan_out)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {state.data ? <Pager pages={pages} nextCursor={state.data.next_cursor} label="Events" /> : null}
    </>
  );
}
