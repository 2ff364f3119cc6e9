//! Lambda wiring shared by the thin binaries in `src/bin/`: tracing, configuration, clients
//! built once per container, and the conversion between API Gateway and the library's API.
//!
//! The binaries run on tokio's current-thread runtime: Lambda gives a container one event at
//! a time and, at the template's memory sizes, less than one vCPU, so worker threads would
//! only add their start-up (~130 µs, `make coldstart-phases`) to every cold start. Work
//! inside an event (a batch's records) still runs concurrently on that one thread.

use std::sync::{Arc, OnceLock};

use capy_shared::api::{self, ApiDeps, ApiRequest, ApiResponse, ApiSettings, Route};
use capy_shared::config::{self, Settings};
use capy_shared::delivery::{self, ConsumerDeps, DeadLetterDeps, SweeperDeps};
use capy_shared::model::SealedSecret;
use capy_shared::ports::{DeliveryQueue, QueueError, VisibilityControl};
use capy_shared::secrets::{CipherError, SecretCipher};
use capy_shared::signing::SigningSecret;
use lambda_http::{Body, RequestExt};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// JSON logs when Lambda asks for them (the template sets JSON); RUST_LOG picks the levels.
///
/// RUST_LOG is read as `Targets` (`info`, `info,capy_shared=debug`: levels per target), not
/// as an `EnvFilter`: EnvFilter's span and field matching links a regex engine, about half a
/// megabyte of every binary, for syntax no function needs. A value that does not parse
/// falls back to `info`.
pub fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_target(false).without_time();
    if json {
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .init();
    } else {
        builder.with_ansi(false).finish().with(filter).init();
    }
}

fn settings() -> Result<Settings, Error> {
    Settings::from_env(false).map_err(|e| format!("configuration: {e}").into())
}

/// Builds the API's dependencies once per process.
///
/// Every route reads the table (authentication included), so its client is built here. The
/// KMS and SQS clients are built on first use instead: only create/rotate seal secrets and
/// only publish/retry enqueue, and the read routes should not pay for clients they never
/// call (an SDK client's construction is 130–220 µs of a cold start, `make
/// coldstart-phases`). Configuration is still checked here, at init, so a bad setting fails
/// the cold start, not a request.
pub async fn api_deps(settings: &Settings, route: Route) -> Result<ApiDeps, Error> {
    let sdk = config::aws_config().await;
    let table = config::table(settings, &sdk);
    // A route that enqueues cannot start without the queue URL. The others never enqueue;
    // should one ever try, it fails loudly rather than drop the messages.
    let queue: Arc<dyn DeliveryQueue> = match LazySqs::checked(settings, &sdk) {
        Ok(queue) => Arc::new(queue),
        Err(e) if route.enqueues() => return Err(e),
        Err(e) => Arc::new(NoQueue(e.to_string())),
    };
    let cipher: Arc<dyn SecretCipher> = match &settings.secrets {
        // Local AES key: no client, nothing to defer.
        Some(config::SecretsKey::Local(_)) | None => config::cipher(settings, &sdk)?,
        Some(config::SecretsKey::Kms(_)) => {
            Arc::new(LazyCipher::new(settings, &sdk, config::cipher))
        }
    };
    Ok(ApiDeps {
        auth: config::authenticator(settings, &table)?,
        endpoints: Arc::new(table.clone()),
        deliveries: Arc::new(table.clone()),
        idempotency: Arc::new(table.clone()),
        queue,
        cipher,
        settings: ApiSettings {
            destinations: settings.destinations.clone(),
            rotation_grace: settings.rotation_grace,
            retry: settings.retry.clone(),
        },
    })
}

/// An SDK-backed dependency built on its first use, from the settings and SDK config taken
/// at init (the configuration itself is checked at init by whoever creates this).
struct OnFirstUse<T> {
    settings: Settings,
    sdk: aws_config::SdkConfig,
    build: fn(&Settings, &aws_config::SdkConfig) -> Result<T, String>,
    built: OnceLock<Result<T, String>>,
}

impl<T> OnFirstUse<T> {
    fn new(
        settings: &Settings,
        sdk: &aws_config::SdkConfig,
        build: fn(&Settings, &aws_config::SdkConfig) -> Result<T, String>,
    ) -> Self {
        Self {
            settings: settings.clone(),
            sdk: sdk.clone(),
            build,
            built: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&T, &String> {
        self.built
            .get_or_init(|| (self.build)(&self.settings, &self.sdk))
            .as_ref()
    }
}

/// The KMS cipher, its client built on the first seal/open.
type LazyCipher = OnFirstUse<Arc<dyn SecretCipher>>;

#[async_trait::async_trait]
impl SecretCipher for LazyCipher {
    async fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
    ) -> Result<SealedSecret, CipherError> {
        let cipher = self.get().map_err(|e| CipherError::Kms(e.clone()))?;
        cipher.seal(secret, context).await
    }

    async fn open(
        &self,
        sealed: &SealedSecret,
        context: &str,
    ) -> Result<SigningSecret, CipherError> {
        let cipher = self.get().map_err(|e| CipherError::Kms(e.clone()))?;
        cipher.open(sealed, context).await
    }
}

/// The SQS delivery queue, its client built on the first call.
///
/// Of the functions that hold a queue, only publish/retry enqueue on every call. The `deliver`
/// consumer touches SQS only to postpone a retry (a delivery that succeeds never does), and
/// the sweeper only when it finds overdue deliveries; a container that never needs SQS should
/// not build its client. The queue URL is checked at init all the same.
type LazySqs = OnFirstUse<capy_shared::sqs::SqsQueue>;

impl LazySqs {
    fn checked(settings: &Settings, sdk: &aws_config::SdkConfig) -> Result<Self, Error> {
        settings.queue_url()?;
        Ok(Self::new(settings, sdk, config::queue))
    }

    fn queue(&self) -> Result<&capy_shared::sqs::SqsQueue, QueueError> {
        self.get().map_err(|e| QueueError(e.clone()))
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for LazySqs {
    async fn enqueue(
        &self,
        messages: &[capy_shared::model::DeliveryMessage],
    ) -> Result<(), QueueError> {
        self.queue()?.enqueue(messages).await
    }
}

#[async_trait::async_trait]
impl VisibilityControl for LazySqs {
    async fn postpone(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.queue()?.postpone(receipt_handle, delay).await
    }
}

/// The queue of a function that has no queue URL configured: every enqueue fails.
struct NoQueue(String);

#[async_trait::async_trait]
impl DeliveryQueue for NoQueue {
    async fn enqueue(&self, _: &[capy_shared::model::DeliveryMessage]) -> Result<(), QueueError> {
        Err(QueueError(self.0.clone()))
    }
}

/// API Gateway (HTTP API, payload 2.0) request → the library's request.
pub fn to_api_request(req: lambda_http::Request) -> ApiRequest {
    let params = req
        .path_parameters()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => bytes::Bytes::new(),
        Body::Text(t) => bytes::Bytes::from(t),
        Body::Binary(b) => bytes::Bytes::from(b),
        _ => bytes::Bytes::new(),
    };
    ApiRequest {
        headers: parts.headers,
        query,
        body,
        params,
    }
}

pub fn to_lambda_response(r: ApiResponse) -> lambda_http::Response<Body> {
    lambda_http::Response::builder()
        .status(r.status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(r.body.to_string()))
        .unwrap_or_else(|_| {
            lambda_http::Response::new(Body::Text(r#"{"error":"internal error"}"#.into()))
        })
}

/// The whole of an API function's `main`.
pub async fn run_route(route: Route) -> Result<(), Error> {
    init_tracing();
    let deps = api_deps(&settings()?, route).await?;
    let deps = &deps;
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move {
            let resp = api::handle(deps, route, to_api_request(req)).await;
            Ok::<_, std::convert::Infallible>(to_lambda_response(resp))
        },
    ))
    .await
}

pub async fn consumer_deps(settings: &Settings) -> Result<ConsumerDeps, Error> {
    let sdk = config::aws_config().await;
    let table = config::table(settings, &sdk);
    Ok(ConsumerDeps {
        reader: Arc::new(table.clone()),
        endpoints: Arc::new(table.clone()),
        deliveries: Arc::new(table),
        cipher: config::cipher(settings, &sdk)?,
        visibility: Arc::new(LazySqs::checked(settings, &sdk)?),
        sender: config::sender(settings),
        retry: settings.retry.clone(),
    })
}

pub async fn run_deliver() -> Result<(), Error> {
    init_tracing();
    let deps = consumer_deps(&settings()?).await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            Ok::<_, Error>(delivery::deliver_batch(deps, event.payload).await)
        },
    ))
    .await
}

pub async fn run_dead_letter() -> Result<(), Error> {
    init_tracing();
    let settings = settings()?;
    let sdk = config::aws_config().await;
    let deps = DeadLetterDeps {
        deliveries: Arc::new(config::table(&settings, &sdk)),
    };
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            Ok::<_, Error>(delivery::dead_letter_batch(deps, event.payload).await)
        },
    ))
    .await
}

pub async fn run_sweeper() -> Result<(), Error> {
    init_tracing();
    let settings = settings()?;
    let sdk = config::aws_config().await;
    let table = config::table(&settings, &sdk);
    let deps = SweeperDeps {
        deliveries: Arc::new(table),
        queue: Arc::new(LazySqs::checked(&settings, &sdk)?),
        grace: match std::env::var("SWEEP_GRACE") {
            Ok(v) if !v.trim().is_empty() => {
                capy_shared::time::parse_duration(&v).map_err(|e| format!("SWEEP_GRACE: {e}"))?
            }
            _ => std::time::Duration::from_secs(15 * 60),
        },
    };
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let n = delivery::sweep(deps).await?;
            Ok::<_, Error>(serde_json::json!({ "reenqueued": n }))
        },
    ))
    .await
}
