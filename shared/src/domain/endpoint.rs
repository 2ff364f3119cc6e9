//! The endpoint record: where an organization receives webhooks, and what it has been through.

use serde::{Deserialize, Serialize};

use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};

/// A signing secret sealed by a [`crate::ports::SecretCipher`]; opaque bytes, base64 at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SealedSecret,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
}

/// Outcome counters the consumer keeps on the endpoint; health is derived from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    #[serde(default)]
    pub failure_streak: u32,
    #[serde(default, with = "time::rfc3339::option")]
    pub failing_since: Option<Timestamp>,
    #[serde(default, with = "time::rfc3339::option")]
    pub last_failure_at: Option<Timestamp>,
    /// `capy.endpoint.failing` went out for this streak (or was deduplicated): until then,
    /// every failure of the streak checks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failing_announced: bool,
    /// The start of the disable clock (`failing_since`, or an owner's later change of the
    /// endpoint, which restarts it) that `capy.endpoint.disable_scheduled` went out for: until
    /// it names the current clock, every failure within the warning lead checks.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_scheduled_for: Option<Timestamp>,
    /// When that warning went out late (no attempt failed within the lead before the
    /// clock's disable time), the time it announced instead: a full lead after it. The
    /// disable waits for it.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_deferred_to: Option<Timestamp>,
    /// When the system (a streak, a `410 Gone`) last disabled the endpoint: it names that
    /// disable's `capy.endpoint.disabled`, which the messages after it make sure of. Only the
    /// disabling write sets it (an owner's changes never touch the counters).
    #[serde(default, with = "time::rfc3339::option")]
    pub disabled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub organization_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    pub secret: SealedSecret,
    #[serde(default)]
    pub previous_secret: Option<PreviousSecret>,
    #[serde(default)]
    pub stats: DeliveryStats,
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

impl Endpoint {
    /// A new active endpoint receiving every event type, with no description.
    pub fn new(
        id: EndpointId,
        organization_id: &str,
        url: &str,
        secret: SealedSecret,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            organization_id: organization_id.to_owned(),
            url: url.to_owned(),
            description: String::new(),
            event_types: Vec::new(),
            is_active: true,
            created_at: now,
            updated_at: now,
            secret,
            previous_secret: None,
            stats: DeliveryStats::default(),
            disabled_reason: None,
        }
    }
}

/// What one attempt means for the endpoint's health counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `count` failed attempts, the first and the last at these times: a consumer batch
    /// counts its failures to one endpoint in one write, so a dead endpoint's item takes one
    /// write per batch, not one per attempt.
    Failures {
        count: u32,
        first_at: Timestamp,
        last_at: Timestamp,
    },
    /// Sent only when a failure streak was open: a healthy endpoint costs no write.
    RecoveredAfterFailures,
    /// `capy.endpoint.failing` went out for the streak open since `since`; nothing if that
    /// streak has ended.
    FailingAnnounced {
        since: Timestamp,
    },
    /// `capy.endpoint.disable_scheduled` went out for the disable clock started at `clock`
    /// of the streak open since `since`; nothing if that streak has ended.
    DisableScheduledAnnounced {
        since: Timestamp,
        clock: Timestamp,
        /// A late warning's disable time (`DeliveryStats::disable_deferred_to`).
        deferred_to: Option<Timestamp>,
    },
    Disable {
        reason: String,
        at: Timestamp,
    },
}

impl Endpoint {
    /// This endpoint as `count` more failed attempts, the first at `first_at` and the last at
    /// `last_at`, leave it: what [`Outcome::Failures`] writes.
    pub fn with_failures(&self, count: u32, first_at: Timestamp, last_at: Timestamp) -> Self {
        let mut after = self.clone();
        after.stats.failure_streak += count;
        after.stats.last_failure_at = Some(last_at);
        after.stats.failing_since.get_or_insert(first_at);
        after
    }
}

impl Outcome {
    /// One failed attempt.
    pub fn failure(at: Timestamp) -> Self {
        Self::Failures {
            count: 1,
            first_at: at,
            last_at: at,
        }
    }
}
