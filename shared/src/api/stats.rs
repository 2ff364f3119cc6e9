//! `GET /webhook-endpoints/{endpoint_id}/stats?since&until&period=hour|day`: the portal's
//! charts, derived from the endpoint's deliveries (see `services::stats` for the read cost).

use serde_json::json;

use super::error::ApiError;
use super::input::parse_time;
use super::{ApiResponse, Ctx};
use crate::domain::time;
use crate::services::stats::{self as service, Period, Window};

pub async fn get(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let (mut since, mut until, mut period) = (None, None, Period::Hour);
    for (k, v) in ctx.query() {
        match k.as_str() {
            "since" => since = Some(parse_time("since", &v)?),
            "until" => until = Some(parse_time("until", &v)?),
            "period" => {
                period = Period::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest(format!("period must be hour or day, not {v:?}"))
                })?;
            }
            _ => {}
        }
    }
    let window = Window::new(since, until, period, time::now(), ctx.deps.policy.retention)?;
    let endpoint = ctx.endpoint_id()?;
    let stats = service::endpoint_stats(ctx.deps, ctx.org, endpoint, &window).await?;
    Ok(ApiResponse::json(200, json!({ "stats": stats })))
}
