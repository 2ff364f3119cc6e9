//! Credentials: API keys (`capy_live_…`, stored as SHA-256), portal session tokens
//! (`capy_portal_…`, stored as SHA-256, scoped by capability, expiring) and Clerk session
//! tokens (RS256).

use std::sync::Arc;

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::api_key::ApiKeyRecord;
use crate::domain::ids::PortalSessionId;
use crate::domain::portal_session::{Capability, PortalAccess};
use crate::domain::time::Timestamp;
use crate::ports::{ApiKeyStore, PortalSessionStore, StoreError};

pub const API_KEY_PREFIX: &str = "capy_live_";
const API_KEY_RANDOM_CHARS: usize = 40;
pub const PORTAL_TOKEN_PREFIX: &str = "capy_portal_";
/// A portal token is its prefix, its session's id without the `ps_` (a 26-character ULID,
/// so the session is found by key) and this many random characters (238 bits).
const PORTAL_TOKEN_RANDOM_CHARS: usize = 40;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

mod jwt;
mod portal;

pub use jwt::{JwtSettings, JwtVerifier};

use portal::portal_token_session;
pub use portal::{NewPortalSession, mint_portal_session};

/// A freshly minted key; shown once, then only its hash exists.
pub struct NewApiKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

fn random_base62(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

pub fn mint_api_key(organization_id: &str, project_id: Option<&str>) -> NewApiKey {
    let key = format!("{API_KEY_PREFIX}{}", random_base62(API_KEY_RANDOM_CHARS));
    NewApiKey {
        record: ApiKeyRecord {
            key_hash: hash_api_key(&key),
            organization_id: organization_id.to_owned(),
            project_id: project_id.map(str::to_owned),
            created_at: crate::domain::time::now(),
            revoked_at: None,
        },
        key,
    }
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn looks_like_api_key(s: &str) -> bool {
    s.strip_prefix(API_KEY_PREFIX).is_some_and(|r| {
        r.len() >= 32 && r.len() <= 128 && r.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Who is calling, once the credential checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    ApiKey {
        organization_id: String,
        project_id: Option<String>,
    },
    Session {
        user_id: String,
        organization_id: Option<String>,
    },
    /// A portal session: its organization's routes, within its capabilities.
    Portal(PortalPrincipal),
}

/// What a live portal session grants, as its record says (without the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalPrincipal {
    pub session_id: PortalSessionId,
    pub organization_id: String,
    pub capabilities: Vec<Capability>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Principal {
    pub fn organization_id(&self) -> Option<&str> {
        match self {
            Self::ApiKey {
                organization_id, ..
            } => Some(organization_id),
            Self::Session {
                organization_id, ..
            } => organization_id.as_deref(),
            Self::Portal(p) => Some(&p.organization_id),
        }
    }

    /// Whether this principal may call a route of `access`. API keys and dashboard sessions
    /// act for their whole organization; a portal session within its capabilities.
    pub fn may(&self, access: PortalAccess) -> bool {
        match self {
            Self::Portal(p) => crate::domain::portal_session::grants(&p.capabilities, access),
            Self::ApiKey { .. } | Self::Session { .. } => true,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::ApiKey {
                project_id: Some(_),
                ..
            } => "project_api_key",
            Self::ApiKey { .. } => "api_key",
            Self::Session { .. } => "session",
            Self::Portal(_) => "portal_session",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credential: send Authorization: Bearer <API key or session token>")]
    Missing,
    #[error("invalid credential")]
    Invalid(&'static str),
    #[error("credential is valid but not for this organization")]
    WrongOrganization,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session token verification unavailable: {0}")]
    KeysUnavailable(String),
}

pub struct Authenticator {
    keys: Arc<dyn ApiKeyStore>,
    jwt: Option<JwtVerifier>,
    portal: Option<Arc<dyn PortalSessionStore>>,
}

impl Authenticator {
    pub fn new(keys: Arc<dyn ApiKeyStore>, jwt: Option<JwtVerifier>) -> Self {
        Self {
            keys,
            jwt,
            portal: None,
        }
    }

    /// Accepts portal tokens checked against `store` (without it, they are unrecognized).
    pub fn with_portal_sessions(mut self, store: Arc<dyn PortalSessionStore>) -> Self {
        self.portal = Some(store);
        self
    }

    /// Checks the `Authorization` header and that the caller may act for `org`.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        org: &str,
    ) -> Result<Principal, AuthError> {
        let principal = self.authenticate(authorization).await?;
        match principal.organization_id() {
            Some(o) if bool::from(o.as_bytes().ct_eq(org.as_bytes())) => Ok(principal),
            _ => Err(AuthError::WrongOrganization),
        }
    }

    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let value = authorization
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(AuthError::Missing)?;
        let (scheme, credential) = value
            .split_once(' ')
            .ok_or(AuthError::Invalid("expected 'Bearer <credential>'"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid("expected 'Bearer <credential>'"));
        }
        let credential = credential.trim();
        if credential.starts_with(API_KEY_PREFIX) {
            return self.api_key(credential).await;
        }
        if credential.starts_with(PORTAL_TOKEN_PREFIX) {
            return self.portal_token(credential).await;
        }
        match &self.jwt {
            Some(v) if credential.matches('.').count() == 2 => v.verify(credential).await,
            _ => Err(AuthError::Invalid("unrecognized credential")),
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal, AuthError> {
        if !looks_like_api_key(key) {
            return Err(AuthError::Invalid("malformed API key"));
        }
        let hash = hash_api_key(key);
        let record = self
            .keys
            .get(&hash)
            .await?
            .ok_or(AuthError::Invalid("unknown API key"))?;
        // The lookup was by hash; compare in constant time anyway so no store adapter can leak.
        if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::Invalid("unknown API key"));
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Invalid("revoked API key"));
        }
        Ok(Principal::ApiKey {
            organization_id: record.organization_id,
            project_id: record.project_id,
        })
    }

    async fn portal_token(&self, token: &str) -> Result<Principal, AuthError> {
        let store = self
            .portal
            .as_ref()
            .ok_or(AuthError::Invalid("portal sessions are not enabled here"))?;
        let id = portal_token_session(token).ok_or(AuthError::Invalid("malformed portal token"))?;
        let record = store
            .get(id)
            .await?
            .ok_or(AuthError::Invalid("unknown portal session"))?;
        // The id is public (it is in the mint response); the random part is checked here.
        let hash = hash_api_key(token);
        if !bool::from(record.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::Invalid("unknown portal session"));
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Invalid("revoked portal session"));
        }
        if !record.is_live(crate::domain::time::now()) {
            return Err(AuthError::Invalid("expired portal session"));
        }
        Ok(Principal::Portal(PortalPrincipal {
            session_id: record.id,
            organization_id: record.organization_id,
            capabilities: record.capabilities,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }))
    }
}

#[cfg(test)]
mod tests;
