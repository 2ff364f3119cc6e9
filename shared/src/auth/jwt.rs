//! Clerk session tokens (RS256 JWTs): verified against a PEM key (networkless) or a JWKS
//! fetched once and cached.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::{AuthError, Principal};

/// How Clerk session tokens are verified.
#[derive(Clone, Default)]
pub struct JwtSettings {
    /// PEM public key (Clerk's networkless verification).
    pub public_key_pem: Option<String>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub authorized_parties: Vec<String>,
    pub leeway_secs: u64,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field(
                "public_key_pem",
                &self.public_key_pem.as_ref().map(|_| ".."),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("authorized_parties", &self.authorized_parties)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct OrgClaim {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionClaims {
    sub: String,
    #[serde(default)]
    azp: Option<String>,
    /// v1 session claims.
    #[serde(default)]
    org_id: Option<String>,
    /// v2 session claims: `{"o": {"id": ...}}`.
    #[serde(default)]
    o: Option<OrgClaim>,
}

enum KeySource {
    Static(DecodingKey),
    Jwks {
        url: String,
        cache: RwLock<JwksCache>,
    },
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// A fetched JWKS is refreshed at most this often, even for unknown `kid`s.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);

pub struct JwtVerifier {
    source: KeySource,
    validation: Validation,
    authorized_parties: Vec<String>,
    http: crate::http::PlainClient,
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Option<Self>, String> {
        let source = match (&settings.public_key_pem, &settings.jwks_url) {
            (Some(pem), _) => KeySource::Static(
                DecodingKey::from_rsa_pem(pem.replace("\\n", "\n").as_bytes())
                    .map_err(|e| format!("CLERK_JWT_KEY is not an RSA public key in PEM: {e}"))?,
            ),
            (None, Some(url)) => KeySource::Jwks {
                url: url.clone(),
                cache: RwLock::default(),
            },
            (None, None) => return Ok(None),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        if let Some(iss) = &settings.issuer {
            // `set_issuer` alone checks `iss` only when present: a configured issuer must be required.
            validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            validation.set_issuer(&[iss]);
        } else {
            validation.set_required_spec_claims(&["exp", "sub"]);
        }
        Ok(Some(Self {
            source,
            validation,
            authorized_parties: settings.authorized_parties.clone(),
            http: crate::http::PlainClient::new(),
        }))
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let (url, cache) = match &self.source {
            KeySource::Static(k) => return Ok(k.clone()),
            KeySource::Jwks { url, cache } => (url, cache),
        };
        let kid = kid.ok_or(AuthError::Invalid("token has no kid"))?;
        {
            let c = cache.read().await;
            if let Some(k) = c.keys.get(kid) {
                return Ok(k.clone());
            }
            if c.fetched_at.is_some_and(|t| t.elapsed() < JWKS_MIN_REFRESH) {
                return Err(AuthError::Invalid("unknown signing key"));
            }
        }
        let mut c = cache.write().await;
        let body = self
            .http
            .get(url)
            .await
            .map_err(AuthError::KeysUnavailable)?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        c.keys = set
            .keys
            .iter()
            .filter_map(|j| Some((j.common.key_id.clone()?, DecodingKey::from_jwk(j).ok()?)))
            .collect();
        c.fetched_at = Some(Instant::now());
        c.keys
            .get(kid)
            .cloned()
            .ok_or(AuthError::Invalid("unknown signing key"))
    }

    pub(super) async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid("token algorithm is not RS256"));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let data = jsonwebtoken::decode::<SessionClaims>(token, &key, &self.validation)
            .map_err(|_| AuthError::Invalid("token failed verification"))?;
        let claims = data.claims;
        if !self.authorized_parties.is_empty()
            && !claims
                .azp
                .as_ref()
                .is_some_and(|azp| self.authorized_parties.contains(azp))
        {
            return Err(AuthError::Invalid("token azp is not an authorized party"));
        }
        Ok(Principal::Session {
            user_id: claims.sub,
            organization_id: claims.org_id.or(claims.o.and_then(|o| o.id)),
        })
    }
}
