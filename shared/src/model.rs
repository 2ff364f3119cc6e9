//! Domain records as stored, and the views the API serves.

use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::time::{self, Timestamp};

/// A signing secret sealed by a [`crate::secrets::SecretCipher`]; opaque bytes, base64 at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SealedSecret,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
}

/// Outcome counters the consumer keeps on the endpoint; health is derived from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    #[serde(default)]
    pub failure_streak: u32,
    #[serde(default, with = "time::rfc3339::option")]
    pub failing_since: Option<Timestamp>,
    #[serde(default, with = "time::rfc3339::option")]
    pub last_failure_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub organization_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    pub secret: SealedSecret,
    #[serde(default)]
    pub previous_secret: Option<PreviousSecret>,
    #[serde(default)]
    pub stats: DeliveryStats,
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

impl Endpoint {
    /// A new active endpoint receiving every event type, with no description.
    pub fn new(
        id: EndpointId,
        organization_id: &str,
        url: &str,
        secret: SealedSecret,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            organization_id: organization_id.to_owned(),
            url: url.to_owned(),
            description: String::new(),
            event_types: Vec::new(),
            is_active: true,
            created_at: now,
            updated_at: now,
            secret,
            previous_secret: None,
            stats: DeliveryStats::default(),
            disabled_reason: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Failing,
    Disabled,
}

/// The endpoint as the API shows it: the reference's fields, nothing secret.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub id: EndpointId,
    pub organization_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

impl EndpointView {
    pub fn of(e: &Endpoint) -> Self {
        Self {
            id: e.id,
            organization_id: e.organization_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            is_active: e.is_active,
            created_at: e.created_at,
            updated_at: e.updated_at,
            health: None,
        }
    }

    pub fn with_health(e: &Endpoint, now: Timestamp) -> Self {
        Self {
            health: Some(crate::health::health(e, now)),
            ..Self::of(e)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One send, as the attempt log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    #[serde(with = "time::rfc3339")]
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub response_status: Option<u16>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub organization_id: String,
    pub event_id: EventId,
    pub event_type: String,
    /// The event payload exactly as published (JSON text), so the signed body is byte-stable.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(default, with = "time::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, with = "time::rfc3339::option")]
    pub delivered_at: Option<Timestamp>,
    #[serde(default)]
    pub response_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(default)]
    pub attempt_log: Vec<Attempt>,
}

impl Delivery {
    pub fn new_pending(
        endpoint: &Endpoint,
        event_id: EventId,
        event_type: &str,
        payload: &str,
        max_attempts: u32,
        now: Timestamp,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            endpoint_id: endpoint.id,
            organization_id: endpoint.organization_id.clone(),
            event_id,
            event_type: event_type.to_owned(),
            payload: payload.to_owned(),
            state: DeliveryState::Pending,
            attempts: 0,
            max_attempts,
            next_attempt_at: Some(now),
            delivered_at: None,
            response_status: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            attempt_log: Vec::new(),
        }
    }

    /// What SQS carries: the keys to find the delivery, never the payload.
    pub fn message(&self) -> DeliveryMessage {
        DeliveryMessage {
            delivery_id: self.id,
            endpoint_id: self.endpoint_id,
            organization_id: self.organization_id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub organization_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub organization_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub state: DeliveryState,
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(with = "time::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(with = "time::rfc3339::option")]
    pub delivered_at: Option<Timestamp>,
    pub response_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<Attempt>>,
}

impl DeliveryView {
    pub fn of(d: &Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            organization_id: d.organization_id.clone(),
            event_type: d.event_type.clone(),
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
            state: d.state,
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            // Only a pending delivery has a next attempt.
            next_attempt_at: if d.state == DeliveryState::Pending {
                d.next_attempt_at
            } else {
                None
            },
            delivered_at: d.delivered_at,
            response_status: d.response_status,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempt_log: None,
        }
    }

    pub fn detailed(d: &Delivery) -> Self {
        Self {
            attempt_log: Some(d.attempt_log.clone()),
            ..Self::of(d)
        }
    }
}

/// An API key as stored: only its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_hash: String,
    pub organization_id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
}
