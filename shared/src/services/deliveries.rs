//! Sending a delivery again: a manual retry, and an event sent to one endpoint on request
//! (resend, test events). The message goes out from here, outside a consumer, so the
//! delivery is first written with a `sweep_at`: if the message is lost, the sweeper sends
//! another.

use super::{Deps, ServiceError};
use crate::domain::delivery::{Delivery, Expected};
use crate::domain::endpoint::Endpoint;
use crate::domain::event::{Event, FanOut, FanOutState};
use crate::domain::ids::{DeliveryId, EndpointId, EventId};
use crate::domain::time::Timestamp;
use crate::ports::{EventQuery, StoreError};

fn concurrent() -> ServiceError {
    ServiceError::Conflict("the delivery changed while this request ran; retry it".into())
}

/// The endpoints an event goes to: its inline targets or its fan-out pages, and any added
/// since (resend, test events).
pub async fn recipients(deps: &Deps, event: &Event) -> Result<Vec<EndpointId>, StoreError> {
    let mut endpoints = event.targets.clone();
    if endpoints.is_empty() {
        for page in deps.events.pages(event.id).await? {
            endpoints.extend(page.endpoints);
        }
    }
    for extra in deps.events.extra_recipients(event.id).await? {
        if !endpoints.contains(&extra) {
            endpoints.push(extra);
        }
    }
    Ok(endpoints)
}

/// One delivery of the organization's endpoint. A delivery's item is written by its first
/// attempt, so one still waiting for it is rebuilt from its event: publish answered with its
/// id, and the event view lists it, so it must not be a 404 in between.
pub async fn find(
    deps: &Deps,
    org: &str,
    endpoint_id: EndpointId,
    id: DeliveryId,
) -> Result<Option<Delivery>, StoreError> {
    if let Some(d) = deps.deliveries.get(endpoint_id, id).await? {
        return Ok(Some(d).filter(|d| d.organization_id == org));
    }
    // The id's time part is its event's: the events of that millisecond are the candidates.
    let Some(at) = chrono::DateTime::from_timestamp_millis(id.ulid().timestamp_ms() as i64) else {
        return Ok(None);
    };
    let mut q = EventQuery {
        limit: 250,
        since: Some(at),
        until: Some(at),
        ..Default::default()
    };
    let event = loop {
        let (events, next) = deps.events.list(org, &q).await?;
        if let Some(e) = events
            .into_iter()
            .find(|e| DeliveryId::for_event(e.id, endpoint_id) == id)
        {
            break e;
        }
        match next {
            Some(n) => q.after = Some(n),
            None => return Ok(None),
        }
    };
    Ok(recipients(deps, &event)
        .await?
        .contains(&endpoint_id)
        .then(|| Delivery::first(&event, endpoint_id, deps.policy.retry.max_attempts())))
}

/// An active endpoint of the organization, or why not.
pub async fn active_endpoint(
    deps: &Deps,
    org: &str,
    id: EndpointId,
) -> Result<Endpoint, ServiceError> {
    let endpoint = deps
        .endpoints
        .get(org, id)
        .await?
        .ok_or_else(ServiceError::endpoint_not_found)?;
    if !endpoint.is_active {
        return Err(ServiceError::Invalid(
            "the endpoint is disabled; re-enable it (is_active: true) first".into(),
        ));
    }
    Ok(endpoint)
}

/// Puts `before` back to pending (one more attempt on top of those spent) and sends it.
pub async fn requeue(
    deps: &Deps,
    before: &Delivery,
    now: Timestamp,
) -> Result<Delivery, ServiceError> {
    let d = before.requeued(
        now,
        deps.policy.sweep_grace,
        deps.policy.retry.max_attempts(),
    );
    match deps.deliveries.save(&d, Expected::of(before, true)).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(concurrent()),
        Err(e) => return Err(e.into()),
    }
    deps.queue.enqueue(&[d.message()]).await?;
    Ok(d)
}

/// A manual retry of one delivery of an active endpoint.
pub async fn retry(
    deps: &Deps,
    org: &str,
    endpoint_id: EndpointId,
    delivery_id: DeliveryId,
    now: Timestamp,
) -> Result<Delivery, ServiceError> {
    let endpoint = deps
        .endpoints
        .get(org, endpoint_id)
        .await?
        .ok_or_else(ServiceError::endpoint_not_found)?;
    let before = deps
        .deliveries
        .get(endpoint.id, delivery_id)
        .await?
        .filter(|d| d.organization_id == org)
        .ok_or_else(ServiceError::delivery_not_found)?;
    if !endpoint.is_active {
        return Err(ServiceError::Invalid(
            "the endpoint is disabled; re-enable it (is_active: true) before retrying".into(),
        ));
    }
    requeue(deps, &before, now).await
}

/// Sends `event` to `endpoint` whatever its subscriptions: retries the delivery the pair
/// already has (same id), or creates it.
pub async fn send_to(
    deps: &Deps,
    event: &Event,
    endpoint: &Endpoint,
    now: Timestamp,
) -> Result<Delivery, ServiceError> {
    let id = DeliveryId::for_event(event.id, endpoint.id);
    if let Some(before) = deps.deliveries.get(endpoint.id, id).await? {
        return requeue(deps, &before, now).await;
    }
    let mut d = Delivery::first(event, endpoint.id, deps.policy.retry.max_attempts());
    d.next_attempt_at = Some(now);
    d.updated_at = now;
    d.sweep_at = Some(crate::domain::time::after(now, deps.policy.sweep_grace));
    deps.events.add_recipient(event.id, endpoint.id).await?;
    match deps.deliveries.save(&d, Expected::New).await {
        Ok(()) => {}
        // Its first attempt was recorded meanwhile (a fan-out message got there first).
        Err(StoreError::Conflict) => {
            let before = deps
                .deliveries
                .get(endpoint.id, id)
                .await?
                .ok_or_else(concurrent)?;
            return requeue(deps, &before, now).await;
        }
        Err(e) => return Err(e.into()),
    }
    deps.queue.enqueue(&[d.message()]).await?;
    Ok(d)
}

/// Sends an existing event to one active endpoint of the organization, whatever its
/// subscriptions: the pair's delivery is retried (same id), or created.
pub async fn resend(
    deps: &Deps,
    org: &str,
    event_id: EventId,
    endpoint_id: EndpointId,
    now: Timestamp,
) -> Result<(Delivery, Event), ServiceError> {
    let event = deps
        .events
        .get(org, event_id)
        .await?
        .ok_or_else(ServiceError::event_not_found)?;
    if event.subject_endpoint == Some(endpoint_id) {
        return Err(ServiceError::Invalid(format!(
            "{} is about endpoint {endpoint_id}: an operational event never goes to the \
             endpoint it is about",
            event.id
        )));
    }
    let endpoint = active_endpoint(deps, org, endpoint_id).await?;
    let d = send_to(deps, &event, &endpoint, now).await?;
    Ok((d, event))
}

/// The default test event.
pub const TEST_EVENT_TYPE: &str = "capy.ping";
pub const TEST_PAYLOAD: &str = r#"{"success":true}"#;

/// A test event to one active endpoint: recorded in the events log, fanned out to that
/// endpoint only, signed and sent like every delivery.
pub async fn test_event(
    deps: &Deps,
    org: &str,
    endpoint_id: EndpointId,
    event_type: Option<&str>,
    payload: Option<String>,
    now: Timestamp,
) -> Result<(Delivery, Event), ServiceError> {
    let endpoint = active_endpoint(deps, org, endpoint_id).await?;
    let mut event = Event::new(
        org,
        event_type.unwrap_or(TEST_EVENT_TYPE),
        payload.unwrap_or_else(|| TEST_PAYLOAD.into()),
        now,
    );
    event.targets = vec![endpoint.id];
    event.fan_out = FanOut {
        state: FanOutState::Done,
        endpoints: 1,
    };
    deps.events.create(&event).await?;
    let d = send_to(deps, &event, &endpoint, now).await?;
    Ok((d, event))
}
