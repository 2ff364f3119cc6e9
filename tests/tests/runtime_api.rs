//! The real Lambda binaries under a Lambda Runtime API (issue 4).
//!
//! Each test starts a function's `bootstrap` the way Lambda does (the `AWS_LAMBDA_*`
//! environment, `AWS_LAMBDA_RUNTIME_API` pointing at a small Runtime API served by this
//! file), against moto, and invokes it with the `events/` fixtures.
//!
//! Which binaries: `CAPY_FUNCTIONS_DIR` names a folder holding either `<function>/bootstrap`
//! (cargo lambda's layout) or `<function>` (cargo's); `make runtime-test` sets it to a host
//! release build. Without it the suite builds the debug binaries of `capy-functions`
//! (the same code; what CI's `make test` runs, since a release LTO build of twelve
//! binaries does not fit CI's time).
//!
//! `CAPY_FUNCTIONS_RUNNER` names a program that runs each binary, given it as its first
//! argument: `make runtime-test-arm64` sets it to `qemu-aarch64` (with `QEMU_LD_PREFIX`, which
//! is passed through) to run the very arm64 artifacts `make lambda` builds for deployment.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capy_shared::api::Route;
use capy_shared::dynamo::Table;
use capy_shared::ids::EventId;
use capy_shared::model::{Delivery, DeliveryState, Endpoint};
use capy_shared::ports::{ApiKeyStore, DeliveryLog, EndpointStore};
use capy_shared::secrets::{LocalCipher, SecretCipher};
use capy_shared::signing::SigningSecret;
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
/// The binaries that are not routes: the queue and schedule consumers, each invoked by a test
/// below (`deliver_reports_…`, `dead_letter_marks_…`, `sweeper_reenqueues_…`). Every route's
/// binary is invoked by `every_route_function_answers_its_fixture_with_real_ids`.
const CONSUMERS: [&str; 3] = ["deliver", "dead-letter", "sweeper"];
/// The ids the API Gateway fixtures carry in their paths.
const FIXTURE_ENDPOINT: &str = "ep_01JABCDEFGHJKMNPQRSTVWXYZ0";
const FIXTURE_DELIVERY: &str = "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0";

// ---------------------------------------------------------------- the binaries

fn function_bin(name: &str) -> PathBuf {
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
    capy_shared::ids::EventId::new().to_string()
}

// ---------------------------------------------------------------- the environment

/// A fresh table and queues in moto, shared by the functions of one test.
struct Env {
    table: Table,
    table_name: String,
    queue_url: String,
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

impl Env {
    async fn new() -> Self {
        let sdk = sdk().await;
        let suffix = ulid_like().to_lowercase();
        let table_name = format!("rt-{suffix}");
        let table = Table::new(aws_sdk_dynamodb::Client::new(&sdk), table_name.clone());
        table.ensure().await.expect("create table");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("rt-q-{suffix}"))
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        Self {
            table,
            table_name,
            queue_url,
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
            ("SECRETS_LOCAL_KEY", LOCAL_KEY.into()),
            ("SECRETS_KMS_KEY_ID", String::new()),
            ("RETRY_SCHEDULE", "0s,5s,5m".into()),
            ("ROTATION_GRACE", "24h".into()),
            ("ALLOW_PRIVATE_DESTINATIONS", "true".into()),
            ("ALLOW_INSECURE_URLS", "true".into()),
            ("RUST_LOG", "info".into()),
            ("CAPY_UNUSED_PORT", port.to_string()),
        ];
        vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
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
        let new = capy_shared::auth::mint_api_key(ORG, None);
        ApiKeyStore::put(&self.table, &new.record)
            .await
            .expect("put key");
        new.key
    }

    async fn endpoint(&self, url: &str) -> Endpoint {
        let now = capy_shared::time::now();
        let id = capy_shared::ids::EndpointId::new();
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

    async fn pending(&self, e: &Endpoint, created: capy_shared::time::Timestamp) -> Delivery {
        let d = Delivery::new_pending(
            e,
            EventId::new(),
            "invoice.paid",
            r#"{"invoice":"in_1"}"#,
            3,
            created,
        );
        DeliveryLog::insert_many(&self.table, std::slice::from_ref(&d))
            .await
            .expect("insert delivery");
        d
    }

    async fn delivery(&self, d: &Delivery) -> Delivery {
        DeliveryLog::get(&self.table, d.endpoint_id, d.id)
            .await
            .expect("get")
            .expect("delivery exists")
    }

    /// Sends the delivery's message to the queue and receives it, for a real receipt handle.
    /// A pending delivery to `e`, its message on the queue and received, handed to `deliver`
    /// as Lambda's event source mapping would: the delivery, the SQS message id and the
    /// function's answer.
    async fn deliver_one(&self, deliver: &Function, e: &Endpoint) -> (Delivery, String, Value) {
        let d = self.pending(e, capy_shared::time::now()).await;
        let (message_id, receipt, body) = self.received_message(&d).await;
        let out = deliver
            .invoke(sqs_event("deliver", &message_id, &receipt, &body))
            .await;
        (d, message_id, out)
    }

    async fn received_message(&self, d: &Delivery) -> (String, String, String) {
        let body = serde_json::to_string(&d.message()).expect("json");
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&body)
            .send()
            .await
            .expect("send");
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(2)
            .send()
            .await
            .expect("receive");
        let m = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("the message");
        (
            m.message_id.expect("id"),
            m.receipt_handle.expect("handle"),
            m.body.expect("body"),
        )
    }

    async fn queue_depth(&self) -> usize {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        out.messages.unwrap_or_default().len()
    }
}

struct Function {
    name: String,
    api: RuntimeApi,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Function {
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

/// The fixture's placeholder endpoint and delivery ids replaced by real ones, in the path and
/// the path parameters alike.
fn with_ids(mut event: Value, endpoint: &str, delivery: &str) -> Value {
    let swap = |s: &str| {
        s.replace(FIXTURE_ENDPOINT, endpoint)
            .replace(FIXTURE_DELIVERY, delivery)
    };
    let raw = swap(event["rawPath"].as_str().expect("rawPath"));
    event["rawPath"] = json!(raw);
    event["requestContext"]["http"]["path"] = json!(raw);
    if let Some(params) = event["pathParameters"].as_object_mut() {
        for v in params.values_mut() {
            *v = json!(swap(v.as_str().expect("a path parameter")));
        }
    }
    event
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
    let event = with_ids(api_event("list-deliveries", &key), &id, FIXTURE_DELIVERY);
    let (status, body) = http_answer(&deliveries.invoke(event).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_reports_a_failing_receiver_and_not_a_good_one() {
    let env = Env::new().await;
    let mut deliver = env.start("deliver").await;

    // A good receiver: delivered, no batch item failures.
    let good = Receiver::start().await;
    let e = env.endpoint(&good.url).await;
    let (d, _, out) = env.deliver_one(&deliver, &e).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [] }),
        "{}",
        deliver.log_text()
    );
    assert_eq!(good.count(), 1);
    let got = env.delivery(&d).await;
    assert_eq!(got.state, DeliveryState::Delivered);
    assert_eq!(got.response_status, Some(200));

    // A failing receiver: the record comes back in batchItemFailures, the attempt is counted.
    let bad = Receiver::scripted(vec![], Reply::Status(500)).await;
    let e = env.endpoint(&bad.url).await;
    let (d, id, out) = env.deliver_one(&deliver, &e).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [{ "itemIdentifier": id }] }),
        "{}",
        deliver.log_text()
    );
    assert_eq!(bad.count(), 1);
    let got = env.delivery(&d).await;
    assert_eq!(got.state, DeliveryState::Pending);
    assert_eq!(got.attempts, 1);
    assert_eq!(got.response_status, Some(500));
    assert!(
        got.next_attempt_at
            .is_some_and(|t| t > capy_shared::time::now()),
        "{got:?}"
    );
    // The retry delay went onto the message through the SQS client this container built on
    // its first retry (functions/src/lib.rs: LazySqs): the message is back after about the
    // schedule's 5 s, not after the queue's 30 s visibility timeout it was received with.
    assert!(
        !deliver.log_text().contains("could not set the retry delay"),
        "{}",
        deliver.log_text()
    );
    let back = eventually(
        Duration::from_secs(20),
        "the failed message to become visible again",
        || async {
            let out = env
                .sqs
                .receive_message()
                .queue_url(&env.queue_url)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            out.messages.unwrap_or_default().into_iter().next()
        },
    )
    .await;
    assert_eq!(back.message_id.as_deref(), Some(id.as_str()));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_marks_what_reaches_it_failed() {
    let env = Env::new().await;
    let dead_letter = env.start("dead-letter").await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    let d = env.pending(&e, capy_shared::time::now()).await;
    let body = serde_json::to_string(&d.message()).expect("json");
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
    let got = env.delivery(&d).await;
    assert_eq!(got.state, DeliveryState::Failed, "{got:?}");
    assert_eq!(
        got.last_error,
        Some(format!(
            "moved to the dead-letter queue after {receives} failed processing attempts"
        )),
        "the reason names the record's receive count"
    );
    assert_eq!(got.next_attempt_at, None, "{got:?}");
    assert_eq!(got.attempts, 0, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_reenqueues_overdue_pending_deliveries() {
    let env = Env::new().await;
    let sweeper = env.start("sweeper").await;
    let receiver = Receiver::start().await;
    let e = env.endpoint(&receiver.url).await;
    let long_ago = capy_shared::time::now() - chrono::TimeDelta::hours(2);
    let overdue = env.pending(&e, long_ago).await;
    let _fresh = env.pending(&e, capy_shared::time::now()).await;
    let out = sweeper.invoke(fixture("sweeper")).await;
    assert_eq!(out, json!({ "reenqueued": 1 }), "{}", sweeper.log_text());
    let out = env
        .sqs
        .receive_message()
        .queue_url(&env.queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive");
    let messages = out.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let m: Value =
        serde_json::from_str(messages[0].body.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(m["delivery_id"], overdue.id.to_string());
    assert_eq!(env.queue_depth().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_event_fans_out_to_the_queue() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    let e = env.endpoint("https://hooks.example.com/capy").await;
    let publish = env.start("publish-event").await;
    let (status, body) = http_answer(&publish.invoke(api_event("publish-event", &key)).await);
    assert_eq!(status, 202, "{body}\n{}", publish.log_text());
    // The SQS client is built on this first enqueue (functions/src/lib.rs: LazySqs).
    let out = env
        .sqs
        .receive_message()
        .queue_url(&env.queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive");
    let messages = out.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1, "{body}");
    let m: Value =
        serde_json::from_str(messages[0].body.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(m["endpoint_id"], e.id.to_string());
    // Publishing only writes and enqueues: the answer's delivery is the queued one, stored
    // pending with no attempt made.
    assert_eq!(body["delivery_ids"], json!([m["delivery_id"]]), "{body}");
    let stored = DeliveryLog::get(
        &env.table,
        e.id,
        m["delivery_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("delivery id"),
    )
    .await
    .expect("get")
    .expect("the published delivery is stored");
    assert_eq!(stored.state, DeliveryState::Pending, "{stored:?}");
    assert_eq!(stored.attempts, 0, "{stored:?}");
    assert_eq!(stored.event_type, "invoice.paid", "{stored:?}");
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
    for function in enqueuing {
        let mut f = env.start_without(function, &["DELIVERY_QUEUE_URL"]).await;
        let status = tokio::time::timeout(Duration::from_secs(60), f.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{function} kept running without a queue URL"))
            .expect("exit status");
        assert!(!status.success(), "{function}: {status}");
        assert!(
            f.log_text().contains("DELIVERY_QUEUE_URL is not set"),
            "{function}: {}",
            f.log_text()
        );
        assert_eq!(
            f.api.next_calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{function} asked for an event"
        );
    }
    // A route that never enqueues starts without it.
    let list = env
        .start_without("list-endpoints", &["DELIVERY_QUEUE_URL"])
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
    event["body"] =
        json!(json!({ "url": receiver.url, "description": "kms", "event_types": [] }).to_string());
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("content-length");
    }
    let (status, created) = http_answer(&create.invoke(event).await);
    assert_eq!(status, 201, "{created}\n{}", create.log_text());
    let secret = created["plaintext_secret"]
        .as_str()
        .expect("plaintext_secret")
        .to_owned();
    let id: capy_shared::ids::EndpointId = created["webhook_endpoint"]["id"]
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
    let (d, _, out) = env.deliver_one(&deliver, &endpoint).await;
    assert_eq!(
        out,
        json!({ "batchItemFailures": [] }),
        "{}",
        deliver.log_text()
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    verify_with_official_libraries(&secret, &got[0]).expect("the official libraries verify");
    assert_eq!(env.delivery(&d).await.state, DeliveryState::Delivered);
}

/// Every route's binary, from the route table: started as Lambda starts it and invoked with
/// its `events/` fixture, the fixture's ids swapped for an endpoint and a delivery of this
/// table (each route gets its own, so a delete or a rotation touches no other route's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_function_answers_its_fixture_with_real_ids() {
    let env = Env::new().await;
    let key = env.mint_key().await;
    for route in Route::ALL {
        let function = route.function();
        let e = env.endpoint("https://hooks.example.com/capy").await;
        let d = env.pending(&e, capy_shared::time::now()).await;
        let event = with_ids(
            api_event(function, &key),
            &e.id.to_string(),
            &d.id.to_string(),
        );
        assert_eq!(
            event["routeKey"],
            format!("{} {}", route.method(), route.path()),
            "events/{function}.json is the fixture of {route:?}"
        );
        let f = env.start(function).await;
        let (status, body) = http_answer(&f.invoke(event).await);
        assert!(
            (200..300).contains(&status) && body.get("error").is_none(),
            "{function}: {status} {body}\n{}",
            f.log_text()
        );
        // What the write routes changed is in the table.
        let stored = EndpointStore::get(&env.table, ORG, e.id)
            .await
            .expect("get");
        match route {
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
            _ => assert!(stored.is_some(), "{function}"),
        }
    }
    // Retry and publish enqueued: one message each (publish's fans out to every endpoint of
    // the organization still there, with its own delivery ids).
    let mut seen = 0;
    while env.queue_depth().await > 0 {
        seen += 1;
        assert!(seen < 100, "the queue does not drain");
    }
    assert!(
        seen > 0,
        "retry-delivery and publish-event enqueued nothing"
    );
}

/// Every binary in functions/src/bin is invoked by this suite: a route's by the test above
/// (from `Route::ALL`), the consumers by their own tests.
#[test]
fn the_suite_invokes_every_function_binary() {
    let mut bins: Vec<String> = std::fs::read_dir(workspace_root().join("functions/src/bin"))
        .expect("functions/src/bin")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    bins.sort();
    let mut invoked: Vec<String> = Route::ALL
        .into_iter()
        .map(|r| r.function().to_owned())
        .chain(CONSUMERS.map(str::to_owned))
        .collect();
    invoked.sort();
    assert_eq!(bins, invoked);
}
