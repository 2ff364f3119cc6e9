//! Which endpoints receive which events.

use crate::domain::event::SYSTEM_PREFIX;

/// Does an endpoint subscribed to `patterns` receive `event_type`? Empty = every event;
/// `*` = every event; `invoice.*` = any type under `invoice.`; otherwise exact. The system's
/// own events (`capy.…`) reach only endpoints that name them or a `capy.` wildcard, never
/// through `[]` or `*`.
pub fn subscribed(patterns: &[String], event_type: &str) -> bool {
    let system = event_type.starts_with(SYSTEM_PREFIX);
    if patterns.is_empty() {
        return !system;
    }
    patterns.iter().any(|p| {
        (p == "*" && !system)
            || p == event_type
            || p.strip_suffix('*').is_some_and(|prefix| {
                prefix.ends_with('.')
                    && event_type.starts_with(prefix)
                    && (!system || prefix.starts_with(SYSTEM_PREFIX))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subscription_patterns() {
        assert!(subscribed(&[], "invoice.paid"));
        assert!(subscribed(&p(&["*"]), "x"));
        assert!(subscribed(&p(&["invoice.*"]), "invoice.paid"));
        assert!(subscribed(&p(&["invoice.*"]), "invoice.line.added"));
        assert!(!subscribed(&p(&["invoice.*"]), "invoice"));
        assert!(!subscribed(&p(&["invoice.*"]), "invoices.paid"));
        assert!(subscribed(
            &p(&["user.created", "invoice.paid"]),
            "invoice.paid"
        ));
        assert!(!subscribed(&p(&["invoice.paid"]), "invoice.paid.late"));
    }

    #[test]
    fn system_events_need_their_name_or_a_capy_wildcard() {
        let t = "capy.endpoint.disabled";
        assert!(!subscribed(&[], t));
        assert!(!subscribed(&p(&["*"]), t));
        assert!(subscribed(&p(&["capy.*"]), t));
        assert!(subscribed(&p(&["capy.endpoint.*"]), t));
        assert!(subscribed(&p(&[t]), t));
        assert!(!subscribed(&p(&["capy.delivery.*"]), t));
    }
}
