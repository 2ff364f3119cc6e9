//! Deliveries: `EP#{endpoint}#{shard}` / `DLV#{id}`.
//!
//! One endpoint's deliveries are spread over [`DELIVERY_SHARDS`] partitions by their id's
//! random bits, so one endpoint is not capped by one partition's ~1,000 write units/s;
//! lists Query every shard and merge newest first.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, ReturnValuesOnConditionCheckFailure};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::schema::{SWEEP_INDEX, SWEEP_SHARDS};
use super::{Item, Table, from_item, is_own_write, key, s, store_error, to_av, to_item};
use crate::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use crate::domain::ids::{DeliveryId, EndpointId};
use crate::domain::time::{self, Timestamp};
use crate::ports::{DeliveryLog, DeliveryPage, StoreError, SweepEntry};

/// Partitions per endpoint. At one write unit per delivery on the happy path (a delivery
/// item is under 1 KB: no payload) 8 partitions hold 5,000 deliveries/s at ~625 units/s
/// each, under DynamoDB's 1,000 per partition (`make bench-aws` prints the ceiling).
pub const DELIVERY_SHARDS: u128 = 8;

pub(super) fn shard_of(id: DeliveryId) -> u128 {
    id.ulid().random() % DELIVERY_SHARDS
}

pub(super) fn delivery_pk(endpoint: EndpointId, id: DeliveryId) -> String {
    format!("EP#{endpoint}#{}", shard_of(id))
}

fn shard_pk(endpoint: EndpointId, shard: u128) -> String {
    format!("EP#{endpoint}#{shard}")
}

pub(super) fn delivery_sk(id: DeliveryId) -> String {
    format!("DLV#{id}")
}

pub(super) fn delivery_key(endpoint: EndpointId, id: DeliveryId) -> Item {
    key(delivery_pk(endpoint, id), delivery_sk(id))
}

#[derive(Serialize, Deserialize)]
pub(super) struct DeliveryItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    pub(super) delivery: Delivery,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep_pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep_sk: Option<String>,
}

/// The sweep index entry of a pending delivery the sweeper must watch.
fn sweep_keys(d: &Delivery) -> Option<(String, String)> {
    let at = d.sweep_at.filter(|_| d.state == DeliveryState::Pending)?;
    Some(sweep_entry_keys(d.id, at))
}

fn sweep_entry_keys(id: DeliveryId, at: Timestamp) -> (String, String) {
    let shard = id.ulid().random() % SWEEP_SHARDS;
    (
        format!("SWEEP#{shard}"),
        format!("{}#{id}", time::format(&at)),
    )
}

/// The sort-key range of a shard Query from below `after` down to `lowest`; `None` when
/// nothing can be in it (a cursor from before the retention horizon): DynamoDB refuses a
/// BETWEEN whose bounds are reversed (moto answers it with nothing).
fn sk_bounds(after: Option<DeliveryId>, lowest: Option<DeliveryId>) -> Option<(String, String)> {
    let upper = after.map(delivery_sk).unwrap_or_else(|| "DLV#~".into());
    let lower = lowest.map(delivery_sk).unwrap_or_else(|| "DLV#".into());
    (lower <= upper).then_some((lower, upper))
}

impl Table {
    fn delivery_item(&self, d: &Delivery) -> DeliveryItem {
        let sweep = sweep_keys(d);
        DeliveryItem {
            pk: delivery_pk(d.endpoint_id, d.id),
            sk: delivery_sk(d.id),
            delivery: d.clone(),
            // Deliveries expire with their event.
            expires_at: time::after(d.id.created_at(), self.retention).timestamp(),
            sweep_pk: sweep.as_ref().map(|s| s.0.clone()),
            sweep_sk: sweep.map(|s| s.1),
        }
    }

    fn horizon(&self) -> DeliveryId {
        crate::domain::delivery::oldest_kept(self.retention)
    }

    /// One shard, newest first from below `after`, until `want` matching items or its end.
    async fn query_shard(
        &self,
        pk: String,
        want: usize,
        after: Option<DeliveryId>,
        lowest: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut found = Vec::new();
        let Some((lower, upper)) = sk_bounds(after, lowest) else {
            return Ok(found);
        };
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.name)
                .scan_index_forward(false)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":lo", s(lower.clone()))
                .expression_attribute_values(":hi", s(upper.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if want != usize::MAX {
                q = q.limit((want - found.len()).max(if state.is_some() { 100 } else { 1 }) as i32);
            }
            if let Some(st) = state {
                q = q
                    .filter_expression("#state = :state")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":state", s(st.as_str()));
            }
            let page = q.send().await.map_err(store_error)?;
            for item in page.items.unwrap_or_default() {
                let d = from_item::<DeliveryItem>(item)?.delivery;
                // The upper bound is inclusive; the cursor's own delivery was on the last page.
                if after != Some(d.id) {
                    found.push(d);
                }
            }
            start = page.last_evaluated_key;
            if found.len() >= want || start.is_none() {
                return Ok(found);
            }
        }
    }
}

#[async_trait]
impl DeliveryLog for Table {
    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .get_item::<DeliveryItem>(delivery_pk(endpoint, id), delivery_sk(id))
            .await?
            .map(|i| i.delivery)
            .filter(|d| d.id >= self.horizon()))
    }

    async fn get_many(
        &self,
        keys: &[(EndpointId, DeliveryId)],
    ) -> Result<Vec<Delivery>, StoreError> {
        let (mut out, horizon) = (Vec::new(), self.horizon());
        for chunk in keys.chunks(100) {
            let mut ka = KeysAndAttributes::builder().consistent_read(true);
            for (e, d) in chunk {
                ka = ka.keys(delivery_key(*e, *d));
            }
            let ka = ka.build().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let items = self.batch_get(ka).await?;
            for item in items {
                let d = from_item::<DeliveryItem>(item)?.delivery;
                if d.id >= horizon {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn list(
        &self,
        endpoint: EndpointId,
        limit: usize,
        after: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<DeliveryPage, StoreError> {
        // Each shard's newest `limit + 1` below the cursor; merged, the newest `limit + 1`
        // of all shards are among them, so the page is exact.
        let horizon = Some(self.horizon());
        let shards = (0..DELIVERY_SHARDS).map(|shard| {
            self.query_shard(shard_pk(endpoint, shard), limit + 1, after, horizon, state)
        });
        let mut found: Vec<Delivery> = try_join_all(shards).await?.into_iter().flatten().collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        found.truncate(limit + 1);
        Ok(DeliveryPage::from_overfetch(found, limit))
    }

    async fn range(
        &self,
        endpoint: EndpointId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Delivery>, StoreError> {
        let upper = DeliveryId::highest_at(until);
        let lowest = DeliveryId::lowest_at(since).max(self.horizon());
        if lowest > upper {
            return Ok(Vec::new());
        }
        let shards = (0..DELIVERY_SHARDS).map(|shard| async move {
            let mut found = self
                .query_shard(
                    shard_pk(endpoint, shard),
                    usize::MAX,
                    None,
                    Some(lowest),
                    None,
                )
                .await?;
            found.retain(|d| d.id <= upper);
            Ok::<_, StoreError>(found)
        });
        let mut found: Vec<Delivery> = try_join_all(shards).await?.into_iter().flatten().collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        Ok(found)
    }

    async fn save(&self, d: &Delivery, expected: Expected) -> Result<(), StoreError> {
        let item = to_item(&self.delivery_item(d))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // A whole-item put (a delivery item is small and every field may change), guarded
        // by what the writer read: nothing, or the attempt count and state it acted on.
        let put = match expected {
            Expected::New => put.condition_expression("attribute_not_exists(pk)"),
            Expected::Was {
                attempts,
                state,
                lease,
            } => {
                let put = put
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#lease", "lease")
                    .expression_attribute_values(":attempts", to_av(&attempts)?)
                    .expression_attribute_values(":state", s(state.as_str()));
                match lease {
                    None => put.condition_expression(
                        "attempts = :attempts AND #state = :state AND attribute_not_exists(#lease)",
                    ),
                    Some(holder) => put
                        .condition_expression(
                            "attempts = :attempts AND #state = :state AND #lease.holder = :holder",
                        )
                        .expression_attribute_values(":holder", to_av(&holder)?),
                }
            }
        };
        match put.send().await {
            Ok(_) => Ok(()),
            // The stored item is exactly this write: it landed, its answer was lost and the
            // SDK sent it again. Not a conflict (a consumer would drop the delivery's only
            // message, leaving it pending for good).
            Err(e) if is_own_write(&e, &item) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn due_for_sweep(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SweepEntry>, StoreError> {
        #[derive(Deserialize)]
        struct Entry {
            sk: String,
            sweep_sk: String,
            endpoint_id: EndpointId,
            organization_id: String,
            event_id: crate::domain::ids::EventId,
        }
        let mut out = Vec::new();
        for shard in 0..SWEEP_SHARDS {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.name)
                    .index_name(SWEEP_INDEX.name)
                    .key_condition_expression("sweep_pk = :pk AND sweep_sk < :due")
                    .expression_attribute_values(":pk", s(format!("SWEEP#{shard}")))
                    .expression_attribute_values(":due", s(time::format(&due_before)))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(store_error)?;
                for item in page.items.unwrap_or_default() {
                    let e: Entry = from_item(item)?;
                    let delivery_id =
                        e.sk.strip_prefix("DLV#")
                            .and_then(|id| id.parse().ok())
                            .ok_or_else(|| StoreError::Corrupt(format!("sweep entry {}", e.sk)))?;
                    let sweep_at = e
                        .sweep_sk
                        .split('#')
                        .next()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .ok_or_else(|| StoreError::Corrupt(format!("sweep key {}", e.sweep_sk)))?;
                    out.push(SweepEntry {
                        message: DeliveryMessage {
                            delivery_id,
                            endpoint_id: e.endpoint_id,
                            organization_id: e.organization_id,
                            event_id: e.event_id,
                        },
                        sweep_at,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn reschedule_sweep(&self, entry: &SweepEntry, to: Timestamp) -> Result<(), StoreError> {
        let id = entry.message.delivery_id;
        let (_, from_sk) = sweep_entry_keys(id, entry.sweep_at);
        let (_, to_sk) = sweep_entry_keys(id, to);
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(delivery_key(entry.message.endpoint_id, id)))
            .update_expression("SET sweep_sk = :to, sweep_at = :at")
            .condition_expression("sweep_sk = :from")
            .expression_attribute_values(":from", s(from_sk))
            .expression_attribute_values(":to", s(to_sk))
            .expression_attribute_values(":at", s(time::format(&to)))
            .send()
            .await
            .map_err(store_error);
        match res {
            // A consumer moved the delivery on meanwhile: nothing left to reschedule.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_below_the_horizon_queries_nothing() {
        let t = time::now();
        let (old, horizon) = (DeliveryId::lowest_at(t), DeliveryId::highest_at(t));
        assert_eq!(sk_bounds(Some(old), Some(horizon)), None);
        assert_eq!(
            sk_bounds(Some(horizon), Some(old)),
            Some((delivery_sk(old), delivery_sk(horizon)))
        );
        assert_eq!(
            sk_bounds(None, None),
            Some(("DLV#".to_owned(), "DLV#~".to_owned()))
        );
    }
}
