import { useEffect, useRef, useState } from 'preact/hooks';
import { describedBy, Field } from '../ui.jsx';
import { fieldForError, parseEventTypes } from '../fields.js';

/**
 * URL, description and event types. The API validates; its 400 sentence is shown next to the
 * field it names (or above the buttons when it names none), and that field gets focus.
 */
export function EndpointForm({ initial = {}, submitLabel, onSubmit, onCancel, partial = false }) {
  const [url, setUrl] = useState(initial.url || '');
  const [description, setDescription] = useState(initial.description || '');
  const [types, setTypes] = useState((initial.event_types || []).join(', '));
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const refs = { url: useRef(null), description: useRef(null), event_types: useRef(null) };
  // The form opens where typing starts.
  useEffect(() => refs.url.current?.focus(), []);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    const body = { url, description, event_types: parseEventTypes(types) };
    if (partial) {
      for (const k of Object.keys(body)) {
        const before = k === 'event_types' ? (initial.event_types || []).join(',') : initial[k] || '';
        const now = k === 'event_types' ? body.event_types.join(',') : body[k];
        if (before === now) delete body[k];
      }
    } else if (!description) {
      delete body.description;
    }
    try {
      await onSubmit(body);
    } catch (err) {
      if (err && err.status === 401) return;
      const field = err && err.status === 400 ? fieldForError(err.message) : null;
      setErrors(field ? { [field]: err.message } : { form: err.message || String(err) });
      if (field) refs[field].current?.focus();
    } finally {
      setBusy(false);
    }
  };

  const hintTypes = 'Comma-separated, e.g. invoice.paid, customer.*. Leave empty for every event.';
  return (
    <form
      class="form"
      onSubmit={submit}
      noValidate
      onKeyDown={(e) => {
        if (e.key === 'Escape' && onCancel && !busy) onCancel();
      }}
    >
      <Field id="ep-url" label="URL" error={errors.url}>
        <input
          id="ep-url"
          ref={refs.url}
          name="url"
          type="text"
          inputMode="url"
          autoComplete="off"
          spellcheck={false}
          placeholder="https://example.com/webhooks"
          value={url}
          onInput={(e) => setUrl(e.currentTarget.value)}
          aria-invalid={errors.url ? 'true' : undefined}
          aria-describedby={describedBy('ep-url', errors.url)}
          required
        />
      </Field>
      <Field id="ep-description" label="Description (optional)" error={errors.description}>
        <input
          id="ep-description"
          ref={refs.description}
          name="description"
          type="text"
          value={description}
          onInput={(e) => setDescription(e.currentTarget.value)}
          aria-invalid={errors.description ? 'true' : undefined}
          aria-describedby={describedBy('ep-description', errors.description)}
        />
      </Field>
      <Field id="ep-types" label="Event types" error={errors.event_types} hint={hintTypes}>
        <input
          id="ep-types"
          ref={refs.event_types}
          name="event_types"
          type="text"
          spellcheck={false}
          value={types}
          onInput={(e) => setTypes(e.currentTarget.value)}
          aria-invalid={errors.event_types ? 'true' : undefined}
          aria-describedby={describedBy('ep-types', errors.event_types, hintTypes)}
        />
      </Field>
      {errors.form ? (
        <p class="field-error" role="alert" data-testid="form-error">
          {errors.form}
        </p>
      ) : null}
      <div class="buttons">
        <button type="submit" disabled={busy}>
          {busy ? 'Saving…' : submitLabel}
        </button>
        {onCancel ? (
          <button type="button" class="secondary" onClick={onCancel} disabled={busy}>
            Cancel
          </button>
        ) : null}
      </div>
    </form>
  );
}
