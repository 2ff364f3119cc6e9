//! AWS requests per delivery on the happy path, against moto: publish through the API handler,
//! receive from SQS as the Lambda event source mapping does, run `deliver_batch`, delete what
//! it acknowledged. Every SDK request is counted by an interceptor on the client configs, per
//! role (setup, the publish function, the deliver function, the event source mapping).
//!
//! `cargo run --release -p capy-bench --bin aws-bench -- --help`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::ConfigBag;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use capy_bench::{Receiver, sqs_event, sqs_record};
use capy_shared::api::{ApiDeps, ApiRequest, ApiSettings, PathParams, Route, handle};
use capy_shared::auth::{Authenticator, mint_api_key};
use capy_shared::delivery::{ConsumerDeps, deliver_batch};
use capy_shared::dynamo::Table;
use capy_shared::http::Sender;
use capy_shared::ids::{DeliveryId, EndpointId};
use capy_shared::model::{DeliveryState, Endpoint};
use capy_shared::ports::{ApiKeyStore, DeliveryLog, EndpointStore};
use capy_shared::retry::RetryPolicy;
use capy_shared::secrets::{LocalCipher, SecretCipher};
use capy_shared::signing::SigningSecret;
use capy_shared::sqs::SqsQueue;
use capy_shared::ssrf::DestinationPolicy;
use capy_shared::time;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "AWS requests per delivery (happy path) against moto, counted by an SDK interceptor"
)]
struct Args {
    /// Endpoints in the one organization (every event fans out to all of them).
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Events published.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// Publish without an idempotency key (saves the claim and commit writes).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Use this moto (or AWS-compatible) endpoint instead of starting moto_server.
    #[arg(long, env = "BENCH_AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// moto_server to start on a free port.
    #[arg(long, default_value_os_t = default_moto())]
    moto_server: PathBuf,
}

fn default_moto() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
}

/// Counts every HTTP request an SDK client sends (retries included), by service and operation.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl Counter {
    fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "capy-bench-request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
        Ok(())
    }
}

struct Clients {
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    counter: Counter,
}

fn clients(sdk: &aws_config::SdkConfig) -> Clients {
    let counter = Counter::default();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    Clients {
        dynamo,
        sqs,
        counter,
    }
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(path: &PathBuf) -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
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
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "moto_server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, format!("http://127.0.0.1:{port}"))
}

fn main() {
    let args = Args::parse();
    let receiver = Receiver::start(1, Duration::ZERO);
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
    rt.block_on(bench(args, receiver, url));
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

async fn bench(args: Args, receiver: Receiver, url: String) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await;
    let setup = clients(&sdk);
    let api = clients(&sdk);
    let consumer = clients(&sdk);
    let esm = clients(&sdk);
    let cipher: Arc<LocalCipher> = Arc::new(LocalCipher::new([7; 32]));
    let table_name = unique("capy-bench");
    let org = "org_bench";

    // Setup: table, queue, endpoints, an API key.
    let setup_table = Table::new(setup.dynamo.clone(), &table_name);
    setup_table.ensure().await.expect("table");
    let queue_url = setup
        .sqs
        .create_queue()
        .queue_name(unique("capy-bench"))
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let mut endpoint_ids = Vec::new();
    for i in 0..args.endpoints {
        let id = EndpointId::new();
        endpoint_ids.push(id);
        let now = time::now();
        let sealed = cipher
            .seal(&SigningSecret::generate(), &id.to_string())
            .await
            .expect("seal");
        let e = Endpoint {
            description: format!("bench endpoint {i}"),
            ..Endpoint::new(id, org, &receiver.url(&format!("/hook/{i}")), sealed, now)
        };
        EndpointStore::create(&setup_table, &e)
            .await
            .expect("create endpoint");
    }
    let key = mint_api_key(org, None);
    ApiKeyStore::put(&setup_table, &key.record)
        .await
        .expect("api key");

    // The publish function: the API handler with DynamoDB and SQS adapters.
    let api_table = Table::new(api.dynamo.clone(), &table_name);
    let api_deps = ApiDeps {
        auth: Authenticator::new(Arc::new(api_table.clone()), None),
        endpoints: Arc::new(api_table.clone()),
        deliveries: Arc::new(api_table.clone()),
        idempotency: Arc::new(api_table.clone()),
        queue: Arc::new(SqsQueue::new(api.sqs.clone(), &queue_url)),
        cipher: cipher.clone(),
        settings: ApiSettings {
            destinations: DestinationPolicy {
                allow_private: true,
                allow_http: true,
                ..Default::default()
            },
            rotation_grace: Duration::from_secs(86_400),
            retry: RetryPolicy::default(),
        },
    };
    let t0 = Instant::now();
    let mut published: HashSet<DeliveryId> = HashSet::new();
    for j in 0..args.events {
        let mut body = serde_json::json!({
            "event_type": "invoice.paid",
            "payload": { "invoice_id": format!("in_{j}"), "amount_due": 4200, "currency": "usd" },
        });
        if !args.no_idempotency_key {
            body["idempotency_key"] = serde_json::json!(format!("bench-{j}"));
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", key.key).parse().expect("header"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let params: PathParams = HashMap::from([("organization_id".to_owned(), org.to_owned())]);
        let req = ApiRequest {
            headers,
            query: None,
            body: body.to_string().into(),
            params,
        };
        let resp = handle(&api_deps, Route::PublishEvent, req).await;
        assert_eq!(resp.status, 202, "publish: {}", resp.body);
        let ids = resp.body["delivery_ids"].as_array().expect("delivery_ids");
        assert_eq!(ids.len(), args.endpoints, "one delivery per endpoint");
        published.extend(ids.iter().map(|v| {
            v.as_str()
                .expect("id")
                .parse::<DeliveryId>()
                .expect("delivery id")
        }));
    }
    let publish_time = t0.elapsed();

    // The deliver function, fed by a poller doing what the event source mapping does.
    let consumer_table = Table::new(consumer.dynamo.clone(), &table_name);
    let deps = ConsumerDeps {
        reader: Arc::new(consumer_table.clone()),
        endpoints: Arc::new(consumer_table.clone()),
        deliveries: Arc::new(consumer_table.clone()),
        cipher: cipher.clone(),
        visibility: Arc::new(SqsQueue::new(consumer.sqs.clone(), &queue_url)),
        sender: Sender::new(DestinationPolicy {
            allow_private: true,
            allow_http: true,
            ..Default::default()
        }),
        retry: RetryPolicy::default(),
    };
    let total = args.endpoints * args.events;
    let (mut acked, mut failed, mut empty_receives, mut batches, mut sizes) =
        (0usize, 0usize, 0usize, 0usize, vec![]);
    let t1 = Instant::now();
    while acked < total && empty_receives < 5 {
        let out = esm
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_receives += 1;
            continue;
        }
        batches += 1;
        sizes.push(messages.len());
        let mut receipts = HashMap::new();
        let records = messages
            .into_iter()
            .map(|m| {
                let id = m.message_id.clone().unwrap_or_default();
                let receipt = m.receipt_handle.clone().unwrap_or_default();
                let count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                receipts.insert(id.clone(), receipt.clone());
                sqs_record(id, receipt, m.body.unwrap_or_default(), count)
            })
            .collect();
        let response = deliver_batch(&deps, sqs_event(records)).await;
        for f in &response.batch_item_failures {
            receipts.remove(&f.item_identifier);
            failed += 1;
        }
        if receipts.is_empty() {
            continue;
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
        esm.sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete");
        acked += receipts.len();
    }
    let consume_time = t1.elapsed();

    // Check the outcome with the (separately counted) setup client.
    let mut delivered = 0;
    for endpoint in &endpoint_ids {
        let mut after = None;
        loop {
            let page = DeliveryLog::list(&setup_table, *endpoint, 250, after, None)
                .await
                .expect("list deliveries");
            delivered += page
                .deliveries
                .iter()
                .filter(|d| published.contains(&d.id) && d.state == DeliveryState::Delivered)
                .count();
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
    }

    let run = Run {
        total,
        delivered,
        acked,
        failed,
        batches,
        sizes,
        empty_receives,
        publish_time,
        consume_time,
    };
    report(
        &args,
        &run,
        &api.counter,
        &consumer.counter,
        &esm.counter,
        &setup.counter,
    );
    println!("  (receiver got {} requests)", receiver.hits());
}

struct Run {
    total: usize,
    delivered: usize,
    acked: usize,
    failed: usize,
    batches: usize,
    sizes: Vec<usize>,
    empty_receives: usize,
    publish_time: Duration,
    consume_time: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SqsSend,
    DynamoWrite,
    DynamoRead,
    Other,
}

fn kind(service: &str, op: &str) -> Kind {
    let dynamo = service.eq_ignore_ascii_case("dynamodb");
    match op {
        "SendMessage" | "SendMessageBatch" if !dynamo => Kind::SqsSend,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
            if dynamo =>
        {
            Kind::DynamoWrite
        }
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" if dynamo => {
            Kind::DynamoRead
        }
        _ => Kind::Other,
    }
}

fn report(
    args: &Args,
    run: &Run,
    api: &Counter,
    consumer: &Counter,
    esm: &Counter,
    setup: &Counter,
) {
    let n = run.total as f64;
    println!(
        "aws-bench: happy path against moto — {} endpoints x {} events = {} deliveries ({} delivered, {} acknowledged, {} reported failed); idempotency key: {}",
        args.endpoints,
        args.events,
        run.total,
        run.delivered,
        run.acked,
        run.failed,
        if args.no_idempotency_key { "no" } else { "yes" },
    );
    if run.delivered != run.total {
        println!("  WARNING: not every delivery ended delivered");
    }
    let mean_batch = run.sizes.iter().sum::<usize>() as f64 / run.sizes.len().max(1) as f64;
    println!(
        "  publish {:.2} s, consume {:.2} s ({} batches, mean {mean_batch:.1} records; moto-bound, not a throughput figure)",
        run.publish_time.as_secs_f64(),
        run.consume_time.as_secs_f64(),
        run.batches,
    );
    println!("  SDK requests (HTTP requests, retries included), per role:");
    println!(
        "    {:<28} {:<9} {:<20} {:>8} {:>13}",
        "role", "service", "operation", "requests", "per delivery"
    );
    let roles: [(&str, &Counter); 3] = [
        ("publish (API function)", api),
        ("deliver (consumer function)", consumer),
        ("event source mapping", esm),
    ];
    let mut totals = [0u64; 4];
    for (role, counter) in roles {
        for ((service, op), count) in counter.snapshot() {
            println!(
                "    {role:<28} {service:<9} {op:<20} {count:>8} {:>13.3}",
                count as f64 / n
            );
            if role != "event source mapping" {
                let k = kind(&service, &op) as usize;
                totals[k] += count;
            }
        }
    }
    let per = |k: Kind| totals[k as usize] as f64 / n;
    let verdict = |v: f64, max: f64| if v <= max { "met" } else { "NOT met" };
    println!("RESULT per delivery, our functions (publish + deliver):");
    println!(
        "  SQS sends        {:.3}  (target <= 0.2: {})",
        per(Kind::SqsSend),
        verdict(per(Kind::SqsSend), 0.2)
    );
    println!(
        "  DynamoDB writes  {:.3}  (target <= 2: {})",
        per(Kind::DynamoWrite),
        verdict(per(Kind::DynamoWrite), 2.0)
    );
    println!(
        "  DynamoDB reads   {:.3}  (target <= 2: {})",
        per(Kind::DynamoRead),
        verdict(per(Kind::DynamoRead), 2.0)
    );
    println!(
        "  other            {:.3}  (by kind in the table above)",
        per(Kind::Other)
    );
    let esm_counts = esm.snapshot();
    let esm_op = |op: &str| {
        esm_counts
            .iter()
            .filter(|((_, o), _)| o == op)
            .map(|(_, c)| *c)
            .sum::<u64>()
    };
    println!(
        "RESULT per delivery, event source mapping (Lambda's poller, not our code): ReceiveMessage {:.3} ({} of them empty, end of queue), DeleteMessageBatch {:.3}",
        esm_op("ReceiveMessage") as f64 / n,
        run.empty_receives,
        esm_op("DeleteMessageBatch") as f64 / n,
    );
    let setup_total: u64 = setup.snapshot().values().sum();
    println!("  (setup and verification, not counted above: {setup_total} requests)");
}
