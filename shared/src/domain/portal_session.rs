//! Portal sessions: a short-lived, scoped credential the customer's backend mints for its own
//! customer's browser. Stored like API keys: only the SHA-256 of the token, never the token.

use serde::{Deserialize, Serialize};

use crate::domain::ids::PortalSessionId;
use crate::domain::time::{self, Timestamp};

/// What a portal session may do. Each route names the one it needs
/// (`api::routes::Route::capability`); a route that names none is closed to portal tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Every read: endpoints, deliveries, events, stats, jobs. Implied by the other two: a
    /// session that may change something may see what it changes.
    Read,
    /// Create, update, delete, rotate the secret of, and send a test event to an endpoint.
    ManageEndpoints,
    /// Retry a delivery, replay an endpoint's deliveries, resend an event, cancel a job.
    Replay,
}

impl Capability {
    pub const ALL: [Capability; 3] = [Self::Read, Self::ManageEndpoints, Self::Replay];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ManageEndpoints => "manage_endpoints",
            Self::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Who among portal sessions may call a route (`api::routes::Route::portal_access`). API
/// keys and dashboard sessions may call every route of their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalAccess {
    /// A session with this capability.
    Needs(Capability),
    /// A session with any of these (a `replay` session follows the jobs it starts).
    NeedsAny(&'static [Capability]),
    /// Any live session: the route describes only the session itself.
    OwnSession,
    /// No portal session: publishing, minting or revoking credentials.
    Closed,
}

/// How long a session may live: 5 minutes to 7 days, one day unless asked.
pub const MIN_EXPIRES_IN_SECS: u64 = 300;
pub const MAX_EXPIRES_IN_SECS: u64 = 604_800;
pub const DEFAULT_EXPIRES_IN_SECS: u64 = 86_400;

/// A session as stored. `token_hash` is the hex SHA-256 of the whole token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalSessionRecord {
    pub id: PortalSessionId,
    pub token_hash: String,
    pub organization_id: String,
    /// Sorted, no duplicates.
    pub capabilities: Vec<Capability>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
}

/// The hash is not the token, but it is what a token is checked against: keep it out of logs.
impl std::fmt::Debug for PortalSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalSessionRecord")
            .field("id", &self.id)
            .field("organization_id", &self.organization_id)
            .field("capabilities", &self.capabilities)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl PortalSessionRecord {
    /// Whether the session still grants anything at `now`: not revoked, not expired (the
    /// store's TTL deletes expired items only eventually, so expiry is checked here).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }

    pub fn grants(&self, access: PortalAccess) -> bool {
        grants(&self.capabilities, access)
    }
}

/// Whether a session with `capabilities` may call a route of `access`. Every session has at
/// least one capability, and each of them includes `read`.
pub fn grants(capabilities: &[Capability], access: PortalAccess) -> bool {
    let has = |c: &Capability| *c == Capability::Read || capabilities.contains(c);
    match access {
        PortalAccess::Needs(c) => has(&c),
        PortalAccess::NeedsAny(any) => any.iter().any(has),
        PortalAccess::OwnSession => true,
        PortalAccess::Closed => false,
    }
}

/// The capabilities a caller asked for, sorted; an error names an unknown or repeated one,
/// or an empty list.
pub fn normalize(names: &[String]) -> Result<Vec<Capability>, String> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let c = Capability::parse(n).ok_or_else(|| {
            format!("unknown capability {n:?}: use \"read\", \"manage_endpoints\" or \"replay\"")
        })?;
        if out.contains(&c) {
            return Err(format!("capabilities lists {n:?} twice"));
        }
        out.push(c);
    }
    out.sort();
    if out.is_empty() {
        return Err("capabilities must name at least one capability".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_round_trip_and_normalize() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).expect("json"),
                serde_json::json!(c.as_str())
            );
        }
        assert_eq!(
            normalize(&["replay".into(), "read".into()]),
            Ok(vec![Capability::Read, Capability::Replay])
        );
        assert_eq!(
            normalize(&["replay".into(), "read".into(), "replay".into()]),
            Err("capabilities lists \"replay\" twice".into()),
            "the schema's uniqueItems"
        );
        assert!(normalize(&[]).is_err());
        assert!(normalize(&["admin".into()]).is_err());
    }

    #[test]
    fn a_session_is_live_until_revoked_or_expired() {
        let now = time::now();
        let mut s = PortalSessionRecord {
            id: PortalSessionId::new(),
            token_hash: "ab".repeat(32),
            organization_id: "org_a".into(),
            capabilities: vec![Capability::Read],
            created_at: now,
            expires_at: time::after(now, std::time::Duration::from_secs(300)),
            revoked_at: None,
        };
        assert!(s.is_live(now));
        assert!(!s.is_live(s.expires_at));
        assert!(!format!("{s:?}").contains(&s.token_hash));
        assert!(s.grants(PortalAccess::Needs(Capability::Read)));
        assert!(!s.grants(PortalAccess::Needs(Capability::Replay)));
        assert!(s.grants(PortalAccess::OwnSession));
        assert!(!s.grants(PortalAccess::Closed));
        s.revoked_at = Some(now);
        assert!(!s.is_live(now));
    }
}
