//! Configuration from the environment, checked once at start (fail fast), and the wiring
//! that turns it into ports.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::dynamo::{DEFAULT_RETENTION, Table};
use crate::adapters::secrets::{KmsCipher, LocalCipher};
use crate::adapters::sqs::SqsQueue;
use crate::auth::{Authenticator, JwtSettings, JwtVerifier};
use crate::domain::retry::RetryPolicy;
use crate::http::Sender;
use crate::ports::SecretCipher;
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
    /// The fan-out consumer's queue (`FAN_OUT_QUEUE_URL`).
    pub fan_out_queue_url: Option<String>,
    /// The jobs worker's queue (`JOBS_QUEUE_URL`): replays.
    pub jobs_queue_url: Option<String>,
    /// How long events and deliveries are kept (`RETENTION`, default 30 days).
    pub retention: Duration,
    /// Retry waits longer than this are parked in DynamoDB for the sweeper instead of held
    /// in flight on the queue (`PARK_AFTER`, default 15 min, SQS's `DelaySeconds` cap).
    pub park_after: Duration,
    /// How long a message sent outside a consumer (retry, replay, resend) may take before
    /// the sweeper sends it again (`SWEEP_GRACE`, default 15 min).
    pub sweep_grace: Duration,
    /// Endpoints per fan-out page (`FAN_OUT_PAGE_SIZE`, default 100).
    pub fan_out_page_size: usize,
    /// A conditional write before each send that claims the attempt for this long
    /// (`ATTEMPT_LEASE`, e.g. `60s`; unset or `off`: none). Off by default: it doubles the
    /// happy path's writes to prevent duplicates receivers already dedupe (README).
    pub attempt_lease: Option<Duration>,
    /// The origin portal URLs point at (`PORTAL_BASE_URL`, e.g. `https://api.example.com`);
    /// unset, the origin the mint request came in on.
    pub portal_base_url: Option<String>,
    /// The operator's EventBridge bus (`OPERATOR_EVENT_BUS`, a name or ARN); unset or
    /// empty: no operator events.
    pub operator_event_bus: Option<String>,
    /// How long a failure streak lasts before it disables the endpoint (`DISABLE_AFTER`,
    /// default 5 days; shorter only for tests and drills).
    pub disable_after: Duration,
    /// How long before `disable_at` `capy.endpoint.disable_scheduled` goes out
    /// (`DISABLE_WARNING_LEAD`, default 24 h).
    pub disable_warning_lead: Duration,
}

/// A lease shorter than a deliver invocation can last would lapse while its holder is still
/// sending, and let another copy send again.
const MIN_ATTEMPT_LEASE: Duration = Duration::from_secs(60);

fn attempt_lease(v: &str) -> Result<Duration, String> {
    crate::domain::time::parse_duration(v)
        .ok()
        .filter(|d| *d >= MIN_ATTEMPT_LEASE)
        .ok_or_else(|| {
            format!(
                "ATTEMPT_LEASE must be off or at least 60s (a deliver invocation's sends and \
                 records may take its whole 60 s), not {v:?}"
            )
        })
}

fn duration_var(name: &str, default: Duration) -> Result<Duration, String> {
    match var(name) {
        Some(s) => crate::domain::time::parse_duration(&s).map_err(|e| format!("{name}: {e}")),
        None => Ok(default),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
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
            Some(s) => retry.with_min_backoff(
                crate::domain::time::parse_duration(&s)
                    .map_err(|e| format!("RETRY_MIN_BACKOFF: {e}"))?,
            ),
            None => retry,
        };
        let rotation_grace = match var("ROTATION_GRACE") {
            Some(s) => crate::domain::time::parse_duration(&s)
                .map_err(|e| format!("ROTATION_GRACE: {e}"))?,
            None => Duration::from_secs(24 * 3600),
        };
        let jwt = JwtSettings {
            public_key_pem: var("CLERK_JWT_KEY"),
            jwks_url: var("CLERK_JWKS_URL"),
            issuer: var("CLERK_ISSUER"),
            authorized_parties: var("CLERK_AUTHORIZED_PARTIES")
                .map(|s| {
                    s.split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
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
            fan_out_queue_url: var("FAN_OUT_QUEUE_URL"),
            jobs_queue_url: var("JOBS_QUEUE_URL"),
            retention: duration_var("RETENTION", DEFAULT_RETENTION)?,
            park_after: duration_var("PARK_AFTER", Duration::from_secs(15 * 60))?,
            sweep_grace: duration_var("SWEEP_GRACE", Duration::from_secs(15 * 60))?,
            attempt_lease: match var("ATTEMPT_LEASE").as_deref() {
                None | Some("off") => None,
                Some(v) => Some(attempt_lease(v)?),
            },
            fan_out_page_size: match var("FAN_OUT_PAGE_SIZE") {
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("FAN_OUT_PAGE_SIZE must be 1 to 1000, not {v:?}"))?,
                None => crate::services::fan_out::PAGE_SIZE,
            },
            portal_base_url: var("PORTAL_BASE_URL")
                .map(|u| portal_base_url(&u))
                .transpose()?,
            operator_event_bus: var("OPERATOR_EVENT_BUS"),
            disable_after: duration_var(
                "DISABLE_AFTER",
                crate::domain::health::DISABLE_AFTER
                    .to_std()
                    .unwrap_or(Duration::MAX),
            )?,
            disable_warning_lead: duration_var(
                "DISABLE_WARNING_LEAD",
                crate::services::operational::DEFAULT_DISABLE_WARNING_LEAD,
            )?,
        })
    }

    pub fn fan_out_queue_url(&self) -> Result<&str, String> {
        self.fan_out_queue_url
            .as_deref()
            .ok_or_else(|| "FAN_OUT_QUEUE_URL is not set".to_string())
    }

    pub fn queue_url(&self) -> Result<&str, String> {
        self.delivery_queue_url
            .as_deref()
            .ok_or_else(|| "DELIVERY_QUEUE_URL is not set".to_string())
    }
}

/// `PORTAL_BASE_URL`: an http(s) origin (a path prefix is kept), without a trailing slash.
fn portal_base_url(v: &str) -> Result<String, String> {
    let u = url::Url::parse(v).map_err(|e| format!("PORTAL_BASE_URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "PORTAL_BASE_URL must be an http(s) URL without query or fragment, not {v:?}"
        ));
    }
    Ok(v.trim_end_matches('/').to_owned())
}

mod sdk;

pub use sdk::*;

pub fn table(settings: &Settings, sdk: &aws_config::SdkConfig) -> Table {
    Table::new(
        aws_sdk_dynamodb::Client::new(sdk),
        settings.table_name.clone(),
    )
    .with_retention(settings.retention)
}

pub fn fan_out_queue(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<SqsQueue, String> {
    Ok(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        settings.fan_out_queue_url()?,
    ))
}

pub fn jobs_queue(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<SqsQueue, String> {
    Ok(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        settings
            .jobs_queue_url
            .as_deref()
            .ok_or("JOBS_QUEUE_URL is not set")?,
    ))
}

pub fn queue(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<SqsQueue, String> {
    Ok(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        settings.queue_url()?,
    ))
}

pub fn cipher(
    settings: &Settings,
    sdk: &aws_config::SdkConfig,
) -> Result<Arc<dyn SecretCipher>, String> {
    match &settings.secrets {
        Some(SecretsKey::Kms(key_id)) => Ok(Arc::new(KmsCipher::new(
            aws_sdk_kms::Client::new(sdk),
            key_id.clone(),
        ))),
        Some(SecretsKey::Local(k)) => Ok(Arc::new(LocalCipher::from_base64(k)?)),
        None => {
            Err("set SECRETS_KMS_KEY_ID (cloud) or SECRETS_LOCAL_KEY (base64 of 32 bytes)".into())
        }
    }
}

pub fn authenticator(settings: &Settings, table: &Table) -> Result<Authenticator, String> {
    Ok(Authenticator::new(
        Arc::new(table.clone()),
        JwtVerifier::new(&settings.jwt)?,
    ))
}

pub fn sender(settings: &Settings) -> Sender {
    Sender::new(settings.destinations.clone())
}

#[cfg(test)]
mod tests;
