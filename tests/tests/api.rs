//! The endpoint API over real HTTP against `capy serve` and moto (issue 2).

use std::collections::BTreeSet;

use capy_shared::api::Route;
use capy_tests::Stack;
use http::Method;
use serde_json::{Value, json};

const ENDPOINT_FIELDS: &[&str] = &[
    "created_at",
    "description",
    "disable_at",
    "event_types",
    "failing_since",
    "id",
    "is_active",
    "organization_id",
    "updated_at",
    "url",
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn fields(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z'))
}

fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(keys(body), fields(&["error"]), "{body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn org_path(org: &str, rest: &str) -> String {
    format!("/v1/organizations/{org}{rest}")
}

#[tokio::test]
async fn every_route_answers_with_the_reference_shapes() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_shapes", None);
    let k = Some(key.as_str());

    let (status, created) = stack
        .call(
            "POST",
            &org_path("org_shapes", "/webhook-endpoints"),
            k,
            Some(json!({"url": "https://hooks.example.com/a", "description": "billing", "event_types": ["invoice.*"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        keys(&created),
        fields(&["plaintext_secret", "webhook_endpoint"])
    );
    let ep = &created["webhook_endpoint"];
    assert_eq!(keys(ep), fields(ENDPOINT_FIELDS));
    assert!(ep["id"].as_str().is_some_and(|s| s.starts_with("ep_")));
    assert_eq!(ep["organization_id"], "org_shapes");
    assert_eq!(ep["url"], "https://hooks.example.com/a");
    assert_eq!(ep["description"], "billing");
    assert_eq!(ep["event_types"], json!(["invoice.*"]));
    assert_eq!(ep["is_active"], true);
    assert!(is_rfc3339(&ep["created_at"]) && ep["created_at"] == ep["updated_at"]);
    let secret = created["plaintext_secret"].as_str().expect("secret");
    let raw = base64_len(secret.strip_prefix("whsec_").expect("whsec_ prefix"));
    assert!((24..=32).contains(&raw), "secret is {raw} bytes");
    let id = ep["id"].as_str().expect("id").to_owned();

    // Defaults when only the url is given.
    let (_, minimal) = stack
        .call(
            "POST",
            &org_path("org_shapes", "/webhook-endpoints"),
            k,
            Some(json!({"url": "https://hooks.example.com/b"})),
        )
        .await;
    assert_eq!(minimal["webhook_endpoint"]["description"], "");
    assert_eq!(minimal["webhook_endpoint"]["event_types"], json!([]));
    assert_eq!(minimal["webhook_endpoint"]["is_active"], true);

    let (status, list) = stack
        .call(
            "GET",
            &org_path("org_shapes", "/webhook-endpoints"),
            k,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&list), fields(&["webhook_endpoints"]));
    let items = list["webhook_endpoints"].as_array().expect("array");
    assert_eq!(items.len(), 2);
    let mut with_health = fields(ENDPOINT_FIELDS);
    with_health.insert("health".into());
    for item in items {
        assert_eq!(keys(item), with_health);
        assert_eq!(item["health"], "healthy");
    }
    assert!(
        !list.to_string().contains("whsec_"),
        "no secret in the list"
    );

    let (status, patched) = stack
        .call(
            "PATCH",
            &org_path("org_shapes", &format!("/webhook-endpoints/{id}")),
            k,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&patched), fields(&["webhook_endpoint"]));
    assert_eq!(keys(&patched["webhook_endpoint"]), fields(ENDPOINT_FIELDS));

    let (status, rotated) = stack
        .call(
            "POST",
            &org_path(
                "org_shapes",
                &format!("/webhook-endpoints/{id}/rotate-secret"),
            ),
            k,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&rotated),
        fields(&["plaintext_secret", "webhook_endpoint"])
    );
    assert_eq!(keys(&rotated["webhook_endpoint"]), fields(ENDPOINT_FIELDS));
    assert_ne!(rotated["plaintext_secret"], created["plaintext_secret"]);

    let (status, deliveries) = stack
        .call(
            "GET",
            &org_path("org_shapes", &format!("/webhook-endpoints/{id}/deliveries")),
            k,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(deliveries["deliveries"], json!([]));
    assert_eq!(deliveries["next_cursor"], Value::Null);

    let (status, deleted) = stack
        .call(
            "DELETE",
            &org_path("org_shapes", &format!("/webhook-endpoints/{id}")),
            k,
            None,
        )
        .await;
    assert_eq!((status, deleted), (200, json!({"deleted": true})));
}

fn base64_len(b64: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
        .len()
}

#[tokio::test]
async fn patch_is_partial_and_moves_only_updated_at() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_patch", None);
    let k = Some(key.as_str());
    let (id, _) = stack
        .create_endpoint(
            "org_patch",
            &key,
            json!({"url": "https://a.example.com/h", "description": "one", "event_types": ["a.b"]}),
        )
        .await;
    let path = org_path("org_patch", &format!("/webhook-endpoints/{id}"));
    let (_, before) = stack
        .call("GET", &org_path("org_patch", "/webhook-endpoints"), k, None)
        .await;
    let before = before["webhook_endpoints"][0].clone();

    let (status, after) = stack
        .call("PATCH", &path, k, Some(json!({"description": "two"})))
        .await;
    assert_eq!(status, 200, "{after}");
    let after = &after["webhook_endpoint"];
    assert_eq!(after["description"], "two");
    assert_eq!(after["url"], before["url"]);
    assert_eq!(after["event_types"], before["event_types"]);
    assert_eq!(after["is_active"], before["is_active"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert!(
        after["updated_at"].as_str() > before["updated_at"].as_str(),
        "updated_at moves: {after}"
    );

    let (_, off) = stack
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"is_active": false, "event_types": []})),
        )
        .await;
    assert_eq!(off["webhook_endpoint"]["is_active"], false);
    assert_eq!(off["webhook_endpoint"]["event_types"], json!([]));
    assert_eq!(off["webhook_endpoint"]["description"], "two");
    let (_, list) = stack
        .call("GET", &org_path("org_patch", "/webhook-endpoints"), k, None)
        .await;
    assert_eq!(list["webhook_endpoints"][0]["health"], "disabled");

    // A rejected PATCH changes nothing.
    let (status, body) = stack
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"url": "ftp://x", "description": "three"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = stack
        .call("GET", &org_path("org_patch", "/webhook-endpoints"), k, None)
        .await;
    assert_eq!(list["webhook_endpoints"][0]["description"], "two");
}

#[tokio::test]
async fn delete_then_every_route_of_that_endpoint_is_404() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_del", None);
    let k = Some(key.as_str());
    let (id, _) = stack
        .create_endpoint("org_del", &key, json!({"url": "https://a.example.com/h"}))
        .await;
    let path = org_path("org_del", &format!("/webhook-endpoints/{id}"));
    assert_eq!(stack.call("DELETE", &path, k, None).await.0, 200);
    let (s, b) = stack.call("DELETE", &path, k, None).await;
    assert_error(s, &b, 404);
    let (s, b) = stack
        .call("PATCH", &path, k, Some(json!({"description": "x"})))
        .await;
    assert_error(s, &b, 404);
    let (s, b) = stack
        .call("POST", &format!("{path}/rotate-secret"), k, None)
        .await;
    assert_error(s, &b, 404);
    let (s, b) = stack
        .call("GET", &format!("{path}/deliveries"), k, None)
        .await;
    assert_error(s, &b, 404);
    let (_, list) = stack
        .call("GET", &org_path("org_del", "/webhook-endpoints"), k, None)
        .await;
    assert_eq!(list["webhook_endpoints"], json!([]));
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_writes_nothing() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_bad", None);
    let k = Some(key.as_str());
    let create = org_path("org_bad", "/webhook-endpoints");
    let long = "x".repeat(2049);
    let cases = [
        (json!({}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "/relative/path"}), "url"),
        (
            json!({"url": "https://user:pw@a.example.com/"}),
            "credentials",
        ),
        (
            json!({"url": format!("https://a.example.com/{long}")}),
            "2048",
        ),
        (
            json!({"url": "https://a.example.com", "description": "d".repeat(1025)}),
            "description",
        ),
        (
            json!({"url": "https://a.example.com", "event_types": ["ok", "bad type"]}),
            "event_types",
        ),
        (
            json!({"url": "https://a.example.com", "event_types": ["a", "a"]}),
            "twice",
        ),
        (
            json!({"url": "https://a.example.com", "event_types": (0..101).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "100",
        ),
        (
            json!({"url": "https://a.example.com", "event_types": ["x".repeat(129)]}),
            "128",
        ),
        (
            json!({"url": "https://a.example.com", "event_types": ["capy.endpoint.disbled"]}),
            "capy.endpoint.disabled",
        ),
        (
            json!({"url": "https://a.example.com", "is_active": "yes"}),
            "invalid type",
        ),
        (
            json!({"url": "https://a.example.com", "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"url": 42}), "invalid type"),
        (
            json!({"url": "https://a.example.com", "description": null}),
            "null",
        ),
        (json!(["https://a.example.com"]), "object"),
    ];
    for (body, mentions) in cases {
        let (status, resp) = stack.call("POST", &create, k, Some(body.clone())).await;
        assert_error(status, &resp, 400);
        assert!(
            resp["error"].as_str().expect("message").contains(mentions),
            "{body} -> {resp}"
        );
    }
    let (s, b) = stack
        .raw(
            "POST",
            &create,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "application/json"),
            ],
            b"{\"url\":".to_vec(),
        )
        .await;
    assert_error(s, &b, 400);
    assert!(b["error"].as_str().expect("message").contains("JSON"));
    let (s, b) = stack
        .raw(
            "POST",
            &create,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "text/plain"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_error(s, &b, 400);
    let huge = format!(
        "{{\"url\":\"https://a.example.com\",\"description\":\"{}\"}}",
        "d".repeat(1_100_000)
    );
    let (s, b) = stack
        .raw(
            "POST",
            &create,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "application/json"),
            ],
            huge.into_bytes(),
        )
        .await;
    assert_error(s, &b, 413);
    let (s, b) = stack
        .call(
            "GET",
            &format!(
                "{}?limit=0",
                org_path(
                    "org_bad",
                    "/webhook-endpoints/ep_01JABCDEFGHJKMNPQRSTVWXYZ0/deliveries"
                )
            ),
            k,
            None,
        )
        .await;
    assert_error(s, &b, 400);

    let (_, list) = stack.call("GET", &create, k, None).await;
    assert_eq!(list["webhook_endpoints"], json!([]), "nothing was written");
}

#[tokio::test]
async fn plain_http_is_refused_where_the_deployment_does_not_allow_it() {
    let stack =
        Stack::start_with(capy_tests::StackOptions::default().set("ALLOW_INSECURE_URLS", "false"))
            .await;
    let key = stack.mint_key("org_tls", None);
    let (s, b) = stack
        .call(
            "POST",
            &org_path("org_tls", "/webhook-endpoints"),
            Some(&key),
            Some(json!({"url": "http://a.example.com/h"})),
        )
        .await;
    assert_error(s, &b, 400);
    assert!(b["error"].as_str().expect("message").contains("https"));
}

#[tokio::test]
async fn credentials_are_checked_and_organizations_are_isolated_on_every_route() {
    let stack = Stack::start().await;
    let a = stack.mint_key("org_a", None);
    let a_project = stack.mint_key("org_a", Some("proj_1"));
    let b = stack.mint_key("org_b", None);
    let (a_ep, _) = stack
        .create_endpoint(
            "org_a",
            &a,
            json!({"url": "https://a.example.com/secret-path-a"}),
        )
        .await;
    let (b_ep, _) = stack
        .create_endpoint("org_b", &b, json!({"url": "https://b.example.com/h"}))
        .await;
    let dlv = "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0";

    // The project key reaches its organization's webhooks.
    let (s, list) = stack
        .call(
            "GET",
            &org_path("org_a", "/webhook-endpoints"),
            Some(&a_project),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(list["webhook_endpoints"][0]["id"], a_ep.as_str());

    // Every route under an organization, from the route table: a new route is covered
    // without being listed here.
    let routes: Vec<(String, String, Option<Value>)> = Route::ALL
        .iter()
        .filter(|r| r.path().contains("{organization_id}"))
        .map(|r| {
            let rest = r
                .path()
                .replace("/v1/organizations/{organization_id}", "")
                .replace("{endpoint_id}", &a_ep)
                .replace("{delivery_id}", dlv)
                .replace("{event_id}", "evt_01JABCDEFGHJKMNPQRSTVWXYZ0")
                .replace("{job_id}", "job_01JABCDEFGHJKMNPQRSTVWXYZ0")
                .replace("{session_id}", "ps_01JABCDEFGHJKMNPQRSTVWXYZ0");
            assert!(
                !rest.contains('{'),
                "{rest}: a path parameter this test does not fill"
            );
            let body = matches!(r.method(), Method::POST | Method::PATCH).then(|| json!({}));
            (r.method().as_str().to_owned(), rest, body)
        })
        .collect();
    assert!(routes.len() >= 11);
    for (method, rest, body) in &routes {
        let path = org_path("org_a", rest);
        let (s, r) = stack.call(method, &path, None, body.clone()).await;
        assert_error(s, &r, 401);
        let (s, r) = stack
            .call(
                method,
                &path,
                Some("capy_live_notarealkeynotarealkeynotarealkey00"),
                body.clone(),
            )
            .await;
        assert_error(s, &r, 401);
        let (s, r) = stack
            .raw(
                method,
                &path,
                &[("authorization", "Basic dXNlcjpwdw==")],
                vec![],
            )
            .await;
        assert_error(s, &r, 401);
        // Another organization's valid key: 403, and never org_a's data.
        let (s, r) = stack.call(method, &path, Some(&b), body.clone()).await;
        assert_error(s, &r, 403);
        assert!(!r.to_string().contains("secret-path-a"));
        // Org B's own path with org A's endpoint id: 404, never the endpoint (routes whose
        // body is checked first may say 400 instead; neither shows org A's data).
        if rest.contains(a_ep.as_str()) && matches!(method.as_str(), "GET" | "DELETE" | "PATCH") {
            let (s, r) = stack
                .call(method, &org_path("org_b", rest), Some(&b), body.clone())
                .await;
            assert_error(s, &r, 404);
            assert!(!r.to_string().contains("secret-path-a"));
        }
    }
    // Org A is untouched by all of it.
    let (_, list) = stack
        .call(
            "GET",
            &org_path("org_a", "/webhook-endpoints"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(list["webhook_endpoints"].as_array().expect("list").len(), 1);
    assert_eq!(list["webhook_endpoints"][0]["description"], "");
    let (_, list) = stack
        .call(
            "GET",
            &org_path("org_b", "/webhook-endpoints"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(list["webhook_endpoints"].as_array().expect("list").len(), 1);
    assert_eq!(list["webhook_endpoints"][0]["id"], b_ep.as_str());
}

#[tokio::test]
async fn clerk_session_tokens_are_verified() {
    let (private_pem, public_pem) = capy_tests::jwt::keypair();
    let stack = Stack::start_with(
        capy_tests::StackOptions::default()
            .set("CLERK_JWT_KEY", &public_pem)
            .set("CLERK_ISSUER", "https://clerk.example.com")
            .set("CLERK_AUTHORIZED_PARTIES", "https://app.example.com"),
    )
    .await;
    let path = org_path("org_jwt", "/webhook-endpoints");
    let now = chrono::Utc::now().timestamp();
    let base = json!({"sub": "user_1", "iss": "https://clerk.example.com", "azp": "https://app.example.com", "exp": now + 300, "nbf": now - 10, "iat": now - 10});
    let with = |extra: Value| {
        let mut c = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let sign = |claims: &Value| capy_tests::jwt::sign_rs256(&private_pem, claims);

    let v1 = sign(&with(json!({"org_id": "org_jwt"})));
    assert_eq!(stack.call("GET", &path, Some(&v1), None).await.0, 200);
    let v2 = sign(&with(
        json!({"v": 2, "o": {"id": "org_jwt", "rol": "admin"}}),
    ));
    assert_eq!(stack.call("GET", &path, Some(&v2), None).await.0, 200);

    let other_org = sign(&with(json!({"org_id": "org_other"})));
    let (s, b) = stack.call("GET", &path, Some(&other_org), None).await;
    assert_error(s, &b, 403);
    let no_org = sign(&base);
    assert_eq!(stack.call("GET", &path, Some(&no_org), None).await.0, 403);

    let rejected = [
        sign(&with(json!({"org_id": "org_jwt", "exp": now - 60}))),
        sign(&with(json!({"org_id": "org_jwt", "nbf": now + 600}))),
        sign(&with(
            json!({"org_id": "org_jwt", "iss": "https://evil.example.com"}),
        )),
        sign(&with(
            json!({"org_id": "org_jwt", "azp": "https://evil.example.com"}),
        )),
        capy_tests::jwt::unsigned(&with(json!({"org_id": "org_jwt"}))),
        capy_tests::jwt::sign_hs256(public_pem.as_bytes(), &with(json!({"org_id": "org_jwt"}))),
        capy_tests::jwt::tamper(&v1, &with(json!({"org_id": "org_jwt", "sub": "user_2"}))),
    ];
    for token in &rejected {
        let (s, b) = stack.call("GET", &path, Some(token), None).await;
        assert_error(s, &b, 401);
    }
    let log = stack.log();
    for token in &rejected {
        assert!(
            !log.contains(token.as_str()),
            "a credential reached the log"
        );
    }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_hash", None);
    let project_key = stack.mint_key("org_hash", Some("proj_9"));
    let (_, secret) = stack
        .create_endpoint("org_hash", &key, json!({"url": "https://a.example.com/h"}))
        .await;
    let dump = stack.dump_table().await;
    assert!(dump.contains("KEY#"), "the dump holds the key items");
    for k in [&key, &project_key] {
        assert!(!dump.contains(k.as_str()));
        assert!(!dump.contains(&k["capy_live_".len()..]));
    }
    assert!(
        !dump.contains(secret.trim_start_matches("whsec_")),
        "no plaintext signing secret at rest"
    );
    // A revoked key stops working.
    stack.revoke_key(&key);
    let (s, b) = stack
        .call(
            "GET",
            &org_path("org_hash", "/webhook-endpoints"),
            Some(&key),
            None,
        )
        .await;
    assert_error(s, &b, 401);
    assert_eq!(
        stack
            .call(
                "GET",
                &org_path("org_hash", "/webhook-endpoints"),
                Some(&project_key),
                None
            )
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn unknown_routes_and_malformed_ids_are_json_404s() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_404", None);
    let k = Some(key.as_str());
    for path in [
        "/v1/organizations/org_404/nothing",
        "/v1/organizations/org_404/webhook-endpoints/not-an-id",
        "/v1/organizations/org_404/webhook-endpoints/ep_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "/v1/organizations/org_404/webhook-endpoints/..%2F..%2Fx",
    ] {
        let method = if path.ends_with("nothing") {
            "GET"
        } else {
            "PATCH"
        };
        let (s, b) = stack.call(method, path, k, Some(json!({}))).await;
        assert_error(s, &b, 404);
    }
}
