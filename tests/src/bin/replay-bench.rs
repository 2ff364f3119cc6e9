//! Replay benchmark (issue 11): one replay job over N failed deliveries of one endpoint on
//! moto — wall time, and the AWS requests it makes per replayed delivery, by kind (target:
//! ≤ 2 DynamoDB writes and ≤ 0.2 SQS sends per delivery).
//!
//!   cargo run -q -p capy-tests --bin replay-bench -- [--deliveries 10000] [--page 100]
//!
//! The process starts moto and a counting proxy in front of it, seeds the deliveries straight
//! into moto, then runs the job's code (the replay request's service and the jobs worker's
//! `run`, exactly what the Lambdas call) in a child process whose SDK goes through the proxy,
//! so every request of the job — and only those — is counted. No delivery consumer runs: the
//! messages stay on the queue. moto is far slower than DynamoDB (~330 simple requests/s), so
//! the wall time is moto's; the request counts are what AWS would bill.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Forwards every request to moto and counts it by `X-Amz-Target` (DynamoDB and SQS JSON).
async fn counting_proxy(upstream: String) -> (String, Counts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let counts: Counts = Arc::default();
    let client = reqwest::Client::new();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, upstream, counts) = (client.clone(), upstream.clone(), c.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (client, upstream, counts) =
                            (client.clone(), upstream.clone(), counts.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let target = parts
                                .headers
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("other")
                                .to_owned();
                            *counts.lock().expect("counts").entry(target).or_default() += 1;
                            let path = parts
                                .uri
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("/");
                            let mut fwd = client
                                .request(parts.method.clone(), format!("{upstream}{path}"))
                                .body(body);
                            for (k, v) in &parts.headers {
                                if !matches!(
                                    k.as_str(),
                                    "host" | "content-length" | "connection" | "transfer-encoding"
                                ) {
                                    fwd = fwd.header(k, v);
                                }
                            }
                            let resp = match fwd.send().await {
                                Ok(r) => r,
                                Err(_) => {
                                    return Ok::<_, Infallible>(
                                        hyper::Response::builder()
                                            .status(502)
                                            .body(Full::new(Bytes::new()))
                                            .expect("response"),
                                    );
                                }
                            };
                            let mut b = hyper::Response::builder().status(resp.status());
                            for (k, v) in resp.headers() {
                                if !matches!(
                                    k.as_str(),
                                    "content-length" | "connection" | "transfer-encoding"
                                ) {
                                    b = b.header(k, v);
                                }
                            }
                            let bytes = resp.bytes().await.unwrap_or_default();
                            Ok(b.body(Full::new(bytes)).expect("response"))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, counts)
}

#[tokio::main]
async fn main() {
    if std::env::var("REPLAY_BENCH_CHILD").is_ok() {
        child().await;
        return;
    }
    let n = arg("--deliveries", 10_000);
    let page = arg("--page", 100);
    let moto = capy_tests::moto();
    let (proxy, counts) = counting_proxy(moto.endpoint.clone()).await;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .build(),
    );
    let suffix = std::process::id();
    let mut urls = Vec::new();
    for name in ["bench-deliveries", "bench-jobs"] {
        urls.push(
            sqs.create_queue()
                .queue_name(format!("{name}-{suffix}"))
                .send()
                .await
                .expect("queue")
                .queue_url
                .expect("url"),
        );
    }
    let status = Command::new(std::env::current_exe().expect("exe"))
        .env("REPLAY_BENCH_CHILD", "1")
        .env("REPLAY_BENCH_N", n.to_string())
        .env("REPLAY_PAGE_SIZE", page.to_string())
        .env("MOTO_DIRECT", &moto.endpoint)
        .env("AWS_ENDPOINT_URL", &proxy)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("TABLE_NAME", format!("bench-replay-{suffix}"))
        .env("DELIVERY_QUEUE_URL", &urls[0])
        .env("JOBS_QUEUE_URL", &urls[1])
        .env(
            "SECRETS_LOCAL_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .status()
        .expect("child");
    assert!(status.success(), "the bench child failed");
    let counts = counts.lock().expect("counts").clone();
    let per = |k: &str| counts.get(k).copied().unwrap_or(0);
    println!("\nAWS requests of the job (request, then worker), {n} deliveries replayed:");
    println!("  {:<40} {:>8} {:>14}", "request", "count", "per delivery");
    for (k, v) in &counts {
        println!("  {k:<40} {v:>8} {:>14.4}", *v as f64 / n as f64);
    }
    let writes = per("DynamoDB_20120810.PutItem")
        + per("DynamoDB_20120810.UpdateItem")
        + per("DynamoDB_20120810.DeleteItem")
        + per("DynamoDB_20120810.BatchWriteItem")
        + per("DynamoDB_20120810.TransactWriteItems");
    let sends = per("AmazonSQS.SendMessage") + per("AmazonSQS.SendMessageBatch");
    println!(
        "  DynamoDB write requests per delivery: {:.4} (target ≤ 2); SQS sends per delivery: {:.4} (target ≤ 0.2)",
        writes as f64 / n as f64,
        sends as f64 / n as f64
    );
}

async fn child() {
    use capy_shared::adapters::dynamo::Table;
    use capy_shared::config::{self, Settings};
    use capy_shared::domain::delivery::{Delivery, DeliveryState, Expected};
    use capy_shared::domain::endpoint::Endpoint;
    use capy_shared::domain::event::Event;
    use capy_shared::domain::ids::EndpointId;
    use capy_shared::domain::job::{JobMessage, ReplayParams};
    use capy_shared::domain::time;
    use capy_shared::ports::{DeliveryLog, EndpointStore};
    use capy_shared::services::replay::{self, Progress, Started};
    use capy_shared::wiring::{self, Requires};
    use futures::StreamExt;

    let n: usize = std::env::var("REPLAY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("N");
    let settings = Settings::from_env(true).expect("settings");
    let direct = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(std::env::var("MOTO_DIRECT").expect("moto"))
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .build(),
    );
    let seed = Table::new(direct, settings.table_name.clone());
    seed.ensure().await.expect("table");
    let sdk = config::aws_config().await;
    let cipher = config::cipher(&settings, &sdk).expect("cipher");
    let id = EndpointId::new();
    let sealed = cipher
        .seal(
            &capy_shared::domain::signing::SigningSecret::generate(),
            &id.to_string(),
        )
        .await
        .expect("seal");
    let org = "org_bench";
    let start_at = time::now();
    EndpointStore::create(
        &seed,
        &Endpoint::new(id, org, "https://receiver.example/hook", sealed, start_at),
    )
    .await
    .expect("endpoint");
    let seeding = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| {
            let seed = &seed;
            async move {
                let e = Event::new(org, "order.created", "{}".into(), time::now());
                let mut d = Delivery::first(&e, id, 2);
                d.state = DeliveryState::Failed;
                d.attempts = 2;
                seed.save(&d, Expected::New).await.expect("seed");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "seeded {n} failed deliveries in {:.1} s (not counted)",
        seeding.elapsed().as_secs_f64()
    );

    let deps = wiring::aws(
        &settings,
        Requires {
            delivery_queue: true,
            sdk: Some(wiring::any_environment),
            ..Requires::default()
        },
    )
    .await
    .expect("deps");
    let pacing = capy_shared::consumers::jobs::pacing_from_env().expect("pacing");
    let params = ReplayParams {
        since: start_at - chrono::TimeDelta::seconds(1),
        until: time::now(),
        states: vec![DeliveryState::Failed],
        event_types: vec![],
    };
    let t0 = Instant::now();
    let Started::Job(job) = replay::start(&deps, org, id, params, false, time::now())
        .await
        .expect("start")
    else {
        panic!("a job")
    };
    let requested = t0.elapsed();
    let msg = JobMessage::of(&job);
    let mut runs = 0;
    loop {
        runs += 1;
        let deadline = Instant::now() + capy_shared::consumers::jobs::JOBS_BUDGET;
        match replay::run(&deps, &msg, pacing, deadline)
            .await
            .expect("run")
        {
            Progress::Done => break,
            Progress::More => continue,
            Progress::TakenOver => panic!("nothing else runs this job"),
        }
    }
    let total = t0.elapsed();
    let done = replay::get(&deps, org, job.id).await.expect("job");
    assert_eq!(done.processed as usize, n, "{done:?}");
    println!(
        "replay of {n} failed deliveries (page {}): request {:.2} s (matched {}), job {:.1} s in {runs} worker run(s) ({:.0} deliveries/s on moto), state {:?}",
        pacing.page,
        requested.as_secs_f64(),
        job.matched,
        (total - requested).as_secs_f64(),
        n as f64 / (total - requested).as_secs_f64(),
        done.state
    );
}
