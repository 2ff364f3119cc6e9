//! The HTTP API as plain async functions of (deps, request): the Lambdas, the local server
//! and the tests all call [`handle`]. One file per resource: each handler parses,
//! authorizes, calls a service and maps the result.

mod deliveries;
mod endpoints;
pub mod error;
mod events;
pub mod input;
mod jobs;
mod portal_sessions;
pub mod routes;
mod stats;
pub mod views;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use crate::auth::Principal;
use crate::domain::ids::{DeliveryId, EndpointId, EventId, is_valid_org_id};
use crate::domain::portal_session::PortalAccess;
use crate::services::Deps;

use error::ApiError;
pub use routes::{PathParams, Route, RouteMiss, match_route};

pub struct ApiRequest {
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub body: Bytes,
    pub params: PathParams,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    /// Besides `content-type: application/json`, which every response has.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ApiResponse {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

pub async fn handle(deps: &Deps, route: Route, req: ApiRequest) -> ApiResponse {
    match dispatch(deps, route, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(deps: &Deps, route: Route, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let org = req
        .params
        .get("organization_id")
        .cloned()
        .unwrap_or_default();
    let authorization = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The one route outside an organization: its token says which one.
    if route == Route::GetPortalSession {
        return portal_sessions::current(deps, authorization).await;
    }
    let principal = deps
        .auth
        .authorize(authorization, &org)
        .await
        .map_err(|e| ApiError::from_auth(e, &org))?;
    // The credential matched this org, so it is a real one; the shape check is belt and braces.
    if !is_valid_org_id(&org) {
        return Err(ApiError::NotFound("no such organization".into()));
    }
    // A portal token only within its capabilities; some routes are closed to it entirely.
    let access = route.portal_access();
    if !principal.may(access) {
        return Err(ApiError::ForbiddenAction(match access {
            PortalAccess::Needs(c) => format!(
                "this portal session does not have the {:?} capability",
                c.as_str()
            ),
            PortalAccess::NeedsAny(any) => format!(
                "this portal session has none of the capabilities {:?}",
                any.iter().map(|c| c.as_str()).collect::<Vec<_>>()
            ),
            _ => "a portal session cannot call this route".into(),
        }));
    }
    tracing::debug!(route = ?route, principal = principal.kind(), org = %org, "authorized");
    let ctx = Ctx {
        deps,
        org: &org,
        req: &req,
        principal: &principal,
    };
    route.call(&ctx).await
}

/// What a handler sees: the deps, the organization the credential was checked against,
/// the request and who made it.
pub struct Ctx<'a> {
    pub deps: &'a Deps,
    pub org: &'a str,
    pub req: &'a ApiRequest,
    pub principal: &'a Principal,
}

impl Ctx<'_> {
    pub fn content_type(&self) -> Option<&str> {
        self.req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    fn param<T: std::str::FromStr>(
        &self,
        name: &str,
        missing: fn() -> ApiError,
    ) -> Result<T, ApiError> {
        self.req
            .params
            .get(name)
            .and_then(|s| s.parse().ok())
            .ok_or_else(missing)
    }

    pub fn endpoint_id(&self) -> Result<EndpointId, ApiError> {
        self.param("endpoint_id", || {
            crate::services::ServiceError::endpoint_not_found().into()
        })
    }

    pub fn delivery_id(&self) -> Result<DeliveryId, ApiError> {
        self.param("delivery_id", || {
            crate::services::ServiceError::delivery_not_found().into()
        })
    }

    pub fn event_id(&self) -> Result<EventId, ApiError> {
        self.param("event_id", || {
            crate::services::ServiceError::event_not_found().into()
        })
    }

    pub fn authorization(&self) -> Option<&str> {
        self.req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    pub fn query(&self) -> Vec<(String, String)> {
        input::query_params(self.req.query.as_deref())
    }
}
