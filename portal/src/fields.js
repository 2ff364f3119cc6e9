// Which form field an API validation error belongs to. The API's 400 sentences name the
// field they are about ("url must use https", "missing field `url`", "description must be at
// most 1024 characters", "each event_types entry \"a b\" may contain only …"); anything else
// is shown for the whole form.

export function fieldForError(message) {
  const m = String(message || '').toLowerCase();
  if (/unknown field/.test(m)) return null;
  if (/event_types?\b|event types?\b/.test(m)) return 'event_types';
  if (/\bdescription\b/.test(m)) return 'description';
  if (/\burl\b|\bhost\b|\bresolves? to\b|\bhttps?\b|\bscheme\b|\bdestination\b/.test(m)) return 'url';
  return null;
}

/** "invoice.*, customer.created  x" → ["invoice.*", "customer.created", "x"] */
export function parseEventTypes(text) {
  return String(text || '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}
