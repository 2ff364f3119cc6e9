//! Handler tests: every API Gateway and SQS fixture in `events/` goes through the same
//! conversion and handler the Lambda runs, against the in-memory twins of the ports
//! (`wiring::memory`). The route list is `Route::ALL`; each route's fixture is
//! `events/<function>.json` and its expected status `Route::success_status`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use capy_functions::{to_api_request, to_lambda_response};
use capy_shared::adapters::memory::{MemoryDeliveries, MemoryEvents, MemoryStores};
use capy_shared::adapters::secrets::LocalCipher;
use capy_shared::api::{self, Route};
use capy_shared::auth::{PORTAL_TOKEN_PREFIX, hash_api_key};
use capy_shared::consumers;
use capy_shared::domain::api_key::ApiKeyRecord;
use capy_shared::domain::delivery::{Delivery, DeliveryState, Expected};
use capy_shared::domain::endpoint::Endpoint;
use capy_shared::domain::event::{Event, FanOutState};
use capy_shared::domain::ids::{DeliveryId, EndpointId, EventId, JobId};
use capy_shared::domain::job::{Job, ReplayParams};
use capy_shared::domain::portal_session::{Capability, PortalSessionRecord};
use capy_shared::domain::retry::RetryPolicy;
use capy_shared::domain::signing::SigningSecret;
use capy_shared::domain::time;
use capy_shared::ports::*;
use capy_shared::services::{Deps, Policy};
use capy_shared::ssrf::DestinationPolicy;
use serde_json::Value;

/// The records the fixtures name.
const ORG: &str = "org_test";
const ENDPOINT: &str = "ep_01JABCDEFGHJKMNPQRSTVWXYZ0";
const EVENT: &str = "evt_01JABCDEFGHJKMNPQRSTVWXYZ0";
const DELIVERIES: [&str; 2] = [
    "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0",
    "dlv_01JABCDEFGHJKMNPQRSTVWXYZ1",
];
const JOB: &str = "job_01JABCDEFGHJKMNPQRSTVWXYZ0";
/// The job's endpoint: another one, so the replay fixture finds its endpoint's slot free.
const JOB_ENDPOINT: &str = "ep_01JABCDEFGHJKMNPQRSTVWXYZ1";
const PORTAL_SESSION: &str = "ps_01JABCDEFGHJKMNPQRSTVWXYZ0";
/// The fixtures were recorded in November 2025; their records must not have expired.
const RETENTION: Duration = Duration::from_secs(10 * 365 * 86_400);

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("fixture id")
}

/// Every bearer credential the route fixtures carry.
fn fixture_credentials() -> Vec<String> {
    let mut out: Vec<String> = Route::ALL
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_str(&fixture(r.function())).expect("JSON");
            v["headers"]["authorization"]
                .as_str()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn policy() -> Policy {
    Policy {
        destinations: DestinationPolicy {
            allow_private: true,
            allow_http: true,
            ..Default::default()
        },
        rotation_grace: Duration::from_secs(3600),
        retry: RetryPolicy::parse("0s,1s,1s").expect("schedule"),
        retention: RETENTION,
        park_after: Duration::from_secs(15 * 60),
        attempt_lease: None,
        sweep_grace: Duration::from_secs(15 * 60),
        fan_out_page_size: 100,
        disable_after: Duration::from_secs(5 * 86_400),
        disable_warning_lead: Duration::from_secs(86_400),
        portal_base_url: None,
    }
}

struct World {
    stores: MemoryStores,
    deps: Deps,
}

/// The store as the fixtures expect it: their credentials, endpoint (at `url`), event,
/// deliveries (sent outside a consumer a minute ago and not seen since: due for the
/// sweeper), job and portal session exist.
async fn world(url: &str) -> World {
    let stores = MemoryStores {
        events: Arc::new(MemoryEvents::with_retention(RETENTION)),
        deliveries: Arc::new(MemoryDeliveries::with_retention(RETENTION)),
        ..MemoryStores::default()
    };
    let cipher = Arc::new(LocalCipher::new([9u8; 32]));
    let deps = capy_shared::wiring::memory(&stores, policy(), cipher.clone());
    let now = time::now();
    for credential in fixture_credentials() {
        if credential.starts_with(PORTAL_TOKEN_PREFIX) {
            stores
                .portal_sessions
                .create(&PortalSessionRecord {
                    id: id(PORTAL_SESSION),
                    token_hash: hash_api_key(&credential),
                    organization_id: ORG.into(),
                    capabilities: Capability::ALL.to_vec(),
                    created_at: now,
                    expires_at: now + chrono::TimeDelta::hours(1),
                    revoked_at: None,
                })
                .await
                .expect("portal session");
        } else {
            stores
                .keys
                .put(&ApiKeyRecord {
                    key_hash: hash_api_key(&credential),
                    organization_id: ORG.into(),
                    project_id: None,
                    created_at: now,
                    revoked_at: None,
                })
                .await
                .expect("key");
        }
    }
    for ep in [ENDPOINT, JOB_ENDPOINT] {
        let ep_id: EndpointId = id(ep);
        let sealed = cipher
            .seal(&SigningSecret::generate(), ep)
            .await
            .expect("seal");
        stores
            .endpoints
            .create(&Endpoint::new(ep_id, ORG, url, sealed, now))
            .await
            .expect("endpoint");
    }
    let event_id: EventId = id(EVENT);
    let event = Event {
        id: event_id,
        created_at: event_id.created_at(),
        ..Event::new(
            ORG,
            "invoice.paid",
            r#"{"invoice_id":"inv_1","amount_cents":4200}"#.into(),
            now,
        )
    };
    stores.events.create(&event).await.expect("event");
    for dlv in DELIVERIES {
        let mut d = Delivery::first(&event, id(ENDPOINT), 3);
        d.id = id(dlv);
        d.sweep_at = Some(now - chrono::TimeDelta::minutes(1));
        stores
            .deliveries
            .save(&d, Expected::New)
            .await
            .expect("delivery");
    }
    let job = Job {
        id: id::<JobId>(JOB),
        ..Job::replay(
            ORG,
            id(JOB_ENDPOINT),
            ReplayParams {
                since: now - chrono::TimeDelta::hours(1),
                until: now,
                states: vec![DeliveryState::Failed],
                event_types: Vec::new(),
            },
            0,
            now,
        )
    };
    stores.jobs.create(&job).await.expect("job");
    World { stores, deps }
}

async fn invoke(w: &World, route: Route, event: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(event).expect("API Gateway v2 fixture");
    let resp = to_lambda_response(api::handle(&w.deps, route, to_api_request(req)).await);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("JSON"),
        other => panic!("unexpected body {other:?}"),
    };
    (resp.status().as_u16(), body)
}

/// `Route::ALL` in order, the deletions last (they remove what the others read).
fn in_fixture_order() -> Vec<Route> {
    let mut routes = Route::ALL.to_vec();
    routes.sort_by_key(|r| r.method() == http::Method::DELETE);
    routes
}

#[tokio::test]
async fn every_api_fixture_gets_its_success_status() {
    let w = world("https://hooks.example.com/capy").await;
    for route in in_fixture_order() {
        let (got, body) = invoke(&w, route, &fixture(route.function())).await;
        assert_eq!(got, route.success_status(), "{route:?}: {body}");
        assert!(
            body.is_object() && body.get("error").is_none(),
            "{route:?}: {body}"
        );
    }
    // Publish, retry, resend and the test event enqueued their messages.
    let sent = w.stores.queue.take_sent();
    assert!(sent.len() >= 4, "{sent:?}");
    assert_eq!(
        w.stores
            .endpoints
            .get(ORG, id(ENDPOINT))
            .await
            .expect("get"),
        None,
        "the delete fixture ran"
    );
}

#[tokio::test]
async fn every_route_has_a_fixture_for_its_own_method_and_path() {
    for route in Route::ALL {
        let v: Value = serde_json::from_str(&fixture(route.function())).expect("JSON");
        let path = v["rawPath"].as_str().expect("rawPath");
        let method: http::Method = v["requestContext"]["http"]["method"]
            .as_str()
            .expect("method")
            .parse()
            .expect("a method");
        assert_eq!(
            api::match_route(&method, path).map(|m| m.0),
            Ok(route),
            "{}",
            route.function()
        );
    }
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
        let (status, body) = invoke(&w, route, &event.to_string()).await;
        assert_eq!(status, 401, "{route:?}: {body}");
        assert!(body["error"].is_string(), "{route:?}: {body}");
    }
    assert!(
        w.stores.queue.take_sent().is_empty(),
        "a refusal changes nothing"
    );
}

/// A receiver that answers every request with `status`.
async fn receiver(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
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

fn sqs_fixture(name: &str) -> SqsEvent {
    serde_json::from_str(&fixture(name)).expect("SQS fixture")
}

async fn delivery(w: &World, dlv: &str) -> Delivery {
    w.stores
        .deliveries
        .get(id(ENDPOINT), id(dlv))
        .await
        .expect("get")
        .expect("delivery")
}

#[tokio::test]
async fn deliver_fixture_acknowledges_successes_and_reports_failures() {
    let w = world(&receiver(200).await).await;
    let resp = consumers::deliver::deliver_batch(&w.deps, sqs_fixture("deliver")).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    for dlv in DELIVERIES {
        let d = delivery(&w, dlv).await;
        assert_eq!(
            (d.state, d.attempts),
            (DeliveryState::Delivered, 1),
            "{dlv}"
        );
        assert_eq!(
            d.sweep_at, None,
            "a consumer's write clears the sweep entry"
        );
    }

    let w = world(&receiver(500).await).await;
    let event = sqs_fixture("deliver");
    let ids: Vec<_> = event
        .records
        .iter()
        .map(|r| r.message_id.clone().expect("id"))
        .collect();
    let resp = consumers::deliver::deliver_batch(&w.deps, event).await;
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ids, "both records are retried later");
    assert_eq!(
        w.stores.queue.postponed().len(),
        2,
        "each retry is timed by a visibility change"
    );
    for dlv in DELIVERIES {
        let d = delivery(&w, dlv).await;
        assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 1), "{dlv}");
        assert_eq!(d.response_status, Some(500));
    }
}

#[tokio::test]
async fn fan_out_fixture_fans_the_event_out() {
    let w = world("https://hooks.example.com/capy").await;
    let resp = consumers::fan_out::fan_out_batch(&w.deps, sqs_fixture("fan-out")).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let sent: Vec<_> = w
        .stores
        .queue
        .take_sent()
        .iter()
        .map(|m| m.delivery_id)
        .collect();
    let mut expected: Vec<DeliveryId> = [ENDPOINT, JOB_ENDPOINT]
        .iter()
        .map(|ep| DeliveryId::for_event(id(EVENT), id(ep)))
        .collect();
    expected.sort();
    let mut sent_sorted = sent.clone();
    sent_sorted.sort();
    assert_eq!(sent_sorted, expected);
    let event = w
        .stores
        .events
        .get(ORG, id(EVENT))
        .await
        .expect("get")
        .expect("event");
    assert_eq!(
        (event.fan_out.state, event.fan_out.endpoints),
        (FanOutState::Done, 2)
    );
}

#[tokio::test]
async fn dead_letter_fixture_marks_pending_deliveries_failed() {
    let w = world("https://hooks.example.com/capy").await;
    let batch = sqs_fixture("dead-letter");
    assert!(batch.records.len() >= 3, "two deliveries and a fan-out");
    let resp = consumers::dead_letter::dead_letter_batch(&w.deps, batch).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let page = w
        .stores
        .deliveries
        .list(id(ENDPOINT), 10, None, Some(DeliveryState::Failed))
        .await
        .expect("list");
    assert_eq!(page.deliveries.len(), 2);
    assert!(page.deliveries.iter().all(|d| {
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("dead-letter"))
    }));
    // The fan-out's dead letter leaves its event recorded, fan-out pending.
    let event = w
        .stores
        .events
        .get(ORG, id(EVENT))
        .await
        .expect("get")
        .expect("event");
    assert_eq!(event.fan_out.state, FanOutState::Pending);
}

#[tokio::test]
async fn sweeper_fixture_event_sends_the_deliveries_whose_sweep_is_due() {
    let _: aws_lambda_events::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_str(&fixture("sweeper")).expect("scheduled event fixture");
    let w = world("https://hooks.example.com/capy").await;
    assert_eq!(consumers::sweeper::sweep(&w.deps).await.expect("sweep"), 2);
    let mut sent: Vec<String> = w
        .stores
        .queue
        .take_sent()
        .iter()
        .map(|m| m.delivery_id.to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, DELIVERIES);
    assert_eq!(
        consumers::sweeper::sweep(&w.deps).await.expect("sweep"),
        0,
        "moved one grace period on"
    );
}
