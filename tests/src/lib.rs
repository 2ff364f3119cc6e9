//! The whole-stack harness: moto on a free port, `capy serve` against it, real HTTP
//! receivers on loopback, and the receivers' own verification libraries.

pub mod jwt;
pub mod operator_bus;
pub mod receiver;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use receiver::{Received, Receiver, Reply};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A python with the test requirements: `.venv` when `make test` made one, else `python3`.
pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn tool(name: &str) -> PathBuf {
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One moto server per test binary, stopped when the binary exits.
///
/// A `static` is never dropped, so a guard cannot stop it. Instead moto runs under a small
/// `sh` that waits for EOF on a pipe from this process: when the test binary exits, however
/// it exits, the kernel closes the pipe and the shell stops moto.
pub struct Moto {
    pub endpoint: String,
    _lifeline: std::process::ChildStdin,
    _shell: Child,
}

fn wait_for_port(port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#""$0" -H 127.0.0.1 -p "$1" </dev/null & m=$!; cat >/dev/null; kill $m; wait $m"#,
            ])
            .arg(tool("moto_server"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (make test installs it into .venv)");
        let lifeline = child.stdin.take().expect("piped stdin");
        wait_for_port(port, "moto_server");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _lifeline: lifeline,
            _shell: child,
        }
    })
}

/// Builds the workspace's binaries (debug) once per test process, so tests run the current
/// code. `--workspace` keeps cargo's feature resolution the same as `make test`'s own
/// `cargo build --workspace --bins`, which makes this a no-op there instead of a rebuild.
pub fn build_bins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "--workspace", "--bins"])
            .current_dir(workspace_root())
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the workspace binaries failed");
    });
}

pub fn capy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CAPY_BIN") {
        return PathBuf::from(p);
    }
    build_bins();
    workspace_root().join("target/debug/capy")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid_like())
}

fn ulid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..10)
        .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
        .collect()
}

/// Settings for one `capy serve`; every stack gets its own table and queues.
#[derive(Clone)]
pub struct StackOptions {
    pub env: HashMap<String, String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        let env = [
            ("RETRY_SCHEDULE", "0s,200ms,200ms"),
            ("RETRY_MIN_BACKOFF", "1s"),
            ("QUEUE_VISIBILITY_TIMEOUT", "5s"),
            ("CAPY_POLL_WAIT", "1s"),
            ("ROTATION_GRACE", "1h"),
            ("SWEEP_INTERVAL", "1s"),
            ("SWEEP_GRACE", "1h"),
            ("RUST_LOG", "info"),
        ];
        Self {
            env: env
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

impl StackOptions {
    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }
}

pub struct Stack {
    pub base: String,
    pub table: String,
    pub queue: String,
    pub env: HashMap<String, String>,
    pub http: reqwest::Client,
    child: Option<ChildGuard>,
    log: PathBuf,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(opts: StackOptions) -> Self {
        let moto = moto();
        let table = unique("capy-test");
        let queue = unique("capy-q");
        let mut env = opts.env;
        // A test may route the SDK through its own proxy in front of moto.
        env.entry("AWS_ENDPOINT_URL".into())
            .or_insert_with(|| moto.endpoint.clone());
        env.insert("AWS_ACCESS_KEY_ID".into(), "test".into());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), "test".into());
        env.insert("AWS_REGION".into(), "us-east-1".into());
        env.insert("TABLE_NAME".into(), table.clone());
        env.insert("CAPY_QUEUE_NAME".into(), queue.clone());
        env.entry("SECRETS_LOCAL_KEY".into())
            .or_insert_with(|| "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into());
        let mut stack = Stack {
            base: String::new(),
            table,
            queue,
            env,
            http: reqwest::Client::new(),
            child: None,
            log: std::env::temp_dir().join(format!("{}.log", unique("capy-serve"))),
        };
        stack.spawn().await;
        stack
    }

    /// (Re)starts the `capy serve` process on a fresh port, same table and queues.
    pub async fn spawn(&mut self) {
        self.child = None;
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(capy_bin())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .envs(&self.env)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("capy serve");
        self.child = Some(ChildGuard(child));
        wait_for_port(port, "capy serve");
        self.base = format!("http://127.0.0.1:{port}");
    }

    /// Kills `capy serve` at once (SIGKILL), as a crashed Lambda container would die.
    pub fn kill(&mut self) {
        self.child = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn mint_key(&self, org: &str, project: Option<&str>) -> String {
        let mut args = vec!["api-keys", "create", "--org", org];
        if let Some(p) = project {
            args.extend(["--project", p]);
        }
        let out = Command::new(capy_bin())
            .args(&args)
            .envs(&self.env)
            .output()
            .expect("capy api-keys create");
        assert!(
            out.status.success(),
            "api-keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        assert!(
            key.starts_with("capy_live_") && !key.contains('\n'),
            "stdout is only the key: {key:?}"
        );
        key
    }

    /// Revokes a key the way an operator does: `capy api-keys revoke`.
    pub fn revoke_key(&self, key: &str) {
        let out = Command::new(capy_bin())
            .args(["api-keys", "revoke", "--key", key])
            .envs(&self.env)
            .output()
            .expect("capy api-keys revoke");
        assert!(
            out.status.success(),
            "api-keys revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// One API call: (status, JSON body). `key` is the bearer credential, if any.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().expect("method"), self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} for {method} {path}"));
        (status, json)
    }

    /// A raw call for malformed requests.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().expect("method"), self.url(path))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body {text:?}")),
        )
    }

    pub fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto().endpoint)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto().endpoint)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// Every item of the table as text, for "no plaintext" assertions.
    pub async fn dump_table(&self) -> String {
        let out = self
            .dynamo()
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .expect("scan");
        format!("{:?}", out.items.unwrap_or_default())
    }

    pub async fn create_endpoint(&self, org: &str, key: &str, body: Value) -> (String, String) {
        let (status, json) = self
            .call(
                "POST",
                &format!("/v1/organizations/{org}/webhook-endpoints"),
                Some(key),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{json}");
        (
            json["webhook_endpoint"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            json["plaintext_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
    }

    pub async fn publish(&self, org: &str, key: &str, body: Value) -> Value {
        let (status, json) = self
            .call(
                "POST",
                &format!("/v1/organizations/{org}/events"),
                Some(key),
                Some(body),
            )
            .await;
        assert_eq!(status, 202, "{json}");
        json
    }

    pub async fn delivery(&self, org: &str, key: &str, endpoint: &str, delivery: &str) -> Value {
        let (status, json) = self
            .call(
                "GET",
                &format!(
                    "/v1/organizations/{org}/webhook-endpoints/{endpoint}/deliveries/{delivery}"
                ),
                Some(key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{json}");
        json["delivery"].clone()
    }

    /// The delivery, or `None` while it has no record yet (a delivery's record is written by
    /// its first attempt).
    pub async fn delivery_opt(
        &self,
        org: &str,
        key: &str,
        endpoint: &str,
        delivery: &str,
    ) -> Option<Value> {
        let (status, json) = self
            .call(
                "GET",
                &format!(
                    "/v1/organizations/{org}/webhook-endpoints/{endpoint}/deliveries/{delivery}"
                ),
                Some(key),
                None,
            )
            .await;
        match status {
            200 => Some(json["delivery"].clone()),
            404 => None,
            other => panic!("GET delivery {delivery}: {other} {json}"),
        }
    }

    /// Waits until the delivery exists and has left `pending`, and returns it.
    pub async fn settled(
        &self,
        org: &str,
        key: &str,
        endpoint: &str,
        delivery: &str,
        deadline: Duration,
    ) -> Value {
        eventually(
            deadline,
            &format!("delivery {delivery} to settle"),
            || async {
                self.delivery_opt(org, key, endpoint, delivery)
                    .await
                    .filter(|d| d["state"] != "pending")
            },
        )
        .await
    }
}

/// Verifies a received webhook with the official Python `standardwebhooks` and `svix` libraries.
pub fn verify_with_official_libraries(secret: &str, r: &Received) -> Result<(), String> {
    use std::io::Write;
    let input = serde_json::json!({ "secret": secret, "headers": r.headers, "body": r.body });
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/verify.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
