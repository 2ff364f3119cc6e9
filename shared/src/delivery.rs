//! The delivery pipeline's consumers: `deliver` (signed sends and retries), `dead-letter`
//! (marks what reaches the DLQ failed) and the sweeper (re-enqueues what was never enqueued).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use futures::future::join_all;
use rand::Rng;
use tracing::Instrument;

use crate::health::should_disable;
use crate::http::{SendOutcome, Sender};
use crate::model::{Attempt, Delivery, DeliveryMessage, DeliveryState, Endpoint};
use crate::ports::*;
use crate::retry::RetryPolicy;
use crate::secrets::SecretCipher;
use crate::signing::{SigningSecret, signature_header};
use crate::time::{self, Timestamp};

/// The attempt log keeps this many most recent attempts.
const MAX_LOGGED_ATTEMPTS: usize = 50;
/// A message may arrive this early and still count as due.
const DUE_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

pub struct ConsumerDeps {
    /// Reads a delivery and its endpoint in one request.
    pub reader: Arc<dyn DeliveryReader>,
    pub endpoints: Arc<dyn EndpointStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub cipher: Arc<dyn SecretCipher>,
    pub visibility: Arc<dyn VisibilityControl>,
    pub sender: Sender,
    pub retry: RetryPolicy,
}

/// What to tell SQS about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with (delivered, failed for good, or nothing to do): delete the message.
    Ack,
    /// Leave it on the queue: a retry later, or a fault of ours.
    Retry,
}

fn batch_response(results: Vec<(String, Disposition)>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (id, d) in results {
        if d == Disposition::Retry {
            response.add_failure(id);
        }
    }
    response
}

fn parse(record: &SqsMessage) -> Result<DeliveryMessage, String> {
    let body = record.body.as_deref().ok_or("message has no body")?;
    serde_json::from_str(body).map_err(|e| format!("message body is not a delivery reference: {e}"))
}

/// The SQS batch handler: every record concurrently, each in its own span.
pub async fn deliver_batch(deps: &ConsumerDeps, event: SqsEvent) -> SqsBatchResponse {
    let work = event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span =
            tracing::info_span!("deliver", message_id = %id, delivery_id = tracing::field::Empty);
        async move {
            let d = deliver_record(deps, &record).await;
            (id, d)
        }
        .instrument(span)
    });
    batch_response(join_all(work).await)
}

async fn deliver_record(deps: &ConsumerDeps, record: &SqsMessage) -> Disposition {
    let msg = match parse(record) {
        Ok(m) => m,
        Err(e) => {
            // Left to fail until it reaches the DLQ, where it is logged and dropped.
            tracing::error!(error = %e, "unreadable message");
            return Disposition::Retry;
        }
    };
    tracing::Span::current().record("delivery_id", tracing::field::display(msg.delivery_id));
    match process(
        deps,
        &msg,
        record.receipt_handle.as_deref().unwrap_or_default(),
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "delivery processing failed; the message will be retried");
            Disposition::Retry
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not open the signing secret: {0}")]
    Secret(#[from] crate::secrets::CipherError),
}

async fn process(
    deps: &ConsumerDeps,
    msg: &DeliveryMessage,
    receipt: &str,
) -> Result<Disposition, ProcessError> {
    let (delivery, endpoint) = deps.reader.load(msg).await?;
    let Some(d) = delivery else {
        tracing::warn!("delivery not found; dropping its message");
        return Ok(Disposition::Ack);
    };
    if d.state.is_terminal() {
        return Ok(Disposition::Ack);
    }
    let now = time::now();
    if let Some(due) = d.next_attempt_at.filter(|due| *due > now + DUE_SLACK) {
        // Early (a redelivery, or a visibility change that failed): back to sleep, no attempt.
        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
        if let Err(e) = deps.visibility.postpone(receipt, wait).await {
            tracing::warn!(error = %e, "could not postpone an early message");
        }
        return Ok(Disposition::Retry);
    }
    let endpoint = endpoint.filter(|e| e.organization_id == d.organization_id);
    let endpoint = match endpoint {
        None => return finish_without_sending(deps, d, "endpoint deleted").await,
        Some(e) if !e.is_active => {
            let why = match &e.disabled_reason {
                Some(r) => format!("endpoint disabled ({r})"),
                None => "endpoint disabled".to_owned(),
            };
            return finish_without_sending(deps, d, &why).await;
        }
        Some(e) if should_disable(&e, now) => {
            let reason = "every attempt failed for 5 days".to_owned();
            deps.endpoints
                .record_outcome(
                    &e.organization_id,
                    e.id,
                    Outcome::Disable {
                        reason: reason.clone(),
                        at: now,
                    },
                )
                .await?;
            return finish_without_sending(deps, d, &format!("endpoint disabled ({reason})")).await;
        }
        Some(e) => e,
    };

    let secrets = live_secrets(deps, &endpoint, now).await?;
    let body = webhook_body(&d);
    let msg_id = d.id.to_string();
    let started_at = time::now();
    let timestamp = started_at.timestamp();
    let headers = [
        ("webhook-id", msg_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            signature_header(&secrets, &msg_id, timestamp, body.as_bytes()),
        ),
    ];
    let outcome = deps
        .sender
        .post(&endpoint.url, &headers, Bytes::from(body))
        .await;
    record_attempt(deps, d, &endpoint, outcome, started_at, receipt).await
}

/// The current secret, and the previous one while its grace lasts.
async fn live_secrets(
    deps: &ConsumerDeps,
    e: &Endpoint,
    now: Timestamp,
) -> Result<Vec<SigningSecret>, ProcessError> {
    let context = e.id.to_string();
    let mut secrets = vec![deps.cipher.open(&e.secret, &context).await?];
    if let Some(prev) = e.previous_secret.as_ref().filter(|p| p.expires_at > now) {
        secrets.push(deps.cipher.open(&prev.secret, &context).await?);
    }
    Ok(secrets)
}

/// `{"id","type","timestamp","data"}` with the payload spliced in byte for byte.
pub fn webhook_body(d: &Delivery) -> String {
    format!(
        r#"{{"id":{},"type":{},"timestamp":{},"data":{}}}"#,
        serde_json::Value::String(d.event_id.to_string()),
        serde_json::Value::String(d.event_type.clone()),
        serde_json::Value::String(time::format(&d.created_at)),
        d.payload
    )
}

async fn finish_without_sending(
    deps: &ConsumerDeps,
    before: Delivery,
    reason: &str,
) -> Result<Disposition, ProcessError> {
    let mut d = before.clone();
    d.state = DeliveryState::Failed;
    d.last_error = Some(reason.to_owned());
    d.next_attempt_at = None;
    d.updated_at = time::now();
    save(deps, &d, &before).await
}

/// A conditional write: losing it means another worker moved this delivery on, so this
/// message is redundant.
async fn save(
    deps: &ConsumerDeps,
    d: &Delivery,
    before: &Delivery,
) -> Result<Disposition, ProcessError> {
    saved(deps, d, before).await.map(|_| Disposition::Ack)
}

/// Whether the conditional write won.
async fn saved(deps: &ConsumerDeps, d: &Delivery, before: &Delivery) -> Result<bool, ProcessError> {
    match deps
        .deliveries
        .save_progress(d, before.attempts, before.state)
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

async fn record_attempt(
    deps: &ConsumerDeps,
    before: Delivery,
    endpoint: &Endpoint,
    outcome: SendOutcome,
    started_at: Timestamp,
    receipt: &str,
) -> Result<Disposition, ProcessError> {
    let now = time::now();
    let mut d = before.clone();
    d.attempts += 1;
    d.updated_at = now;
    d.response_status = outcome.status;
    d.last_error = outcome.error.clone();
    d.attempt_log.push(Attempt {
        attempt: d.attempts,
        started_at,
        duration_ms: outcome.duration.as_millis() as u64,
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
        let disposition = save(deps, &d, &before).await?;
        if endpoint.stats.failure_streak > 0 || endpoint.stats.failing_since.is_some() {
            deps.endpoints
                .record_outcome(
                    &endpoint.organization_id,
                    endpoint.id,
                    Outcome::RecoveredAfterFailures,
                )
                .await?;
        }
        tracing::info!(attempt = d.attempts, status = ?outcome.status, "delivered");
        return Ok(disposition);
    }

    deps.endpoints
        .record_outcome(
            &endpoint.organization_id,
            endpoint.id,
            Outcome::Failure { at: now },
        )
        .await?;
    if outcome.gone {
        let reason = "the receiver answered 410 Gone".to_owned();
        deps.endpoints
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
        return save(deps, &d, &before).await;
    }
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let next = if d.attempts >= d.max_attempts {
        None
    } else {
        deps.retry
            .next_delay(d.attempts, outcome.kind, outcome.retry_after, jitter)
    };
    match next {
        None => {
            d.state = DeliveryState::Failed;
            d.next_attempt_at = None;
            tracing::warn!(attempts = d.attempts, error = ?outcome.error, "delivery failed for good");
            save(deps, &d, &before).await
        }
        Some(delay) => {
            d.next_attempt_at = Some(time::after(now, delay));
            tracing::info!(attempt = d.attempts, error = ?outcome.error, retry_in_ms = delay.as_millis() as u64, "attempt failed");
            if !saved(deps, &d, &before).await? {
                return Ok(Disposition::Ack);
            }
            if let Err(e) = deps.visibility.postpone(receipt, delay).await {
                // The message returns after the queue's own timeout and is postponed then.
                tracing::warn!(error = %e, "could not set the retry delay on the message");
            }
            Ok(Disposition::Retry)
        }
    }
}

/// Dead-letter consumer: whatever arrives here has failed processing many times; mark its
/// delivery failed so nothing stays pending forever.
pub struct DeadLetterDeps {
    pub deliveries: Arc<dyn DeliveryLog>,
}

pub async fn dead_letter_batch(deps: &DeadLetterDeps, event: SqsEvent) -> SqsBatchResponse {
    let work = event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("dead_letter", message_id = %id);
        async move {
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .cloned()
                .unwrap_or_default();
            let d = match parse(&record) {
                Err(e) => {
                    tracing::error!(error = %e, "unreadable dead letter dropped");
                    Disposition::Ack
                }
                Ok(msg) => match mark_dead(deps, &msg, &receives).await {
                    Ok(()) => Disposition::Ack,
                    Err(e) => {
                        tracing::error!(error = %e, "could not mark a dead letter failed");
                        Disposition::Retry
                    }
                },
            };
            (id, d)
        }
        .instrument(span)
    });
    batch_response(join_all(work).await)
}

async fn mark_dead(
    deps: &DeadLetterDeps,
    msg: &DeliveryMessage,
    receives: &str,
) -> Result<(), StoreError> {
    let Some(before) = deps
        .deliveries
        .get(msg.endpoint_id, msg.delivery_id)
        .await?
    else {
        return Ok(());
    };
    if before.state.is_terminal() {
        return Ok(());
    }
    let mut d = before.clone();
    d.state = DeliveryState::Failed;
    d.next_attempt_at = None;
    d.updated_at = time::now();
    let why = format!("moved to the dead-letter queue after {receives} failed processing attempts");
    d.last_error = Some(match &before.last_error {
        Some(prev) => format!("{why} (last error: {prev})"),
        None => why,
    });
    tracing::warn!(delivery_id = %d.id, "dead letter: delivery marked failed");
    match deps
        .deliveries
        .save_progress(&d, before.attempts, before.state)
        .await
    {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sweeper: pending deliveries overdue by more than `grace` were never enqueued (or their
/// message was lost); enqueue them again. Redundant messages are harmless: every attempt is
/// a conditional write.
pub struct SweeperDeps {
    pub deliveries: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub grace: Duration,
}

pub async fn sweep(deps: &SweeperDeps) -> Result<usize, String> {
    let cutoff = time::now() - chrono::TimeDelta::from_std(deps.grace).unwrap_or_default();
    let overdue = deps
        .deliveries
        .overdue(cutoff, 1000)
        .await
        .map_err(|e| e.to_string())?;
    if !overdue.is_empty() {
        deps.queue
            .enqueue(&overdue)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(
            count = overdue.len(),
            "re-enqueued overdue pending deliveries"
        );
    }
    Ok(overdue.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{EndpointId, EventId};
    use crate::memory::{MemoryDeliveries, MemoryEndpoints, MemoryQueue};
    use crate::secrets::LocalCipher;
    use crate::ssrf::DestinationPolicy;

    struct Fixture {
        deps: ConsumerDeps,
        endpoints: Arc<MemoryEndpoints>,
        deliveries: Arc<MemoryDeliveries>,
        queue: Arc<MemoryQueue>,
        delivery: Delivery,
    }

    /// One endpoint whose URL nothing listens on (shaped by `shape`), and one pending
    /// delivery to it.
    async fn fixture(shape: impl FnOnce(Endpoint) -> Endpoint) -> Fixture {
        let endpoints = Arc::new(MemoryEndpoints::default());
        let deliveries = Arc::new(MemoryDeliveries::default());
        let queue = Arc::new(MemoryQueue::default());
        let cipher = Arc::new(LocalCipher::new([3u8; 32]));
        let id = EndpointId::new();
        let now = time::now();
        let sealed = cipher
            .seal(&SigningSecret::generate(), &id.to_string())
            .await
            .expect("seal");
        let endpoint = shape(Endpoint::new(
            id,
            "org",
            "http://127.0.0.1:9/unreachable",
            sealed,
            now,
        ));
        endpoints.create(&endpoint).await.expect("endpoint");
        let delivery = Delivery::new_pending(&endpoint, EventId::new(), "a.b", "{}", 3, now);
        deliveries
            .insert_many(std::slice::from_ref(&delivery))
            .await
            .expect("delivery");
        let deps = ConsumerDeps {
            reader: Arc::new(crate::memory::SeparateReads {
                endpoints: endpoints.clone(),
                deliveries: deliveries.clone(),
            }),
            endpoints: endpoints.clone(),
            deliveries: deliveries.clone(),
            cipher,
            visibility: queue.clone(),
            sender: Sender::new(DestinationPolicy {
                allow_private: true,
                allow_http: true,
                ..Default::default()
            }),
            retry: RetryPolicy::parse("0s,1s,1s").expect("schedule"),
        };
        Fixture {
            deps,
            endpoints,
            deliveries,
            queue,
            delivery,
        }
    }

    fn event(d: &Delivery) -> SqsEvent {
        let mut record = SqsMessage::default();
        record.message_id = Some("m-1".into());
        record.receipt_handle = Some("rh-1".into());
        record.body = Some(serde_json::to_string(&d.message()).expect("json"));
        let mut event = SqsEvent::default();
        event.records.push(record);
        event
    }

    async fn stored(f: &Fixture) -> Delivery {
        f.deliveries
            .get(f.delivery.endpoint_id, f.delivery.id)
            .await
            .expect("get")
            .expect("delivery")
    }

    #[tokio::test]
    async fn an_early_message_goes_back_to_sleep_without_an_attempt() {
        let f = fixture(|e| e).await;
        let mut early = f.delivery.clone();
        early.next_attempt_at = Some(time::now() + chrono::TimeDelta::seconds(120));
        f.deliveries
            .save_progress(&early, 0, DeliveryState::Pending)
            .await
            .expect("save");
        let resp = deliver_batch(&f.deps, event(&early)).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        let postponed = f.queue.postponed();
        assert_eq!(postponed.len(), 1);
        assert_eq!(postponed[0].0, "rh-1");
        assert!(
            postponed[0].1 > Duration::from_secs(100) && postponed[0].1 <= Duration::from_secs(120)
        );
        assert_eq!(stored(&f).await.attempts, 0);
    }

    #[tokio::test]
    async fn a_terminal_delivery_is_acknowledged_and_never_resurrected() {
        let f = fixture(|e| e).await;
        let mut done = f.delivery.clone();
        done.state = DeliveryState::Delivered;
        done.attempts = 1;
        f.deliveries
            .save_progress(&done, 0, DeliveryState::Pending)
            .await
            .expect("save");
        let resp = deliver_batch(&f.deps, event(&done)).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(stored(&f).await, done);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_counted_once_and_timed_by_visibility() {
        let f = fixture(|e| e).await;
        let resp = deliver_batch(&f.deps, event(&f.delivery)).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        let d = stored(&f).await;
        assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 1));
        assert_eq!(d.last_error.as_deref(), Some("connection refused"));
        let (_, delay) = f.queue.postponed()[0];
        assert!(
            delay >= Duration::from_millis(800) && delay <= Duration::from_millis(1200),
            "{delay:?}"
        );
        // A stale copy of the same message (read before that attempt) loses its write.
        assert!(
            f.deliveries
                .save_progress(&f.delivery, 0, DeliveryState::Pending)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_inactive_endpoint_fails_the_delivery_with_the_reason() {
        let f = fixture(|e| Endpoint {
            is_active: false,
            ..e
        })
        .await;
        let resp = deliver_batch(&f.deps, event(&f.delivery)).await;
        assert!(resp.batch_item_failures.is_empty());
        let d = stored(&f).await;
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(d.last_error.as_deref(), Some("endpoint disabled"));
        assert_eq!(d.attempts, 0);
    }

    #[tokio::test]
    async fn an_endpoint_failing_for_five_days_is_disabled_and_its_delivery_failed() {
        let long_ago = time::now() - crate::health::DISABLE_AFTER - chrono::TimeDelta::hours(1);
        let f = fixture(|e| Endpoint {
            updated_at: long_ago,
            stats: crate::model::DeliveryStats {
                failure_streak: 40,
                failing_since: Some(long_ago),
                last_failure_at: Some(time::now()),
            },
            ..e
        })
        .await;
        let resp = deliver_batch(&f.deps, event(&f.delivery)).await;
        assert!(resp.batch_item_failures.is_empty());
        let d = stored(&f).await;
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(d.attempts, 0, "no send to an endpoint being disabled");
        assert!(
            d.last_error
                .as_deref()
                .is_some_and(|e| e.contains("5 days")),
            "{:?}",
            d.last_error
        );
        let e = f
            .endpoints
            .get("org", f.delivery.endpoint_id)
            .await
            .expect("get")
            .expect("endpoint");
        assert!(!e.is_active);
        assert_eq!(
            crate::health::health(&e, time::now()),
            crate::model::Health::Disabled
        );
    }

    #[tokio::test]
    async fn unreadable_messages_are_left_for_the_dead_letter_queue() {
        let f = fixture(|e| e).await;
        let mut e = event(&f.delivery);
        e.records[0].body = Some("not json".into());
        let resp = deliver_batch(&f.deps, e).await;
        assert_eq!(resp.batch_item_failures[0].item_identifier, "m-1");
    }

    #[test]
    fn the_body_splices_the_payload_byte_for_byte() {
        let now = time::now();
        let e = Endpoint::new(
            EndpointId::new(),
            "o",
            "",
            crate::model::SealedSecret(String::new()),
            now,
        );
        let d = Delivery::new_pending(
            &e,
            EventId::new(),
            "t\"x",
            r#"{"big":12345678901234567890,"f":1.50}"#,
            1,
            now,
        );
        let body = webhook_body(&d);
        assert!(
            body.ends_with(r#""data":{"big":12345678901234567890,"f":1.50}}"#),
            "{body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["type"], "t\"x");
        assert_eq!(v["id"], d.event_id.to_string());
    }
}
