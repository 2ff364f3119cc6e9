//! In-memory twins of the ports, for unit tests and benchmarks of our own code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::model::{ApiKeyRecord, Delivery, DeliveryMessage, DeliveryState, Endpoint};
use crate::ports::*;
use crate::time::Timestamp;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not wedge every later test; the data is still consistent per call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub struct MemoryEndpoints {
    items: Mutex<BTreeMap<(String, EndpointId), Endpoint>>,
}

#[async_trait]
impl EndpointStore for MemoryEndpoints {
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let key = (e.organization_id.clone(), e.id);
        if items.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        items.insert(key, e.clone());
        Ok(())
    }

    async fn get(&self, org: &str, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        Ok(lock(&self.items).get(&(org.to_owned(), id)).cloned())
    }

    async fn list(&self, org: &str) -> Result<Vec<Endpoint>, StoreError> {
        Ok(lock(&self.items)
            .values()
            .filter(|e| e.organization_id == org)
            .cloned()
            .collect())
    }

    async fn save_settings(
        &self,
        e: &Endpoint,
        expected_updated_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let stored = items
            .get_mut(&(e.organization_id.clone(), e.id))
            .filter(|s| s.updated_at == expected_updated_at)
            .ok_or(StoreError::Conflict)?;
        let stats = stored.stats.clone();
        *stored = Endpoint { stats, ..e.clone() };
        Ok(())
    }

    async fn delete(&self, org: &str, id: EndpointId) -> Result<bool, StoreError> {
        Ok(lock(&self.items).remove(&(org.to_owned(), id)).is_some())
    }

    async fn record_outcome(
        &self,
        org: &str,
        id: EndpointId,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let Some(e) = items.get_mut(&(org.to_owned(), id)) else {
            return Ok(());
        };
        match outcome {
            Outcome::Failure { at } => {
                e.stats.failure_streak += 1;
                e.stats.last_failure_at = Some(at);
                e.stats.failing_since.get_or_insert(at);
            }
            Outcome::RecoveredAfterFailures => {
                e.stats.failure_streak = 0;
                e.stats.failing_since = None;
            }
            Outcome::Disable { reason, at } => {
                e.is_active = false;
                e.disabled_reason = Some(reason);
                e.updated_at = at;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryDeliveries {
    items: Mutex<HashMap<EndpointId, BTreeMap<DeliveryId, Delivery>>>,
}

#[async_trait]
impl DeliveryLog for MemoryDeliveries {
    async fn insert_many(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        for d in deliveries {
            items
                .entry(d.endpoint_id)
                .or_default()
                .insert(d.id, d.clone());
        }
        Ok(())
    }

    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(lock(&self.items)
            .get(&endpoint)
            .and_then(|m| m.get(&id))
            .cloned())
    }

    async fn list(
        &self,
        endpoint: EndpointId,
        limit: usize,
        after: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<DeliveryPage, StoreError> {
        let items = lock(&self.items);
        let Some(m) = items.get(&endpoint) else {
            return Ok(DeliveryPage::default());
        };
        let page: Vec<Delivery> = m
            .values()
            .rev()
            .filter(|d| after.is_none_or(|a| d.id < a))
            .filter(|d| state.is_none_or(|s| d.state == s))
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(DeliveryPage::from_overfetch(page, limit))
    }

    async fn save_progress(
        &self,
        d: &Delivery,
        expected_attempts: u32,
        expected_state: DeliveryState,
    ) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let stored = items
            .get_mut(&d.endpoint_id)
            .and_then(|m| m.get_mut(&d.id))
            .filter(|s| s.attempts == expected_attempts && s.state == expected_state)
            .ok_or(StoreError::Conflict)?;
        *stored = d.clone();
        Ok(())
    }

    async fn overdue(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<DeliveryMessage>, StoreError> {
        Ok(lock(&self.items)
            .values()
            .flat_map(|m| m.values())
            .filter(|d| {
                d.state == DeliveryState::Pending
                    && d.next_attempt_at.is_some_and(|t| t < due_before)
            })
            .take(limit)
            .map(Delivery::message)
            .collect())
    }
}

/// A [`DeliveryReader`] made of two stores, read one after the other.
pub struct SeparateReads {
    pub endpoints: std::sync::Arc<dyn EndpointStore>,
    pub deliveries: std::sync::Arc<dyn DeliveryLog>,
}

#[async_trait]
impl DeliveryReader for SeparateReads {
    async fn load(
        &self,
        msg: &DeliveryMessage,
    ) -> Result<(Option<Delivery>, Option<Endpoint>), StoreError> {
        Ok((
            self.deliveries
                .get(msg.endpoint_id, msg.delivery_id)
                .await?,
            self.endpoints
                .get(&msg.organization_id, msg.endpoint_id)
                .await?,
        ))
    }
}

#[derive(Default)]
pub struct MemoryApiKeys {
    items: Mutex<HashMap<String, ApiKeyRecord>>,
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn get(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.items).get(key_hash).cloned())
    }

    async fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        lock(&self.items).insert(record.key_hash.clone(), record.clone());
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryIdempotency {
    items: Mutex<HashMap<(String, String), PublishRecord>>,
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self,
        org: &str,
        key: &str,
        record: &PublishRecord,
        _ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut items = lock(&self.items);
        let k = (org.to_owned(), key.to_owned());
        if let Some(existing) = items.get(&k) {
            return Ok(Claim::Existing(existing.clone()));
        }
        items.insert(k, record.clone());
        Ok(Claim::Claimed)
    }

    async fn commit(&self, org: &str, key: &str) -> Result<(), StoreError> {
        if let Some(r) = lock(&self.items).get_mut(&(org.to_owned(), key.to_owned())) {
            r.committed = true;
        }
        Ok(())
    }

    async fn release(&self, org: &str, key: &str, event_id: EventId) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let k = (org.to_owned(), key.to_owned());
        if items
            .get(&k)
            .is_some_and(|r| r.event_id == event_id && !r.committed)
        {
            items.remove(&k);
        }
        Ok(())
    }
}

/// Records what was enqueued and postponed; tests and benchmarks read it back.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<DeliveryMessage>>,
    pub postponed: Mutex<Vec<(String, Duration)>>,
}

impl MemoryQueue {
    pub fn take_sent(&self) -> Vec<DeliveryMessage> {
        std::mem::take(&mut *lock(&self.sent))
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
impl VisibilityControl for MemoryQueue {
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        lock(&self.postponed).push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}
