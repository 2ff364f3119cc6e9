//! Handler tests: every API Gateway and SQS fixture in `events/` goes through the same
//! conversion and handler the Lambda runs, against the in-memory twins of the ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capy_functions::{to_api_request, to_lambda_response};
use capy_shared::api::{self, ApiDeps, ApiSettings, Route};
use capy_shared::auth::{Authenticator, hash_api_key};
use capy_shared::delivery::{
    ConsumerDeps, DeadLetterDeps, SweeperDeps, dead_letter_batch, deliver_batch, sweep,
};
use capy_shared::http::Sender;
use capy_shared::ids::EventId;
use capy_shared::memory::*;
use capy_shared::model::{ApiKeyRecord, Delivery, DeliveryState, Endpoint};
use capy_shared::ports::*;
use capy_shared::retry::RetryPolicy;
use capy_shared::secrets::{LocalCipher, SecretCipher};
use capy_shared::signing::SigningSecret;
use capy_shared::ssrf::DestinationPolicy;
use serde_json::Value;

const FIXTURE_KEY: &str = "capy_live_testKey0123456789ABCDEFGHIJKLMNOPQRSTUVW";
const ORG: &str = "org_test";

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct World {
    endpoints: Arc<MemoryEndpoints>,
    deliveries: Arc<MemoryDeliveries>,
    queue: Arc<MemoryQueue>,
    cipher: Arc<LocalCipher>,
    api: ApiDeps,
}

/// The store as the fixtures expect it: their key, endpoint and deliveries exist.
async fn world(url: &str) -> World {
    let keys = Arc::new(MemoryApiKeys::default());
    keys.put(&ApiKeyRecord {
        key_hash: hash_api_key(FIXTURE_KEY),
        organization_id: ORG.into(),
        project_id: None,
        created_at: capy_shared::time::now(),
        revoked_at: None,
    })
    .await
    .expect("key");
    let endpoints = Arc::new(MemoryEndpoints::default());
    let deliveries = Arc::new(MemoryDeliveries::default());
    let queue = Arc::new(MemoryQueue::default());
    let cipher = Arc::new(LocalCipher::new([9u8; 32]));
    let id: capy_shared::ids::EndpointId = "ep_01JABCDEFGHJKMNPQRSTVWXYZ0"
        .parse()
        .expect("fixture endpoint id");
    let now = capy_shared::time::now();
    let sealed = cipher
        .seal(&SigningSecret::generate(), &id.to_string())
        .await
        .expect("seal");
    let endpoint = Endpoint::new(id, ORG, url, sealed, now);
    endpoints.create(&endpoint).await.expect("endpoint");
    for dlv in [
        "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "dlv_01JABCDEFGHJKMNPQRSTVWXYZ1",
    ] {
        let published = now - chrono::TimeDelta::minutes(1);
        let mut d = Delivery::new_pending(
            &endpoint,
            EventId::new(),
            "invoice.paid",
            "{\"n\":1}",
            3,
            published,
        );
        d.id = dlv.parse().expect("fixture delivery id");
        deliveries.insert_many(&[d]).await.expect("delivery");
    }
    let api = ApiDeps {
        auth: Authenticator::new(keys, None),
        endpoints: endpoints.clone(),
        deliveries: deliveries.clone(),
        idempotency: Arc::new(MemoryIdempotency::default()),
        queue: queue.clone(),
        cipher: cipher.clone(),
        settings: ApiSettings {
            destinations: DestinationPolicy {
                allow_private: true,
                allow_http: true,
                ..Default::default()
            },
            rotation_grace: Duration::from_secs(3600),
            retry: RetryPolicy::parse("0s,1s,1s").expect("schedule"),
        },
    };
    World {
        endpoints,
        deliveries,
        queue,
        cipher,
        api,
    }
}

async fn invoke(w: &World, route: Route) -> (u16, Value) {
    let req =
        lambda_http::request::from_str(&fixture(route.function())).expect("API Gateway v2 fixture");
    let resp = to_lambda_response(api::handle(&w.api, route, to_api_request(req)).await);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("JSON"),
        other => panic!("unexpected body {other:?}"),
    };
    (resp.status().as_u16(), body)
}

#[tokio::test]
async fn every_api_fixture_gets_its_success_status() {
    let expected = [
        (Route::ListEndpoints, 200, "webhook_endpoints"),
        (Route::CreateEndpoint, 201, "plaintext_secret"),
        (Route::UpdateEndpoint, 200, "webhook_endpoint"),
        (Route::RotateSecret, 200, "plaintext_secret"),
        (Route::ListDeliveries, 200, "deliveries"),
        (Route::GetDelivery, 200, "delivery"),
        (Route::RetryDelivery, 202, "delivery"),
        (Route::PublishEvent, 202, "delivery_ids"),
        (Route::DeleteEndpoint, 200, "deleted"),
    ];
    assert_eq!(expected.len(), Route::ALL.len());
    let w = world("https://hooks.example.com/capy").await;
    for (route, status, field) in expected {
        let (got, body) = invoke(&w, route).await;
        assert_eq!(got, status, "{route:?}: {body}");
        assert!(body.get(field).is_some(), "{route:?}: {body}");
    }
    // Retry and publish enqueued their messages.
    assert!(w.queue.take_sent().len() >= 2);
    let left = w.endpoints.list(ORG).await.expect("list");
    assert!(
        left.iter()
            .all(|e| e.id.to_string() != "ep_01JABCDEFGHJKMNPQRSTVWXYZ0"),
        "the delete fixture ran last"
    );
}

#[tokio::test]
async fn fixtures_without_their_credential_are_refused() {
    let w = world("https://hooks.example.com/capy").await;
    for route in Route::ALL {
        let mut event: Value = serde_json::from_str(&fixture(route.function())).expect("JSON");
        event["headers"]
            .as_object_mut()
            .expect("headers")
            .remove("authorization");
        let req = lambda_http::request::from_str(&event.to_string()).expect("fixture");
        let resp = api::handle(&w.api, route, to_api_request(req)).await;
        assert_eq!(resp.status, 401, "{route:?}");
        assert!(resp.body["error"].is_string());
    }
}

/// A receiver that answers every request with `status`.
async fn receiver(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/hook")
}

fn consumer(w: &World) -> ConsumerDeps {
    ConsumerDeps {
        reader: Arc::new(SeparateReads {
            endpoints: w.endpoints.clone(),
            deliveries: w.deliveries.clone(),
        }),
        endpoints: w.endpoints.clone(),
        deliveries: w.deliveries.clone(),
        cipher: w.cipher.clone(),
        visibility: w.queue.clone(),
        sender: Sender::new(DestinationPolicy {
            allow_private: true,
            allow_http: true,
            ..Default::default()
        }),
        retry: RetryPolicy::parse("0s,1s,1s").expect("schedule"),
    }
}

fn sqs_fixture(name: &str) -> aws_lambda_events::sqs::SqsEvent {
    serde_json::from_str(&fixture(name)).expect("SQS fixture")
}

#[tokio::test]
async fn deliver_fixture_acknowledges_successes_and_reports_failures() {
    let w = world(&receiver(200).await).await;
    let resp = deliver_batch(&consumer(&w), sqs_fixture("deliver")).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let dlv = "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0".parse().expect("id");
    let d = w
        .deliveries
        .get("ep_01JABCDEFGHJKMNPQRSTVWXYZ0".parse().expect("id"), dlv)
        .await
        .expect("get")
        .expect("delivery");
    assert_eq!(d.state, DeliveryState::Delivered);

    let w = world(&receiver(500).await).await;
    let event = sqs_fixture("deliver");
    let ids: Vec<_> = event
        .records
        .iter()
        .map(|r| r.message_id.clone().expect("id"))
        .collect();
    let resp = deliver_batch(&consumer(&w), event).await;
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ids, "both records are retried later");
    assert_eq!(
        w.queue.postponed().len(),
        2,
        "each retry is timed by a visibility change"
    );
}

#[tokio::test]
async fn dead_letter_fixture_marks_pending_deliveries_failed() {
    let w = world("https://hooks.example.com/capy").await;
    let resp = dead_letter_batch(
        &DeadLetterDeps {
            deliveries: w.deliveries.clone(),
        },
        sqs_fixture("dead-letter"),
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());
    let ep = "ep_01JABCDEFGHJKMNPQRSTVWXYZ0".parse().expect("id");
    let page = w
        .deliveries
        .list(ep, 10, None, Some(DeliveryState::Failed))
        .await
        .expect("list");
    assert_eq!(page.deliveries.len(), 2);
    assert!(page.deliveries.iter().all(|d| {
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("dead-letter"))
    }));
}

#[tokio::test]
async fn sweeper_fixture_event_reenqueues_overdue_deliveries() {
    let _: aws_lambda_events::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_str(&fixture("sweeper")).expect("scheduled event fixture");
    let w = world("https://hooks.example.com/capy").await;
    let deps = SweeperDeps {
        deliveries: w.deliveries.clone(),
        queue: w.queue.clone(),
        grace: Duration::ZERO,
    };
    assert_eq!(sweep(&deps).await.expect("sweep"), 2);
    assert_eq!(w.queue.take_sent().len(), 2);
}
