//! The ports: one trait per capability, each with a DynamoDB/SQS adapter and an in-memory twin.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::model::{ApiKeyRecord, Delivery, DeliveryMessage, DeliveryState, Endpoint};
use crate::time::{self, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the record changed (or vanished) since it was read.
    #[error("the record changed concurrently")]
    Conflict,
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("storage backend: {0}")]
    Backend(String),
}

#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError>;
    async fn get(&self, org: &str, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;
    async fn list(&self, org: &str) -> Result<Vec<Endpoint>, StoreError>;
    /// Writes the owner-controlled fields (not the delivery stats), if the endpoint still exists
    /// and its `updated_at` is still `expected_updated_at`.
    async fn save_settings(
        &self,
        e: &Endpoint,
        expected_updated_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Returns whether it existed.
    async fn delete(&self, org: &str, id: EndpointId) -> Result<bool, StoreError>;
    async fn record_outcome(
        &self,
        org: &str,
        id: EndpointId,
        outcome: Outcome,
    ) -> Result<(), StoreError>;
}

/// What one attempt means for the endpoint's health counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Failure {
        at: Timestamp,
    },
    /// Sent only when a failure streak was open: a healthy endpoint costs no write.
    RecoveredAfterFailures,
    Disable {
        reason: String,
        at: Timestamp,
    },
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    /// The last delivery of this page when more may follow.
    pub next_after: Option<DeliveryId>,
}

impl DeliveryPage {
    /// A page from up to `limit + 1` deliveries, newest first: the extra one only says that
    /// more follow.
    pub fn from_overfetch(mut found: Vec<Delivery>, limit: usize) -> Self {
        let more = found.len() > limit;
        found.truncate(limit);
        Self {
            next_after: if more {
                found.last().map(|d| d.id)
            } else {
                None
            },
            deliveries: found,
        }
    }
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Writes new pending deliveries (batched).
    async fn insert_many(&self, deliveries: &[Delivery]) -> Result<(), StoreError>;
    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;
    async fn list(
        &self,
        endpoint: EndpointId,
        limit: usize,
        after: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<DeliveryPage, StoreError>;
    /// Writes the mutable fields of `d` if the stored copy still has `expected_attempts`
    /// attempts and is still in `expected_state`; `Conflict` otherwise.
    async fn save_progress(
        &self,
        d: &Delivery,
        expected_attempts: u32,
        expected_state: DeliveryState,
    ) -> Result<(), StoreError>;
    /// Pending deliveries whose next attempt was due before `due_before` (the sweeper's view).
    async fn overdue(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<DeliveryMessage>, StoreError>;
}

/// The consumer's one read per message: the delivery and its endpoint together.
#[async_trait]
pub trait DeliveryReader: Send + Sync {
    async fn load(
        &self,
        msg: &DeliveryMessage,
    ) -> Result<(Option<Delivery>, Option<Endpoint>), StoreError>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn get(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
}

/// The first answer to a publish, kept under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRecord {
    pub request_hash: String,
    pub event_id: EventId,
    pub delivery_ids: Vec<DeliveryId>,
    /// False until the deliveries are written and enqueued.
    pub committed: bool,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    Existing(PublishRecord),
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `ttl` unless a live claim exists, which is returned instead.
    async fn claim(
        &self,
        org: &str,
        key: &str,
        record: &PublishRecord,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;
    async fn commit(&self, org: &str, key: &str) -> Result<(), StoreError>;
    /// Drops an abandoned, uncommitted claim so the request can run again.
    async fn release(&self, org: &str, key: &str, event_id: EventId) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Enqueues every message (batched); fails only if some could not be sent.
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), QueueError>;
}

#[async_trait]
pub trait VisibilityControl: Send + Sync {
    /// Hides a received message for `delay`, the retry mechanism.
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;
}
