//! Events: `ORG#{org}#EVT#{shard}` / `EVT#{id}`, newest first by a Query of every shard,
//! merged; their fan-out pages and extra recipients under `EVT#{id}`.
//!
//! An organization's events spread over [`EVENT_SHARDS`] partitions by their id's random
//! bits. In one partition every write would land at the end of a key range that only grows
//! (ULIDs are ordered by time), which DynamoDB's split-for-heat cannot split: 1,000 write
//! units/s, ~500 1 KB events/s, would be the organization's ceiling. 16 shards hold 5,000 1 KB
//! events/s (2 units each, ~625 units/s per shard).

use async_trait::async_trait;
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Item, Table, from_item, key, n, payload, s, store_error, to_item};
use crate::domain::event::{Event, FanOutPage, FanOutState};
use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time;
use crate::ports::{EventQuery, EventStore, StoreError};

pub const EVENT_SHARDS: u128 = 16;

fn events_pk(org: &str, shard: u128) -> String {
    format!("ORG#{org}#EVT#{shard}")
}

fn shard_of(id: EventId) -> u128 {
    id.ulid().random() % EVENT_SHARDS
}

fn event_sk(id: EventId) -> String {
    format!("EVT#{id}")
}

pub(super) fn event_key(org: &str, id: EventId) -> Item {
    key(events_pk(org, shard_of(id)), event_sk(id))
}

fn recipients_pk(id: EventId) -> String {
    format!("EVT#{id}")
}

#[derive(Serialize, Deserialize)]
pub(super) struct EventItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    pub(super) event: Event,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct PageItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    page: FanOutPage,
    expires_at: i64,
}

impl Table {
    fn expires_at(&self, id: EventId) -> i64 {
        time::after(id.created_at(), self.retention).timestamp()
    }

    /// `count` more of one shard's events, newest first, in the window and below the cursor
    /// (or fewer: the shard ended).
    async fn read_shard(
        &self,
        org: &str,
        w: &Window,
        mut r: ShardRead,
        count: usize,
    ) -> Result<ShardRead, StoreError> {
        let target = r.found.len() + count;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.name)
                .scan_index_forward(false)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .filter_expression(w.filter.join(" AND "))
                .expression_attribute_values(":pk", s(events_pk(org, r.shard)))
                .expression_attribute_values(":lo", s(w.lower.clone()))
                .expression_attribute_values(":hi", s(w.upper.clone()))
                .expression_attribute_values(":now", n(time::now().timestamp()))
                // One more than wanted: the cursor's own event may be the first. A type
                // filter is applied after the read, so read in larger steps.
                .limit(
                    ((target + 1 - r.found.len()) as i32).max(if w.event_type.is_some() {
                        100
                    } else {
                        1
                    }),
                )
                .set_exclusive_start_key(r.next.take());
            if let Some(t) = &w.event_type {
                query = query.expression_attribute_values(":t", s(t.clone()));
            }
            let page = query.send().await.map_err(store_error)?;
            for item in page.items.unwrap_or_default() {
                let e = from_item::<EventItem>(payload::unpack(item)?)?.event;
                if Some(e.id) != w.after {
                    r.found.push(e);
                }
            }
            r.started = true;
            r.next = page.last_evaluated_key;
            if r.found.len() >= target || r.next.is_none() {
                return Ok(r);
            }
        }
    }
}

/// An events page's key range and filter, the same for every shard.
struct Window {
    lower: String,
    upper: String,
    after: Option<EventId>,
    filter: Vec<&'static str>,
    event_type: Option<String>,
}

impl Window {
    fn of(q: &EventQuery) -> Self {
        let mut upper = q
            .until
            .map(EventId::highest_at)
            .map(event_sk)
            .unwrap_or_else(|| "EVT#~".into());
        // The cursor's own event is dropped as it is read (BETWEEN is inclusive).
        if let Some(after) = q.after.map(event_sk) {
            upper = upper.min(after);
        }
        let lower = q
            .since
            .map(EventId::lowest_at)
            .map(event_sk)
            .unwrap_or_else(|| "EVT#".into());
        let mut filter = vec!["expires_at > :now"];
        let event_type = q.event_type.as_deref().map(|t| match t.strip_suffix('*') {
            // Every type outside the system's own, as in subscriptions.
            Some("") => {
                filter.push("NOT begins_with(event_type, :t)");
                crate::domain::event::SYSTEM_PREFIX.to_owned()
            }
            Some(prefix) => {
                filter.push("begins_with(event_type, :t)");
                prefix.to_owned()
            }
            None => {
                filter.push("event_type = :t");
                t.to_owned()
            }
        });
        Self {
            lower,
            upper,
            after: q.after,
            filter,
            event_type,
        }
    }
}

/// Where one shard's part of an events page stands.
struct ShardRead {
    shard: u128,
    found: Vec<Event>,
    started: bool,
    /// Where its Query stopped; `None` once started means the shard has no more.
    next: Option<Item>,
}

impl ShardRead {
    fn new(shard: u128) -> Self {
        Self {
            shard,
            found: Vec::new(),
            started: false,
            next: None,
        }
    }

    /// Whether more of this shard could be among the page's newest (`cutoff`: the page's
    /// oldest so far, once it has enough).
    fn may_hold_more(&self, cutoff: Option<EventId>) -> bool {
        let has_more = !self.started || self.next.is_some();
        let oldest = self.found.last().map(|e| e.id);
        has_more && cutoff.is_none_or(|c| oldest.is_none_or(|o| o > c))
    }
}

#[async_trait]
impl EventStore for Table {
    async fn create(&self, e: &Event) -> Result<(), StoreError> {
        let mut item = to_item(&EventItem {
            pk: events_pk(&e.organization_id, shard_of(e.id)),
            sk: event_sk(e.id),
            event: e.clone(),
            expires_at: self.expires_at(e.id),
        })?;
        payload::pack(&mut item);
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get(&self, org: &str, id: EventId) -> Result<Option<Event>, StoreError> {
        let now = time::now().timestamp();
        let Some(item) = self
            .get_raw(events_pk(org, shard_of(id)), event_sk(id), true)
            .await?
        else {
            return Ok(None);
        };
        let item = from_item::<EventItem>(payload::unpack(item)?)?;
        Ok((item.expires_at > now).then_some(item.event))
    }

    async fn list(
        &self,
        org: &str,
        q: &EventQuery,
    ) -> Result<(Vec<Event>, Option<EventId>), StoreError> {
        let w = Window::of(q);
        // A cursor older than the window's start: nothing, and DynamoDB refuses BETWEEN hi lo.
        if w.upper < w.lower {
            return Ok((Vec::new(), None));
        }
        // The page is the newest `limit + 1` of all shards. Each shard is read a share of
        // that at a time, and read on only while its oldest so far is newer than the page's
        // oldest (the ids are spread evenly over the shards, so one round mostly does):
        // reading `limit + 1` of every shard would read 16 pages for one.
        let want = q.limit + 1;
        let step = want.div_ceil(EVENT_SHARDS as usize) + 2;
        let mut reads: Vec<ShardRead> = (0..EVENT_SHARDS).map(ShardRead::new).collect();
        loop {
            let mut ids: Vec<EventId> = reads
                .iter()
                .flat_map(|r| r.found.iter().map(|e| e.id))
                .collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = ids.get(want - 1).copied();
            let (more, done): (Vec<ShardRead>, Vec<ShardRead>) =
                reads.into_iter().partition(|r| r.may_hold_more(cutoff));
            reads = done;
            if more.is_empty() {
                break;
            }
            let read = more.into_iter().map(|r| self.read_shard(org, &w, r, step));
            reads.extend(try_join_all(read).await?);
        }
        let mut found: Vec<Event> = reads.into_iter().flat_map(|r| r.found).collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.id));
        let more = found.len() > q.limit;
        found.truncate(q.limit);
        let next = if more {
            found.last().map(|e| e.id)
        } else {
            None
        };
        Ok((found, next))
    }

    async fn put_page(&self, page: &FanOutPage) -> Result<(), StoreError> {
        let item = to_item(&PageItem {
            pk: recipients_pk(page.event_id),
            sk: format!("FAN#{:08}", page.page),
            page: page.clone(),
            expires_at: self.expires_at(page.event_id),
        })?;
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn pages(&self, event: EventId) -> Result<Vec<FanOutPage>, StoreError> {
        let items = self.query_all(recipients_pk(event), "FAN#").await?;
        items
            .into_iter()
            .map(|i| from_item::<PageItem>(i).map(|p| p.page))
            .collect()
    }

    async fn finish_fan_out(
        &self,
        org: &str,
        id: EventId,
        endpoints: u32,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(event_key(org, id)))
            .update_expression("SET fan_out = :f")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(
                ":f",
                super::to_av(&crate::domain::event::FanOut {
                    state: FanOutState::Done,
                    endpoints,
                })?,
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn add_recipient(&self, event: EventId, endpoint: EndpointId) -> Result<(), StoreError> {
        let mut item = key(recipients_pk(event), format!("ADD#{endpoint}"));
        item.insert("endpoint_id".into(), s(endpoint.to_string()));
        item.insert("expires_at".into(), n(self.expires_at(event)));
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn extra_recipients(&self, event: EventId) -> Result<Vec<EndpointId>, StoreError> {
        #[derive(Deserialize)]
        struct Added {
            endpoint_id: EndpointId,
        }
        self.query_all(recipients_pk(event), "ADD#")
            .await?
            .into_iter()
            .map(|i| from_item::<Added>(i).map(|a| a.endpoint_id))
            .collect()
    }
}

impl Table {
    /// Every item of a partition under a sort-key prefix, in key order.
    async fn query_all(&self, pk: String, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(store_error)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}
