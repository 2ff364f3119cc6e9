//! Shared pieces of the benchmarks: a loopback receiver, process CPU time, SQS events built
//! the way the Lambda event source mapping hands them over, and medians.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A webhook receiver on 127.0.0.1 with its own runtime and threads: answers `200 ok` after
/// reading the body; paths under `/slow` answer after `slow` instead of at once.
pub struct Receiver {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
}

impl Receiver {
    pub fn start(threads: usize, slow: Duration) -> Self {
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name("receiver-worker")
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(serve(tx, counter, slow));
            })
            .expect("receiver thread");
        let addr = rx.recv().expect("receiver started");
        Self { addr, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn serve(ready: std::sync::mpsc::Sender<SocketAddr>, hits: Arc<AtomicU64>, slow: Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    ready
        .send(listener.local_addr().expect("receiver address"))
        .expect("report the address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hits = hits.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let hits = hits.clone();
                async move {
                    let is_slow = req.uri().path().starts_with("/slow");
                    // A receiver reads what it is sent (and would verify it).
                    let _ = req.into_body().collect().await;
                    if is_slow {
                        tokio::time::sleep(slow).await;
                    }
                    hits.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// User + system CPU time of the whole process (every thread, the receiver's included).
#[allow(unsafe_code)]
pub fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given and nothing else;
    // the buffer is a valid, zeroed `rusage` that lives across the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    // SAFETY: zero-initialised and filled in by a successful call.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One SQS record as the event source mapping delivers it.
pub fn sqs_record(
    message_id: String,
    receipt_handle: String,
    body: String,
    receive_count: u32,
) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(message_id);
    m.receipt_handle = Some(receipt_handle);
    m.body = Some(body);
    m.attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    m.event_source = Some("aws:sqs".into());
    m.aws_region = Some("us-east-1".into());
    m
}

pub fn sqs_event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `[a, b, c]` with one decimal, for printing every run beside the median.
pub fn list(values: &[f64], decimals: usize) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.decimals$}")).collect();
    format!("[{}]", parts.join(", "))
}

/// CPU time (user + system) of this process's live threads whose name starts with `prefix`,
/// from `/proc/self/task/*/stat` (clock-tick resolution, 10 ms on most kernels).
pub fn threads_cpu_time(prefix: &str) -> Duration {
    #[allow(unsafe_code)]
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        // After "pid (comm) ": state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let num = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        total += (num(14) + num(15)) / ticks;
    }
    Duration::from_secs_f64(total)
}
