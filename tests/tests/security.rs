//! Issue 5, under attack: every route × every kind of credential, JWT attacks, hostile
//! inputs, SSRF end to end and secrets at rest — all against moto + `capy serve`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use capy_shared::api::Route;
use capy_shared::domain::ids::{DeliveryId, EventId};
use capy_tests::{Receiver, Stack, StackOptions, eventually, verify_with_official_libraries};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORG_A: &str = "org_sec_a";
const ORG_B: &str = "org_sec_b";
/// Org B's endpoint URL carries this marker; no response to org A may ever contain it.
const B_MARKER: &str = "org-b-private-hook";

/// A response as text, for the checks that must see exactly what was sent.
struct Resp {
    status: u16,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("non-JSON body {:?} (status {})", self.text, self.status))
    }

    /// Asserts an error status and a body of exactly `{"error": "<non-empty string>"}`.
    fn assert_error(&self, status: u16, what: &str) -> String {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} {}",
            self.status, self.text
        );
        assert_error_body(&self.text, what)
    }
}

fn assert_error_body(text: &str, what: &str) -> String {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|_| panic!("{what}: error body is not JSON: {text:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not an object: {text}"));
    assert_eq!(obj.len(), 1, "{what}: error body has other fields: {text}");
    let msg = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no error string: {text}"));
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    msg.to_owned()
}

async fn send(
    stack: &Stack,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let mut req = stack
        .http
        .request(method.parse().expect("method"), stack.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    Resp {
        status,
        text: resp.text().await.expect("body"),
    }
}

async fn api(
    stack: &Stack,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let auth_header = auth.map(|a| format!("Bearer {a}"));
    let mut headers = vec![];
    if let Some(a) = &auth_header {
        headers.push(("authorization", a.as_str()));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    send(
        stack,
        method,
        path,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

/// One request written byte for byte on a fresh connection: paths reach the server exactly
/// as given (no client-side `..` normalisation or re-encoding).
async fn raw_http(
    stack: &Stack,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let addr = stack.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    conn.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response to {method} {target}: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {head:?}"));
    Resp {
        status,
        text: body.to_owned(),
    }
}

fn org_path(org: &str, route: Route, endpoint: &str, delivery: &str) -> String {
    cell_path(org, route, endpoint, delivery, &Cell::default())
}

/// The records one cell of the matrix acts on, besides its endpoint and delivery.
#[derive(Default)]
struct Cell {
    event: Option<String>,
    job: Option<String>,
    session: Option<String>,
}

const NO_EVENT: &str = "evt_01HZY8Q4J6W2T7XK3M9N5P0R1V";
const NO_JOB: &str = "job_01HZY8Q4J6W2T7XK3M9N5P0R1V";
const NO_SESSION: &str = "ps_01HZY8Q4J6W2T7XK3M9N5P0R1V";

fn cell_path(org: &str, route: Route, endpoint: &str, delivery: &str, cell: &Cell) -> String {
    let path = route
        .path()
        .replace("{organization_id}", org)
        .replace("{endpoint_id}", endpoint)
        .replace("{delivery_id}", delivery)
        .replace("{event_id}", cell.event.as_deref().unwrap_or(NO_EVENT))
        .replace("{job_id}", cell.job.as_deref().unwrap_or(NO_JOB))
        .replace(
            "{session_id}",
            cell.session.as_deref().unwrap_or(NO_SESSION),
        );
    assert!(
        !path.contains('{'),
        "{path}: a path parameter this test does not fill"
    );
    path
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cred {
    Own,
    OtherOrg,
    Project,
    NoCredential,
    Malformed,
    Truncated,
    Revoked,
}

const CREDS: [Cred; 7] = [
    Cred::Own,
    Cred::OtherOrg,
    Cred::Project,
    Cred::NoCredential,
    Cred::Malformed,
    Cred::Truncated,
    Cred::Revoked,
];

fn expected(route: Route, cred: Cred) -> u16 {
    match cred {
        // (The cell's job has ended before it is canceled: cancel answers it as it is.)
        Cred::Own | Cred::Project => route.success_status(),
        Cred::OtherOrg => 403,
        Cred::NoCredential | Cred::Malformed | Cred::Truncated | Cred::Revoked => 401,
    }
}

fn route_body(route: Route, receiver: &str) -> Option<Value> {
    route_body_for(route, receiver, "")
}

fn route_body_for(route: Route, receiver: &str, endpoint: &str) -> Option<Value> {
    let an_hour_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match route {
        Route::ReplayEndpoint => Some(json!({ "since": an_hour_ago })),
        Route::ResendEvent => Some(json!({ "endpoint_id": endpoint })),
        Route::CreateEndpoint => {
            Some(json!({ "url": receiver, "event_types": ["matrix.created"] }))
        }
        Route::UpdateEndpoint => Some(json!({ "description": "updated by the matrix" })),
        Route::PublishEvent => {
            Some(json!({ "event_type": "matrix.published", "payload": { "n": 1 } }))
        }
        _ => None,
    }
}

/// Every route × (own org key, other org's key, project key, none, malformed, truncated,
/// revoked), and not one byte of the other organization's data in any answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_every_route_every_credential() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let admin_a = stack.mint_key(ORG_A, None);
    let own = stack.mint_key(ORG_A, None);
    let project = stack.mint_key(ORG_A, Some("proj_1"));
    let key_b = stack.mint_key(ORG_B, None);
    let revoked = stack.mint_key(ORG_A, None);
    stack.revoke_key(&revoked);
    let truncated = own[..own.len() - 1].to_owned();
    let malformed = format!("{}!{}", &own[..20], &own[21..]);

    // Org B's endpoint and a delivery of it: what org A must never see.
    let b_url = format!("{}/{B_MARKER}", receiver.url);
    let (b_endpoint, b_secret) = stack
        .create_endpoint(
            ORG_B,
            &key_b,
            json!({ "url": b_url, "event_types": ["b.only"] }),
        )
        .await;
    let b_published = stack
        .publish(
            ORG_B,
            &key_b,
            json!({ "event_type": "b.only", "payload": {"b": true} }),
        )
        .await;
    let b_delivery = b_published["delivery_ids"][0]
        .as_str()
        .expect("b delivery")
        .to_owned();
    let b_secret_b64 = b_secret.trim_start_matches("whsec_").to_owned();
    let leaks = |text: &str| -> Option<&str> {
        [
            b_endpoint.as_str(),
            B_MARKER,
            b_delivery.as_str(),
            ORG_B,
            b_secret_b64.as_str(),
        ]
        .into_iter()
        .find(|s| text.contains(*s))
    };

    let mut checked = 0;
    // Every route under an organization (GET /v1/portal-session takes only portal tokens).
    let org_routes = Route::ALL
        .into_iter()
        .filter(|r| r.path().contains("{organization_id}"));
    for (n, route) in org_routes.enumerate() {
        for cred in CREDS {
            // Fresh resources in org A for every cell, so deletes and retries are independent.
            let event_type = format!("matrix.r{n}.{cred:?}").to_lowercase();
            let (endpoint, _) = stack
                .create_endpoint(
                    ORG_A,
                    &admin_a,
                    json!({ "url": receiver.url, "event_types": [event_type] }),
                )
                .await;
            let mut delivery = "dlv_01HZY8Q4J6W2T7XK3M9N5P0R1T".to_owned();
            if matches!(route, Route::GetDelivery | Route::RetryDelivery) {
                let p = stack
                    .publish(
                        ORG_A,
                        &admin_a,
                        json!({ "event_type": event_type, "payload": {"cell": n} }),
                    )
                    .await;
                // Delivery ids are determined by (event, endpoint).
                let event_id: EventId = p["event_id"]
                    .as_str()
                    .expect("event id")
                    .parse()
                    .expect("id");
                delivery = DeliveryId::for_event(event_id, endpoint.parse().expect("endpoint id"))
                    .to_string();
                stack
                    .settled(
                        ORG_A,
                        &admin_a,
                        &endpoint,
                        &delivery,
                        Duration::from_secs(30),
                    )
                    .await;
            }
            let mut cell = Cell::default();
            if matches!(route, Route::GetEvent | Route::ResendEvent) {
                let p = stack
                    .publish(
                        ORG_A,
                        &admin_a,
                        json!({ "event_type": event_type, "payload": {"cell": n} }),
                    )
                    .await;
                cell.event = Some(p["event_id"].as_str().expect("event id").to_owned());
            }
            if matches!(route, Route::GetJob | Route::CancelJob) {
                let (s, v) = stack
                    .call(
                        "POST",
                        &cell_path(ORG_A, Route::ReplayEndpoint, &endpoint, &delivery, &cell),
                        Some(&admin_a),
                        route_body_for(Route::ReplayEndpoint, &receiver.url, &endpoint),
                    )
                    .await;
                assert_eq!(s, 202, "replay for the cell: {v}");
                let job = v["job"]["id"].as_str().expect("job id").to_owned();
                // Nothing to replay: it ends at once; wait for that, so the cell is fixed.
                let path = cell_path(
                    ORG_A,
                    Route::GetJob,
                    &endpoint,
                    &delivery,
                    &Cell {
                        job: Some(job.clone()),
                        ..Cell::default()
                    },
                );
                eventually(Duration::from_secs(30), "the cell's job to end", || async {
                    let (_, v) = stack.call("GET", &path, Some(&admin_a), None).await;
                    (v["job"]["state"] == "succeeded").then_some(())
                })
                .await;
                cell.job = Some(job);
            }
            if route == Route::DeletePortalSession {
                let (s, v) = stack
                    .call(
                        "POST",
                        &cell_path(
                            ORG_A,
                            Route::CreatePortalSession,
                            &endpoint,
                            &delivery,
                            &cell,
                        ),
                        Some(&admin_a),
                        None,
                    )
                    .await;
                assert_eq!(s, 201, "portal session for the cell: {v}");
                cell.session = Some(v["portal_session"]["id"].as_str().expect("id").to_owned());
            }
            let presented = match cred {
                Cred::Own => Some(own.as_str()),
                Cred::OtherOrg => Some(key_b.as_str()),
                Cred::Project => Some(project.as_str()),
                Cred::NoCredential => None,
                Cred::Malformed => Some(malformed.as_str()),
                Cred::Truncated => Some(truncated.as_str()),
                Cred::Revoked => Some(revoked.as_str()),
            };
            let path = cell_path(ORG_A, route, &endpoint, &delivery, &cell);
            let resp = api(
                &stack,
                route.method().as_str(),
                &path,
                presented,
                route_body_for(route, &receiver.url, &endpoint),
            )
            .await;
            let want = expected(route, cred);
            let what = format!("{} {path} with {cred:?}", route.method());
            if want >= 400 {
                resp.assert_error(want, &what);
                // A refused call changed nothing: the endpoint is still there, unchanged.
                let (s, list) = stack
                    .call(
                        "GET",
                        &format!("/v1/organizations/{ORG_A}/webhook-endpoints"),
                        Some(&admin_a),
                        None,
                    )
                    .await;
                assert_eq!(s, 200);
                let mine = list["webhook_endpoints"]
                    .as_array()
                    .expect("list")
                    .iter()
                    .find(|e| e["id"] == endpoint.as_str())
                    .cloned();
                let mine = mine.unwrap_or_else(|| panic!("{what} deleted the endpoint"));
                assert_ne!(
                    mine["description"], "updated by the matrix",
                    "{what} updated the endpoint"
                );
            } else {
                assert_eq!(resp.status, want, "{what}: {}", resp.text);
                let body = resp.json();
                assert!(body.get("error").is_none(), "{what}: {body}");
            }
            if let Some(leak) = leaks(&resp.text) {
                panic!("{what} leaked org B's {leak:?}: {}", resp.text);
            }
            checked += 1;
        }
    }

    // Org A's own key aimed at org B's resources through org A's path: not found, no trace.
    for route in Route::ALL
        .into_iter()
        .filter(|r| r.path().contains("{organization_id}"))
    {
        let path = org_path(ORG_A, route, &b_endpoint, &b_delivery);
        let resp = api(
            &stack,
            route.method().as_str(),
            &path,
            Some(&own),
            route_body(route, &receiver.url),
        )
        .await;
        if route.path().contains("{endpoint_id}") {
            resp.assert_error(404, &format!("{route:?} on org B's endpoint via org A"));
        }
        assert!(
            leaks(&resp.text).is_none(),
            "{route:?} leaked org B's data: {}",
            resp.text
        );
        // And through org B's path: the credential is not for org B.
        let path = org_path(ORG_B, route, &b_endpoint, &b_delivery);
        let resp = api(
            &stack,
            route.method().as_str(),
            &path,
            Some(&own),
            route_body(route, &receiver.url),
        )
        .await;
        resp.assert_error(403, &format!("{route:?} on org B's path with org A's key"));
        assert!(
            !resp.text.contains(&b_endpoint) && !resp.text.contains(B_MARKER),
            "{}",
            resp.text
        );
    }
    // Org B's endpoint came through all of that intact.
    let d = stack
        .delivery(ORG_B, &key_b, &b_endpoint, &b_delivery)
        .await;
    assert_eq!(d["endpoint_id"], b_endpoint.as_str());
    let (s, list) = stack
        .call(
            "GET",
            &format!("/v1/organizations/{ORG_B}/webhook-endpoints"),
            Some(&key_b),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        list["webhook_endpoints"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert_eq!(list["webhook_endpoints"][0]["url"], b_url.as_str());
    // Org A holds exactly what the accepted calls made: one endpoint per cell, plus the creates
    // of the own and project keys and of the cross-org pass, less their two deletes.
    let (_, list) = stack
        .call(
            "GET",
            &format!("/v1/organizations/{ORG_A}/webhook-endpoints"),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(
        list["webhook_endpoints"].as_array().map(Vec::len),
        Some(
            Route::ALL
                .iter()
                .filter(|r| r.path().contains("{organization_id}"))
                .count()
                * CREDS.len()
                + 1
        ),
        "refused calls wrote nothing"
    );

    // Malformed Authorization headers of every kind: 401, never 5xx.
    let list_path = format!("/v1/organizations/{ORG_A}/webhook-endpoints");
    let bad_headers = [
        String::new(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {own}"),
        format!("Token {own}"),
        own.clone(),
        format!("Bearer {own}x"),
        format!("Bearer {}", own.to_uppercase()),
        "Bearer capy_live_".to_owned(),
        format!("Bearer capy_live_{}", "a".repeat(500)),
        "Bearer a.b.c".to_owned(),
        "Bearer ....".to_owned(),
        format!("Bearer {}", "x".repeat(8000)),
    ];
    for h in &bad_headers {
        let resp = send(
            &stack,
            "GET",
            &list_path,
            &[("authorization", h.as_str())],
            None,
        )
        .await;
        resp.assert_error(401, &format!("Authorization: {:.40}", h));
    }
    let resp = raw_http(
        &stack,
        "GET",
        &list_path,
        &[("authorization", "Bearer caf\u{e9}")],
        b"",
    )
    .await;
    resp.assert_error(401, "non-ASCII Authorization header");

    // Failed authentications are logged, never with the credential.
    let log = stack.log();
    assert!(
        log.contains("authentication failed"),
        "failed authentications are logged"
    );
    for secret in [
        &own, &project, &key_b, &revoked, &truncated, &malformed, &admin_a,
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "the server log contains a presented credential"
        );
    }
    assert!(
        !log.contains(&own[10..30]),
        "the server log contains part of a credential"
    );
    println!(
        "auth matrix: {checked} cells ({} routes × {} credentials) checked",
        Route::ALL.len(),
        CREDS.len()
    );
}

// --- JWT attacks --------------------------------------------------------------------------

const ISSUER: &str = "https://clerk.capy.test";
const AZP: &str = "https://app.capy.test";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        capy_tests::workspace_root()
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_are_refused() {
    let public_pem = fixture("clerk-test.public.pem");
    let stack = Stack::start_with(
        StackOptions::default()
            .set("CLERK_JWT_KEY", &public_pem)
            .set("CLERK_ISSUER", ISSUER)
            .set(
                "CLERK_AUTHORIZED_PARTIES",
                &format!("{AZP},https://other-app.capy.test"),
            ),
    )
    .await;
    let key_b = stack.mint_key(ORG_B, None);
    let receiver = Receiver::start().await;
    stack
        .create_endpoint(
            ORG_B,
            &key_b,
            json!({ "url": format!("{}/{B_MARKER}", receiver.url) }),
        )
        .await;

    let good =
        EncodingKey::from_rsa_pem(fixture("clerk-test.private.pem").as_bytes()).expect("test key");
    let wrong =
        EncodingKey::from_rsa_pem(fixture("wrong-key.private.pem").as_bytes()).expect("wrong key");
    let now = chrono::Utc::now().timestamp();
    let base = json!({ "sub": "user_1", "iss": ISSUER, "azp": AZP, "iat": now, "nbf": now - 10, "exp": now + 600, "sid": "sess_1" });
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let v1 = with(json!({ "org_id": ORG_A }));
    let v2 = with(json!({ "v": 2, "o": { "id": ORG_A, "rol": "admin" } }));
    let valid_v1 = sign(Algorithm::RS256, &good, &v1);
    let valid_v2 = sign(Algorithm::RS256, &good, &v2);
    let path = format!("/v1/organizations/{ORG_A}/webhook-endpoints");

    // Accepted: v1 and v2 session claims, on a read and on a write.
    for (name, token) in [("v1 org_id", &valid_v1), ("v2 o.id", &valid_v2)] {
        let r = api(&stack, "GET", &path, Some(token), None).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert!(!r.text.contains(B_MARKER));
        let r = api(
            &stack,
            "POST",
            &path,
            Some(token),
            Some(json!({ "url": receiver.url })),
        )
        .await;
        assert_eq!(r.status, 201, "{name}: {}", r.text);
    }

    // The token the tampering starts from: a valid one for org B, payload swapped to org A.
    let for_b = sign(Algorithm::RS256, &good, &with(json!({ "org_id": ORG_B })));
    let mut parts: Vec<String> = for_b.split('.').map(str::to_owned).collect();
    parts[1] = B64URL.encode(with(json!({ "org_id": ORG_A })).to_string());
    let tampered = parts.join(".");
    let mut flipped: Vec<String> = valid_v1.split('.').map(str::to_owned).collect();
    // Change one character in the middle: the last one may only carry padding bits, and
    // replacing a character with itself would change nothing.
    let mid = flipped[2].len() / 2;
    let swap = if &flipped[2][mid..=mid] == "A" {
        "B"
    } else {
        "A"
    };
    flipped[2].replace_range(mid..=mid, swap);
    let hs_confusion = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.as_bytes()),
        &v1,
    );
    let hs_confusion_trimmed = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.trim().as_bytes()),
        &v1,
    );

    let attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(&json!({ "alg": "none", "typ": "JWT" }), &v1),
        ),
        (
            "alg None",
            unsigned(&json!({ "alg": "None", "typ": "JWT" }), &v1),
        ),
        (
            "alg none with signature",
            format!(
                "{}{}",
                unsigned(&json!({ "alg": "none" }), &v1),
                &valid_v1.split('.').nth(2).expect("sig")
            ),
        ),
        ("HS256 keyed with the public key PEM", hs_confusion),
        ("HS256 keyed with the trimmed PEM", hs_confusion_trimmed),
        (
            "RS256 by the wrong key",
            sign(Algorithm::RS256, &wrong, &v1),
        ),
        ("RS512 by the right key", sign(Algorithm::RS512, &good, &v1)),
        ("PS256 by the right key", sign(Algorithm::PS256, &good, &v1)),
        (
            "expired",
            sign(
                Algorithm::RS256,
                &good,
                &with(
                    json!({ "org_id": ORG_A, "exp": now - 3600, "iat": now - 7200, "nbf": now - 7200 }),
                ),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "nbf": now + 3600 })),
            ),
        ),
        (
            "no exp",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "exp": null })),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "iss": "https://evil.example" })),
            ),
        ),
        (
            "no issuer",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "iss": null })),
            ),
        ),
        (
            "wrong azp",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "azp": "https://evil.example" })),
            ),
        ),
        (
            "no azp",
            sign(
                Algorithm::RS256,
                &good,
                &with(json!({ "org_id": ORG_A, "azp": null })),
            ),
        ),
        ("tampered payload", tampered),
        ("flipped signature", flipped.join(".")),
        (
            "signature stripped",
            format!("{}.", valid_v1.rsplit_once('.').expect("dots").0),
        ),
        ("truncated", valid_v1[..valid_v1.len() - 10].to_owned()),
        (
            "garbage segments",
            "eyJhbGciOiJSUzI1NiJ9.!!!.###".to_owned(),
        ),
    ];
    for (name, token) in &attacks {
        let r = api(&stack, "GET", &path, Some(token), None).await;
        r.assert_error(401, name);
        let r = api(
            &stack,
            "POST",
            &path,
            Some(token),
            Some(json!({ "url": receiver.url })),
        )
        .await;
        r.assert_error(401, name);
    }

    // A valid session whose active organization is another one: 403 on every route.
    for token in [
        sign(Algorithm::RS256, &good, &with(json!({ "org_id": ORG_B }))),
        for_b.clone(),
    ] {
        // Every route under an organization (GET /v1/portal-session takes only portal tokens).
        for route in Route::ALL
            .into_iter()
            .filter(|r| r.path().contains("{organization_id}"))
        {
            let p = org_path(
                ORG_A,
                route,
                "ep_01HZY8Q4J6W2T7XK3M9N5P0R1S",
                "dlv_01HZY8Q4J6W2T7XK3M9N5P0R1T",
            );
            let r = api(
                &stack,
                route.method().as_str(),
                &p,
                Some(&token),
                route_body(route, &receiver.url),
            )
            .await;
            r.assert_error(403, &format!("{route:?} with org B's session"));
            assert!(!r.text.contains(B_MARKER));
        }
    }
    // No active organization at all: 403 too (authenticated, but for no organization).
    let no_org = sign(Algorithm::RS256, &good, &base);
    api(&stack, "GET", &path, Some(&no_org), None)
        .await
        .assert_error(403, "session without an organization");

    // Only the two valid tokens created endpoints in org A.
    let r = api(&stack, "GET", &path, Some(&valid_v1), None).await;
    assert_eq!(
        r.json()["webhook_endpoints"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.text
    );

    let log = stack.log();
    assert!(log.contains("authentication failed"));
    for (name, token) in &attacks {
        for segment in token.split('.').filter(|s| s.len() > 16) {
            assert!(
                !log.contains(segment),
                "the log contains part of the {name} token"
            );
        }
    }
    for token in [&valid_v1, &valid_v2, &for_b] {
        for segment in token.split('.').filter(|s| s.len() > 16) {
            assert!(
                !log.contains(segment),
                "the log contains part of a session token"
            );
        }
    }
}

/// `CLERK_JWKS_URL`: the signing keys come from a JWKS served on loopback. A token signed by
/// the published key (picked by `kid`) is accepted; one signed by another key is refused,
/// whether it claims the published `kid` or names one the set does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_verify_against_the_jwks_url() {
    use capy_tests::jwt::{JwksServer, rsa_jwk, sign_rs256_kid};
    let good = fixture("clerk-test.private.pem");
    let wrong = fixture("wrong-key.private.pem");
    let jwks = JwksServer::start(vec![rsa_jwk(&good, "clerk-test")]).await;
    let stack = Stack::start_with(
        StackOptions::default()
            .set("CLERK_JWKS_URL", &jwks.url)
            .set("CLERK_ISSUER", ISSUER)
            .set("CLERK_AUTHORIZED_PARTIES", AZP),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": "user_1", "iss": ISSUER, "azp": AZP, "iat": now, "nbf": now - 10, "exp": now + 600, "org_id": ORG_A });
    let path = format!("/v1/organizations/{ORG_A}/webhook-endpoints");

    let valid = sign_rs256_kid(&good, "clerk-test", &claims);
    let r = api(&stack, "GET", &path, Some(&valid), None).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text, stack.log());
    assert_eq!(r.json()["webhook_endpoints"], json!([]), "{}", r.text);
    assert_eq!(
        jwks.requests(),
        1,
        "the set was fetched from CLERK_JWKS_URL"
    );

    for (name, token) in [
        (
            "wrong key claiming the published kid",
            sign_rs256_kid(&wrong, "clerk-test", &claims),
        ),
        (
            "wrong key under its own kid",
            sign_rs256_kid(&wrong, "wrong-key", &claims),
        ),
        (
            "right key without a kid",
            sign(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(good.as_bytes()).expect("test key"),
                &claims,
            ),
        ),
    ] {
        api(&stack, "GET", &path, Some(&token), None)
            .await
            .assert_error(401, name);
    }
    // The accepted token still is: the refusals did not evict the published key.
    let r = api(&stack, "GET", &path, Some(&valid), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        jwks.requests(),
        1,
        "keys are cached; an unknown kid does not refetch within a minute"
    );
}

// --- Hostile inputs -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_400s_and_change_nothing() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = stack.mint_key(ORG_A, None);
    let bearer = format!("Bearer {key}");
    let auth = ("authorization", bearer.as_str());
    let json_ct = ("content-type", "application/json");
    let list = format!("/v1/organizations/{ORG_A}/webhook-endpoints");
    let publish = format!("/v1/organizations/{ORG_A}/events");
    let (endpoint, _) = stack
        .create_endpoint(
            ORG_A,
            &key,
            json!({ "url": receiver.url, "description": "before" }),
        )
        .await;
    let one = format!("{list}/{endpoint}");
    let deliveries = format!("{one}/deliveries");
    let snapshot = || async {
        let (s, v) = stack.call("GET", &list, Some(&key), None).await;
        assert_eq!(s, 200);
        let (s, d) = stack.call("GET", &deliveries, Some(&key), None).await;
        assert_eq!(s, 200);
        (v, d)
    };
    let before = snapshot().await;

    // Malformed JSON, wrong shapes and wrong content types, on every route that takes a body.
    let bad_bodies: Vec<(&str, &[u8])> = vec![
        ("truncated JSON", br#"{"url": "#),
        ("trailing comma", br#"{"url": "https://a.example",}"#),
        ("single quotes", b"{'url': 'https://a.example'}"),
        ("array", b"[]"),
        ("null", b"null"),
        ("string", br#""https://a.example""#),
        ("number", b"42"),
        ("empty", b""),
        ("whitespace", b"   \n"),
        ("invalid UTF-8", b"{\"url\": \"\xff\xfe\"}"),
        ("BOM", b"\xef\xbb\xbf{\"url\": \"https://a.example\"}"),
        (
            "two objects",
            br#"{"url":"https://a.example"}{"url":"https://b.example"}"#,
        ),
        ("NaN", br#"{"url": NaN}"#),
        (
            "unknown field",
            br#"{"url": "https://a.example", "secret": "x"}"#,
        ),
        ("wrong type", br#"{"url": ["https://a.example"]}"#),
        (
            "null field",
            br#"{"url": "https://a.example", "description": null}"#,
        ),
        (
            "event_types not strings",
            br#"{"url": "https://a.example", "event_types": [1, 2]}"#,
        ),
        (
            "is_active as string",
            br#"{"url": "https://a.example", "is_active": "yes"}"#,
        ),
    ];
    for (name, body) in &bad_bodies {
        for (method, path) in [("POST", &list), ("PATCH", &one)] {
            let r = send(&stack, method, path, &[auth, json_ct], Some(body.to_vec())).await;
            r.assert_error(400, &format!("{method} {name}"));
        }
    }
    let bad_publish: Vec<(&str, &[u8])> = vec![
        ("truncated JSON", br#"{"event_type": "a", "payload": {"#),
        ("missing payload", br#"{"event_type": "a"}"#),
        ("missing event_type", br#"{"payload": {}}"#),
        ("bad event_type", br#"{"event_type": "a b", "payload": {}}"#),
        (
            "wildcard event_type",
            br#"{"event_type": "a.*", "payload": {}}"#,
        ),
        (
            "unicode event_type",
            "{\"event_type\": \"caf\u{e9}.paid\", \"payload\": {}}".as_bytes(),
        ),
        (
            "unknown field",
            br#"{"event_type": "a", "payload": {}, "extra": 1}"#,
        ),
        (
            "empty idempotency key",
            br#"{"event_type": "a", "payload": {}, "idempotency_key": ""}"#,
        ),
    ];
    for (name, body) in &bad_publish {
        let r = send(
            &stack,
            "POST",
            &publish,
            &[auth, json_ct],
            Some(body.to_vec()),
        )
        .await;
        r.assert_error(400, &format!("publish {name}"));
    }
    let good = json!({ "url": receiver.url }).to_string().into_bytes();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "json",
        "application/jsonp",
    ] {
        let r = send(
            &stack,
            "POST",
            &list,
            &[auth, ("content-type", ct)],
            Some(good.clone()),
        )
        .await;
        let msg = r.assert_error(400, &format!("content-type {ct}"));
        assert!(msg.contains("content-type"), "{msg}");
        let r = send(
            &stack,
            "PATCH",
            &one,
            &[auth, ("content-type", ct)],
            Some(b"{}".to_vec()),
        )
        .await;
        r.assert_error(400, &format!("PATCH content-type {ct}"));
    }
    // Bodies on routes that take none.
    for path in [format!("{one}/rotate-secret")] {
        let r = send(
            &stack,
            "POST",
            &path,
            &[auth, json_ct],
            Some(br#"{"grace": 0}"#.to_vec()),
        )
        .await;
        r.assert_error(400, "a body on rotate-secret");
    }

    // Huge strings: one over each limit is refused, the limit itself is fine.
    let r = api(
        &stack,
        "POST",
        &list,
        Some(&key),
        Some(json!({ "url": receiver.url, "description": "d".repeat(1025) })),
    )
    .await;
    let msg = r.assert_error(400, "description of 1,025 characters");
    assert!(msg.contains("description"), "{msg}");
    let long_url = format!(
        "{}?{}",
        receiver.url,
        "q".repeat(2049 - receiver.url.len() - 1)
    );
    assert_eq!(long_url.len(), 2049);
    let r = api(
        &stack,
        "POST",
        &list,
        Some(&key),
        Some(json!({ "url": long_url })),
    )
    .await;
    let msg = r.assert_error(400, "url of 2,049 characters");
    assert!(msg.contains("url"), "{msg}");
    let r = api(
        &stack,
        "PATCH",
        &one,
        Some(&key),
        Some(json!({ "url": long_url })),
    )
    .await;
    r.assert_error(400, "PATCH url of 2,049 characters");
    let r = api(
        &stack,
        "PATCH",
        &one,
        Some(&key),
        Some(json!({ "description": "d".repeat(1025) })),
    )
    .await;
    r.assert_error(400, "PATCH description of 1,025 characters");
    let r = api(
        &stack,
        "POST",
        &list,
        Some(&key),
        Some(json!({ "url": receiver.url, "event_types": ["e".repeat(129)] })),
    )
    .await;
    r.assert_error(400, "event type of 129 characters");
    let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    let r = api(
        &stack,
        "POST",
        &list,
        Some(&key),
        Some(json!({ "url": receiver.url, "event_types": many })),
    )
    .await;
    r.assert_error(400, "101 event types");
    let r = api(
        &stack,
        "POST",
        &publish,
        Some(&key),
        Some(json!({ "event_type": "a", "payload": {}, "idempotency_key": "k".repeat(256) })),
    )
    .await;
    r.assert_error(400, "idempotency key of 256 characters");

    // Deep nesting: a 400, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for (name, body) in [
        (
            "payload 10,000 arrays deep",
            format!(r#"{{"event_type":"deep","payload":{deep}}}"#),
        ),
        (
            "payload 10,000 objects deep",
            format!(r#"{{"event_type":"deep","payload":{deep_obj}}}"#),
        ),
    ] {
        let r = send(
            &stack,
            "POST",
            &publish,
            &[auth, json_ct],
            Some(body.into_bytes()),
        )
        .await;
        r.assert_error(400, name);
    }
    let r = send(
        &stack,
        "POST",
        &list,
        &[auth, json_ct],
        Some(format!(r#"{{"url":"{}","description":{deep}}}"#, receiver.url).into_bytes()),
    )
    .await;
    r.assert_error(400, "endpoint body 10,000 deep");
    let r = send(
        &stack,
        "PATCH",
        &one,
        &[auth, json_ct],
        Some(format!(r#"{{"event_types":{deep}}}"#).into_bytes()),
    )
    .await;
    r.assert_error(400, "PATCH body 10,000 deep");

    // Too large: a body over 1 MiB, and an event payload over 256 KiB.
    let big_body = json!({ "url": receiver.url, "description": "x".repeat(1024 * 1024) })
        .to_string()
        .into_bytes();
    let r = send(&stack, "POST", &list, &[auth, json_ct], Some(big_body)).await;
    r.assert_error(413, "body over 1 MiB");
    let r = send(
        &stack,
        "PATCH",
        &one,
        &[auth, json_ct],
        Some(vec![b' '; 1024 * 1024 + 1]),
    )
    .await;
    r.assert_error(413, "PATCH body over 1 MiB");
    let big_payload = json!({ "event_type": "big", "payload": { "blob": "x".repeat(256 * 1024) } });
    let r = api(&stack, "POST", &publish, Some(&key), Some(big_payload)).await;
    let msg = r.assert_error(413, "payload over 256 KiB");
    assert!(msg.contains("payload"), "{msg}");

    // Path parameters that are not ids: 404 (never 5xx, never another route).
    let long_id = format!("ep_{}", "A".repeat(5000));
    let ep_targets = [
        format!("{list}/ep_x/y"),
        format!("{list}/ep_x%2Fy"),
        format!("{list}/{endpoint}%2F"),
        format!("{list}/%2F{endpoint}"),
        format!("{list}/{endpoint}%2Frotate-secret"),
        format!("{list}/.."),
        format!("{list}/%2E%2E"),
        format!("{list}/../webhook-endpoints"),
        format!("{list}/{endpoint}/../{endpoint}"),
        format!("{list}/{long_id}"),
        format!("{list}/{}", &endpoint[..endpoint.len() - 1]),
        format!("{list}/{}", endpoint.to_lowercase()),
        format!("{list}/{endpoint}%00"),
        format!("{list}/dlv_01HZY8Q4J6W2T7XK3M9N5P0R1T"),
        format!("{list}/%F0%9F%A6%AB"),
    ];
    for target in &ep_targets {
        for method in ["GET", "PATCH", "DELETE"] {
            let body: &[u8] = if method == "PATCH" {
                br#"{"description":"hacked"}"#
            } else {
                b""
            };
            let r = raw_http(&stack, method, target, &[auth, json_ct], body).await;
            let ok = matches!(r.status, 404 | 405);
            assert!(ok, "{method} {target:.120}: {} {}", r.status, r.text);
            assert_error_body(&r.text, target);
        }
        let r = raw_http(
            &stack,
            "POST",
            &format!("{target}/rotate-secret"),
            &[auth],
            b"",
        )
        .await;
        r.assert_error(404, &format!("rotate {target:.120}"));
        let r = raw_http(&stack, "GET", &format!("{target}/deliveries"), &[auth], b"").await;
        r.assert_error(404, &format!("deliveries {target:.120}"));
    }
    for target in [
        format!("{deliveries}/.."),
        format!("{deliveries}/dlv_x%2F.."),
        format!("{deliveries}/dlv_{}", "0".repeat(5000)),
        format!("{deliveries}/{endpoint}"),
        format!("{deliveries}/dlv_x/retry/again"),
    ] {
        let r = raw_http(&stack, "GET", &target, &[auth], b"").await;
        r.assert_error(404, &target);
        let r = raw_http(&stack, "POST", &format!("{target}/retry"), &[auth], b"").await;
        assert!(matches!(r.status, 404), "{target}: {} {}", r.status, r.text);
    }
    // The organization segment: never reaches data; the credential is not for such an org.
    for org in [
        "..",
        "%2E%2E",
        "org_sec_a%2F..",
        &"o".repeat(300),
        "org_sec_a%00",
    ] {
        let r = raw_http(
            &stack,
            "GET",
            &format!("/v1/organizations/{org}/webhook-endpoints"),
            &[auth],
            b"",
        )
        .await;
        assert!(
            matches!(r.status, 403 | 404),
            "org {org:.40}: {} {}",
            r.status,
            r.text
        );
        assert_error_body(&r.text, org);
    }
    let r = raw_http(
        &stack,
        "GET",
        "/v1/organizations/org_sec_a/../org_sec_a/webhook-endpoints",
        &[auth],
        b"",
    )
    .await;
    r.assert_error(404, "dot segments in the path");
    let r = raw_http(&stack, "GET", "/", &[auth], b"").await;
    r.assert_error(404, "root");
    let r = raw_http(&stack, "PUT", &list, &[auth], b"").await;
    r.assert_error(405, "PUT on the collection");
    let r = raw_http(
        &stack,
        "GET",
        &format!("{deliveries}?limit=0"),
        &[auth],
        b"",
    )
    .await;
    r.assert_error(400, "limit=0");
    for q in [
        "limit=251",
        "limit=-1",
        "limit=abc",
        "limit=1e3",
        "cursor=%%%",
        "cursor=ZGx2X3g",
        "state=sent",
        "limit=99999999999999999999",
    ] {
        let r = raw_http(&stack, "GET", &format!("{deliveries}?{q}"), &[auth], b"").await;
        r.assert_error(400, q);
    }

    // Nothing above wrote anything.
    let after = snapshot().await;
    assert_eq!(before, after, "a refused request changed stored data");

    // Unicode round-trips: emoji, combining marks, RTL, astral planes; 1,024 emoji is at the limit.
    let fancy = "Capy 🦫 webhooks — ünïcödé 中文 עברית e\u{301} 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{200d}👩‍👩‍👧 \\\"quoted\\\"";
    let (status, created) = stack
        .call(
            "POST",
            &list,
            Some(&key),
            Some(json!({ "url": receiver.url, "description": fancy })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["webhook_endpoint"]["description"], fancy);
    let id = created["webhook_endpoint"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, listed) = stack.call("GET", &list, Some(&key), None).await;
    let found = listed["webhook_endpoints"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(found["description"], fancy);
    let emoji = "🦫".repeat(1024);
    let (status, patched) = stack
        .call(
            "PATCH",
            &format!("{list}/{id}"),
            Some(&key),
            Some(json!({ "description": emoji })),
        )
        .await;
    assert_eq!(status, 200, "1,024 emoji is within the limit: {patched}");
    assert_eq!(patched["webhook_endpoint"]["description"], emoji.as_str());
    let r = api(
        &stack,
        "PATCH",
        &format!("{list}/{id}"),
        Some(&key),
        Some(json!({ "description": "🦫".repeat(1025) })),
    )
    .await;
    r.assert_error(400, "1,025 emoji");
    // A unicode payload arrives byte for byte.
    let published = stack
        .publish(
            ORG_A,
            &key,
            json!({ "event_type": "unicode.test", "payload": { "text": fancy, "nul": "a\u{0}b" } }),
        )
        .await;
    let dlv = published["delivery_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .find_map(|d| d.as_str().map(str::to_owned))
        .expect("delivery");
    // Its record appears with its first attempt, under one of the two endpoints.
    let (ep, _) = eventually(Duration::from_secs(30), "the delivery's record", || async {
        for ep in [&endpoint, &id] {
            let (s, v) = stack
                .call(
                    "GET",
                    &format!("{list}/{ep}/deliveries/{dlv}"),
                    Some(&key),
                    None,
                )
                .await;
            if s == 200 {
                return Some((ep.to_string(), v));
            }
        }
        None
    })
    .await;
    let d = stack
        .settled(ORG_A, &key, &ep, &dlv, Duration::from_secs(30))
        .await;
    assert_eq!(d["payload"]["text"], fancy);
    assert_eq!(d["payload"]["nul"], "a\u{0}b");
    let got = eventually(Duration::from_secs(10), "the unicode webhook", || async {
        receiver
            .received()
            .into_iter()
            .find(|r| r.header("webhook-id") == dlv)
    })
    .await;
    let body: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(body["data"]["text"], fancy);

    // Still alive and well after all of it.
    let (s, _) = stack.call("GET", &list, Some(&key), None).await;
    assert_eq!(s, 200);
}

// --- SSRF end to end ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_private_destinations_refused_when_disallowed() {
    let stack =
        Stack::start_with(StackOptions::default().set("ALLOW_PRIVATE_DESTINATIONS", "false")).await;
    let key = stack.mint_key(ORG_A, None);
    let list = format!("/v1/organizations/{ORG_A}/webhook-endpoints");
    let hostile = [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("https://127.0.0.1/hook", "loopback"),
        ("http://localhost:8080/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://169.254.169.254/", "link-local"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "unique-local"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
    ];
    for (url, why) in hostile {
        let r = api(
            &stack,
            "POST",
            &list,
            Some(&key),
            Some(json!({ "url": url })),
        )
        .await;
        let msg = r.assert_error(400, url);
        assert!(
            msg.contains(why),
            "{url}: the refusal says why ({why}): {msg}"
        );
    }
    // A public literal address is fine; moving it to a private one is refused, and it stays.
    let (status, created) = stack
        .call(
            "POST",
            &list,
            Some(&key),
            Some(json!({ "url": "https://93.184.215.14/hook" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["webhook_endpoint"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (url, why) in [
        ("http://169.254.169.254/", "link-local"),
        ("http://127.0.0.1:3000/", "loopback"),
    ] {
        let r = api(
            &stack,
            "PATCH",
            &format!("{list}/{id}"),
            Some(&key),
            Some(json!({ "url": url })),
        )
        .await;
        let msg = r.assert_error(400, url);
        assert!(msg.contains(why), "{msg}");
    }
    let (_, listed) = stack.call("GET", &list, Some(&key), None).await;
    let eps = listed["webhook_endpoints"].as_array().expect("list");
    assert_eq!(
        eps.len(),
        1,
        "only the public endpoint was created: {listed}"
    );
    assert_eq!(eps[0]["url"], "https://93.184.215.14/hook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_loopback_allowed_by_the_local_default() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = stack.mint_key(ORG_A, None);
    let (endpoint, secret) = stack
        .create_endpoint(ORG_A, &key, json!({ "url": receiver.url }))
        .await;
    let p = stack
        .publish(
            ORG_A,
            &key,
            json!({ "event_type": "ssrf.local", "payload": {} }),
        )
        .await;
    let dlv = p["delivery_ids"][0].as_str().expect("id").to_owned();
    let d = stack
        .settled(ORG_A, &key, &endpoint, &dlv, Duration::from_secs(30))
        .await;
    assert_eq!(d["state"], "delivered", "{d}");
    let got = receiver
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id") == dlv)
        .expect("received");
    verify_with_official_libraries(&secret, &got).expect("signed");
}

/// Send time, through the real sender: endpoints stored while private destinations were
/// allowed (a laxer deployment, or a policy tightened since) are refused at every send once
/// `capy serve` runs with the strict policy, before anything is connected to, with the reason
/// in `last_error`. The connector never resolves a literal address, so literals are checked
/// before connecting; names are checked on their resolved addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_stored_private_destinations_refused_at_send_time() {
    let receiver = Receiver::start().await;
    let named = receiver.url.replace("127.0.0.1", "localhost");
    assert_ne!(named, receiver.url, "the receiver listens on 127.0.0.1");
    // The local default allows private destinations and plain http: all three are saved.
    let mut stack = Stack::start().await;
    let key = stack.mint_key(ORG_A, None);
    let mut endpoints = vec![];
    for (url, event_type) in [
        (receiver.url.clone(), "ssrf.literal"),
        (named.clone(), "ssrf.named"),
        ("http://10.0.0.1/hook".to_owned(), "ssrf.private"),
    ] {
        let (id, _) = stack
            .create_endpoint(
                ORG_A,
                &key,
                json!({ "url": url, "event_types": [event_type] }),
            )
            .await;
        endpoints.push((id, event_type));
    }

    // The same table and queues under the strict policy (plain http still allowed, so the
    // refusal is the destination's and not the scheme's).
    stack
        .env
        .insert("ALLOW_PRIVATE_DESTINATIONS".into(), "false".into());
    stack
        .env
        .insert("ALLOW_INSECURE_URLS".into(), "true".into());
    stack.spawn().await;

    let only_public = "only public addresses are allowed";
    for (endpoint, event_type) in &endpoints {
        let p = stack
            .publish(
                ORG_A,
                &key,
                json!({ "event_type": event_type, "payload": {} }),
            )
            .await;
        let ids = p["delivery_ids"].as_array().expect("ids");
        assert_eq!(ids.len(), 1, "{p}");
        let dlv = ids[0].as_str().expect("id");
        // Polled by hand rather than with `Stack::settled`: a delivery may not be readable
        // (404) until its first attempt is written.
        let path =
            format!("/v1/organizations/{ORG_A}/webhook-endpoints/{endpoint}/deliveries/{dlv}");
        let d = eventually(
            Duration::from_secs(30),
            &format!("{event_type}: the delivery to fail"),
            || async {
                let (status, json) = stack.call("GET", &path, Some(&key), None).await;
                (status == 200 && json["delivery"]["state"] != "pending")
                    .then(|| json["delivery"].clone())
            },
        )
        .await;
        assert_eq!(d["state"], "failed", "{event_type}: {d}");
        assert_eq!(d["attempts"], 3, "{event_type}: every attempt refused: {d}");
        let error = d["last_error"].as_str().expect("last_error");
        match *event_type {
            "ssrf.literal" => assert_eq!(
                error,
                format!("destination 127.0.0.1 is a loopback address; {only_public}"),
                "{d}"
            ),
            "ssrf.private" => assert_eq!(
                error,
                format!("destination 10.0.0.1 is a private address; {only_public}"),
                "{d}"
            ),
            _ => assert!(
                error.starts_with("localhost resolves to a refused address: destination ")
                    && error.ends_with(&format!("is a loopback address; {only_public}")),
                "{d}"
            ),
        }
    }
    assert_eq!(receiver.count(), 0, "nothing reached the receiver");
}

// --- Secrets at rest ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_keys_are_not_stored_in_plaintext() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = stack.mint_key(ORG_A, None);
    let project_key = stack.mint_key(ORG_A, Some("proj_rest"));
    let (endpoint, first) = stack
        .create_endpoint(ORG_A, &key, json!({ "url": receiver.url }))
        .await;
    let (status, rotated) = stack
        .call(
            "POST",
            &format!("/v1/organizations/{ORG_A}/webhook-endpoints/{endpoint}/rotate-secret"),
            Some(&project_key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["plaintext_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(first, second);

    // Rotation and grace still work on the encrypted secrets: both verify a new delivery.
    let p = stack
        .publish(
            ORG_A,
            &key,
            json!({ "event_type": "rest.check", "payload": {"n": 1} }),
        )
        .await;
    let dlv = p["delivery_ids"][0].as_str().expect("id").to_owned();
    let d = stack
        .settled(ORG_A, &key, &endpoint, &dlv, Duration::from_secs(30))
        .await;
    assert_eq!(d["state"], "delivered", "{d}");
    let got = receiver
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id") == dlv)
        .expect("received");
    verify_with_official_libraries(&second, &got).expect("the new secret verifies");
    verify_with_official_libraries(&first, &got).expect("the old secret verifies during the grace");

    let dump = stack.dump_table().await;
    assert!(dump.contains(&endpoint), "the dump holds the endpoint");
    for (name, secret) in [("first", &first), ("rotated", &second)] {
        let b64 = secret.strip_prefix("whsec_").expect("whsec_");
        let raw = B64.decode(b64).expect("base64");
        assert!(
            !dump.contains(b64),
            "the {name} secret is in the table in plaintext"
        );
        assert!(
            !dump.contains(&hex::encode(&raw)),
            "the {name} secret is in the table as hex"
        );
        assert!(
            !dump.contains(&B64URL.encode(&raw)),
            "the {name} secret is in the table as base64url"
        );
    }
    for k in [&key, &project_key] {
        assert!(
            !dump.contains(k.as_str()),
            "an API key is in the table in plaintext"
        );
        assert!(
            !dump.contains(&k["capy_live_".len()..]),
            "an API key's random part is in the table"
        );
    }
    // And the log has neither.
    let log = stack.log();
    for s in [&first, &second, &key, &project_key] {
        assert!(
            !log.contains(s.trim_start_matches("whsec_")),
            "a secret or key is in the server log"
        );
    }
}
