//! Configuration from the environment, checked once at start (fail fast), and the wiring
//! that turns it into ports.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authenticator, JwtSettings, JwtVerifier};
use crate::dynamo::Table;
use crate::http::Sender;
use crate::retry::RetryPolicy;
use crate::secrets::{KmsCipher, LocalCipher, SecretCipher};
use crate::sqs::SqsQueue;
use crate::ssrf::{DestinationPolicy, parse_allowlist};

#[derive(Debug, Clone)]
pub enum SecretsKey {
    Local(String),
    Kms(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub table_name: String,
    pub delivery_queue_url: Option<String>,
    pub retry: RetryPolicy,
    pub rotation_grace: Duration,
    pub jwt: JwtSettings,
    pub destinations: DestinationPolicy,
    pub secrets: Option<SecretsKey>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub fn bool_var(name: &str) -> Result<Option<bool>, String> {
    match var(name).as_deref() {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(format!("{name} must be true or false, not {other:?}")),
    }
}

impl Settings {
    /// Reads the environment. `local` picks the development defaults `capy serve` documents
    /// (private destinations and plain http allowed unless set).
    pub fn from_env(local: bool) -> Result<Self, String> {
        let retry = match var("RETRY_SCHEDULE") {
            Some(s) => RetryPolicy::parse(&s).map_err(|e| format!("RETRY_SCHEDULE: {e}"))?,
            None => RetryPolicy::default(),
        };
        let retry = match var("RETRY_MIN_BACKOFF") {
            Some(s) => retry.with_min_backoff(crate::time::parse_duration(&s).map_err(|e| format!("RETRY_MIN_BACKOFF: {e}"))?),
            None => retry,
        };
        let rotation_grace = match var("ROTATION_GRACE") {
            Some(s) => crate::time::parse_duration(&s).map_err(|e| format!("ROTATION_GRACE: {e}"))?,
            None => Duration::from_secs(24 * 3600),
        };
        let jwt = JwtSettings {
            public_key_pem: var("CLERK_JWT_KEY"),
            jwks_url: var("CLERK_JWKS_URL"),
            issuer: var("CLERK_ISSUER"),
            authorized_parties: var("CLERK_AUTHORIZED_PARTIES")
                .map(|s| s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
                .unwrap_or_default(),
            leeway_secs: 5,
        };
        let destinations = DestinationPolicy {
            allow_private: bool_var("ALLOW_PRIVATE_DESTINATIONS")?.unwrap_or(local),
            allow_http: bool_var("ALLOW_INSECURE_URLS")?.unwrap_or(local),
            allowlist: parse_allowlist(&var("ALLOWED_DESTINATION_SUBNETS").unwrap_or_default())?,
        };
        let secrets = match (var("SECRETS_KMS_KEY_ID"), var("SECRETS_LOCAL_KEY")) {
            (Some(k), _) => Some(SecretsKey::Kms(k)),
            (None, Some(k)) => {
                LocalCipher::from_base64(&k)?;
                Some(SecretsKey::Local(k))
            }
            (None, None) => None,
        };
        Ok(Self {
            table_name: var("TABLE_NAME").unwrap_or_else(|| "capy-webhooks".into()),
            delivery_queue_url: var("DELIVERY_QUEUE_URL"),
            retry,
            rotation_grace,
            jwt,
            destinations,
            secrets,
        })
    }

    pub fn queue_url(&self) -> Result<&str, String> {
        self.delivery_queue_url.as_deref().ok_or_else(|| "DELIVERY_QUEUE_URL is not set".to_string())
    }
}

/// The AWS SDK's shared config: region, credentials, `AWS_ENDPOINT_URL`; built once per process.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await
}

pub fn table(settings: &Settings, sdk: &aws_config::SdkConfig) -> Table {
    Table::new(aws_sdk_dynamodb::Client::new(sdk), settings.table_name.clone())
}

pub fn queue(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<SqsQueue, String> {
    Ok(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), settings.queue_url()?))
}

pub fn cipher(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<Arc<dyn SecretCipher>, String> {
    match &settings.secrets {
        Some(SecretsKey::Kms(key_id)) => Ok(Arc::new(KmsCipher::new(aws_sdk_kms::Client::new(sdk), key_id.clone()))),
        Some(SecretsKey::Local(k)) => Ok(Arc::new(LocalCipher::from_base64(k)?)),
        None => Err("set SECRETS_KMS_KEY_ID (cloud) or SECRETS_LOCAL_KEY (base64 of 32 bytes)".into()),
    }
}

pub fn authenticator(settings: &Settings, table: &Table) -> Result<Authenticator, String> {
    Ok(Authenticator::new(Arc::new(table.clone()), JwtVerifier::new(&settings.jwt)?))
}

pub fn sender(settings: &Settings) -> Sender {
    Sender::new(settings.destinations.clone())
}
