use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::domain::event::{Event, FanOut, FanOutPage, FanOutState};
use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time;
use crate::ports::{EventQuery, EventStore, StoreError};

pub struct MemoryEvents {
    events: Mutex<BTreeMap<(String, EventId), Event>>,
    pages: Mutex<HashMap<EventId, BTreeMap<u32, FanOutPage>>>,
    added: Mutex<HashMap<EventId, Vec<EndpointId>>>,
    retention: Duration,
}

impl Default for MemoryEvents {
    fn default() -> Self {
        Self::with_retention(crate::adapters::dynamo::DEFAULT_RETENTION)
    }
}

impl MemoryEvents {
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            events: Mutex::default(),
            pages: Mutex::default(),
            added: Mutex::default(),
            retention,
        }
    }

    fn live(&self, e: &Event) -> bool {
        time::after(e.id.created_at(), self.retention) > time::now()
    }
}

fn type_matches(filter: Option<&str>, t: &str) -> bool {
    match filter {
        None => true,
        Some("*") => !t.starts_with(crate::domain::event::SYSTEM_PREFIX),
        Some(f) => match f.strip_suffix('*') {
            Some(prefix) => t.starts_with(prefix),
            None => f == t,
        },
    }
}

#[async_trait]
impl EventStore for MemoryEvents {
    async fn create(&self, e: &Event) -> Result<(), StoreError> {
        let mut events = lock(&self.events);
        let k = (e.organization_id.clone(), e.id);
        if events.contains_key(&k) {
            return Err(StoreError::Conflict);
        }
        events.insert(k, e.clone());
        Ok(())
    }

    async fn get(&self, org: &str, id: EventId) -> Result<Option<Event>, StoreError> {
        Ok(lock(&self.events)
            .get(&(org.to_owned(), id))
            .filter(|e| self.live(e))
            .cloned())
    }

    async fn list(
        &self,
        org: &str,
        q: &EventQuery,
    ) -> Result<(Vec<Event>, Option<EventId>), StoreError> {
        let events = lock(&self.events);
        let mut found: Vec<Event> = events
            .values()
            .rev()
            .filter(|e| e.organization_id == org && self.live(e))
            .filter(|e| q.after.is_none_or(|a| e.id < a))
            .filter(|e| q.since.is_none_or(|t| e.id >= EventId::lowest_at(t)))
            .filter(|e| q.until.is_none_or(|t| e.id <= EventId::highest_at(t)))
            .filter(|e| type_matches(q.event_type.as_deref(), &e.event_type))
            .take(q.limit + 1)
            .cloned()
            .collect();
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
        let mut pages = lock(&self.pages);
        let m = pages.entry(page.event_id).or_default();
        if m.contains_key(&page.page) {
            return Err(StoreError::Conflict);
        }
        m.insert(page.page, page.clone());
        Ok(())
    }

    async fn pages(&self, event: EventId) -> Result<Vec<FanOutPage>, StoreError> {
        Ok(lock(&self.pages)
            .get(&event)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn finish_fan_out(
        &self,
        org: &str,
        id: EventId,
        endpoints: u32,
    ) -> Result<(), StoreError> {
        let mut events = lock(&self.events);
        let e = events
            .get_mut(&(org.to_owned(), id))
            .ok_or(StoreError::Conflict)?;
        e.fan_out = FanOut {
            state: FanOutState::Done,
            endpoints,
        };
        Ok(())
    }

    async fn add_recipient(&self, event: EventId, endpoint: EndpointId) -> Result<(), StoreError> {
        let mut added = lock(&self.added);
        let v = added.entry(event).or_default();
        if !v.contains(&endpoint) {
            v.push(endpoint);
            v.sort();
        }
        Ok(())
    }

    async fn extra_recipients(&self, event: EventId) -> Result<Vec<EndpointId>, StoreError> {
        Ok(lock(&self.added).get(&event).cloned().unwrap_or_default())
    }
}
