//! Shared pieces of the benchmarks: a loopback receiver, process CPU time, SQS events built
//! the way the Lambda event source mapping hands them over, medians, and DynamoDB's item
//! size rules.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A webhook receiver on 127.0.0.1 with its own runtime and threads: answers `200 ok` after
/// reading the body; paths under `/slow` answer after `slow` instead of at once, every other
/// path after `delay`. With `count_ids`, it counts how often each `webhook-id` arrived.
pub struct Receiver {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    ids: Option<Arc<Mutex<HashMap<String, u32>>>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiverOptions {
    pub threads: usize,
    pub slow: Duration,
    pub delay: Duration,
    pub count_ids: bool,
}

impl Receiver {
    pub fn start(threads: usize, slow: Duration) -> Self {
        Self::start_with(ReceiverOptions {
            threads,
            slow,
            ..Default::default()
        })
    }

    pub fn start_with(opts: ReceiverOptions) -> Self {
        let ReceiverOptions { threads, .. } = opts;
        let hits = Arc::new(AtomicU64::new(0));
        let ids = opts.count_ids.then(Arc::default);
        let counter = Counters {
            hits: hits.clone(),
            ids: ids.clone(),
        };
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
                rt.block_on(serve(tx, counter, opts));
            })
            .expect("receiver thread");
        let addr = rx.recv().expect("receiver started");
        Self { addr, hits, ids }
    }

    /// (distinct `webhook-id`s, requests that repeated one); zeros unless `count_ids`.
    pub fn ids(&self) -> (usize, u64) {
        let Some(ids) = &self.ids else {
            return (0, 0);
        };
        let ids = ids.lock().unwrap_or_else(|e| e.into_inner());
        let repeats = ids.values().map(|n| u64::from(n.saturating_sub(1))).sum();
        (ids.len(), repeats)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Counters {
    hits: Arc<AtomicU64>,
    ids: Option<Arc<Mutex<HashMap<String, u32>>>>,
}

async fn serve(
    ready: std::sync::mpsc::Sender<SocketAddr>,
    counters: Counters,
    opts: ReceiverOptions,
) {
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
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let counters = counters.clone();
                async move {
                    let wait = if req.uri().path().starts_with("/slow") {
                        opts.slow
                    } else {
                        opts.delay
                    };
                    if let Some(ids) = &counters.ids {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        *ids.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(id)
                            .or_default() += 1;
                    }
                    // A receiver reads what it is sent (and would verify it).
                    let _ = req.into_body().collect().await;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    counters.hits.fetch_add(1, Ordering::Relaxed);
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

/// DynamoDB's size of an attribute value: strings and binaries by their bytes, numbers by
/// their significant digits (1 byte per two, plus 1), booleans and nulls 1 byte, lists and
/// maps 3 bytes plus 1 byte per element (and a map element's name).
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>
pub fn attribute_size(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => s.len(),
        A::N(n) => number_size(n),
        A::B(b) => b.as_ref().len(),
        A::Bool(_) | A::Null(_) => 1,
        A::Ss(v) => v.iter().map(String::len).sum(),
        A::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        A::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        A::L(v) => 3 + v.iter().map(|e| 1 + attribute_size(e)).sum::<usize>(),
        A::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + attribute_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits: String = n
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

/// An item's size: the sum of its attribute names' and values' sizes.
pub fn item_size(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + attribute_size(v)).sum()
}

/// Write units of one item write: 1 per KB, at least 1.
pub fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read units of `size` bytes read at once: 1 per 4 KB strongly consistent (half that
/// eventually consistent), at least one.
pub fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue as A;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        assert_eq!(number_size("0"), 1);
        assert_eq!(number_size("4200"), 2);
        assert_eq!(number_size("1764581234"), 6);
        assert_eq!(number_size("-12.50"), 3);
        let item = HashMap::from([
            ("pk".to_owned(), A::S("ORG#o".into())),
            ("n".to_owned(), A::N("123".into())),
            ("ok".to_owned(), A::Bool(true)),
            ("l".to_owned(), A::L(vec![A::S("ab".into()), A::Null(true)])),
            (
                "m".to_owned(),
                A::M(HashMap::from([("k".to_owned(), A::S("v".into()))])),
            ),
        ]);
        // pk 2+5, n 1+3, ok 2+1, l 1+(3+1+2+1+1), m 1+(3+1+1+1)
        assert_eq!(item_size(&item), 7 + 4 + 3 + 9 + 7);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(0, true), 1.0);
        assert_eq!(read_units(4097, false), 1.0);
    }
}
