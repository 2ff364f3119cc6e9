//! Standard Webhooks v1 signing: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

/// A signing key in the clear. Lives only while signing or being returned once to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    pub fn generate() -> Self {
        let mut key = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_` + base64, the form receivers paste into their verification library.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.0))
    }

    pub fn from_whsec(s: &str) -> Option<Self> {
        let key = B64.decode(s.strip_prefix(PREFIX)?).ok()?;
        (!key.is_empty()).then_some(Self(key))
    }

    /// One `v1,<signature>` entry.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per live secret, space-separated, so a
/// receiver mid-rotation accepts either.
pub fn signature_header(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_known_answer() {
        let secret =
            SigningSecret::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_round_trip_and_are_distinct() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), 32);
        let text = a.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::from_whsec(&text), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "SigningSecret(..)");
        assert!(SigningSecret::from_whsec("whsec_").is_none());
        assert!(SigningSecret::from_whsec("nope").is_none());
    }

    #[test]
    fn header_carries_one_signature_per_secret() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        let h = signature_header(&[a.clone(), b.clone()], "dlv_1", 7, b"{}");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(
            parts,
            [a.sign("dlv_1", 7, b"{}"), b.sign("dlv_1", 7, b"{}")]
        );
    }
}
