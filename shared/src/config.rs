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

/// The AWS SDK's shared config: region, credentials, `AWS_ENDPOINT_URL`; built once per process.
///
/// The HTTP client is the SDK's own hyper + rustls client on aws-lc-rs, but on AWS it trusts
/// the Amazon Trust Services roots compiled into the binary instead of scanning the OS
/// certificate store, which was most of an SDK client's construction and so of a cold start.
/// Plain `http://` endpoints (moto through `AWS_ENDPOINT_URL`) go through the same client.
pub async fn aws_config() -> aws_config::SdkConfig {
    if let Some(config) = lambda_sdk_config() {
        return config;
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(sdk_http_client(SdkTrust::from_env()))
        .retry_config(sdk_retry())
        .timeout_config(sdk_timeouts());
    // Pointed at an emulator with no credentials or region configured: use dummy ones rather
    // than walk the credential chain (IMDS timeouts) and fail on a missing region.
    if var("AWS_ENDPOINT_URL").is_some() {
        if var("AWS_ACCESS_KEY_ID").is_none() && var("AWS_PROFILE").is_none() {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "emulator",
            ));
        }
        if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
    }
    loader.load().await
}

fn sdk_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(5)
}

/// The SDK sets no limit on an attempt by default: a connection that never answers would
/// hold a consumer's batch (and `capy serve`'s poller) forever. An attempt that outlives
/// the longest long poll (20 s) is abandoned and retried like any transient fault.
fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(25))
        .build()
}

/// The SDK's shared config from the Lambda environment alone, for the functions: their
/// binaries then link none of the default loader's provider chains (STS, SSO, profile files,
/// IMDS, ECS), ~300 KB of the API's artifact. Missing variables fail the cold start.
pub fn lambda_aws_config() -> Result<aws_config::SdkConfig, String> {
    lambda_sdk_config().ok_or_else(|| {
        "the Lambda environment must set AWS_LAMBDA_RUNTIME_API, AWS_REGION, AWS_ACCESS_KEY_ID \
         and AWS_SECRET_ACCESS_KEY"
            .into()
    })
}

/// Inside Lambda the environment already holds what the SDK needs: the region and the
/// execution role's credentials. Taking them directly skips the default loader's provider
/// chains (profile files, ECS/IMDS providers, a dozen env-or-profile lookups), which is a
/// measurable part of a cold start. Anywhere else, or with anything missing, `None`.
fn lambda_sdk_config() -> Option<aws_config::SdkConfig> {
    var("AWS_LAMBDA_RUNTIME_API")?;
    let region = var("AWS_REGION")?;
    var("AWS_ACCESS_KEY_ID")?;
    var("AWS_SECRET_ACCESS_KEY")?;
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .http_client(sdk_http_client(SdkTrust::from_env()))
        .retry_config(sdk_retry())
        .timeout_config(sdk_timeouts());
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    Some(builder.build())
}

/// Which roots the SDK's client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkTrust {
    /// Amazon Trust Services only (Amazon Root CA 1–4 and the Starfield Services G2 root that
    /// cross-signs them), compiled in: the CAs of every AWS service endpoint. Five roots
    /// parse in microseconds each time the SDK builds a connector (once per client).
    Aws,
    /// The OS certificate store, for endpoints that are not AWS's (an emulator or a proxy
    /// over https), where the cost of reading it does not matter.
    System,
}

impl SdkTrust {
    /// `CAPY_SDK_TRUST=aws|system` if set; else `System` when `AWS_ENDPOINT_URL` points the
    /// SDK somewhere else than AWS, `Aws` otherwise.
    pub fn from_env() -> Self {
        match var("CAPY_SDK_TRUST").as_deref() {
            Some("system") => Self::System,
            Some(_) => Self::Aws,
            None if var("AWS_ENDPOINT_URL").is_some() => Self::System,
            None => Self::Aws,
        }
    }
}

/// The Amazon Trust Services roots, PEM (the form the SDK's trust store takes).
pub const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("amazon-trust-services-roots.pem");

/// The SDK's HTTPS client; share it between clients (cheap to clone).
pub fn sdk_http_client(trust: SdkTrust) -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let store = match trust {
        SdkTrust::Aws => TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS),
        SdkTrust::System => TrustStore::default(),
    };
    let tls = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .expect("a trust store of PEM certificates");
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https();
    aws_sdk_dynamodb::config::SharedHttpClient::new(ConnectorOnFirstRequest(client))
}

/// The SDK's hyper client, minus the connector it builds and throws away at every client's
/// construction.
///
/// `HyperClient::validate_base_client_config` builds a whole HTTPS connector (TLS config,
/// trust store) each time an SDK client is constructed, only so that an OS certificate
/// store is read at init rather than on the first request; the connector is then dropped and
/// built again, cached, on the first request. With embedded roots there is nothing to front
/// load (and the OS store is only used against emulators, where it does not matter when it
/// is read), so the eager build is skipped: one connector per process instead of one per
/// client plus one. Everything else is delegated unchanged.
#[derive(Debug)]
struct ConnectorOnFirstRequest(aws_sdk_dynamodb::config::SharedHttpClient);

impl aws_smithy_runtime_api::client::http::HttpClient for ConnectorOnFirstRequest {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

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
