//! Consumer throughput: `consumers::deliver::deliver_batch` on the in-memory twins
//! (`wiring::memory` over `MemoryStores`), sending real signed HTTP requests to a loopback
//! receiver in this same process; then the wall time of one batch of 10 to a receiver that
//! takes 200 ms (records run in parallel). Events are written through the `EventStore` by
//! `services::publish::publish_event`; their deliveries' messages come from the fan-out
//! (`services::fan_out::fan_out`), as in production.
//!
//! `cargo run --release -p capy-bench --bin deliver-bench -- --help`

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use capy_bench::{
    Receiver, list, median, process_cpu_time, sqs_event, sqs_record, threads_cpu_time,
};
use capy_shared::adapters::memory::MemoryStores;
use capy_shared::adapters::secrets::LocalCipher;
use capy_shared::config::Settings;
use capy_shared::consumers::deliver::deliver_batch;
use capy_shared::domain::delivery::{DeliveryMessage, DeliveryState};
use capy_shared::domain::endpoint::Endpoint;
use capy_shared::domain::event::Event;
use capy_shared::domain::ids::EndpointId;
use capy_shared::domain::signing::SigningSecret;
use capy_shared::domain::time;
use capy_shared::ports::{DeliveryLog, EndpointStore, SecretCipher};
use capy_shared::services::fan_out::{FanOutProgress, fan_out};
use capy_shared::services::publish::publish_event;
use capy_shared::services::{Deps, Policy};
use capy_shared::ssrf::DestinationPolicy;
use capy_shared::wiring;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "Deliveries per second and CPU per delivery of the deliver consumer (in-memory stores, loopback receiver)"
)]
struct Args {
    /// Deliveries per measured run (sent as SQS batches of 10).
    #[arg(long, default_value_t = 20_000)]
    deliveries: usize,
    /// Batches processed at once: concurrent Lambda invocations, each with its own `Deps`
    /// (own HTTP connection pool) and one batch at a time, as a Lambda container does.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured runs (the median is reported); one unmeasured warm-up run comes first.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Endpoints of the organization (all on the one loopback receiver); every event fans
    /// out to all of them.
    #[arg(long, default_value_t = 50)]
    endpoints: usize,
    /// Size of each event's JSON payload.
    #[arg(long, default_value_t = 512)]
    payload_bytes: usize,
    /// Tokio worker threads for the consumer.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Tokio worker threads for the receiver (its own runtime, same process).
    #[arg(long, default_value_t = 1)]
    receiver_threads: usize,
    /// Install a JSON tracing subscriber at INFO writing to a sink, to include the cost of
    /// formatting the consumer's logs as a Lambda would.
    #[arg(long)]
    logs: bool,
    /// Delay of the slow receiver for the parallelism check.
    #[arg(long, default_value_t = 200)]
    slow_ms: u64,
    /// Batches of 10 sent to the slow receiver (the median wall time is reported).
    #[arg(long, default_value_t = 7)]
    slow_runs: usize,
}

const BATCH: usize = 10;

fn payload(bytes: usize) -> String {
    let filler = "x".repeat(bytes.saturating_sub(120).max(1));
    serde_json::json!({
        "invoice_id": "in_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
        "customer": "cus_123456",
        "amount_due": 4200,
        "currency": "usd",
        "note": filler,
    })
    .to_string()
}

/// The rules' settings as `capy serve` reads them (its local defaults allow the receiver's
/// plain http on loopback), so the bench follows every new setting without listing it.
fn policy() -> Policy {
    let settings = Settings::from_env(true).expect("settings from the environment");
    let mut policy = wiring::policy(&settings);
    policy.destinations = DestinationPolicy {
        allow_private: true,
        allow_http: true,
        ..Default::default()
    };
    policy
}

struct Bench {
    stores: MemoryStores,
    cipher: Arc<LocalCipher>,
}

impl Bench {
    /// A `Deps` of its own (its own `Sender`, so its own connection pool) over the shared twins.
    fn deps(&self) -> Deps {
        wiring::memory(&self.stores, policy(), self.cipher.clone())
    }
}

async fn make_endpoints(
    bench: &Bench,
    org: &str,
    urls: impl Iterator<Item = String>,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for url in urls {
        let id = EndpointId::new();
        let now = time::now();
        let sealed = bench
            .cipher
            .seal(&SigningSecret::generate(), &id.to_string())
            .await
            .expect("seal");
        let e = Endpoint::new(id, org, &url, sealed, now);
        bench
            .stores
            .endpoints
            .create(&e)
            .await
            .expect("create endpoint");
        out.push(e);
    }
    out
}

/// Publishes events to `org` (every one of its endpoints subscribed) until `n` deliveries are
/// enqueued, and returns the messages as SQS batches of 10, in the order the fan-out sent them.
async fn enqueue(
    deps: &Deps,
    bench: &Bench,
    org: &str,
    n: usize,
    payload: &str,
    seq: &mut u64,
) -> Vec<(Vec<DeliveryMessage>, SqsEvent)> {
    let mut messages: Vec<DeliveryMessage> = Vec::new();
    while messages.len() < n {
        let event = Event::new(org, "invoice.paid", payload.to_owned(), time::now());
        publish_event(deps, event).await.expect("publish");
        for msg in bench.stores.queue.take_fan_outs() {
            let deadline = Instant::now() + Duration::from_secs(60);
            let done = fan_out(deps, &msg, deadline).await.expect("fan out");
            assert!(matches!(done, FanOutProgress::Done(_)), "fan-out: {done:?}");
        }
        messages.extend(bench.stores.queue.take_sent());
    }
    messages.truncate(n);
    messages
        .chunks(BATCH)
        .map(|chunk| {
            let records = chunk
                .iter()
                .map(|m| {
                    *seq += 1;
                    let body = serde_json::to_string(m).expect("message");
                    sqs_record(format!("msg-{seq}"), format!("rh-{seq}"), body, 1)
                })
                .collect();
            (chunk.to_vec(), sqs_event(records))
        })
        .collect()
}

async fn delivered(bench: &Bench, msgs: &[DeliveryMessage]) -> usize {
    let mut n = 0;
    for m in msgs {
        if let Ok(Some(after)) = bench
            .stores
            .deliveries
            .get(m.endpoint_id, m.delivery_id)
            .await
        {
            n += usize::from(after.state == DeliveryState::Delivered);
        }
    }
    n
}

struct RunResult {
    wall: Duration,
    cpu: Duration,
    receiver_cpu: Duration,
    failures: usize,
    delivered: usize,
}

async fn run(
    workers: &[Arc<Deps>],
    bench: &Bench,
    batches: Vec<(Vec<DeliveryMessage>, SqsEvent)>,
) -> RunResult {
    let mut check = Vec::new();
    let mut events = VecDeque::new();
    for (ms, ev) in batches {
        check.extend(ms);
        events.push_back(ev);
    }
    let queue = Arc::new(Mutex::new(events));
    let cpu0 = process_cpu_time();
    let recv0 = threads_cpu_time("receiver");
    let t0 = Instant::now();
    let tasks: Vec<_> = workers
        .iter()
        .map(|deps| {
            let deps = deps.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut failures = 0;
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some(event) = next else { break };
                    failures += deliver_batch(&deps, event).await.batch_item_failures.len();
                }
                failures
            })
        })
        .collect();
    let mut failures = 0;
    for t in tasks {
        failures += t.await.expect("worker");
    }
    let wall = t0.elapsed();
    let cpu = process_cpu_time() - cpu0;
    let receiver_cpu = threads_cpu_time("receiver").saturating_sub(recv0);
    RunResult {
        wall,
        cpu,
        receiver_cpu,
        failures,
        delivered: delivered(bench, &check).await,
    }
}

fn main() {
    let args = Args::parse();
    if args.logs {
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::io::sink)
            .init();
    }
    let receiver = Receiver::start(args.receiver_threads, Duration::from_millis(args.slow_ms));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .thread_name("consumer")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(args, receiver));
}

async fn bench(args: Args, receiver: Receiver) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let bench = Bench {
        stores: MemoryStores::default(),
        cipher: Arc::new(LocalCipher::new([7; 32])),
    };
    let org = "org_bench";
    let endpoints = make_endpoints(
        &bench,
        org,
        (0..args.endpoints.max(1)).map(|i| receiver.url(&format!("/hook/{i}"))),
    )
    .await;
    let payload = payload(args.payload_bytes);
    let publisher = bench.deps();
    let workers: Vec<Arc<Deps>> = (0..args.concurrency.max(1))
        .map(|_| Arc::new(bench.deps()))
        .collect();
    let mut seq = 0u64;

    println!(
        "deliver-bench: capy_shared::consumers::deliver::deliver_batch on wiring::memory(MemoryStores) with LocalCipher; \
         events by services::publish::publish_event, messages by services::fan_out::fan_out"
    );
    println!(
        "  -> real signed HTTP POSTs to a hyper receiver on {} (same process, its own runtime: its CPU is included)",
        receiver.addr
    );
    println!(
        "  {} deliveries/run, events fanned out to {} endpoints, SQS batches of {BATCH}, {} concurrent invocations, payload {} B, \
         consumer threads {}, receiver threads {}, logs {}, CPUs {cpus}",
        args.deliveries,
        endpoints.len(),
        workers.len(),
        payload.len(),
        args.worker_threads,
        args.receiver_threads,
        if args.logs { "JSON to a sink" } else { "off" },
    );

    let warm = enqueue(
        &publisher,
        &bench,
        org,
        (args.deliveries / 4).max(BATCH * workers.len()),
        &payload,
        &mut seq,
    )
    .await;
    let w = run(&workers, &bench, warm).await;
    println!(
        "  warm-up: {} delivered, {} failures, {:.0}/s",
        w.delivered,
        w.failures,
        w.delivered as f64 / w.wall.as_secs_f64()
    );

    let (mut rates, mut cpu_us, mut consumer_us, mut receiver_us) =
        (vec![], vec![], vec![], vec![]);
    for i in 1..=args.runs.max(1) {
        let batches = enqueue(&publisher, &bench, org, args.deliveries, &payload, &mut seq).await;
        let hits0 = receiver.hits();
        let r = run(&workers, &bench, batches).await;
        let n = args.deliveries as f64;
        let rate = n / r.wall.as_secs_f64();
        let per = r.cpu.as_secs_f64() * 1e6 / n;
        let recv = r.receiver_cpu.as_secs_f64() * 1e6 / n;
        println!(
            "  run {i}: {} delivered ({} receiver hits, {} batch item failures) in {:.3} s = {rate:.0} deliveries/s; \
             CPU {:.3} s = {per:.1} µs/delivery (receiver threads ~{recv:.1}, the rest ~{:.1})",
            r.delivered,
            receiver.hits() - hits0,
            r.failures,
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64(),
            per - recv,
        );
        if r.delivered != args.deliveries || r.failures != 0 {
            println!("  WARNING: not every delivery ended delivered");
        }
        rates.push(rate);
        cpu_us.push(per);
        receiver_us.push(recv);
        consumer_us.push(per - recv);
    }
    let rate = median(&rates);
    println!(
        "RESULT throughput: median {rate:.0} deliveries/s over {} runs {} (target >= 5000: {})",
        rates.len(),
        list(&rates, 0),
        if rate >= 5000.0 { "met" } else { "NOT met" }
    );
    println!(
        "RESULT cpu: median {:.1} CPU µs/delivery, process total incl. the in-process receiver {}; \
         of which receiver threads ~{:.1}, consumer + runtime ~{:.1}",
        median(&cpu_us),
        list(&cpu_us, 1),
        median(&receiver_us),
        median(&consumer_us),
    );

    slow_batch(&args, &bench, &receiver).await;
}

/// One batch of 10 to a receiver that takes `slow_ms`: serial would be 10 × that.
async fn slow_batch(args: &Args, bench: &Bench, receiver: &Receiver) {
    // An organization of its own: 10 endpoints, so each event fans out inline to all 10.
    let org = "org_slow";
    make_endpoints(
        bench,
        org,
        (0..BATCH).map(|i| receiver.url(&format!("/slow/{i}"))),
    )
    .await;
    let deps = bench.deps();
    let payload = payload(args.payload_bytes);
    let mut seq = 1_000_000_000u64;
    let mut walls = vec![];
    for _ in 0..args.slow_runs.max(1) {
        let mut batches = enqueue(&deps, bench, org, BATCH, &payload, &mut seq).await;
        let (ms, event) = batches.remove(0);
        let t0 = Instant::now();
        let response = deliver_batch(&deps, event).await;
        walls.push(t0.elapsed().as_secs_f64() * 1e3);
        let delivered = delivered(bench, &ms).await;
        if delivered != BATCH || !response.batch_item_failures.is_empty() {
            println!("  WARNING: slow batch: {delivered}/{BATCH} delivered");
        }
    }
    let m = median(&walls);
    println!(
        "RESULT parallel batch: 10 records to a receiver taking {} ms: median wall {m:.1} ms over {} batches {} \
         (first includes connecting; serial would be >= {} ms; target < 400 ms: {})",
        args.slow_ms,
        walls.len(),
        list(&walls, 1),
        args.slow_ms * BATCH as u64,
        if m < 400.0 { "met" } else { "NOT met" }
    );
}
