//! Recording what a batch's sends came to: first one write per endpoint counting its failed
//! attempts ([`count_failures`]), then each delivery's own write ([`record`]).

use std::collections::HashMap;

use futures::future::join_all;
use rand::Rng;
use tracing::Instrument;

use super::{Current, Disposition, ProcessError, Sent, Step, follow_ups, ids, postpone, saved};
use crate::domain::delivery::{Attempt, DeliveryState};
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};
use crate::metrics::DeliveryOutcome;
use crate::services::{Deps, operational};

/// The attempt log keeps this many most recent attempts.
const MAX_LOGGED_ATTEMPTS: usize = 50;

/// Each endpoint the batch failed to reach, as it was before its failures were counted
/// (`None`: deleted meanwhile), or `Err` when the count could not be written (its records
/// are retried).
pub(super) type Counted = HashMap<EndpointId, Result<Option<Endpoint>, ()>>;

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
/// `failing` and `disable_scheduled` checks.
pub(super) async fn count_failures(deps: &Deps, steps: &[Step<'_>]) -> Counted {
    let mut tallies: HashMap<EndpointId, Tally> = HashMap::new();
    for s in steps {
        let Step::Sent(s) = s else { continue };
        if s.outcome.succeeded() {
            continue;
        }
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
            if let Some(before) = before.as_ref().filter(|_| !t.gone) {
                operational::after_failure(deps, before, t.count, t.first_at, t.last_at).await;
            }
            (e.id, Ok(before))
        }
        .instrument(span)
    });
    join_all(writes).await.into_iter().collect()
}

/// The delivery's write after its send, and what follows from it.
pub(super) async fn record(
    deps: &Deps,
    sent: Box<Sent<'_>>,
    counted: &Counted,
    receipt: &str,
) -> Result<Disposition, ProcessError> {
    let Sent {
        cur,
        endpoint,
        outcome,
        started_at,
        at: now,
    } = *sent;
    let attempt_ms = outcome.duration.as_millis() as u64;
    let mut d = cur.d.clone();
    d.attempts += 1;
    d.updated_at = now;
    d.response_status = outcome.status;
    d.last_error = outcome.error.clone();
    d.sweep_at = None;
    d.attempt_log.push(Attempt {
        attempt: d.attempts,
        started_at,
        duration_ms: attempt_ms,
        response_status: outcome.status,
        error: outcome.error.clone(),
        response_excerpt: outcome.excerpt.clone(),
    });
    if d.attempt_log.len() > MAX_LOGGED_ATTEMPTS {
        d.attempt_log
            .drain(..d.attempt_log.len() - MAX_LOGGED_ATTEMPTS);
    }

    if outcome.succeeded() {
        d.state = DeliveryState::Delivered;
        d.delivered_at = Some(now);
        d.next_attempt_at = None;
        if saved(deps, &d, &cur).await? {
            let lag = (now - d.created_at).num_milliseconds().max(0) as u64;
            deps.metrics.delivery(
                DeliveryOutcome::Delivered,
                ids(&d),
                d.attempts,
                Some(attempt_ms),
                Some(lag),
            );
        }
        follow_ups::after_success(deps, endpoint, now).await?;
        tracing::info!(attempt = d.attempts, status = ?outcome.status, "delivered");
        return Ok(Disposition::Ack);
    }

    if counted.get(&endpoint.id).is_none_or(|c| c.is_err()) {
        // Not counted: sent again, and counted then.
        return Ok(Disposition::Retry);
    }
    if outcome.gone {
        return gone(deps, cur, d, endpoint, attempt_ms, now).await;
    }
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let next = if d.attempts >= d.max_attempts {
        None
    } else {
        deps.policy
            .retry
            .next_delay(d.attempts, outcome.kind, outcome.retry_after, jitter)
    };
    let Some(delay) = next else {
        d.state = DeliveryState::Failed;
        d.next_attempt_at = None;
        tracing::warn!(attempts = d.attempts, error = ?outcome.error, "delivery failed for good");
        if saved(deps, &d, &cur).await? {
            deps.metrics.delivery(
                DeliveryOutcome::Failed,
                ids(&d),
                d.attempts,
                Some(attempt_ms),
                None,
            );
            follow_ups::after_exhausted(deps, endpoint, &d, now).await?;
        }
        return Ok(Disposition::Ack);
    };
    let due = time::after(now, delay);
    d.next_attempt_at = Some(due);
    let park = delay > deps.policy.park_after;
    if park {
        // Not held in flight: the sweeper sends it again when due.
        d.sweep_at = Some(due);
    }
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

/// The receiver answered `410 Gone`: the endpoint is disabled and the delivery failed.
async fn gone(
    deps: &Deps,
    cur: Current,
    mut d: crate::domain::delivery::Delivery,
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
