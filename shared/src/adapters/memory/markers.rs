use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::domain::ids::EventId;
use crate::domain::time::{self, Timestamp};
use crate::ports::{Marked, OpsMarkerStore, StoreError, WindowCount, WindowTally};

enum Marker {
    Claim {
        expires_at: Timestamp,
        event: EventId,
    },
    Window {
        tally: WindowTally,
        event: EventId,
    },
}

/// The twin of the DynamoDB markers: claims that expire, windows that count, each naming
/// its event.
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
        event: EventId,
    ) -> Result<Marked, StoreError> {
        let mut items = lock(&self.items);
        let k = (scope.to_owned(), marker.to_owned());
        if let Some(Marker::Claim {
            expires_at,
            event: held,
        }) = items.get(&k)
            && expires_at.timestamp() >= now.timestamp()
        {
            return Ok(if *held == event {
                Marked::Claimed
            } else {
                Marked::Held(Some(*held))
            });
        }
        items.insert(
            k,
            Marker::Claim {
                expires_at: time::after(now, ttl),
                event,
            },
        );
        Ok(Marked::Claimed)
    }

    async fn count_in_window(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
        event: EventId,
    ) -> Result<WindowCount, StoreError> {
        let mut items = lock(&self.items);
        let k = (scope.to_owned(), marker.to_owned());
        let previous = match items.get_mut(&k) {
            Some(Marker::Window { tally, event: held })
                if time::after(tally.started_at, window) > now =>
            {
                tally.count += 1;
                return Ok(WindowCount::Counted {
                    event: Some(*held),
                    started_at: Some(tally.started_at),
                });
            }
            Some(Marker::Window { tally, .. }) => Some(tally.clone()),
            _ => None,
        };
        items.insert(
            k,
            Marker::Window {
                tally: WindowTally {
                    started_at: now,
                    count: 1,
                },
                event,
            },
        );
        Ok(WindowCount::Opened { previous })
    }
}
