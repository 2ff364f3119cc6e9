//! `/webhook-endpoints/{endpoint_id}/deliveries`: list, get one, retry.

use std::collections::HashMap;

use serde_json::json;

use super::error::ApiError;
use super::input::*;
use super::views::DeliveryView;
use super::{ApiResponse, Ctx};
use crate::domain::delivery::{Delivery, DeliveryState};
use crate::domain::event::Event;
use crate::domain::ids::{DeliveryId, EventId};
use crate::domain::time;
use crate::services::{ServiceError, deliveries as service, endpoints};

/// The events of a page of deliveries, read once each (their payloads are shown).
pub(super) async fn events_of(
    ctx: &Ctx<'_>,
    deliveries: &[Delivery],
) -> Result<HashMap<EventId, Event>, ApiError> {
    let mut ids: Vec<EventId> = deliveries.iter().map(|d| d.event_id).collect();
    ids.sort();
    ids.dedup();
    let found =
        futures::future::try_join_all(ids.iter().map(|id| ctx.deps.events.get(ctx.org, *id)))
            .await?;
    Ok(found.into_iter().flatten().map(|e| (e.id, e)).collect())
}

pub async fn list(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let mut limit = 50usize;
    let mut cursor = None;
    let mut state = None;
    for (k, v) in ctx.query() {
        match k.as_str() {
            "limit" => limit = parse_limit(&v)?,
            "cursor" => cursor = Some(parse_cursor::<DeliveryId>(&v)?),
            "state" => {
                state = Some(DeliveryState::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "state must be pending, delivered or failed, not {v:?}"
                    ))
                })?);
            }
            _ => {}
        }
    }
    let endpoint = endpoints::get(ctx.deps, ctx.org, ctx.endpoint_id()?).await?;
    let page = ctx
        .deps
        .deliveries
        .list(endpoint.id, limit, cursor, state)
        .await?;
    let events = events_of(ctx, &page.deliveries).await?;
    let views: Vec<DeliveryView> = page
        .deliveries
        .iter()
        .map(|d| DeliveryView::of(d, events.get(&d.event_id)))
        .collect();
    Ok(ApiResponse::json(
        200,
        json!({ "deliveries": views, "next_cursor": page.next_after.map(cursor_of) }),
    ))
}

pub async fn get(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let endpoint = endpoints::get(ctx.deps, ctx.org, ctx.endpoint_id()?).await?;
    let d = service::find(ctx.deps, ctx.org, endpoint.id, ctx.delivery_id()?)
        .await?
        .ok_or_else(ServiceError::delivery_not_found)?;
    let event = ctx.deps.events.get(ctx.org, d.event_id).await?;
    Ok(ApiResponse::json(
        200,
        json!({ "delivery": DeliveryView::detailed(&d, event.as_ref()) }),
    ))
}

pub async fn retry(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    no_body(&ctx.req.body)?;
    let d = service::retry(
        ctx.deps,
        ctx.org,
        ctx.endpoint_id()?,
        ctx.delivery_id()?,
        time::now(),
    )
    .await?;
    let event = ctx.deps.events.get(ctx.org, d.event_id).await?;
    Ok(ApiResponse::json(
        202,
        json!({ "delivery": DeliveryView::of(&d, event.as_ref()) }),
    ))
}
