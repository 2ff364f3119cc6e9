//! Operational events: the system tells an organization, through its own pipeline, when
//! one of its endpoints is in trouble. Each is an ordinary event (stored, visible in the
//! events log, signed and retried like any other) of a `capy.` type, published with the
//! endpoint it is about as its subject, which never receives it; the other endpoints
//! receive it only when they subscribe to it by name or by a `capy.` wildcard.
//!
//! | type | when | deduplicated |
//! |---|---|---|
//! | `capy.endpoint.failing` | the failure streak reaches [`FAILING_STREAK`] | per endpoint per 24 h |
//! | `capy.endpoint.disable_scheduled` | the first failure within the warning lead before `disable_at` | once per streak |
//! | `capy.endpoint.disabled` | a `410 Gone`, or the streak lasted the disable period | once: the call that disabled it |
//! | `capy.endpoint.recovered` | the first success after failing | once: the call that closed the streak |
//! | `capy.delivery.exhausted` | a delivery failed for good | per endpoint per hour, with the count |
//! | `capy.replay.finished` | a replay job ended | once: the job's end |
//!
//! Callers hand in the endpoint as the store returned it *before* the change
//! ([`crate::ports::EndpointStore::record_outcome`]): concurrent outcomes are serialized, so
//! each transition is seen by exactly one caller; the markers ([`OpsMarkerStore`]) add the
//! time-based deduplication. Nothing here fails the caller's work: a notification that
//! cannot be published is logged at error level and dropped.
//!
//! `capy.endpoint.disabled` also goes to the operator bus, when one is configured.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;

use super::Deps;
use super::publish::publish_event;
use crate::domain::delivery::Delivery;
use crate::domain::endpoint::Endpoint;
use crate::domain::event::Event;
use crate::domain::health::{FAILING_STREAK, disable_at_after};
use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};
use crate::metrics::Ids;
use crate::ports::{OperatorEvent, WindowCount, WindowTally};

pub const ENDPOINT_FAILING: &str = "capy.endpoint.failing";
pub const ENDPOINT_DISABLE_SCHEDULED: &str = "capy.endpoint.disable_scheduled";
pub const ENDPOINT_DISABLED: &str = "capy.endpoint.disabled";
pub const ENDPOINT_RECOVERED: &str = "capy.endpoint.recovered";
pub const DELIVERY_EXHAUSTED: &str = "capy.delivery.exhausted";
pub const REPLAY_FINISHED: &str = "capy.replay.finished";

/// Every operational event type (what `openapi.yaml`'s `webhooks` documents).
pub const TYPES: [&str; 6] = [
    ENDPOINT_FAILING,
    ENDPOINT_DISABLE_SCHEDULED,
    ENDPOINT_DISABLED,
    ENDPOINT_RECOVERED,
    DELIVERY_EXHAUSTED,
    REPLAY_FINISHED,
];

/// At most one `capy.endpoint.failing` per endpoint in this long.
pub const FAILING_DEDUP: Duration = Duration::from_secs(24 * 3600);
/// `capy.delivery.exhausted` counts an endpoint's exhaustions in windows this long.
pub const EXHAUSTED_WINDOW: Duration = Duration::from_secs(3600);
/// Default lead of `capy.endpoint.disable_scheduled` before `disable_at`.
pub const DEFAULT_DISABLE_WARNING_LEAD: Duration = Duration::from_secs(24 * 3600);

/// Operator-bus detail types besides `capy.endpoint.disabled`.
pub const BUS_DEAD_LETTER: &str = "capy.dead_letter";
pub const BUS_FAN_OUT_FAILED: &str = "capy.fan_out.failed";

/// The policy's streak length before an endpoint is disabled.
pub fn disable_after(deps: &Deps) -> TimeDelta {
    TimeDelta::from_std(deps.policy.disable_after).unwrap_or(TimeDelta::MAX)
}

/// Why a streak disabled an endpoint, in words: "every attempt failed for 5 days".
pub fn streak_reason(deps: &Deps) -> String {
    format!(
        "every attempt failed for {}",
        spelled(deps.policy.disable_after)
    )
}

fn spelled(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0 => (d.as_millis() as u64, "millisecond"),
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn lead(deps: &Deps) -> TimeDelta {
    TimeDelta::from_std(deps.policy.disable_warning_lead).unwrap_or(TimeDelta::MAX)
}

fn ts(t: &Timestamp) -> String {
    time::format(t)
}

fn opt_ts(t: Option<Timestamp>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(ts(&t)))
}

/// Publishes one operational event about `subject` (which never receives it). Failures are
/// logged, never returned: the caller's work (an attempt already recorded) stands.
async fn raise(
    deps: &Deps,
    function: &'static str,
    org: &str,
    subject: Option<EndpointId>,
    event_type: &str,
    payload: serde_json::Value,
    now: Timestamp,
) -> Option<Event> {
    let mut event = Event::new(org, event_type, payload.to_string(), now);
    event.subject_endpoint = subject;
    publish_raised(deps, function, event).await
}

/// Publishes an event the system raised; `None` (logged) if it could not.
async fn publish_raised(deps: &Deps, function: &'static str, event: Event) -> Option<Event> {
    let ids = Ids {
        organization_id: Some(event.organization_id.clone()),
        endpoint_id: event.subject_endpoint.map(|s| s.to_string()),
        event_id: Some(event.id.to_string()),
        delivery_id: None,
    };
    let event_type = event.event_type.clone();
    match publish_event(deps, event).await {
        Ok(published) => {
            tracing::info!(event_id = ?ids.event_id, event_type, endpoint_id = ?ids.endpoint_id, "operational event published");
            deps.metrics.operational_event(function, &event_type, ids);
            Some(published.event)
        }
        Err(e) => {
            tracing::error!(error = %e, event_type, endpoint_id = ?ids.endpoint_id, organization_id = ?ids.organization_id, "could not publish an operational event; it is lost");
            None
        }
    }
}

/// Puts `events` on the operator bus; a failure is logged (the bus is best effort).
pub async fn notify_operator(deps: &Deps, events: &[OperatorEvent]) {
    if let Err(e) = deps.operator_bus.put(events).await {
        tracing::error!(error = %e, "could not put events on the operator bus");
    }
}

/// After a failed attempt was counted: `before` is the endpoint as it was just before the
/// count. Raises `failing` when this failure made the streak reach [`FAILING_STREAK`], and
/// `disable_scheduled` when it is the streak's first failure within the warning lead.
pub async fn after_failure(deps: &Deps, before: &Endpoint, now: Timestamp) {
    if !before.is_active {
        return;
    }
    let mut after = before.clone();
    after.stats.failure_streak += 1;
    after.stats.last_failure_at = Some(now);
    let since = *after.stats.failing_since.get_or_insert(now);
    // A range, not the one value: a counter update retried after its answer was lost
    // counts twice and skips it. The marker sends it once.
    if (FAILING_STREAK..FAILING_STREAK + 3).contains(&after.stats.failure_streak) {
        endpoint_failing(deps, &after, now).await;
    }
    let Some(disable_at) = disable_at_after(&after, disable_after(deps)) else {
        return;
    };
    let warn_from = disable_at - lead(deps);
    if now < warn_from || now >= disable_at {
        return;
    }
    // An earlier failure of this same streak already within the lead had this check.
    let checked = before.stats.failing_since.is_some()
        && before.stats.last_failure_at.is_some_and(|t| t >= warn_from);
    if checked {
        return;
    }
    let streak_start = since.max(after.updated_at);
    let marker = format!("disable_scheduled#{}", streak_start.timestamp_millis());
    // Kept past the disable itself, so a late duplicate finds it.
    let ttl = deps.policy.disable_after + deps.policy.disable_warning_lead;
    match deps
        .markers
        .claim(&after.id.to_string(), &marker, now, ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(error = %e, "could not claim the disable_scheduled marker; not sending it");
            return;
        }
    }
    let payload = json!({
        "endpoint_id": after.id,
        "url": after.url,
        "organization_id": after.organization_id,
        "failing_since": ts(&since),
        "disable_at": ts(&disable_at),
        "failure_streak": after.stats.failure_streak,
        "last_failure_at": ts(&now),
        "reason": format!("every attempt has failed since {}; the endpoint will be disabled at {} unless one succeeds", ts(&since), ts(&disable_at)),
        "scheduled_at": ts(&now),
    });
    raise(
        deps,
        "deliver",
        &after.organization_id,
        Some(after.id),
        ENDPOINT_DISABLE_SCHEDULED,
        payload,
        now,
    )
    .await;
}

/// `capy.endpoint.failing`, at most once per endpoint per [`FAILING_DEDUP`].
async fn endpoint_failing(deps: &Deps, e: &Endpoint, now: Timestamp) {
    match deps
        .markers
        .claim(&e.id.to_string(), "failing", now, FAILING_DEDUP)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::error!(error = %err, "could not claim the failing marker; not sending it");
            return;
        }
    }
    let since = e.stats.failing_since.unwrap_or(now);
    let payload = json!({
        "endpoint_id": e.id,
        "url": e.url,
        "organization_id": e.organization_id,
        "failing_since": ts(&since),
        "disable_at": opt_ts(disable_at_after(e, disable_after(deps))),
        "failure_streak": e.stats.failure_streak,
        "last_failure_at": ts(&now),
        "reason": format!("the last {} attempts all failed", e.stats.failure_streak),
    });
    raise(
        deps,
        "deliver",
        &e.organization_id,
        Some(e.id),
        ENDPOINT_FAILING,
        payload,
        now,
    )
    .await;
}

/// `capy.endpoint.disabled`: `before` is the endpoint as it was before this call disabled
/// it; nothing when it was already inactive (another call disabled it first). Also put on
/// the operator bus.
/// `seen` is the endpoint as the caller read it before deciding to disable it: every
/// record of a batch that decides so from the same read raises one event between them.
pub async fn endpoint_disabled(
    deps: &Deps,
    seen: &Endpoint,
    before: &Endpoint,
    reason: &str,
    now: Timestamp,
) {
    // Already inactive before this write: someone else disabled it, unless what reads as
    // "before" is this very write (an update retried after its answer was lost).
    let this_write = before.disabled_reason.as_deref() == Some(reason) && before.updated_at == now;
    if !before.is_active && !this_write {
        return;
    }
    let marker = format!("disabled#{}", seen.updated_at.timestamp_millis());
    match deps
        .markers
        .claim(&seen.id.to_string(), &marker, now, FAILING_DEDUP)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::error!(error = %err, "could not claim the disabled marker; not sending it");
            return;
        }
    }
    let payload = json!({
        "endpoint_id": before.id,
        "url": before.url,
        "organization_id": before.organization_id,
        "disabled_at": ts(&now),
        "failing_since": opt_ts(before.stats.failing_since),
        "failure_streak": before.stats.failure_streak,
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
    raise(
        deps,
        "deliver",
        &before.organization_id,
        Some(before.id),
        ENDPOINT_DISABLED,
        payload,
        now,
    )
    .await;
}

/// `capy.endpoint.recovered`: `before` is the endpoint as it was before the success closed
/// its streak; nothing unless it was failing (a streak of [`FAILING_STREAK`] or more).
pub async fn endpoint_recovered(deps: &Deps, before: &Endpoint, now: Timestamp) {
    if before.stats.failure_streak < FAILING_STREAK {
        return;
    }
    // Once per streak: several consumers may see the same first success, and the caller
    // may pass the endpoint as it read it (the update's own answer can be a retry's).
    let streak = before
        .stats
        .failing_since
        .map_or(0, |t| t.timestamp_millis());
    match deps
        .markers
        .claim(
            &before.id.to_string(),
            &format!("recovered#{streak}"),
            now,
            FAILING_DEDUP,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::error!(error = %err, "could not claim the recovered marker; not sending it");
            return;
        }
    }
    let payload = json!({
        "endpoint_id": before.id,
        "url": before.url,
        "organization_id": before.organization_id,
        "failing_since": opt_ts(before.stats.failing_since),
        "recovered_at": ts(&now),
        "failure_streak": before.stats.failure_streak,
        "reason": format!("an attempt succeeded after {} failed in a row", before.stats.failure_streak),
    });
    raise(
        deps,
        "deliver",
        &before.organization_id,
        Some(before.id),
        ENDPOINT_RECOVERED,
        payload,
        now,
    )
    .await;
}

/// `capy.delivery.exhausted`: the first delivery of `e` to fail for good in an
/// [`EXHAUSTED_WINDOW`] raises it; the others in that window are counted, and the next
/// window's event carries that count (`previous_window`).
pub async fn delivery_exhausted(
    deps: &Deps,
    function: &'static str,
    e: &Endpoint,
    d: &Delivery,
    now: Timestamp,
) {
    let previous = match deps
        .markers
        .count_in_window(&e.id.to_string(), "exhausted", now, EXHAUSTED_WINDOW)
        .await
    {
        Ok(WindowCount::Counted) => return,
        Ok(WindowCount::Opened { previous }) => previous,
        Err(err) => {
            tracing::error!(error = %err, "could not count an exhausted delivery; not sending it");
            return;
        }
    };
    let window_end = time::after(now, EXHAUSTED_WINDOW);
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
        "window_start": ts(&now),
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
        now,
    )
    .await;
}

mod replay_finished;
pub use replay_finished::{ReplaySummary, replay_finished};

#[cfg(test)]
mod tests;
