//! The `deliver` consumer: load a batch's deliveries, endpoints and events in one load,
//! send each signed, record the attempt with one conditional write.
//!
//! A delivery's first write is its first attempt (the fan-out only sends messages), so the
//! happy path costs one write per delivery. Retries wait as in-flight messages only up to
//! `PARK_AFTER`; longer waits are parked in the sweep index and the message acknowledged.
//!
//! A batch runs in three steps: every record up to its send, and a success's write,
//! concurrently; then one write per endpoint counting the batch's failed attempts to it
//! (`attempt::count_failures`: a dead endpoint's item takes one write per batch, not one per
//! attempt, so thousands of failures a second stay under a partition's 1,000 writes); then
//! each failed record's own write.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use tracing::Instrument;

mod attempt;
mod follow_ups;
mod lease;
mod send;

use send::{live_secrets, send};

use super::{Disposition, batch_response, parse, receipt, sent_at};
use crate::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use crate::domain::endpoint::Endpoint;
use crate::domain::time::{self, Timestamp};
use crate::http::SendOutcome;
use crate::metrics::{DeliveryOutcome, Ids};
use crate::ports::{CipherError, Loaded, StoreError};
use crate::services::publish::ORPHAN_AFTER;
use crate::services::{Deps, ServiceError, operational};

/// A message may arrive this early and still count as due.
const DUE_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// How long a message whose event is not visible yet waits before it is read again.
const EVENT_NOT_YET: Duration = Duration::from_secs(1);

struct Record {
    id: String,
    receipt: String,
    sent_at: Option<Timestamp>,
    msg: Result<DeliveryMessage, String>,
}

/// The SQS batch handler.
pub async fn deliver_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let records: Vec<Record> = event
        .records
        .iter()
        .map(|r| Record {
            id: r.message_id.clone().unwrap_or_default(),
            receipt: receipt(r).to_owned(),
            sent_at: sent_at(r),
            msg: parse(r),
        })
        .collect();
    let msgs: Vec<DeliveryMessage> = records.iter().filter_map(|r| r.msg.clone().ok()).collect();
    let mut loaded = match deps.reader.load(&msgs).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "could not load the batch; every record will be retried");
            return batch_response(
                records
                    .into_iter()
                    .map(|r| (r.id, Disposition::Retry))
                    .collect(),
            );
        }
    };
    // The publish request sends messages before it writes its event; a consumer that wins
    // that race reads once more before putting the message back.
    let early: Vec<DeliveryMessage> = msgs
        .iter()
        .filter(|m| !loaded.events.contains_key(&m.event_id))
        .cloned()
        .collect();
    if !early.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(again) = deps.reader.load(&early).await {
            loaded.events.extend(again.events);
            loaded.deliveries.extend(again.deliveries);
        }
    }
    let loaded = &loaded;
    let spans: Vec<tracing::Span> = records.iter().map(span_of).collect();
    let steps = join_all(records.iter().zip(&spans).map(|(r, span)| {
        async move {
            match &r.msg {
                Err(e) => {
                    // Left to fail until it reaches the DLQ, where it is logged and dropped.
                    tracing::error!(error = %e, "unreadable message");
                    Step::Done(Disposition::Retry)
                }
                Ok(msg) => process(deps, loaded, msg, &r.receipt, r.sent_at)
                    .await
                    .unwrap_or_else(|e| Step::Done(retry_after(e))),
            }
        }
        .instrument(span.clone())
    }))
    .await;
    let counted = attempt::count_failures(deps, &steps).await;
    let counted = &counted;
    let done = join_all(
        records
            .into_iter()
            .zip(steps)
            .zip(spans)
            .map(|((r, step), span)| {
                async move {
                    let d = match step {
                        Step::Done(d) => d,
                        Step::Failed(sent) => attempt::failed(deps, sent, counted, &r.receipt)
                            .await
                            .unwrap_or_else(retry_after),
                    };
                    (r.id, d)
                }
                .instrument(span)
            }),
    )
    .await;
    batch_response(done)
}

/// A record's span, with the ids its message names.
fn span_of(r: &Record) -> tracing::Span {
    let span = tracing::info_span!(
        "deliver",
        message_id = %r.id,
        delivery_id = tracing::field::Empty,
        endpoint_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        organization_id = tracing::field::Empty,
    );
    if let Ok(msg) = &r.msg {
        span.record("delivery_id", tracing::field::display(msg.delivery_id));
        span.record("endpoint_id", tracing::field::display(msg.endpoint_id));
        span.record("event_id", tracing::field::display(msg.event_id));
        span.record("organization_id", msg.organization_id.as_str());
    }
    span
}

fn retry_after(e: ProcessError) -> Disposition {
    tracing::error!(error = %e, "delivery processing failed; the message will be retried");
    Disposition::Retry
}

/// Where a record stands after the first step.
enum Step<'a> {
    /// Finished with (a success is recorded at once).
    Done(Disposition),
    /// Sent and failed: recorded in the third step, once its endpoint's failures are counted.
    Failed(Box<Sent<'a>>),
}

struct Sent<'a> {
    cur: Current,
    endpoint: &'a Endpoint,
    outcome: SendOutcome,
    started_at: Timestamp,
    /// When the send ended: the attempt's time.
    at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not open the signing secret: {0}")]
    Secret(#[from] CipherError),
    #[error("could not raise an operational event: {0}")]
    Operational(#[from] ServiceError),
}

/// A delivery as read (or as it starts, before its first attempt) and whether it is stored.
struct Current {
    d: Delivery,
    stored: bool,
}

async fn process<'a>(
    deps: &Deps,
    loaded: &'a Loaded,
    msg: &DeliveryMessage,
    receipt: &str,
    sent: Option<Timestamp>,
) -> Result<Step<'a>, ProcessError> {
    let now = time::now();
    let stored = loaded.deliveries.get(&msg.delivery_id);
    if let Some(d) = stored.filter(|d| d.state.is_terminal()) {
        // A crash (or a failed publish) may have come between its save and its follow-ups.
        follow_ups::again(deps, loaded, d, now).await?;
        return Ok(Step::Done(Disposition::Ack));
    }
    let Some(event) = loaded
        .events
        .get(&msg.event_id)
        .filter(|e| e.organization_id == msg.organization_id)
    else {
        if sent.is_some_and(|t| now - t > ORPHAN_AFTER) {
            tracing::warn!(
                "the delivery's event does not exist (its publish died, or it expired); dropping the message"
            );
            return Ok(Step::Done(Disposition::Ack));
        }
        postpone(deps, receipt, EVENT_NOT_YET).await;
        return Ok(Step::Done(Disposition::Retry));
    };
    let cur = match stored {
        Some(d) => Current {
            d: d.clone(),
            stored: true,
        },
        None => Current {
            d: Delivery::first(event, msg.endpoint_id, deps.policy.retry.max_attempts()),
            stored: false,
        },
    };
    if let Some(due) = cur.d.next_attempt_at.filter(|due| *due > now + DUE_SLACK) {
        // Early (a redelivery, a message the sweeper sent twice): no attempt now.
        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
        if wait > deps.policy.park_after {
            if cur.d.sweep_at.is_none_or(|at| at > due) {
                let mut parked = cur.d.clone();
                parked.sweep_at = Some(due);
                saved(deps, &parked, &cur).await?;
            }
            return Ok(Step::Done(Disposition::Ack));
        }
        postpone(deps, receipt, wait).await;
        return Ok(Step::Done(Disposition::Retry));
    }
    let endpoint = loaded
        .endpoints
        .get(&msg.endpoint_id)
        .filter(|e| e.organization_id == cur.d.organization_id);
    let endpoint = match endpoint {
        None => return done(finish_without_sending(deps, &cur, "endpoint deleted").await),
        Some(e) if !e.is_active => {
            // Its disabler may have died before publishing `capy.endpoint.disabled`.
            operational::disabled_follow_up(deps, e, now).await?;
            let why = match &e.disabled_reason {
                Some(r) => format!("endpoint disabled ({r})"),
                None => "endpoint disabled".to_owned(),
            };
            return done(finish_without_sending(deps, &cur, &why).await);
        }
        Some(e) => e,
    };
    let cur = match deps.policy.attempt_lease {
        None => cur,
        Some(lease) => match lease::take(deps, cur, lease, now).await? {
            Ok(cur) => cur,
            Err(wait) => {
                postpone(deps, receipt, wait).await;
                return Ok(Step::Done(Disposition::Retry));
            }
        },
    };

    let secrets = live_secrets(deps, endpoint, now).await?;
    let (outcome, started_at) = send(deps, event, &cur.d, endpoint, &secrets).await;
    let sent = Sent {
        cur,
        endpoint,
        outcome,
        started_at,
        at: time::now(),
    };
    if sent.outcome.succeeded() {
        return done(attempt::delivered(deps, sent).await);
    }
    Ok(Step::Failed(Box::new(sent)))
}

fn done<'a>(d: Result<Disposition, ProcessError>) -> Result<Step<'a>, ProcessError> {
    d.map(Step::Done)
}

async fn postpone(deps: &Deps, receipt: &str, wait: Duration) {
    if let Err(e) = deps.visibility.postpone(receipt, wait).await {
        // The message returns after the queue's own timeout instead.
        tracing::warn!(error = %e, "could not set a message's visibility");
    }
}

async fn finish_without_sending(
    deps: &Deps,
    cur: &Current,
    reason: &str,
) -> Result<Disposition, ProcessError> {
    let mut d = cur.d.clone();
    d.state = DeliveryState::Failed;
    d.last_error = Some(reason.to_owned());
    d.next_attempt_at = None;
    d.sweep_at = None;
    d.lease = None;
    d.updated_at = time::now();
    if saved(deps, &d, cur).await? {
        deps.metrics
            .delivery(DeliveryOutcome::Dropped, ids(&d), d.attempts, None, None);
    }
    Ok(Disposition::Ack)
}

/// A delivery's ids, as metric properties.
pub(super) fn ids(d: &Delivery) -> Ids {
    Ids {
        organization_id: Some(d.organization_id.clone()),
        endpoint_id: Some(d.endpoint_id.to_string()),
        event_id: Some(d.event_id.to_string()),
        delivery_id: Some(d.id.to_string()),
    }
}

/// Whether the conditional write won. Losing it means another worker moved this delivery
/// on, so this message is redundant.
async fn saved(deps: &Deps, d: &Delivery, cur: &Current) -> Result<bool, ProcessError> {
    match deps
        .deliveries
        .save(d, Expected::of(&cur.d, cur.stored))
        .await
    {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => {
            tracing::info!("delivery was updated concurrently; dropping this copy of its message");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
