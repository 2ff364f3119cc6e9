//! The event record: published once, its payload stored once, fanned out to the
//! organization's matching endpoints.

use serde::{Deserialize, Serialize};

use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time::{self, Timestamp};

/// Event types under this prefix are the system's own (operational events, test pings).
pub const SYSTEM_PREFIX: &str = "capy.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FanOutState {
    Pending,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    pub state: FanOutState,
    /// Endpoints the event was sent to (so far, while pending).
    pub endpoints: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub organization_id: String,
    pub event_type: String,
    /// The payload exactly as published (JSON text), so every signed body is byte-stable.
    pub payload: String,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    pub fan_out: FanOut,
    /// The endpoints of a fan-out done inside the publish request (small fan-outs); larger
    /// ones record theirs in [`FanOutPage`]s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<EndpointId>,
    /// The endpoint an event is about (operational events): it never receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_endpoint: Option<EndpointId>,
}

impl Event {
    pub fn new(organization_id: &str, event_type: &str, payload: String, now: Timestamp) -> Self {
        Self {
            id: EventId::new(),
            organization_id: organization_id.to_owned(),
            event_type: event_type.to_owned(),
            payload,
            idempotency_key: None,
            created_at: now,
            fan_out: FanOut {
                state: FanOutState::Pending,
                endpoints: 0,
            },
            targets: Vec::new(),
            subject_endpoint: None,
        }
    }

    pub fn is_system(&self) -> bool {
        self.event_type.starts_with(SYSTEM_PREFIX)
    }

    /// `{"id","type","timestamp","data"}` with the payload spliced in byte for byte.
    pub fn webhook_body(&self) -> String {
        format!(
            r#"{{"id":{},"type":{},"timestamp":{},"data":{}}}"#,
            serde_json::Value::String(self.id.to_string()),
            serde_json::Value::String(self.event_type.clone()),
            serde_json::Value::String(time::format(&self.created_at)),
            self.payload
        )
    }
}

/// One checkpointed page of a fan-out: the endpoints it sent the event to, and where the
/// next page starts. Written before its messages are sent, so a fan-out that dies resumes
/// from its last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOutPage {
    pub event_id: EventId,
    pub page: u32,
    pub endpoints: Vec<EndpointId>,
    /// The last endpoint this page looked at; the next page starts after it.
    #[serde(default)]
    pub cursor: Option<EndpointId>,
    pub last: bool,
    /// Endpoints sent to by this page and every page before it.
    pub total: u32,
}

/// Queue message asking the fan-out consumer to fan an event out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOutMessage {
    pub event_id: EventId,
    pub organization_id: String,
    /// Set when a worker handed over at its time budget: every page up to this one was
    /// written and sent, so the next worker need not send the last page again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_through: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_splices_the_payload_byte_for_byte() {
        let e = Event::new(
            "o",
            "t\"x",
            r#"{"big":12345678901234567890,"f":1.50}"#.into(),
            time::now(),
        );
        let body = e.webhook_body();
        assert!(
            body.ends_with(r#""data":{"big":12345678901234567890,"f":1.50}}"#),
            "{body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["type"], "t\"x");
        assert_eq!(v["id"], e.id.to_string());
    }
}
