//! Test-minted Clerk-style session tokens, and a JWKS served the way Clerk serves one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::{Jwk, JwkSet};
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

/// RS256 with a `kid` in the header, as Clerk's tokens carry (a JWKS verifier picks the key by it).
pub fn sign_rs256_kid(private_pem: &str, kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// The public half of an RSA private key (PEM) as a JWK named `kid`, for RS256.
pub fn rsa_jwk(private_pem: &str, kid: &str) -> Jwk {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("RSA JWK");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// A JWKS on a loopback HTTP server (`CLERK_JWKS_URL`): answers every GET with the set and
/// counts the requests.
pub struct JwksServer {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Jwk>) -> Self {
        let body = Bytes::from(serde_json::to_vec(&JwkSet { keys }).expect("JWKS JSON"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, counter) = (body.clone(), counter.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let resp = hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .expect("response");
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/.well-known/jwks.json"),
            requests,
        }
    }

    /// How many times the set was fetched.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
