//! Portal sessions and endpoint stats over real HTTP against `capy serve` and moto (issue 12):
//! the capability matrix over every route, revocation, expiry, no cross-organization access,
//! no minting from a portal token, `GET /v1/portal-session`, and stats that match the
//! deliveries made.

use std::collections::BTreeMap;
use std::time::Duration;

use capy_shared::adapters::dynamo::Table;
use capy_shared::api::Route;
use capy_shared::auth::mint_portal_session;
use capy_shared::domain::delivery::{Attempt, Delivery, DeliveryState, Expected};
use capy_shared::domain::ids::{DeliveryId, EndpointId, EventId};
use capy_shared::domain::portal_session::Capability;
use capy_shared::domain::time;
use capy_shared::ports::{DeliveryLog, PortalSessionStore};
use capy_tests::{Receiver, Reply, Stack, StackOptions, eventually};
use serde_json::{Value, json};

fn org_path(org: &str, rest: &str) -> String {
    format!("/v1/organizations/{org}{rest}")
}

/// Mints a portal session with an API key; returns (response body, token).
async fn mint(stack: &Stack, org: &str, key: &str, body: Option<Value>) -> (Value, String) {
    let (status, json) = stack
        .call("POST", &org_path(org, "/portal-sessions"), Some(key), body)
        .await;
    assert_eq!(status, 201, "{json}");
    let token = json["token"].as_str().expect("token").to_owned();
    (json, token)
}

/// What the matrix needs to exist: one endpoint with one settled delivery of one event.
struct World {
    org: String,
    key: String,
    endpoint: String,
    delivery: String,
    event: String,
    other_session: String,
    /// A canceled replay job (canceling it again is 200).
    job: String,
}

/// One concrete request per route that succeeds for a credential allowed to make it, with
/// the status it succeeds with: the route table's path filled with the world's ids, and its
/// success status. Only routes that need a body or a fresh endpoint are named here.
async fn request(stack: &Stack, w: &World, route: Route) -> (String, Option<Value>, u16) {
    // A fresh endpoint for the routes that change or remove one.
    let endpoint = if matches!(
        route,
        Route::UpdateEndpoint | Route::DeleteEndpoint | Route::RotateSecret
    ) {
        stack
            .create_endpoint(
                &w.org,
                &w.key,
                json!({"url": "https://hooks.example.com/fresh"}),
            )
            .await
            .0
    } else {
        w.endpoint.clone()
    };
    let path = route
        .path()
        .replace("{organization_id}", &w.org)
        .replace("{endpoint_id}", &endpoint)
        .replace("{delivery_id}", &w.delivery)
        .replace("{event_id}", &w.event)
        .replace("{job_id}", &w.job)
        .replace("{session_id}", &w.other_session);
    assert!(!path.contains('{'), "{path}: a parameter the world lacks");
    let body = match route {
        Route::CreateEndpoint => Some(json!({"url": "https://hooks.example.com/new"})),
        Route::UpdateEndpoint => Some(json!({"description": "changed"})),
        Route::PublishEvent => Some(json!({"event_type": "portal.matrix", "payload": {}})),
        // A dry run: a real replay would hold the endpoint's replay slot for the next cells.
        Route::ReplayEndpoint => Some(json!({"since": since_an_hour_ago(), "dry_run": true})),
        Route::ResendEvent => Some(json!({"endpoint_id": w.endpoint})),
        _ => None,
    };
    let ok = match route {
        Route::ReplayEndpoint => 200,
        _ => route.success_status(),
    };
    (path, body, ok)
}

fn since_an_hour_ago() -> String {
    time::format(&(time::now() - chrono::TimeDelta::hours(1)))
}

/// A replay job of `endpoint`, canceled (a job may finish before the cancel lands; then
/// another is started).
async fn canceled_job(stack: &Stack, org: &str, key: &str, endpoint: &str) -> String {
    eventually(Duration::from_secs(30), "a canceled replay job", || async {
        let (status, started) = stack
            .call(
                "POST",
                &org_path(org, &format!("/webhook-endpoints/{endpoint}/replay")),
                Some(key),
                Some(json!({"since": since_an_hour_ago()})),
            )
            .await;
        if status == 409 {
            return None; // the previous one is still running
        }
        assert_eq!(status, 202, "{started}");
        let id = started["job"]["id"].as_str().expect("job id").to_owned();
        let (status, canceled) = stack
            .call(
                "POST",
                &org_path(org, &format!("/jobs/{id}/cancel")),
                Some(key),
                None,
            )
            .await;
        (status == 200 && canceled["job"]["state"] == "canceled").then_some(id)
    })
    .await
}

/// The rules, written out here rather than read from the route table: every session
/// reads; `manage_endpoints` changes endpoints and sends test events; `replay` retries,
/// replays, resends and cancels; nobody publishes or mints/revokes sessions with a portal token.
fn allowed(route: Route, caps: &[Capability]) -> bool {
    use Route::*;
    match route {
        CreateEndpoint | UpdateEndpoint | DeleteEndpoint | RotateSecret | TestEndpoint => {
            caps.contains(&Capability::ManageEndpoints)
        }
        RetryDelivery | ReplayEndpoint | CancelJob | ResendEvent => {
            caps.contains(&Capability::Replay)
        }
        PublishEvent | CreatePortalSession | DeletePortalSession => false,
        _ => {
            assert_eq!(
                route.method(),
                "GET",
                "{route:?}: say who may call a new write"
            );
            true
        }
    }
}

#[tokio::test]
async fn portal_tokens_reach_exactly_the_routes_their_capabilities_allow() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let org = "org_matrix";
    let key = stack.mint_key(org, None);
    let (endpoint, _) = stack
        .create_endpoint(org, &key, json!({"url": receiver.url}))
        .await;
    let published = stack
        .publish(
            org,
            &key,
            json!({"event_type": "matrix.seed", "payload": {"n": 1}}),
        )
        .await;
    let event = published["event_id"].as_str().expect("event").to_owned();
    let delivery = published["delivery_ids"][0]
        .as_str()
        .expect("inline delivery")
        .to_owned();
    stack
        .settled(org, &key, &endpoint, &delivery, Duration::from_secs(20))
        .await;
    let (other, _) = mint(&stack, org, &key, None).await;
    let job = canceled_job(&stack, org, &key, &endpoint).await;
    let w = World {
        org: org.into(),
        key: key.clone(),
        endpoint: endpoint.clone(),
        delivery,
        event,
        other_session: other["portal_session"]["id"]
            .as_str()
            .expect("id")
            .to_owned(),
        job,
    };

    // The baseline: an API key gets every organization route's success (so a 403 below is
    // the capability check, not a bad request), and GET /v1/portal-session is for portal
    // tokens only.
    for route in Route::ALL {
        let (path, body, ok) = request(&stack, &w, route).await;
        let method = route.method();
        let (status, json) = stack.call(method.as_str(), &path, Some(&key), body).await;
        let want = if route == Route::GetPortalSession {
            401
        } else {
            ok
        };
        assert_eq!(status, want, "API key: {route:?} {path}: {json}");
    }

    let sets: [&[Capability]; 5] = [
        &[Capability::Read],
        &[Capability::ManageEndpoints],
        &[Capability::Replay],
        &[Capability::Read, Capability::Replay],
        &Capability::ALL,
    ];
    let mut checked = 0;
    for caps in sets {
        let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
        let (minted, token) = mint(&stack, org, &key, Some(json!({ "capabilities": names }))).await;
        assert_eq!(minted["portal_session"]["capabilities"], json!(names));
        for route in Route::ALL {
            let (path, body, ok) = request(&stack, &w, route).await;
            let method = route.method();
            let (status, json) = stack.call(method.as_str(), &path, Some(&token), body).await;
            let want = if allowed(route, caps) { ok } else { 403 };
            assert_eq!(status, want, "{names:?}: {route:?} {path}: {json}");
            if want == 403 {
                assert!(
                    json["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{json}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * Route::ALL.len());

    // No cross-organization access: every organization route of another org is 403 for a
    // session with every capability, whatever the ids.
    let (_, all) = mint(&stack, org, &key, None).await;
    let other_org = "org_matrix_other";
    let other_key = stack.mint_key(other_org, None);
    let (other_endpoint, _) = stack
        .create_endpoint(other_org, &other_key, json!({"url": receiver.url}))
        .await;
    let ow = World {
        org: other_org.into(),
        key: other_key.clone(),
        endpoint: other_endpoint,
        ..w
    };
    for route in Route::ALL {
        if route == Route::GetPortalSession {
            continue;
        }
        let (path, body, _) = request(&stack, &ow, route).await;
        let method = route.method();
        let (status, json) = stack.call(method.as_str(), &path, Some(&all), body).await;
        assert_eq!(status, 403, "cross-org {route:?} {path}: {json}");
    }

    // The tokens are nowhere in the table or the server's log: only their hashes are stored.
    let dump = stack.dump_table().await;
    let log = stack.log();
    for t in [&all, &token_of(&other)] {
        assert!(!dump.contains(t.as_str()), "a token is stored in plaintext");
        assert!(!log.contains(t.as_str()), "a token is in the log");
    }
}

fn token_of(minted: &Value) -> String {
    minted["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn sessions_are_described_revoked_and_expire_at_once() {
    let stack = Stack::start_with(
        StackOptions::default().set("PORTAL_BASE_URL", "https://portal.example.com/"),
    )
    .await;
    let org = "org_sessions";
    let key = stack.mint_key(org, None);
    let list = org_path(org, "/webhook-endpoints");

    // Shape, defaults, and the URL from PORTAL_BASE_URL.
    let (minted, token) = mint(&stack, org, &key, None).await;
    let s = &minted["portal_session"];
    let id = s["id"].as_str().expect("id").to_owned();
    assert!(
        id.starts_with("ps_") && token.starts_with("capy_portal_"),
        "{minted}"
    );
    assert_eq!(s["organization_id"], org);
    assert_eq!(
        s["capabilities"],
        json!(["read", "manage_endpoints", "replay"])
    );
    let created = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().expect("t"))
        .expect("created_at");
    let expires = chrono::DateTime::parse_from_rfc3339(s["expires_at"].as_str().expect("t"))
        .expect("expires_at");
    assert_eq!((expires - created).num_seconds(), 86_400);
    assert_eq!(
        minted["url"],
        format!("https://portal.example.com/portal/#token={token}")
    );
    let keys: Vec<&String> = minted.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["portal_session", "token", "url"]);

    // GET /v1/portal-session: the same session for its token, 401 for anything else.
    let (status, me) = stack
        .call("GET", "/v1/portal-session", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["portal_session"], *s);
    for cred in [None, Some(key.as_str()), Some("capy_portal_nope")] {
        let (status, json) = stack.call("GET", "/v1/portal-session", cred, None).await;
        assert_eq!(status, 401, "{cred:?}: {json}");
    }

    // Bad input is 400 and mints nothing.
    let before = stack.dump_table().await.matches("PS#").count();
    for bad in [
        json!({"expires_in": 299}),
        json!({"expires_in": 604_801}),
        json!({"expires_in": -1}),
        json!({"expires_in": 1.5}),
        json!({"expires_in": null}),
        json!({"capabilities": []}),
        json!({"capabilities": ["admin"]}),
        json!({"capabilities": "read"}),
        json!({"capabilities": null}),
        json!({"scope": "all"}),
        json!([]),
    ] {
        let (status, json) = stack
            .call(
                "POST",
                &org_path(org, "/portal-sessions"),
                Some(&key),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(stack.dump_table().await.matches("PS#").count(), before);
    let (week, _) = mint(&stack, org, &key, Some(json!({"expires_in": 604_800}))).await;
    assert!(week["portal_session"]["expires_at"].is_string());

    // Revocation: 200, then the token is 401 at once on every route, and stays revoked.
    assert_eq!(stack.call("GET", &list, Some(&token), None).await.0, 200);
    let other_key = stack.mint_key("org_sessions_other", None);
    let revoke = org_path(org, &format!("/portal-sessions/{id}"));
    // Another organization's key cannot see or revoke it (403 on this org's path; 404 on its own).
    assert_eq!(
        stack
            .call("DELETE", &revoke, Some(&other_key), None)
            .await
            .0,
        403
    );
    let (status, json) = stack
        .call(
            "DELETE",
            &org_path("org_sessions_other", &format!("/portal-sessions/{id}")),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(status, 404, "{json}");
    assert_eq!(stack.call("GET", &list, Some(&token), None).await.0, 200);
    let (status, json) = stack.call("DELETE", &revoke, Some(&key), None).await;
    assert_eq!((status, json), (200, json!({"deleted": true})));
    for (method, path) in [("GET", list.as_str()), ("GET", "/v1/portal-session")] {
        let (status, json) = stack.call(method, path, Some(&token), None).await;
        assert_eq!(status, 401, "{path}: {json}");
    }
    assert_eq!(stack.call("DELETE", &revoke, Some(&key), None).await.0, 200);
    for missing in ["ps_01JZ0000000000000000000000", "ps_nope", "nope"] {
        let (status, json) = stack
            .call(
                "DELETE",
                &org_path(org, &format!("/portal-sessions/{missing}")),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, 404, "{missing}: {json}");
    }

    // Expiry: a session minted with the shortest life (300 s) and, stored through the real
    // adapter, one whose 300 s ran out an hour ago. The expired one is 401 at once, even
    // though DynamoDB's TTL has not deleted its item.
    let (short, short_token) = mint(&stack, org, &key, Some(json!({"expires_in": 300}))).await;
    let s = &short["portal_session"];
    let created = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().expect("t"))
        .expect("created_at");
    let expires = chrono::DateTime::parse_from_rfc3339(s["expires_at"].as_str().expect("t"))
        .expect("expires_at");
    assert_eq!((expires - created).num_seconds(), 300);
    assert_eq!(
        stack.call("GET", &list, Some(&short_token), None).await.0,
        200
    );
    let table = Table::new(stack.dynamo(), stack.table.clone());
    let expired = mint_portal_session(
        org,
        Capability::ALL.to_vec(),
        Duration::from_secs(300),
        time::now() - chrono::TimeDelta::hours(1),
    );
    table.create(&expired.record).await.expect("store");
    assert!(
        PortalSessionStore::get(&table, expired.record.id)
            .await
            .expect("get")
            .is_some(),
        "the item is still there"
    );
    for path in [list.as_str(), "/v1/portal-session"] {
        let (status, json) = stack.call("GET", path, Some(&expired.token), None).await;
        assert_eq!(status, 401, "{path}: {json}");
    }
    // The item carries the TTL attribute at its expiry.
    let item = stack
        .dynamo()
        .get_item()
        .table_name(&stack.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("PS#{}", expired.record.id)),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("PS".into()),
        )
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    let at = expired.record.expires_at;
    let ttl = at.timestamp() + i64::from(at.timestamp_subsec_millis() > 0);
    assert_eq!(
        item["expires_at"].as_n().expect("epoch seconds"),
        &ttl.to_string()
    );
    assert!(!stack.log().contains(&short_token) && !stack.log().contains(&expired.token));
}

#[tokio::test]
async fn the_url_comes_from_the_request_origin_without_a_setting() {
    let stack = Stack::start().await;
    let org = "org_origin";
    let key = stack.mint_key(org, None);
    let (minted, token) = mint(&stack, org, &key, None).await;
    assert_eq!(
        minted["url"],
        format!("{}/portal/#token={token}", stack.base)
    );
    let (status, json) = stack
        .raw(
            "POST",
            &org_path(org, "/portal-sessions"),
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-forwarded-proto", "https"),
                ("host", "api.example.com"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(
        json["url"],
        format!("https://api.example.com/portal/#token={}", token_of(&json))
    );
}

/// The expected stats of one bucket, computed from the deliveries the API lists.
#[derive(Debug, Default, PartialEq)]
struct Expect {
    delivered: u64,
    failed: u64,
    attempts: u64,
    durations: Vec<u64>,
}

fn nearest_rank(sorted: &[u64], p: usize) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    json!(sorted[(p * sorted.len()).div_ceil(100).max(1) - 1])
}

fn hour_of(t: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(t)
        .expect("time")
        .with_timezone(&chrono::Utc);
    time::format(
        &chrono::DurationRound::duration_trunc(t, chrono::TimeDelta::hours(1)).expect("hour"),
    )
}

#[tokio::test]
async fn stats_buckets_match_the_deliveries_made() {
    // One attempt per delivery, and a receiver that fails the first 4 requests: exactly 4
    // deliveries fail and the rest are delivered, whichever order they arrive in.
    let stack = Stack::start_with(StackOptions::default().set("RETRY_SCHEDULE", "0s")).await;
    let receiver = Receiver::scripted(vec![Reply::Status(500); 4], Reply::Status(200)).await;
    let org = "org_stats";
    let key = stack.mint_key(org, None);
    let (endpoint, _) = stack
        .create_endpoint(org, &key, json!({"url": receiver.url}))
        .await;
    const N: usize = 10;
    for i in 0..N {
        stack
            .publish(
                org,
                &key,
                json!({"event_type": "stats.test", "payload": {"i": i}}),
            )
            .await;
    }
    // Two older deliveries in earlier hours, stored through the real adapter, with attempt
    // logs of their own (the API cannot make deliveries in the past).
    let table = Table::new(stack.dynamo(), stack.table.clone());
    let endpoint_id: EndpointId = endpoint.parse().expect("id");
    let now = time::now();
    for (hours_ago, state, durations) in [
        (3, DeliveryState::Failed, vec![900u64, 800, 700]),
        (5, DeliveryState::Delivered, vec![120, 40]),
    ] {
        let created_at = now - chrono::TimeDelta::hours(hours_ago);
        let event = EventId::lowest_at(created_at);
        let d = Delivery {
            id: DeliveryId::for_event(event, endpoint_id),
            endpoint_id,
            organization_id: org.into(),
            event_id: event,
            event_type: "stats.old".into(),
            state,
            attempts: durations.len() as u32,
            max_attempts: 3,
            next_attempt_at: None,
            delivered_at: None,
            response_status: None,
            last_error: None,
            created_at,
            updated_at: created_at,
            attempt_log: durations
                .iter()
                .enumerate()
                .map(|(i, ms)| Attempt {
                    attempt: i as u32 + 1,
                    started_at: created_at,
                    duration_ms: *ms,
                    response_status: Some(500),
                    error: None,
                    response_excerpt: None,
                })
                .collect(),
            sweep_at: None,
            lease: None,
        };
        table.save(&d, Expected::New).await.expect("save");
    }

    let deliveries_path = org_path(
        org,
        &format!("/webhook-endpoints/{endpoint}/deliveries?limit=250"),
    );
    let listed: Vec<Value> = eventually(
        Duration::from_secs(30),
        "every delivery to settle",
        || async {
            let (status, json) = stack.call("GET", &deliveries_path, Some(&key), None).await;
            assert_eq!(status, 200, "{json}");
            let list = json["deliveries"].as_array().expect("list").clone();
            (list.len() == N + 2 && list.iter().all(|d| d["state"] != "pending")).then_some(list)
        },
    )
    .await;
    let failed_now = listed
        .iter()
        .filter(|d| d["event_type"] == "stats.test" && d["state"] == "failed")
        .count();
    assert_eq!(failed_now, 4);

    // What each hour should say, from the deliveries list and each delivery's attempt log.
    let mut expect: BTreeMap<String, Expect> = BTreeMap::new();
    for d in &listed {
        let id = d["id"].as_str().expect("id");
        let detail = stack.delivery(org, &key, &endpoint, id).await;
        let e = expect
            .entry(hour_of(d["created_at"].as_str().expect("t")))
            .or_default();
        match d["state"].as_str() {
            Some("delivered") => e.delivered += 1,
            Some("failed") => e.failed += 1,
            other => panic!("unsettled {other:?}"),
        }
        e.attempts += d["attempts"].as_u64().expect("attempts");
        for a in detail["attempt_log"].as_array().expect("log") {
            e.durations.push(a["duration_ms"].as_u64().expect("ms"));
        }
    }

    let stats_path = org_path(org, &format!("/webhook-endpoints/{endpoint}/stats"));
    let (status, json) = stack.call("GET", &stats_path, Some(&key), None).await;
    assert_eq!(status, 200, "{json}");
    let stats = &json["stats"];
    assert_eq!(stats["period"], "hour");
    let buckets = stats["buckets"].as_array().expect("buckets");
    // The default: the current hour and the 23 before it.
    assert_eq!(buckets.len(), 24);
    let mut totals = (0, 0, 0);
    for b in buckets {
        let start = b["start"].as_str().expect("start");
        let mut e = expect.remove(start).unwrap_or_default();
        e.durations.sort_unstable();
        assert_eq!(
            b,
            &json!({
                "start": start,
                "delivered": e.delivered,
                "failed": e.failed,
                "attempts": e.attempts,
                "p50_ms": nearest_rank(&e.durations, 50),
                "p95_ms": nearest_rank(&e.durations, 95),
            }),
            "bucket {start}"
        );
        totals.0 += e.delivered;
        totals.1 += e.failed;
        totals.2 += e.attempts;
    }
    assert!(
        expect.is_empty(),
        "deliveries outside every bucket: {expect:?}"
    );
    assert_eq!(
        stats["totals"],
        json!({"delivered": totals.0, "failed": totals.1, "attempts": totals.2})
    );
    assert_eq!(totals, (N as u64 - 4 + 1, 4 + 1, N as u64 + 5));
    let old = &buckets
        .iter()
        .find(|b| b["start"] == hour_of(&time::format(&(now - chrono::TimeDelta::hours(3)))))
        .expect("the 3 h old bucket");
    assert_eq!(
        (
            old["failed"].clone(),
            old["p50_ms"].clone(),
            old["p95_ms"].clone()
        ),
        (json!(1), json!(800), json!(900))
    );

    // By day over the same deliveries: the totals agree.
    let since = time::format(&(now - chrono::TimeDelta::days(2)));
    let (status, by_day) = stack
        .call(
            "GET",
            &format!("{stats_path}?period=day&since={}", urlencode(&since)),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{by_day}");
    assert_eq!(by_day["stats"]["period"], "day");
    assert_eq!(by_day["stats"]["totals"], stats["totals"]);

    // A portal token with `read` sees the same stats.
    let (_, token) = mint(&stack, org, &key, Some(json!({"capabilities": ["read"]}))).await;
    let (status, via_portal) = stack.call("GET", &stats_path, Some(&token), None).await;
    assert_eq!(status, 200, "{via_portal}");
    assert_eq!(via_portal["stats"]["totals"], stats["totals"]);

    // Bad windows are 400; an unknown endpoint is 404.
    let until = time::format(&now);
    for bad in [
        format!("since={0}&until={0}", urlencode(&until)),
        format!(
            "since={}&until={}",
            urlencode(&until),
            urlencode(&time::format(&(now - chrono::TimeDelta::hours(1))))
        ),
        format!(
            "since={}",
            urlencode(&time::format(&(now - chrono::TimeDelta::days(31))))
        ),
        "period=week".into(),
        "since=yesterday".into(),
        "until=1700000000".into(),
    ] {
        let (status, json) = stack
            .call("GET", &format!("{stats_path}?{bad}"), Some(&key), None)
            .await;
        assert_eq!(status, 400, "{bad}: {json}");
    }
    let (status, json) = stack
        .call(
            "GET",
            &org_path(
                org,
                &format!("/webhook-endpoints/{}/stats", EndpointId::new()),
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 404, "{json}");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
