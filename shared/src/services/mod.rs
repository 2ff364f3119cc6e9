//! The use cases, as plain async functions over the ports: the API handlers, the consumers
//! and the jobs all call these, never the stores' details.

pub mod deliveries;
pub mod endpoints;
pub mod fan_out;
pub mod operational;
pub mod publish;
pub mod replay;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::domain::retry::RetryPolicy;
use crate::ports::*;
use crate::ssrf::DestinationPolicy;

/// The rules' settings every use case may read.
#[derive(Debug, Clone)]
pub struct Policy {
    pub destinations: DestinationPolicy,
    pub rotation_grace: Duration,
    pub retry: RetryPolicy,
    pub retention: Duration,
    pub park_after: Duration,
    pub sweep_grace: Duration,
    pub fan_out_page_size: usize,
    /// How long a poller's claim on an attempt lasts (`ATTEMPT_LEASE`); `None`: no lease.
    pub attempt_lease: Option<Duration>,
    /// How long a failure streak lasts before it disables the endpoint (`DISABLE_AFTER`,
    /// default [`crate::domain::health::DISABLE_AFTER`]).
    pub disable_after: Duration,
    /// How long before `disable_at` the `capy.endpoint.disable_scheduled` event goes out
    /// (`DISABLE_WARNING_LEAD`, default 24 h).
    pub disable_warning_lead: Duration,
    /// Where portal URLs point (`PORTAL_BASE_URL`); `None`: the request's own origin.
    pub portal_base_url: Option<String>,
}

/// Every port, built once by [`crate::wiring`]; each use case touches only its part.
pub struct Deps {
    pub auth: Authenticator,
    pub endpoints: Arc<dyn EndpointStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub events: Arc<dyn EventStore>,
    pub reader: Arc<dyn DeliveryReader>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub portal_sessions: Arc<dyn PortalSessionStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub visibility: Arc<dyn VisibilityControl>,
    pub fan_out_queue: Arc<dyn FanOutQueue>,
    pub fan_out_visibility: Arc<dyn VisibilityControl>,
    pub jobs: Arc<dyn JobStore>,
    pub jobs_queue: Arc<dyn JobQueue>,
    pub jobs_visibility: Arc<dyn VisibilityControl>,
    pub cipher: Arc<dyn SecretCipher>,
    /// Where deliveries are sent: the HTTP sender, behind the destination transport trait.
    pub sender: Arc<dyn crate::dispatch::Transport>,
    /// Deduplication markers of operational events.
    pub markers: Arc<dyn OpsMarkerStore>,
    /// The operator's EventBridge bus (`OPERATOR_EVENT_BUS`), or nothing.
    pub operator_bus: Arc<dyn OperatorBus>,
    /// EMF metrics on stdout (or captured, or off).
    pub metrics: crate::metrics::Metrics,
    /// Organizations seen with more endpoints than a publish fans out inline.
    pub large_orgs: publish::large_orgs::LargeOrgs,
    pub policy: Policy,
}

/// What a use case can fail with; `api::error` maps it to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

impl ServiceError {
    pub fn endpoint_not_found() -> Self {
        Self::NotFound("no such webhook endpoint in this organization".into())
    }

    pub fn delivery_not_found() -> Self {
        Self::NotFound("no such delivery for this webhook endpoint".into())
    }

    pub fn event_not_found() -> Self {
        Self::NotFound("no such event in this organization".into())
    }

    /// Whether the same call may succeed later (throttling, a timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Queue(e) => e.retryable,
            _ => false,
        }
    }
}
