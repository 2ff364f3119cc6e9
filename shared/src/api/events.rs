//! `/events`: publish, the events log, one event with its deliveries.

use serde_json::json;

use super::error::ApiError;
use super::input::*;
use super::views::{EventDeliveryView, EventView};
use super::{ApiResponse, Ctx};
use crate::domain::delivery::Delivery;
use crate::domain::event::SYSTEM_PREFIX;
use crate::domain::ids::{DeliveryId, EventId};
use crate::domain::time;
use crate::ports::EventQuery;
use crate::services::ServiceError;
use crate::services::publish::{PublishRequest, publish as publish_service};

const MAX_IDEMPOTENCY_KEY: usize = 255;

pub async fn publish(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let input: PublishInput = json_object(
        ctx.content_type(),
        &ctx.req.body,
        &["event_type", "idempotency_key"],
    )?;
    require_payload(&ctx.req.body)?;
    check_event_type_name(&input.event_type, "event_type", false)?;
    if input.event_type.starts_with(SYSTEM_PREFIX) {
        return Err(ApiError::BadRequest(format!(
            "event types under `{SYSTEM_PREFIX}` are reserved for the system's own events"
        )));
    }
    let payload =
        serde_json::to_string(&input.payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload exceeds {MAX_PAYLOAD_BYTES} bytes serialized"
        )));
    }
    if let Some(k) = &input.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || k.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest(format!(
            "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )));
    }
    let req = PublishRequest {
        event_type: input.event_type,
        payload,
        idempotency_key: input.idempotency_key,
    };
    let published = publish_service(ctx.deps, ctx.org, &req, time::now()).await?;
    Ok(ApiResponse::json(
        202,
        json!({
            "event_id": published.event.id,
            "fan_out": published.event.fan_out,
            "delivery_ids": published.delivery_ids,
        }),
    ))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let mut q = EventQuery {
        limit: 50,
        ..Default::default()
    };
    for (k, v) in ctx.query() {
        match k.as_str() {
            "limit" => q.limit = parse_limit(&v)?,
            "cursor" => q.after = Some(parse_cursor::<EventId>(&v)?),
            "event_type" => {
                check_event_type_name(&v, "event_type", true)?;
                q.event_type = Some(v);
            }
            "since" => q.since = Some(parse_time("since", &v)?),
            "until" => q.until = Some(parse_time("until", &v)?),
            _ => {}
        }
    }
    if let (Some(s), Some(u)) = (q.since, q.until)
        && s >= u
    {
        return Err(ApiError::BadRequest("since must be before until".into()));
    }
    let (events, next) = ctx.deps.events.list(ctx.org, &q).await?;
    let views: Vec<EventView> = events.iter().map(EventView::of).collect();
    Ok(ApiResponse::json(
        200,
        json!({ "events": views, "next_cursor": next.map(cursor_of) }),
    ))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let event = ctx
        .deps
        .events
        .get(ctx.org, ctx.event_id()?)
        .await?
        .ok_or_else(ServiceError::event_not_found)?;
    let endpoints = crate::services::deliveries::recipients(ctx.deps, &event).await?;
    let keys: Vec<_> = endpoints
        .iter()
        .map(|ep| (*ep, DeliveryId::for_event(event.id, *ep)))
        .collect();
    let stored = ctx.deps.deliveries.get_many(&keys).await?;
    let max_attempts = ctx.deps.policy.retry.max_attempts();
    // A recipient with no stored delivery is one whose first attempt has not happened yet.
    let deliveries: Vec<EventDeliveryView> = endpoints
        .iter()
        .map(|ep| {
            let id = DeliveryId::for_event(event.id, *ep);
            match stored.iter().find(|d| d.id == id) {
                Some(d) => EventDeliveryView::of(d),
                None => EventDeliveryView::of(&Delivery::first(&event, *ep, max_attempts)),
            }
        })
        .collect();
    Ok(ApiResponse::json(
        200,
        json!({ "event": EventView::of(&event), "deliveries": deliveries }),
    ))
}
