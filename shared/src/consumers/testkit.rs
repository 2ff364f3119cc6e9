//! Test support for the consumer and service unit tests: one world on the in-memory twins
//! (`wiring::memory`), endpoints with sealed secrets, events, SQS records, and a loopback
//! receiver that keeps what it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::adapters::memory::MemoryStores;
use crate::adapters::secrets::LocalCipher;
use crate::domain::delivery::{Delivery, DeliveryMessage};
use crate::domain::endpoint::Endpoint;
use crate::domain::event::Event;
use crate::domain::ids::EndpointId;
use crate::domain::retry::RetryPolicy;
use crate::domain::signing::SigningSecret;
use crate::domain::time::{self, Timestamp};
use crate::ports::{DeliveryLog, EndpointStore, EventStore, SecretCipher};
use crate::services::{Deps, Policy};
use crate::ssrf::DestinationPolicy;

pub const ORG: &str = "org_unit";
/// Nothing listens there: every send is refused at once.
pub const UNREACHABLE: &str = "http://127.0.0.1:9/unreachable";

/// Loopback receivers, a 0 s / 1 s / 1 s schedule, nothing parked below 15 minutes.
pub fn policy() -> Policy {
    Policy {
        destinations: DestinationPolicy {
            allow_private: true,
            allow_http: true,
            ..Default::default()
        },
        rotation_grace: Duration::from_secs(3600),
        retry: RetryPolicy::parse("0s,1s,1s").expect("schedule"),
        retention: Duration::from_secs(30 * 86_400),
        park_after: Duration::from_secs(15 * 60),
        attempt_lease: None,
        sweep_grace: Duration::from_secs(15 * 60),
        fan_out_page_size: crate::services::fan_out::PAGE_SIZE,
        disable_after: crate::domain::health::DISABLE_AFTER
            .to_std()
            .expect("positive"),
        disable_warning_lead: Duration::from_secs(24 * 3600),
        portal_base_url: None,
    }
}

pub struct World {
    pub stores: MemoryStores,
    pub deps: Deps,
    pub cipher: Arc<LocalCipher>,
}

pub fn world_with(policy: Policy) -> World {
    let stores = MemoryStores::default();
    let cipher = Arc::new(LocalCipher::new([3u8; 32]));
    let deps = crate::wiring::memory(&stores, policy, cipher.clone());
    World {
        stores,
        deps,
        cipher,
    }
}

pub fn world() -> World {
    world_with(policy())
}

impl World {
    /// An endpoint of [`ORG`] at `url` (shaped by `shape`), stored, with its plaintext secret.
    pub async fn endpoint(
        &self,
        url: &str,
        shape: impl FnOnce(Endpoint) -> Endpoint,
    ) -> (Endpoint, SigningSecret) {
        let id = EndpointId::new();
        let secret = SigningSecret::generate();
        let sealed = self
            .cipher
            .seal(&secret, &id.to_string())
            .await
            .expect("seal");
        let e = shape(Endpoint::new(id, ORG, url, sealed, time::now()));
        self.stores.endpoints.create(&e).await.expect("endpoint");
        (e, secret)
    }

    /// An event of [`ORG`], stored.
    pub async fn event(&self, event_type: &str, payload: &str) -> Event {
        let e = Event::new(ORG, event_type, payload.into(), time::now());
        self.stores.events.create(&e).await.expect("event");
        e
    }

    pub async fn stored(&self, d: &Delivery) -> Option<Delivery> {
        self.stores
            .deliveries
            .get(d.endpoint_id, d.id)
            .await
            .expect("get delivery")
    }

    pub async fn endpoint_now(&self, id: EndpointId) -> Endpoint {
        self.stores
            .endpoints
            .get(ORG, id)
            .await
            .expect("get endpoint")
            .expect("endpoint")
    }
}

/// One SQS record carrying `body`, first sent at `sent_at`.
pub fn record(id: &str, body: &str, sent_at: Timestamp) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(id.into());
    r.receipt_handle = Some(format!("rh-{id}"));
    r.body = Some(body.into());
    r.attributes.insert(
        "SentTimestamp".into(),
        sent_at.timestamp_millis().to_string(),
    );
    r.attributes
        .insert("ApproximateReceiveCount".into(), "1".into());
    r
}

/// A batch of one record `m-1` (receipt `rh-m-1`) carrying `msg`, sent just now.
pub fn batch(msg: &DeliveryMessage) -> SqsEvent {
    batch_sent_at(msg, time::now())
}

pub fn batch_sent_at(msg: &DeliveryMessage, sent_at: Timestamp) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records.push(record(
        "m-1",
        &serde_json::to_string(msg).expect("json"),
        sent_at,
    ));
    e
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A loopback HTTP receiver answering every request with `status`.
pub struct Receiver {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

pub async fn receiver(status: u16) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let request = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let r = Request {
                        head,
                        body: Vec::new(),
                    };
                    let len: usize = r
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Request {
                            body: buf[end + 4..end + 4 + len].to_vec(),
                            ..r
                        };
                    }
                };
                seen.lock().expect("lock").push(request);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    Receiver { url, requests }
}
