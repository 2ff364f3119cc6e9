//! Signing secrets at rest: AES-256-GCM under envelope encryption.
//!
//! Locally the key-encryption key comes from configuration (`SECRETS_LOCAL_KEY`); in the cloud
//! each secret gets a KMS data key (`GenerateDataKey`), whose encrypted copy is stored beside
//! the ciphertext. The endpoint id is bound in as associated data, so a sealed secret copied
//! onto another endpoint does not open.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

use crate::domain::endpoint::SealedSecret;
use crate::domain::signing::SigningSecret;
use crate::ports::{CipherError, SecretCipher};

const NONCE: usize = 12;

fn aes_seal(key: &[u8; 32], plaintext: &[u8], aad: &str) -> Vec<u8> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of a short secret cannot fail");
    [nonce.as_slice(), &ct].concat()
}

fn aes_open(key: &[u8; 32], sealed: &[u8], aad: &str) -> Result<Vec<u8>, CipherError> {
    if sealed.len() < NONCE + 16 {
        return Err(CipherError::Malformed);
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CipherError::Tampered)
}

/// The bytes of a sealed secret written by the cipher that owns `tag`.
fn untag(sealed: &SealedSecret, tag: &str) -> Result<Vec<u8>, CipherError> {
    let body = sealed.0.strip_prefix(tag).ok_or(CipherError::Malformed)?;
    B64.decode(body).map_err(|_| CipherError::Malformed)
}

/// AES-256-GCM under a key from configuration.
pub struct LocalCipher {
    key: [u8; 32],
}

impl std::fmt::Debug for LocalCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCipher(..)")
    }
}

impl LocalCipher {
    const TAG: &'static str = "local1:";

    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The key as configured: base64 of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|_| "SECRETS_LOCAL_KEY is not base64".to_string())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "SECRETS_LOCAL_KEY must be 32 bytes (base64)".to_string())?;
        Ok(Self::new(key))
    }
}

#[async_trait]
impl SecretCipher for LocalCipher {
    async fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
    ) -> Result<SealedSecret, CipherError> {
        Ok(SealedSecret(format!(
            "{}{}",
            Self::TAG,
            B64.encode(aes_seal(&self.key, secret.as_bytes(), context))
        )))
    }

    async fn open(
        &self,
        sealed: &SealedSecret,
        context: &str,
    ) -> Result<SigningSecret, CipherError> {
        let bytes = untag(sealed, Self::TAG)?;
        aes_open(&self.key, &bytes, context).map(SigningSecret::from_bytes)
    }
}

/// KMS envelope encryption; decrypted data keys are cached per container so a warm consumer
/// signs without calling KMS.
pub struct KmsCipher {
    client: aws_sdk_kms::Client,
    key_id: String,
    data_keys: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
}

impl std::fmt::Debug for KmsCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl KmsCipher {
    const TAG: &'static str = "kms1:";
    const CACHE_LIMIT: usize = 1024;

    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self {
            client,
            key_id,
            data_keys: Mutex::new(HashMap::new()),
        }
    }
}

fn to_key(bytes: &[u8]) -> Result<[u8; 32], CipherError> {
    bytes
        .try_into()
        .map_err(|_| CipherError::Kms("data key is not 32 bytes".into()))
}

/// A KMS call's failure, by its kind and error code (never its text): retryable or not.
fn kms_error<E, R>(e: aws_sdk_kms::error::SdkError<E, R>) -> CipherError
where
    E: std::error::Error + aws_sdk_kms::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = super::is_transient(
        &e,
        &[
            "ThrottlingException",
            "KMSInternalException",
            "DependencyTimeoutException",
            "KeyUnavailableException",
        ],
    );
    let message = aws_sdk_kms::error::DisplayErrorContext(e).to_string();
    if transient {
        CipherError::KmsUnavailable(message)
    } else {
        CipherError::Kms(message)
    }
}

#[async_trait]
impl SecretCipher for KmsCipher {
    async fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
    ) -> Result<SealedSecret, CipherError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .encryption_context("endpoint", context)
            .send()
            .await
            .map_err(kms_error)?;
        let plain = out
            .plaintext()
            .ok_or_else(|| CipherError::Kms("no plaintext data key".into()))?;
        let wrapped = out
            .ciphertext_blob()
            .ok_or_else(|| CipherError::Kms("no wrapped data key".into()))?;
        let key = to_key(plain.as_ref())?;
        let wrapped = wrapped.as_ref();
        let mut blob = (wrapped.len() as u16).to_be_bytes().to_vec();
        blob.extend_from_slice(wrapped);
        blob.extend_from_slice(&aes_seal(&key, secret.as_bytes(), context));
        Ok(SealedSecret(format!("{}{}", Self::TAG, B64.encode(blob))))
    }

    async fn open(
        &self,
        sealed: &SealedSecret,
        context: &str,
    ) -> Result<SigningSecret, CipherError> {
        let blob = untag(sealed, Self::TAG)?;
        let (len, rest) = blob.split_at_checked(2).ok_or(CipherError::Malformed)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let (wrapped, sealed) = rest.split_at_checked(len).ok_or(CipherError::Malformed)?;
        let cached = self
            .data_keys
            .lock()
            .ok()
            .and_then(|m| m.get(wrapped).copied());
        let key = match cached {
            Some(k) => k,
            None => {
                let out = self
                    .client
                    .decrypt()
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
                    .encryption_context("endpoint", context)
                    .send()
                    .await
                    .map_err(kms_error)?;
                let key = to_key(out.plaintext().ok_or(CipherError::Malformed)?.as_ref())?;
                if let Ok(mut m) = self.data_keys.lock() {
                    if m.len() >= Self::CACHE_LIMIT {
                        m.clear();
                    }
                    m.insert(wrapped.to_vec(), key);
                }
                key
            }
        };
        aes_open(&key, sealed, context).map(SigningSecret::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_cipher_round_trips_and_binds_the_endpoint() {
        let c = LocalCipher::new([7u8; 32]);
        let s = SigningSecret::generate();
        let sealed = c.seal(&s, "ep_A").await.expect("seal");
        assert!(!sealed.0.contains(&s.to_whsec()[6..]));
        assert_eq!(c.open(&sealed, "ep_A").await.expect("open"), s);
        assert!(matches!(
            c.open(&sealed, "ep_B").await,
            Err(CipherError::Tampered)
        ));
        let other = LocalCipher::new([8u8; 32]);
        assert!(matches!(
            other.open(&sealed, "ep_A").await,
            Err(CipherError::Tampered)
        ));
        assert!(matches!(
            c.open(&SealedSecret("local1:AAAA".into()), "ep_A").await,
            Err(CipherError::Malformed)
        ));
    }

    #[test]
    fn local_key_must_be_32_bytes() {
        assert!(LocalCipher::from_base64(&B64.encode([1u8; 32])).is_ok());
        assert!(LocalCipher::from_base64(&B64.encode([1u8; 16])).is_err());
        assert!(LocalCipher::from_base64("***").is_err());
    }
}
