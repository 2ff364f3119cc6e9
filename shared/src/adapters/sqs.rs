//! SQS adapter: batched sends, and visibility changes as the retry timer.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::domain::delivery::DeliveryMessage;
use crate::domain::event::FanOutMessage;
use crate::domain::retry::MAX_VISIBILITY;
use crate::ports::{DeliveryQueue, FanOutQueue, QueueError, VisibilityControl};

#[derive(Clone, Debug)]
pub struct SqsQueue {
    pub client: Client,
    pub url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

/// SDK failures that a later call may not repeat: throttling, timeouts, 5xx.
fn sqs_error<E, R>(e: aws_sdk_sqs::error::SdkError<E, R>) -> QueueError
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = super::is_transient(
        &e,
        &[
            "ThrottlingException",
            "RequestThrottled",
            "InternalError",
            "ServiceUnavailable",
        ],
    );
    let message = DisplayErrorContext(e).to_string();
    QueueError {
        message,
        retryable: transient,
    }
}

impl SqsQueue {
    /// Sends every body (10 a call), retrying the entries SQS did not accept.
    pub async fn send_all<T: serde::Serialize>(&self, messages: &[T]) -> Result<(), QueueError> {
        for chunk in messages.chunks(10) {
            let mut pending: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    serde_json::to_string(m)
                        .map(|body| (i.to_string(), body))
                        .map_err(|e| QueueError::permanent(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            let mut backoff = Duration::from_millis(50);
            for attempt in 0.. {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .build()
                            .map_err(|e| QueueError::permanent(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sqs_error)?;
                let failed: Vec<String> = out.failed.iter().map(|f| f.id.clone()).collect();
                pending.retain(|(id, _)| failed.contains(id));
                if pending.is_empty() {
                    break;
                }
                if attempt >= 5 {
                    return Err(QueueError::transient(format!(
                        "{} messages not accepted by SQS after retries",
                        pending.len()
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueue for SqsQueue {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), QueueError> {
        self.send_all(messages).await
    }
}

#[async_trait]
impl FanOutQueue for SqsQueue {
    async fn request_fan_out(&self, message: &FanOutMessage) -> Result<(), QueueError> {
        self.send_all(std::slice::from_ref(message)).await
    }
}

#[async_trait]
impl crate::ports::JobQueue for SqsQueue {
    async fn request_job(
        &self,
        message: &crate::domain::job::JobMessage,
    ) -> Result<(), QueueError> {
        self.send_all(std::slice::from_ref(message)).await
    }
}

/// SQS caps a message's visibility at 12 h counted from when it was *received*, so asking
/// for the full 12 h some seconds after the receive is refused. Stay a margin below it (more
/// than a consumer invocation lasts); a message that returns early is postponed again.
const POSTPONE_CEILING: Duration = Duration::from_secs(MAX_VISIBILITY.as_secs() - 600);

/// The `VisibilityTimeout` (whole seconds, rounded up) that postpones a message by `delay`.
fn visibility_secs(delay: Duration) -> i32 {
    delay.min(POSTPONE_CEILING).as_secs_f64().ceil() as i32
}

#[async_trait]
impl VisibilityControl for SqsQueue {
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        let secs = visibility_secs(delay);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postponing_stays_below_the_sqs_twelve_hour_cap() {
        assert_eq!(visibility_secs(Duration::from_millis(200)), 1);
        assert_eq!(visibility_secs(Duration::from_secs(5)), 5);
        assert_eq!(visibility_secs(Duration::from_secs(10 * 3600)), 36_000);
        assert_eq!(visibility_secs(Duration::from_secs(12 * 3600)), 42_600);
        assert_eq!(visibility_secs(Duration::from_secs(40 * 3600)), 42_600);
    }
}
