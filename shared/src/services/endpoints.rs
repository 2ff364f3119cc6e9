//! Endpoint changes: create, update, rotate the secret, delete.

use super::{Deps, ServiceError};
use crate::domain::endpoint::{Endpoint, PreviousSecret};
use crate::domain::ids::EndpointId;
use crate::domain::signing::SigningSecret;
use crate::domain::time::{self, Timestamp};
use crate::ports::StoreError;

/// The owner's changes; `None` leaves a field as it is. Already validated by the caller.
#[derive(Debug, Default, Clone)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

impl EndpointChanges {
    fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.description.is_none()
            && self.event_types.is_none()
            && self.is_active.is_none()
    }
}

/// Checks a destination against the deployment's policy (scheme, SSRF ranges, DNS).
pub async fn check_url(deps: &Deps, url: &str) -> Result<String, ServiceError> {
    deps.policy
        .destinations
        .check_endpoint_url(url)
        .await
        // Stored as the owner wrote it; the parsed form only proves it is valid.
        .map(|_| url.to_owned())
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

pub async fn get(deps: &Deps, org: &str, id: EndpointId) -> Result<Endpoint, ServiceError> {
    deps.endpoints
        .get(org, id)
        .await?
        .ok_or_else(ServiceError::endpoint_not_found)
}

/// A new endpoint and its plaintext secret (shown once).
pub async fn create(
    deps: &Deps,
    org: &str,
    url: String,
    changes: EndpointChanges,
    now: Timestamp,
) -> Result<(Endpoint, SigningSecret), ServiceError> {
    let url = check_url(deps, &url).await?;
    let id = EndpointId::new();
    let secret = SigningSecret::generate();
    let sealed = deps.cipher.seal(&secret, &id.to_string()).await?;
    let endpoint = Endpoint {
        description: changes.description.unwrap_or_default(),
        event_types: changes.event_types.unwrap_or_default(),
        is_active: changes.is_active.unwrap_or(true),
        ..Endpoint::new(id, org, &url, sealed, now)
    };
    match deps.endpoints.create(&endpoint).await {
        // A fresh id: a conflict is an SDK retry of our own put whose answer was lost.
        Ok(()) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    Ok((endpoint, secret))
}

/// Writes a changed endpoint; `updated_at` always moves forward.
async fn save(
    deps: &Deps,
    mut endpoint: Endpoint,
    before: &Endpoint,
) -> Result<Endpoint, ServiceError> {
    let now = time::now();
    endpoint.updated_at = if now > before.updated_at {
        now
    } else {
        before.updated_at + chrono::TimeDelta::milliseconds(1)
    };
    match deps
        .endpoints
        .save_settings(&endpoint, before.updated_at)
        .await
    {
        Ok(()) => Ok(endpoint),
        Err(StoreError::Conflict) => match deps
            .endpoints
            .get(&endpoint.organization_id, endpoint.id)
            .await?
        {
            None => Err(ServiceError::endpoint_not_found()),
            Some(_) => Err(ServiceError::Conflict(
                "the endpoint changed while this request ran; retry it".into(),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

pub async fn update(
    deps: &Deps,
    org: &str,
    id: EndpointId,
    changes: EndpointChanges,
) -> Result<Endpoint, ServiceError> {
    let before = get(deps, org, id).await?;
    if changes.is_empty() {
        return Ok(before);
    }
    let mut e = before.clone();
    if let Some(url) = changes.url {
        e.url = check_url(deps, &url).await?;
    }
    if let Some(d) = changes.description {
        e.description = d;
    }
    if let Some(t) = changes.event_types {
        e.event_types = t;
    }
    if let Some(active) = changes.is_active {
        e.is_active = active;
        if active {
            e.disabled_reason = None;
        }
    }
    save(deps, e, &before).await
}

/// A new secret; the old one keeps signing through the grace period. Any older previous
/// secret is dropped: only the latest one overlaps.
pub async fn rotate_secret(
    deps: &Deps,
    org: &str,
    id: EndpointId,
) -> Result<(Endpoint, SigningSecret), ServiceError> {
    let before = get(deps, org, id).await?;
    let secret = SigningSecret::generate();
    let mut e = before.clone();
    // The old secret moves over sealed; rotation never needs to decrypt.
    e.previous_secret = Some(PreviousSecret {
        secret: before.secret.clone(),
        expires_at: time::after(time::now(), deps.policy.rotation_grace),
    });
    e.secret = deps.cipher.seal(&secret, &e.id.to_string()).await?;
    Ok((save(deps, e, &before).await?, secret))
}

pub async fn delete(deps: &Deps, org: &str, id: EndpointId) -> Result<(), ServiceError> {
    if deps.endpoints.delete(org, id).await? {
        Ok(())
    } else {
        Err(ServiceError::endpoint_not_found())
    }
}
