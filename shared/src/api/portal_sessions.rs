//! `/portal-sessions`: mint and revoke portal sessions; `GET /v1/portal-session`: the session
//! a portal token belongs to (how the portal page learns its organization and capabilities).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::input::*;
use super::{ApiResponse, Ctx};
use crate::auth::{PortalPrincipal, Principal, mint_portal_session};
use crate::domain::ids::PortalSessionId;
use crate::domain::portal_session::{
    self, Capability, DEFAULT_EXPIRES_IN_SECS, MAX_EXPIRES_IN_SECS, MIN_EXPIRES_IN_SECS,
};
use crate::domain::time;
use crate::services::Deps;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionInput {
    expires_in: Option<u64>,
    capabilities: Option<Vec<String>>,
}

fn view(p: &PortalPrincipal) -> Value {
    json!({
        "id": p.session_id,
        "organization_id": p.organization_id,
        "capabilities": p.capabilities,
        "created_at": time::format(&p.created_at),
        "expires_at": time::format(&p.expires_at),
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such portal session in this organization".into())
}

/// The origin the portal URL points at: `PORTAL_BASE_URL`, else the one this request came
/// in on (`Host`, and `X-Forwarded-Proto` as API Gateway sets it; plain http without it).
fn portal_base(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    if let Some(base) = &ctx.deps.policy.portal_base_url {
        return Ok(base.clone());
    }
    let header = |name: &str| {
        ctx.req
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let host = header("host")
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::BadRequest(
                "no usable Host header to build the portal URL from (or set PORTAL_BASE_URL)"
                    .into(),
            )
        })?;
    let proto = match header("x-forwarded-proto")
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{proto}://{host}"))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let input = if ctx.req.body.iter().all(u8::is_ascii_whitespace) {
        SessionInput {
            expires_in: None,
            capabilities: None,
        }
    } else {
        json_object(
            ctx.content_type(),
            &ctx.req.body,
            &["expires_in", "capabilities"],
        )?
    };
    let expires_in = input.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    if !(MIN_EXPIRES_IN_SECS..=MAX_EXPIRES_IN_SECS).contains(&expires_in) {
        return Err(ApiError::BadRequest(format!(
            "expires_in must be {MIN_EXPIRES_IN_SECS} to {MAX_EXPIRES_IN_SECS} seconds, not {expires_in}"
        )));
    }
    let capabilities = match &input.capabilities {
        Some(names) => portal_session::normalize(names).map_err(ApiError::BadRequest)?,
        None => Capability::ALL.to_vec(),
    };
    let base = portal_base(ctx)?;
    let minted = mint_portal_session(
        ctx.org,
        capabilities,
        Duration::from_secs(expires_in),
        time::now(),
    );
    ctx.deps.portal_sessions.create(&minted.record).await?;
    let r = &minted.record;
    let session = PortalPrincipal {
        session_id: r.id,
        organization_id: r.organization_id.clone(),
        capabilities: r.capabilities.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
    };
    // The token rides in the fragment: browsers never send it to a server, so no access
    // log holds it; the page moves it to session storage and clears the address bar.
    Ok(ApiResponse::json(
        201,
        json!({
            "portal_session": view(&session),
            "token": minted.token,
            "url": format!("{base}/portal/#token={}", minted.token),
        }),
    )
    .with_header("cache-control", "no-store"))
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    let id: PortalSessionId = ctx.param("session_id", not_found)?;
    if !ctx
        .deps
        .portal_sessions
        .revoke(ctx.org, id, time::now())
        .await?
    {
        return Err(not_found());
    }
    Ok(ApiResponse::json(200, json!({ "deleted": true })))
}

/// `GET /v1/portal-session`: only a live portal token gets an answer.
pub async fn current(deps: &Deps, authorization: Option<&str>) -> Result<ApiResponse, ApiError> {
    match deps.auth.authenticate(authorization).await {
        Ok(Principal::Portal(p)) => Ok(ApiResponse::json(
            200,
            json!({ "portal_session": view(&p) }),
        )),
        Ok(_) => Err(ApiError::Unauthorized(
            "this route takes a portal session token".into(),
        )),
        Err(e) => Err(ApiError::from_auth(e, "")),
    }
}
