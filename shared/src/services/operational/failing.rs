//! `capy.endpoint.failing` and `capy.endpoint.disable_scheduled`: raised from a failed
//! attempt, while the streak's state still says to.

use serde_json::json;

use super::{
    Deps, ENDPOINT_DISABLE_SCHEDULED, ENDPOINT_FAILING, FAILING_DEDUP, ToSend, claimed,
    disable_after, lead, opt_ts, raise, ts,
};
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::health::{FAILING_STREAK, disable_at_after, disable_clock};
use crate::domain::time::Timestamp;
use crate::services::ServiceError;

/// After `count` failed attempts (the first at `first_at`, the last at `now`) were counted
/// in one write: `before` is the endpoint as it was just before it. Raises `failing` while
/// the streak is at least [`FAILING_STREAK`] and the endpoint has not recorded it announced (so a crash before that record raises it at the next
/// failure, and the marker makes it one event), and `disable_scheduled` likewise from every
/// failure within the warning lead until the endpoint records it announced for this clock.
pub async fn after_failure(
    deps: &Deps,
    before: &Endpoint,
    count: u32,
    first_at: Timestamp,
    now: Timestamp,
) {
    if !before.is_active {
        return;
    }
    let after = before.with_failures(count, first_at, now);
    let since = after.stats.failing_since.unwrap_or(first_at);
    if after.stats.failure_streak >= FAILING_STREAK && !before.stats.failing_announced {
        match endpoint_failing(deps, &after, now).await {
            // Another record of this process is sending it; it records it too.
            Ok(false) => {}
            Ok(true) => {
                let announced = Outcome::FailingAnnounced { since };
                record_announced(deps, &after, announced, ENDPOINT_FAILING).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not raise capy.endpoint.failing; the next failure tries again");
            }
        }
    }
    let Some(disable_at) = disable_at_after(&after, disable_after(deps)) else {
        return;
    };
    let warn_from = disable_at - lead(deps);
    let Some(streak_start) = disable_clock(&after) else {
        return;
    };
    // Until the endpoint records it announced for this clock, every failure within the lead
    // checks (so a crash before that record raises it at the next one, and the marker makes
    // it one event).
    if now < warn_from || before.stats.disable_scheduled_for == Some(streak_start) {
        return;
    }
    // No failure fell within the lead (sparse traffic): warned now, late, and the disable
    // waits a full lead after it, so no streak disables an endpoint unannounced.
    let deferred_to = (now >= disable_at).then(|| {
        now.checked_add_signed(lead(deps))
            .unwrap_or(Timestamp::MAX_UTC)
    });
    let disable_at = deferred_to.unwrap_or(disable_at);
    let marker = format!("disable_scheduled#{}", streak_start.timestamp_millis());
    // Kept past the disable itself, so a late duplicate finds it.
    let ttl = deps.policy.disable_after + deps.policy.disable_warning_lead;
    let id = match claimed(deps, &after, &marker, now, ttl).await {
        Ok(ToSend::Now(id)) => id,
        // Another record of this process is sending it; it records it too.
        Ok(ToSend::Sending) => return,
        Ok(ToSend::Sent) => {
            let announced = Outcome::DisableScheduledAnnounced {
                since,
                clock: streak_start,
                deferred_to,
            };
            return record_announced(deps, &after, announced, ENDPOINT_DISABLE_SCHEDULED).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not claim capy.endpoint.disable_scheduled; the next failure tries again");
            return;
        }
    };
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
    match raise(
        deps,
        "deliver",
        &after.organization_id,
        Some(after.id),
        ENDPOINT_DISABLE_SCHEDULED,
        payload,
        id,
        now,
    )
    .await
    {
        Ok(()) => {
            let announced = Outcome::DisableScheduledAnnounced {
                since,
                clock: streak_start,
                deferred_to,
            };
            record_announced(deps, &after, announced, ENDPOINT_DISABLE_SCHEDULED).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not raise capy.endpoint.disable_scheduled; the next failure tries again");
        }
    }
}

/// Records on the endpoint that `event_type` went out, so later failures stop checking.
async fn record_announced(deps: &Deps, e: &Endpoint, announced: Outcome, event_type: &str) {
    if let Err(err) = deps
        .endpoints
        .record_outcome(&e.organization_id, e.id, announced)
        .await
    {
        // The next failure checks the marker again and finds the event.
        tracing::warn!(error = %err, event_type, "could not record an operational event announced");
    }
}

/// `capy.endpoint.failing`, at most once per endpoint per [`FAILING_DEDUP`]: `true` once it
/// is out (or deduplicated), `false` while another record of this process sends it.
async fn endpoint_failing(deps: &Deps, e: &Endpoint, now: Timestamp) -> Result<bool, ServiceError> {
    let id = match claimed(deps, e, "failing", now, FAILING_DEDUP).await? {
        ToSend::Now(id) => id,
        ToSend::Sending => return Ok(false),
        ToSend::Sent => return Ok(true),
    };
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
        id,
        now,
    )
    .await?;
    Ok(true)
}
