//! The consumer's read: a batch's deliveries, endpoints and events in one BatchGetItem.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::deliveries::{DeliveryItem, by_prefix, delivery_key};
use super::endpoints::{EndpointItem, endpoint_sk};
use super::events::{EventItem, event_key};
use super::{Table, from_item, key, org_pk};
use crate::domain::delivery::DeliveryMessage;
use crate::domain::time;
use crate::ports::{DeliveryReader, Loaded, StoreError};

#[async_trait]
impl DeliveryReader for Table {
    async fn load(&self, msgs: &[DeliveryMessage]) -> Result<Loaded, StoreError> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for m in msgs {
            if seen.insert(("d", m.delivery_id.to_string())) {
                keys.push(delivery_key(m.endpoint_id, m.delivery_id));
            }
            if seen.insert(("e", m.endpoint_id.to_string())) {
                keys.push(key(org_pk(&m.organization_id), endpoint_sk(m.endpoint_id)));
            }
            if seen.insert(("v", m.event_id.to_string())) {
                keys.push(event_key(&m.organization_id, m.event_id));
            }
        }
        let mut loaded = Loaded::default();
        let now = time::now();
        for chunk in keys.chunks(100) {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut kinds = by_prefix(self.batch_get(ka).await?);
            for item in kinds.remove("DLV").unwrap_or_default() {
                let d = from_item::<DeliveryItem>(item)?.delivery;
                loaded.deliveries.insert(d.id, d);
            }
            for item in kinds.remove("EP").unwrap_or_default() {
                let e = from_item::<EndpointItem>(item)?.endpoint;
                loaded.endpoints.insert(e.id, e);
            }
            for item in kinds.remove("EVT").unwrap_or_default() {
                let e = from_item::<EventItem>(item)?.event;
                // Like `EventStore::get`: an event past retention whose TTL deletion has
                // not happened yet (it lags by days) is gone.
                if time::after(e.id.created_at(), self.retention) > now {
                    loaded.events.insert(e.id, e);
                }
            }
        }
        Ok(loaded)
    }
}
