//! Recording what a batch's sends came to: first one write per endpoint counting its failed
//! attempts ([`count_failures`]), then each delivery's own write ([`record`]).

use std::collections::HashMap;

use futures::future::join_all;
use rand::Rng;
use tracing::Instrument;

use super::{Current, Disposition, ProcessError, Sent, Step, follow_ups, ids, postpone, saved};
use crate::domain::delivery::{Attempt, Delivery, DeliveryState};
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::health::should_disable_after;
use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};
use crate::metrics::DeliveryOutcome;
use crate::services::{Deps, operational};

/// The attempt log keeps this many most recent attempts.
const MAX_LOGGED_ATTEMPTS: usize = 50;

/// Each endpoint the batch failed to reach: `Ok(Some(reason))` when its failures ended a
/// streak that disabled it, `Ok(None)` counted, `Err` when the count (or the disable's
/// event) could not be written: its records are retried.
pub(super) type Counted = HashMap<EndpointId, Result<Option<String>, ()>>;

/// The failed attempts of one endpoint in this batch.
struct Tally<'a> {
    endpoint: &'a Endpoint,
    count: u32,
    first_at: Timestamp,
    last_at: Timestamp,
    gone: bool,
}

/// One write per endpoint for all of the batch's failed attempts to it (concurrent outcomes
/// are serialized by the store, so each streak transition is seen once), then its
/// `failing` and `disable_scheduled` checks, then the disable when the streak has lasted
/// its time and its warning is out. An endpoint past its forecast is still sent to first:
/// a success closes the streak instead.
pub(super) async fn count_failures(deps: &Deps, steps: &[Step<'_>]) -> Counted {
    let mut tallies: HashMap<EndpointId, Tally> = HashMap::new();
    for s in steps {
        let Step::Failed(s) = s else { continue };
        let t = tallies.entry(s.endpoint.id).or_insert(Tally {
            endpoint: s.endpoint,
            count: 0,
            first_at: s.at,
            last_at: s.at,
            gone: false,
        });
        t.count += 1;
        t.first_at = t.first_at.min(s.at);
        t.last_at = t.last_at.max(s.at);
        t.gone |= s.outcome.gone;
    }
    let writes = tallies.into_values().map(|t| {
        let span = tracing::info_span!(
            "count_failures",
            endpoint_id = %t.endpoint.id,
            organization_id = %t.endpoint.organization_id,
            failures = t.count,
        );
        async move {
            let outcome = Outcome::Failures {
                count: t.count,
                first_at: t.first_at,
                last_at: t.last_at,
            };
            let e = t.endpoint;
            let before = match deps
                .endpoints
                .record_outcome(&e.organization_id, e.id, outcome)
                .await
            {
                Ok(before) => before,
                Err(err) => {
                    tracing::error!(error = %err, "could not count the endpoint's failed attempts; its records will be retried");
                    return (e.id, Err(()));
                }
            };
            // A `410 Gone` disables the endpoint instead.
            let Some(before) = before.filter(|b| b.is_active && !t.gone) else {
                return (e.id, Ok(None));
            };
            operational::after_failure(deps, &before, t.count, t.first_at, t.last_at).await;
            let after = before.with_failures(t.count, t.first_at, t.last_at);
            if !should_disable_after(&after, t.last_at, operational::disable_after(deps)) {
                return (e.id, Ok(None));
            }
            let reason = operational::streak_reason(deps);
            (e.id, disable(deps, e, &reason, t.last_at).await.map(|()| Some(reason)))
        }
        .instrument(span)
    });
    join_all(writes).await.into_iter().collect()
}

/// The streak disables the endpoint, and says so (`capy.endpoint.disabled`).
async fn disable(deps: &Deps, e: &Endpoint, reason: &str, at: Timestamp) -> Result<(), ()> {
    let disable = Outcome::Disable {
        reason: reason.to_owned(),
        at,
    };
    let result = match deps
        .endpoints
        .record_outcome(&e.organization_id, e.id, disable)
        .await
    {
        // `None`: another disabler came first, and raises its own event.
        Ok(None) => Ok(()),
        Ok(Some(before)) => operational::endpoint_disabled(deps, &before, reason, at)
            .await
            .map_err(ProcessError::from),
        Err(err) => Err(err.into()),
    };
    result.map_err(|err| {
        // The messages that come back find it inactive, or active and disable it then.
        tracing::error!(error = %err, "could not disable the endpoint its streak ended; its records will be retried");
    })
}

/// The delivery as its attempt leaves it, before its state is decided.
fn attempted(sent: &Sent<'_>) -> Delivery {
    let outcome = &sent.outcome;
    let mut d = sent.cur.d.clone();
    d.attempts += 1;
    d.updated_at = sent.at;
    d.response_status = outcome.status;
    d.last_error = outcome.error.clone();
    d.sweep_at = None;
    d.lease = None;
    d.attempt_log.push(Attempt {
        attempt: d.attempts,
        started_at: sent.started_at,
        duration_ms: outcome.duration.as_millis() as u64,
        response_status: outcome.status,
        error: outcome.error.clone(),
        response_excerpt: outcome.excerpt.clone(),
    });
    if d.attempt_log.len() > MAX_LOGGED_ATTEMPTS {
        d.attempt_log
            .drain(..d.attempt_log.len() - MAX_LOGGED_ATTEMPTS);
    }
    d
}

/// A successful attempt's write, at once (it waits for no count), and its follow-ups.
pub(super) async fn delivered(deps: &Deps, sent: Sent<'_>) -> Result<Disposition, ProcessError> {
    let mut d = attempted(&sent);
    let now = sent.at;
    d.state = DeliveryState::Delivered;
    d.delivered_at = Some(now);
    d.next_attempt_at = None;
    if saved(deps, &d, &sent.cur).await? {
        // Event created -> delivered, for deliveries on their first schedule only: one sent
        // again after it ended (retry, replay, resend) would report days of lag and trip the
        // lag alarm for what was a customer's choice, not the pipeline's delay.
        let first_schedule = d.max_attempts <= deps.policy.retry.max_attempts();
        let lag = first_schedule.then(|| (now - d.created_at).num_milliseconds().max(0) as u64);
        let attempt_ms = sent.outcome.duration.as_millis() as u64;
        deps.metrics.delivery(
            DeliveryOutcome::Delivered,
            ids(&d),
            d.attempts,
            Some(attempt_ms),
            lag,
        );
    }
    follow_ups::after_success(deps, sent.endpoint, now).await?;
    tracing::info!(attempt = d.attempts, status = ?sent.outcome.status, "delivered");
    Ok(Disposition::Ack)
}

/// A failed attempt's write, once the batch's failures to its endpoint are counted.
pub(super) async fn failed(
    deps: &Deps,
    sent: Box<Sent<'_>>,
    counted: &Counted,
    receipt: &str,
) -> Result<Disposition, ProcessError> {
    let mut d = attempted(&sent);
    let Sent {
        cur,
        endpoint,
        outcome,
        at: now,
        ..
    } = *sent;
    let attempt_ms = outcome.duration.as_millis() as u64;
    let disabled = match counted.get(&endpoint.id) {
        Some(Ok(disabled)) => disabled,
        // Not counted: sent again, and counted then.
        _ => return Ok(Disposition::Retry),
    };
    if outcome.gone {
        return gone(deps, cur, d, endpoint, attempt_ms, now).await;
    }
    if let Some(reason) = disabled {
        let error = outcome.error.as_deref().unwrap_or("failed");
        d.last_error = Some(format!("{error}; endpoint disabled ({reason})"));
        failed_for_good(deps, &mut d, &cur, attempt_ms).await?;
        return Ok(Disposition::Ack);
    }
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let next = if d.attempts >= d.max_attempts {
        None
    } else {
        let retry = &deps.policy.retry;
        let position = retry.position(d.attempts, d.max_attempts);
        retry.next_delay(position, outcome.kind, outcome.retry_after, jitter)
    };
    let Some(delay) = next else {
        tracing::warn!(attempts = d.attempts, error = ?outcome.error, "delivery failed for good");
        if failed_for_good(deps, &mut d, &cur, attempt_ms).await? {
            follow_ups::after_exhausted(deps, endpoint, &d, now).await?;
        }
        return Ok(Disposition::Ack);
    };
    let due = time::after(now, delay);
    d.next_attempt_at = Some(due);
    let park = delay > deps.policy.park_after;
    d.sweep_at = Some(if park {
        // Not held in flight: the sweeper sends it again when due.
        due
    } else {
        // Held in flight by this message; should it be lost, the sweeper sends another a
        // grace after the due time. (SQS may hand one message to two pollers: both send,
        // the one whose write loses acknowledges it, which deletes this retry too.)
        time::after(due, deps.policy.sweep_grace)
    });
    tracing::info!(attempt = d.attempts, error = ?outcome.error, retry_in_ms = delay.as_millis() as u64, parked = park, "attempt failed");
    if !saved(deps, &d, &cur).await? {
        return Ok(Disposition::Ack);
    }
    deps.metrics.delivery(
        DeliveryOutcome::Retrying,
        ids(&d),
        d.attempts,
        Some(attempt_ms),
        None,
    );
    if park {
        return Ok(Disposition::Ack);
    }
    postpone(deps, receipt, delay).await;
    Ok(Disposition::Retry)
}

/// Marks the delivery failed, with no attempt to come; whether this write won.
async fn failed_for_good(
    deps: &Deps,
    d: &mut Delivery,
    cur: &Current,
    attempt_ms: u64,
) -> Result<bool, ProcessError> {
    d.state = DeliveryState::Failed;
    d.next_attempt_at = None;
    let won = saved(deps, d, cur).await?;
    if won {
        let outcome = DeliveryOutcome::Failed;
        deps.metrics
            .delivery(outcome, ids(d), d.attempts, Some(attempt_ms), None);
    }
    Ok(won)
}

/// The receiver answered `410 Gone`: the endpoint is disabled and the delivery failed.
async fn gone(
    deps: &Deps,
    cur: Current,
    mut d: Delivery,
    endpoint: &Endpoint,
    attempt_ms: u64,
    now: Timestamp,
) -> Result<Disposition, ProcessError> {
    let reason = "the receiver answered 410 Gone".to_owned();
    let before = deps
        .endpoints
        .record_outcome(
            &endpoint.organization_id,
            endpoint.id,
            Outcome::Disable {
                reason: reason.clone(),
                at: now,
            },
        )
        .await?;
    d.state = DeliveryState::Failed;
    d.next_attempt_at = None;
    d.last_error = Some(format!("HTTP 410; endpoint disabled ({reason})"));
    tracing::warn!("receiver answered 410 Gone; endpoint disabled");
    if saved(deps, &d, &cur).await? {
        deps.metrics.delivery(
            DeliveryOutcome::Gone,
            ids(&d),
            d.attempts,
            Some(attempt_ms),
            None,
        );
    }
    if let Some(before) = before {
        // Saved first: an error brings the message back to a finished delivery, whose
        // follow-ups raise it then.
        operational::endpoint_disabled(deps, &before, &reason, now).await?;
    }
    Ok(Disposition::Ack)
}
