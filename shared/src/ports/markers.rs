//! The deduplication markers of operational events.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::ids::EventId;
use crate::domain::time::{self, Timestamp};

/// What [`OpsMarkerStore::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// This call claimed the marker: its event is the one to publish.
    Claimed,
    /// A live claim exists, naming the event its holder publishes (`None`: a claim written
    /// before markers named their events). That holder may have died before publishing:
    /// the caller publishes the named event unless it exists, and, the id being the same,
    /// two callers doing so publish one event.
    Held(Option<EventId>),
}

/// How [`OpsMarkerStore::count_in_window`] counted an occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowCount {
    /// This occurrence opened a new window (the one to notify about); `previous` is the
    /// window before it, if its marker was still stored.
    Opened { previous: Option<WindowTally> },
    /// Counted in the window already open, opened at `started_at`, whose notification is
    /// `event` (as [`Marked::Held`]); both `None` when that window closed in between.
    Counted {
        event: Option<EventId>,
        started_at: Option<Timestamp>,
    },
}

/// One closed (or open) counting window of an operational marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTally {
    #[serde(with = "time::rfc3339")]
    pub started_at: Timestamp,
    pub count: u64,
}

/// Deduplication markers of operational events: small conditional items, one per
/// (scope, marker), kept no longer than their TTL, each naming the event it notifies with.
#[async_trait]
pub trait OpsMarkerStore: Send + Sync {
    /// Claims `marker` of `scope` for `ttl`, for the notification `event`, unless a live
    /// claim exists.
    async fn claim(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        ttl: Duration,
        event: EventId,
    ) -> Result<Marked, StoreError>;
    /// Counts one occurrence: in the open window if one younger than `window` exists, else
    /// in a new window opened now, whose notification is `event`.
    async fn count_in_window(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
        event: EventId,
    ) -> Result<WindowCount, StoreError>;
}
