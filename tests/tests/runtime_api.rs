//! The real Lambda binaries under a Lambda Runtime API (issue 4).
//!
//! Each test starts a function's `bootstrap` the way Lambda does (the `AWS_LAMBDA_*`
//! environment, `AWS_LAMBDA_RUNTIME_API` pointing at a small Runtime API served by this
//! file), against moto, and invokes it with the `events/` fixtures. Records are seeded
//! through the library (`Table` implements the store ports; `Table::ensure` creates each
//! test's table from the schema) or through the API binaries themselves.
//!
//! Which binaries: `CAPY_FUNCTIONS_DIR` names a folder holding either `<function>/bootstrap`
//! (cargo lambda's layout) or `<function>` (cargo's); `make runtime-test` sets it to a host
//! release build. Without it the suite builds the debug binaries of `capy-functions`
//! (the same code; what CI's `make test` runs, since a release LTO build of every binary
//! does not fit CI's time). No cargo-lambda is needed: the Runtime API is this file's.
//!
//! `CAPY_FUNCTIONS_RUNNER` names a program that runs each binary, given it as its first
//! argument: `make runtime-test-arm64` sets it to `qemu-aarch64` (with `QEMU_LD_PREFIX`, which
//! is passed through) to run the very arm64 artifacts `make lambda` builds for deployment.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capy_shared::adapters::dynamo::Table;
use capy_shared::adapters::secrets::LocalCipher;
use capy_shared::api::Route;
use capy_shared::auth::{mint_api_key, mint_portal_session};
use capy_shared::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use capy_shared::domain::endpoint::Endpoint;
use capy_shared::domain::event::{Event, FanOut, FanOutMessage, FanOutState};
use capy_shared::domain::ids::{DeliveryId, EndpointId, EventId, JobId};
use capy_shared::domain::job::{Job, JobMessage, JobState, ReplayParams};
use capy_shared::domain::portal_session::Capability;
use capy_shared::domain::signing::SigningSecret;
use capy_shared::domain::time::{self, Timestamp};
use capy_shared::ports::{
    ApiKeyStore, DeliveryLog, EndpointStore, EventStore, JobStore, PortalSessionStore, SecretCipher,
};
use capy_tests::{
    Receiver, Reply, eventually, free_port, moto, verify_with_official_libraries, workspace_root,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

const LOCAL_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ORG: &str = "org_test";
const RUNTIME: &str = "/2018-06-01/runtime";
/// The one binary behind every route function.
const API_BINARY: &str = "api";
/// The binaries that are not routes: the queue and schedule consumers, each invoked by a test
/// below (`deliver_reports_…`, `publishing_to_twelve_endpoints_…` for fan-out,
/// `dead_letter_marks_…`, `sweeper_sends_…`, `the_jobs_worker_replays_…`). Every route's
/// binary is invoked by `every_route_function_answers_its_fixture_with_real_ids`.
const CONSUMERS: [&str; 5] = ["deliver", "fan-out", "dead-letter", "sweeper", "jobs"];
/// The binary that is neither a route nor a consumer: the portal's static files, invoked by
/// `the_portal_function_serves_the_embedded_build`.
const STATIC_FILES: &str = "portal";
/// The ids the fixtures carry (paths, bodies, messages), each swapped for a real one.
const FIXTURE_ENDPOINT: &str = "ep_01JABCDEFGHJKMNPQRSTVWXYZ0";
const FIXTURE_DELIVERY: &str = "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0";
const FIXTURE_EVENT: &str = "evt_01JABCDEFGHJKMNPQRSTVWXYZ0";
const FIXTURE_JOB: &str = "job_01JABCDEFGHJKMNPQRSTVWXYZ0";
const FIXTURE_SESSION: &str = "ps_01JABCDEFGHJKMNPQRSTVWXYZ0";
/// The fixtures' portal token placeholder starts so (`events/get-portal-session.json`).
const PORTAL_TOKEN_PREFIX: &str = "capy_portal_";
// ---------------------------------------------------------------- the binaries

/// The binary a function runs: `api` for every route function (its CAPY_ROUTE picks the
/// route), its own for each consumer and the portal.
fn binary_of(function: &str) -> &str {
    if Route::from_function(function).is_some() {
        API_BINARY
    } else {
        function
    }
}

fn function_bin(function: &str) -> PathBuf {
    let name = binary_of(function);
    if let Ok(dir) = std::env::var("CAPY_FUNCTIONS_DIR") {
        let dir = PathBuf::from(dir);
        let nested = dir.join(name).join("bootstrap");
        let bin = if nested.exists() {
            nested
        } else {
            dir.join(name)
        };
        assert!(
            bin.exists(),
            "{} missing (CAPY_FUNCTIONS_DIR)",
            bin.display()
        );
        return bin;
    }
    capy_tests::build_bins();
    workspace_root().join("target/debug").join(name)
}

// ---------------------------------------------------------------- a Lambda Runtime API

#[derive(Debug)]
struct Answer {
    request_id: String,
    /// `response`, `error` or `init-error`.
    kind: String,
    body: Value,
}

/// One Runtime API per function process: hands out queued invocations on `next` and
/// captures what comes back.
struct RuntimeApi {
    port: u16,
    events: mpsc::UnboundedSender<(String, Value)>,
    answers: Mutex<mpsc::UnboundedReceiver<Answer>>,
    next_calls: Arc<std::sync::atomic::AtomicUsize>,
}

async fn read_json(body: Incoming) -> Value {
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

impl RuntimeApi {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (events_tx, events_rx) = mpsc::unbounded_channel::<(String, Value)>();
        let (answers_tx, answers_rx) = mpsc::unbounded_channel::<Answer>();
        let events_rx = Arc::new(Mutex::new(events_rx));
        let next_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls = next_calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (events_rx, answers_tx, calls) =
                    (events_rx.clone(), answers_tx.clone(), calls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (events_rx, answers_tx, calls) =
                            (events_rx.clone(), answers_tx.clone(), calls.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let method = req.method().clone();
                            let reply = |status: u16, body: String| {
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response")
                            };
                            if method == hyper::Method::GET
                                && path == format!("{RUNTIME}/invocation/next")
                            {
                                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                // Long poll, as Lambda does, until an invocation is queued.
                                let Some((id, event)) = events_rx.lock().await.recv().await else {
                                    return Ok::<_, Infallible>(reply(500, "{}".into()));
                                };
                                let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
                                let resp = hyper::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/json")
                                    .header("Lambda-Runtime-Aws-Request-Id", id)
                                    .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                                    .header(
                                        "Lambda-Runtime-Invoked-Function-Arn",
                                        "arn:aws:lambda:us-east-1:123456789012:function:capy-test",
                                    )
                                    .header(
                                        "Lambda-Runtime-Trace-Id",
                                        "Root=1-67470001-a8fae21b8e95d46d9012f125;Sampled=0",
                                    )
                                    .body(Full::new(Bytes::from(event.to_string())))
                                    .expect("response");
                                return Ok(resp);
                            }
                            if method == hyper::Method::POST
                                && path == format!("{RUNTIME}/init/error")
                            {
                                let body = read_json(req.into_body()).await;
                                let _ = answers_tx.send(Answer {
                                    request_id: String::new(),
                                    kind: "init-error".into(),
                                    body,
                                });
                                return Ok(reply(202, r#"{"status":"OK"}"#.into()));
                            }
                            if method == hyper::Method::POST
                                && let Some(rest) =
                                    path.strip_prefix(&format!("{RUNTIME}/invocation/"))
                                && let Some((id, kind)) = rest.split_once('/')
                                && (kind == "response" || kind == "error")
                            {
                                let body = read_json(req.into_body()).await;
                                let _ = answers_tx.send(Answer {
                                    request_id: id.to_owned(),
                                    kind: kind.to_owned(),
                                    body,
                                });
                                return Ok(reply(202, r#"{"status":"OK"}"#.into()));
                            }
                            Ok(reply(
                                404,
                                format!(r#"{{"errorMessage":"no route {method} {path}"}}"#),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            port,
            events: events_tx,
            answers: Mutex::new(answers_rx),
            next_calls,
        }
    }

    /// Queues one invocation and waits for its answer.
    async fn invoke(&self, event: Value) -> Answer {
        let id = format!("req-{}", ulid_like());
        self.events
            .send((id.clone(), event))
            .expect("runtime api alive");
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            self.answers.lock().await.recv().await
        })
        .await
        .expect("an answer within 60 s")
        .expect("runtime api alive");
        assert_ne!(
            answer.kind, "init-error",
            "the function failed at init: {}",
            answer.body
        );
        assert_eq!(
            answer.request_id, id,
            "answer for another invocation: {answer:?}"
        );
        answer
    }
}

fn ulid_like() -> String {
    EventId::new().to_string()
}

// ---------------------------------------------------------------- the environment

/// A fresh table and queues in moto, shared by the functions of one test.
struct Env {
    table: Table,
    table_name: String,
    /// The delivery queue (`DELIVERY_QUEUE_URL`).
    queue_url: String,
    /// The fan-out queue (`FAN_OUT_QUEUE_URL`): publishes of more than 10 endpoints.
    fan_out_url: String,
    /// The jobs queue (`JOBS_QUEUE_URL`): replays.
    jobs_url: String,
    sqs: aws_sdk_sqs::Client,
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto().endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// One received SQS message: id, receipt handle, body.
struct Received {
    id: String,
    receipt: String,
    body: String,
}

impl Env {
    async fn new() -> Self {
        let sdk = sdk().await;
        let suffix = ulid_like().to_lowercase();
        let table_name = format!("rt-{suffix}");
        let table = Table::new(aws_sdk_dynamodb::Client::new(&sdk), table_name.clone());
        table.ensure().await.expect("create table");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let mut urls = Vec::new();
        for name in ["q", "fan-out", "jobs"] {
            urls.push(
                sqs.create_queue()
                    .queue_name(format!("rt-{name}-{suffix}"))
                    .send()
                    .await
                    .expect("create queue")
                    .queue_url
                    .expect("queue url"),
            );
        }
        let [queue_url, fan_out_url, jobs_url] = <[String; 3]>::try_from(urls).expect("3 queues");
        Self {
            table,
            table_name,
            queue_url,
            fan_out_url,
            jobs_url,
            sqs,
        }
    }

    fn vars(&self, function: &str) -> HashMap<String, String> {
        let port = free_port();
        let vars = [
            // What Lambda sets.
            ("AWS_LAMBDA_FUNCTION_NAME", format!("capy-test-{function}")),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/capy-test/lambda/{function}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/27/[$LATEST]0123456789abcdef".into(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_SESSION_TOKEN", "test".into()),
            ("_HANDLER", "bootstrap".into()),
            // What the template sets (events/env.json's values, pointed at this moto).
            ("AWS_ENDPOINT_URL", moto().endpoint.clone()),
            ("TABLE_NAME", self.table_name.clone()),
            ("DELIVERY_QUEUE_URL", self.queue_url.clone()),
            ("FAN_OUT_QUEUE_URL", self.fan_out_url.clone()),
            ("JOBS_QUEUE_URL", self.jobs_url.clone()),
            ("SECRETS_LOCAL_KEY", LOCAL_KEY.into()),
            ("SECRETS_KMS_KEY_ID", String::new()),
            ("RETRY_SCHEDULE", "0s,5s,5m".into()),
            ("ROTATION_GRACE", "24h".into()),
            ("PORTAL_BASE_URL", "http://127.0.0.1:3000".into()),
            ("ALLOW_PRIVATE_DESTINATIONS", "true".into()),
            ("ALLOW_INSECURE_URLS", "true".into()),
            ("RUST_LOG", "info".into()),
            ("CAPY_UNUSED_PORT", port.to_string()),
        ];
        let route = Route::from_function(function).map(|_| ("CAPY_ROUTE", function.to_owned()));
        vars.into_iter()
            .chain(route)
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// Starts `function`'s bootstrap against its own Runtime API.
    async fn start(&self, function: &str) -> Function {
        self.start_without(function, &[]).await
    }

    /// Starts `function` with some of the template's variables missing.
    async fn start_without(&self, function: &str, missing: &[&str]) -> Function {
        self.start_custom(function, missing, &[]).await
    }

    /// Starts `function` with the cloud's secrets setting: a KMS key instead of a local one.
    async fn start_with_kms(&self, function: &str, key_id: &str) -> Function {
        self.start_custom(
            function,
            &["SECRETS_LOCAL_KEY", "SECRETS_KMS_KEY_ID"],
            &[("SECRETS_KMS_KEY_ID", key_id)],
        )
        .await
    }

    async fn start_custom(
        &self,
        function: &str,
        missing: &[&str],
        extra: &[(&str, &str)],
    ) -> Function {
        let api = RuntimeApi::start().await;
        let log = std::env::temp_dir().join(format!("capy-rt-{function}-{}.log", ulid_like()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = match std::env::var("CAPY_FUNCTIONS_RUNNER") {
            Ok(runner) if !runner.is_empty() => {
                let mut c = tokio::process::Command::new(runner);
                c.arg(function_bin(function));
                c
            }
            _ => tokio::process::Command::new(function_bin(function)),
        };
        let child = command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(std::env::var("QEMU_LD_PREFIX").map(|v| ("QEMU_LD_PREFIX", v)))
            .envs(
                self.vars(function)
                    .into_iter()
                    .filter(|(k, _)| !missing.contains(&k.as_str())),
            )
            .envs(extra.iter().copied())
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {function}: {e}"));
        Function {
            name: function.to_owned(),
            api,
            child,
            log,
        }
    }

    async fn mint_key(&self) -> String {
        let new = mint_api_key(ORG, None);
        ApiKeyStore::put(&self.table, &new.record)
            .await
            .expect("put key");
        new.key
    }

    async fn endpoint(&self, url: &str) -> Endpoint {
        let now = time::now();
        let id = EndpointId::new();
        let secret = SigningSecret::generate();
        let sealed = LocalCipher::from_base64(LOCAL_KEY)
            .expect("key")
            .seal(&secret, &id.to_string())
            .await
            .expect("seal");
        let e = Endpoint {
            description: "runtime api test".into(),
            ..Endpoint::new(id, ORG, url, sealed, now)
        };
        EndpointStore::create(&self.table, &e)
            .await
            .expect("create endpoint");
        e
    }

    /// An endpoint that is switched off (`is_active: false`).
    async fn disabled_endpoint(&self) -> Endpoint {
        let mut e = self.endpoint("https://hooks.example.com/capy").await;
        let before = e.updated_at;
        e.is_active = false;
        e.updated_at = time::now();
        EndpointStore::save_settings(&self.table, &e, before)
            .await
            .expect("disable the endpoint");
        e
    }

    /// An `invoice.paid` event published at `created` and fanned out to `e` alone, as a
    /// publish of up to 10 endpoints records it.
    async fn event(&self, e: &Endpoint, created: Timestamp) -> Event {
        let mut event = Event::new(ORG, "invoice.paid", r#"{"invoice":"in_1"}"#.into(), created);
        event.targets = vec![e.id];
        event.fan_out = FanOut {
            state: FanOutState::Done,
            endpoints: 1,
        };
        EventStore::create(&self.table, &event)
            .await
            .expect("create event");
        event
    }

    /// The message the fan-out sends for `event` to `e`: the delivery has no item yet.
    async fn first_message(&self, e: &Endpoint) -> DeliveryMessage {
        let event = self.event(e, time::now()).await;
        let msg = Delivery::first(&event, e.id, 3).message();
        assert_eq!(
            msg.delivery_id,
            DeliveryId::for_event(event.id, e.id),
            "the delivery id is the pair's"
        );
        msg
    }

    /// A delivery to `e` as its first attempt wrote it: one attempt, then `state`, parked
    /// for the sweeper until `sweep_at` if given.
    async fn attempted(
        &self,
        e: &Endpoint,
        state: DeliveryState,
        sweep_at: Option<Timestamp>,
    ) -> Delivery {
        let event = self.event(e, time::now()).await;
        let mut d = Delivery::first(&event, e.id, 3);
        d.state = state;
        d.attempts = 1;
        d.response_status = Some(500);
        d.last_error = Some("HTTP 500".into());
        d.next_attempt_at = sweep_at;
        d.sweep_at = sweep_at;
        self.save_new(&d).await;
        d
    }

    async fn save_new(&self, d: &Delivery) {
        DeliveryLog::save(&self.table, d, Expected::New)
            .await
            .expect("first write of the delivery");
    }

    async fn delivery_opt(&self, endpoint: EndpointId, id: DeliveryId) -> Option<Delivery> {
        DeliveryLog::get(&self.table, endpoint, id)
            .await
            .expect("get delivery")
    }

    async fn delivery(&self, endpoint: EndpointId, id: DeliveryId) -> Delivery {
        self.delivery_opt(endpoint, id)
            .await
            .unwrap_or_else(|| panic!("delivery {id} is stored"))
    }

    /// A queued replay of `e` (it holds the endpoint's replay slot).
    async fn job(&self, e: &Endpoint) -> Job {
        let now = time::now();
        let job = Job::replay(
            ORG,
            e.id,
            ReplayParams {
                since: now - chrono::TimeDelta::hours(1),
                until: now,
                states: vec![DeliveryState::Failed],
                event_types: Vec::new(),
            },
            0,
            now,
        );
        JobStore::create(&self.table, &job)
            .await
            .expect("create job");
        job
    }

    async fn job_state(&self, id: JobId) -> Job {
        JobStore::get(&self.table, ORG, id)
            .await
            .expect("get job")
            .expect("the job exists")
    }

    /// A live read-only portal session: its id and token.
    async fn portal_session(&self) -> (String, String) {
        let minted = mint_portal_session(
            ORG,
            vec![Capability::Read],
            Duration::from_secs(3600),
            time::now(),
        );
        PortalSessionStore::create(&self.table, &minted.record)
            .await
            .expect("create portal session");
        (minted.record.id.to_string(), minted.token)
    }

    /// A delivery message to `e` (no item yet) on the queue and received, handed to
    /// `deliver` as Lambda's event source mapping would: the message, the SQS message id and
    /// the function's answer.
    async fn deliver_one(
        &self,
        deliver: &Function,
        e: &Endpoint,
    ) -> (DeliveryMessage, String, Value) {
        let msg = self.first_message(e).await;
        let body = serde_json::to_string(&msg).expect("json");
        self.send(&self.queue_url, &body).await;
        let m = self.receive_one(&self.queue_url).await;
        let out = deliver
            .invoke(sqs_event("deliver", &m.id, &m.receipt, &m.body))
            .await;
        (msg, m.id, out)
    }

    async fn send(&self, queue: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Up to 10 messages of `queue`, waiting up to `wait_s` for the first.
    async fn receive(&self, queue: &str, wait_s: i32) -> Vec<Received> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_s)
            .send()
            .await
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                id: m.message_id.expect("id"),
                receipt: m.receipt_handle.expect("handle"),
                body: m.body.expect("body"),
            })
            .collect()
    }

    /// The one message on `queue` (none other comes with it).
    async fn receive_one(&self, queue: &str) -> Received {
        let mut got = eventually(
            Duration::from_secs(10),
            "a message on the queue",
            || async { Some(self.receive(queue, 1).await).filter(|m| !m.is_empty()) },
        )
        .await;
        assert_eq!(got.len(), 1, "one message");
        got.remove(0)
    }

    /// Every message body on `queue` until `n` have come, then checks no more follow. Each
    /// receive long-polls SQS (no sleeps); received messages stay hidden for the queue's
    /// visibility timeout, so none is counted twice.
    async fn drain(&self, queue: &str, n: usize) -> Vec<Value> {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        let mut bodies = Vec::new();
        while bodies.len() < n {
            assert!(
                std::time::Instant::now() < end,
                "timed out waiting for {n} messages: {bodies:?}"
            );
            for m in self.receive(queue, 1).await {
                bodies.push(serde_json::from_str::<Value>(&m.body).expect("json body"));
            }
        }
        assert_eq!(bodies.len(), n, "{bodies:?}");
        assert_eq!(self.queue_depth(queue).await, 0, "more than {n} messages");
        bodies
    }

    async fn queue_depth(&self, queue: &str) -> usize {
        self.receive(queue, 1).await.len()
    }
}

struct Function {
    name: String,
    api: RuntimeApi,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Function {
    /// Invokes an SQS consumer and checks it acknowledged every record.
    async fn invoke_all_acked(&self, event: Value) {
        let out = self.invoke(event).await;
        assert_eq!(
            out,
            json!({ "batchItemFailures": [] }),
            "{}: {}",
            self.name,
            self.log_text()
        );
    }

    async fn invoke(&self, event: Value) -> Value {
        let answer = self.api.invoke(event).await;
        assert_eq!(
            answer.kind,
            "response",
            "{} answered an error: {}\nlog:\n{}",
            self.name,
            answer.body,
            self.log_text()
        );
        answer.body
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    /// The log stays behind only when the test failed, for reading.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn fixture(name: &str) -> Value {
    let path = workspace_root().join("events").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

/// An API Gateway fixture with our credential (the fixtures carry a placeholder key).
fn api_event(name: &str, key: &str) -> Value {
    let mut event = fixture(name);
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    event
}

/// Real ids for the fixtures' placeholders.
#[derive(Default)]
struct Ids {
    endpoint: String,
    delivery: String,
    event: String,
    job: String,
    session: String,
}

impl Ids {
    fn swap(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (placeholder, real) in [
            (FIXTURE_ENDPOINT, &self.endpoint),
            (FIXTURE_DELIVERY, &self.delivery),
            (FIXTURE_EVENT, &self.event),
            (FIXTURE_JOB, &self.job),
            (FIXTURE_SESSION, &self.session),
        ] {
            if !real.is_empty() {
                s = s.replace(placeholder, real);
            }
        }
        s
    }
}

/// The fixture's placeholder ids replaced by real ones, in the path, the path parameters
/// and the body alike.
fn with_ids(mut event: Value, ids: &Ids) -> Value {
    let raw = ids.swap(event["rawPath"].as_str().expect("rawPath"));
    event["rawPath"] = json!(raw);
    event["requestContext"]["http"]["path"] = json!(raw);
    if let Some(params) = event["pathParameters"].as_object_mut() {
        for v in params.values_mut() {
            *v = json!(ids.swap(v.as_str().expect("a path parameter")));
        }
    }
    if let Some(body) = event["body"].as_str().map(|b| ids.swap(b)) {
        set_body(&mut event, body);
    }
    event
}

/// Replaces an API Gateway event's body (and drops the fixture's content-length).
fn set_body(event: &mut Value, body: String) {
    event["body"] = json!(body);
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("content-length");
    }
}

/// (statusCode, parsed JSON body) of an API Gateway v2 response.
fn http_answer(resp: &Value) -> (u64, Value) {
    let status = resp["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {resp}"));
    let body = resp["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no body in {resp}"));
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("non-JSON body {body:?}")),
    )
}

/// An SQS event of one record, shaped like the fixture, carrying `body`.
fn sqs_event(fixture_name: &str, message_id: &str, receipt: &str, body: &str) -> Value {
    let mut event = fixture(fixture_name);
    let mut record = event["Records"][0].clone();
    record["messageId"] = json!(message_id);
    record["receiptHandle"] = json!(receipt);
    record["body"] = json!(body);
    event["Records"] = json!([record]);
    event
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_functions_answer_their_fixtures() {
    let env = Env::new().await;
    let key = env.mint_key().await;

    // The fixture's placeholder key is not a key of this table.
    let list = env.start("list-endpoints").await;
    let (status, body) = http_answer(&list.invoke(fixture("list-endpoints")).await);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "{body}");

    let create = env.start("create-endpoint").await;
    let (status, created) = http_answer(&create.invoke(api_event("create-endpoint", &key)).await);
    assert_eq!(status, 201, "{created}\n{}", create.log_text());
    let id = created["webhook_endpoint"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        created["plaintext_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );

    // A warm container answers the next invocation too (clients built once, reused).
    let (status, body) = http_answer(&list.invoke(api_event("list-endpoints", &key)).await);
    assert_eq!(status, 200, "{body}");
    let listed = body["webhook_endpoints"].as_array().expect("list");
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0]["health"].is_string(), "{body}");
    assert!(
        listed[0].get("secret").is_none() && listed[0].get("plaintext_secret").is_none(),
        "{body}"
    );

    // A read route with an unknown endpoint: 404 in the error shape.
    let deliveries = env.start("list-deliveries").await;
    let (status, body) = http_answer(&deliveries.invoke(api_event("list-deliveries", &key)).await);
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // The same route with the created endpoint's id.
    let ids = Ids {
        endpoint: id,
        ..Ids::default()
    };
    let event = with_ids(api_event("list-deliveries", &key), &ids);
    let (status, body) = http_answer(&deliveries.invoke(event).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_reports_a_failing_receiver_and_not_a_good_one() {
    let env = Env::new().await;
    let mut deliver = env.start("deliver").await;

    // A good receiver: delivered, no batch item failures; the first attempt writes the
    // delivery's item (the fan-out wrote none).
    let good = Receiver::start().await;
    let e = env.endpoint(&good.url).await;
    let (m, _, out) = env.deliver_one(&deliver, &e).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [] }),
        "{}",
        deliver.log_text()
    );
    assert_eq!(good.count(), 1);
    let got = env.delivery(m.endpoint_id, m.delivery_id).await;
    assert_eq!(got.state, DeliveryState::Delivered, "{got:?}");
    assert_eq!(got.attempts, 1, "{got:?}");
    assert_eq!(got.event_id, m.event_id, "{got:?}");
    assert_eq!(got.response_status, Some(200));
    // JSON logs (AWS_LAMBDA_LOG_FORMAT=JSON): the delivery's line carries its four ids in
    // its span; no line carries the payload.
    let log = deliver.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["message"] == "delivered")
        .unwrap_or_else(|| panic!("a `delivered` line: {log}"));
    let span = line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "deliver"))
        .unwrap_or_else(|| panic!("the record's span: {line}"));
    assert_eq!(
        [
            &span["delivery_id"],
            &span["endpoint_id"],
            &span["event_id"],
            &span["organization_id"]
        ],
        [
            &json!(m.delivery_id.to_string()),
            &json!(m.endpoint_id.to_string()),
            &json!(m.event_id.to_string()),
            &json!(ORG)
        ],
        "{line}"
    );
    assert!(!log.contains("in_1"), "a payload in the log: {log}");

    // A failing receiver: the record comes back in batchItemFailures, the attempt is counted.
    let bad = Receiver::scripted(vec![], Reply::Status(500)).await;
    let e = env.endpoint(&bad.url).await;
    let (m, id, out) = env.deliver_one(&deliver, &e).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [{ "itemIdentifier": id }] }),
        "{}",
        deliver.log_text()
    );
    assert_eq!(bad.count(), 1);
    let got = env.delivery(m.endpoint_id, m.delivery_id).await;
    assert_eq!(got.state, DeliveryState::Pending);
    assert_eq!(got.attempts, 1);
    assert_eq!(got.response_status, Some(500));
    assert!(
        got.next_attempt_at.is_some_and(|t| t > time::now()),
        "{got:?}"
    );
    // A 5 s wait is far below PARK_AFTER: not parked for the sweeper, the message itself
    // carries the retry, and the sweeper stands by a grace (SWEEP_GRACE, 15 min) behind it.
    assert_eq!(
        got.sweep_at,
        got.next_attempt_at
            .map(|due| due + chrono::TimeDelta::minutes(15)),
        "{got:?}"
    );
    // The retry delay went onto the message through the SQS client this container built on
    // its first retry (the lazily built queue of wiring::aws): the message is back after
    // about the schedule's 5 s, not after the queue's 30 s visibility timeout it was
    // received with.
    assert!(
        !deliver.log_text().contains("could not set the retry delay"),
        "{}",
        deliver.log_text()
    );
    let back = eventually(
        Duration::from_secs(20),
        "the failed message to become visible again",
        || async { env.receive(&env.queue_url, 1).await.into_iter().next() },
    )
    .await;
    assert_eq!(back.id, id);
    // Still the same warm process, back on `next` for a third event after answering two.
    eventually(Duration::from_secs(10), "a third `next` call", || async {
        (deliver
            .api
            .next_calls
            .load(std::sync::atomic::Ordering::SeqCst)
            == 3)
            .then_some(())
    })
    .await;
    assert!(
        deliver.child.try_wait().expect("wait").is_none(),
        "deliver exited after two invocations: {}",
        deliver.log_text()
    );
}

/// The template gives OPERATOR_EVENT_BUS to the consumers that notify the operator; their
/// wiring must build the EventBridge bus from it (the API's builds none). A dead letter goes
/// on the bus through the real binary's PutEvents, read back from moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_puts_what_reaches_it_on_the_operator_bus() {
    let env = Env::new().await;
    let bus = format!("rt-ops-{}", ulid_like().to_lowercase());
    let inbox = capy_tests::operator_bus::create(&env.sqs, &bus).await;
    let dead_letter = env
        .start_custom("dead-letter", &[], &[("OPERATOR_EVENT_BUS", &bus)])
        .await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    let m = env.first_message(&e).await;
    let body = serde_json::to_string(&m).expect("json");
    dead_letter
        .invoke_all_acked(sqs_event("dead-letter", "c3e9a1b7-bus", "receipt", &body))
        .await;
    let got = env.receive_one(&inbox).await;
    let put: Value = serde_json::from_str(&got.body).expect("an EventBridge event");
    assert_eq!(put["source"], "capy.webhooks", "{put}");
    assert_eq!(put["detail-type"], "capy.dead_letter", "{put}");
    assert_eq!(put["detail"]["queue"], "deliveries", "{put}");
    assert_eq!(
        put["detail"]["delivery_id"],
        m.delivery_id.to_string(),
        "{put}"
    );
    assert_eq!(put["detail"]["endpoint_id"], e.id.to_string(), "{put}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_marks_what_reaches_it_failed() {
    let env = Env::new().await;
    let dead_letter = env.start("dead-letter").await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    // A message that never got an attempt recorded: the delivery has no item yet.
    let m = env.first_message(&e).await;
    assert_eq!(env.delivery_opt(m.endpoint_id, m.delivery_id).await, None);
    let body = serde_json::to_string(&m).expect("json");
    let event = sqs_event("dead-letter", "c3e9a1b7-dlq", "receipt", &body);
    let receives = event["Records"][0]["attributes"]["ApproximateReceiveCount"]
        .as_str()
        .expect("the fixture's receive count")
        .to_owned();
    let out = dead_letter.invoke(event).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [] }),
        "{}",
        dead_letter.log_text()
    );
    let got = env.delivery(m.endpoint_id, m.delivery_id).await;
    assert_eq!(got.state, DeliveryState::Failed, "{got:?}");
    assert_eq!(
        got.last_error,
        Some(format!(
            "moved to the dead-letter queue after {receives} failed processing attempts"
        )),
        "the reason names the record's receive count"
    );
    assert_eq!(got.event_id, m.event_id, "{got:?}");
    assert_eq!(got.next_attempt_at, None, "{got:?}");
    assert_eq!(got.sweep_at, None, "{got:?}");
    assert_eq!(got.attempts, 0, "{got:?}");

    // A dead-lettered fan-out is acknowledged and changes nothing: the event stays
    // recorded with its fan-out as it was.
    let stuck = env.event(&e, time::now()).await;
    let body = serde_json::to_string(&FanOutMessage {
        event_id: stuck.id,
        organization_id: ORG.into(),
        sent_through: None,
    })
    .expect("json");
    dead_letter
        .invoke_all_acked(sqs_event("dead-letter", "c3e9a1b7-dlq-2", "receipt", &body))
        .await;
    let after = EventStore::get(&env.table, ORG, stuck.id)
        .await
        .expect("get event")
        .expect("the event");
    assert_eq!(after, stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_sends_deliveries_whose_sweep_at_is_due() {
    let env = Env::new().await;
    let sweeper = env.start("sweeper").await;
    let receiver = Receiver::start().await;
    let e = env.endpoint(&receiver.url).await;
    // A parked retry due two hours ago, and one due in an hour.
    let now = time::now();
    let overdue = env
        .attempted(
            &e,
            DeliveryState::Pending,
            Some(now - chrono::TimeDelta::hours(2)),
        )
        .await;
    let later = env
        .attempted(
            &e,
            DeliveryState::Pending,
            Some(now + chrono::TimeDelta::hours(1)),
        )
        .await;
    let out = sweeper.invoke(fixture("sweeper")).await;
    assert_eq!(out, json!({ "sent": 1 }), "{}", sweeper.log_text());
    let m = env.receive_one(&env.queue_url).await;
    let m: DeliveryMessage = serde_json::from_str(&m.body).expect("a delivery message");
    assert_eq!(m, overdue.message());
    assert_eq!(env.queue_depth(&env.queue_url).await, 0);
    // Its sweep_at moved one grace period on (a message lost again is sent again); the
    // other is untouched.
    let swept = env.delivery(e.id, overdue.id).await;
    assert!(swept.sweep_at.is_some_and(|t| t > now), "{swept:?}");
    assert_eq!(env.delivery(e.id, later.id).await.sweep_at, later.sweep_at);
}

/// A delivery message's (endpoint, delivery) from its JSON body.
fn message_of(body: &Value) -> DeliveryMessage {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_event_fans_out_to_the_queue() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    let publish = env.start("publish-event").await;
    let (status, body) = http_answer(&publish.invoke(api_event("publish-event", &key)).await);
    assert_eq!(status, 202, "{body}\n{}", publish.log_text());
    let event_id: EventId = body["event_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("event_id");
    // One endpoint: fanned out inline, done, its message straight on the delivery queue
    // (the SQS client is built on this first send: wiring's lazy queue).
    assert_eq!(
        body["fan_out"],
        json!({ "state": "done", "endpoints": 1 }),
        "{body}"
    );
    let m = env.receive_one(&env.queue_url).await;
    let m: DeliveryMessage = serde_json::from_str(&m.body).expect("a delivery message");
    let expected = DeliveryId::for_event(event_id, e.id);
    assert_eq!(
        m,
        DeliveryMessage {
            delivery_id: expected,
            endpoint_id: e.id,
            organization_id: ORG.into(),
            event_id,
        }
    );
    assert_eq!(body["delivery_ids"], json!([expected]), "{body}");
    assert_eq!(
        env.queue_depth(&env.fan_out_url).await,
        0,
        "no fan-out message"
    );
    // Publishing writes the event (its payload once) and no delivery: the first attempt
    // writes that.
    let stored = EventStore::get(&env.table, ORG, event_id)
        .await
        .expect("get event")
        .expect("the published event is stored");
    assert_eq!(stored.event_type, "invoice.paid", "{stored:?}");
    assert_eq!(stored.targets, vec![e.id], "{stored:?}");
    let payload: Value = serde_json::from_str(&stored.payload).expect("payload");
    assert_eq!(payload["invoice_id"], "inv_1", "{stored:?}");
    assert_eq!(env.delivery_opt(e.id, expected).await, None);
}

/// Above 10 endpoints publish hands the event to the fan-out function (one `FanOutMessage`
/// on the fan-out queue); the real `fan-out` binary, invoked with that very message, sends
/// one delivery message per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_twelve_endpoints_goes_through_the_fan_out_function() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    let mut endpoints = BTreeSet::new();
    for _ in 0..12 {
        endpoints.insert(env.endpoint("https://hooks.example.com/capy").await.id);
    }
    let publish = env.start("publish-event").await;
    let (status, body) = http_answer(&publish.invoke(api_event("publish-event", &key)).await);
    assert_eq!(status, 202, "{body}\n{}", publish.log_text());
    let event_id: EventId = body["event_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("event_id");
    assert_eq!(body["delivery_ids"], json!([]), "{body}");
    assert_eq!(body["fan_out"]["state"], "pending", "{body}");
    assert_eq!(
        env.queue_depth(&env.queue_url).await,
        0,
        "nothing sent inline"
    );

    let m = env.receive_one(&env.fan_out_url).await;
    let request: FanOutMessage = serde_json::from_str(&m.body).expect("a fan-out message");
    assert_eq!(
        request,
        FanOutMessage {
            event_id,
            organization_id: ORG.into(),
            sent_through: None,
        }
    );
    let fan_out = env.start("fan-out").await;
    fan_out
        .invoke_all_acked(sqs_event("fan-out", &m.id, &m.receipt, &m.body))
        .await;
    let messages: Vec<DeliveryMessage> = env
        .drain(&env.queue_url, 12)
        .await
        .iter()
        .map(message_of)
        .collect();
    let sent: BTreeSet<EndpointId> = messages.iter().map(|m| m.endpoint_id).collect();
    assert_eq!(sent, endpoints, "one message per endpoint");
    for m in &messages {
        assert_eq!(m.event_id, event_id);
        assert_eq!(
            m.delivery_id,
            DeliveryId::for_event(event_id, m.endpoint_id)
        );
        assert_eq!(m.organization_id, ORG);
    }
    let stored = EventStore::get(&env.table, ORG, event_id)
        .await
        .expect("get event")
        .expect("the event");
    assert_eq!(
        stored.fan_out,
        FanOut {
            state: FanOutState::Done,
            endpoints: 12,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_enqueues_will_not_start_without_the_queue_url() {
    let env = Env::new().await;
    let enqueuing: Vec<&str> = Route::ALL
        .into_iter()
        .filter(|r| r.enqueues())
        .map(Route::function)
        .collect();
    assert!(!enqueuing.is_empty());
    // Each route without the delivery queue, and publish without the fan-out queue too.
    let cases = enqueuing
        .into_iter()
        .map(|f| (f, "DELIVERY_QUEUE_URL"))
        .chain([(Route::PublishEvent.function(), "FAN_OUT_QUEUE_URL")]);
    for (function, var) in cases {
        let mut f = env.start_without(function, &[var]).await;
        let status = tokio::time::timeout(Duration::from_secs(60), f.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{function} kept running without {var}"))
            .expect("exit status");
        assert!(!status.success(), "{function}: {status}");
        assert!(
            f.log_text().contains(&format!("{var} is not set")),
            "{function}: {}",
            f.log_text()
        );
        assert_eq!(
            f.api.next_calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{function} asked for an event"
        );
    }
    // A route that never enqueues starts without either.
    let list = env
        .start_without(
            "list-endpoints",
            &["DELIVERY_QUEUE_URL", "FAN_OUT_QUEUE_URL"],
        )
        .await;
    eventually(
        Duration::from_secs(60),
        "list-endpoints to ask for an event without a queue URL",
        || async {
            (list
                .api
                .next_calls
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0)
            .then_some(())
        },
    )
    .await;
}

/// One binary serves every route, so it must be told which: without CAPY_ROUTE, or with a
/// name that is no route, it stops before asking for an event instead of guessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_binary_will_not_start_without_a_known_route() {
    let env = Env::new().await;
    for (route, expected) in [
        (None, "CAPY_ROUTE is not set".to_owned()),
        (
            Some("list-endpoint"),
            "CAPY_ROUTE=list-endpoint is none of list-endpoints, create-endpoint".to_owned(),
        ),
    ] {
        let extra: Vec<(&str, &str)> = route.map(|r| ("CAPY_ROUTE", r)).into_iter().collect();
        let mut f = env
            .start_custom("list-endpoints", &["CAPY_ROUTE"], &extra)
            .await;
        let status = tokio::time::timeout(Duration::from_secs(60), f.child.wait())
            .await
            .unwrap_or_else(|_| panic!("api kept running with CAPY_ROUTE {route:?}"))
            .expect("exit status");
        assert!(!status.success(), "{route:?}: {status}");
        assert!(
            f.log_text().contains(&expected),
            "{route:?}: {}",
            f.log_text()
        );
        assert_eq!(
            f.api.next_calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "api asked for an event with CAPY_ROUTE {route:?}"
        );
    }
}

/// The cloud's secrets path, end to end in the real binaries: create-endpoint seals the
/// signing secret under a KMS data key (moto's KMS), deliver opens it and signs with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_secrets_sealed_with_kms_sign_deliveries() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(&moto().endpoint)
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build(),
    );
    let kms_key = kms
        .create_key()
        .description("capy runtime api test")
        .send()
        .await
        .expect("create key")
        .key_metadata
        .expect("metadata")
        .arn
        .expect("arn");

    let receiver = Receiver::start().await;
    let create = env.start_with_kms("create-endpoint", &kms_key).await;
    let mut event = api_event("create-endpoint", &key);
    set_body(
        &mut event,
        json!({ "url": receiver.url, "description": "kms", "event_types": [] }).to_string(),
    );
    let (status, created) = http_answer(&create.invoke(event).await);
    assert_eq!(status, 201, "{created}\n{}", create.log_text());
    let secret = created["plaintext_secret"]
        .as_str()
        .expect("plaintext_secret")
        .to_owned();
    let id: EndpointId = created["webhook_endpoint"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("endpoint id");
    let endpoint = EndpointStore::get(&env.table, ORG, id)
        .await
        .expect("get")
        .expect("the endpoint");
    assert!(
        endpoint.secret.0.starts_with("kms1:"),
        "the secret is sealed with KMS, not the local key"
    );

    let deliver = env.start_with_kms("deliver", &kms_key).await;
    let (m, _, out) = env.deliver_one(&deliver, &endpoint).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [] }),
        "{}",
        deliver.log_text()
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    verify_with_official_libraries(&secret, &got[0]).expect("the official libraries verify");
    assert_eq!(
        env.delivery(m.endpoint_id, m.delivery_id).await.state,
        DeliveryState::Delivered
    );
}

/// A replay through the real binaries: replay-endpoint queues the job on the jobs queue,
/// the `jobs` worker, invoked with that message, sends the failed delivery again (same id,
/// back to pending with one more attempt) and finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_worker_replays_an_endpoints_failed_deliveries() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    let failed = env.attempted(&e, DeliveryState::Failed, None).await;
    let delivered = env.attempted(&e, DeliveryState::Delivered, None).await;

    let replay = env.start("replay-endpoint").await;
    let event = replay_event(&key, &e);
    let (status, body) = http_answer(&replay.invoke(event).await);
    assert_eq!(status, 202, "{body}\n{}", replay.log_text());
    let job_id: JobId = body["job"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("job id");
    assert_eq!(body["job"]["state"], "queued", "{body}");
    assert_eq!(body["job"]["matched"], 1, "the failed one only: {body}");

    let m = env.receive_one(&env.jobs_url).await;
    let msg: JobMessage = serde_json::from_str(&m.body).expect("a job message");
    assert_eq!(
        msg,
        JobMessage {
            job_id,
            organization_id: ORG.into(),
        }
    );
    let jobs = env.start("jobs").await;
    jobs.invoke_all_acked(sqs_event("jobs", &m.id, &m.receipt, &m.body))
        .await;
    let job = env.job_state(job_id).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.processed, 1, "{job:?}");

    let sent = env.receive_one(&env.queue_url).await;
    let sent: DeliveryMessage = serde_json::from_str(&sent.body).expect("a delivery message");
    assert_eq!(sent, failed.message());
    let again = env.delivery(e.id, failed.id).await;
    assert_eq!(again.state, DeliveryState::Pending, "{again:?}");
    assert_eq!(again.attempts, 1, "{again:?}");
    assert!(again.max_attempts >= 2, "{again:?}");
    assert!(
        again.sweep_at.is_some(),
        "sent outside a consumer: {again:?}"
    );
    assert_eq!(env.delivery(e.id, delivered.id).await, delivered);
}

/// The replay fixture for `e`, its window starting an hour ago (the fixture's fixed date
/// would fall outside the retention).
fn replay_event(key: &str, e: &Endpoint) -> Value {
    let ids = Ids {
        endpoint: e.id.to_string(),
        ..Ids::default()
    };
    let mut event = with_ids(api_event("replay-endpoint", key), &ids);
    recent_window(&mut event);
    event
}

/// A `since` in the body moved to an hour ago.
fn recent_window(event: &mut Value) {
    let Some(mut body) = event["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
    else {
        return;
    };
    if body.get("since").is_some() {
        body["since"] = json!(time::format(&(time::now() - chrono::TimeDelta::hours(1))));
        set_body(event, body.to_string());
    }
}

/// Every route's binary, from the route table: started as Lambda starts it and invoked with
/// its `events/` fixture, the fixture's ids swapped for records of this table (each route
/// gets its own endpoint, event, delivery, job and portal session, so a delete, a rotation
/// or a cancel touches no other route's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_function_answers_its_fixture_with_real_ids() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    // What the enqueuing routes said they sent, and the replay's job.
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut replay_job = None;
    for route in Route::ALL {
        let function = route.function();
        let e = env.endpoint("https://hooks.example.com/capy").await;
        let d = env.attempted(&e, DeliveryState::Failed, None).await;
        // A queued replay of an endpoint of its own (disabled, so no publish sends to it),
        // so the route's endpoint keeps its replay slot free.
        let job = env.job(&env.disabled_endpoint().await).await;
        let (session, token) = env.portal_session().await;
        let ids = Ids {
            endpoint: e.id.to_string(),
            delivery: d.id.to_string(),
            event: d.event_id.to_string(),
            job: job.id.to_string(),
            session: session.clone(),
        };
        let mut event = with_ids(api_event(function, &key), &ids);
        recent_window(&mut event);
        // A route for portal tokens gets this table's live one.
        if fixture(function)["headers"]["authorization"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("Bearer {PORTAL_TOKEN_PREFIX}")))
        {
            event["headers"]["authorization"] = json!(format!("Bearer {token}"));
        }
        assert_eq!(
            event["routeKey"],
            format!("{} {}", route.method(), route.path()),
            "events/{function}.json is the fixture of {route:?}"
        );
        let f = env.start(function).await;
        let (status, body) = http_answer(&f.invoke(event).await);
        assert_eq!(
            status,
            u64::from(route.success_status()),
            "{function}: {body}\n{}",
            f.log_text()
        );
        // The body has what openapi.yaml says the answer always carries.
        for key in required_keys(route) {
            assert!(body.get(&key).is_some(), "{function}: no {key:?} in {body}");
        }
        if route.enqueues() {
            let ids: Vec<String> = match body["delivery_ids"].as_array() {
                Some(list) => list
                    .iter()
                    .map(|v| v.as_str().expect("id").into())
                    .collect(),
                None => vec![body["delivery"]["id"].as_str().expect("delivery id").into()],
            };
            sent.extend(ids);
        }
        // What the write routes changed is in the table; what the reads answer is ours.
        let stored = EndpointStore::get(&env.table, ORG, e.id)
            .await
            .expect("get");
        match route {
            Route::ListEndpoints => assert!(
                body["webhook_endpoints"]
                    .as_array()
                    .expect("webhook_endpoints")
                    .iter()
                    .any(|v| v["id"] == e.id.to_string()),
                "{function}: {body}"
            ),
            Route::CreateEndpoint => {
                let id: EndpointId = body["webhook_endpoint"]["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("endpoint id");
                let created = EndpointStore::get(&env.table, ORG, id).await.expect("get");
                assert!(created.is_some(), "{function}: the endpoint is stored");
            }
            Route::DeleteEndpoint => assert!(stored.is_none(), "{function}: {stored:?}"),
            Route::UpdateEndpoint => assert_eq!(
                stored.expect("endpoint").description,
                "Billing receiver (v2)",
                "{function}"
            ),
            Route::RotateSecret => assert!(
                stored.expect("endpoint").previous_secret.is_some(),
                "{function}"
            ),
            Route::GetDelivery => assert_eq!(body["delivery"]["id"], d.id.to_string()),
            Route::ListDeliveries => {
                assert_eq!(body["deliveries"][0]["id"], d.id.to_string(), "{body}")
            }
            Route::RetryDelivery => {
                assert_eq!(body["delivery"]["id"], d.id.to_string(), "{body}");
                let again = env.delivery(e.id, d.id).await;
                assert_eq!(again.state, DeliveryState::Pending, "{again:?}");
            }
            Route::PublishEvent => {
                let id: EventId = body["event_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("event_id");
                let stored = EventStore::get(&env.table, ORG, id).await.expect("get");
                assert!(stored.is_some(), "{function}: the event is stored");
            }
            Route::ListEvents => assert!(
                body["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .any(|v| v["id"] == d.event_id.to_string()),
                "{function}: {body}"
            ),
            Route::GetEvent => {
                assert_eq!(body["event"]["id"], d.event_id.to_string(), "{body}");
                assert!(
                    body["deliveries"]
                        .as_array()
                        .expect("deliveries")
                        .iter()
                        .any(|v| v["id"] == d.id.to_string()),
                    "{function}: {body}"
                );
            }
            Route::ResendEvent => {
                assert_eq!(body["delivery"]["id"], d.id.to_string(), "{body}");
                assert_eq!(env.delivery(e.id, d.id).await.state, DeliveryState::Pending);
            }
            Route::TestEndpoint => {
                assert_eq!(body["delivery"]["endpoint_id"], e.id.to_string(), "{body}");
                assert_eq!(body["delivery"]["event_type"], "capy.ping", "{body}");
            }
            Route::ReplayEndpoint => {
                assert_eq!(body["job"]["endpoint_id"], e.id.to_string(), "{body}");
                replay_job = Some(body["job"]["id"].as_str().expect("job id").to_owned());
            }
            Route::GetJob => assert_eq!(body["job"]["id"], job.id.to_string(), "{body}"),
            Route::ListJobs => assert!(
                body["jobs"]
                    .as_array()
                    .expect("jobs")
                    .iter()
                    .any(|v| v["id"] == job.id.to_string()),
                "{function}: {body}"
            ),
            Route::CancelJob => {
                assert_eq!(env.job_state(job.id).await.state, JobState::Canceled);
            }
            Route::CreatePortalSession => {
                let token = body["token"].as_str().expect("token");
                assert!(token.starts_with(PORTAL_TOKEN_PREFIX), "{body}");
            }
            Route::DeletePortalSession => {
                let id = session.parse().expect("session id");
                let record = PortalSessionStore::get(&env.table, id)
                    .await
                    .expect("get")
                    .expect("the session");
                assert!(record.revoked_at.is_some(), "{function}: {record:?}");
            }
            Route::GetPortalSession => {
                assert_eq!(body["portal_session"]["id"], session, "{body}")
            }
            // A read with nothing to compare beyond what openapi.yaml requires above. A new
            // route lands here until it has side effects worth checking.
            _ => {}
        }
    }
    // The enqueuing routes' deliveries, each on the delivery queue once, and nothing else
    // (publish's to every endpoint of the organization still there, inline while they are
    // 10 or fewer).
    assert!(!sent.is_empty());
    let queued: BTreeSet<String> = env
        .drain(&env.queue_url, sent.len())
        .await
        .iter()
        .map(|b| message_of(b).delivery_id.to_string())
        .collect();
    assert_eq!(queued, sent);
    // The replay's job on the jobs queue.
    let m = env.receive_one(&env.jobs_url).await;
    let msg: JobMessage = serde_json::from_str(&m.body).expect("a job message");
    assert_eq!(Some(msg.job_id.to_string()), replay_job);
}

/// The top-level keys openapi.yaml's success answer of `route` requires.
fn required_keys(route: Route) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("openapi");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("openapi.yaml is YAML");
    fn resolve<'a>(
        doc: &'a serde_yaml::Value,
        mut v: &'a serde_yaml::Value,
    ) -> &'a serde_yaml::Value {
        while let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
            v = r
                .trim_start_matches("#/")
                .split('/')
                .fold(doc, |node, part| &node[part]);
        }
        v
    }
    let op = &doc["paths"][route.path().as_str()][route.method().as_str().to_lowercase().as_str()];
    let answer = resolve(
        &doc,
        &op["responses"][route.success_status().to_string().as_str()],
    );
    let schema = resolve(&doc, &answer["content"]["application/json"]["schema"]);
    let keys: Vec<String> = schema["required"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{route:?}: openapi.yaml's answer lists no required keys"))
        .iter()
        .map(|k| k.as_str().expect("a key").to_owned())
        .collect();
    assert!(!keys.is_empty(), "{route:?}");
    keys
}

/// The portal function's API Gateway v2 response: (status, headers, body bytes).
fn portal_answer(resp: &Value) -> (u64, Value, Vec<u8>) {
    use base64::Engine as _;
    let status = resp["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {resp}"));
    let body = resp["body"].as_str().unwrap_or_default();
    let body = if resp["isBase64Encoded"] == json!(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    (status, resp["headers"].clone(), body)
}

/// The fixture (GET /portal/) with another path.
fn portal_event(path: &str) -> Value {
    let mut event = fixture("portal");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event
}

/// `portal` serves the build `make portal` left in portal/dist, embedded in its binary at
/// build time: the page with the CSP (frame-ancestors from PORTAL_FRAME_ANCESTORS), a hashed
/// asset cached for good, index.html for the app's own screens, 404 for a missing asset and
/// for every path that tries to leave the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_function_serves_the_embedded_build() {
    const DASH: &str = "https://dash.example.com";
    let dist = workspace_root().join("portal/dist");
    let index = std::fs::read(dist.join("index.html"))
        .expect("portal/dist/index.html: run `make portal` before this suite (make test does)");
    let env = Env::new().await;
    let portal = env
        .start_custom(STATIC_FILES, &[], &[("PORTAL_FRAME_ANCESTORS", DASH)])
        .await;

    let (status, headers, body) = portal_answer(&portal.invoke(fixture("portal")).await);
    assert_eq!(status, 200, "{headers}\n{}", portal.log_text());
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(
        headers["content-security-policy"],
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {DASH}"
        )
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(body, index, "the embedded index.html is portal/dist's");

    // A hashed asset of the build: its bytes, cached for good.
    let asset = std::fs::read_dir(dist.join("assets"))
        .expect("portal/dist/assets")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".js"))
        .expect("a built .js asset");
    let (status, headers, body) = portal_answer(
        &portal
            .invoke(portal_event(&format!("/portal/assets/{asset}")))
            .await,
    );
    assert_eq!(status, 200, "{headers}");
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        body,
        std::fs::read(dist.join("assets").join(&asset)).expect("asset")
    );

    // The app's own screens get index.html.
    for path in ["/portal/endpoints/ep_1", "/portal/events/evt_1/"] {
        let (status, headers, body) = portal_answer(&portal.invoke(portal_event(path)).await);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(body, index, "{path}");
    }
    // /portal (the other route) moves to /portal/.
    let (status, headers, _) = portal_answer(&portal.invoke(portal_event("/portal")).await);
    assert_eq!(status, 308);
    assert_eq!(headers["location"], "/portal/");

    // A missing asset, and paths that try to leave the build: 404 in the error shape.
    for path in [
        "/portal/assets/gone-0000.js",
        "/portal/../Cargo.toml",
        "/portal/assets/../../Cargo.toml",
        "/portal/%2e%2e/Cargo.toml",
        "/portal/..%2f..%2fCargo.toml",
        "/portal//etc/passwd",
        "/portal/.hidden",
    ] {
        let (status, headers, body) = portal_answer(&portal.invoke(portal_event(path)).await);
        assert_eq!(status, 404, "{path}: {headers}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        let body: Value = serde_json::from_slice(&body).expect("JSON error");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

/// Every binary in functions/src/bin is invoked by this suite: `api` once per route by the
/// test above (from `Route::ALL`), the consumers by their own tests.
#[test]
fn the_suite_invokes_every_function_binary() {
    let mut bins: Vec<String> = std::fs::read_dir(workspace_root().join("functions/src/bin"))
        .expect("functions/src/bin")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    bins.sort();
    let source = include_str!("runtime_api.rs");
    let mut invoked: Vec<String> = [API_BINARY.to_owned(), STATIC_FILES.to_owned()]
        .into_iter()
        .chain(CONSUMERS.map(str::to_owned))
        .collect();
    invoked.sort();
    assert_eq!(bins, invoked);
    assert!(
        source.contains(&format!(".start_custom({}, ", "STATIC_FILES")),
        "no test starts {STATIC_FILES}"
    );
    // And each consumer is started by a test of this file, not only listed.
    for c in CONSUMERS {
        assert!(
            source.contains(&format!("env.start(\"{c}\")")),
            "no test starts {c}"
        );
    }
}
