//! Recovery routes: `POST /webhook-endpoints/{id}/replay`, `/jobs` (list, get, cancel),
//! `POST /events/{id}/deliveries` (resend) and `POST /webhook-endpoints/{id}/test`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use super::input::*;
use super::views::DeliveryView;
use super::{ApiResponse, Ctx};
use crate::domain::ids::{EndpointId, JobId};
use crate::domain::job::{Job, JobKind, JobState, ReplayParams};
use crate::domain::time::{self, Timestamp};
use crate::services::replay::{self as service, Started};

/// A job as the API shows it (its checkpoint stays inside).
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
    pub organization_id: String,
    pub endpoint_id: EndpointId,
    pub state: JobState,
    pub params: ReplayParams,
    pub matched: u64,
    pub processed: u64,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "time::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

impl JobView {
    pub fn of(j: &Job) -> Self {
        Self {
            id: j.id,
            kind: j.kind,
            organization_id: j.organization_id.clone(),
            endpoint_id: j.endpoint_id,
            state: j.state,
            params: j.params.clone(),
            matched: j.matched,
            processed: j.processed,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
            error: j.error.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayInput {
    since: String,
    until: Option<String>,
    states: Option<Vec<String>>,
    event_types: Option<Vec<String>>,
    dry_run: Option<bool>,
}

impl Ctx<'_> {
    fn job_id(&self) -> Result<JobId, ApiError> {
        self.req
            .params
            .get("job_id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| service::job_not_found().into())
    }
}

pub async fn replay(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let input: ReplayInput = json_object(
        ctx.content_type(),
        &ctx.req.body,
        &["since", "until", "states", "event_types", "dry_run"],
    )?;
    let now = time::now();
    let since = parse_time("since", &input.since)?;
    let until = match &input.until {
        Some(u) => parse_time("until", u)?,
        None => now,
    };
    let mut states = Vec::new();
    for s in input.states.unwrap_or_else(|| vec!["failed".into()]) {
        let st = service::parse_state(&s)?;
        if !states.contains(&st) {
            states.push(st);
        }
    }
    if states.is_empty() {
        return Err(ApiError::BadRequest(
            "states must list at least one of \"failed\" and \"delivered\"".into(),
        ));
    }
    let event_types = input.event_types.unwrap_or_default();
    check_event_types(&event_types)?;
    let params = ReplayParams {
        since,
        until,
        states,
        event_types,
    };
    let endpoint = ctx.endpoint_id()?;
    match service::start(
        ctx.deps,
        ctx.org,
        endpoint,
        params,
        input.dry_run.unwrap_or(false),
        now,
    )
    .await?
    {
        Started::DryRun { matched } => Ok(ApiResponse::json(200, json!({ "matched": matched }))),
        Started::Job(job) => Ok(ApiResponse::json(202, json!({ "job": JobView::of(&job) }))),
    }
}

pub async fn get(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let job = service::get(ctx.deps, ctx.org, ctx.job_id()?).await?;
    Ok(ApiResponse::json(200, json!({ "job": JobView::of(&job) })))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let mut limit = 50usize;
    let mut cursor = None;
    for (k, v) in ctx.query() {
        match k.as_str() {
            "limit" => limit = parse_limit(&v)?,
            "cursor" => cursor = Some(parse_cursor::<JobId>(&v)?),
            _ => {}
        }
    }
    let (jobs, next) = ctx.deps.jobs.list(ctx.org, limit, cursor).await?;
    let views: Vec<JobView> = jobs.iter().map(JobView::of).collect();
    Ok(ApiResponse::json(
        200,
        json!({ "jobs": views, "next_cursor": next.map(cursor_of) }),
    ))
}

pub async fn cancel(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    no_body(&ctx.req.body)?;
    let job = service::cancel(ctx.deps, ctx.org, ctx.job_id()?, time::now()).await?;
    Ok(ApiResponse::json(200, json!({ "job": JobView::of(&job) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendInput {
    endpoint_id: String,
}

pub async fn resend(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let input: ResendInput = json_object(ctx.content_type(), &ctx.req.body, &["endpoint_id"])?;
    let event_id = ctx.event_id()?;
    // Like a malformed id in a path: no such endpoint.
    let endpoint_id: EndpointId = input
        .endpoint_id
        .parse()
        .map_err(|_| ApiError::from(crate::services::ServiceError::endpoint_not_found()))?;
    let (d, event) =
        crate::services::deliveries::resend(ctx.deps, ctx.org, event_id, endpoint_id, time::now())
            .await?;
    Ok(ApiResponse::json(
        202,
        json!({ "delivery": DeliveryView::of(&d, Some(&event)) }),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestInput {
    event_type: Option<String>,
    payload: Option<Value>,
}

pub async fn test(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    // The body is optional: empty means the defaults.
    let input: TestInput = if ctx.req.body.iter().all(u8::is_ascii_whitespace) {
        TestInput::default()
    } else {
        json_object(ctx.content_type(), &ctx.req.body, &["event_type"])?
    };
    if let Some(t) = &input.event_type {
        check_event_type_name(t, "event_type", false)?;
        if t.starts_with(crate::domain::event::SYSTEM_PREFIX)
            && t != crate::services::deliveries::TEST_EVENT_TYPE
        {
            return Err(ApiError::BadRequest(format!(
                "event_type: types under `{}` are reserved for the system; of those only `{}` may be sent as a test",
                crate::domain::event::SYSTEM_PREFIX,
                crate::services::deliveries::TEST_EVENT_TYPE
            )));
        }
    }
    let payload = match &input.payload {
        Some(p) => {
            let s = serde_json::to_string(p).map_err(|e| ApiError::Internal(e.to_string()))?;
            if s.len() > MAX_PAYLOAD_BYTES {
                return Err(ApiError::PayloadTooLarge(format!(
                    "payload exceeds {MAX_PAYLOAD_BYTES} bytes serialized"
                )));
            }
            Some(s)
        }
        None => None,
    };
    let (d, event) = crate::services::deliveries::test_event(
        ctx.deps,
        ctx.org,
        ctx.endpoint_id()?,
        input.event_type.as_deref(),
        payload,
        time::now(),
    )
    .await?;
    Ok(ApiResponse::json(
        202,
        json!({ "delivery": DeliveryView::of(&d, Some(&event)) }),
    ))
}
