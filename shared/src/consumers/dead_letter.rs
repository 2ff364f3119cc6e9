//! Dead-letter consumers: whatever arrives on a DLQ failed processing many times. A
//! delivery's message marks its delivery failed, so nothing stays pending forever; a
//! fan-out's message is logged (the event stays recorded with its fan-out pending); a
//! job's message ends its job as failed, which frees its endpoint's replay slot.
//! Either arrival is also put on the operator bus (when one is configured), and a delivery
//! marked failed here raises `capy.delivery.exhausted` like one that ran out of attempts.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use tracing::Instrument;

use super::{Disposition, batch_response, parse};
use crate::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use crate::domain::event::FanOutMessage;
use crate::domain::job::JobMessage;
use crate::domain::time;
use crate::metrics::DeliveryOutcome;
use crate::ports::OperatorEvent;
use crate::ports::StoreError;
use crate::services::{Deps, ServiceError, operational, replay};

pub async fn dead_letter_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let work = event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("dead_letter", message_id = %id);
        async move {
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .cloned()
                .unwrap_or_default();
            let d = if let Ok(msg) = parse::<DeliveryMessage>(&record) {
                match mark_dead(deps, &msg, &receives).await {
                    Ok(()) => {
                        tell_operator(deps, "deliveries", serde_json::json!({
                            "delivery_id": msg.delivery_id,
                            "endpoint_id": msg.endpoint_id,
                            "event_id": msg.event_id,
                            "organization_id": msg.organization_id,
                        }), &receives, &id).await;
                        Disposition::Ack
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not mark a dead letter failed");
                        Disposition::Retry
                    }
                }
            } else if let Ok(msg) = parse::<FanOutMessage>(&record) {
                tracing::error!(event_id = %msg.event_id, organization_id = %msg.organization_id, receives = %receives, "fan-out dead-lettered: the event stays recorded with its fan-out pending");
                tell_operator(deps, "fan-out", serde_json::json!({
                    "event_id": msg.event_id,
                    "organization_id": msg.organization_id,
                }), &receives, &id).await;
                Disposition::Ack
            } else if let Ok(msg) = parse::<JobMessage>(&record) {
                tracing::error!(job_id = %msg.job_id, organization_id = %msg.organization_id, receives = %receives, "job dead-lettered: the job ends as failed");
                let why = format!("its worker failed {receives} times; see the jobs function's logs");
                match replay::abandon(deps, &msg, &why).await {
                    Ok(()) => {
                        tell_operator(deps, "jobs", serde_json::json!({
                            "job_id": msg.job_id,
                            "organization_id": msg.organization_id,
                        }), &receives, &id).await;
                        Disposition::Ack
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not end a dead-lettered job");
                        Disposition::Retry
                    }
                }
            } else {
                tracing::error!("unreadable dead letter dropped");
                Disposition::Ack
            };
            (id, d)
        }
        .instrument(span)
    });
    batch_response(join_all(work).await)
}

/// A dead letter on the operator bus: which queue, the message's ids, how often it was
/// received.
async fn tell_operator(
    deps: &Deps,
    queue: &str,
    mut detail: serde_json::Value,
    receives: &str,
    message_id: &str,
) {
    if let Some(fields) = detail.as_object_mut() {
        fields.insert("queue".into(), queue.into());
        fields.insert("receives".into(), receives.into());
        fields.insert("message_id".into(), message_id.into());
    }
    operational::notify_operator(
        deps,
        &[OperatorEvent {
            detail_type: operational::BUS_DEAD_LETTER.into(),
            detail,
        }],
    )
    .await;
}

async fn mark_dead(deps: &Deps, msg: &DeliveryMessage, receives: &str) -> Result<(), ServiceError> {
    let loaded = deps.reader.load(std::slice::from_ref(msg)).await?;
    let (before, stored) = match loaded.deliveries.get(&msg.delivery_id) {
        Some(d) => (d.clone(), true),
        None => match loaded.events.get(&msg.event_id) {
            Some(e) => (
                Delivery::first(e, msg.endpoint_id, deps.policy.retry.max_attempts()),
                false,
            ),
            // No event: its publish died before writing it; there is nothing to record.
            None => return Ok(()),
        },
    };
    if before.state.is_terminal() {
        return Ok(());
    }
    let mut d = before.clone();
    d.state = DeliveryState::Failed;
    d.next_attempt_at = None;
    d.sweep_at = None;
    d.lease = None;
    d.updated_at = time::now();
    let why = format!("moved to the dead-letter queue after {receives} failed processing attempts");
    d.last_error = Some(match &before.last_error {
        Some(prev) => format!("{why} (last error: {prev})"),
        None => why,
    });
    tracing::warn!(delivery_id = %d.id, "dead letter: delivery marked failed");
    // Before the save: a crash in between leaves the message to raise it again.
    if let Some(e) = loaded.endpoints.get(&msg.endpoint_id) {
        operational::delivery_exhausted(deps, "dead-letter", e, &d, d.updated_at).await?;
    }
    match deps
        .deliveries
        .save(&d, Expected::of(&before, stored))
        .await
    {
        Ok(()) => {
            // Counted with the deliveries that failed for good, so the failure-rate alarm
            // sees it.
            deps.metrics.delivery(
                DeliveryOutcome::Failed,
                super::deliver::ids(&d),
                d.attempts,
                None,
                None,
            );
            Ok(())
        }
        Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
