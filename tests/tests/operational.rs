//! Operational events, the disable forecast, the operator bus and the EMF metrics, end to end:
//! `capy serve` on moto, loopback receivers, the official verification libraries, and an
//! EventBridge bus on moto whose rule feeds an SQS queue (to read `PutEvents` back).

use std::sync::Arc;
use std::time::Duration;

use capy_shared::adapters::memory::MemoryStores;
use capy_shared::adapters::secrets::LocalCipher;
use capy_shared::config::Settings;
use capy_shared::domain::endpoint::{Endpoint, SealedSecret};
use capy_shared::domain::ids::EndpointId;
use capy_shared::services::operational;
use capy_shared::wiring;
use capy_tests::{Receiver, Reply, Stack, StackOptions, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn org() -> String {
    use rand::Rng;
    format!("org_ops{}", rand::rng().random_range(100_000..999_999))
}

/// Bodies of what `r` received, parsed.
fn bodies(r: &Receiver) -> Vec<Value> {
    r.received()
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("JSON body"))
        .collect()
}

/// What `r` received of type `t`, with its parsed body.
fn of_type(r: &Receiver, t: &str) -> Vec<(capy_tests::Received, Value)> {
    r.received()
        .into_iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_str(&m.body).expect("JSON body");
            (v["type"] == t).then_some((m, v))
        })
        .collect()
}

async fn first_of_type(r: &Receiver, t: &str) -> (capy_tests::Received, Value) {
    eventually(WAIT, &format!("a {t} webhook"), || async {
        of_type(r, t).into_iter().next()
    })
    .await
}

/// A watcher subscribed to `watches`, and an endpoint subscribed to `order.created` at a
/// receiver that always answers `status`.
struct Watched {
    watcher: Receiver,
    watcher_secret: String,
    down: Receiver,
    down_id: String,
}

async fn watched(stack: &Stack, org: &str, key: &str, watches: &str, status: u16) -> Watched {
    let watcher = Receiver::start().await;
    let (_, watcher_secret) = stack
        .create_endpoint(
            org,
            key,
            json!({"url": watcher.url, "event_types": [watches]}),
        )
        .await;
    let down = Receiver::scripted(vec![], Reply::Status(status)).await;
    let (down_id, _) = stack
        .create_endpoint(
            org,
            key,
            json!({"url": down.url, "event_types": ["order.created"]}),
        )
        .await;
    Watched {
        watcher,
        watcher_secret,
        down,
        down_id,
    }
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

/// The `data` schema `openapi.yaml`'s `webhooks` section gives `event_type`.
fn documented_schema(event_type: &str) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(capy_tests::workspace_root().join("openapi.yaml"))
            .expect("openapi.yaml"),
    )
    .expect("YAML");
    let op = &doc["webhooks"][event_type]["post"];
    let schema = &op["requestBody"]["content"]["application/json"]["schema"]["allOf"][1];
    assert_eq!(
        schema["properties"]["type"]["const"].as_str(),
        Some(event_type)
    );
    let r = schema["properties"]["data"]["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{event_type} is documented in openapi.yaml's webhooks"));
    let name = r.rsplit('/').next().expect("a schema name");
    doc["components"]["schemas"][name].clone()
}

/// The payload's fields are exactly the documented ones, all of them required.
fn assert_documented(event_type: &str, data: &Value) {
    let schema = documented_schema(event_type);
    let names = |v: &serde_yaml::Value| -> std::collections::BTreeSet<String> {
        v.as_sequence()
            .expect("a list")
            .iter()
            .map(|k| k.as_str().expect("a name").to_owned())
            .collect()
    };
    let required = names(&schema["required"]);
    let properties: std::collections::BTreeSet<String> = schema["properties"]
        .as_mapping()
        .expect("properties")
        .keys()
        .map(|k| k.as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        required, properties,
        "{event_type}: every field is required"
    );
    let sent: std::collections::BTreeSet<String> = data
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(sent, properties, "{event_type}: payload vs openapi.yaml");
}

async fn endpoint_view(stack: &Stack, org: &str, key: &str, id: &str) -> Value {
    let (status, list) = stack
        .call(
            "GET",
            &format!("/v1/organizations/{org}/webhook-endpoints"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["webhook_endpoints"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .expect("the endpoint is listed")
}

/// The events of `event_type` in the organization's events log.
async fn logged(stack: &Stack, org: &str, key: &str, event_type: &str) -> Vec<Value> {
    let (status, list) = stack
        .call(
            "GET",
            &format!("/v1/organizations/{org}/events?event_type={event_type}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["events"].as_array().expect("events").clone()
}

/// The endpoints an event went to, from `GET /events/{id}`.
async fn recipients(stack: &Stack, org: &str, key: &str, event_id: &str) -> Vec<String> {
    let (status, e) = stack
        .call(
            "GET",
            &format!("/v1/organizations/{org}/events/{event_id}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{e}");
    let mut ids: Vec<String> = e["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["endpoint_id"].as_str().expect("endpoint_id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// An operator bus on moto named after the stack; returns (bus name, inbox queue url).
async fn operator_bus(stack: &Stack) -> (String, String) {
    let name = format!("{}-ops", stack.table);
    let inbox = capy_tests::operator_bus::create(&stack.sqs(), &name).await;
    (name, inbox)
}

#[tokio::test]
async fn a_410_sends_capy_endpoint_disabled_signed_to_its_subscriber_and_to_the_operator_bus() {
    // The stack needs the bus name before it starts; the bus needs a stack's table name only
    // for a unique name, so a first stack makes the bus and a second one uses it.
    let scratch = Stack::start().await;
    let (bus, inbox) = operator_bus(&scratch).await;
    drop(scratch);
    let stack = Stack::start_with(StackOptions::default().set("OPERATOR_EVENT_BUS", &bus)).await;
    let org = org();
    let key = stack.mint_key(&org, None);

    let watcher = Receiver::start().await;
    let (watcher_id, watcher_secret) = stack
        .create_endpoint(
            &org,
            &key,
            json!({"url": watcher.url, "event_types": ["capy.endpoint.disabled"]}),
        )
        .await;
    let everything = Receiver::start().await;
    stack
        .create_endpoint(
            &org,
            &key,
            json!({"url": everything.url, "event_types": []}),
        )
        .await;
    let star = Receiver::start().await;
    stack
        .create_endpoint(&org, &key, json!({"url": star.url, "event_types": ["*"]}))
        .await;
    let gone = Receiver::scripted(vec![], Reply::Status(410)).await;
    let (gone_id, _) = stack
        .create_endpoint(
            &org,
            &key,
            json!({"url": gone.url, "event_types": ["order.created", "capy.*"]}),
        )
        .await;

    stack
        .publish(
            &org,
            &key,
            json!({"event_type": "order.created", "payload": {"n": 1}}),
        )
        .await;

    let (msg, body) = first_of_type(&watcher, "capy.endpoint.disabled").await;
    capy_tests::verify_with_official_libraries(&watcher_secret, &msg)
        .expect("the official libraries accept the operational event");
    let data = &body["data"];
    assert_documented("capy.endpoint.disabled", data);
    assert_eq!(data["endpoint_id"], gone_id.as_str());
    assert_eq!(data["url"], gone.url.as_str());
    assert_eq!(data["organization_id"], org.as_str());
    assert!(
        data["reason"].as_str().expect("reason").contains("410"),
        "{data}"
    );
    let since = time(&data["failing_since"]);
    assert!(since <= time(&data["disabled_at"]), "{data}");

    // The events log holds it, sent to the watcher alone: not through [] or "*", and not to
    // the endpoint it is about (which names capy.* but is the subject, and disabled).
    let events = logged(&stack, &org, &key, "capy.endpoint.disabled").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"], *data);
    let event_id = events[0]["id"].as_str().expect("id");
    assert_eq!(
        recipients(&stack, &org, &key, event_id).await,
        vec![watcher_id.clone()]
    );
    // The order reached [] and "*" (so they were listening), and nothing capy.* did.
    for r in [&everything, &star] {
        let types: Vec<Value> = eventually(WAIT, "the order at [] and *", || async {
            let b = bodies(r);
            (!b.is_empty()).then_some(b)
        })
        .await
        .iter()
        .map(|b| b["type"].clone())
        .collect();
        assert_eq!(types, vec![json!("order.created")]);
    }
    assert!(bodies(&gone).iter().all(|b| b["type"] == "order.created"));

    // The operator bus got it too (PutEvents, read back through the rule's queue).
    let sqs = stack.sqs();
    let detail = eventually(WAIT, "the disabled event on the operator bus", || async {
        let out = sqs
            .receive_message()
            .queue_url(&inbox)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        out.messages().iter().find_map(|m| {
            let v: Value = serde_json::from_str(m.body().unwrap_or("{}")).ok()?;
            (v["detail-type"] == "capy.endpoint.disabled" && v["source"] == "capy.webhooks")
                .then(|| v["detail"].clone())
        })
    })
    .await;
    assert_eq!(detail["endpoint_id"], gone_id.as_str());
    assert_eq!(detail["organization_id"], org.as_str());
    assert_eq!(detail["url"], gone.url.as_str());
}

#[tokio::test]
async fn failing_and_recovered_reach_subscribers_never_their_subject() {
    // One delivery of six attempts: its attempts are serial, so the receiver's answers are
    // counted in order (two deliveries in flight could count a success before a failure).
    let stack = Stack::start_with(
        StackOptions::default().set("RETRY_SCHEDULE", "0s,200ms,200ms,200ms,200ms,200ms"),
    )
    .await;
    let org = org();
    let key = stack.mint_key(&org, None);
    let watcher = Receiver::start().await;
    let (watcher_id, watcher_secret) = stack
        .create_endpoint(
            &org,
            &key,
            json!({"url": watcher.url, "event_types": ["capy.*"]}),
        )
        .await;
    // Five failures (the streak reaches 5: failing), then the sixth attempt succeeds
    // (recovered).
    let flaky = Receiver::scripted(vec![Reply::Status(500); 5], Reply::Status(200)).await;
    let (flaky_id, _) = stack
        .create_endpoint(
            &org,
            &key,
            json!({"url": flaky.url, "event_types": ["order.created", "capy.*"]}),
        )
        .await;
    stack
        .publish(
            &org,
            &key,
            json!({"event_type": "order.created", "payload": {"n": 1}}),
        )
        .await;

    let (msg, failing) = first_of_type(&watcher, "capy.endpoint.failing").await;
    capy_tests::verify_with_official_libraries(&watcher_secret, &msg).expect("signed");
    assert_documented("capy.endpoint.failing", &failing["data"]);
    assert_eq!(failing["data"]["endpoint_id"], flaky_id.as_str());
    assert_eq!(failing["data"]["failure_streak"], 5);
    let (_, recovered) = first_of_type(&watcher, "capy.endpoint.recovered").await;
    let r = &recovered["data"];
    assert_documented("capy.endpoint.recovered", r);
    assert_eq!(r["endpoint_id"], flaky_id.as_str());
    assert_eq!(r["url"], flaky.url.as_str());
    assert_eq!(r["organization_id"], org.as_str());
    assert_eq!(r["failing_since"], failing["data"]["failing_since"]);
    assert!(time(&r["recovered_at"]) >= time(&r["failing_since"]));
    // Recovered: the view's forecast is gone with the streak.
    let view = endpoint_view(&stack, &org, &key, &flaky_id).await;
    assert_eq!(view["failing_since"], Value::Null);
    assert_eq!(view["disable_at"], Value::Null);

    // Each was sent to the watcher only, never to the endpoint it is about.
    for t in ["capy.endpoint.failing", "capy.endpoint.recovered"] {
        let events = logged(&stack, &org, &key, t).await;
        assert_eq!(events.len(), 1, "{t}: {events:?}");
        let id = events[0]["id"].as_str().expect("id");
        assert_eq!(
            recipients(&stack, &org, &key, id).await,
            vec![watcher_id.clone()]
        );
    }
    assert!(bodies(&flaky).iter().all(|b| b["type"] == "order.created"));
    // Not even by hand: resending an operational event to its subject is 400.
    let failing_id = failing["id"].as_str().expect("event id");
    let (status, out) = stack
        .call(
            "POST",
            &format!("/v1/organizations/{org}/events/{failing_id}/deliveries"),
            Some(&key),
            Some(json!({"endpoint_id": flaky_id})),
        )
        .await;
    assert_eq!(status, 400, "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("never goes to the endpoint it is about")),
        "{out}"
    );

    // The consumer's EMF documents, from the process's own output.
    let docs = emf_documents(&stack);
    let outcomes = delivery_outcomes(&docs);
    assert_eq!(
        outcomes.iter().filter(|o| **o == "retrying").count(),
        5,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"delivered"), "{outcomes:?}");
    let delivered = docs
        .iter()
        .find(|d| d["outcome"] == "delivered" && d["endpoint_id"] == flaky_id.as_str())
        .expect("a delivered document for the flaky endpoint");
    assert!(delivered["EndToEndLag"].as_f64().expect("lag") >= 0.0);
    assert_eq!(delivered["organization_id"], org.as_str());
    assert!(
        delivered["delivery_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("dlv_"))
    );
    assert!(
        delivered["event_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("evt_"))
    );
    assert!(
        docs.iter()
            .any(|d| d["function"] == "publish-event" && d["FanOutSize"].is_number()),
        "fan-out size is measured"
    );
}

/// Every EMF document `capy serve` printed (one JSON line each), each checked against the
/// EMF structure.
fn emf_documents(stack: &Stack) -> Vec<Value> {
    let docs: Vec<Value> = stack
        .log()
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"_aws\":"))
        .map(|l| serde_json::from_str(l).expect("an EMF line is one JSON document"))
        .collect();
    assert!(!docs.is_empty(), "the consumers print EMF documents");
    for d in &docs {
        check_emf(d);
    }
    docs
}

/// The `outcome` of each `Deliveries` document of the deliver function.
fn delivery_outcomes(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .filter(|d| d["function"] == "deliver" && d["Deliveries"].is_number())
        .map(|d| d["outcome"].as_str().expect("outcome"))
        .collect()
}

/// One EMF document against the specification's structure: the directive's namespace,
/// dimension set (function, outcome only) and metrics, each with its value.
fn check_emf(d: &Value) {
    let aws = &d["_aws"];
    assert!(
        aws["Timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{d}"
    );
    let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
    assert_eq!(directives.len(), 1, "{d}");
    assert_eq!(directives[0]["Namespace"], "CapyWebhooks");
    assert_eq!(
        directives[0]["Dimensions"],
        json!([["function", "outcome"]]),
        "{d}"
    );
    assert!(d["function"].is_string() && d["outcome"].is_string(), "{d}");
    let metrics = directives[0]["Metrics"].as_array().expect("metrics");
    assert!(!metrics.is_empty(), "{d}");
    for m in metrics {
        let name = m["Name"].as_str().expect("name");
        assert!(
            ["Count", "Milliseconds"].contains(&m["Unit"].as_str().expect("unit")),
            "{d}"
        );
        assert!(d[name].is_number(), "{name} has no value: {d}");
    }
}

#[tokio::test]
async fn exhausted_is_sent_once_within_the_hour_and_counts_the_rest_and_the_views_forecast() {
    // A 2 h disable period: the views' forecast follows the policy, not the 5-day default.
    let stack = Stack::start_with(StackOptions::default().set("DISABLE_AFTER", "2h")).await;
    let org = org();
    let key = stack.mint_key(&org, None);
    // `_down` keeps the receiver answering.
    let Watched {
        watcher,
        down: _down,
        down_id,
        ..
    } = watched(&stack, &org, &key, "capy.delivery.exhausted", 500).await;
    let fresh = endpoint_view(&stack, &org, &key, &down_id).await;
    assert_eq!(fresh["failing_since"], Value::Null);
    assert_eq!(fresh["disable_at"], Value::Null);
    let mut deliveries = vec![];
    for n in 0..3 {
        let p = stack
            .publish(
                &org,
                &key,
                json!({"event_type": "order.created", "payload": {"n": n}}),
            )
            .await;
        deliveries.push(p["delivery_ids"][0].as_str().expect("inline").to_owned());
    }
    for d in &deliveries {
        let settled = stack.settled(&org, &key, &down_id, d, WAIT).await;
        assert_eq!(settled["state"], "failed");
    }
    // The marker counts every exhaustion of the hour...
    let dynamo = stack.dynamo();
    eventually(WAIT, "three exhaustions counted", || async {
        let item = dynamo
            .get_item()
            .table_name(&stack.table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("OPS#{down_id}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("MARK#exhausted".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("get")
            .item?;
        (item.get("occurrences")?.as_n().ok()? == "3").then_some(())
    })
    .await;
    // ...and the first one alone was sent.
    let (_, first) = first_of_type(&watcher, "capy.delivery.exhausted").await;
    let data = &first["data"];
    assert_documented("capy.delivery.exhausted", data);
    assert_eq!(data["endpoint_id"], down_id.as_str());
    assert_eq!(data["attempts"], 3);
    assert_eq!(data["count"], 1);
    assert_eq!(data["previous_window"], Value::Null);
    assert_eq!(
        time(&data["window_end"]) - time(&data["window_start"]),
        chrono::TimeDelta::hours(1)
    );
    assert!(deliveries.contains(&data["delivery_id"].as_str().expect("id").to_owned()));
    assert_eq!(
        logged(&stack, &org, &key, "capy.delivery.exhausted")
            .await
            .len(),
        1
    );
    assert_eq!(of_type(&watcher, "capy.delivery.exhausted").len(), 1);

    // The views' forecast: failing since the first failure, disabled 2 h later unless an
    // attempt succeeds.
    let view = endpoint_view(&stack, &org, &key, &down_id).await;
    assert_eq!(view["health"], "failing", "{view}");
    let since = time(&view["failing_since"]);
    assert!(since <= time(&data["failed_at"]), "{view}");
    assert_eq!(
        time(&view["disable_at"]) - since,
        chrono::TimeDelta::hours(2)
    );

    // Metrics: each failed-for-good delivery is one `failed` document, its attempts measured.
    let docs = emf_documents(&stack);
    let failed: Vec<&Value> = docs
        .iter()
        .filter(|d| d["function"] == "deliver" && d["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|d| d["AttemptDuration"].is_number()
        && d["endpoint_id"] == down_id.as_str()
        && d["EndToEndLag"].is_null()));
    assert_eq!(
        delivery_outcomes(&docs)
            .iter()
            .filter(|o| **o == "retrying")
            .count(),
        6
    );
}

#[tokio::test]
async fn disable_scheduled_goes_out_the_lead_before_disable_at_once_per_streak() {
    // A 10 s streak disables; the warning lead is 6 s; one delivery retries every 500 ms
    // (or slower) 40 times, so the streak spans both.

    let schedule = std::iter::once("0s")
        .chain(std::iter::repeat_n("500ms", 39))
        .collect::<Vec<_>>()
        .join(",");
    let stack = Stack::start_with(
        StackOptions::default()
            .set("RETRY_SCHEDULE", &schedule)
            .set("DISABLE_AFTER", "10s")
            .set("DISABLE_WARNING_LEAD", "6s"),
    )
    .await;
    let org = org();
    let key = stack.mint_key(&org, None);
    let Watched {
        watcher,
        watcher_secret,
        down,
        down_id,
    } = watched(&stack, &org, &key, "capy.endpoint.*", 503).await;
    let fresh = endpoint_view(&stack, &org, &key, &down_id).await;
    assert_eq!(fresh["failing_since"], Value::Null);
    assert_eq!(fresh["disable_at"], Value::Null);
    stack
        .publish(
            &org,
            &key,
            json!({"event_type": "order.created", "payload": {}}),
        )
        .await;

    let (msg, scheduled) = first_of_type(&watcher, "capy.endpoint.disable_scheduled").await;
    capy_tests::verify_with_official_libraries(&watcher_secret, &msg).expect("signed");
    let s = &scheduled["data"];
    assert_documented("capy.endpoint.disable_scheduled", s);
    assert_eq!(s["endpoint_id"], down_id.as_str());
    assert_eq!(s["url"], down.url.as_str());
    assert_eq!(s["organization_id"], org.as_str());
    let since = time(&s["failing_since"]);
    let disable_at = time(&s["disable_at"]);
    assert_eq!(disable_at - since, chrono::TimeDelta::seconds(10));
    let sent = time(&s["scheduled_at"]);
    assert!(
        sent >= disable_at - chrono::TimeDelta::seconds(6) && sent < disable_at,
        "sent at {sent}, disable_at {disable_at}"
    );

    let (_, disabled) = first_of_type(&watcher, "capy.endpoint.disabled").await;
    let d = &disabled["data"];
    assert_eq!(d["endpoint_id"], down_id.as_str());
    assert_eq!(d["reason"], "every attempt failed for 10 seconds");
    assert_eq!(time(&d["failing_since"]), since);
    assert!(time(&d["disabled_at"]) >= disable_at, "{d}");
    // Once per streak.
    assert_eq!(
        of_type(&watcher, "capy.endpoint.disable_scheduled").len(),
        1
    );
    let failing = of_type(&watcher, "capy.endpoint.failing");
    assert_eq!(failing.len(), 1);
    assert_eq!(time(&failing[0].1["data"]["failing_since"]), since);

    let after = endpoint_view(&stack, &org, &key, &down_id).await;
    assert_eq!(after["is_active"], false);
    assert_eq!(after["health"], "disabled");
    assert_eq!(
        time(&after["failing_since"]),
        since,
        "the streak that disabled it"
    );
    assert_eq!(after["disable_at"], Value::Null);
}

/// Sparse traffic: the only failure fell before the warning lead, and nothing came until
/// after `disable_at`. The next event is still sent (a try, not a disable without one); its
/// failure raises `disable_scheduled` late, announcing a full lead after itself, and the
/// endpoint stays active until a failed attempt after that time disables it.
#[tokio::test]
async fn a_sparse_streak_is_warned_late_and_disabled_only_by_a_failure_a_lead_after() {
    let stack = Stack::start_with(
        StackOptions::default()
            .set("RETRY_SCHEDULE", "0s")
            .set("DISABLE_AFTER", "4s")
            .set("DISABLE_WARNING_LEAD", "2s"),
    )
    .await;
    let org = org();
    let key = stack.mint_key(&org, None);
    let Watched {
        watcher,
        down,
        down_id,
        ..
    } = watched(&stack, &org, &key, "capy.endpoint.*", 503).await;
    let publish = || async {
        stack
            .publish(
                &org,
                &key,
                json!({"event_type": "order.created", "payload": {}}),
            )
            .await;
    };
    let view = || endpoint_view(&stack, &org, &key, &down_id);
    let now_past = |t: chrono::DateTime<chrono::Utc>, what: &'static str| async move {
        eventually(WAIT, what, || async {
            (chrono::Utc::now() > t).then_some(())
        })
        .await
    };

    publish().await;
    let forecast = eventually(WAIT, "the streak's forecast", || async {
        let v = view().await;
        v["disable_at"].as_str().map(|_| time(&v["disable_at"]))
    })
    .await;
    now_past(forecast, "the forecast passing with no traffic").await;
    assert!(of_type(&watcher, "capy.endpoint.disable_scheduled").is_empty());

    publish().await;
    let (_, late) = first_of_type(&watcher, "capy.endpoint.disable_scheduled").await;
    let l = &late["data"];
    assert_documented("capy.endpoint.disable_scheduled", l);
    let (scheduled_at, deferred) = (time(&l["scheduled_at"]), time(&l["disable_at"]));
    assert!(scheduled_at >= forecast, "{l}");
    assert_eq!(
        deferred - scheduled_at,
        chrono::TimeDelta::seconds(2),
        "{l}"
    );
    assert_eq!(
        down.count(),
        2,
        "the event after the forecast was sent, not dropped"
    );
    let v = view().await;
    assert_eq!(v["is_active"], true, "{v}");
    assert_eq!(
        time(&v["disable_at"]),
        deferred,
        "the views follow the late warning"
    );
    assert!(of_type(&watcher, "capy.endpoint.disabled").is_empty());

    now_past(deferred, "the announced time passing").await;
    publish().await;
    let (_, disabled) = first_of_type(&watcher, "capy.endpoint.disabled").await;
    assert_eq!(
        disabled["data"]["reason"],
        "every attempt failed for 4 seconds"
    );
    assert!(time(&disabled["data"]["disabled_at"]) >= deferred);
    assert_eq!(down.count(), 3, "disabled by a failed attempt");
    assert_eq!(view().await["is_active"], false);
    assert_eq!(
        of_type(&watcher, "capy.endpoint.disable_scheduled").len(),
        1
    );
}

#[test]
fn openapi_documents_every_operational_event_type() {
    let doc: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(capy_tests::workspace_root().join("openapi.yaml"))
            .expect("openapi.yaml"),
    )
    .expect("YAML");
    let documented: Vec<&str> = doc["webhooks"]
        .as_mapping()
        .expect("webhooks")
        .keys()
        .map(|k| k.as_str().expect("name"))
        .collect();
    assert_eq!(documented, operational::TYPES);
    for t in operational::TYPES {
        documented_schema(t);
    }
}

/// The jobs engine's hook: `replay_finished` publishes through the pipeline, to the
/// subscribers only (not the replayed endpoint, though it names `capy.*`), with the
/// documented payload.
#[tokio::test]
async fn replay_finished_is_published_to_subscribers_with_the_documented_payload() {
    let stores = MemoryStores::default();
    let settings = Settings::from_env(true).expect("settings");
    let deps = wiring::memory(
        &stores,
        wiring::policy(&settings),
        Arc::new(LocalCipher::new([7; 32])),
    );
    let now = capy_shared::domain::time::now();
    let endpoint = |url: &str, types: &[&str]| Endpoint {
        event_types: types.iter().map(|t| t.to_string()).collect(),
        ..Endpoint::new(
            EndpointId::new(),
            "org_r",
            url,
            SealedSecret(String::new()),
            now,
        )
    };
    let replayed = endpoint("https://replayed.example", &["capy.*"]);
    let watcher = endpoint("https://watcher.example", &["capy.replay.finished"]);
    let everything = endpoint("https://all.example", &[]);
    for e in [&replayed, &watcher, &everything] {
        deps.endpoints.create(e).await.expect("create");
    }
    let event = operational::replay_finished(
        &deps,
        &operational::ReplaySummary {
            job_id: "job_01HZY8Q4J6W2T7XK3M9N5P0R1S".into(),
            organization_id: "org_r".into(),
            endpoint_id: replayed.id,
            state: "succeeded".into(),
            created_at: now,
            finished_at: now,
            counts: [("matched".to_owned(), 12), ("processed".to_owned(), 12)].into(),
            reason: None,
            event_id: None,
        },
    )
    .await
    .expect("published");
    assert_eq!(event.event_type, "capy.replay.finished");
    assert_eq!(event.targets, vec![watcher.id]);
    let data: Value = serde_json::from_str(&event.payload).expect("JSON");
    assert_documented("capy.replay.finished", &data);
    assert_eq!(data["url"], "https://replayed.example");
    assert_eq!(data["counts"]["matched"], 12);
    let logged = deps
        .events
        .get("org_r", event.id)
        .await
        .expect("get")
        .expect("in the events log");
    assert_eq!(logged.subject_endpoint, Some(replayed.id));
}
