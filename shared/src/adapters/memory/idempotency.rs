use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::domain::ids::EventId;
use crate::domain::time::{self, Timestamp};
use crate::ports::{Claim, IdempotencyStore, PublishRecord, StoreError};

#[derive(Default)]
pub struct MemoryIdempotency {
    items: Mutex<HashMap<(String, String), (PublishRecord, Timestamp)>>,
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self,
        org: &str,
        key: &str,
        record: &PublishRecord,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = time::now();
        let mut items = lock(&self.items);
        let k = (org.to_owned(), key.to_owned());
        // Like the TTL condition in DynamoDB: an expired claim is as good as none.
        if let Some((existing, _)) = items.get(&k).filter(|(_, expires)| *expires >= now) {
            return Ok(Claim::Existing(existing.clone()));
        }
        items.insert(k, (record.clone(), time::after(now, ttl)));
        Ok(Claim::Claimed)
    }

    async fn release(&self, org: &str, key: &str, event_id: EventId) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let k = (org.to_owned(), key.to_owned());
        if items.get(&k).is_some_and(|(r, _)| r.event_id == event_id) {
            items.remove(&k);
        }
        Ok(())
    }
}
