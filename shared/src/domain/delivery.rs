//! The delivery record: one event on its way to one endpoint. It references its event and
//! carries no copy of the payload.

use serde::{Deserialize, Serialize};

use crate::domain::event::Event;
use crate::domain::ids::{DeliveryId, EndpointId, EventId};
use crate::domain::time::{self, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// When the sweeper should send this delivery's message: a parked retry's due time, or,
    /// for a delivery whose message was sent outside a consumer (retry, replay, resend),
    /// the moment that message counts as lost. `None` while a message is in flight.
    #[serde(default, with = "time::rfc3339::option")]
    pub sweep_at: Option<Timestamp>,
    /// A poller's claim on the next attempt (`ATTEMPT_LEASE`); `None` unless leases are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A short claim on a delivery's next attempt, taken by a conditional write before the send
/// (`ATTEMPT_LEASE`, off by default): a message SQS hands to two pollers is then sent once,
/// at one more write per attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(with = "time::rfc3339")]
    pub until: Timestamp,
    /// Random, so two pollers' leases are never the same write.
    pub holder: u64,
}

/// The oldest delivery id still kept under `retention`: a delivery expires with its id's
/// time, as its event does. Stores leave older ones out, since TTL deletion lags by days.
pub fn oldest_kept(retention: std::time::Duration) -> DeliveryId {
    DeliveryId::lowest_at(time::before(time::now(), retention))
}

impl Delivery {
    /// The pending delivery of `event` to an endpoint, before its first attempt. Its id is
    /// determined by the pair, so every fan-out of the event names the same delivery.
    pub fn first(event: &Event, endpoint_id: EndpointId, max_attempts: u32) -> Self {
        Self {
            id: DeliveryId::for_event(event.id, endpoint_id),
            endpoint_id,
            organization_id: event.organization_id.clone(),
            event_id: event.id,
            event_type: event.event_type.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            max_attempts,
            next_attempt_at: Some(event.created_at),
            delivered_at: None,
            response_status: None,
            last_error: None,
            created_at: event.created_at,
            updated_at: event.created_at,
            attempt_log: Vec::new(),
            sweep_at: None,
            lease: None,
        }
    }

    /// What SQS carries: the keys to find the delivery and its event, never the payload.
    pub fn message(&self) -> DeliveryMessage {
        DeliveryMessage {
            delivery_id: self.id,
            endpoint_id: self.endpoint_id,
            organization_id: self.organization_id.clone(),
            event_id: self.event_id,
        }
    }

    /// Back to pending for a send now (manual retry, replay, resend). A finished delivery
    /// gets a fresh retry schedule on top of the attempts spent (`max_attempts` becomes
    /// `attempts + schedule_len`; `RetryPolicy::position` picks the waits from the start of
    /// the schedule again); a pending one keeps its remaining budget. `sweep_grace` is how
    /// long its message may take before the sweeper sends another.
    pub fn requeued(
        &self,
        now: Timestamp,
        sweep_grace: std::time::Duration,
        schedule_len: u32,
    ) -> Self {
        let mut d = self.clone();
        d.max_attempts = if d.state.is_terminal() {
            d.attempts + schedule_len.max(1)
        } else {
            d.max_attempts.max(d.attempts + 1)
        };
        d.state = DeliveryState::Pending;
        d.next_attempt_at = Some(now);
        d.updated_at = now;
        d.sweep_at = Some(time::after(now, sweep_grace));
        // A new send now: no earlier poller's claim holds it back.
        d.lease = None;
        d
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub organization_id: String,
    pub event_id: EventId,
}

/// What a conditional delivery write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Nothing: the delivery's first write.
    New,
    /// The stored copy still has this many attempts, this state and this lease holder
    /// (`None`: no lease), as the writer read it.
    Was {
        attempts: u32,
        state: DeliveryState,
        lease: Option<u64>,
    },
}

impl Expected {
    pub fn of(d: &Delivery, stored: bool) -> Self {
        if stored {
            Self::Was {
                attempts: d.attempts,
                state: d.state,
                lease: d.lease.map(|l| l.holder),
            }
        } else {
            Self::New
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeued_gives_a_finished_delivery_a_fresh_budget_and_a_pending_one_its_own() {
        let event = Event::new("org", "invoice.paid", "{}".into(), time::now());
        let d = Delivery::first(&event, EndpointId::new(), 8);
        let now = time::now();
        let grace = std::time::Duration::from_secs(60);
        for state in [DeliveryState::Failed, DeliveryState::Delivered] {
            let spent = Delivery {
                state,
                attempts: 8,
                lease: Some(Lease {
                    until: now + chrono::TimeDelta::seconds(60),
                    holder: 1,
                }),
                ..d.clone()
            };
            let again = spent.requeued(now, grace, 8);
            assert_eq!(
                again.lease, None,
                "a new send, held back by no earlier claim"
            );
            assert_eq!(
                (again.state, again.attempts, again.max_attempts),
                (DeliveryState::Pending, 8, 16)
            );
            assert_eq!(again.next_attempt_at, Some(now));
            assert_eq!(again.sweep_at, Some(time::after(now, grace)));
        }
        let pending = Delivery {
            attempts: 3,
            ..d.clone()
        };
        assert_eq!(pending.requeued(now, grace, 8).max_attempts, 8);
        let last = Delivery { attempts: 8, ..d };
        assert_eq!(last.requeued(now, grace, 8).max_attempts, 9);
    }
}
