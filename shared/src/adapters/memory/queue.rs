use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::domain::delivery::DeliveryMessage;
use crate::domain::event::FanOutMessage;
use crate::ports::{DeliveryQueue, FanOutQueue, QueueError, VisibilityControl};

/// Records what was enqueued and postponed; tests and benchmarks read it back.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<DeliveryMessage>>,
    pub fan_outs: Mutex<Vec<FanOutMessage>>,
    pub postponed: Mutex<Vec<(String, Duration)>>,
}

impl MemoryQueue {
    pub fn take_sent(&self) -> Vec<DeliveryMessage> {
        std::mem::take(&mut *lock(&self.sent))
    }

    pub fn take_fan_outs(&self) -> Vec<FanOutMessage> {
        std::mem::take(&mut *lock(&self.fan_outs))
    }

    pub fn postponed(&self) -> Vec<(String, Duration)> {
        lock(&self.postponed).clone()
    }
}

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), QueueError> {
        lock(&self.sent).extend_from_slice(messages);
        Ok(())
    }
}

#[async_trait]
impl FanOutQueue for MemoryQueue {
    async fn request_fan_out(&self, message: &FanOutMessage) -> Result<(), QueueError> {
        lock(&self.fan_outs).push(message.clone());
        Ok(())
    }
}

#[async_trait]
impl VisibilityControl for MemoryQueue {
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        lock(&self.postponed).push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}
