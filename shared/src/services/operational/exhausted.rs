//! `capy.delivery.exhausted`: one per endpoint per window, counting the rest.

use serde_json::json;

use super::{DELIVERY_EXHAUSTED, Deps, EXHAUSTED_WINDOW, ToSend, raise, still_to_send, ts};
use crate::domain::delivery::Delivery;
use crate::domain::endpoint::Endpoint;
use crate::domain::ids::EventId;
use crate::domain::time::{self, Timestamp};
use crate::ports::{Marked, WindowCount, WindowTally};
use crate::services::ServiceError;

/// `capy.delivery.exhausted`: the first delivery of `e` to fail for good in an
/// [`EXHAUSTED_WINDOW`] raises it; the others in that window are counted (and publish the
/// window's event if its raiser never did), and the next window's event carries that count
/// (`previous_window`). An error is for the caller to return, so its message comes back to
/// raise it.
pub async fn delivery_exhausted(
    deps: &Deps,
    function: &'static str,
    e: &Endpoint,
    d: &Delivery,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let fresh = EventId::new();
    let scope = e.id.to_string();
    let (marked, previous, window_start) = match deps
        .markers
        .count_in_window(&scope, "exhausted", now, EXHAUSTED_WINDOW, fresh)
        .await?
    {
        WindowCount::Opened { previous } => (Marked::Claimed, previous, now),
        // Publishing it for a raiser that never did: its window, not one starting now (the
        // previous window's count went with that raiser).
        WindowCount::Counted { event, started_at } => {
            (Marked::Held(event), None, started_at.unwrap_or(now))
        }
    };
    let ToSend::Now(id) = still_to_send(deps, &e.organization_id, fresh, marked).await? else {
        return Ok(());
    };
    let window_end = time::after(window_start, EXHAUSTED_WINDOW);
    let payload = json!({
        "endpoint_id": e.id,
        "url": e.url,
        "organization_id": e.organization_id,
        "delivery_id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "attempts": d.attempts,
        "response_status": d.response_status,
        "last_error": d.last_error,
        "failed_at": ts(&now),
        "reason": d.last_error.clone().unwrap_or_else(|| "every attempt failed".into()),
        "window_start": ts(&window_start),
        "window_end": ts(&window_end),
        "count": 1,
        "previous_window": previous.map(|w: WindowTally| json!({
            "window_start": ts(&w.started_at),
            "window_end": ts(&time::after(w.started_at, EXHAUSTED_WINDOW)),
            "count": w.count,
        })),
    });
    raise(
        deps,
        function,
        &e.organization_id,
        Some(e.id),
        DELIVERY_EXHAUSTED,
        payload,
        id,
        now,
    )
    .await
}
