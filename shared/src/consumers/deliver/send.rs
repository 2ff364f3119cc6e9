//! Signing and sending one attempt.

use bytes::Bytes;

use super::ProcessError;
use crate::dispatch::SendOutcome;
use crate::domain::delivery::Delivery;
use crate::domain::endpoint::Endpoint;
use crate::domain::event::Event;
use crate::domain::signing::{SigningSecret, signature_header};
use crate::domain::time::{self, Timestamp};
use crate::services::Deps;

pub(super) async fn send(
    deps: &Deps,
    event: &Event,
    d: &Delivery,
    endpoint: &Endpoint,
    secrets: &[SigningSecret],
) -> (SendOutcome, Timestamp) {
    let body = event.webhook_body();
    let msg_id = d.id.to_string();
    let started_at = time::now();
    let timestamp = started_at.timestamp();
    let headers = [
        ("webhook-id", msg_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            signature_header(secrets, &msg_id, timestamp, body.as_bytes()),
        ),
    ];
    let outcome = deps
        .sender
        .send(&endpoint.url, &headers, Bytes::from(body))
        .await;
    (outcome, started_at)
}

/// The current secret, and the previous one while its grace lasts.
pub(super) async fn live_secrets(
    deps: &Deps,
    e: &Endpoint,
    now: Timestamp,
) -> Result<Vec<SigningSecret>, ProcessError> {
    let context = e.id.to_string();
    let mut secrets = vec![deps.cipher.open(&e.secret, &context).await?];
    if let Some(prev) = e.previous_secret.as_ref().filter(|p| p.expires_at > now) {
        secrets.push(deps.cipher.open(&prev.secret, &context).await?);
    }
    Ok(secrets)
}
