//! Publishing an event: constant work inside the request whatever the fan-out.
//!
//! The request claims the idempotency key, reads one page of the organization's endpoints,
//! sends the work to a queue and writes the event: at most 4 AWS calls (5 when an abandoned
//! claim is released). A fan-out of up to [`INLINE_FAN_OUT`] endpoints, when the first page
//! holds every endpoint of the organization, is done right here (the deliveries' messages
//! go straight to the delivery queue); anything larger goes to the fan-out consumer. An
//! organization this process saw with more than a page of endpoints skips the read for
//! [`large_orgs::LARGE_ORG_HINT`]: its publishes go to the consumer without it (3 calls).
//!
//! Messages are sent *before* the event is written: a crash in between leaves messages whose
//! event never appears (their consumers drop them after [`ORPHAN_AFTER`]), never an event
//! whose messages were lost. The caller got no 202 and publishes again.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Deps, ServiceError};
use crate::domain::delivery::Delivery;
use crate::domain::event::{Event, FanOut, FanOutMessage, FanOutState};
use crate::domain::ids::{DeliveryId, EndpointId};
use crate::domain::subscription::subscribed;
use crate::domain::time::Timestamp;
use crate::ports::{Claim, PublishRecord, StoreError};

/// The largest fan-out done inside the publish request (one SendMessageBatch).
pub const INLINE_FAN_OUT: usize = 10;
/// Endpoints the request reads to decide: one Query page.
const INLINE_SCAN: usize = 50;
/// Claims older than this whose event was never written are taken to be abandoned.
const ABANDONED_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// A message whose event has not appeared after this long belongs to a publish that died.
pub const ORPHAN_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub struct PublishRequest {
    pub event_type: String,
    /// JSON text, already validated.
    pub payload: String,
    pub idempotency_key: Option<String>,
}

pub struct Published {
    pub event: Event,
    /// The deliveries of an inline fan-out; empty when the fan-out consumer does it.
    pub delivery_ids: Vec<DeliveryId>,
}

fn request_hash(r: &PublishRequest) -> String {
    hex::encode(Sha256::digest(format!("{}\n{}", r.event_type, r.payload)))
}

pub async fn publish(
    deps: &Deps,
    org: &str,
    req: &PublishRequest,
    now: Timestamp,
) -> Result<Published, ServiceError> {
    let mut event = Event::new(org, &req.event_type, req.payload.clone(), now);
    event.idempotency_key = req.idempotency_key.clone();
    if let Some(key) = &req.idempotency_key {
        let record = PublishRecord {
            request_hash: request_hash(req),
            event_id: event.id,
            created_at: now,
        };
        match deps
            .idempotency
            .claim(org, key, &record, IDEMPOTENCY_TTL)
            .await?
        {
            Claim::Claimed => {}
            Claim::Existing(first) if first.request_hash != record.request_hash => {
                return Err(ServiceError::Conflict(
                    "idempotency_key was already used for a different event".into(),
                ));
            }
            Claim::Existing(first) => {
                if let Some(e) = deps.events.get(org, first.event_id).await? {
                    return Ok(Published {
                        delivery_ids: e
                            .targets
                            .iter()
                            .map(|ep| DeliveryId::for_event(e.id, *ep))
                            .collect(),
                        event: e,
                    });
                }
                if now - first.created_at <= ABANDONED_CLAIM {
                    return Err(ServiceError::Conflict(
                        "a request with this idempotency_key is still in progress".into(),
                    ));
                }
                // The first request died before writing its event, so its caller never got
                // a 202: drop its claim and run this one afresh.
                deps.idempotency.release(org, key, first.event_id).await?;
                return Box::pin(publish(deps, org, req, now)).await;
            }
        }
    }
    publish_event(deps, event).await
}

/// The endpoints an inline fan-out sends to, or `None` when the fan-out consumer must do it.
async fn inline_targets(
    deps: &Deps,
    event: &Event,
) -> Result<Option<Vec<EndpointId>>, ServiceError> {
    let org = &event.organization_id;
    if deps.large_orgs.is_large(org, event.created_at) {
        return Ok(None);
    }
    let (first_page, more) = deps.endpoints.page(org, None, INLINE_SCAN).await?;
    if more.is_some() {
        deps.large_orgs.saw_large(org, event.created_at);
        return Ok(None);
    }
    let targets: Vec<_> = first_page
        .iter()
        .filter(|e| {
            e.is_active
                && subscribed(&e.event_types, &event.event_type)
                && Some(e.id) != event.subject_endpoint
        })
        .map(|e| e.id)
        .collect();
    Ok((targets.len() <= INLINE_FAN_OUT).then_some(targets))
}

/// Fans out and records an event already validated (operational events and test pings come
/// through here too, without an idempotency key).
pub async fn publish_event(deps: &Deps, mut event: Event) -> Result<Published, ServiceError> {
    let mut delivery_ids = Vec::new();
    if let Some(targets) = inline_targets(deps, &event).await? {
        let max_attempts = deps.policy.retry.max_attempts();
        let messages: Vec<_> = targets
            .iter()
            .map(|ep| Delivery::first(&event, *ep, max_attempts).message())
            .collect();
        delivery_ids = messages.iter().map(|m| m.delivery_id).collect();
        deps.queue.enqueue(&messages).await?;
        event.fan_out = FanOut {
            state: FanOutState::Done,
            endpoints: targets.len() as u32,
        };
        event.targets = targets;
    } else {
        deps.fan_out_queue
            .request_fan_out(&FanOutMessage {
                event_id: event.id,
                organization_id: event.organization_id.clone(),
                sent_through: None,
            })
            .await?;
    }
    match deps.events.create(&event).await {
        // Our own write (an SDK retry of a put whose answer was lost), or, for an operational
        // event, another raiser's of the same id: the consumers read the stored one.
        Ok(()) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    if event.fan_out.state == FanOutState::Done {
        deps.metrics.fan_out(
            "publish-event",
            "inline",
            event.fan_out.endpoints,
            crate::metrics::Ids {
                organization_id: Some(event.organization_id.clone()),
                event_id: Some(event.id.to_string()),
                ..Default::default()
            },
        );
    }
    tracing::info!(
        event_id = %event.id,
        organization_id = %event.organization_id,
        event_type = %event.event_type,
        inline_deliveries = delivery_ids.len(),
        "event published"
    );
    Ok(Published {
        event,
        delivery_ids,
    })
}

pub mod large_orgs;

#[cfg(test)]
mod tests;
