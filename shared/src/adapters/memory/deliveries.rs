use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{MemoryEndpoints, MemoryEvents, lock};
use crate::domain::delivery::{Delivery, DeliveryState, Expected};
use crate::domain::ids::{DeliveryId, EndpointId};
use crate::domain::time::Timestamp;
use crate::ports::{
    DeliveryLog, DeliveryPage, DeliveryReader, EndpointStore, EventStore, Loaded, StoreError,
    SweepEntry,
};

pub struct MemoryDeliveries {
    items: Mutex<HashMap<EndpointId, BTreeMap<DeliveryId, Delivery>>>,
    retention: Duration,
}

impl Default for MemoryDeliveries {
    fn default() -> Self {
        Self::with_retention(crate::adapters::dynamo::DEFAULT_RETENTION)
    }
}

impl MemoryDeliveries {
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            items: Mutex::default(),
            retention,
        }
    }

    fn horizon(&self) -> DeliveryId {
        crate::domain::delivery::oldest_kept(self.retention)
    }

    pub fn all(&self) -> Vec<Delivery> {
        lock(&self.items)
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveries {
    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(lock(&self.items)
            .get(&endpoint)
            .and_then(|m| m.get(&id))
            .filter(|d| d.id >= self.horizon())
            .cloned())
    }

    async fn get_many(
        &self,
        keys: &[(EndpointId, DeliveryId)],
    ) -> Result<Vec<Delivery>, StoreError> {
        let (items, horizon) = (lock(&self.items), self.horizon());
        Ok(keys
            .iter()
            .filter_map(|(e, d)| items.get(e).and_then(|m| m.get(d)).cloned())
            .filter(|d| d.id >= horizon)
            .collect())
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
            .range(self.horizon()..)
            .map(|(_, d)| d)
            .rev()
            .filter(|d| after.is_none_or(|a| d.id < a))
            .filter(|d| state.is_none_or(|s| d.state == s))
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(DeliveryPage::from_overfetch(page, limit))
    }

    async fn range(
        &self,
        endpoint: EndpointId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Delivery>, StoreError> {
        let lo = DeliveryId::lowest_at(since).max(self.horizon());
        let hi = DeliveryId::highest_at(until);
        if lo > hi {
            return Ok(Vec::new());
        }
        Ok(lock(&self.items)
            .get(&endpoint)
            .map(|m| m.range(lo..=hi).rev().map(|(_, d)| d.clone()).collect())
            .unwrap_or_default())
    }

    async fn save(&self, d: &Delivery, expected: Expected) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let m = items.entry(d.endpoint_id).or_default();
        let ok = match (expected, m.get(&d.id)) {
            (Expected::New, None) => true,
            (
                Expected::Was {
                    attempts,
                    state,
                    lease,
                },
                Some(s),
            ) => s.attempts == attempts && s.state == state && s.lease.map(|l| l.holder) == lease,
            _ => false,
        };
        if !ok {
            return match m.get(&d.id) {
                Some(stored) if stored == d => Ok(()),
                _ => Err(StoreError::Conflict),
            };
        }
        m.insert(d.id, d.clone());
        Ok(())
    }

    async fn due_for_sweep(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SweepEntry>, StoreError> {
        Ok(lock(&self.items)
            .values()
            .flat_map(|m| m.values())
            .filter(|d| d.state == DeliveryState::Pending)
            .filter_map(|d| {
                d.sweep_at.filter(|t| *t < due_before).map(|t| SweepEntry {
                    message: d.message(),
                    sweep_at: t,
                })
            })
            .take(limit)
            .collect())
    }

    async fn reschedule_sweep(&self, entry: &SweepEntry, to: Timestamp) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        if let Some(d) = items
            .get_mut(&entry.message.endpoint_id)
            .and_then(|m| m.get_mut(&entry.message.delivery_id))
            .filter(|d| d.sweep_at == Some(entry.sweep_at) && d.state == DeliveryState::Pending)
        {
            d.sweep_at = Some(to);
        }
        Ok(())
    }
}

/// A [`DeliveryReader`] made of the twins, read one after the other.
pub struct SeparateReads {
    pub endpoints: Arc<MemoryEndpoints>,
    pub deliveries: Arc<MemoryDeliveries>,
    pub events: Arc<MemoryEvents>,
}

#[async_trait]
impl DeliveryReader for SeparateReads {
    async fn load(
        &self,
        msgs: &[crate::domain::delivery::DeliveryMessage],
    ) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        for m in msgs {
            if let Some(d) = self.deliveries.get(m.endpoint_id, m.delivery_id).await? {
                loaded.deliveries.insert(d.id, d);
            }
            if let Some(e) = self
                .endpoints
                .get(&m.organization_id, m.endpoint_id)
                .await?
            {
                loaded.endpoints.insert(e.id, e);
            }
            if let Some(e) = self.events.get(&m.organization_id, m.event_id).await? {
                loaded.events.insert(e.id, e);
            }
        }
        Ok(loaded)
    }
}
