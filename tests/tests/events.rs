//! Events as records (issue 10), end to end against `capy serve`, moto and loopback
//! receivers: fan-out at scale and after a crash, the payload stored once, the events API,
//! parked retries, and the sharded deliveries list.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use capy_tests::{
    Receiver, Reply, Stack, StackOptions, eventually, verify_with_official_libraries,
};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(120);

fn org_path(org: &str, rest: &str) -> String {
    format!("/v1/organizations/{org}{rest}")
}

/// Creates `n` endpoints on one receiver, each at its own path `/ep/{i}`; returns their ids.
async fn endpoints_on(stack: &Stack, org: &str, key: &str, r: &Receiver, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, _) = stack
            .create_endpoint(org, key, json!({"url": format!("{}/ep/{i}", r.url)}))
            .await;
        ids.push(id);
    }
    ids
}

/// (path, webhook-id) of every request, and how many requests arrived in all.
fn received_pairs(r: &Receiver) -> (BTreeSet<(String, String)>, usize) {
    let all = r.received();
    let n = all.len();
    (
        all.into_iter()
            .map(|x| (x.path.clone(), x.header("webhook-id").to_owned()))
            .collect(),
        n,
    )
}

async fn event(stack: &Stack, org: &str, key: &str, id: &str) -> Value {
    let (s, v) = stack
        .call(
            "GET",
            &org_path(org, &format!("/events/{id}")),
            Some(key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Every endpoint received exactly one distinct delivery, each once per path.
async fn assert_each_endpoint_got_one(
    stack: &Stack,
    r: &Receiver,
    n: usize,
    org: &str,
    key: &str,
    event_id: &str,
) {
    let pairs = eventually(SETTLE, &format!("{n} distinct deliveries"), || async {
        let (pairs, _) = received_pairs(r);
        (pairs.len() >= n).then_some(pairs)
    })
    .await;
    let paths: BTreeSet<&String> = pairs.iter().map(|(p, _)| p).collect();
    let ids: BTreeSet<&String> = pairs.iter().map(|(_, id)| id).collect();
    assert_eq!(
        pairs.len(),
        n,
        "one delivery per endpoint, never two ids for one pair"
    );
    assert_eq!(paths.len(), n, "no endpoint missed");
    assert_eq!(ids.len(), n, "no delivery id shared");
    let v = eventually(SETTLE, "every delivery recorded as delivered", || async {
        let v = event(stack, org, key, event_id).await;
        let done = v["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == n && d.iter().all(|x| x["state"] == "delivered"));
        done.then_some(v)
    })
    .await;
    assert_eq!(
        v["event"]["fan_out"],
        json!({"state": "done", "endpoints": n})
    );
    let listed: BTreeSet<String> = v["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        listed,
        ids.into_iter().cloned().collect(),
        "the event lists exactly what was sent"
    );
}

#[tokio::test]
async fn fan_out_to_300_endpoints_reaches_each_exactly_once() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_wide", None);
    let r = Receiver::start().await;
    endpoints_on(&stack, "org_wide", &key, &r, 300).await;
    let started = std::time::Instant::now();
    let published = stack
        .publish(
            "org_wide",
            &key,
            json!({"event_type": "a.b", "payload": {"n": 1}}),
        )
        .await;
    println!(
        "publish to 300 endpoints answered in {:?}",
        started.elapsed()
    );
    // Too many for the request: the fan-out consumer takes it.
    assert_eq!(
        published["fan_out"],
        json!({"state": "pending", "endpoints": 0})
    );
    assert_eq!(published["delivery_ids"], json!([]));
    let event_id = published["event_id"].as_str().expect("event id");
    assert_each_endpoint_got_one(&stack, &r, 300, "org_wide", &key, event_id).await;
    let (_, raw) = received_pairs(&r);
    println!(
        "300 deliveries, {raw} requests ({} duplicate sends)",
        raw - 300
    );
}

#[tokio::test]
async fn a_fan_out_killed_mid_way_resumes_with_no_duplicate_and_no_gap() {
    // Pages of 5 make the fan-out long enough to be killed in the middle of it.
    let mut stack = Stack::start_with(StackOptions::default().set("FAN_OUT_PAGE_SIZE", "5")).await;
    let key = stack.mint_key("org_crash", None);
    let r = Receiver::start().await;
    endpoints_on(&stack, "org_crash", &key, &r, 200).await;
    let published = stack
        .publish(
            "org_crash",
            &key,
            json!({"event_type": "a.b", "payload": {}}),
        )
        .await;
    let event_id = published["event_id"].as_str().expect("event id").to_owned();
    let dynamo = stack.dynamo();
    let pages = |dynamo: aws_sdk_dynamodb::Client, table: String, event_id: String| async move {
        dynamo
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("EVT#{event_id}")),
            )
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S("FAN#".into()),
            )
            .send()
            .await
            .expect("query pages")
            .count as usize
    };
    eventually(SETTLE, "the fan-out's third page", || async {
        (pages(dynamo.clone(), stack.table.clone(), event_id.clone()).await >= 3).then_some(())
    })
    .await;
    stack.kill();
    let at_kill = pages(dynamo.clone(), stack.table.clone(), event_id.clone()).await;
    assert!(
        at_kill < 40,
        "killed mid-way: {at_kill} of 40 pages written"
    );
    stack.spawn().await;
    assert_each_endpoint_got_one(&stack, &r, 200, "org_crash", &key, &event_id).await;
    assert_eq!(
        pages(dynamo, stack.table.clone(), event_id).await,
        40,
        "every page written once"
    );
}

#[tokio::test]
async fn the_payload_is_stored_once_for_a_ten_endpoint_publish() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_once", None);
    let r = Receiver::start().await;
    endpoints_on(&stack, "org_once", &key, &r, 10).await;
    let marker = format!("marker-{}", std::process::id());
    let published = stack
        .publish(
            "org_once",
            &key,
            json!({"event_type": "a.b", "payload": {"m": marker}}),
        )
        .await;
    assert_eq!(
        published["fan_out"],
        json!({"state": "done", "endpoints": 10})
    );
    assert_eq!(published["delivery_ids"].as_array().expect("ids").len(), 10);
    let event_id = published["event_id"].as_str().expect("event id");
    assert_each_endpoint_got_one(&stack, &r, 10, "org_once", &key, event_id).await;
    let dump = stack.dump_table().await;
    assert_eq!(
        dump.matches(&marker).count(),
        1,
        "the payload exists once in the table"
    );
    // Every receiver still got it, byte for byte.
    assert!(r.received().iter().all(|x| x.body.contains(&marker)));
}

#[tokio::test]
async fn a_long_payload_is_stored_deflated_once_and_comes_back_byte_for_byte() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_long", None);
    let r = Receiver::start().await;
    endpoints_on(&stack, "org_long", &key, &r, 2).await;
    let marker = format!("long-marker-{}", std::process::id());
    let lines: Vec<Value> = (0..80)
        .map(|i| json!({"id": format!("li_{i:04}"), "amount": 100 * i, "note": format!("{marker} é ✓ \"q\"")}))
        .collect();
    let payload = json!({"invoice": "in_1", "lines": lines});
    assert!(payload.to_string().len() > 4096);
    let published = stack
        .publish(
            "org_long",
            &key,
            json!({"event_type": "invoice.paid", "payload": payload}),
        )
        .await;
    let event_id = published["event_id"].as_str().expect("event id");
    assert_each_endpoint_got_one(&stack, &r, 2, "org_long", &key, event_id).await;
    let dump = stack.dump_table().await;
    assert_eq!(
        dump.matches(&marker).count(),
        0,
        "no plain copy in the table"
    );
    assert_eq!(
        dump.matches("payload_deflate").count(),
        1,
        "one deflated copy"
    );
    let got = event(&stack, "org_long", &key, event_id).await;
    assert_eq!(got["event"]["payload"], payload);
    for x in r.received() {
        let body: Value = serde_json::from_str(&x.body).expect("json body");
        assert_eq!(body["data"], payload, "every receiver got the payload");
    }
}

#[tokio::test]
async fn the_events_api_lists_filters_pages_and_isolates() {
    let stack = Stack::start().await;
    let key = stack.mint_key("org_log", None);
    let other = stack.mint_key("org_log_other", None);
    let r = Receiver::start().await;
    let (ep, secret) = stack
        .create_endpoint("org_log", &key, json!({"url": r.url}))
        .await;
    let mut ids = Vec::new();
    for t in [
        "invoice.paid",
        "user.created",
        "invoice.voided",
        "invoice.paid",
    ] {
        let p = stack
            .publish("org_log", &key, json!({"event_type": t, "payload": {"t": t}, "idempotency_key": format!("k-{}", ids.len())}))
            .await;
        ids.push(p["event_id"].as_str().expect("id").to_owned());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let list = |q: String| {
        let stack = &stack;
        let key = key.clone();
        async move {
            let (s, v) = stack
                .call(
                    "GET",
                    &org_path("org_log", &format!("/events{q}")),
                    Some(&key),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let all = list(String::new()).await;
    let got: Vec<&str> = all["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    let e = &all["events"][0];
    let keys: BTreeSet<&str> = e
        .as_object()
        .expect("event")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "organization_id",
            "event_type",
            "payload",
            "idempotency_key",
            "created_at",
            "fan_out"
        ])
    );
    assert_eq!(e["payload"], json!({"t": "invoice.paid"}));
    assert_eq!(e["idempotency_key"], "k-3");
    assert_eq!(e["fan_out"], json!({"state": "done", "endpoints": 1}));

    // Pages of 3 then 1, no overlap.
    let p1 = list("?limit=3".into()).await;
    let cursor = p1["next_cursor"]
        .as_str()
        .expect("a cursor after a full page")
        .to_owned();
    let p2 = list(format!("?limit=3&cursor={cursor}")).await;
    let paged: Vec<String> = [&p1, &p2]
        .iter()
        .flat_map(|p| {
            p["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned())
        })
        .collect();
    assert_eq!(paged, newest_first);
    assert_eq!(p2["next_cursor"], Value::Null);

    // Type filters: exact and prefix wildcard.
    let exact = list("?event_type=invoice.paid".into()).await;
    assert_eq!(exact["events"].as_array().expect("events").len(), 2);
    let prefix = list("?event_type=invoice.*".into()).await;
    assert_eq!(prefix["events"].as_array().expect("events").len(), 3);
    // A time window after everything is empty; one before everything is empty too.
    let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let empty = list(format!("?since={later}")).await;
    assert_eq!(empty["events"], json!([]));
    let earlier = (chrono::Utc::now() - chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(list(format!("?until={earlier}")).await["events"], json!([]));
    assert_eq!(
        list(format!("?since={earlier}")).await["events"]
            .as_array()
            .expect("events")
            .len(),
        4
    );

    // One event with its per-endpoint delivery, once delivered.
    let one = eventually(SETTLE, "the delivery of the first event", || async {
        let v = event(&stack, "org_log", &key, &ids[0]).await;
        (v["deliveries"][0]["state"] == "delivered").then_some(v)
    })
    .await;
    assert_eq!(one["event"]["id"], ids[0].as_str());
    let d = &one["deliveries"][0];
    let keys: BTreeSet<&str> = d
        .as_object()
        .expect("delivery")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "endpoint_id",
            "state",
            "attempts",
            "response_status",
            "last_error",
            "delivered_at",
            "next_attempt_at"
        ])
    );
    assert_eq!(d["endpoint_id"], ep.as_str());
    assert_eq!(d["attempts"], 1);
    let sent = eventually(SETTLE, "four requests", || async {
        (r.count() >= 4).then(|| r.received())
    })
    .await;
    for x in &sent {
        verify_with_official_libraries(&secret, x).expect("signed");
    }
    // The delivery view carries its event id and the payload read through the event.
    let dv = stack
        .delivery("org_log", &key, &ep, d["id"].as_str().expect("id"))
        .await;
    assert_eq!(dv["event_id"], ids[0].as_str());
    assert_eq!(dv["payload"], json!({"t": "invoice.paid"}));

    // Isolation: another organization's credential is 403; its own path never finds ours.
    let (s, _) = stack
        .call(
            "GET",
            &org_path("org_log", &format!("/events/{}", ids[0])),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = stack
        .call(
            "GET",
            &org_path("org_log_other", &format!("/events/{}", ids[0])),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (_, theirs) = stack
        .call(
            "GET",
            &org_path("org_log_other", "/events"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(theirs["events"], json!([]));

    // Bad input is a clear 400.
    for q in [
        "?limit=0",
        "?limit=251",
        "?cursor=nope",
        "?since=yesterday",
        "?event_type=bad%20type",
    ] {
        let (s, v) = stack
            .call(
                "GET",
                &org_path("org_log", &format!("/events{q}")),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(s, 400, "{q}: {v}");
        assert!(v["error"].is_string());
    }
    let (s, v) = stack
        .call(
            "GET",
            &org_path("org_log", "/events/evt_nope"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = stack
        .call(
            "POST",
            &org_path("org_log", "/events"),
            Some(&key),
            Some(json!({"event_type": "capy.anything", "payload": {}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        list(String::new()).await["events"]
            .as_array()
            .expect("events")
            .len(),
        4,
        "nothing was written"
    );
}

async fn in_flight(stack: &Stack) -> u64 {
    let sqs = stack.sqs();
    let mut total = 0;
    for name in [stack.queue.clone(), format!("{}-fanout", stack.queue)] {
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        total += attrs
            .values()
            .map(|v| v.parse::<u64>().expect("count"))
            .sum::<u64>();
    }
    total
}

#[tokio::test]
async fn a_long_retry_wait_is_parked_off_the_queue_and_sent_when_due() {
    let stack = Stack::start_with(
        StackOptions::default()
            .set("RETRY_SCHEDULE", "0s,6s")
            .set("PARK_AFTER", "1s")
            .set("SWEEP_INTERVAL", "1s"),
    )
    .await;
    let key = stack.mint_key("org_park", None);
    let r = Receiver::scripted(vec![Reply::Status(503)], Reply::Status(200)).await;
    let (ep, _) = stack
        .create_endpoint("org_park", &key, json!({"url": r.url}))
        .await;
    let p = stack
        .publish(
            "org_park",
            &key,
            json!({"event_type": "a.b", "payload": {}}),
        )
        .await;
    let dlv = p["delivery_ids"][0]
        .as_str()
        .expect("inline delivery")
        .to_owned();
    let first = eventually(SETTLE, "the first attempt", || async {
        stack
            .delivery_opt("org_park", &key, &ep, &dlv)
            .await
            .filter(|d| d["attempts"] == 1)
    })
    .await;
    assert_eq!(first["state"], "pending");
    assert_eq!(first["last_error"], "HTTP 503");
    // Waiting, but not on any queue: no message visible, in flight or delayed.
    eventually(
        Duration::from_secs(5),
        "the queues to be empty while the retry waits",
        || async { (in_flight(&stack).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(r.count(), 1, "no second send before it is due");
    let done = stack.settled("org_park", &key, &ep, &dlv, SETTLE).await;
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_u64()),
        (Some("delivered"), Some(2))
    );
    let due: chrono::DateTime<chrono::Utc> = first["next_attempt_at"]
        .as_str()
        .expect("due")
        .parse()
        .expect("time");
    let second = r.received()[1].clone();
    let sent_at: i64 = second
        .header("webhook-timestamp")
        .parse()
        .expect("timestamp");
    assert!(sent_at >= due.timestamp() - 1, "sent when due, not before");
    assert_eq!(second.header("webhook-id"), dlv);
}

#[tokio::test]
async fn the_sharded_deliveries_list_pages_exactly() {
    let stack = Stack::start_with(StackOptions::default().set("RETRY_SCHEDULE", "0s")).await;
    let key = stack.mint_key("org_shards", None);
    // Every third request fails (and, with one attempt, fails for good).
    let script: Vec<Reply> = (0..23)
        .map(|i| Reply::Status(if i % 3 == 0 { 500 } else { 200 }))
        .collect();
    let r = Receiver::scripted(script, Reply::Status(200)).await;
    let (ep, _) = stack
        .create_endpoint("org_shards", &key, json!({"url": r.url}))
        .await;
    let mut ids = BTreeSet::new();
    for i in 0..23 {
        let p = stack
            .publish(
                "org_shards",
                &key,
                json!({"event_type": "a.b", "payload": {"i": i}}),
            )
            .await;
        ids.insert(p["delivery_ids"][0].as_str().expect("id").to_owned());
    }
    let path = org_path("org_shards", &format!("/webhook-endpoints/{ep}/deliveries"));
    let page_through = |q: &'static str| {
        let (stack, key, path) = (&stack, key.clone(), path.clone());
        async move {
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let url = match &cursor {
                    Some(c) => format!("{path}?limit=5{q}&cursor={c}"),
                    None => format!("{path}?limit=5{q}"),
                };
                let (s, v) = stack.call("GET", &url, Some(&key), None).await;
                assert_eq!(s, 200, "{v}");
                let page = v["deliveries"].as_array().expect("deliveries");
                assert!(page.len() <= 5);
                got.extend(page.iter().map(|d| {
                    (
                        d["id"].as_str().expect("id").to_owned(),
                        d["state"].as_str().expect("state").to_owned(),
                    )
                }));
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return got,
                }
            }
        }
    };
    let all = eventually(SETTLE, "23 settled deliveries", || async {
        let got = page_through("").await;
        (got.len() == 23 && got.iter().all(|(_, s)| s != "pending")).then_some(got)
    })
    .await;
    let listed: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, sorted, "newest first across shards");
    assert_eq!(
        listed.iter().cloned().collect::<BTreeSet<_>>(),
        ids,
        "no duplicates, no gaps"
    );
    let by_state: HashMap<&str, usize> = all.iter().fold(HashMap::new(), |mut m, (_, s)| {
        *m.entry(s.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_state.get("failed"), Some(&8));
    let failed = page_through("&state=failed").await;
    assert_eq!(failed.len(), 8);
    assert!(failed.iter().all(|(_, s)| s == "failed"));
    let expected: Vec<_> = all.iter().filter(|(_, s)| s == "failed").cloned().collect();
    assert_eq!(
        failed, expected,
        "the filtered pages are the full list's failed ones, in order"
    );
    // The endpoint's deliveries really are spread over several partitions.
    let dump = stack.dump_table().await;
    let shards: BTreeSet<String> = (0..8)
        .map(|s| format!("EP#{ep}#{s}"))
        .filter(|pk| dump.contains(&format!("S(\"{pk}\")")))
        .collect();
    assert!(
        shards.len() >= 3,
        "23 deliveries over {} shards",
        shards.len()
    );
}
