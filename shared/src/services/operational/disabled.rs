//! `capy.endpoint.disabled`: raised by the write that disabled the endpoint, and again by the
//! messages that still arrive for it within the hour if it never appeared. Each disable's
//! event is named by the disable's time (`stats.disabled_at`), so however many raise it, it
//! is one event.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use chrono::TimeDelta;
use serde_json::json;

use super::{
    Deps, ENDPOINT_DISABLED, InFlight, OperatorEvent, ServiceError, notify_operator, opt_ts, raise,
    ts,
};
use crate::domain::endpoint::Endpoint;
use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time::Timestamp;

/// How long after a disable the messages that still arrive for the endpoint make sure its
/// `capy.endpoint.disabled` exists (the ones a crash sends back come within minutes).
pub const DISABLED_FOLLOW_UP: TimeDelta = TimeDelta::hours(1);

/// The one `capy.endpoint.disabled` of the disable at `at`: whoever raises it, the disabler
/// or a later message, names the same event and the same deliveries.
fn disabled_event(endpoint: EndpointId, at: Timestamp) -> EventId {
    EventId::derived(at, &format!("{ENDPOINT_DISABLED}/{endpoint}"))
}

/// `capy.endpoint.disabled` events this process published or found stored (a message per
/// recently disabled endpoint would otherwise read its event each time); bounded by
/// starting afresh.
static DISABLED_OUT: LazyLock<Mutex<HashSet<EventId>>> = LazyLock::new(Default::default);

fn disabled_out(id: EventId, record: bool) -> bool {
    let mut set = DISABLED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    if record {
        if set.len() >= 4096 {
            set.clear();
        }
        set.insert(id);
    }
    set.contains(&id)
}

#[cfg(test)]
pub(super) fn forget_disabled_out() {
    DISABLED_OUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
}

/// `capy.endpoint.disabled`: `before` is the endpoint as it was before the write (at `now`)
/// that disabled it; nothing when it was already inactive (another call disabled it first).
/// Also put on the operator bus. An error is for the caller to return: its message comes
/// back and [`disabled_follow_up`] raises it then.
pub async fn endpoint_disabled(
    deps: &Deps,
    before: &Endpoint,
    reason: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    // Already inactive before this write: someone else disabled it, unless what reads as
    // "before" is this very write (an update retried after its answer was lost).
    let this_write = before.disabled_reason.as_deref() == Some(reason) && before.updated_at == now;
    if !before.is_active && !this_write {
        return Ok(());
    }
    announce_disabled(deps, before, reason, now).await
}

/// A message for an endpoint the system disabled less than [`DISABLED_FOLLOW_UP`] ago: its
/// `capy.endpoint.disabled` once more if it never appeared (its disabler died between the
/// disabling write and the publish, or could not publish).
pub async fn disabled_follow_up(
    deps: &Deps,
    e: &Endpoint,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let (false, Some(reason), Some(at)) = (e.is_active, &e.disabled_reason, e.stats.disabled_at)
    else {
        return Ok(());
    };
    let id = disabled_event(e.id, at);
    if now - at > DISABLED_FOLLOW_UP || disabled_out(id, false) {
        return Ok(());
    }
    if deps.events.get(&e.organization_id, id).await?.is_some() {
        disabled_out(id, true);
        return Ok(());
    }
    tracing::warn!(endpoint_id = %e.id, "capy.endpoint.disabled never appeared; raising it again");
    announce_disabled(deps, e, reason, at).await
}

/// Publishes the disable at `at` of `e` (its url and streak as they were). The operator bus
/// gets it each time it is published (at least once). Only a publish that happened marks it
/// out: one left to another record of this process, whose publish may fail, is checked
/// again by the next message.
async fn announce_disabled(
    deps: &Deps,
    e: &Endpoint,
    reason: &str,
    at: Timestamp,
) -> Result<(), ServiceError> {
    let Some(sending) = InFlight::enter(disabled_event(e.id, at)) else {
        // Another record of this batch is publishing it.
        return Ok(());
    };
    let payload = json!({
        "endpoint_id": e.id,
        "url": e.url,
        "organization_id": e.organization_id,
        "disabled_at": ts(&at),
        "failing_since": opt_ts(e.stats.failing_since),
        "failure_streak": e.stats.failure_streak,
        "reason": reason,
    });
    notify_operator(
        deps,
        &[OperatorEvent {
            detail_type: ENDPOINT_DISABLED.into(),
            detail: payload.clone(),
        }],
    )
    .await;
    let id = sending.0;
    raise(
        deps,
        "deliver",
        &e.organization_id,
        Some(e.id),
        ENDPOINT_DISABLED,
        payload,
        sending,
        at,
    )
    .await?;
    disabled_out(id, true);
    Ok(())
}
