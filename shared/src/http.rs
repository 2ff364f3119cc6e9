//! Outbound HTTP: the webhook sender (destination checks on literal hosts and on every
//! resolved address, timeouts, no redirects, capped body) and a plain client for fetching a
//! JWKS. Both trust the embedded Mozilla roots, so building them never scans the OS
//! certificate store.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

use crate::domain::retry::{FailureKind, parse_retry_after};
use crate::ssrf::{DestinationError, DestinationPolicy};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a receiver's answer we read and keep.
pub const EXCERPT_BYTES: usize = 1024;
pub const USER_AGENT: &str = concat!("Capy-Webhooks/", env!("CARGO_PKG_VERSION"));

fn https<R>(http: HttpConnector<R>) -> HttpsConnector<HttpConnector<R>> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// Resolves through the destination policy: only checked addresses reach `connect`.
///
/// `HttpConnector` calls it for names only; a literal address in the URL goes straight to
/// `connect`, which is why [`Sender::post`] checks literals itself.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<DestinationPolicy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            // Port 0: HttpConnector substitutes the URL's port.
            policy
                .resolve(name.as_str(), 0)
                .await
                .map(Vec::into_iter)
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))
        })
    }
}

/// What one send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub status: Option<u16>,
    /// A sentence a person understands; `None` on success.
    pub error: Option<String>,
    pub kind: FailureKind,
    pub retry_after: Option<Duration>,
    pub excerpt: Option<String>,
    pub duration: Duration,
    /// The receiver asked us to stop (`410 Gone`).
    pub gone: bool,
}

impl SendOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

pub struct Sender {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Arc<DestinationPolicy>,
    total_timeout: Duration,
}

impl Sender {
    pub fn new(policy: DestinationPolicy) -> Self {
        Self::with_timeouts(policy, CONNECT_TIMEOUT, TOTAL_TIMEOUT)
    }

    pub fn with_timeouts(policy: DestinationPolicy, connect: Duration, total: Duration) -> Self {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(https(http));
        Self {
            client,
            policy,
            total_timeout: total,
        }
    }

    /// The destination check for what the resolver never sees: a host written as an address.
    ///
    /// Both parsers' readings are checked: the WHATWG one (which reads `2130706433` or
    /// `0x7f.1` as 127.0.0.1, as the save-time check does) and `http::Uri`'s, which is the
    /// host the connector actually connects to without resolving when it parses as an address.
    fn check_literal_host(&self, url: &str, uri: &http::Uri) -> Result<(), DestinationError> {
        if let Ok(parsed) = url::Url::parse(url) {
            self.policy.check_literal(&parsed)?;
        }
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => self.policy.check_ip(ip),
            Err(_) => Ok(()),
        }
    }

    /// POSTs `body`; never follows redirects (a 3xx is a failure like any other non-2xx).
    /// A destination the policy refuses is never connected to; the refusal is the error.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> SendOutcome {
        let started = Instant::now();
        let mut req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, USER_AGENT);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return failure(started, format!("invalid request: {e}"), FailureKind::Other),
        };
        if let Err(refused) = self.check_literal_host(url, req.uri()) {
            return failure(started, refused.to_string(), FailureKind::Other);
        }
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let excerpt = read_capped(resp.into_body(), EXCERPT_BYTES).await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, excerpt))
        };
        match tokio::time::timeout(self.total_timeout, exchange).await {
            Err(_) => failure(
                started,
                format!("timed out after {} s", self.total_timeout.as_secs_f32()),
                FailureKind::Throttled,
            ),
            Ok(Err(e)) => {
                let (msg, kind) = describe(&e, self.total_timeout);
                failure(started, msg, kind)
            }
            Ok(Ok((status, retry_after, excerpt))) => {
                let code = status.as_u16();
                let ok = status.is_success();
                SendOutcome {
                    status: Some(code),
                    error: (!ok).then(|| format!("HTTP {code}")),
                    kind: if code == 429 {
                        FailureKind::Throttled
                    } else {
                        FailureKind::Other
                    },
                    retry_after,
                    excerpt: (!excerpt.is_empty()).then_some(excerpt),
                    duration: started.elapsed(),
                    gone: code == 410,
                }
            }
        }
    }
}

fn failure(started: Instant, error: String, kind: FailureKind) -> SendOutcome {
    SendOutcome {
        status: None,
        error: Some(error),
        kind,
        retry_after: None,
        excerpt: None,
        duration: started.elapsed(),
        gone: false,
    }
}

/// Reads at most `cap` bytes of the body, then drops the rest of the stream.
async fn read_capped(mut body: hyper::body::Incoming, cap: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < cap {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(&data[..data.len().min(cap - buf.len())]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The rustls error inside (possibly nested) I/O errors: `io::Error::source` skips the error
/// it wraps, so the chain is walked through `get_ref`.
fn rustls_error(mut io: &io::Error) -> Option<&rustls::Error> {
    loop {
        let inner = io.get_ref()?;
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        io = inner.downcast_ref::<io::Error>()?;
    }
}

/// Turns a transport error into the sentence the delivery history shows.
fn describe(e: &hyper_util::client::legacy::Error, total: Duration) -> (String, FailureKind) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<DestinationError>() {
            return (r.to_string(), FailureKind::Other);
        }
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if let Some(r) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<DestinationError>())
            {
                return (r.to_string(), FailureKind::Other);
            }
            if let Some(tls) = rustls_error(io) {
                return (format!("TLS handshake failed: {tls}"), FailureKind::Other);
            }
            match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    return ("connection refused".into(), FailureKind::Other);
                }
                io::ErrorKind::ConnectionReset => {
                    return (
                        "connection reset by the receiver".into(),
                        FailureKind::Other,
                    );
                }
                io::ErrorKind::TimedOut => {
                    return (
                        format!("timed out after {} s", total.as_secs_f32()),
                        FailureKind::Throttled,
                    );
                }
                _ => {}
            }
        }
        source = s.source();
    }
    if e.is_connect() {
        return (format!("could not connect: {e}"), FailureKind::Other);
    }
    (format!("connection failed: {e}"), FailureKind::Other)
}

/// A plain GET client for operator-configured URLs (a JWKS).
pub struct PlainClient {
    client: Client<HttpsConnector<HttpConnector<GaiResolver>>, Full<Bytes>>,
}

impl Default for PlainClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PlainClient {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Self {
            client: Client::builder(TokioExecutor::new()).build(https(http)),
        }
    }

    pub async fn get(&self, url: &str) -> Result<Bytes, String> {
        let req = http::Request::get(url)
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status().as_u16()));
            }
            resp.into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(TOTAL_TIMEOUT, fetch)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

#[cfg(test)]
mod tests;
