//! In-memory twins of the ports, for unit tests and benchmarks of our own code. The
//! conformance suite (`tests/tests/conformance.rs`) runs the same cases on these and on
//! the DynamoDB adapters.

mod api_keys;
mod deliveries;
mod endpoints;
mod events;
mod idempotency;
mod jobs;
mod markers;
mod portal_sessions;
mod queue;

use std::sync::{Mutex, MutexGuard};

pub use api_keys::MemoryApiKeys;
pub use deliveries::{MemoryDeliveries, SeparateReads};
pub use endpoints::MemoryEndpoints;
pub use events::MemoryEvents;
pub use idempotency::MemoryIdempotency;
pub use jobs::MemoryJobs;
pub use markers::MemoryMarkers;
pub use portal_sessions::MemoryPortalSessions;
pub use queue::MemoryQueue;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge every later test; the data is still consistent per call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every twin, sharing nothing with any other instance.
#[derive(Default)]
pub struct MemoryStores {
    pub endpoints: std::sync::Arc<MemoryEndpoints>,
    pub deliveries: std::sync::Arc<MemoryDeliveries>,
    pub events: std::sync::Arc<MemoryEvents>,
    pub keys: std::sync::Arc<MemoryApiKeys>,
    pub idempotency: std::sync::Arc<MemoryIdempotency>,
    pub jobs: std::sync::Arc<MemoryJobs>,
    pub portal_sessions: std::sync::Arc<MemoryPortalSessions>,
    pub queue: std::sync::Arc<MemoryQueue>,
    pub markers: std::sync::Arc<MemoryMarkers>,
}
