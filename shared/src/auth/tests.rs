//! The credential checks: API keys, portal tokens, session tokens.

use super::*;
use std::time::Duration;

use crate::adapters::memory::MemoryApiKeys;
use crate::domain::portal_session::grants;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn a_configured_issuer_is_required() {
    let pem = include_str!("../../../tests/fixtures/clerk-test.public.pem");
    let private = include_str!("../../../tests/fixtures/clerk-test.private.pem");
    let settings = JwtSettings {
        public_key_pem: Some(pem.to_owned()),
        issuer: Some("https://clerk.example".into()),
        ..Default::default()
    };
    let verifier = JwtVerifier::new(&settings)
        .expect("settings")
        .expect("verifier");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).expect("key");
    let exp = crate::domain::time::now().timestamp() + 600;
    let token = |claims: serde_json::Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims, &key)
            .expect("sign")
    };
    let with_iss = token(
        serde_json::json!({ "sub": "u", "exp": exp, "org_id": "o", "iss": "https://clerk.example" }),
    );
    assert!(verifier.verify(&with_iss).await.is_ok());
    let without = token(serde_json::json!({ "sub": "u", "exp": exp, "org_id": "o" }));
    assert!(matches!(
        verifier.verify(&without).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn api_keys_are_hashed_scoped_and_revocable() {
    let store = Arc::new(MemoryApiKeys::default());
    let org_key = mint_api_key("org_a", None);
    let proj_key = mint_api_key("org_a", Some("proj_1"));
    assert!(looks_like_api_key(&org_key.key));
    assert_ne!(org_key.record.key_hash, org_key.key);
    assert!(!format!("{org_key:?}").contains(&org_key.key));
    store.put(&org_key.record).await.expect("put");
    store.put(&proj_key.record).await.expect("put");
    let auth = Authenticator::new(store.clone(), None);

    let bearer = |k: &str| format!("Bearer {k}");
    assert!(
        auth.authorize(Some(&bearer(&org_key.key)), "org_a")
            .await
            .is_ok()
    );
    assert_eq!(
        auth.authorize(Some(&bearer(&proj_key.key)), "org_a")
            .await
            .expect("project key")
            .kind(),
        "project_api_key"
    );
    assert!(matches!(
        auth.authorize(Some(&bearer(&org_key.key)), "org_b").await,
        Err(AuthError::WrongOrganization)
    ));
    assert!(matches!(
        auth.authorize(None, "org_a").await,
        Err(AuthError::Missing)
    ));
    let truncated = &org_key.key[..org_key.key.len() - 1];
    assert!(matches!(
        auth.authorize(Some(&bearer(truncated)), "org_a").await,
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        auth.authorize(Some(&org_key.key), "org_a").await,
        Err(AuthError::Invalid(_))
    ));

    let mut revoked = org_key.record.clone();
    revoked.revoked_at = Some(crate::domain::time::now());
    store.put(&revoked).await.expect("put");
    assert!(matches!(
        auth.authorize(Some(&bearer(&org_key.key)), "org_a").await,
        Err(AuthError::Invalid("revoked API key"))
    ));
}

#[tokio::test]
async fn portal_tokens_are_hashed_scoped_expiring_and_revocable() {
    use crate::adapters::memory::MemoryPortalSessions;
    let sessions = Arc::new(MemoryPortalSessions::default());
    let auth = Authenticator::new(Arc::new(MemoryApiKeys::default()), None)
        .with_portal_sessions(sessions.clone());
    let now = crate::domain::time::now();
    let minted = mint_portal_session(
        "org_a",
        vec![Capability::Read],
        Duration::from_secs(300),
        now,
    );
    assert!(minted.token.starts_with(PORTAL_TOKEN_PREFIX));
    assert_eq!(portal_token_session(&minted.token), Some(minted.record.id));
    assert_eq!(minted.record.token_hash, hash_api_key(&minted.token));
    assert!(!format!("{minted:?}").contains(&minted.token));
    assert!(!format!("{minted:?}").contains(&minted.record.token_hash));
    sessions.create(&minted.record).await.expect("create");

    let bearer = format!("Bearer {}", minted.token);
    let p = auth
        .authorize(Some(&bearer), "org_a")
        .await
        .expect("portal");
    assert_eq!(p.kind(), "portal_session");
    assert!(p.may(PortalAccess::Needs(Capability::Read)));
    assert!(!p.may(PortalAccess::Needs(Capability::Replay)));
    // The other capabilities include `read`.
    for c in [Capability::ManageEndpoints, Capability::Replay] {
        assert!(grants(&[c], PortalAccess::Needs(Capability::Read)));
        assert!(grants(&[c], PortalAccess::Needs(c)));
    }
    assert!(!grants(
        &[Capability::ManageEndpoints],
        PortalAccess::Needs(Capability::Replay)
    ));
    assert!(p.may(PortalAccess::OwnSession));
    assert!(!p.may(PortalAccess::Closed));
    assert!(matches!(
        auth.authorize(Some(&bearer), "org_b").await,
        Err(AuthError::WrongOrganization)
    ));
    // Same session id, other random part: the hash decides.
    let mut forged = minted.token.clone();
    let last = forged.pop().expect("char");
    forged.push(if last == 'a' { 'b' } else { 'a' });
    assert!(matches!(
        auth.authorize(Some(&format!("Bearer {forged}")), "org_a")
            .await,
        Err(AuthError::Invalid("unknown portal session"))
    ));
    // Without a session store, a portal token is simply not accepted.
    let plain = Authenticator::new(Arc::new(MemoryApiKeys::default()), None);
    assert!(matches!(
        plain.authorize(Some(&bearer), "org_a").await,
        Err(AuthError::Invalid(_))
    ));

    let expired = mint_portal_session(
        "org_a",
        vec![Capability::Read],
        Duration::from_secs(300),
        now - chrono::TimeDelta::seconds(301),
    );
    sessions.create(&expired.record).await.expect("create");
    assert!(matches!(
        auth.authorize(Some(&format!("Bearer {}", expired.token)), "org_a")
            .await,
        Err(AuthError::Invalid("expired portal session"))
    ));

    assert!(
        !sessions
            .revoke("org_b", minted.record.id, now)
            .await
            .expect("revoke")
    );
    assert!(
        sessions
            .revoke("org_a", minted.record.id, now)
            .await
            .expect("revoke")
    );
    assert!(matches!(
        auth.authorize(Some(&bearer), "org_a").await,
        Err(AuthError::Invalid("revoked portal session"))
    ));
}
