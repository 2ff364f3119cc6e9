//! The queue ports: the delivery, fan-out and jobs queues, and a received message's visibility
//! (the short-retry timer). SQS adapters in `adapters::sqs`, twins in `adapters::memory`.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::delivery::DeliveryMessage;
use crate::domain::event::FanOutMessage;

#[derive(Debug, thiserror::Error)]
#[error("queue: {message}")]
pub struct QueueError {
    pub message: String,
    pub retryable: bool,
}

impl QueueError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Enqueues every message (batched); fails only if some could not be sent.
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), QueueError>;
}

#[async_trait]
pub trait FanOutQueue: Send + Sync {
    async fn request_fan_out(&self, message: &FanOutMessage) -> Result<(), QueueError>;
}

#[async_trait]
pub trait VisibilityControl: Send + Sync {
    /// Hides a received message for `delay`: the short-retry timer.
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn request_job(&self, message: &crate::domain::job::JobMessage)
    -> Result<(), QueueError>;
}
