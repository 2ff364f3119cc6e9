//! Operational events: the system tells an organization, through its own pipeline, when
//! one of its endpoints is in trouble. Each is an ordinary event (stored, visible in the
//! events log, signed and retried like any other) of a `capy.` type, published with the
//! endpoint it is about as its subject, which never receives it; the other endpoints
//! receive it only when they subscribe to it by name or by a `capy.` wildcard.
//!
//! | type | when | deduplicated |
//! |---|---|---|
//! | `capy.endpoint.failing` | the failure streak reaches [`FAILING_STREAK`] | per endpoint per 24 h |
//! | `capy.endpoint.disable_scheduled` | a failure within the warning lead before `disable_at` | once per disable clock (the streak, restarted by an owner's change) |
//! | `capy.endpoint.disabled` | a `410 Gone`, or the streak lasted the disable period | once per disable: named by its time |
//! | `capy.endpoint.recovered` | the first success after failing | once per streak |
//! | `capy.delivery.exhausted` | a delivery failed for good | per endpoint per hour, with the count |
//! | `capy.replay.finished` | a replay job ended | once: the job's end |
//!
//! Callers hand in the endpoint as the store returned it *before* the change
//! ([`crate::ports::EndpointStore::record_outcome`]): concurrent outcomes are serialized, so
//! each transition is seen by exactly one caller; the markers ([`OpsMarkerStore`]) add the
//! time-based deduplication, and each names the event it notifies with.
//!
//! `failing`, `recovered` and `exhausted` are not lost to a crash or a failed call between
//! a transition and its event: a marker whose event never appeared is published again
//! under the same id by the next caller (one event, however many try), and each is raised
//! from state that survives a crash. `failing` is raised from the 5th failure on until the
//! endpoint records it announced; `recovered` before the write that closes the streak;
//! `recovered` and `exhausted` after their delivery is saved, and a message whose delivery
//! is already finished raises them again (`consumers::deliver::follow_ups`); they fail the
//! caller's work when they cannot be published, so its message comes back. `disabled` is
//! named by the disable's time (no marker): the disabler raises it after its write, and the
//! messages that still arrive for the endpoint within the hour raise it again if it never
//! appeared. `disable_scheduled` is raised, like `failing`, from every failure within the
//! warning lead until the endpoint records it announced.
//!
//! `capy.endpoint.disabled` also goes to the operator bus, when one is configured.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;

use super::Deps;
use super::publish::publish_event;
use crate::domain::endpoint::Endpoint;
use crate::domain::event::Event;
use crate::domain::health::FAILING_STREAK;
use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time::{self, Timestamp};
use crate::metrics::Ids;
use crate::ports::{Marked, OperatorEvent, StoreError};
use crate::services::ServiceError;

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
        time::spelled(deps.policy.disable_after)
    )
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

/// The events this process is publishing right now. Records of one batch about the same
/// endpoint run side by side: the ones that find the marker held by another record leave the
/// publish to it, rather than send the event's messages a second time (if the process dies,
/// every record's message comes back).
static IN_FLIGHT: LazyLock<Mutex<HashSet<EventId>>> = LazyLock::new(Default::default);

/// This process's publish of one event, until it is dropped.
struct InFlight(EventId);

impl InFlight {
    fn enter(id: EventId) -> Option<Self> {
        let mut set = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        // `then`, not `then_some`: a `Self` built and dropped here would lock the set again.
        set.insert(id).then(|| Self(id))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Where a marker's notification stands.
enum ToSend {
    /// To publish, as this id: this call claimed the marker, or the holder's event never
    /// appeared (its raiser died, or its publish failed).
    Now(InFlight),
    /// Another task of this process is publishing it.
    Sending,
    /// It exists (or the marker names none).
    Sent,
}

async fn still_to_send(
    deps: &Deps,
    org: &str,
    fresh: EventId,
    marked: Marked,
) -> Result<ToSend, StoreError> {
    let id = match marked {
        Marked::Claimed => fresh,
        Marked::Held(None) => return Ok(ToSend::Sent),
        Marked::Held(Some(id)) => id,
    };
    let Some(guard) = InFlight::enter(id) else {
        return Ok(ToSend::Sending);
    };
    if id != fresh && deps.events.get(org, id).await?.is_some() {
        return Ok(ToSend::Sent);
    }
    Ok(ToSend::Now(guard))
}

/// Publishes one operational event about `subject` (which never receives it) as `id`;
/// publishing the same id twice publishes one event.
#[allow(clippy::too_many_arguments)]
async fn raise(
    deps: &Deps,
    function: &'static str,
    org: &str,
    subject: Option<EndpointId>,
    event_type: &str,
    payload: serde_json::Value,
    sending: InFlight,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let id = sending.0;
    let mut event = Event::new(org, event_type, payload.to_string(), now);
    event.id = id;
    event.created_at = id.created_at();
    event.subject_endpoint = subject;
    publish_raised(deps, function, event).await.map(drop)
}

/// Publishes an event the system raised; an error (logged) if it could not, with its own
/// kind (a throttled write is retryable, a bad record is not).
async fn publish_raised(
    deps: &Deps,
    function: &'static str,
    event: Event,
) -> Result<Event, ServiceError> {
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
            Ok(published.event)
        }
        Err(e) => {
            tracing::error!(error = %e, event_type, endpoint_id = ?ids.endpoint_id, organization_id = ?ids.organization_id, "could not publish an operational event");
            Err(e)
        }
    }
}

/// Puts `events` on the operator bus; a failure is logged (the bus is best effort).
pub async fn notify_operator(deps: &Deps, events: &[OperatorEvent]) {
    if let Err(e) = deps.operator_bus.put(events).await {
        tracing::error!(error = %e, "could not put events on the operator bus");
    }
}

/// Claims `marker` of `e` for a fresh event: whether it is still to go.
async fn claimed(
    deps: &Deps,
    e: &Endpoint,
    marker: &str,
    now: Timestamp,
    ttl: Duration,
) -> Result<ToSend, StoreError> {
    let fresh = EventId::new();
    let marked = deps
        .markers
        .claim(&e.id.to_string(), marker, now, ttl, fresh)
        .await?;
    still_to_send(deps, &e.organization_id, fresh, marked).await
}

/// `capy.endpoint.recovered`: `before` is the endpoint as it was before the success closes
/// its streak; nothing unless it was failing (a streak of [`FAILING_STREAK`] or more). Call
/// it before the write that closes the streak: an error is for the caller to return, so
/// its message comes back while the streak still says to raise it. `false`: another record
/// of this process is publishing it, and closes the streak itself once it has.
pub async fn endpoint_recovered(
    deps: &Deps,
    before: &Endpoint,
    now: Timestamp,
) -> Result<bool, ServiceError> {
    if before.stats.failure_streak < FAILING_STREAK {
        return Ok(true);
    }
    // Once per streak: several consumers may see the same first success, and the caller
    // may pass the endpoint as it read it (the update's own answer can be a retry's).
    let streak = before
        .stats
        .failing_since
        .map_or(0, |t| t.timestamp_millis());
    let marker = format!("recovered#{streak}");
    let id = match claimed(deps, before, &marker, now, FAILING_DEDUP).await? {
        ToSend::Now(id) => id,
        ToSend::Sending => return Ok(false),
        ToSend::Sent => return Ok(true),
    };
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
        id,
        now,
    )
    .await?;
    Ok(true)
}

mod disabled;
mod exhausted;
mod failing;
mod replay_finished;
pub use disabled::{DISABLED_FOLLOW_UP, disabled_follow_up, endpoint_disabled};
pub use exhausted::delivery_exhausted;
pub use failing::after_failure;
pub use replay_finished::{ReplaySummary, replay_finished};

#[cfg(test)]
mod tests;
