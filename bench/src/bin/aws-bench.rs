//! AWS requests, DynamoDB capacity units and dollars per delivery on the happy path, against
//! moto. Publish goes through the API handler (`api::handle`, the publish function), the
//! fan-out consumer (`consumers::fan_out::fan_out_batch`) and the deliver consumer
//! (`consumers::deliver::deliver_batch`) run in this process, fed by pollers that do what
//! Lambda's event source mapping does (receive 10, hand over an `SqsEvent`, delete what the
//! batch response acknowledges), and the deliver consumer sends real signed requests to a
//! loopback receiver. Every SDK request is counted by an interceptor on the client configs,
//! per role, and every item written or read is sized by DynamoDB's rules.
//!
//! `--duplicates N` measures something else: duplicate sends per N fault-free deliveries
//! through the real `capy serve` (4 pollers) against moto.
//!
//! `cargo run --release -p capy-bench --bin aws-bench -- --help`

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::config::ConfigBag;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::operation::send_message::SendMessageInput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use capy_bench::{
    Receiver, ReceiverOptions, item_size, median, read_units, sqs_event, sqs_record, write_units,
};
use capy_shared::adapters::dynamo::{DELIVERY_SHARDS, EVENT_SHARDS, Table};
use capy_shared::adapters::memory::MemoryStores;
use capy_shared::adapters::secrets::LocalCipher;
use capy_shared::adapters::sqs::SqsQueue;
use capy_shared::api::{ApiRequest, PathParams, Route, handle};
use capy_shared::auth::{Authenticator, mint_api_key};
use capy_shared::config::Settings;
use capy_shared::consumers::deliver::deliver_batch;
use capy_shared::consumers::fan_out::fan_out_batch;
use capy_shared::domain::delivery::DeliveryState;
use capy_shared::domain::endpoint::Endpoint;
use capy_shared::domain::ids::{DeliveryId, EndpointId, EventId};
use capy_shared::domain::signing::SigningSecret;
use capy_shared::domain::time;
use capy_shared::http::Sender;
use capy_shared::ports::{ApiKeyStore, DeliveryLog, EndpointStore, SecretCipher};
use capy_shared::services::Deps;
use capy_shared::ssrf::DestinationPolicy;
use capy_shared::wiring;
use clap::Parser;
use futures::StreamExt;

#[derive(Parser, Debug)]
#[command(
    about = "AWS requests, DynamoDB units and $ per delivery (happy path) against moto, counted by an SDK interceptor"
)]
struct Args {
    /// Cases as PAYLOAD_BYTESxENDPOINTS, comma-separated; `:nokey` publishes that case without
    /// an idempotency key (1 KB x 1 runs both ways: the key decides its target).
    #[arg(
        long,
        default_value = "1024x1,1024x1:nokey,1024x10,10240x10,10240x1000"
    )]
    cases: String,
    /// Deliveries per case, at least (events = deliveries / endpoints, at least 1).
    #[arg(long, default_value_t = 200)]
    deliveries: usize,
    /// Deliver pollers running at once (concurrent deliver invocations).
    #[arg(long, default_value_t = 4)]
    pollers: usize,
    /// How long the loopback receiver takes to answer: what a deliver invocation waits on.
    #[arg(long, default_value_t = 100)]
    receiver_ms: u64,
    /// Publish every case without an idempotency key (saves the claim's write).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Fan-outs whose time until every delivery is enqueued is measured (0 to skip).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    enqueue: Vec<usize>,
    /// Publishes per organization for the latency ratio (1 endpoint vs 1,000), alternating.
    #[arg(long, default_value_t = 21)]
    latency_runs: usize,
    /// Memory of every function (MB); default: template.yaml's FunctionMemorySize default.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Instead of everything above: duplicate sends per N fault-free deliveries through the
    /// real `capy serve` (4 pollers) against moto, a loopback receiver counting webhook-ids.
    #[arg(long)]
    duplicates: Option<usize>,
    /// Endpoints for `--duplicates` (events = N / endpoints).
    #[arg(long, default_value_t = 100)]
    duplicate_endpoints: usize,
    /// `--duplicates` publishes the next event only while both queues hold fewer messages
    /// than this (0: publish every event at once).
    #[arg(long, default_value_t = 300)]
    duplicate_backlog: usize,
    /// The `capy` binary for `--duplicates`.
    #[arg(long, env = "CAPY_BIN", default_value_os_t = workspace().join("target/debug/capy"))]
    capy: PathBuf,
    /// Use this moto (or AWS-compatible) endpoint instead of starting moto_server.
    #[arg(long, env = "BENCH_AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// moto_server to start on a free port.
    #[arg(long, default_value_os_t = workspace().join(".venv/bin/moto_server"))]
    moto_server: PathBuf,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------------- prices

/// us-east-1 on-demand list prices, first tier, free tiers ignored; in effect since
/// 2024-11-01 (DynamoDB's on-demand price cut), as the issue's price table gives them.
struct Prices;
impl Prices {
    const AS_OF: &'static str = "2024-11-01";
    const DYNAMO_PER_M_WRITE_UNITS: f64 = 0.625;
    const DYNAMO_PER_M_READ_UNITS: f64 = 0.125;
    /// Standard queue; every request is billed per 64 KB chunk of its payload.
    const SQS_PER_M_REQUESTS: f64 = 0.40;
    const SQS_CHUNK: usize = 64 * 1024;
    const LAMBDA_PER_M_REQUESTS: f64 = 0.20;
    const LAMBDA_ARM64_PER_GB_S: f64 = 0.000_013_333_4;
    /// HTTP API, per request per 512 KB.
    const HTTP_API_PER_M: f64 = 1.00;
    const HTTP_API_CHUNK: usize = 512 * 1024;
    /// Data transfer out to the internet, first 10 TB/month: not in the targets' price list,
    /// printed beside them.
    const EGRESS_PER_GB: f64 = 0.09;
}

/// $ per million deliveries the issue sets, by (payload bytes, endpoints).
fn target(payload: usize, endpoints: usize) -> Option<f64> {
    match (payload, endpoints) {
        (1024, 1) => Some(3.50),
        (1024, 10) => Some(1.50),
        (10240, 10) => Some(2.00),
        (10240, 1000) => Some(1.50),
        _ => None,
    }
}

/// template.yaml's `FunctionMemorySize` default (every function's `MemorySize`).
fn template_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string(workspace().join("template.yaml")).ok()?;
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != "FunctionMemorySize:");
    lines.next()?;
    lines
        .take(6)
        .find_map(|l| l.trim().strip_prefix("Default:"))
        .and_then(|v| v.trim().parse().ok())
}

// ------------------------------------------------------------------------ request counting

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Role {
    Publish,
    FanOut,
    Deliver,
    /// Lambda's event source mapping: receives and deletes (billed SQS requests).
    Esm,
    /// Setup and verification: never in a figure.
    Setup,
    /// A portal chart's `GET …/stats` after the case: its own figure, not in the cost.
    StatsRequest,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publish => "publish fn",
            Role::FanOut => "fan-out fn",
            Role::Deliver => "deliver fn",
            Role::Esm => "event source mapping",
            Role::Setup => "setup",
            Role::StatsRequest => "stats request",
        }
    }
}

/// What kind of item a key names (by its pk/sk shape, shared/src/adapters/dynamo/mod.rs).
fn item_kind(pk: &str, sk: &str) -> &'static str {
    if pk.starts_with("EP#") {
        "delivery"
    } else if sk.starts_with("EVT#") {
        "event"
    } else if sk.starts_with("FAN#") {
        "fan-out page"
    } else if sk.starts_with("ADD#") {
        "recipient"
    } else if pk.starts_with("IDEM#") {
        "publish claim"
    } else if pk.starts_with("KEY#") {
        "api key"
    } else if sk.starts_with("EP#") {
        "endpoint"
    } else {
        "other"
    }
}

fn str_of<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

fn kind_of_item(item: &HashMap<String, AttributeValue>) -> &'static str {
    item_kind(str_of(item, "pk"), str_of(item, "sk"))
}

#[derive(Debug, Default, Clone)]
struct Stats {
    requests: BTreeMap<(Role, String, String), u64>,
    write_units: BTreeMap<(Role, &'static str), f64>,
    read_units: BTreeMap<(Role, &'static str), f64>,
    /// (bytes, items) of every item written or read, by kind.
    item_bytes: BTreeMap<&'static str, (usize, usize)>,
    sqs_chunks: BTreeMap<Role, u64>,
    empty_receives: BTreeMap<Role, u64>,
    /// Every request's round trip (send to deserialized answer), in order.
    latency: Vec<(Role, String, Duration)>,
    /// UpdateItem keys: billed at the larger of the item before and after, so sized from the
    /// stored item once the case is done.
    updates: Vec<(Role, HashMap<String, AttributeValue>)>,
}

impl Stats {
    fn requests_of(&self, role: Role) -> u64 {
        self.requests
            .iter()
            .filter(|((r, _, _), _)| *r == role)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One SDK client's interceptor: counts its requests (retries included), sizes its items.
#[derive(Debug, Clone)]
struct Meter {
    role: Role,
    stats: Arc<Mutex<Stats>>,
}

/// What a read's request said, for its response: consistency and the kinds asked for.
#[derive(Debug, Clone)]
struct ReadRequest {
    consistent: bool,
    /// BatchGetItem: the kind of every key asked for; GetItem/Query: one kind.
    kinds: Vec<&'static str>,
}

impl Storable for ReadRequest {
    type Storer = StoreReplace<Self>;
}

impl Meter {
    fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn wrote(&self, item: &HashMap<String, AttributeValue>) {
        let kind = kind_of_item(item);
        let size = item_size(item);
        self.with(|s| {
            *s.write_units.entry((self.role, kind)).or_default() += write_units(size);
            let b = s.item_bytes.entry(kind).or_default();
            b.0 += size;
            b.1 += 1;
        });
    }
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "capy-bench-meter"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        if let Some(i) = input.downcast_ref::<PutItemInput>() {
            if let Some(item) = i.item() {
                self.wrote(item);
            }
        } else if let Some(i) = input.downcast_ref::<BatchWriteItemInput>() {
            for reqs in i.request_items().into_iter().flat_map(|m| m.values()) {
                for r in reqs {
                    if let Some(p) = r.put_request() {
                        self.wrote(p.item());
                    } else if let Some(d) = r.delete_request() {
                        self.wrote(d.key());
                    }
                }
            }
        } else if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            if let Some(k) = i.key() {
                self.with(|s| s.updates.push((self.role, k.clone())));
            }
        } else if let Some(i) = input.downcast_ref::<DeleteItemInput>() {
            // Billed at the deleted item's size, which the key alone does not tell: 1 unit.
            if let Some(k) = i.key() {
                self.wrote(k);
            }
        } else if let Some(i) = input.downcast_ref::<GetItemInput>() {
            let kind = i.key().map(kind_of_item).unwrap_or("other");
            cfg.interceptor_state().store_put(ReadRequest {
                consistent: i.consistent_read().unwrap_or(false),
                kinds: vec![kind],
            });
        } else if let Some(i) = input.downcast_ref::<BatchGetItemInput>() {
            let mut kinds = Vec::new();
            let mut consistent = false;
            for ka in i.request_items().into_iter().flat_map(|m| m.values()) {
                consistent |= ka.consistent_read().unwrap_or(false);
                kinds.extend(ka.keys().iter().map(kind_of_item));
            }
            cfg.interceptor_state()
                .store_put(ReadRequest { consistent, kinds });
        } else if let Some(i) = input.downcast_ref::<QueryInput>() {
            let values = i.expression_attribute_values();
            let get = |name: &str| {
                values
                    .and_then(|v| v.get(name))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
            };
            let pk = get(":pk").unwrap_or("");
            let sk = values
                .into_iter()
                .flat_map(|v| v.iter())
                .filter(|(k, _)| k.as_str() != ":pk")
                .filter_map(|(_, v)| v.as_s().ok())
                .find(|v| v.contains('#'))
                .map(String::as_str)
                .unwrap_or("");
            let kind = if i.index_name().is_some() {
                "sweep index"
            } else {
                item_kind(pk, sk)
            };
            cfg.interceptor_state().store_put(ReadRequest {
                consistent: i.consistent_read().unwrap_or(false),
                kinds: vec![kind],
            });
        } else if let Some(i) = input.downcast_ref::<SendMessageBatchInput>() {
            let bytes: usize = i.entries().iter().map(|e| e.message_body().len()).sum();
            cfg.interceptor_state().store_put(SqsPayload(bytes));
        } else if let Some(i) = input.downcast_ref::<SendMessageInput>() {
            let bytes = i.message_body().map(str::len).unwrap_or(0);
            cfg.interceptor_state().store_put(SqsPayload(bytes));
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        let chunks = if service.eq_ignore_ascii_case("sqs") {
            let bytes = cfg.load::<SqsPayload>().map(|p| p.0).unwrap_or(0);
            Some(bytes.div_ceil(Prices::SQS_CHUNK).max(1) as u64)
        } else {
            None
        };
        cfg.interceptor_state().store_put(SentAt(Instant::now()));
        self.with(|s| {
            *s.requests.entry((self.role, service, op)).or_default() += 1;
            if let Some(c) = chunks {
                *s.sqs_chunks.entry(self.role).or_default() += c;
            }
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(sent), Some(m)) = (cfg.load::<SentAt>(), cfg.load::<Metadata>()) {
            let took = sent.0.elapsed();
            let op = m.name().to_owned();
            self.with(|s| s.latency.push((self.role, op, took)));
        }
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        if let Some(o) = output.downcast_ref::<ReceiveMessageOutput>() {
            if o.messages().is_empty() {
                self.with(|s| *s.empty_receives.entry(self.role).or_default() += 1);
            }
            return Ok(());
        }
        let Some(req) = cfg.load::<ReadRequest>().cloned() else {
            return Ok(());
        };
        let mut units: Vec<(&'static str, f64)> = Vec::new();
        let mut read: Vec<(&'static str, usize)> = Vec::new();
        if let Some(o) = output.downcast_ref::<GetItemOutput>() {
            // A miss still costs the minimum.
            let size = o.item().map(item_size).unwrap_or(0);
            if let Some(item) = o.item() {
                read.push((kind_of_item(item), size));
            }
            units.push((req.kinds[0], read_units(size, req.consistent)));
        } else if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
            // Each item rounded up on its own; each key that found nothing costs the minimum.
            let mut missing: HashMap<&'static str, usize> = HashMap::new();
            for k in &req.kinds {
                *missing.entry(k).or_default() += 1;
            }
            for item in o.responses().into_iter().flat_map(|m| m.values()).flatten() {
                let kind = kind_of_item(item);
                read.push((kind, item_size(item)));
                units.push((kind, read_units(item_size(item), req.consistent)));
                if let Some(n) = missing.get_mut(kind) {
                    *n = n.saturating_sub(1);
                }
            }
            for (kind, n) in missing {
                units.push((kind, n as f64 * read_units(0, req.consistent)));
            }
        } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
            // The whole response rounded up once (items a filter dropped are not seen here;
            // none of the happy path's queries filters).
            let size: usize = o.items().iter().map(item_size).sum();
            units.push((req.kinds[0], read_units(size, req.consistent)));
            read.extend(o.items().iter().map(|i| (kind_of_item(i), item_size(i))));
        }
        self.with(|s| {
            for (kind, size) in read {
                let b = s.item_bytes.entry(kind).or_default();
                b.0 += size;
                b.1 += 1;
            }
            for (kind, u) in units {
                *s.read_units.entry((self.role, kind)).or_default() += u;
            }
        });
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct SqsPayload(usize);

#[derive(Debug, Clone, Copy)]
struct SentAt(Instant);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

impl Storable for SqsPayload {
    type Storer = StoreReplace<Self>;
}

// ------------------------------------------------------------------------------- the stack

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_moto(path: &PathBuf) -> (Moto, String) {
    let port = free_port();
    let child = Command::new(path)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start {} ({e}); `make venv` installs it",
                path.display()
            )
        });
    let guard = Moto(child);
    wait_for_port(port, "moto_server");
    (guard, format!("http://127.0.0.1:{port}"))
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        EndpointId::new()
            .to_string()
            .to_lowercase()
            .replace('_', "-")
    )
}

struct Clients {
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

fn clients(sdk: &aws_config::SdkConfig, role: Role, stats: &Arc<Mutex<Stats>>) -> Clients {
    let meter = Meter {
        role,
        stats: stats.clone(),
    };
    Clients {
        dynamo: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(meter.clone())
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(meter)
                .build(),
        ),
    }
}

/// Function wall times (each invocation), for Lambda's GB-seconds.
#[derive(Debug, Default, Clone)]
struct Timings {
    publish: Vec<Duration>,
    fan_out: Vec<Duration>,
    deliver: Vec<Duration>,
}

/// One table, one delivery queue and one fan-out queue, and a `Deps` per function, each
/// with its own metered clients.
struct Env {
    table: String,
    delivery_url: String,
    fan_out_url: String,
    stats: Arc<Mutex<Stats>>,
    setup: Clients,
    setup_table: Table,
    publish: Deps,
    fan_out: Deps,
    deliver: Deps,
    stats_request: Deps,
    esm: aws_sdk_sqs::Client,
    timings: Mutex<Timings>,
    cipher: Arc<LocalCipher>,
}

fn destinations() -> DestinationPolicy {
    DestinationPolicy {
        allow_private: true,
        allow_http: true,
        ..Default::default()
    }
}

impl Env {
    async fn new(sdk: &aws_config::SdkConfig) -> Self {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let setup = clients(sdk, Role::Setup, &stats);
        let table = unique("capy-bench");
        let setup_table = Table::new(setup.dynamo.clone(), &table);
        setup_table.ensure().await.expect("table");
        let mut urls = Vec::new();
        for q in ["deliveries", "fanout"] {
            let url = setup
                .sqs
                .create_queue()
                .queue_name(unique(&format!("capy-bench-{q}")))
                .attributes(QueueAttributeName::VisibilityTimeout, "60")
                .send()
                .await
                .expect("create queue")
                .queue_url
                .expect("queue url");
            urls.push(url);
        }
        let cipher = Arc::new(LocalCipher::new([7; 32]));
        let settings = Settings::from_env(true).expect("settings from the environment");
        let deps = |role: Role| {
            let c = clients(sdk, role, &stats);
            let t = Arc::new(Table::new(c.dynamo.clone(), &table));
            let delivery = Arc::new(SqsQueue::new(c.sqs.clone(), &urls[0]));
            let fan_out = Arc::new(SqsQueue::new(c.sqs.clone(), &urls[1]));
            let mut policy = wiring::policy(&settings);
            policy.destinations = destinations();
            // Every port the happy path touches on the metered clients; the rest (jobs,
            // portal sessions, the operator bus, metrics) stay on the twins.
            let mut d = wiring::memory(&MemoryStores::default(), policy, cipher.clone());
            d.auth = Authenticator::new(t.clone(), None);
            d.endpoints = t.clone();
            d.deliveries = t.clone();
            d.events = t.clone();
            d.reader = t.clone();
            d.markers = t.clone();
            d.idempotency = t;
            d.queue = delivery.clone();
            d.visibility = delivery;
            d.fan_out_queue = fan_out.clone();
            d.fan_out_visibility = fan_out;
            d.sender = std::sync::Arc::new(Sender::new(destinations()));
            d
        };
        let (publish, fan_out, deliver) =
            (deps(Role::Publish), deps(Role::FanOut), deps(Role::Deliver));
        let stats_request = deps(Role::StatsRequest);
        let esm = clients(sdk, Role::Esm, &stats).sqs;
        Env {
            table,
            delivery_url: urls[0].clone(),
            fan_out_url: urls[1].clone(),
            stats,
            setup,
            setup_table,
            publish,
            fan_out,
            deliver,
            stats_request,
            esm,
            timings: Mutex::default(),
            cipher,
        }
    }

    /// A new API key of `org`.
    async fn key(&self, org: &str) -> String {
        let minted = mint_api_key(org, None);
        ApiKeyStore::put(&self.setup_table, &minted.record)
            .await
            .expect("api key");
        minted.key
    }

    fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The stats a portal chart asks for (the last 24 h by hour) of one endpoint, read the
    /// way the API reads them: its wall time, requests and read units, and what it counted.
    async fn stats_request(&self, org: &str, endpoint: EndpointId) -> String {
        let window = capy_shared::services::stats::Window::new(
            None,
            None,
            capy_shared::services::stats::Period::Hour,
            capy_shared::domain::time::now(),
            self.stats_request.policy.retention,
        )
        .expect("window");
        let t0 = Instant::now();
        let got = capy_shared::services::stats::endpoint_stats(
            &self.stats_request,
            org,
            endpoint,
            &window,
        )
        .await
        .expect("stats");
        let wall = t0.elapsed();
        let s = self.stats();
        let requests = s.requests_of(Role::StatsRequest);
        let units: f64 = s
            .read_units
            .iter()
            .filter(|((r, _), _)| *r == Role::StatsRequest)
            .map(|(_, u)| u)
            .sum();
        format!(
            "a 24 h stats request for one endpoint ({} delivered, {} failed, {} attempts counted): \
             {requests} DynamoDB requests, {units:.1} read units, {:.0} ms on moto",
            got.totals.delivered,
            got.totals.failed,
            got.totals.attempts,
            wall.as_secs_f64() * 1e3
        )
    }

    fn timings(&self) -> Timings {
        self.timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn time(&self, f: impl FnOnce(&mut Timings) -> &mut Vec<Duration>, d: Duration) {
        f(&mut self.timings.lock().unwrap_or_else(|e| e.into_inner())).push(d);
    }

    async fn endpoints(&self, org: &str, n: usize, receiver: &Receiver) -> Vec<EndpointId> {
        futures::stream::iter(0..n)
            .map(|i| async move {
                let id = EndpointId::new();
                let sealed = self
                    .cipher
                    .seal(&SigningSecret::generate(), &id.to_string())
                    .await
                    .expect("seal");
                let e = Endpoint {
                    description: format!("bench endpoint {i}"),
                    ..Endpoint::new(
                        id,
                        org,
                        &receiver.url(&format!("/hook/{i}")),
                        sealed,
                        time::now(),
                    )
                };
                EndpointStore::create(&self.setup_table, &e)
                    .await
                    .expect("create endpoint");
                id
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// One publish through the API handler: (event id, fan-out pending?, AWS calls, wall).
    async fn publish(
        &self,
        org: &str,
        key: &str,
        payload: &serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Published {
        let mut body = serde_json::json!({ "event_type": "invoice.paid", "payload": payload });
        if let Some(k) = idempotency_key {
            body["idempotency_key"] = serde_json::json!(k);
        }
        let body = body.to_string();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("header"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let params: PathParams = HashMap::from([("organization_id".to_owned(), org.to_owned())]);
        let req = ApiRequest {
            headers,
            query: None,
            body: body.clone().into(),
            params,
        };
        let (before, lat0) = {
            let s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            (s.requests_of(Role::Publish), s.latency.len())
        };
        let t0 = Instant::now();
        let resp = handle(&self.publish, Route::PublishEvent, req).await;
        let wall = t0.elapsed();
        let (calls, ops) = {
            let s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            let ops: Vec<(String, Duration)> = s.latency[lat0..]
                .iter()
                .filter(|(r, _, _)| *r == Role::Publish)
                .map(|(_, op, d)| (op.clone(), *d))
                .collect();
            (s.requests_of(Role::Publish) - before, ops)
        };
        assert_eq!(resp.status, 202, "publish: {}", resp.body);
        self.time(|t| &mut t.publish, wall);
        Published {
            event_id: resp.body["event_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("event_id"),
            pending: resp.body["fan_out"]["state"] == "pending",
            calls,
            wall,
            ops,
            request_bytes: body.len(),
        }
    }

    /// Runs the fan-out consumer on what its queue holds until `events` fan-outs are
    /// acknowledged.
    /// Runs the fan-out consumer until `events` messages are acknowledged and the queue is
    /// empty: a fan-out that runs out of its time budget hands the rest over on a fresh
    /// message, which this drains too.
    async fn drain_fan_out(&self, events: usize) {
        let mut acked = 0;
        let mut idle = 0;
        loop {
            let (event, receipts) = receive(&self.esm, &self.fan_out_url).await;
            if receipts.is_empty() {
                if acked >= events {
                    break;
                }
                idle += 1;
                assert!(
                    idle < 30,
                    "fan-out: {acked}/{events} acknowledged, queue empty"
                );
                continue;
            }
            let t0 = Instant::now();
            let response = fan_out_batch(&self.fan_out, event).await;
            self.time(|t| &mut t.fan_out, t0.elapsed());
            acked += acknowledge(&self.esm, &self.fan_out_url, receipts, &response).await;
        }
    }

    /// `pollers` event-source-mapping workers on the delivery queue until it is empty (every
    /// fan-out is done before this runs, so an empty queue stays empty); returns the
    /// messages acknowledged (a resumed fan-out may have sent some twice).
    async fn drain_deliveries(&self, pollers: usize) -> usize {
        let acked = AtomicUsize::new(0);
        let worker = || async {
            let mut idle = 0;
            // Two empty long polls in a row: nothing visible and nothing came back.
            while idle < 2 {
                let (event, receipts) = receive(&self.esm, &self.delivery_url).await;
                if receipts.is_empty() {
                    idle += 1;
                    continue;
                }
                idle = 0;
                let t0 = Instant::now();
                let response = deliver_batch(&self.deliver, event).await;
                self.time(|t| &mut t.deliver, t0.elapsed());
                let n = acknowledge(&self.esm, &self.delivery_url, receipts, &response).await;
                acked.fetch_add(n, Ordering::Relaxed);
            }
        };
        futures::future::join_all((0..pollers.max(1)).map(|_| worker())).await;
        let left = self.queue_depth(&self.delivery_url).await;
        if left > 0 {
            println!("  WARNING: {left} messages left on the delivery queue (in flight or failed)");
        }
        acked.load(Ordering::Relaxed)
    }

    async fn delivered(&self, pairs: &[(EventId, EndpointId)]) -> usize {
        let keys: Vec<_> = pairs
            .iter()
            .map(|(ev, ep)| (*ep, DeliveryId::for_event(*ev, *ep)))
            .collect();
        let found = DeliveryLog::get_many(&self.setup_table, &keys)
            .await
            .expect("read deliveries");
        found
            .iter()
            .filter(|d| d.state == DeliveryState::Delivered)
            .count()
    }

    async fn queue_depth(&self, url: &str) -> usize {
        let out = self
            .setup
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        out.attributes
            .unwrap_or_default()
            .values()
            .filter_map(|v| v.parse::<usize>().ok())
            .sum()
    }

    /// Sizes every UpdateItem's item as stored now and adds its write units.
    async fn settle_updates(&self) {
        let updates =
            std::mem::take(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()).updates);
        for (role, key) in updates {
            let item = self
                .setup
                .dynamo
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .consistent_read(true)
                .send()
                .await
                .expect("get updated item")
                .item
                .unwrap_or(key);
            let meter = Meter {
                role,
                stats: self.stats.clone(),
            };
            meter.wrote(&item);
        }
    }
}

struct Published {
    event_id: EventId,
    pending: bool,
    calls: u64,
    wall: Duration,
    /// Each AWS call of the request and its round trip.
    ops: Vec<(String, Duration)>,
    request_bytes: usize,
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> (SqsEvent, HashMap<String, String>) {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(SQS_BATCH as i32)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let mut receipts = HashMap::new();
    let records = out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let id = m.message_id.clone().unwrap_or_default();
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            let attrs = m.attributes.unwrap_or_default();
            let count = attrs
                .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            receipts.insert(id.clone(), receipt.clone());
            let mut record = sqs_record(id, receipt, m.body.unwrap_or_default(), count);
            for (k, v) in attrs {
                record.attributes.insert(k.as_str().to_owned(), v);
            }
            record
        })
        .collect();
    (sqs_event(records), receipts)
}

/// Deletes what the batch response did not report failed; returns how many.
async fn acknowledge(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    mut receipts: HashMap<String, String>,
    response: &aws_lambda_events::sqs::SqsBatchResponse,
) -> usize {
    for f in &response.batch_item_failures {
        receipts.remove(&f.item_identifier);
    }
    if receipts.is_empty() {
        return 0;
    }
    let entries = receipts
        .values()
        .enumerate()
        .map(|(i, r)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(r)
                .build()
                .expect("entry")
        })
        .collect();
    sqs.delete_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("delete");
    receipts.len()
}

/// An invoice-like JSON payload of exactly `bytes` bytes serialized, different for every
/// `seed`: random ids, amounts, times and a few words per line item, so it deflates as a real
/// webhook body does (~2.5× at 1 KB) rather than as a run of one character (~100×), which
/// would flatter the stored size.
fn payload(bytes: usize, seed: u64) -> serde_json::Value {
    use rand::{Rng, SeedableRng};
    const WORDS: [&str; 24] = [
        "pro",
        "plan",
        "seat",
        "monthly",
        "annual",
        "storage",
        "overage",
        "support",
        "team",
        "api",
        "calls",
        "priority",
        "addon",
        "credit",
        "discount",
        "usage",
        "compute",
        "hours",
        "premium",
        "basic",
        "bandwidth",
        "tier",
        "license",
        "renewal",
    ];
    fn id(rng: &mut rand::rngs::StdRng, prefix: &str, n: usize) -> String {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let tail: String = (0..n)
            .map(|_| B62[rng.random_range(0..B62.len())] as char)
            .collect();
        format!("{prefix}_{tail}")
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = serde_json::json!({
        "object": "invoice",
        "id": id(&mut rng, "in", 24),
        "customer": id(&mut rng, "cus", 14),
        "subscription": id(&mut rng, "sub", 24),
        "currency": "usd",
        "status": "paid",
        "lines": [],
        "memo": "",
    });
    let created: i64 = 1_790_000_000 + rng.random_range(0..10_000_000);
    v["created"] = serde_json::json!(created);
    v["customer_email"] =
        serde_json::json!(format!("user{}@example.com", rng.random_range(0..100_000)));
    loop {
        let description: Vec<&str> = (0..rng.random_range(2..5))
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect();
        let line = serde_json::json!({
            "id": format!("il_{:024x}", rng.random::<u128>() >> 32),
            "amount": rng.random_range(100..100_000),
            "quantity": rng.random_range(1..6),
            "description": description.join(" "),
            "period": {"start": created - 2_592_000, "end": created},
            "price": format!("price_{:014x}", rng.random::<u64>() >> 8),
        });
        let mut next = v.clone();
        next["lines"].as_array_mut().expect("lines").push(line);
        if next.to_string().len() > bytes {
            break;
        }
        v = next;
    }
    // The rest in words, to the byte.
    let mut memo = String::new();
    while v.to_string().len() + memo.len() < bytes {
        memo.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        memo.push(' ');
    }
    let over = v.to_string().len() + memo.len() - bytes;
    memo.truncate(memo.len() - over);
    v["memo"] = serde_json::json!(memo);
    v
}

// ----------------------------------------------------------------------------------- cases

struct Case {
    payload: usize,
    endpoints: usize,
    /// Published with an idempotency key (one claim write per event).
    keyed: bool,
    events: usize,
    deliveries: usize,
    delivered: usize,
    receiver_hits: u64,
    repeats: u64,
    publish_calls: Vec<u64>,
    api_request_bytes: usize,
    webhook_bytes: usize,
    stats: Stats,
    timings: Timings,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{} KB x {}{}",
            self.payload / 1024,
            group(self.endpoints as u64),
            if self.keyed { "" } else { " no key" }
        )
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn run_case(
    sdk: &aws_config::SdkConfig,
    args: &Args,
    payload_bytes: usize,
    endpoints: usize,
    keyed: bool,
    receiver: &Receiver,
) -> Case {
    let org = "org_bench";
    let env = Env::new(sdk).await;
    let key = env.key(org).await;
    let ids = env.endpoints(org, endpoints, receiver).await;
    let events = args.deliveries.div_ceil(endpoints).max(1);
    let body = payload(payload_bytes, 0);
    let text = body.to_string();
    println!(
        "  payload: invoice-like JSON, {} B, deflates to {} B (events store payloads over 512 B deflated)",
        text.len(),
        miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6).len()
    );
    let hits0 = receiver.hits();
    let (_, repeats0) = receiver.ids();
    // Only what the functions and the event source mapping do from here on.
    env.stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .clear();
    let mut published = Vec::new();
    for j in 0..events {
        let idem = keyed.then(|| format!("bench-{j}"));
        published.push(
            env.publish(org, &key, &payload(payload_bytes, j as u64), idem)
                .await,
        );
    }
    let pending = published.iter().filter(|p| p.pending).count();
    env.drain_fan_out(pending).await;
    let total = events * endpoints;
    let acked = env.drain_deliveries(args.pollers).await;
    env.settle_updates().await;
    let pairs: Vec<_> = published
        .iter()
        .flat_map(|p| ids.iter().map(move |ep| (p.event_id, *ep)))
        .collect();
    let delivered = env.delivered(&pairs).await;
    if acked != total {
        println!(
            "  NOTE: {acked} messages acknowledged for {total} deliveries (a fan-out that resumed sends its last page again)"
        );
    }
    // Stats are derived from the deliveries at read time: no write of the case above was
    // for them (the item kinds written are listed in the report). What reading them costs:
    println!(
        "  stats: 0 write units per delivery (derived, never written); {}",
        env.stats_request(org, ids[0]).await
    );
    let webhook_bytes = {
        // `{"id":"evt_…","type":"invoice.paid","timestamp":"…","data":…}` around the payload.
        let envelope = r#"{"id":"evt_01JABCDEFGHJKMNPQRSTVWXYZ","type":"invoice.paid","timestamp":"2026-12-01T00:00:00.000Z","data":}"#;
        envelope.len() + body.to_string().len()
    };
    Case {
        payload: payload_bytes,
        endpoints,
        keyed,
        events,
        deliveries: total,
        delivered,
        receiver_hits: receiver.hits() - hits0,
        repeats: receiver.ids().1 - repeats0,
        publish_calls: published.iter().map(|p| p.calls).collect(),
        api_request_bytes: published.iter().map(|p| p.request_bytes).max().unwrap_or(0),
        webhook_bytes,
        stats: env.stats(),
        timings: env.timings(),
    }
}

/// Lambda GB-seconds of these invocations (each billed by the ms, rounded up).
fn gb_seconds(walls: &[Duration], memory_mb: u64) -> f64 {
    walls
        .iter()
        .map(|d| d.as_micros().div_ceil(1000) as f64 / 1000.0)
        .sum::<f64>()
        * memory_mb as f64
        / 1024.0
}

fn ms(walls: &[Duration]) -> f64 {
    median(
        &walls
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    )
}

struct Cost {
    dynamo_write: f64,
    dynamo_read: f64,
    sqs: f64,
    lambda_requests: f64,
    /// From the wall times measured here (moto-bound: an upper bound).
    lambda_duration: f64,
    /// From the stated in-region latencies ([`STATED_DYNAMO_MS`], [`STATED_SQS_MS`]).
    lambda_duration_stated: f64,
    api: f64,
    egress: f64,
}

impl Cost {
    fn fixed(&self) -> f64 {
        self.dynamo_write + self.dynamo_read + self.sqs + self.lambda_requests + self.api
    }

    fn total(&self) -> f64 {
        self.fixed() + self.lambda_duration
    }

    fn total_stated(&self) -> f64 {
        self.fixed() + self.lambda_duration_stated
    }
}

/// Records per ReceiveMessage, as the template's event source mappings' `BatchSize`.
const SQS_BATCH: u8 = 10;
/// Stated in-region round trips for the Lambda duration model: a DynamoDB call, an SQS call.
const STATED_DYNAMO_MS: f64 = 5.0;
const STATED_SQS_MS: f64 = 10.0;

/// GB-seconds with stated latencies: publish and fan-out wait on their calls one after the
/// other; a deliver invocation on one BatchGetItem, the receiver, and its writes (in
/// parallel, one round trip).
fn stated_gb_seconds(c: &Case, memory_mb: u64, receiver_ms: u64) -> f64 {
    let calls_ms = |role: Role| -> f64 {
        c.stats
            .requests
            .iter()
            .filter(|((r, _, _), _)| *r == role)
            .map(|((_, service, _), n)| {
                *n as f64
                    * if service.eq_ignore_ascii_case("sqs") {
                        STATED_SQS_MS
                    } else {
                        STATED_DYNAMO_MS
                    }
            })
            .sum()
    };
    let deliver_ms = c.timings.deliver.len() as f64 * (receiver_ms as f64 + 2.0 * STATED_DYNAMO_MS);
    (calls_ms(Role::Publish) + calls_ms(Role::FanOut) + deliver_ms) / 1000.0 * memory_mb as f64
        / 1024.0
}

const BILLED: [Role; 4] = [Role::Publish, Role::FanOut, Role::Deliver, Role::Esm];

fn cost(c: &Case, memory_mb: u64, receiver_ms: u64) -> Cost {
    let n = c.deliveries as f64;
    let s = &c.stats;
    let wu: f64 = s
        .write_units
        .iter()
        .filter(|((r, _), _)| BILLED.contains(r))
        .map(|(_, u)| u)
        .sum();
    let ru: f64 = s
        .read_units
        .iter()
        .filter(|((r, _), _)| BILLED.contains(r))
        .map(|(_, u)| u)
        .sum();
    // Empty receives happen only at the end of the queue here; a busy queue has none.
    let sqs: u64 = BILLED
        .iter()
        .map(|r| {
            s.sqs_chunks.get(r).copied().unwrap_or(0)
                - s.empty_receives.get(r).copied().unwrap_or(0)
        })
        .sum();
    let t = &c.timings;
    let invocations = (t.publish.len() + t.fan_out.len() + t.deliver.len()) as f64;
    let gbs = gb_seconds(&t.publish, memory_mb)
        + gb_seconds(&t.fan_out, memory_mb)
        + gb_seconds(&t.deliver, memory_mb);
    let api_requests =
        c.events as f64 * c.api_request_bytes.div_ceil(Prices::HTTP_API_CHUNK) as f64;
    Cost {
        dynamo_write: wu / n * Prices::DYNAMO_PER_M_WRITE_UNITS,
        dynamo_read: ru / n * Prices::DYNAMO_PER_M_READ_UNITS,
        sqs: sqs as f64 / n * Prices::SQS_PER_M_REQUESTS,
        lambda_requests: invocations / n * Prices::LAMBDA_PER_M_REQUESTS,
        lambda_duration: gbs / n * Prices::LAMBDA_ARM64_PER_GB_S * 1e6,
        lambda_duration_stated: stated_gb_seconds(c, memory_mb, receiver_ms) / n
            * Prices::LAMBDA_ARM64_PER_GB_S
            * 1e6,
        api: api_requests / n * Prices::HTTP_API_PER_M,
        egress: c.webhook_bytes as f64 * 1e6 / 1e9 * Prices::EGRESS_PER_GB,
    }
}

/// No `-0.000` in tables (an empty f64 sum is -0.0).
fn z(x: f64) -> f64 {
    x + 0.0
}

fn op_kind(service: &str, op: &str) -> &'static str {
    let dynamo = service.eq_ignore_ascii_case("dynamodb");
    match op {
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
            if dynamo =>
        {
            "DynamoDB write"
        }
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" if dynamo => {
            "DynamoDB read"
        }
        "SendMessage" | "SendMessageBatch" => "SQS send",
        "ReceiveMessage" => "SQS receive",
        "DeleteMessage" | "DeleteMessageBatch" => "SQS delete",
        _ => "other",
    }
}

fn report_cases(cases: &[Case], memory_mb: u64, receiver_ms: u64) {
    println!();
    println!(
        "AWS requests per delivery, by function and operation (retries included; setup excluded)"
    );
    println!(
        "  {:<15} {:<21} {:<9} {:<19} {:>8} {:>12}",
        "case", "role", "service", "operation", "requests", "per delivery"
    );
    for c in cases {
        let n = c.deliveries as f64;
        for ((role, service, op), count) in &c.stats.requests {
            if !BILLED.contains(role) {
                continue;
            }
            let mut count = *count;
            let mut note = String::new();
            if op == "ReceiveMessage" {
                let empty = c.stats.empty_receives.get(role).copied().unwrap_or(0);
                count -= empty;
                note = format!("  (+{empty} empty at the end of the queue, not counted)");
            }
            println!(
                "  {:<15} {:<21} {:<9} {:<19} {:>8} {:>12.3}{note}",
                c.name(),
                role.name(),
                service,
                op,
                count,
                count as f64 / n
            );
        }
    }

    println!();
    println!("RESULT requests per delivery by kind (all functions + event source mapping)");
    let kinds = [
        "DynamoDB write",
        "DynamoDB read",
        "SQS send",
        "SQS receive",
        "SQS delete",
        "other",
    ];
    print!("  {:<15}", "case");
    for k in kinds {
        print!(" {k:>14}");
    }
    println!(" {:>10}", "delivered");
    for c in cases {
        let n = c.deliveries as f64;
        let mut by: HashMap<&str, f64> = HashMap::new();
        for ((role, service, op), count) in &c.stats.requests {
            if !BILLED.contains(role) {
                continue;
            }
            let mut count = *count as f64;
            if op == "ReceiveMessage" {
                count -= c.stats.empty_receives.get(role).copied().unwrap_or(0) as f64;
            }
            *by.entry(op_kind(service, op)).or_default() += count;
        }
        print!("  {:<15}", c.name());
        for k in kinds {
            print!(" {:>14.3}", by.get(k).copied().unwrap_or(0.0) / n);
        }
        println!(" {:>10}", format!("{}/{}", c.delivered, c.deliveries));
    }

    println!();
    println!(
        "RESULT DynamoDB units per delivery, by item (sizes by DynamoDB's rules: names + values; 1 KB per write unit, 4 KB per strongly consistent read unit)"
    );
    println!(
        "  {:<15} {:<14} {:>12} {:>11} {:>11}",
        "case", "item", "mean item B", "write units", "read units"
    );
    for c in cases {
        let n = c.deliveries as f64;
        let mut kinds: Vec<&'static str> = c
            .stats
            .write_units
            .keys()
            .chain(c.stats.read_units.keys())
            .filter(|(r, _)| BILLED.contains(r))
            .map(|(_, k)| *k)
            .collect();
        kinds.sort();
        kinds.dedup();
        let (mut tw, mut tr) = (0.0, 0.0);
        for k in kinds {
            let w: f64 = BILLED
                .iter()
                .filter_map(|r| c.stats.write_units.get(&(*r, k)))
                .sum();
            let r: f64 = BILLED
                .iter()
                .filter_map(|r| c.stats.read_units.get(&(*r, k)))
                .sum();
            let (bytes, items) = c.stats.item_bytes.get(k).copied().unwrap_or((0, 0));
            tw += w;
            tr += r;
            println!(
                "  {:<15} {:<14} {:>12} {:>11.3} {:>11.3}",
                c.name(),
                k,
                if items > 0 {
                    format!("{:.0}", bytes as f64 / items as f64)
                } else {
                    "-".into()
                },
                z(w / n),
                z(r / n)
            );
        }
        println!(
            "  {:<15} {:<14} {:>12} {:>11.3} {:>11.3}",
            c.name(),
            "TOTAL",
            "",
            z(tw / n),
            z(tr / n)
        );
    }

    println!();
    println!(
        "RESULT $ per million deliveries, us-east-1 on-demand list prices as of {} (DynamoDB ${}/M write units, ${}/M read units; \
         SQS ${}/M requests per 64 KB; Lambda ${}/M requests + arm64 ${}/GB-s at {memory_mb} MB; HTTP API ${}/M per 512 KB); ingress (API + publish fn) included",
        Prices::AS_OF,
        Prices::DYNAMO_PER_M_WRITE_UNITS,
        Prices::DYNAMO_PER_M_READ_UNITS,
        Prices::SQS_PER_M_REQUESTS,
        Prices::LAMBDA_PER_M_REQUESTS,
        Prices::LAMBDA_ARM64_PER_GB_S,
        Prices::HTTP_API_PER_M,
    );
    println!(
        "  {:<15} {:>7} {:>7} {:>7} {:>7} {:>7} | {:^26} | {:^26} | {:>8} {:>9}",
        "", "", "", "", "", "", "measured λ durations", "stated λ durations", "", ""
    );
    println!(
        "  {:<15} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>8} {:>9} | {:>7} {:>8} {:>9} | {:>8} {:>9}",
        "case",
        "DDB wr",
        "DDB rd",
        "SQS",
        "λ req",
        "API",
        "λ GB-s",
        "TOTAL",
        "",
        "λ GB-s",
        "TOTAL",
        "",
        "target",
        "+egress*"
    );
    let verdict = |total: f64, t: Option<f64>| match t {
        Some(t) if total <= t => "met",
        Some(_) => "NOT met",
        None => "",
    };
    for c in cases {
        let k = cost(c, memory_mb, receiver_ms);
        let t = target(c.payload, c.endpoints);
        println!(
            "  {:<15} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>7.3} {:>8.3} {:>9} | {:>7.3} {:>8.3} {:>9} | {:>8} {:>9.3}",
            c.name(),
            k.dynamo_write,
            k.dynamo_read,
            k.sqs,
            k.lambda_requests,
            k.api,
            k.lambda_duration,
            k.total(),
            verdict(k.total(), t),
            k.lambda_duration_stated,
            k.total_stated(),
            verdict(k.total_stated(), t),
            t.map(|t| format!("<= {t:.2}")).unwrap_or_default(),
            k.total_stated() + k.egress,
        );
    }
    // What no tuning of reads or compute can go below: the ingress, the invocations, the
    // items written (each at least one unit) and the queue's requests.
    println!(
        "  fixed by the design, before any read or Lambda compute (API + Lambda requests + DynamoDB writes + SQS):"
    );
    for c in cases
        .iter()
        .filter(|c| target(c.payload, c.endpoints).is_some())
    {
        let k = cost(c, memory_mb, receiver_ms);
        let floor = k.api + k.lambda_requests + k.dynamo_write + k.sqs;
        let t = target(c.payload, c.endpoints).unwrap_or(f64::INFINITY);
        println!(
            "    {:<15} {:.3} = {:.3} + {:.3} + {:.3} + {:.3}{}",
            c.name(),
            floor,
            k.api,
            k.lambda_requests,
            k.dynamo_write,
            k.sqs,
            if floor > t {
                format!(": over the {t:.2} target before the first read")
            } else {
                format!(
                    ": {:.3} left under the {t:.2} target for reads and compute",
                    t - floor
                )
            }
        );
    }
    println!(
        "  * +egress: the stated total plus data transfer out at ${}/GB of webhook bodies (not in the targets' price list)",
        Prices::EGRESS_PER_GB
    );
    println!(
        "  stated λ durations: {STATED_DYNAMO_MS} ms per DynamoDB call and {STATED_SQS_MS} ms per SQS call, one after the other \
         (publish, fan-out); deliver = BatchGetItem + the receiver's {receiver_ms} ms + one round of parallel writes"
    );
    println!(
        "  Lambda durations: measured wall time of each invocation in this process against moto on loopback, \
         the receiver answering after {receiver_ms} ms (median ms per invocation):"
    );
    for c in cases {
        let t = &c.timings;
        let mean_batch = c.deliveries as f64 / t.deliver.len().max(1) as f64;
        println!(
            "    {:<15} publish {:>3} x {:>6.1} ms, fan-out {:>3} x {:>7.1} ms, deliver {:>4} x {:>6.1} ms (mean batch {mean_batch:.1})",
            c.name(),
            t.publish.len(),
            ms(&t.publish),
            t.fan_out.len(),
            ms(&t.fan_out),
            t.deliver.len(),
            ms(&t.deliver),
        );
    }
    for c in cases {
        if c.delivered != c.deliveries || c.receiver_hits != c.deliveries as u64 {
            println!(
                "  WARNING {}: {} of {} delivered, receiver got {} requests",
                c.name(),
                c.delivered,
                c.deliveries,
                c.receiver_hits
            );
        }
        if c.repeats > 0 {
            println!(
                "  NOTE {}: {} duplicate sends (webhook-id repeats)",
                c.name(),
                c.repeats
            );
        }
    }
}

/// Write/read units per partition-second at `rate` deliveries/s to one endpoint, from a
/// case's measured units per delivery.
fn report_ceiling(cases: &[Case], rate: f64) {
    println!();
    println!(
        "RESULT per-endpoint design ceiling at {} deliveries/s (DynamoDB: 1,000 write units/s, 3,000 read units/s per partition): \
         the delivery shards at that rate to one endpoint; the organization's partitions at that rate in total at the case's fan-out",
        group(rate as u64)
    );
    println!(
        "  {:<15} {:<40} {:>10} {:>12} {:>12}",
        "case", "partition", "partitions", "WU/s each", "RU/s each"
    );
    for c in cases {
        let n = c.deliveries as f64;
        let units = |kinds: &[&str]| {
            let w: f64 = c
                .stats
                .write_units
                .iter()
                .filter(|((r, k), _)| BILLED.contains(r) && kinds.contains(k))
                .map(|(_, u)| u)
                .sum();
            let r: f64 = c
                .stats
                .read_units
                .iter()
                .filter(|((r, k), _)| BILLED.contains(r) && kinds.contains(k))
                .map(|(_, u)| u)
                .sum();
            (w / n * rate, r / n * rate)
        };
        let (w, r) = units(&["delivery"]);
        let shards = DELIVERY_SHARDS as f64;
        println!(
            "  {:<15} {:<40} {:>10} {:>12.0} {:>12.0}",
            c.name(),
            "EP#{endpoint}#{shard}: deliveries",
            DELIVERY_SHARDS,
            w / shards,
            r / shards
        );
        // The organization's own partitions take the same load whatever the shard count:
        // at 5,000 deliveries/s to one endpoint, the organization publishes 5,000/s x its
        // share of this endpoint (every event here goes to every endpoint).
        let (w, r) = units(&["event"]);
        let shards = EVENT_SHARDS as f64;
        println!(
            "  {:<15} {:<40} {:>10} {:>12.0} {:>12.0}",
            c.name(),
            "ORG#{org}#EVT#{shard}: events",
            EVENT_SHARDS,
            w / shards,
            r / shards
        );
        let (w, r) = units(&["endpoint"]);
        println!(
            "  {:<15} {:<40} {:>10} {:>12.0} {:>12.0}",
            c.name(),
            "ORG#{org}: endpoints (org total)",
            1,
            z(w),
            r
        );
        // One partition per key: the total spreads over as many partitions as keys.
        let (w, r) = units(&["publish claim"]);
        println!(
            "  {:<15} {:<40} {:>10} {:>12.0} {:>12.0}",
            c.name(),
            "IDEM#{org}#{key}: claims (org total)",
            "1 per key",
            z(w),
            z(r)
        );
        let (w, r) = units(&["api key"]);
        println!(
            "  {:<15} {:<40} {:>10} {:>12.0} {:>12.0}",
            c.name(),
            "KEY#{sha256}: the API key (org total)",
            1,
            z(w),
            r
        );
    }
    // Not measured here (the happy path never writes the endpoint): a failed attempt
    // counts on the endpoint's item, one write per consumer batch for all of the batch's
    // failures to it (`consumers/deliver/attempt.rs`), an item under 1 KB.
    let per_batch = f64::from(SQS_BATCH);
    println!(
        "  when every attempt fails: the endpoint's item (in ORG#{{org}}) takes one write per batch of {SQS_BATCH}: \
         {:.0} WU/s at {} failed attempts/s (one per attempt, before: {})",
        rate / per_batch,
        group(rate as u64),
        group(rate as u64)
    );
}

async fn report_publish(
    sdk: &aws_config::SdkConfig,
    args: &Args,
    cases: &[Case],
    receiver: &Receiver,
) {
    println!();
    println!("RESULT publish: AWS calls inside the request (the API key lookup included)");
    for c in cases {
        let max = c.publish_calls.iter().max().copied().unwrap_or(0);
        println!(
            "  {:<15} {} publishes: {}..{} calls (target <= 5: {})",
            c.name(),
            c.publish_calls.len(),
            c.publish_calls.iter().min().copied().unwrap_or(0),
            max,
            if max <= 5 { "met" } else { "NOT met" }
        );
    }

    let one = "org_one";
    let thousand = "org_thousand";
    let mut orgs: Vec<String> = vec![one.into(), thousand.into()];
    let sizes: Vec<usize> = args.enqueue.iter().copied().filter(|n| *n > 0).collect();
    orgs.extend(sizes.iter().map(|n| format!("org_fan{n}")));
    let body = payload(1024, 0);
    // A table of its own per fan-out (moto's Query walks the whole table).
    for (org, n) in orgs[2..].iter().zip(&sizes) {
        let env = Env::new(sdk).await;
        let key = env.key(org).await;
        env.endpoints(org, *n, receiver).await;
        let depth0 = env.queue_depth(&env.delivery_url).await;
        let t0 = Instant::now();
        let p = env.publish(org, &key, &body, None).await;
        let publish_ms = p.wall.as_secs_f64() * 1e3;
        env.drain_fan_out(usize::from(p.pending)).await;
        let enqueued_after = t0.elapsed();
        let depth = env.queue_depth(&env.delivery_url).await - depth0;
        println!(
            "RESULT enqueue: 1 event x {} endpoints: all {} deliveries enqueued {:.2} s after the publish began \
             (publish answered in {publish_ms:.0} ms with {} AWS calls; {} fan-out invocations, one worker; \
             delivery queue +{depth} messages{})",
            group(*n as u64),
            group(*n as u64),
            enqueued_after.as_secs_f64(),
            p.calls,
            env.timings().fan_out.len(),
            if depth == *n { "" } else { " — MISMATCH" },
        );
    }
    let env = Env::new(sdk).await;
    let mut keys = HashMap::new();
    for org in &orgs[..2] {
        keys.insert(org.clone(), env.key(org).await);
    }

    env.endpoints(one, 1, receiver).await;
    env.endpoints(thousand, 1000, receiver).await;
    // The 1,000-endpoint organization twice per round: warm (this process saw it large, so
    // the request skips the endpoint read, as a container does for a minute after its first
    // publish) and cold (the hint forgotten: the first publish of a container).
    let (mut a, mut warm, mut cold, mut calls) = (vec![], vec![], vec![], vec![]);
    let (mut qa, mut qcold) = (vec![], vec![]);
    let query_ms = |p: &Published| {
        p.ops
            .iter()
            .filter(|(op, _)| op == "Query")
            .map(|(_, d)| d.as_secs_f64() * 1e3)
            .sum::<f64>()
    };
    let ms = |p: &Published| p.wall.as_secs_f64() * 1e3;
    for i in 0..args.latency_runs.max(1) + 2 {
        let pa = env
            .publish(one, &keys[one], &body, Some(format!("lat-a-{i}")))
            .await;
        let pw = env
            .publish(thousand, &keys[thousand], &body, Some(format!("lat-w-{i}")))
            .await;
        env.publish.large_orgs.clear();
        let pc = env
            .publish(thousand, &keys[thousand], &body, Some(format!("lat-c-{i}")))
            .await;
        calls.extend([pa.calls, pw.calls, pc.calls]);
        if i >= 2 {
            a.push(ms(&pa));
            warm.push(ms(&pw));
            cold.push(ms(&pc));
            qa.push(query_ms(&pa));
            qcold.push(query_ms(&pc));
        }
    }
    let verdict = |r: f64| if r <= 1.5 { "met" } else { "NOT met" };
    let (ma, mw, mc) = (median(&a), median(&warm), median(&cold));
    println!(
        "RESULT publish latency (1 KB, idempotency key, alternating, {} each after 2 warm-ups): median {ma:.1} ms at 1 endpoint, \
         {mw:.1} ms at 1,000 endpoints: ratio {:.2} (target <= 1.5: {}); {}..{} AWS calls each",
        a.len(),
        mw / ma,
        verdict(mw / ma),
        calls.iter().min().copied().unwrap_or(0),
        calls.iter().max().copied().unwrap_or(0),
    );
    println!(
        "  at 1,000 endpoints a container's first publish (no large-organization hint yet: it reads the first endpoint page) \
         {mc:.1} ms: ratio {:.2} ({})",
        mc / ma,
        verdict(mc / ma),
    );
    let (mqa, mqc) = (median(&qa), median(&qcold));
    println!(
        "  of which the endpoints Query (the first page: 1 item at 1 endpoint, 51 at 1,000): median {mqa:.1} ms vs {mqc:.1} ms; \
         without it {:.1} ms vs {:.1} ms: ratio {:.2} (moto's Query walks the whole table and sorts the whole partition; DynamoDB's reads the page)",
        ma - mqa,
        mc - mqc,
        (mc - mqc) / (ma - mqa),
    );
}

// ------------------------------------------------------------------------------ duplicates

/// Duplicate sends per `n` fault-free deliveries through the real `capy serve` (its 4
/// pollers, the default queue settings) against moto.
async fn duplicates(args: &Args, moto_url: &str, n: usize) {
    let receiver = Receiver::start_with(ReceiverOptions {
        threads: 1,
        count_ids: true,
        ..Default::default()
    });
    let table = unique("capy-dup");
    let queue = unique("capy-dupq");
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("{}.log", unique("capy-dup-serve")));
    let log = std::fs::File::create(&log_path).expect("log file");
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL", moto_url.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("TABLE_NAME", table.clone()),
        ("CAPY_QUEUE_NAME", queue.clone()),
        ("CAPY_POLLERS", "4".into()),
        (
            "SECRETS_LOCAL_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        ),
        ("RUST_LOG", "info".into()),
    ];
    let child = Command::new(&args.capy)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start {} ({e}); `make build` builds it",
                args.capy.display()
            )
        });
    let _serve = Moto(child);
    wait_for_port(port, "capy serve");
    let base = format!("http://127.0.0.1:{port}");
    let sdk = sdk_config(moto_url).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let org = "org_dup";
    let minted = mint_api_key(org, None);
    ApiKeyStore::put(&Table::new(dynamo, &table), &minted.record)
        .await
        .expect("api key");
    let http = reqwest::Client::new();
    let call = |path: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        let key = minted.key.clone();
        async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let json: serde_json::Value = resp.json().await.expect("json body");
            (status, json)
        }
    };
    let endpoints = args.duplicate_endpoints.max(1);
    let created: Vec<u16> = futures::stream::iter(0..endpoints)
        .map(|i| {
            call(
                format!("/v1/organizations/{org}/webhook-endpoints"),
                serde_json::json!({ "url": receiver.url(&format!("/hook/{i}")) }),
            )
        })
        .buffer_unordered(8)
        .map(|(s, _)| s)
        .collect()
        .await;
    assert!(
        created.iter().all(|s| *s == 201),
        "create endpoints: {created:?}"
    );
    let events = n.div_ceil(endpoints);
    let total = events * endpoints;
    println!(
        "duplicates: capy serve ({} , 4 pollers, default queue settings) + moto {moto_url}; {events} events x {endpoints} endpoints = {total} deliveries, no fault injected; next event published while the queues hold < {} messages (0 = all at once)",
        args.capy.display(),
        args.duplicate_backlog
    );
    let queue_url = sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .expect("queue url")
        .queue_url
        .expect("url");
    let fan_out_url = sqs
        .get_queue_url()
        .queue_name(format!("{queue}-fanout"))
        .send()
        .await
        .expect("fan-out queue url")
        .queue_url
        .expect("url");
    // Done when every delivery arrived and neither queue holds a message, visible or in
    // flight: from then on nothing can be sent again.
    let depth = |url: String| {
        let sqs = sqs.clone();
        async move {
            let out = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .expect("queue attributes");
            out.attributes
                .unwrap_or_default()
                .values()
                .filter_map(|v| v.parse::<usize>().ok())
                .sum::<usize>()
        }
    };
    let t0 = Instant::now();
    for j in 0..events {
        // moto's ReceiveMessage walks the whole queue: a backlog of thousands slows every
        // poll to a crawl, so publish only while the queues hold fewer than the backlog.
        while args.duplicate_backlog > 0
            && depth(queue_url.clone()).await + depth(fan_out_url.clone()).await
                >= args.duplicate_backlog
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (status, json) = call(
            format!("/v1/organizations/{org}/events"),
            serde_json::json!({
                "event_type": "invoice.paid",
                "payload": payload(1024, j as u64),
                "idempotency_key": format!("dup-{j}"),
            }),
        )
        .await;
        assert_eq!(status, 202, "publish: {json}");
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut last_report = Instant::now();
    loop {
        let (distinct, repeats) = receiver.ids();
        if distinct >= total
            && depth(queue_url.clone()).await == 0
            && depth(fan_out_url.clone()).await == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {distinct}/{total} distinct deliveries arrived"
        );
        if last_report.elapsed() > Duration::from_secs(30) {
            // A run stopped early still says what it saw.
            println!(
                "  ... {distinct}/{total} distinct deliveries, {repeats} duplicate sends, after {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (distinct, repeats) = receiver.ids();
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let lost_races = log_text
        .matches("delivery was updated concurrently")
        .count();
    let lease_waits = log_text
        .matches("another poller holds this attempt")
        .count();
    // capy serve inherits this process's environment: `ATTEMPT_LEASE=60s make bench-duplicates`.
    let lease = std::env::var("ATTEMPT_LEASE")
        .ok()
        .filter(|v| !v.trim().is_empty() && v.trim() != "off");
    println!(
        "RESULT duplicates: {} sends for {distinct} distinct deliveries (of {total}) in {:.0} s: {repeats} duplicate sends \
         = {:.1} per 10,000 fault-free deliveries; capy serve logged {lost_races} lost conditional writes \
         (\"delivery was updated concurrently\") and {lease_waits} copies waiting out a lease; attempt lease: {}",
        receiver.hits(),
        t0.elapsed().as_secs_f64(),
        repeats as f64 * 10_000.0 / total as f64,
        lease.as_deref().unwrap_or("off (ATTEMPT_LEASE unset)"),
    );
    println!("  (capy serve log: {})", log_path.display());
}

// ------------------------------------------------------------------------------------ main

async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await
}

fn main() {
    let args = Args::parse();
    let (_moto, url) = match &args.endpoint_url {
        Some(u) => (None, u.clone()),
        None => {
            let (m, u) = start_moto(&args.moto_server);
            (Some(m), u)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(n) = args.duplicates {
        rt.block_on(duplicates(&args, &url, n));
        return;
    }
    let receiver = Receiver::start_with(ReceiverOptions {
        threads: 1,
        delay: Duration::from_millis(args.receiver_ms),
        count_ids: true,
        ..Default::default()
    });
    rt.block_on(bench(args, receiver, url));
}

async fn bench(args: Args, receiver: Receiver, url: String) {
    let sdk = sdk_config(&url).await;
    let memory_mb = args
        .memory_mb
        .or_else(template_memory_mb)
        .expect("template.yaml's FunctionMemorySize default (or pass --memory-mb)");
    let cases: Vec<(usize, usize, bool)> = args
        .cases
        .split(',')
        .map(|c| {
            let (c, keyless) = match c.trim().strip_suffix(":nokey") {
                Some(c) => (c, true),
                None => (c.trim(), false),
            };
            let (p, e) = c.split_once('x').expect("PAYLOADxENDPOINTS[:nokey]");
            (
                p.parse().expect("payload bytes"),
                e.parse().expect("endpoints"),
                !(keyless || args.no_idempotency_key),
            )
        })
        .collect();
    println!(
        "aws-bench: happy path against moto at {url}; publish via api::handle, fan_out_batch and deliver_batch in process \
         ({} deliver pollers), loopback receiver answering after {} ms; idempotency key: {}; functions at {memory_mb} MB",
        args.pollers,
        args.receiver_ms,
        if args.no_idempotency_key {
            "no"
        } else {
            "yes, except cases marked \"no key\""
        },
    );
    let mut done = Vec::new();
    for (p, e, keyed) in cases {
        let t0 = Instant::now();
        let c = run_case(&sdk, &args, p, e, keyed, &receiver).await;
        println!(
            "  case {}: {} events, {}/{} delivered in {:.1} s",
            c.name(),
            c.events,
            c.delivered,
            c.deliveries,
            t0.elapsed().as_secs_f64()
        );
        done.push(c);
    }
    report_cases(&done, memory_mb, args.receiver_ms);
    report_ceiling(&done, 5000.0);
    report_publish(&sdk, &args, &done, &receiver).await;
}
