//! The ports: one trait per capability, each with a DynamoDB/SQS/KMS adapter
//! (`adapters::{dynamo, sqs, secrets}`) and an in-memory twin (`adapters::memory`). The
//! conformance suite (`tests/tests/conformance.rs`) runs the same cases on both.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::api_key::ApiKeyRecord;
use crate::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use crate::domain::endpoint::{Endpoint, Outcome, SealedSecret};
use crate::domain::event::{Event, FanOutPage};
use crate::domain::ids::{DeliveryId, EndpointId, EventId};
use crate::domain::signing::SigningSecret;
use crate::domain::time::{self, Timestamp};

mod markers;
mod queues;
pub use markers::{Marked, OpsMarkerStore, WindowCount, WindowTally};
pub use queues::{DeliveryQueue, FanOutQueue, JobQueue, QueueError, VisibilityControl};

/// Why a store call failed. Whether a retry can help is part of the type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the record changed (or vanished, or already exists).
    #[error("the record changed concurrently")]
    Conflict,
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Throttling, a timeout, a 5xx: the same call may succeed later.
    #[error("storage backend unavailable: {0}")]
    Transient(String),
    /// A fault a retry will not fix (a bad request, a missing table, no permission).
    #[error("storage backend: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError>;
    async fn get(&self, org: &str, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;
    /// Up to `limit` endpoints in id order, after `after`; the cursor is `Some` when more
    /// may follow.
    async fn page(
        &self,
        org: &str,
        after: Option<EndpointId>,
        limit: usize,
    ) -> Result<(Vec<Endpoint>, Option<EndpointId>), StoreError>;
    /// Writes the owner-controlled fields (url, description, event types, activity, secrets),
    /// never the delivery stats, if the endpoint still exists and its `updated_at` is still
    /// `expected_updated_at`.
    async fn save_settings(
        &self,
        e: &Endpoint,
        expected_updated_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Returns whether it existed.
    async fn delete(&self, org: &str, id: EndpointId) -> Result<bool, StoreError>;
    /// Applies an attempt's outcome to the counters; nothing if the endpoint is gone.
    /// Returns the endpoint as it was just before (`None` if gone, for an announcement of a
    /// streak no longer open, or for [`Outcome::Disable`] of an endpoint already inactive,
    /// unless by this very write): concurrent outcomes are
    /// serialized, so exactly one caller sees each transition (the streak reaching a value,
    /// the endpoint going inactive).
    async fn record_outcome(
        &self,
        org: &str,
        id: EndpointId,
        outcome: Outcome,
    ) -> Result<Option<Endpoint>, StoreError>;
}

/// Every endpoint of an organization, in id order.
pub async fn all_endpoints(
    store: &dyn EndpointStore,
    org: &str,
) -> Result<Vec<Endpoint>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.page(org, after, 500).await?;
        out.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
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

/// What the sweeper finds: a delivery whose message is due (or overdue) by `sweep_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepEntry {
    pub message: DeliveryMessage,
    pub sweep_at: Timestamp,
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;
    /// The stored deliveries among `keys` (endpoint, delivery), in any order.
    async fn get_many(
        &self,
        keys: &[(EndpointId, DeliveryId)],
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Newest first across the endpoint's shards; `after` is the last id of the page before.
    async fn list(
        &self,
        endpoint: EndpointId,
        limit: usize,
        after: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<DeliveryPage, StoreError>;
    /// Every delivery of the endpoint created in `[since, until]`, newest first.
    async fn range(
        &self,
        endpoint: EndpointId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Writes `d` if the stored copy is as `expected`; `Conflict` otherwise, unless the
    /// stored copy is exactly `d` (the same write repeated: an SDK retry of a write whose
    /// answer was lost), which succeeds.
    async fn save(&self, d: &Delivery, expected: Expected) -> Result<(), StoreError>;
    /// Pending deliveries whose `sweep_at` is before `due_before` (the sweeper's view).
    async fn due_for_sweep(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SweepEntry>, StoreError>;
    /// Moves a swept delivery's `sweep_at` from `from` to `to`, if nobody changed it since.
    async fn reschedule_sweep(&self, entry: &SweepEntry, to: Timestamp) -> Result<(), StoreError>;
}

/// What a consumer batch reads in one go: its deliveries, their endpoints and events.
#[derive(Debug, Default)]
pub struct Loaded {
    pub deliveries: HashMap<DeliveryId, Delivery>,
    pub endpoints: HashMap<EndpointId, Endpoint>,
    pub events: HashMap<EventId, Event>,
}

/// The consumer's read of a batch: deliveries and endpoints strongly consistent (a stale read
/// could drop a retry), events eventually consistent (what it reads of one never changes).
#[async_trait]
pub trait DeliveryReader: Send + Sync {
    async fn load(&self, msgs: &[DeliveryMessage]) -> Result<Loaded, StoreError>;
}

/// One page of the events log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub limit: usize,
    pub after: Option<EventId>,
    /// Exact type, or a prefix wildcard (`invoice.*`).
    pub event_type: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn create(&self, e: &Event) -> Result<(), StoreError>;
    async fn get(&self, org: &str, id: EventId) -> Result<Option<Event>, StoreError>;
    /// Newest first, only events still within retention; the id is the next cursor.
    async fn list(
        &self,
        org: &str,
        q: &EventQuery,
    ) -> Result<(Vec<Event>, Option<EventId>), StoreError>;
    /// Records a fan-out page; `Conflict` if that page was already written.
    async fn put_page(&self, page: &FanOutPage) -> Result<(), StoreError>;
    /// Every page of an event's fan-out, in page order.
    async fn pages(&self, event: EventId) -> Result<Vec<FanOutPage>, StoreError>;
    /// Marks the fan-out done with its endpoint count.
    async fn finish_fan_out(
        &self,
        org: &str,
        id: EventId,
        endpoints: u32,
    ) -> Result<(), StoreError>;
    /// Adds an endpoint to an event's recipients outside its fan-out (resend, test).
    async fn add_recipient(&self, event: EventId, endpoint: EndpointId) -> Result<(), StoreError>;
    /// Endpoints added by [`EventStore::add_recipient`].
    async fn extra_recipients(&self, event: EventId) -> Result<Vec<EndpointId>, StoreError>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn get(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
}

/// The first publish under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRecord {
    pub request_hash: String,
    pub event_id: EventId,
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
    /// Claims `key` for `ttl` unless a live claim exists (one younger than its TTL), which
    /// is returned instead.
    async fn claim(
        &self,
        org: &str,
        key: &str,
        record: &PublishRecord,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;
    /// Drops an abandoned claim (its event was never written) so the request can run again.
    async fn release(&self, org: &str, key: &str, event_id: EventId) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret failed authentication")]
    Tampered,
    /// A KMS refusal a retry cannot fix (a wrong key, a denied grant, a bad answer).
    #[error("KMS: {0}")]
    Kms(String),
    /// KMS throttled, timed out or failed on its side: a retry can help (503 to a caller).
    #[error("KMS unavailable: {0}")]
    KmsUnavailable(String),
}

#[async_trait]
pub trait SecretCipher: Send + Sync {
    async fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
    ) -> Result<SealedSecret, CipherError>;
    async fn open(
        &self,
        sealed: &SealedSecret,
        context: &str,
    ) -> Result<SigningSecret, CipherError>;
}

#[derive(Debug, thiserror::Error)]
#[error("operator bus: {message}")]
pub struct BusError {
    pub message: String,
}

/// One notification for the operator (not for the organizations): EventBridge's
/// `DetailType` and `Detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorEvent {
    pub detail_type: String,
    pub detail: serde_json::Value,
}

/// The operator's event bus (`OPERATOR_EVENT_BUS`); off when the setting is empty.
#[async_trait]
pub trait OperatorBus: Send + Sync {
    async fn put(&self, events: &[OperatorEvent]) -> Result<(), BusError>;
}

/// Portal sessions, by id (a token names its session; the store holds only its hash).
#[async_trait]
pub trait PortalSessionStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn create(
        &self,
        s: &crate::domain::portal_session::PortalSessionRecord,
    ) -> Result<(), StoreError>;
    async fn get(
        &self,
        id: crate::domain::ids::PortalSessionId,
    ) -> Result<Option<crate::domain::portal_session::PortalSessionRecord>, StoreError>;
    /// Marks the organization's session revoked at `at` (a revoked one keeps its first
    /// revocation time); returns whether the organization has such a session.
    async fn revoke(
        &self,
        org: &str,
        id: crate::domain::ids::PortalSessionId,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Jobs (replays) and the one-active-replay-per-endpoint slot.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates a queued job and takes its endpoint's slot; `Conflict` if another job of the
    /// endpoint is queued or running (or the id exists).
    async fn create(&self, job: &crate::domain::job::Job) -> Result<(), StoreError>;
    async fn get(
        &self,
        org: &str,
        id: crate::domain::ids::JobId,
    ) -> Result<Option<crate::domain::job::Job>, StoreError>;
    /// Newest first, after `after`; the cursor is `Some` when more may follow.
    async fn list(
        &self,
        org: &str,
        limit: usize,
        after: Option<crate::domain::ids::JobId>,
    ) -> Result<
        (
            Vec<crate::domain::job::Job>,
            Option<crate::domain::ids::JobId>,
        ),
        StoreError,
    >;
    /// Writes `job` (its `version` one above the stored one) if the stored copy is still at
    /// `job.version - 1`; a job leaving queued/running gives its endpoint's slot back in the
    /// same write. `Conflict` otherwise.
    async fn save(&self, job: &crate::domain::job::Job) -> Result<(), StoreError>;
}
