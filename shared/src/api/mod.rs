//! The HTTP API as plain async functions of (deps, request): the Lambdas, the local server
//! and the tests all call [`handle`].

pub mod error;
pub mod input;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Authenticator;
use crate::ids::{DeliveryId, EndpointId, EventId, is_valid_org_id};
use crate::model::{Delivery, DeliveryState, DeliveryView, Endpoint, EndpointView, PreviousSecret};
use crate::ports::*;
use crate::retry::RetryPolicy;
use crate::secrets::SecretCipher;
use crate::signing::SigningSecret;
use crate::ssrf::DestinationPolicy;
use crate::time;

use error::ApiError;
use input::*;
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
    pub body: Value,
}

impl ApiResponse {
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, body }
    }
}

pub struct ApiSettings {
    pub destinations: DestinationPolicy,
    pub rotation_grace: Duration,
    pub retry: RetryPolicy,
}

/// Everything a route may touch; each route uses only its part.
pub struct ApiDeps {
    pub auth: Authenticator,
    pub endpoints: Arc<dyn EndpointStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub cipher: Arc<dyn SecretCipher>,
    pub settings: ApiSettings,
}

/// Publish claims older than this that never committed are taken to be abandoned.
const ABANDONED_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub async fn handle(deps: &ApiDeps, route: Route, req: ApiRequest) -> ApiResponse {
    match dispatch(deps, route, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(deps: &ApiDeps, route: Route, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let org = req
        .params
        .get("organization_id")
        .cloned()
        .unwrap_or_default();
    let authorization = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = deps
        .auth
        .authorize(authorization, &org)
        .await
        .map_err(|e| ApiError::from_auth(e, &org))?;
    // The credential matched this org, so it is a real one; the shape check is belt and braces.
    if !is_valid_org_id(&org) {
        return Err(ApiError::NotFound("no such organization".into()));
    }
    tracing::debug!(route = ?route, principal = principal.kind(), org = %org, "authorized");
    let ctx = Ctx {
        deps,
        org: &org,
        req: &req,
    };
    match route {
        Route::ListEndpoints => ctx.list_endpoints().await,
        Route::CreateEndpoint => ctx.create_endpoint().await,
        Route::UpdateEndpoint => ctx.update_endpoint().await,
        Route::DeleteEndpoint => ctx.delete_endpoint().await,
        Route::RotateSecret => ctx.rotate_secret().await,
        Route::ListDeliveries => ctx.list_deliveries().await,
        Route::GetDelivery => ctx.get_delivery().await,
        Route::RetryDelivery => ctx.retry_delivery().await,
        Route::PublishEvent => ctx.publish().await,
    }
}

struct Ctx<'a> {
    deps: &'a ApiDeps,
    org: &'a str,
    req: &'a ApiRequest,
}

fn endpoint_not_found() -> ApiError {
    ApiError::NotFound("no such webhook endpoint in this organization".into())
}

fn delivery_not_found() -> ApiError {
    ApiError::NotFound("no such delivery for this webhook endpoint".into())
}

impl Ctx<'_> {
    fn content_type(&self) -> Option<&str> {
        self.req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    fn endpoint_id(&self) -> Result<EndpointId, ApiError> {
        self.req
            .params
            .get("endpoint_id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(endpoint_not_found)
    }

    fn delivery_id(&self) -> Result<DeliveryId, ApiError> {
        self.req
            .params
            .get("delivery_id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(delivery_not_found)
    }

    async fn endpoint(&self) -> Result<Endpoint, ApiError> {
        let id = self.endpoint_id()?;
        self.deps
            .endpoints
            .get(self.org, id)
            .await?
            .ok_or_else(endpoint_not_found)
    }

    async fn delivery(&self) -> Result<(Endpoint, Delivery), ApiError> {
        let endpoint = self.endpoint().await?;
        let id = self.delivery_id()?;
        let d = self
            .deps
            .deliveries
            .get(endpoint.id, id)
            .await?
            .filter(|d| d.organization_id == self.org);
        Ok((endpoint, d.ok_or_else(delivery_not_found)?))
    }

    async fn check_url(&self, url: &str) -> Result<String, ApiError> {
        self.deps
            .settings
            .destinations
            .check_endpoint_url(url)
            .await
            // Stored as the owner wrote it; the parsed form only proves it is valid.
            .map(|_| url.to_owned())
            .map_err(ApiError::BadRequest)
    }

    async fn list_endpoints(&self) -> Result<ApiResponse, ApiError> {
        let mut endpoints = self.deps.endpoints.list(self.org).await?;
        endpoints.sort_by_key(|e| e.id);
        let now = time::now();
        let views: Vec<EndpointView> = endpoints
            .iter()
            .map(|e| EndpointView::with_health(e, now))
            .collect();
        Ok(ApiResponse::json(
            200,
            json!({ "webhook_endpoints": views }),
        ))
    }

    async fn create_endpoint(&self) -> Result<ApiResponse, ApiError> {
        let input: EndpointInput =
            json_object(self.content_type(), &self.req.body, ENDPOINT_FIELDS)?;
        let url = input
            .url
            .ok_or_else(|| ApiError::BadRequest("missing field `url`".into()))?;
        let url = self.check_url(&url).await?;
        let description = input.description.unwrap_or_default();
        check_description(&description)?;
        let event_types = input.event_types.unwrap_or_default();
        check_event_types(&event_types)?;
        let now = time::now();
        let id = EndpointId::new();
        let secret = SigningSecret::generate();
        let sealed = self.deps.cipher.seal(&secret, &id.to_string()).await?;
        let endpoint = Endpoint {
            description,
            event_types,
            is_active: input.is_active.unwrap_or(true),
            ..Endpoint::new(id, self.org, &url, sealed, now)
        };
        self.deps.endpoints.create(&endpoint).await?;
        Ok(ApiResponse::json(
            201,
            json!({ "webhook_endpoint": EndpointView::of(&endpoint), "plaintext_secret": secret.to_whsec() }),
        ))
    }

    /// Writes a changed endpoint; `updated_at` always moves forward.
    async fn save(&self, mut endpoint: Endpoint, before: &Endpoint) -> Result<Endpoint, ApiError> {
        let now = time::now();
        endpoint.updated_at = if now > before.updated_at {
            now
        } else {
            before.updated_at + chrono::TimeDelta::milliseconds(1)
        };
        match self
            .deps
            .endpoints
            .save_settings(&endpoint, before.updated_at)
            .await
        {
            Ok(()) => Ok(endpoint),
            Err(StoreError::Conflict) => {
                match self.deps.endpoints.get(self.org, endpoint.id).await? {
                    None => Err(endpoint_not_found()),
                    Some(_) => Err(ApiError::Conflict(
                        "the endpoint changed while this request ran; retry it".into(),
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn update_endpoint(&self) -> Result<ApiResponse, ApiError> {
        let before = self.endpoint().await?;
        let input: EndpointInput =
            json_object(self.content_type(), &self.req.body, ENDPOINT_FIELDS)?;
        let mut e = before.clone();
        let changed = input.url.is_some()
            || input.description.is_some()
            || input.event_types.is_some()
            || input.is_active.is_some();
        if let Some(url) = input.url {
            e.url = self.check_url(&url).await?;
        }
        if let Some(d) = input.description {
            check_description(&d)?;
            e.description = d;
        }
        if let Some(t) = input.event_types {
            check_event_types(&t)?;
            e.event_types = t;
        }
        if let Some(active) = input.is_active {
            e.is_active = active;
            if active {
                e.disabled_reason = None;
            }
        }
        let e = if changed {
            self.save(e, &before).await?
        } else {
            e
        };
        Ok(ApiResponse::json(
            200,
            json!({ "webhook_endpoint": EndpointView::of(&e) }),
        ))
    }

    async fn delete_endpoint(&self) -> Result<ApiResponse, ApiError> {
        let id = self.endpoint_id()?;
        if !self.deps.endpoints.delete(self.org, id).await? {
            return Err(endpoint_not_found());
        }
        Ok(ApiResponse::json(200, json!({ "deleted": true })))
    }

    async fn rotate_secret(&self) -> Result<ApiResponse, ApiError> {
        no_body(&self.req.body)?;
        let before = self.endpoint().await?;
        let secret = SigningSecret::generate();
        let mut e = before.clone();
        // The old secret moves over sealed; rotation never needs to decrypt. Any older
        // previous secret is dropped: only the latest one keeps signing through the grace.
        e.previous_secret = Some(PreviousSecret {
            secret: before.secret.clone(),
            expires_at: time::after(time::now(), self.deps.settings.rotation_grace),
        });
        e.secret = self.deps.cipher.seal(&secret, &e.id.to_string()).await?;
        let e = self.save(e, &before).await?;
        Ok(ApiResponse::json(
            200,
            json!({ "webhook_endpoint": EndpointView::of(&e), "plaintext_secret": secret.to_whsec() }),
        ))
    }

    async fn list_deliveries(&self) -> Result<ApiResponse, ApiError> {
        let mut limit = 50usize;
        let mut cursor = None;
        let mut state = None;
        for (k, v) in query_params(self.req.query.as_deref()) {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=250).contains(n))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit must be an integer from 1 to 250, not {v:?}"
                            ))
                        })?;
                }
                "cursor" => {
                    let id = B64URL
                        .decode(v.as_bytes())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.parse::<DeliveryId>().ok())
                        .ok_or_else(|| {
                            ApiError::BadRequest("cursor is not one this API returned".into())
                        })?;
                    cursor = Some(id);
                }
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
        let endpoint = self.endpoint().await?;
        let page = self
            .deps
            .deliveries
            .list(endpoint.id, limit, cursor, state)
            .await?;
        let views: Vec<DeliveryView> = page.deliveries.iter().map(DeliveryView::of).collect();
        let next = page.next_after.map(|id| B64URL.encode(id.to_string()));
        Ok(ApiResponse::json(
            200,
            json!({ "deliveries": views, "next_cursor": next }),
        ))
    }

    async fn get_delivery(&self) -> Result<ApiResponse, ApiError> {
        let (_, d) = self.delivery().await?;
        Ok(ApiResponse::json(
            200,
            json!({ "delivery": DeliveryView::detailed(&d) }),
        ))
    }

    async fn retry_delivery(&self) -> Result<ApiResponse, ApiError> {
        no_body(&self.req.body)?;
        let (endpoint, before) = self.delivery().await?;
        if !endpoint.is_active {
            return Err(ApiError::BadRequest(
                "the endpoint is disabled; re-enable it (is_active: true) before retrying".into(),
            ));
        }
        let now = time::now();
        let mut d = before.clone();
        d.state = DeliveryState::Pending;
        // One more attempt on top of what was spent; a pending one keeps its remaining budget.
        d.max_attempts = d.max_attempts.max(d.attempts + 1);
        d.next_attempt_at = Some(now);
        d.updated_at = now;
        match self
            .deps
            .deliveries
            .save_progress(&d, before.attempts, before.state)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict(
                    "the delivery changed while this request ran; retry it".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.deps.queue.enqueue(&[d.message()]).await?;
        Ok(ApiResponse::json(
            202,
            json!({ "delivery": DeliveryView::of(&d) }),
        ))
    }

    async fn publish(&self) -> Result<ApiResponse, ApiError> {
        let input: PublishInput = json_object(
            self.content_type(),
            &self.req.body,
            &["event_type", "idempotency_key"],
        )?;
        require_payload(&self.req.body)?;
        check_event_type_name(&input.event_type, "event_type", false)?;
        let payload =
            serde_json::to_string(&input.payload).map_err(|e| ApiError::Internal(e.to_string()))?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "payload exceeds {MAX_PAYLOAD_BYTES} bytes serialized"
            )));
        }
        if let Some(k) = &input.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || k.chars().any(char::is_control) {
                return Err(ApiError::BadRequest(format!(
                    "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
                )));
            }
        }

        let now = time::now();
        let event_id = EventId::new();
        let mut targets = self.deps.endpoints.list(self.org).await?;
        targets.retain(|e| e.is_active && subscribed(&e.event_types, &input.event_type));
        targets.sort_by_key(|e| e.id);
        let max_attempts = self.deps.settings.retry.max_attempts();
        let deliveries: Vec<Delivery> = targets
            .iter()
            .map(|e| {
                Delivery::new_pending(e, event_id, &input.event_type, &payload, max_attempts, now)
            })
            .collect();
        let answer = |event_id: EventId, ids: &[DeliveryId]| {
            ApiResponse::json(202, json!({ "event_id": event_id, "delivery_ids": ids }))
        };

        if let Some(key) = &input.idempotency_key {
            let record = PublishRecord {
                request_hash: hex::encode(Sha256::digest(format!(
                    "{}\n{payload}",
                    input.event_type
                ))),
                event_id,
                delivery_ids: deliveries.iter().map(|d| d.id).collect(),
                committed: false,
                created_at: now,
            };
            match self
                .deps
                .idempotency
                .claim(self.org, key, &record, IDEMPOTENCY_TTL)
                .await?
            {
                Claim::Claimed => {}
                Claim::Existing(first) if first.request_hash != record.request_hash => {
                    return Err(ApiError::Conflict(
                        "idempotency_key was already used for a different event".into(),
                    ));
                }
                Claim::Existing(first) if first.committed => {
                    return Ok(answer(first.event_id, &first.delivery_ids));
                }
                Claim::Existing(first) if now - first.created_at > ABANDONED_CLAIM => {
                    // The first request died before committing, so its caller never got a 202:
                    // drop its claim and run this one afresh.
                    self.deps
                        .idempotency
                        .release(self.org, key, first.event_id)
                        .await?;
                    return Box::pin(self.publish()).await;
                }
                Claim::Existing(_) => {
                    return Err(ApiError::Conflict(
                        "a request with this idempotency_key is still in progress".into(),
                    ));
                }
            }
        }

        self.deps.deliveries.insert_many(&deliveries).await?;
        // Written but not enqueued (a crash right here) is what the sweeper re-enqueues.
        let messages: Vec<_> = deliveries.iter().map(Delivery::message).collect();
        self.deps.queue.enqueue(&messages).await?;
        if let Some(key) = &input.idempotency_key {
            self.deps.idempotency.commit(self.org, key).await?;
        }
        tracing::info!(event_id = %event_id, event_type = %input.event_type, deliveries = deliveries.len(), "event published");
        let ids: Vec<DeliveryId> = deliveries.iter().map(|d| d.id).collect();
        Ok(answer(event_id, &ids))
    }
}
