//! The `fan-out` consumer: one record per event too large for its publish request.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use tracing::Instrument;

use super::{Disposition, batch_response, parse, receipt, sent_at};
use crate::domain::event::FanOutMessage;
use crate::domain::time;
use crate::metrics::Ids;
use crate::ports::OperatorEvent;
use crate::services::fan_out::{FanOutProgress, fan_out};
use crate::services::publish::ORPHAN_AFTER;
use crate::services::{Deps, operational};

/// How long one record may fan out before it hands over to a fresh invocation (well under
/// the function's timeout).
pub const FAN_OUT_BUDGET: Duration = Duration::from_secs(40);

pub async fn fan_out_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let deadline = Instant::now() + FAN_OUT_BUDGET;
    let work = event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("fan_out", message_id = %id, event_id = tracing::field::Empty, organization_id = tracing::field::Empty);
        async move {
            let msg: FanOutMessage = match parse(&record) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "unreadable message");
                    return (id, Disposition::Retry);
                }
            };
            let span = tracing::Span::current();
            span.record("event_id", tracing::field::display(msg.event_id));
            span.record("organization_id", msg.organization_id.as_str());
            let d = match fan_out(deps, &msg, deadline).await {
                Ok(FanOutProgress::Done(n)) => {
                    deps.metrics.fan_out("fan-out", "done", n, Ids {
                        organization_id: Some(msg.organization_id.clone()),
                        event_id: Some(msg.event_id.to_string()),
                        ..Ids::default()
                    });
                    Disposition::Ack
                }
                Ok(FanOutProgress::TakenOver) => Disposition::Ack,
                Ok(FanOutProgress::Incomplete(sent_through)) => {
                    // Hand the rest to a fresh message (a redelivery of this one would count
                    // towards the DLQ and send the last page again).
                    let next = FanOutMessage {
                        sent_through: Some(sent_through),
                        ..msg.clone()
                    };
                    match deps.fan_out_queue.request_fan_out(&next).await {
                        Ok(()) => Disposition::Ack,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not hand the fan-out over; it resumes from this message");
                            let _ = deps.fan_out_visibility.postpone(receipt(&record), Duration::ZERO).await;
                            Disposition::Retry
                        }
                    }
                }
                Ok(FanOutProgress::EventMissing) => {
                    if sent_at(&record).is_some_and(|t| time::now() - t > ORPHAN_AFTER) {
                        tracing::warn!("the event does not exist (its publish died); dropping the message");
                        Disposition::Ack
                    } else {
                        let _ = deps
                            .fan_out_visibility
                            .postpone(receipt(&record), Duration::from_secs(1))
                            .await;
                        Disposition::Retry
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "fan-out failed; the message will be retried");
                    // Throttling and timeouts retry quietly (and reach the DLQ, and so the
                    // bus, if they last); a fault a retry will not fix is told at once.
                    if !e.is_retryable() {
                        operational::notify_operator(deps, &[OperatorEvent {
                            detail_type: operational::BUS_FAN_OUT_FAILED.into(),
                            detail: serde_json::json!({
                                "event_id": msg.event_id,
                                "organization_id": msg.organization_id,
                                "error": e.to_string(),
                                "message_id": id,
                            }),
                        }]).await;
                    }
                    Disposition::Retry
                }
            };
            (id, d)
        }
        .instrument(span)
    });
    batch_response(join_all(work).await)
}
