use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::domain::time::{self, Timestamp};
use crate::ports::{OpsMarkerStore, StoreError, WindowCount, WindowTally};

enum Marker {
    Claim { expires_at: Timestamp },
    Window(WindowTally),
}

/// The twin of the DynamoDB markers: claims that expire, windows that count.
#[derive(Default)]
pub struct MemoryMarkers {
    items: Mutex<HashMap<(String, String), Marker>>,
}

#[async_trait]
impl OpsMarkerStore for MemoryMarkers {
    async fn claim(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut items = lock(&self.items);
        let k = (scope.to_owned(), marker.to_owned());
        if let Some(Marker::Claim { expires_at }) = items.get(&k)
            && expires_at.timestamp() >= now.timestamp()
        {
            return Ok(false);
        }
        items.insert(
            k,
            Marker::Claim {
                expires_at: time::after(now, ttl),
            },
        );
        Ok(true)
    }

    async fn count_in_window(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
    ) -> Result<WindowCount, StoreError> {
        let mut items = lock(&self.items);
        let k = (scope.to_owned(), marker.to_owned());
        let previous = match items.get_mut(&k) {
            Some(Marker::Window(w)) if time::after(w.started_at, window) > now => {
                w.count += 1;
                return Ok(WindowCount::Counted);
            }
            Some(Marker::Window(w)) => Some(w.clone()),
            _ => None,
        };
        items.insert(
            k,
            Marker::Window(WindowTally {
                started_at: now,
                count: 1,
            }),
        );
        Ok(WindowCount::Opened { previous })
    }
}
