//! The delivery pipeline end to end: publish → SQS → deliver → real receivers on loopback,
//! verified with the official Standard Webhooks libraries (issue 3).

use std::collections::HashSet;
use std::time::Duration;

use capy_tests::{
    Receiver, Reply, Stack, StackOptions, eventually, verify_with_official_libraries,
};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(30);

fn org_path(org: &str, rest: &str) -> String {
    format!("/v1/organizations/{org}{rest}")
}

fn ids(v: &Value) -> Vec<String> {
    v["delivery_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| i.as_str().expect("id").to_owned())
        .collect()
}

async fn wait_for_requests(r: &Receiver, n: usize) -> Vec<capy_tests::Received> {
    eventually(SETTLE, &format!("{n} requests at {}", r.url), || async {
        (r.count() >= n).then(|| r.received())
    })
    .await
}

#[tokio::test]
async fn an_event_reaches_every_matching_endpoint_and_no_other_signed_verifiably() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_fan", None);
    let other_key = stack.mint_key("org_other", None);
    let mut matching = Vec::new();
    for types in [
        json!([]),
        json!(["invoice.*"]),
        json!(["*"]),
        json!(["invoice.paid", "user.created"]),
    ] {
        let r = Receiver::start().await;
        let (id, secret) = stack
            .create_endpoint("org_fan", &key, json!({"url": r.url, "event_types": types}))
            .await;
        matching.push((r, id, secret));
    }
    let mut silent = Vec::new();
    for (org, k, body) in [
        ("org_fan", &key, json!({"event_types": ["user.created"]})),
        ("org_fan", &key, json!({"event_types": ["invoice"]})),
        ("org_fan", &key, json!({"is_active": false})),
        ("org_other", &other_key, json!({})),
    ] {
        let r = Receiver::start().await;
        let mut body = body;
        body["url"] = json!(r.url);
        let (id, _) = stack.create_endpoint(org, k, body).await;
        silent.push((r, id, org, k));
    }

    let payload = json!({"invoice": "in_1", "amount": 4200, "lines": [{"sku": "é✓"}]});
    let published = stack
        .publish(
            "org_fan",
            &key,
            json!({"event_type": "invoice.paid", "payload": payload}),
        )
        .await;
    assert!(
        published["event_id"]
            .as_str()
            .is_some_and(|e| e.starts_with("evt_"))
    );
    assert_eq!(ids(&published).len(), matching.len());

    for (r, endpoint, secret) in &matching {
        let got = wait_for_requests(r, 1).await;
        let req = &got[0];
        verify_with_official_libraries(secret, req)
            .expect("the official libraries accept the delivery");
        assert!(req.header("webhook-id").starts_with("dlv_"));
        assert!(ids(&published).contains(&req.header("webhook-id").to_owned()));
        assert_eq!(req.header("content-type"), "application/json");
        assert!(req.header("user-agent").contains("Capy-Webhooks"));
        let body: Value = serde_json::from_str(&req.body).expect("JSON body");
        assert_eq!(body["type"], "invoice.paid");
        assert_eq!(body["id"], published["event_id"]);
        assert_eq!(body["data"], payload);
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().expect("timestamp"))
                .is_ok()
        );
        let d = stack
            .settled("org_fan", &key, endpoint, req.header("webhook-id"), SETTLE)
            .await;
        assert_eq!(d["state"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["response_status"], 200);
        assert_eq!(d["payload"], payload);
        assert!(d["delivered_at"].is_string());
        assert_eq!(d["next_attempt_at"], Value::Null);
    }
    for (r, endpoint, org, k) in &silent {
        assert_eq!(r.count(), 0, "{endpoint} must not receive invoice.paid");
        let (_, list) = stack
            .call(
                "GET",
                &org_path(org, &format!("/webhook-endpoints/{endpoint}/deliveries")),
                Some(k),
                None,
            )
            .await;
        assert_eq!(list["deliveries"], json!([]));
    }
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_only_the_latest_previous_survives() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_rot", None);
    let r = Receiver::start().await;
    let (id, first) = stack
        .create_endpoint("org_rot", &key, json!({"url": r.url}))
        .await;
    let rotate = org_path("org_rot", &format!("/webhook-endpoints/{id}/rotate-secret"));
    let (_, second) = stack.call("POST", &rotate, Some(&key), None).await;
    let (_, third) = stack.call("POST", &rotate, Some(&key), None).await;
    let second = second["plaintext_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let third = third["plaintext_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    stack
        .publish(
            "org_rot",
            &key,
            json!({"event_type": "ping", "payload": {"n": 1}}),
        )
        .await;
    let got = wait_for_requests(&r, 1).await;
    let req = &got[0];
    assert_eq!(
        req.header("webhook-signature").split(' ').count(),
        2,
        "current and previous signatures"
    );
    verify_with_official_libraries(&third, req).expect("new secret verifies");
    verify_with_official_libraries(&second, req)
        .expect("previous secret verifies during the grace");
    assert!(
        verify_with_official_libraries(&first, req).is_err(),
        "the secret rotated out twice no longer signs"
    );
}

#[tokio::test]
async fn the_grace_period_ends() {
    let stack = Stack::start_with(StackOptions::default().set("ROTATION_GRACE", "0s")).await;
    let key = stack.mint_key("org_grace", None);
    let r = Receiver::start().await;
    let (id, old) = stack
        .create_endpoint("org_grace", &key, json!({"url": r.url}))
        .await;
    let (_, new) = stack
        .call(
            "POST",
            &org_path(
                "org_grace",
                &format!("/webhook-endpoints/{id}/rotate-secret"),
            ),
            Some(&key),
            None,
        )
        .await;
    stack
        .publish(
            "org_grace",
            &key,
            json!({"event_type": "ping", "payload": null}),
        )
        .await;
    let req = &wait_for_requests(&r, 1).await[0];
    assert_eq!(req.header("webhook-signature").split(' ').count(), 1);
    verify_with_official_libraries(new["plaintext_secret"].as_str().expect("secret"), req)
        .expect("new secret");
    assert!(verify_with_official_libraries(&old, req).is_err());
}

#[tokio::test]
async fn a_receiver_failing_twice_then_succeeding_ends_delivered_after_three_attempts() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_retry", None);
    let r = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(204),
    )
    .await;
    let (endpoint, secret) = stack
        .create_endpoint("org_retry", &key, json!({"url": r.url}))
        .await;
    let published = stack
        .publish(
            "org_retry",
            &key,
            json!({"event_type": "order.created", "payload": {"id": 7}}),
        )
        .await;
    let dlv = &ids(&published)[0];
    let d = stack
        .settled("org_retry", &key, &endpoint, dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["response_status"], 204);
    assert_eq!(d["last_error"], Value::Null);
    let log = d["attempt_log"].as_array().expect("attempt log");
    assert_eq!(log.len(), 3);
    let statuses: Vec<_> = log.iter().map(|a| a["response_status"].clone()).collect();
    assert_eq!(statuses, [json!(500), json!(503), json!(204)]);
    assert_eq!(log[0]["error"], "HTTP 500");
    assert_eq!(log[1]["error"], "HTTP 503");
    assert_eq!(log[2]["error"], Value::Null);
    assert_eq!(log[0]["response_excerpt"], "answer 500");
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert!(a["duration_ms"].is_u64() && a["started_at"].is_string());
    }
    let got = r.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|g| g.header("webhook-id") == dlv),
        "webhook-id is stable across retries"
    );
    for g in &got {
        verify_with_official_libraries(&secret, g).expect("every retry is signed");
    }
    // Health: it failed recently but is succeeding.
    let (_, list) = stack
        .call(
            "GET",
            &org_path("org_retry", "/webhook-endpoints"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(list["webhook_endpoints"][0]["health"], "degraded");
}

#[tokio::test]
async fn a_receiver_always_failing_ends_failed_after_max_attempts_and_is_reported_failing() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_fail", None);
    let r = Receiver::scripted(vec![], Reply::Status(503)).await;
    let (endpoint, _) = stack
        .create_endpoint("org_fail", &key, json!({"url": r.url}))
        .await;
    let mut dlvs = Vec::new();
    for n in 0..2 {
        dlvs.extend(ids(&stack
            .publish(
                "org_fail",
                &key,
                json!({"event_type": "a.b", "payload": {"n": n}}),
            )
            .await));
    }
    for dlv in &dlvs {
        let d = stack
            .settled("org_fail", &key, &endpoint, dlv, SETTLE)
            .await;
        assert_eq!(d["state"], "failed", "{d}");
        assert_eq!(d["attempts"], 3);
        assert_eq!(d["max_attempts"], 3);
        assert_eq!(d["last_error"], "HTTP 503");
        assert_eq!(d["next_attempt_at"], Value::Null);
    }
    assert_eq!(r.count(), 6);
    let (_, list) = stack
        .call(
            "GET",
            &org_path("org_fail", "/webhook-endpoints"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(list["webhook_endpoints"][0]["health"], "failing");
}

#[tokio::test]
async fn transport_failures_are_described_for_people() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_down", None);
    // Nothing listens on this port.
    let port = capy_tests::free_port();
    let (endpoint, _) = stack
        .create_endpoint(
            "org_down",
            &key,
            json!({"url": format!("http://127.0.0.1:{port}/hook")}),
        )
        .await;
    let dlv = ids(&stack
        .publish("org_down", &key, json!({"event_type": "a.b", "payload": 1}))
        .await)
    .remove(0);
    let d = stack
        .settled("org_down", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "failed");
    assert_eq!(d["last_error"], "connection refused");
    assert_eq!(d["response_status"], Value::Null);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_redirect", None);
    let r = Receiver::scripted(vec![], Reply::Status(302)).await;
    let (endpoint, _) = stack
        .create_endpoint("org_redirect", &key, json!({"url": r.url}))
        .await;
    let dlv = ids(&stack
        .publish(
            "org_redirect",
            &key,
            json!({"event_type": "a.b", "payload": 1}),
        )
        .await)
    .remove(0);
    let d = stack
        .settled("org_redirect", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "failed");
    assert_eq!(d["last_error"], "HTTP 302");
}

#[tokio::test]
async fn a_poison_message_ends_failed_through_the_dead_letter_queue() {
    let stack = Stack::start_with(
        StackOptions::default()
            .set("MAX_RECEIVE_COUNT", "2")
            .set("QUEUE_VISIBILITY_TIMEOUT", "1s"),
    )
    .await;
    let key = stack.mint_key("org_poison", None);
    let r = Receiver::start().await;
    let (endpoint, _) = stack
        .create_endpoint("org_poison", &key, json!({"url": r.url}))
        .await;
    // Corrupt the sealed secret: every processing attempt now fails before sending.
    stack
        .dynamo()
        .update_item()
        .table_name(&stack.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("ORG#org_poison".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("EP#{endpoint}")),
        )
        .update_expression("SET secret = :s")
        .expression_attribute_values(
            ":s",
            aws_sdk_dynamodb::types::AttributeValue::S(
                "local1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ),
        )
        .send()
        .await
        .expect("corrupt");
    let dlv = ids(&stack
        .publish(
            "org_poison",
            &key,
            json!({"event_type": "a.b", "payload": 1}),
        )
        .await)
    .remove(0);
    let d = stack
        .settled("org_poison", &key, &endpoint, &dlv, Duration::from_secs(60))
        .await;
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["last_error"]
            .as_str()
            .expect("error")
            .contains("dead-letter queue"),
        "{d}"
    );
    assert_eq!(r.count(), 0);
}

#[tokio::test]
async fn a_consumer_killed_after_sending_but_before_acknowledging_loses_nothing() {
    let mut stack =
        Stack::start_with(StackOptions::default().set("QUEUE_VISIBILITY_TIMEOUT", "2s")).await;
    let key = stack.mint_key("org_crash", None);
    // The first answer is slow, so the consumer is mid-send when it dies.
    let r = Receiver::scripted(
        vec![Reply::Slow(200, Duration::from_secs(3))],
        Reply::Status(200),
    )
    .await;
    let (endpoint, secret) = stack
        .create_endpoint("org_crash", &key, json!({"url": r.url}))
        .await;
    let dlv = ids(&stack
        .publish(
            "org_crash",
            &key,
            json!({"event_type": "a.b", "payload": {"k": 1}}),
        )
        .await)
    .remove(0);
    wait_for_requests(&r, 1).await;
    stack.kill();
    stack.spawn().await;
    let got = wait_for_requests(&r, 2).await;
    assert_eq!(got[0].header("webhook-id"), dlv);
    assert_eq!(
        got[1].header("webhook-id"),
        dlv,
        "the resend carries the same webhook-id"
    );
    verify_with_official_libraries(&secret, &got[1]).expect("resend verifies");
    let d = stack
        .settled("org_crash", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "delivered");
    assert_eq!(
        d["attempts"], 1,
        "the attempt cut off by the crash was never recorded"
    );
}

#[tokio::test]
async fn publishing_with_an_idempotency_key_twice_creates_nothing_new() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_idem", None);
    let r = Receiver::start().await;
    let (endpoint, _) = stack
        .create_endpoint("org_idem", &key, json!({"url": r.url}))
        .await;
    let body = json!({"event_type": "a.b", "payload": {"x": 1}, "idempotency_key": "order-42"});
    let first = stack.publish("org_idem", &key, body.clone()).await;
    let again = stack.publish("org_idem", &key, body).await;
    assert_eq!(first, again, "the same answer");
    let (s, conflict) = stack
        .call(
            "POST",
            &org_path("org_idem", "/events"),
            Some(&key),
            Some(json!({"event_type": "a.b", "payload": {"x": 2}, "idempotency_key": "order-42"})),
        )
        .await;
    assert_eq!(s, 409, "{conflict}");
    let other = stack
        .publish(
            "org_idem",
            &key,
            json!({"event_type": "a.b", "payload": {"x": 1}, "idempotency_key": "order-43"}),
        )
        .await;
    assert_ne!(other["event_id"], first["event_id"]);
    let (_, list) = eventually(SETTLE, "two deliveries", || async {
        let (s, l) = stack
            .call(
                "GET",
                &org_path(
                    "org_idem",
                    &format!("/webhook-endpoints/{endpoint}/deliveries"),
                ),
                Some(&key),
                None,
            )
            .await;
        (l["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|x| x["state"] == "delivered")))
        .then_some((s, l))
    })
    .await;
    assert_eq!(list["deliveries"].as_array().expect("list").len(), 2);
    assert_eq!(r.count(), 2);
}

#[tokio::test]
async fn deliveries_page_by_cursor_newest_first_and_filter_by_state() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_page", None);
    let r = Receiver::start().await;
    let (endpoint, _) = stack
        .create_endpoint("org_page", &key, json!({"url": r.url}))
        .await;
    let mut published = Vec::new();
    for n in 0..7 {
        published.extend(ids(&stack
            .publish(
                "org_page",
                &key,
                json!({"event_type": "a.b", "payload": {"n": n}}),
            )
            .await));
    }
    wait_for_requests(&r, 7).await;
    let base = org_path(
        "org_page",
        &format!("/webhook-endpoints/{endpoint}/deliveries"),
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=3&cursor={c}"),
            None => format!("{base}?limit=3"),
        };
        let (s, page) = stack.call("GET", &path, Some(&key), None).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        let items = page["deliveries"].as_array().expect("page");
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|d| d["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut newest_first = published.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let (_, all) = stack.call("GET", &base, Some(&key), None).await;
    assert_eq!(all["deliveries"].as_array().expect("list").len(), 7);
    assert_eq!(all["next_cursor"], Value::Null);
    let settled = eventually(SETTLE, "all delivered", || async {
        let (_, l) = stack
            .call("GET", &format!("{base}?state=delivered"), Some(&key), None)
            .await;
        (l["deliveries"].as_array().map(Vec::len) == Some(7)).then_some(l)
    })
    .await;
    assert_eq!(settled["deliveries"].as_array().expect("list").len(), 7);
    let (_, pending) = stack
        .call("GET", &format!("{base}?state=pending"), Some(&key), None)
        .await;
    assert_eq!(pending["deliveries"], json!([]));
    let (s, _) = stack
        .call("GET", &format!("{base}?state=lost"), Some(&key), None)
        .await;
    assert_eq!(s, 400);
    let (s, _) = stack
        .call("GET", &format!("{base}?cursor=bogus"), Some(&key), None)
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn a_failed_delivery_can_be_retried_by_hand() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_manual", None);
    let r = Receiver::scripted(vec![], Reply::Status(500)).await;
    let (endpoint, _) = stack
        .create_endpoint("org_manual", &key, json!({"url": r.url}))
        .await;
    let dlv = ids(&stack
        .publish(
            "org_manual",
            &key,
            json!({"event_type": "a.b", "payload": 1}),
        )
        .await)
    .remove(0);
    let d = stack
        .settled("org_manual", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "failed");
    r.answer(Reply::Status(200));
    let (s, retried) = stack
        .call(
            "POST",
            &org_path(
                "org_manual",
                &format!("/webhook-endpoints/{endpoint}/deliveries/{dlv}/retry"),
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, 202, "{retried}");
    assert_eq!(retried["delivery"]["state"], "pending");
    assert_eq!(retried["delivery"]["id"], dlv.as_str());
    let d = stack
        .settled("org_manual", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["attempt_log"].as_array().expect("log").len(), 4);
    let ids: HashSet<_> = r
        .received()
        .iter()
        .map(|g| g.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    let (s, _) = stack
        .call(
            "POST",
            &org_path(
                "org_manual",
                &format!(
                    "/webhook-endpoints/{endpoint}/deliveries/dlv_01JABCDEFGHJKMNPQRSTVWXYZ0/retry"
                ),
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn endpoints_deleted_disabled_or_gone_fail_their_deliveries_with_the_reason() {
    let mut stack = Stack::start().await;
    let key = stack.mint_key("org_gone", None);
    let gone = Receiver::scripted(vec![], Reply::Status(410)).await;
    let (endpoint, _) = stack
        .create_endpoint(
            "org_gone",
            &key,
            json!({"url": gone.url, "event_types": ["g.*"]}),
        )
        .await;
    let dlv = ids(&stack
        .publish(
            "org_gone",
            &key,
            json!({"event_type": "g.one", "payload": 1}),
        )
        .await)
    .remove(0);
    let d = stack
        .settled("org_gone", &key, &endpoint, &dlv, SETTLE)
        .await;
    assert_eq!(d["state"], "failed");
    assert_eq!(d["attempts"], 1, "410 stops retries at once");
    assert!(
        d["last_error"].as_str().expect("error").contains("410"),
        "{d}"
    );
    let (_, list) = stack
        .call(
            "GET",
            &org_path("org_gone", "/webhook-endpoints"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(list["webhook_endpoints"][0]["is_active"], false);
    assert_eq!(list["webhook_endpoints"][0]["health"], "disabled");
    // Disabled: no retry until re-enabled; then it goes through.
    let retry = org_path(
        "org_gone",
        &format!("/webhook-endpoints/{endpoint}/deliveries/{dlv}/retry"),
    );
    assert_eq!(stack.call("POST", &retry, Some(&key), None).await.0, 400);
    gone.answer(Reply::Status(200));
    let patch = org_path("org_gone", &format!("/webhook-endpoints/{endpoint}"));
    assert_eq!(
        stack
            .call(
                "PATCH",
                &patch,
                Some(&key),
                Some(json!({"is_active": true}))
            )
            .await
            .0,
        200
    );
    assert_eq!(stack.call("POST", &retry, Some(&key), None).await.0, 202);
    assert_eq!(
        stack
            .settled("org_gone", &key, &endpoint, &dlv, SETTLE)
            .await["state"],
        "delivered"
    );

    // Deleted between publish and send: the consumer finds no endpoint. `capy serve` runs
    // without delivery consumers (CAPY_POLLERS=0) from publish to delete, so the message
    // waits on the queue and the send cannot win the race.
    let receiver = Receiver::start().await;
    let (doomed, _) = stack
        .create_endpoint(
            "org_gone",
            &key,
            json!({"url": receiver.url, "event_types": ["d.*"]}),
        )
        .await;
    stack.env.insert("CAPY_POLLERS".into(), "0".into());
    stack.spawn().await;
    let dlv = ids(&stack
        .publish(
            "org_gone",
            &key,
            json!({"event_type": "d.one", "payload": 1}),
        )
        .await)
    .remove(0);
    let dir = org_path("org_gone", &format!("/webhook-endpoints/{doomed}"));
    assert_eq!(stack.call("DELETE", &dir, Some(&key), None).await.0, 200);
    stack.env.remove("CAPY_POLLERS");
    stack.spawn().await;
    // The delivery's history outlives the endpoint in storage; read it straight from the table.
    let table = capy_shared::adapters::dynamo::Table::new(stack.dynamo(), stack.table.clone());
    let final_state = eventually(SETTLE, "the orphaned delivery to settle", || async {
        use capy_shared::ports::DeliveryLog;
        let d = DeliveryLog::get(
            &table,
            doomed.parse().expect("id"),
            dlv.parse().expect("id"),
        )
        .await
        .expect("get")?;
        d.state.is_terminal().then_some(d)
    })
    .await;
    assert_eq!(
        final_state.state,
        capy_shared::domain::delivery::DeliveryState::Failed
    );
    assert_eq!(final_state.last_error.as_deref(), Some("endpoint deleted"));
    assert_eq!(final_state.attempts, 0, "nothing was sent");
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn the_sweeper_sends_a_delivery_whose_message_was_lost() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_sweep", None);
    let r = Receiver::start().await;
    let (endpoint_id, _) = stack
        .create_endpoint("org_sweep", &key, json!({"url": r.url}))
        .await;
    use capy_shared::domain::delivery::{Delivery, Expected};
    use capy_shared::domain::event::Event;
    use capy_shared::ports::{DeliveryLog, EventStore};
    let table = capy_shared::adapters::dynamo::Table::new(stack.dynamo(), stack.table.clone());
    let earlier = capy_shared::domain::time::now() - chrono::TimeDelta::seconds(30);
    let event = Event::new("org_sweep", "a.b", "{\"lost\":true}".into(), earlier);
    table.create(&event).await.expect("event");
    // Written as a manual retry writes it (pending, with the moment its message counts as
    // lost), but, as after a crash before the send, no message ever went out.
    let mut orphan = Delivery::first(&event, endpoint_id.parse().expect("id"), 3);
    orphan.sweep_at = Some(earlier);
    table.save(&orphan, Expected::New).await.expect("save");
    let d = stack
        .settled(
            "org_sweep",
            &key,
            &endpoint_id,
            &orphan.id.to_string(),
            SETTLE,
        )
        .await;
    assert_eq!(d["state"], "delivered");
    assert_eq!(r.received()[0].header("webhook-id"), orphan.id.to_string());
    assert_eq!(
        r.received()[0].body,
        event.webhook_body(),
        "the payload read through its event"
    );
}

#[tokio::test]
async fn publish_validates_its_input() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_pubbad", None);
    let path = org_path("org_pubbad", "/events");
    for body in [
        json!({"payload": 1}),
        json!({"event_type": "a.b"}),
        json!({"event_type": "", "payload": 1}),
        json!({"event_type": "has space", "payload": 1}),
        json!({"event_type": "a.*", "payload": 1}),
        json!({"event_type": "a.b", "payload": 1, "extra": true}),
        json!({"event_type": "a.b", "payload": 1, "idempotency_key": ""}),
    ] {
        let (s, b) = stack
            .call("POST", &path, Some(&key), Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body} -> {b}");
        assert!(b["error"].is_string());
    }
    let big = json!({"event_type": "a.b", "payload": {"blob": "x".repeat(256 * 1024)}});
    let (s, b) = stack.call("POST", &path, Some(&key), Some(big)).await;
    assert_eq!(s, 413, "{b}");
    // null is a payload like any other.
    let ok = stack
        .publish(
            "org_pubbad",
            &key,
            json!({"event_type": "a.b", "payload": null}),
        )
        .await;
    assert_eq!(ok["delivery_ids"], json!([]));
}
