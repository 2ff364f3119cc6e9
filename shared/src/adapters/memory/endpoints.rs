use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::ids::EndpointId;
use crate::domain::time::Timestamp;
use crate::ports::{EndpointStore, StoreError};

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

    async fn page(
        &self,
        org: &str,
        after: Option<EndpointId>,
        limit: usize,
    ) -> Result<(Vec<Endpoint>, Option<EndpointId>), StoreError> {
        let items = lock(&self.items);
        let mut found: Vec<Endpoint> = items
            .values()
            .filter(|e| e.organization_id == org && after.is_none_or(|a| e.id > a))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more {
            found.last().map(|e| e.id)
        } else {
            None
        };
        Ok((found, next))
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
        // Exactly the fields the DynamoDB adapter's SET lists.
        stored.url = e.url.clone();
        stored.description = e.description.clone();
        stored.event_types = e.event_types.clone();
        stored.is_active = e.is_active;
        stored.updated_at = e.updated_at;
        stored.secret = e.secret.clone();
        stored.previous_secret = e.previous_secret.clone();
        stored.disabled_reason = e.disabled_reason.clone();
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
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut items = lock(&self.items);
        let Some(e) = items.get_mut(&(org.to_owned(), id)) else {
            return Ok(None);
        };
        let before = e.clone();
        match outcome {
            Outcome::Failures {
                count,
                first_at,
                last_at,
            } => {
                e.stats.failure_streak += count;
                e.stats.last_failure_at = Some(last_at);
                e.stats.failing_since.get_or_insert(first_at);
            }
            Outcome::RecoveredAfterFailures => {
                e.stats.failure_streak = 0;
                e.stats.failing_since = None;
                e.stats.failing_announced = false;
                e.stats.disable_scheduled_for = None;
                e.stats.disable_deferred_to = None;
            }
            // As DynamoDB's condition: not that streak, nothing recorded.
            Outcome::FailingAnnounced { since } if e.stats.failing_since != Some(since) => {
                return Ok(None);
            }
            Outcome::FailingAnnounced { .. } => e.stats.failing_announced = true,
            Outcome::DisableScheduledAnnounced { since, .. }
                if e.stats.failing_since != Some(since) =>
            {
                return Ok(None);
            }
            Outcome::DisableScheduledAnnounced {
                clock, deferred_to, ..
            } => {
                e.stats.disable_scheduled_for = Some(clock);
                e.stats.disable_deferred_to = deferred_to;
            }
            // As DynamoDB's condition: already inactive, and not by this very write.
            Outcome::Disable { reason, at }
                if !(e.is_active
                    || (e.updated_at == at && e.disabled_reason.as_deref() == Some(&reason))) =>
            {
                return Ok(None);
            }
            Outcome::Disable { reason, at } => {
                e.is_active = false;
                e.disabled_reason = Some(reason);
                e.updated_at = at;
                e.stats.disabled_at = Some(at);
            }
        }
        Ok(Some(before))
    }
}
