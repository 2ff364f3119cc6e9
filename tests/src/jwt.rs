//! Test-minted Clerk-style session tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A fresh RSA key pair (private PKCS#8 PEM, public SPKI PEM), made by Python's `cryptography`
/// (which moto depends on, so the test venv has it).
pub fn keypair() -> (String, String) {
    let script = "from cryptography.hazmat.primitives.asymmetric import rsa\n\
from cryptography.hazmat.primitives import serialization as s\n\
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n\
print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode(), end='')\n\
print('=====')\n\
print(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode(), end='')\n";
    let out = std::process::Command::new(crate::python())
        .args(["-c", script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (private, public) = text.split_once("=====\n").expect("two keys");
    (private.to_owned(), public.to_owned())
}

pub fn sign_rs256(private_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

/// Algorithm confusion: HS256 keyed with the public key's PEM text.
pub fn sign_hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

/// `alg: none`, no signature.
pub fn unsigned(claims: &Value) -> String {
    let header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", B64URL.encode(claims.to_string()))
}

/// Keeps the signature of `token` but swaps in other claims.
pub fn tamper(token: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = B64URL.encode(claims.to_string());
    parts.join(".")
}
