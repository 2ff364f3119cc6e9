//! The one wiring point: settings in, [`Deps`] out. Lambda mains, `capy serve`, the tests
//! and the benchmarks all build their dependencies here (tests and benchmarks may swap a
//! port afterwards: every field of `Deps` is public).
//!
//! SDK clients are built once per process, but not all at init: the DynamoDB client (every
//! function reads the table) is built here, KMS and SQS on first use, so a function that
//! never seals a secret or sends a message never pays for their clients (130–220 µs of a
//! cold start each, `make coldstart-phases`). Configuration is still checked here, so a bad
//! setting fails the cold start, not a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::adapters::eventbridge::{EventBridgeBus, NoBus};
use crate::adapters::memory::{MemoryStores, SeparateReads};
use crate::adapters::sqs::SqsQueue;
use crate::auth::Authenticator;
use crate::config::{self, SecretsKey, Settings};
use crate::domain::delivery::DeliveryMessage;
use crate::domain::endpoint::SealedSecret;
use crate::domain::event::FanOutMessage;
use crate::domain::signing::SigningSecret;
use crate::metrics::Metrics;
use crate::ports::*;
use crate::services::{Deps, Policy};

/// Which queues a process cannot run without (the others fail loudly if ever used).
#[derive(Debug, Clone, Copy, Default)]
pub struct Requires {
    pub delivery_queue: bool,
    pub fan_out_queue: bool,
    /// How `OPERATOR_EVENT_BUS` becomes a bus, for the functions that put events on it;
    /// `None`: the function puts none there (the setting is ignored) and its binary links no
    /// EventBridge client — the API's, which has to stay under the artifact budget.
    pub operator_bus: Option<OperatorBusFactory>,
    /// Where the SDK's config comes from: `None`, the Lambda environment alone (the functions:
    /// their binaries link no default credential chain); [`any_environment`] for `capy serve`
    /// and the benchmarks.
    pub sdk: Option<SdkLoader>,
}

pub type SdkLoader = fn() -> Pin<Box<dyn Future<Output = aws_config::SdkConfig> + Send>>;

/// The SDK's config wherever the process runs: the Lambda environment, or the default
/// loader's chains (profiles, SSO, IMDS) and `AWS_ENDPOINT_URL` for an emulator.
pub fn any_environment() -> Pin<Box<dyn Future<Output = aws_config::SdkConfig> + Send>> {
    Box::pin(config::aws_config())
}

pub type OperatorBusFactory = fn(&aws_config::SdkConfig, &str) -> Arc<dyn OperatorBus>;

/// The operator bus on EventBridge (the delivery, fan-out and dead-letter consumers, `capy serve`).
pub fn eventbridge_bus(sdk: &aws_config::SdkConfig, bus: &str) -> Arc<dyn OperatorBus> {
    Arc::new(EventBridgeBus::new(sdk, bus))
}

pub fn policy(settings: &Settings) -> Policy {
    Policy {
        destinations: settings.destinations.clone(),
        rotation_grace: settings.rotation_grace,
        retry: settings.retry.clone(),
        retention: settings.retention,
        park_after: settings.park_after,
        attempt_lease: settings.attempt_lease,
        sweep_grace: settings.sweep_grace,
        fan_out_page_size: settings.fan_out_page_size,
        portal_base_url: settings.portal_base_url.clone(),
        disable_after: settings.disable_after,
        disable_warning_lead: settings.disable_warning_lead,
    }
}

/// Every port on AWS (or an emulator through `AWS_ENDPOINT_URL`).
pub async fn aws(settings: &Settings, requires: Requires) -> Result<Deps, String> {
    let sdk = match requires.sdk {
        Some(load) => load().await,
        None => config::lambda_aws_config()?,
    };
    let table = config::table(settings, &sdk);
    let delivery = lazy_queue(settings, &sdk, requires.delivery_queue, config::queue)?;
    let fan_out = lazy_queue(
        settings,
        &sdk,
        requires.fan_out_queue,
        config::fan_out_queue,
    )?;
    // Only the replay route and the jobs worker send to it; they fail loudly without it.
    let jobs_queue = lazy_queue(settings, &sdk, false, config::jobs_queue)?;
    let cipher: Arc<dyn SecretCipher> = match &settings.secrets {
        // Local AES key: no client, nothing to defer.
        Some(SecretsKey::Local(_)) | None => config::cipher(settings, &sdk)?,
        Some(SecretsKey::Kms(_)) => Arc::new(LazyCipher::new(settings, &sdk, config::cipher)),
    };
    let table = Arc::new(table);
    Ok(Deps {
        auth: config::authenticator(settings, &table)?.with_portal_sessions(table.clone()),
        endpoints: table.clone(),
        deliveries: table.clone(),
        events: table.clone(),
        reader: table.clone(),
        portal_sessions: table.clone(),
        jobs: table.clone(),
        jobs_queue: jobs_queue.clone(),
        jobs_visibility: jobs_queue,
        markers: table.clone(),
        idempotency: table,
        operator_bus: match (&settings.operator_event_bus, requires.operator_bus) {
            (Some(bus), Some(make)) => make(&sdk, bus),
            _ => Arc::new(NoBus),
        },
        metrics: Metrics::stdout(),
        queue: delivery.clone(),
        visibility: delivery,
        fan_out_queue: fan_out.clone(),
        fan_out_visibility: fan_out,
        cipher,
        sender: Arc::new(config::sender(settings)),
        large_orgs: Default::default(),
        policy: policy(settings),
    })
}

/// Every port on the in-memory twins (unit tests, benchmarks of our own code).
pub fn memory(stores: &MemoryStores, policy: Policy, cipher: Arc<dyn SecretCipher>) -> Deps {
    Deps {
        auth: Authenticator::new(stores.keys.clone(), None)
            .with_portal_sessions(stores.portal_sessions.clone()),
        endpoints: stores.endpoints.clone(),
        deliveries: stores.deliveries.clone(),
        events: stores.events.clone(),
        reader: Arc::new(SeparateReads {
            endpoints: stores.endpoints.clone(),
            deliveries: stores.deliveries.clone(),
            events: stores.events.clone(),
        }),
        idempotency: stores.idempotency.clone(),
        markers: stores.markers.clone(),
        operator_bus: Arc::new(NoBus),
        metrics: Metrics::off(),
        portal_sessions: stores.portal_sessions.clone(),
        jobs: stores.jobs.clone(),
        jobs_queue: stores.jobs.clone(),
        jobs_visibility: stores.queue.clone(),
        queue: stores.queue.clone(),
        visibility: stores.queue.clone(),
        fan_out_queue: stores.queue.clone(),
        fan_out_visibility: stores.queue.clone(),
        cipher,
        sender: Arc::new(crate::http::Sender::new(policy.destinations.clone())),
        large_orgs: Default::default(),
        policy,
    }
}

/// A queue whose URL is checked now and whose client is built on first use; without a URL,
/// an error at start if `required`, else a queue that fails every call.
fn lazy_queue(
    settings: &Settings,
    sdk: &aws_config::SdkConfig,
    required: bool,
    build: fn(&Settings, &aws_config::SdkConfig) -> Result<SqsQueue, String>,
) -> Result<Arc<LazySqs>, String> {
    match build(settings, sdk) {
        Ok(_) => Ok(Arc::new(OnFirstUse::new(settings, sdk, build))),
        Err(e) if required => Err(e),
        Err(e) => Ok(Arc::new(OnFirstUse::failing(e))),
    }
}

/// An SDK-backed dependency built on its first use, from the settings and SDK config taken
/// at init.
struct OnFirstUse<T> {
    settings: Option<(Settings, aws_config::SdkConfig)>,
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
            settings: Some((settings.clone(), sdk.clone())),
            build,
            built: OnceLock::new(),
        }
    }

    fn failing(why: String) -> Self {
        Self {
            settings: None,
            build: |_, _| Err("unreachable".into()),
            built: OnceLock::from(Err(why)),
        }
    }

    fn get(&self) -> Result<&T, &String> {
        self.built
            .get_or_init(|| match &self.settings {
                Some((s, sdk)) => (self.build)(s, sdk),
                None => Err("not configured".into()),
            })
            .as_ref()
    }
}

/// The KMS cipher, its client built on the first seal/open.
type LazyCipher = OnFirstUse<Arc<dyn SecretCipher>>;

#[async_trait]
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

type LazySqs = OnFirstUse<SqsQueue>;

impl LazySqs {
    fn queue(&self) -> Result<&SqsQueue, QueueError> {
        self.get().map_err(|e| QueueError::permanent(e.clone()))
    }
}

#[async_trait]
impl DeliveryQueue for LazySqs {
    async fn enqueue(&self, messages: &[DeliveryMessage]) -> Result<(), QueueError> {
        self.queue()?.enqueue(messages).await
    }
}

#[async_trait]
impl FanOutQueue for LazySqs {
    async fn request_fan_out(&self, message: &FanOutMessage) -> Result<(), QueueError> {
        self.queue()?.request_fan_out(message).await
    }
}

#[async_trait]
impl JobQueue for LazySqs {
    async fn request_job(
        &self,
        message: &crate::domain::job::JobMessage,
    ) -> Result<(), QueueError> {
        self.queue()?.request_job(message).await
    }
}

#[async_trait]
impl VisibilityControl for LazySqs {
    async fn postpone(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.queue()?.postpone(receipt_handle, delay).await
    }
}
