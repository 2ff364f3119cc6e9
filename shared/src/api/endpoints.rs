//! `/webhook-endpoints`: list, create, update, delete, rotate the secret.

use serde_json::json;

use super::error::ApiError;
use super::input::*;
use super::views::EndpointView;
use super::{ApiResponse, Ctx};
use crate::domain::time;
use crate::ports::all_endpoints;
use crate::services::endpoints::{self as service, EndpointChanges};

fn changes(input: EndpointInput) -> Result<(Option<String>, EndpointChanges), ApiError> {
    if let Some(d) = &input.description {
        check_description(d)?;
    }
    if let Some(t) = &input.event_types {
        check_event_types(t)?;
        check_system_subscriptions(t)?;
    }
    Ok((
        input.url.clone(),
        EndpointChanges {
            url: input.url,
            description: input.description,
            event_types: input.event_types,
            is_active: input.is_active,
        },
    ))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let endpoints = all_endpoints(ctx.deps.endpoints.as_ref(), ctx.org).await?;
    let now = time::now();
    let views: Vec<EndpointView> = endpoints
        .iter()
        .map(|e| EndpointView::with_health(e, now).forecast(e, ctx.deps.policy.disable_after))
        .collect();
    Ok(ApiResponse::json(
        200,
        json!({ "webhook_endpoints": views }),
    ))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let input: EndpointInput = json_object(ctx.content_type(), &ctx.req.body, ENDPOINT_FIELDS)?;
    let (url, mut changes) = changes(input)?;
    let url = url.ok_or_else(|| ApiError::BadRequest("missing field `url`".into()))?;
    changes.url = None;
    let (endpoint, secret) = service::create(ctx.deps, ctx.org, url, changes, time::now()).await?;
    Ok(ApiResponse::json(
        201,
        json!({ "webhook_endpoint": EndpointView::of(&endpoint).forecast(&endpoint, ctx.deps.policy.disable_after), "plaintext_secret": secret.to_whsec() }),
    ))
}

pub async fn update(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let id = ctx.endpoint_id()?;
    // 404 before 400: an unknown endpoint is reported as such whatever the body says.
    service::get(ctx.deps, ctx.org, id).await?;
    let input: EndpointInput = json_object(ctx.content_type(), &ctx.req.body, ENDPOINT_FIELDS)?;
    let (_, changes) = changes(input)?;
    let e = service::update(ctx.deps, ctx.org, id, changes).await?;
    Ok(ApiResponse::json(
        200,
        json!({ "webhook_endpoint": EndpointView::of(&e).forecast(&e, ctx.deps.policy.disable_after) }),
    ))
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    service::delete(ctx.deps, ctx.org, ctx.endpoint_id()?).await?;
    Ok(ApiResponse::json(200, json!({ "deleted": true })))
}

pub async fn rotate_secret(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    no_body(&ctx.req.body)?;
    let (e, secret) = service::rotate_secret(ctx.deps, ctx.org, ctx.endpoint_id()?).await?;
    Ok(ApiResponse::json(
        200,
        json!({ "webhook_endpoint": EndpointView::of(&e).forecast(&e, ctx.deps.policy.disable_after), "plaintext_secret": secret.to_whsec() }),
    ))
}
