//! Portal session tokens: `capy_portal_{session ulid}{40 random base62}`, stored as SHA-256.

use std::time::Duration;

use super::{PORTAL_TOKEN_PREFIX, PORTAL_TOKEN_RANDOM_CHARS, hash_api_key, random_base62};
use crate::domain::ids::PortalSessionId;
use crate::domain::portal_session::{Capability, PortalSessionRecord};
use crate::domain::time::Timestamp;

/// A freshly minted portal session; the token is shown once (in the portal URL), then only
/// its hash exists.
pub struct NewPortalSession {
    pub token: String,
    pub record: PortalSessionRecord,
}

impl std::fmt::Debug for NewPortalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPortalSession")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// A session of `organization_id` with `capabilities` (sorted, deduplicated) from `now` until
/// `now + expires_in`.
pub fn mint_portal_session(
    organization_id: &str,
    capabilities: Vec<Capability>,
    expires_in: Duration,
    now: Timestamp,
) -> NewPortalSession {
    let id = PortalSessionId::new();
    let token = format!(
        "{PORTAL_TOKEN_PREFIX}{}{}",
        id.ulid(),
        random_base62(PORTAL_TOKEN_RANDOM_CHARS)
    );
    NewPortalSession {
        record: PortalSessionRecord {
            id,
            token_hash: hash_api_key(&token),
            organization_id: organization_id.to_owned(),
            capabilities,
            created_at: now,
            expires_at: crate::domain::time::after(now, expires_in),
            revoked_at: None,
        },
        token,
    }
}

/// The session a well-formed portal token names, or `None` for anything else.
pub(super) fn portal_token_session(token: &str) -> Option<PortalSessionId> {
    let rest = token.strip_prefix(PORTAL_TOKEN_PREFIX)?;
    if rest.len() != 26 + PORTAL_TOKEN_RANDOM_CHARS
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    format!("{}{}", PortalSessionId::PREFIX, &rest[..26])
        .parse()
        .ok()
}
