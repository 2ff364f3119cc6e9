//! The queue and schedule consumers: `deliver` (signed sends and retries), `fan_out`
//! (events too large to fan out in their publish request), `dead_letter` (marks what
//! reaches a DLQ failed) and `sweeper` (sends parked retries when due and messages lost).
//! Each SQS consumer processes its batch's records concurrently, each in its own span, and
//! answers with `SqsBatchResponse` (partial batch failures).

pub mod dead_letter;
pub mod deliver;
pub mod fan_out;
pub mod jobs;
pub mod sweeper;
#[cfg(test)]
pub(crate) mod testkit;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use serde::de::DeserializeOwned;

use crate::domain::time::Timestamp;

/// What to tell SQS about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with (delivered, failed for good, parked, or nothing to do): delete the message.
    Ack,
    /// Leave it on the queue: a short retry, or a fault of ours.
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

fn parse<T: DeserializeOwned>(record: &SqsMessage) -> Result<T, String> {
    let body = record.body.as_deref().ok_or("message has no body")?;
    serde_json::from_str(body)
        .map_err(|e| format!("message body is not one this queue carries: {e}"))
}

/// When SQS first received the message (its `SentTimestamp` attribute).
fn sent_at(record: &SqsMessage) -> Option<Timestamp> {
    record
        .attributes
        .get("SentTimestamp")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
}

fn receipt(record: &SqsMessage) -> &str {
    record.receipt_handle.as_deref().unwrap_or_default()
}
