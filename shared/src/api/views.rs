//! The one place records become what the API shows: the reference's fields, nothing secret.

use serde::Serialize;

use crate::domain::delivery::{Attempt, Delivery, DeliveryState};
use crate::domain::endpoint::Endpoint;
use crate::domain::event::{Event, FanOut};
use crate::domain::health::{self, Health};
use crate::domain::ids::{DeliveryId, EndpointId, EventId};
use crate::domain::time::{self, Timestamp};

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
    /// When the open failure streak began (null when none is open).
    #[serde(with = "time::rfc3339::option")]
    pub failing_since: Option<Timestamp>,
    /// When that streak disables the endpoint if nothing succeeds first.
    #[serde(with = "time::rfc3339::option")]
    pub disable_at: Option<Timestamp>,
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
            failing_since: health::failing_since(e),
            disable_at: health::disable_at(e),
            health: None,
        }
    }

    pub fn with_health(e: &Endpoint, now: Timestamp) -> Self {
        Self {
            health: Some(health::health(e, now)),
            ..Self::of(e)
        }
    }

    /// The forecast on the policy's streak length (`DISABLE_AFTER`) instead of the default.
    pub fn forecast(mut self, e: &Endpoint, disable_after: std::time::Duration) -> Self {
        let after = chrono::TimeDelta::from_std(disable_after).unwrap_or(chrono::TimeDelta::MAX);
        self.disable_at = health::disable_at_after(e, after);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub organization_id: String,
    pub event_id: EventId,
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

/// The payload as published, parsed for display (`null` if its event has expired).
fn payload_of(event: Option<&Event>) -> serde_json::Value {
    event
        .and_then(|e| serde_json::from_str(&e.payload).ok())
        .unwrap_or(serde_json::Value::Null)
}

impl DeliveryView {
    pub fn of(d: &Delivery, event: Option<&Event>) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            organization_id: d.organization_id.clone(),
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            payload: payload_of(event),
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

    pub fn detailed(d: &Delivery, event: Option<&Event>) -> Self {
        Self {
            attempt_log: Some(d.attempt_log.clone()),
            ..Self::of(d, event)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: EventId,
    pub organization_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub idempotency_key: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    pub fan_out: FanOut,
}

impl EventView {
    pub fn of(e: &Event) -> Self {
        Self {
            id: e.id,
            organization_id: e.organization_id.clone(),
            event_type: e.event_type.clone(),
            payload: payload_of(Some(e)),
            idempotency_key: e.idempotency_key.clone(),
            created_at: e.created_at,
            fan_out: e.fan_out.clone(),
        }
    }
}

/// One endpoint's delivery of an event, as the event page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct EventDeliveryView {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub state: DeliveryState,
    pub attempts: u32,
    pub response_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "time::rfc3339::option")]
    pub delivered_at: Option<Timestamp>,
    #[serde(with = "time::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
}

impl EventDeliveryView {
    pub fn of(d: &Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            state: d.state,
            attempts: d.attempts,
            response_status: d.response_status,
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at,
            next_attempt_at: if d.state == DeliveryState::Pending {
                d.next_attempt_at
            } else {
                None
            },
        }
    }
}
