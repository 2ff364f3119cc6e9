//! The consumer's read: a batch's deliveries and endpoints in one strongly consistent
//! BatchGetItem, its events in an eventually consistent one beside it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::deliveries::{DeliveryItem, delivery_key};
use super::endpoints::{EndpointItem, endpoint_sk};
use super::events::{EventItem, event_key};
use super::{Item, Table, backoff, from_item, key, org_pk, payload, sk_of, store_error};
use crate::domain::delivery::DeliveryMessage;
use crate::domain::time;
use crate::ports::{DeliveryReader, Loaded, StoreError};

#[async_trait]
impl DeliveryReader for Table {
    async fn load(&self, msgs: &[DeliveryMessage]) -> Result<Loaded, StoreError> {
        let mut current = Vec::new();
        let mut events = Vec::new();
        let mut seen = HashSet::new();
        for m in msgs {
            if seen.insert(("d", m.delivery_id.to_string())) {
                current.push(delivery_key(m.endpoint_id, m.delivery_id));
            }
            if seen.insert(("e", m.endpoint_id.to_string())) {
                current.push(key(org_pk(&m.organization_id), endpoint_sk(m.endpoint_id)));
            }
            if seen.insert(("v", m.event_id.to_string())) {
                events.push((m.event_id, event_key(&m.organization_id, m.event_id)));
            }
        }
        // Deliveries and endpoints change (state, attempts, secrets, is_active): read them
        // strongly. What the consumer reads of an event never changes once written, so an
        // eventually consistent read, at half the read units (the payload is most of the
        // bytes), is as good; only a miss (an event written a moment ago) is read again
        // strongly.
        let event_keys: Vec<Key> = events.iter().map(|(_, k)| k.clone()).collect();
        let (current, eventual) = tokio::join!(
            self.read_keys(&current, true),
            self.read_keys(&event_keys, false)
        );
        let mut loaded = Loaded::default();
        self.add(&mut loaded, current?)?;
        self.add(&mut loaded, eventual?)?;
        let missed: Vec<Key> = events
            .into_iter()
            .filter(|(id, _)| !loaded.events.contains_key(id))
            .map(|(_, k)| k)
            .collect();
        if !missed.is_empty() {
            let again = self.read_keys(&missed, true).await?;
            self.add(&mut loaded, again)?;
        }
        Ok(loaded)
    }
}

/// A primary key (pk, sk): the same map as an item.
type Key = Item;

impl Table {
    async fn read_keys(&self, keys: &[Key], consistent: bool) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(100) {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(consistent)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.extend(self.batch_get(ka).await?);
        }
        Ok(items)
    }

    fn add(&self, loaded: &mut Loaded, items: Vec<Item>) -> Result<(), StoreError> {
        let now = time::now();
        let mut kinds = by_prefix(items);
        for item in kinds.remove("DLV").unwrap_or_default() {
            let d = from_item::<DeliveryItem>(item)?.delivery;
            loaded.deliveries.insert(d.id, d);
        }
        for item in kinds.remove("EP").unwrap_or_default() {
            let e = from_item::<EndpointItem>(item)?.endpoint;
            loaded.endpoints.insert(e.id, e);
        }
        for item in kinds.remove("EVT").unwrap_or_default() {
            let e = from_item::<EventItem>(payload::unpack(item)?)?.event;
            // Like `EventStore::get`: an event past retention whose TTL deletion has
            // not happened yet (it lags by days) is gone.
            if time::after(e.id.created_at(), self.retention) > now {
                loaded.events.insert(e.id, e);
            }
        }
        Ok(())
    }
}

impl Table {
    /// One BatchGetItem (≤ 100 keys) with its unprocessed keys retried.
    pub(super) async fn batch_get(&self, keys: KeysAndAttributes) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut pending = Some(keys);
        for attempt in 0.. {
            let Some(keys) = pending.take() else {
                return Ok(found);
            };
            if attempt > 0 {
                backoff(attempt).await?;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.name, keys)
                .send()
                .await
                .map_err(store_error)?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.name))
                    .unwrap_or_default(),
            );
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.name))
                .filter(|k| !k.keys.is_empty());
        }
        Ok(found)
    }
}

/// Splits a BatchGetItem answer by item kind (sort-key prefix).
pub(super) fn by_prefix(items: Vec<Item>) -> HashMap<&'static str, Vec<Item>> {
    let mut out: HashMap<&'static str, Vec<Item>> = HashMap::new();
    for item in items {
        let kind = match sk_of(&item) {
            Some(sk) if sk.starts_with("DLV#") => "DLV",
            Some(sk) if sk.starts_with("EP#") => "EP",
            Some(sk) if sk.starts_with("EVT#") => "EVT",
            _ => "other",
        };
        out.entry(kind).or_default().push(item);
    }
    out
}
