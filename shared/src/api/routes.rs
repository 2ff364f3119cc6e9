//! The one route table: the local server dispatches with it, and tests hold template.yaml
//! and openapi.yaml to it.

use std::collections::HashMap;

use http::Method;

use super::error::ApiError;
use super::{ApiResponse, Ctx};
use super::{deliveries, endpoints, events, jobs, portal_sessions, stats};
use crate::domain::portal_session::{Capability, PortalAccess};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    ListEndpoints,
    CreateEndpoint,
    UpdateEndpoint,
    DeleteEndpoint,
    RotateSecret,
    ListDeliveries,
    GetDelivery,
    RetryDelivery,
    PublishEvent,
    ListEvents,
    GetEvent,
    CreatePortalSession,
    DeletePortalSession,
    GetPortalSession,
    GetEndpointStats,
    ReplayEndpoint,
    ListJobs,
    GetJob,
    CancelJob,
    ResendEvent,
    TestEndpoint,
}

const ORG: &str = "/v1/organizations/{organization_id}";

impl Route {
    pub const ALL: [Route; 21] = [
        Route::ListEndpoints,
        Route::CreateEndpoint,
        Route::UpdateEndpoint,
        Route::DeleteEndpoint,
        Route::RotateSecret,
        Route::ListDeliveries,
        Route::GetDelivery,
        Route::RetryDelivery,
        Route::PublishEvent,
        Route::ListEvents,
        Route::GetEvent,
        Route::CreatePortalSession,
        Route::DeletePortalSession,
        Route::GetPortalSession,
        Route::GetEndpointStats,
        Route::ReplayEndpoint,
        Route::ListJobs,
        Route::GetJob,
        Route::CancelJob,
        Route::ResendEvent,
        Route::TestEndpoint,
    ];

    pub fn method(self) -> Method {
        match self {
            Self::ListEndpoints
            | Self::ListDeliveries
            | Self::GetDelivery
            | Self::ListEvents
            | Self::GetEvent
            | Self::GetPortalSession
            | Self::GetEndpointStats
            | Self::ListJobs
            | Self::GetJob => Method::GET,
            Self::CreateEndpoint
            | Self::RotateSecret
            | Self::RetryDelivery
            | Self::PublishEvent
            | Self::CreatePortalSession
            | Self::ReplayEndpoint
            | Self::CancelJob
            | Self::ResendEvent
            | Self::TestEndpoint => Method::POST,
            Self::UpdateEndpoint => Method::PATCH,
            Self::DeleteEndpoint | Self::DeletePortalSession => Method::DELETE,
        }
    }

    /// Which portal sessions may call this route: those with one capability, any (the route
    /// describes the session itself), or none (publishing, minting or revoking credentials).
    /// API keys and dashboard sessions may call every route of their organization. No
    /// wildcard arm: a new route must say what it needs.
    pub fn portal_access(self) -> PortalAccess {
        use Capability::*;
        use PortalAccess::*;
        match self {
            Self::ListEndpoints
            | Self::ListDeliveries
            | Self::GetDelivery
            | Self::ListEvents
            | Self::GetEvent
            | Self::GetEndpointStats
            | Self::ListJobs
            | Self::GetJob => Needs(Read),
            Self::CreateEndpoint
            | Self::UpdateEndpoint
            | Self::DeleteEndpoint
            | Self::RotateSecret
            | Self::TestEndpoint => Needs(ManageEndpoints),
            Self::RetryDelivery | Self::ReplayEndpoint | Self::CancelJob | Self::ResendEvent => {
                Needs(Replay)
            }
            Self::GetPortalSession => OwnSession,
            Self::PublishEvent | Self::CreatePortalSession | Self::DeletePortalSession => Closed,
        }
    }

    /// The route's handler, once the caller is authorized for the organization.
    pub(super) async fn call(self, ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
        match self {
            Self::ListEndpoints => endpoints::list(ctx).await,
            Self::CreateEndpoint => endpoints::create(ctx).await,
            Self::UpdateEndpoint => endpoints::update(ctx).await,
            Self::DeleteEndpoint => endpoints::delete(ctx).await,
            Self::RotateSecret => endpoints::rotate_secret(ctx).await,
            Self::ListDeliveries => deliveries::list(ctx).await,
            Self::GetDelivery => deliveries::get(ctx).await,
            Self::RetryDelivery => deliveries::retry(ctx).await,
            Self::PublishEvent => events::publish(ctx).await,
            Self::ListEvents => events::list(ctx).await,
            Self::GetEvent => events::get(ctx).await,
            Self::CreatePortalSession => portal_sessions::create(ctx).await,
            Self::DeletePortalSession => portal_sessions::delete(ctx).await,
            Self::GetEndpointStats => stats::get(ctx).await,
            Self::ReplayEndpoint => jobs::replay(ctx).await,
            Self::ListJobs => jobs::list(ctx).await,
            Self::GetJob => jobs::get(ctx).await,
            Self::CancelJob => jobs::cancel(ctx).await,
            Self::ResendEvent => jobs::resend(ctx).await,
            Self::TestEndpoint => jobs::test(ctx).await,
            // Outside any organization: `handle` answers it before the organization check.
            Self::GetPortalSession => portal_sessions::current(ctx.deps, ctx.authorization()).await,
        }
    }

    /// The route a function serves, by its name (`CAPY_ROUTE`, `events/<name>.json`).
    pub fn from_function(name: &str) -> Option<Route> {
        Self::ALL.into_iter().find(|r| r.function() == name)
    }

    /// Whether the route puts deliveries on the queue (its function needs the queue URL).
    pub fn enqueues(self) -> bool {
        matches!(
            self,
            Self::RetryDelivery | Self::PublishEvent | Self::ResendEvent | Self::TestEndpoint
        )
    }

    /// The path under the organization, API Gateway style.
    fn suffix(self) -> &'static str {
        match self {
            Self::ListEndpoints | Self::CreateEndpoint => "/webhook-endpoints",
            Self::UpdateEndpoint | Self::DeleteEndpoint => "/webhook-endpoints/{endpoint_id}",
            Self::RotateSecret => "/webhook-endpoints/{endpoint_id}/rotate-secret",
            Self::ListDeliveries => "/webhook-endpoints/{endpoint_id}/deliveries",
            Self::GetDelivery => "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}",
            Self::RetryDelivery => {
                "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"
            }
            Self::PublishEvent | Self::ListEvents => "/events",
            Self::GetEvent => "/events/{event_id}",
            Self::CreatePortalSession => "/portal-sessions",
            Self::DeletePortalSession => "/portal-sessions/{session_id}",
            Self::GetEndpointStats => "/webhook-endpoints/{endpoint_id}/stats",
            Self::ReplayEndpoint => "/webhook-endpoints/{endpoint_id}/replay",
            Self::TestEndpoint => "/webhook-endpoints/{endpoint_id}/test",
            Self::ListJobs => "/jobs",
            Self::GetJob => "/jobs/{job_id}",
            Self::CancelJob => "/jobs/{job_id}/cancel",
            Self::ResendEvent => "/events/{event_id}/deliveries",
            // Not under an organization: see `path`.
            Self::GetPortalSession => "",
        }
    }

    pub fn path(self) -> String {
        match self {
            // The portal page asks which organization and capabilities its token has.
            Self::GetPortalSession => "/v1/portal-session".into(),
            _ => format!("{ORG}{}", self.suffix()),
        }
    }

    /// The name of the function serving this route: the template sets it as `CAPY_ROUTE` of
    /// the one `api` binary; its fixture is `events/<name>.json`.
    pub fn function(self) -> &'static str {
        match self {
            Self::ListEndpoints => "list-endpoints",
            Self::CreateEndpoint => "create-endpoint",
            Self::UpdateEndpoint => "update-endpoint",
            Self::DeleteEndpoint => "delete-endpoint",
            Self::RotateSecret => "rotate-secret",
            Self::ListDeliveries => "list-deliveries",
            Self::GetDelivery => "get-delivery",
            Self::RetryDelivery => "retry-delivery",
            Self::PublishEvent => "publish-event",
            Self::ListEvents => "list-events",
            Self::GetEvent => "get-event",
            Self::CreatePortalSession => "create-portal-session",
            Self::DeletePortalSession => "delete-portal-session",
            Self::GetPortalSession => "get-portal-session",
            Self::GetEndpointStats => "get-endpoint-stats",
            Self::ReplayEndpoint => "replay-endpoint",
            Self::ListJobs => "list-jobs",
            Self::GetJob => "get-job",
            Self::CancelJob => "cancel-job",
            Self::ResendEvent => "resend-event",
            Self::TestEndpoint => "test-endpoint",
        }
    }

    /// What the route answers when it succeeds (the handler fixtures and `openapi.yaml` are
    /// held to it). A replay's dry run answers 200 instead of 202. No wildcard arm.
    pub fn success_status(self) -> u16 {
        match self {
            Self::CreateEndpoint | Self::CreatePortalSession => 201,
            // The work is queued, not done.
            Self::RetryDelivery
            | Self::PublishEvent
            | Self::ReplayEndpoint
            | Self::ResendEvent
            | Self::TestEndpoint => 202,
            Self::ListEndpoints
            | Self::UpdateEndpoint
            | Self::DeleteEndpoint
            | Self::RotateSecret
            | Self::ListDeliveries
            | Self::GetDelivery
            | Self::ListEvents
            | Self::GetEvent
            | Self::DeletePortalSession
            | Self::GetPortalSession
            | Self::GetEndpointStats
            | Self::ListJobs
            | Self::GetJob
            | Self::CancelJob => 200,
        }
    }
}

pub type PathParams = HashMap<String, String>;

#[derive(Debug, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    MethodNotAllowed,
}

fn match_template(template: &str, path: &str) -> Option<PathParams> {
    let mut params = PathParams::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                params.insert(
                    ts.trim_matches(|c| c == '{' || c == '}').to_owned(),
                    ps.to_owned(),
                );
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Finds the route for a request path (raw, still percent-encoded, so `%2F` stays one segment).
pub fn match_route(method: &Method, path: &str) -> Result<(Route, PathParams), RouteMiss> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut path_matched = false;
    for route in Route::ALL {
        if let Some(params) = match_template(&route.path(), path) {
            if route.method() == *method {
                return Ok((route, params));
            }
            path_matched = true;
        }
    }
    Err(if path_matched {
        RouteMiss::MethodNotAllowed
    } else {
        RouteMiss::NotFound
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_route_and_only_its_method() {
        let (r, p) = match_route(
            &Method::POST,
            "/v1/organizations/org_1/webhook-endpoints/ep_X/deliveries/dlv_Y/retry",
        )
        .expect("route");
        assert_eq!(r, Route::RetryDelivery);
        assert_eq!(p["organization_id"], "org_1");
        assert_eq!(p["delivery_id"], "dlv_Y");
        assert_eq!(
            match_route(&Method::GET, "/v1/organizations/o/webhook-endpoints/").map(|r| r.0),
            Ok(Route::ListEndpoints)
        );
        assert_eq!(
            match_route(&Method::PUT, "/v1/organizations/o/webhook-endpoints"),
            Err(RouteMiss::MethodNotAllowed)
        );
        assert_eq!(
            match_route(&Method::GET, "/v1/organizations//webhook-endpoints"),
            Err(RouteMiss::NotFound)
        );
        assert_eq!(
            match_route(&Method::GET, "/v1/organizations/o/webhook-endpoints/a/b"),
            Err(RouteMiss::NotFound)
        );
        for r in Route::ALL {
            let concrete = r.path().replace(['{', '}'], "");
            assert_eq!(match_route(&r.method(), &concrete).map(|m| m.0), Ok(r));
        }
    }

    #[test]
    fn a_read_only_portal_session_can_write_nothing() {
        for r in Route::ALL {
            if r.method() != Method::GET {
                assert_ne!(
                    r.portal_access(),
                    PortalAccess::Needs(Capability::Read),
                    "{r:?} writes"
                );
            }
        }
        assert_eq!(
            match_route(&Method::GET, "/v1/portal-session").map(|m| m.0),
            Ok(Route::GetPortalSession)
        );
    }
}
