//! The AWS SDK's configuration and HTTP client: one per process, trusting the embedded
//! Amazon Trust Services roots on AWS, with timeouts on every attempt.

use super::var;

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
pub const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("../amazon-trust-services-roots.pem");

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
