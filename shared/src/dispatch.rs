//! Where a signed delivery goes: a destination transport. The HTTP sender
//! ([`crate::http::Sender`]) is the first; another kind of destination (a queue, an event bus)
//! implements the same trait, and the consumer, its retry rules and the history stay as they
//! are.

use async_trait::async_trait;
use bytes::Bytes;

pub use crate::http::SendOutcome;

#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends one signed message to `destination` (the endpoint's URL). Never an error: a
    /// failure is an outcome with a sentence the history shows and a kind the retry rules read.
    async fn send(&self, destination: &str, headers: &[(&str, String)], body: Bytes)
    -> SendOutcome;
}

#[async_trait]
impl Transport for crate::http::Sender {
    async fn send(
        &self,
        destination: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> SendOutcome {
        self.post(destination, headers, body).await
    }
}
