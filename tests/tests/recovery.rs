//! Recovery after an outage, on the real stack (moto, `capy serve`, loopback receivers, the
//! official verification libraries): replay jobs over a time range, resend, test events.

use std::collections::HashMap;
use std::time::Duration;

use capy_tests::{
    Receiver, Reply, Stack, StackOptions, eventually, verify_with_official_libraries,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Two attempts a delivery, 100 ms apart: a receiver that is down fails them fast.
fn opts() -> StackOptions {
    StackOptions::default().set("RETRY_SCHEDULE", "0s,100ms")
}

struct Org {
    id: String,
    key: String,
}

impl Org {
    fn new(stack: &Stack, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            key: stack.mint_key(id, None),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/organizations/{}{rest}", self.id)
    }
}

async fn call(
    stack: &Stack,
    org: &Org,
    method: &str,
    rest: &str,
    body: Option<Value>,
) -> (u16, Value) {
    stack
        .call(method, &org.path(rest), Some(&org.key), body)
        .await
}

/// Publishes `n` events of `event_type` and returns their delivery ids to `endpoint`.
async fn publish(
    stack: &Stack,
    org: &Org,
    endpoint: &str,
    event_type: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let out = stack
            .publish(
                &org.id,
                &org.key,
                json!({ "event_type": event_type, "payload": { "n": i } }),
            )
            .await;
        let (status, event) = call(
            stack,
            org,
            "GET",
            &format!("/events/{}", out["event_id"].as_str().expect("event id")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{event}");
        let d = event["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["endpoint_id"] == endpoint)
            .unwrap_or_else(|| panic!("no delivery to {endpoint} in {event}"))
            .clone();
        ids.push(d["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// An endpoint whose receiver was down for `n` `order.created` deliveries, all failed now,
/// and is back up (answering 200): what a replay recovers.
struct Outage {
    receiver: Receiver,
    endpoint: String,
    secret: String,
    /// A minute before the first of them: a replay window's start.
    since: String,
    ids: Vec<String>,
}

async fn outage(stack: &Stack, org: &Org, n: usize) -> Outage {
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let (endpoint, secret) = stack
        .create_endpoint(&org.id, &org.key, json!({ "url": receiver.url }))
        .await;
    let window_start = since(1);
    let ids = publish(stack, org, &endpoint, "order.created", n).await;
    all_in(stack, org, &endpoint, &ids, "failed").await;
    receiver.answer(Reply::Status(200));
    Outage {
        receiver,
        endpoint,
        secret,
        since: window_start,
        ids,
    }
}

/// Waits until every one of `ids` is in `state`.
async fn all_in(stack: &Stack, org: &Org, endpoint: &str, ids: &[String], state: &str) {
    eventually(
        WAIT,
        &format!("{} deliveries {state}", ids.len()),
        || async {
            for id in ids {
                let d = stack.delivery(&org.id, &org.key, endpoint, id).await;
                if d["state"] != state {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

async fn job(stack: &Stack, org: &Org, id: &str) -> Value {
    let (status, body) = call(stack, org, "GET", &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["job"].clone()
}

async fn job_ends(stack: &Stack, org: &Org, id: &str) -> Value {
    eventually(WAIT, &format!("job {id} to end"), || async {
        let j = job(stack, org, id).await;
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
    .await
}

fn since(minutes_ago: i64) -> String {
    capy_shared::domain::time::format(
        &(capy_shared::domain::time::now() - chrono::TimeDelta::minutes(minutes_ago)),
    )
}

/// What `receiver` got after its first `skip` requests, by `webhook-id`.
fn by_webhook_id(receiver: &Receiver, skip: usize) -> HashMap<String, Vec<capy_tests::Received>> {
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for r in receiver.received().into_iter().skip(skip) {
        out.entry(r.header("webhook-id").to_owned())
            .or_default()
            .push(r);
    }
    out
}

#[tokio::test]
async fn a_replay_after_an_outage_sends_each_failed_delivery_once_more_with_its_webhook_id() {
    let stack = Stack::start_with(opts()).await;
    let org = Org::new(&stack, "org_replay");
    let receiver = Receiver::scripted(vec![], Reply::Status(503)).await;
    let (endpoint, secret) = stack
        .create_endpoint(&org.id, &org.key, json!({ "url": receiver.url }))
        .await;
    let window_start = since(1);
    let ids = publish(&stack, &org, &endpoint, "order.created", 6).await;
    all_in(&stack, &org, &endpoint, &ids, "failed").await;

    // The receiver comes back.
    receiver.answer(Reply::Status(200));
    let before = receiver.count();
    let replay = format!("/webhook-endpoints/{endpoint}/replay");
    let (status, dry) = call(
        &stack,
        &org,
        "POST",
        &replay,
        Some(json!({ "since": window_start, "dry_run": true })),
    )
    .await;
    assert_eq!(
        (status, dry.clone()),
        (200, json!({ "matched": 6 })),
        "{dry}"
    );
    // A dry run changes nothing.
    let (_, jobs) = call(&stack, &org, "GET", "/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]));
    assert_eq!(
        stack.delivery(&org.id, &org.key, &endpoint, &ids[0]).await["state"],
        "failed"
    );

    let (status, started) = call(
        &stack,
        &org,
        "POST",
        &replay,
        Some(json!({ "since": window_start })),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let j = &started["job"];
    assert!(j["id"].as_str().expect("id").starts_with("job_"), "{j}");
    assert_eq!(j["kind"], "replay");
    assert_eq!(j["organization_id"], org.id);
    assert_eq!(j["endpoint_id"], endpoint);
    assert_eq!(j["state"], "queued");
    assert_eq!(j["matched"], 6);
    assert_eq!(j["params"]["states"], json!(["failed"]));
    for field in [
        "created_at",
        "updated_at",
        "finished_at",
        "error",
        "processed",
    ] {
        assert!(j.get(field).is_some(), "{field} missing from {j}");
    }
    let id = j["id"].as_str().expect("id").to_owned();
    let done = job_ends(&stack, &org, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (done["processed"].clone(), done["matched"].clone()),
        (json!(6), json!(6))
    );
    assert!(
        done["finished_at"].is_string() && done["error"].is_null(),
        "{done}"
    );

    all_in(&stack, &org, &endpoint, &ids, "delivered").await;
    let got = by_webhook_id(&receiver, before);
    let mut sent: Vec<&String> = got.keys().collect();
    sent.sort();
    let mut want: Vec<&String> = ids.iter().collect();
    want.sort();
    assert_eq!(
        sent, want,
        "each replayed delivery keeps its id as webhook-id"
    );
    for (id, rs) in &got {
        assert_eq!(
            rs.len(),
            1,
            "{id} was sent {} times by the replay",
            rs.len()
        );
        verify_with_official_libraries(&secret, &rs[0])
            .expect("the official libraries verify the replayed delivery");
    }
    // Like a manual retry: a fresh schedule (two attempts here) on top of the two spent.
    let d = stack.delivery(&org.id, &org.key, &endpoint, &ids[0]).await;
    assert_eq!(
        (d["attempts"].clone(), d["max_attempts"].clone()),
        (json!(3), json!(4)),
        "{d}"
    );
    let (_, listed) = call(&stack, &org, "GET", "/jobs", None).await;
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    assert!(listed["next_cursor"].is_null());
}

/// The dry run's count for `body` over the window from `since`.
async fn dry_run(stack: &Stack, org: &Org, replay: &str, since: &str, mut body: Value) -> u64 {
    body["since"] = json!(since);
    body["dry_run"] = json!(true);
    let (status, out) = call(stack, org, "POST", replay, Some(body)).await;
    assert_eq!(status, 200, "{out}");
    out["matched"].as_u64().expect("matched")
}

#[tokio::test]
async fn replays_filter_by_event_type_and_state_and_refuse_bad_windows() {
    let stack = Stack::start_with(opts()).await;
    let org = Org::new(&stack, "org_filters");
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let (endpoint, _) = stack
        .create_endpoint(&org.id, &org.key, json!({ "url": receiver.url }))
        .await;
    let window_start = since(1);
    let invoices = publish(&stack, &org, &endpoint, "invoice.paid", 3).await;
    let users = publish(&stack, &org, &endpoint, "user.created", 2).await;
    all_in(
        &stack,
        &org,
        &endpoint,
        &[invoices.clone(), users.clone()].concat(),
        "failed",
    )
    .await;
    receiver.answer(Reply::Status(200));
    let delivered = publish(&stack, &org, &endpoint, "invoice.created", 1).await;
    all_in(&stack, &org, &endpoint, &delivered, "delivered").await;

    let replay = format!("/webhook-endpoints/{endpoint}/replay");
    let count = |body: Value| dry_run(&stack, &org, &replay, &window_start, body);
    assert_eq!(count(json!({})).await, 5);
    assert_eq!(count(json!({ "event_types": ["invoice.*"] })).await, 3);
    assert_eq!(count(json!({ "event_types": ["user.created"] })).await, 2);
    assert_eq!(count(json!({ "states": ["delivered"] })).await, 1);
    assert_eq!(
        count(json!({ "states": ["failed", "delivered"], "event_types": ["invoice.*"] })).await,
        4
    );

    // Bad requests: 400 {"error"}, and no job.
    let now = capy_shared::domain::time::format(&capy_shared::domain::time::now());
    for (body, why) in [
        (json!({ "since": now, "until": now }), "since"),
        (json!({ "since": since(0), "until": since(5) }), "since"),
        (json!({ "since": since(60 * 24 * 40) }), "retention"),
        (
            json!({ "since": window_start, "states": ["pending"] }),
            "states",
        ),
        (
            json!({ "since": window_start, "states": ["lost"] }),
            "states",
        ),
        (json!({ "since": window_start, "states": [] }), "states"),
        (json!({ "since": "yesterday" }), "since"),
        (
            json!({ "since": window_start, "event_types": ["bad type"] }),
            "event_types",
        ),
        (json!({ "since": window_start, "surprise": 1 }), "surprise"),
        (json!({}), "since"),
    ] {
        let (status, out) = call(&stack, &org, "POST", &replay, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {out}");
        assert!(
            out["error"].as_str().expect("error").contains(why),
            "{body} → {out}"
        );
    }
    let (status, _) = call(
        &stack,
        &org,
        "POST",
        "/webhook-endpoints/ep_01JZ0000000000000000000000/replay",
        Some(json!({ "since": window_start })),
    )
    .await;
    assert_eq!(status, 404);
    let (_, jobs) = call(&stack, &org, "GET", "/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]));

    let before = receiver.count();
    let (status, started) = call(
        &stack,
        &org,
        "POST",
        &replay,
        Some(json!({ "since": window_start, "event_types": ["invoice.*"] })),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let done = job_ends(&stack, &org, started["job"]["id"].as_str().expect("id")).await;
    assert_eq!(
        (done["state"].clone(), done["processed"].clone()),
        (json!("succeeded"), json!(3)),
        "{done}"
    );
    all_in(&stack, &org, &endpoint, &invoices, "delivered").await;
    let got = by_webhook_id(&receiver, before);
    let mut sent: Vec<&String> = got.keys().collect();
    sent.sort();
    let mut want: Vec<&String> = invoices.iter().collect();
    want.sort();
    assert_eq!(sent, want);
    for u in &users {
        assert_eq!(
            stack.delivery(&org.id, &org.key, &endpoint, u).await["state"],
            "failed"
        );
    }

    // A disabled endpoint must be re-enabled first.
    let (status, _) = call(
        &stack,
        &org,
        "PATCH",
        &format!("/webhook-endpoints/{endpoint}"),
        Some(json!({ "is_active": false })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, out) = call(
        &stack,
        &org,
        "POST",
        &replay,
        Some(json!({ "since": window_start })),
    )
    .await;
    assert_eq!(status, 400, "{out}");
    assert!(
        out["error"].as_str().expect("error").contains("disabled"),
        "{out}"
    );
}

/// Small pages with a pause between them, so a job is caught mid-way.
fn paced(page: &str, pause: &str) -> StackOptions {
    opts()
        .set("REPLAY_PAGE_SIZE", page)
        .set("REPLAY_PAGE_INTERVAL", pause)
        // A delivery written by a run that died before its send arrives through the sweeper.
        .set("SWEEP_GRACE", "10s")
}

#[tokio::test]
async fn a_job_killed_mid_way_resumes_and_sends_no_delivery_twice() {
    let mut stack = Stack::start_with(paced("3", "300ms")).await;
    let org = Org::new(&stack, "org_kill");
    let Outage {
        receiver,
        endpoint,
        secret,
        since: window_start,
        ids,
    } = outage(&stack, &org, 15).await;
    let before = receiver.count();

    let (status, started) = call(
        &stack,
        &org,
        "POST",
        &format!("/webhook-endpoints/{endpoint}/replay"),
        Some(json!({ "since": window_start })),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["job"]["id"].as_str().expect("id").to_owned();
    let mid = eventually(WAIT, "the job to be mid-way", || async {
        let j = job(&stack, &org, &id).await;
        (j["state"] == "running" && j["processed"].as_u64() >= Some(3)).then_some(j)
    })
    .await;
    stack.kill();
    let at_kill = mid["processed"].as_u64().expect("processed");
    assert!(at_kill < 15, "{mid}");
    stack.spawn().await;

    let done = job_ends(&stack, &org, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["processed"], 15, "{done}");
    all_in(&stack, &org, &endpoint, &ids, "delivered").await;
    // Sent again exactly once each: one attempt on top of the two spent, for every one.
    for d in &ids {
        let d = stack.delivery(&org.id, &org.key, &endpoint, d).await;
        assert_eq!(d["attempts"], 3, "{d}");
    }
    let got = by_webhook_id(&receiver, before);
    assert_eq!(got.len(), 15);
    for rs in got.values() {
        verify_with_official_libraries(&secret, &rs[0]).expect("verifies");
    }
    // A send cut off by the kill is sent again by its consumer (at least once), never by the job.
    let duplicates: usize = got.values().map(|rs| rs.len() - 1).sum();
    println!(
        "killed at {at_kill}/15 processed; duplicate sends from the killed consumer: {duplicates}"
    );
}

#[tokio::test]
async fn a_concurrent_replay_is_409_cancel_stops_the_job_and_jobs_are_per_organization() {
    let stack = Stack::start_with(paced("2", "1s")).await;
    let org = Org::new(&stack, "org_cancel");
    let other = Org::new(&stack, "org_other");
    let Outage {
        // Kept alive: the replay's sends reach it.
        receiver: _receiver,
        endpoint,
        secret: _,
        since: window_start,
        ids,
    } = outage(&stack, &org, 10).await;

    let replay = format!("/webhook-endpoints/{endpoint}/replay");
    let body = json!({ "since": window_start });
    let (status, started) = call(&stack, &org, "POST", &replay, Some(body.clone())).await;
    assert_eq!(status, 202, "{started}");
    let id = started["job"]["id"].as_str().expect("id").to_owned();
    let (status, out) = call(&stack, &org, "POST", &replay, Some(body.clone())).await;
    assert_eq!(status, 409, "{out}");
    assert!(out["error"].is_string());

    // Another organization sees none of it.
    for (method, rest) in [
        ("GET", format!("/jobs/{id}")),
        ("POST", format!("/jobs/{id}/cancel")),
    ] {
        let (status, out) = call(&stack, &other, method, &rest, None).await;
        assert_eq!(status, 404, "{method} {rest}: {out}");
    }
    let (_, theirs) = call(&stack, &other, "GET", "/jobs", None).await;
    assert_eq!(theirs["jobs"], json!([]));
    let (status, _) = stack
        .call(
            "GET",
            &org.path(&format!("/jobs/{id}")),
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = call(&stack, &org, "GET", "/jobs/job_nope", None).await;
    assert_eq!(status, 404);

    let mid = eventually(WAIT, "the first page", || async {
        let j = job(&stack, &org, &id).await;
        (j["processed"].as_u64() >= Some(2)).then_some(j)
    })
    .await;
    assert_eq!(mid["state"], "running", "{mid}");
    let (status, canceled) = call(&stack, &org, "POST", &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["job"]["state"], "canceled");
    assert!(canceled["job"]["finished_at"].is_string());
    let p = canceled["job"]["processed"].as_u64().expect("processed");
    assert!(p < 10, "{canceled}");
    // Cancelling again answers the same; the job stays cancelled.
    let (status, again) = call(&stack, &org, "POST", &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(
        (status, again["job"]["state"].clone()),
        (200, json!("canceled"))
    );

    // Its slot is free: a new replay takes the rest, and nothing is sent twice across both.
    let (status, second) = call(&stack, &org, "POST", &replay, Some(body)).await;
    assert_eq!(status, 202, "{second}");
    let rest = second["job"]["matched"].as_u64().expect("matched");
    assert!(
        rest + p <= 10 && rest + p + 2 >= 10,
        "cancelled at {p}, the rest is {rest}"
    );
    let done = job_ends(&stack, &org, second["job"]["id"].as_str().expect("id")).await;
    assert_eq!(
        (done["state"].clone(), done["processed"].as_u64()),
        (json!("succeeded"), Some(rest))
    );
    assert_eq!(job(&stack, &org, &id).await["state"], "canceled");
    all_in(&stack, &org, &endpoint, &ids, "delivered").await;
    for d in &ids {
        assert_eq!(
            stack.delivery(&org.id, &org.key, &endpoint, d).await["attempts"],
            3
        );
    }
    let (_, listed) = call(&stack, &org, "GET", "/jobs?limit=1", None).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1));
    let cursor = listed["next_cursor"].as_str().expect("a second page");
    let (_, page2) = call(
        &stack,
        &org,
        "GET",
        &format!("/jobs?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(page2["jobs"][0]["id"], id.as_str());
    assert!(page2["next_cursor"].is_null());
}

/// Replays of one endpoint requested at once: one job runs, the others are 409 and leave
/// no job behind (a transaction rolled back by moto once left jobs stuck in `queued`).
#[tokio::test]
async fn replays_requested_at_once_start_one_job_and_leave_no_other() {
    // One delivery a page, a second between pages: the job outlasts the requests by seconds.
    let stack = Stack::start_with(paced("1", "1s")).await;
    let org = Org::new(&stack, "org_race");
    let Outage {
        // Kept alive: the replay's sends reach it.
        receiver: _receiver,
        endpoint,
        secret: _,
        since: window_start,
        ids,
    } = outage(&stack, &org, 6).await;

    let replay = format!("/webhook-endpoints/{endpoint}/replay");
    let body = json!({ "since": window_start });
    let answers = futures::future::join_all(
        (0..6).map(|_| call(&stack, &org, "POST", &replay, Some(body.clone()))),
    )
    .await;
    let mut started = Vec::new();
    for (status, out) in &answers {
        match status {
            202 => started.push(out["job"]["id"].as_str().expect("id").to_owned()),
            409 => assert!(out["error"].is_string(), "{out}"),
            _ => panic!("{status}: {out}"),
        }
    }
    assert_eq!(started.len(), 1, "one job at a time: {answers:?}");
    let (_, listed) = call(&stack, &org, "GET", "/jobs", None).await;
    let listed: Vec<&str> = listed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, started, "the refused requests left no job");
    let done = job_ends(&stack, &org, &started[0]).await;
    assert_eq!(
        (done["state"].clone(), done["processed"].as_u64()),
        (json!("succeeded"), Some(6))
    );
    all_in(&stack, &org, &endpoint, &ids, "delivered").await;
}

#[tokio::test]
async fn resend_to_a_new_endpoint_and_test_events() {
    let stack = Stack::start_with(opts()).await;
    let org = Org::new(&stack, "org_resend");
    let a = Receiver::start().await;
    let (ep_a, secret_a) = stack
        .create_endpoint(
            &org.id,
            &org.key,
            json!({ "url": a.url, "event_types": ["order.*"] }),
        )
        .await;
    let published = stack
        .publish(
            &org.id,
            &org.key,
            json!({ "event_type": "order.created", "payload": { "n": 1 } }),
        )
        .await;
    let event_id = published["event_id"].as_str().expect("event").to_owned();
    eventually(WAIT, "the first delivery", || async {
        (a.count() == 1).then_some(())
    })
    .await;

    // An endpoint created after the event, subscribed to something else.
    let b = Receiver::start().await;
    let (ep_b, secret_b) = stack
        .create_endpoint(
            &org.id,
            &org.key,
            json!({ "url": b.url, "event_types": ["user.*"] }),
        )
        .await;
    let resend = format!("/events/{event_id}/deliveries");
    let (status, out) = call(
        &stack,
        &org,
        "POST",
        &resend,
        Some(json!({ "endpoint_id": ep_b })),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let d = &out["delivery"];
    assert_eq!(
        (
            d["endpoint_id"].clone(),
            d["event_id"].clone(),
            d["event_type"].clone()
        ),
        (json!(ep_b), json!(event_id), json!("order.created"))
    );
    assert_eq!(d["payload"], json!({ "n": 1 }));
    let id_b = d["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the resend", || async {
        (b.count() == 1).then_some(())
    })
    .await;
    let r = &b.received()[0];
    assert_eq!(r.header("webhook-id"), id_b);
    verify_with_official_libraries(&secret_b, r).expect("verifies");
    stack.settled(&org.id, &org.key, &ep_b, &id_b, WAIT).await;
    // Again: the same delivery is retried (same id).
    let (status, again) = call(
        &stack,
        &org,
        "POST",
        &resend,
        Some(json!({ "endpoint_id": ep_b })),
    )
    .await;
    assert_eq!(
        (status, again["delivery"]["id"].clone()),
        (202, json!(id_b))
    );
    eventually(WAIT, "the second resend", || async {
        (b.count() == 2).then_some(())
    })
    .await;
    assert_eq!(b.received()[1].header("webhook-id"), id_b);
    // The event page lists the new recipient.
    let (_, event) = call(&stack, &org, "GET", &format!("/events/{event_id}"), None).await;
    assert!(
        event["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .any(|d| d["endpoint_id"] == ep_b),
        "{event}"
    );
    for (body, status) in [
        // A malformed id is no such endpoint, as in a path.
        (json!({ "endpoint_id": "nope" }), 404),
        (json!({ "endpoint_id": 7 }), 400),
        (json!({}), 400),
        (
            json!({ "endpoint_id": "ep_01JZ0000000000000000000000" }),
            404,
        ),
    ] {
        let (s, out) = call(&stack, &org, "POST", &resend, Some(body.clone())).await;
        assert_eq!(s, status, "{body} → {out}");
    }
    let (s, _) = call(
        &stack,
        &org,
        "POST",
        "/events/evt_01JZ0000000000000000000000/deliveries",
        Some(json!({ "endpoint_id": ep_b })),
    )
    .await;
    assert_eq!(s, 404);
    let other = Org::new(&stack, "org_resend_other");
    let (s, _) = call(
        &stack,
        &other,
        "POST",
        &format!("/events/{event_id}/deliveries"),
        Some(json!({ "endpoint_id": ep_b })),
    )
    .await;
    assert_eq!(s, 404);

    // A test event: capy.ping to that endpoint only, signed, in the history and the events log.
    let before = a.count();
    let (status, out) = call(
        &stack,
        &org,
        "POST",
        &format!("/webhook-endpoints/{ep_a}/test"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{out}");
    assert_eq!(out["delivery"]["event_type"], "capy.ping");
    assert_eq!(out["delivery"]["payload"], json!({ "success": true }));
    let test_id = out["delivery"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the test event", || async {
        (a.count() == before + 1).then_some(())
    })
    .await;
    let r = &a.received()[before];
    verify_with_official_libraries(&secret_a, r).expect("the test event verifies");
    let body: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        (body["type"].clone(), body["data"].clone()),
        (json!("capy.ping"), json!({ "success": true }))
    );
    assert_eq!(r.header("webhook-id"), test_id);
    assert_eq!(b.count(), 2, "the test event went to its endpoint only");
    let settled = stack
        .settled(&org.id, &org.key, &ep_a, &test_id, WAIT)
        .await;
    assert_eq!(settled["state"], "delivered");
    let (_, log) = call(&stack, &org, "GET", "/events?event_type=capy.ping", None).await;
    assert_eq!(log["events"].as_array().map(Vec::len), Some(1), "{log}");
    let (_, history) = call(
        &stack,
        &org,
        "GET",
        &format!("/webhook-endpoints/{ep_a}/deliveries"),
        None,
    )
    .await;
    assert!(
        history["deliveries"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["id"] == test_id.as_str())
    );

    let (status, out) = call(
        &stack,
        &org,
        "POST",
        &format!("/webhook-endpoints/{ep_a}/test"),
        Some(json!({ "event_type": "order.test", "payload": { "x": 1 } })),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    assert_eq!(
        (
            out["delivery"]["event_type"].clone(),
            out["delivery"]["payload"].clone()
        ),
        (json!("order.test"), json!({ "x": 1 }))
    );
    for body in [
        json!({ "event_type": "bad type" }),
        json!({ "extra": 1 }),
        json!({ "event_type": null }),
        // Only capy.ping among the system's own types.
        json!({ "event_type": "capy.endpoint.disabled" }),
    ] {
        let (s, out) = call(
            &stack,
            &org,
            "POST",
            &format!("/webhook-endpoints/{ep_a}/test"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 400, "{body} → {out}");
    }
    // Event types under capy. are the system's own.
    let (s, out) = call(
        &stack,
        &org,
        "POST",
        "/events",
        Some(json!({ "event_type": "capy.anything", "payload": {} })),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    // A disabled endpoint takes no test event.
    let (s, _) = call(
        &stack,
        &org,
        "PATCH",
        &format!("/webhook-endpoints/{ep_b}"),
        Some(json!({ "is_active": false })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, out) = call(
        &stack,
        &org,
        "POST",
        &format!("/webhook-endpoints/{ep_b}/test"),
        None,
    )
    .await;
    assert_eq!(s, 400, "{out}");
}

/// `capy` with the stack's environment and `args`: (exit success, stdout, stderr).
async fn capy(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(capy_tests::capy_bin())
        .args(args)
        .envs(&stack.env)
        .output()
        .await
        .expect("capy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn capy_replay_prints_the_count_follows_the_job_and_capy_jobs_shows_it() {
    let stack = Stack::start_with(opts()).await;
    let org = Org::new(&stack, "org_cli");
    let Outage {
        // Kept alive: the replay's sends reach it.
        receiver: _receiver,
        endpoint,
        secret: _,
        since: _,
        ids,
    } = outage(&stack, &org, 3).await;
    let api = [
        "--api-url",
        stack.base.as_str(),
        "--key",
        org.key.as_str(),
        "--org",
        org.id.as_str(),
    ];
    let replay = |extra: &'static [&'static str]| {
        let mut args = vec!["replay"];
        args.extend(api);
        args.extend([
            "--endpoint",
            endpoint.as_str(),
            "--since",
            "10m",
            "--state",
            "failed",
        ]);
        args.extend(extra);
        args
    };
    let (ok, out, err) = capy(&stack, &replay(&["--dry-run"])).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out, "matched: 3\n");
    let (_, jobs) = call(&stack, &org, "GET", "/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]), "a dry run starts nothing");

    let (ok, out, err) = capy(&stack, &replay(&["--event-type", "order.*"])).await;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("matched: 3\njob: job_"), "{out}");
    assert!(out.ends_with("succeeded: 3 processed\n"), "{out}");
    assert!(err.contains("3/3"), "the progress bar: {err}");
    let job_id = out
        .lines()
        .find_map(|l| l.strip_prefix("job: "))
        .expect("job id")
        .to_owned();
    all_in(&stack, &org, &endpoint, &ids, "delivered").await;

    let mut list = vec!["jobs", "list"];
    list.extend(api);
    let (ok, out, err) = capy(&stack, &list).await;
    assert!(ok, "{err}");
    assert!(out.contains(&job_id) && out.contains("succeeded"), "{out}");
    // A second job (nothing failed is left: it matches none), then the list a page at a time.
    let (ok, out, err) = capy(&stack, &replay(&[])).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(
            "matched: 0
"
        ),
        "{out}"
    );
    let mut paged = list.clone();
    paged.extend(["--limit", "1"]);
    let (ok, first_page, err) = capy(&stack, &paged).await;
    assert!(ok, "{err}");
    assert_eq!(first_page.lines().count(), 1, "{first_page}");
    assert!(!first_page.contains(&job_id), "newest first: {first_page}");
    let cursor = err
        .lines()
        .find_map(|l| l.split_once("--cursor ").map(|(_, c)| c.trim().to_owned()))
        .unwrap_or_else(|| panic!("the next page's command: {err}"));
    paged.extend(["--cursor", cursor.as_str()]);
    let (ok, second_page, err) = capy(&stack, &paged).await;
    assert!(ok, "{err}");
    assert!(second_page.starts_with(&job_id), "{second_page}");
    assert!(!err.contains("--cursor"), "the last page: {err}");
    let mut show = vec!["jobs", "show"];
    show.extend(api);
    show.push(&job_id);
    let (ok, out, err) = capy(&stack, &show).await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (shown["state"].clone(), shown["processed"].clone()),
        (json!("succeeded"), json!(3))
    );
    // Cancelling an ended job shows it as it is (cancel is idempotent).
    let mut cancel = vec!["jobs", "cancel"];
    cancel.extend(api);
    cancel.push(&job_id);
    let (ok, out, err) = capy(&stack, &cancel).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("{job_id} succeeded\n"));
    // Without --key, an operator with the table's access gets a key minted for the command
    // and revoked when it ends: the job is shown the same, and no key of the org stays live.
    let keys_before = stack.dump_table().await.matches("KEY#").count();
    let (ok, out, err) = capy(
        &stack,
        &[
            "jobs",
            "show",
            "--api-url",
            stack.base.as_str(),
            "--org",
            org.id.as_str(),
            &job_id,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let keyless: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(keyless, shown);
    let dump = stack.dump_table().await;
    assert_eq!(
        dump.matches("KEY#").count(),
        keys_before + 1,
        "one key minted"
    );
    assert_eq!(
        dump.matches("\"revoked_at\": S(").count(),
        1,
        "the minted key is revoked: {dump}"
    );
    // A bad window is the API's 400, and a non-zero exit.
    let mut bad = vec!["replay"];
    bad.extend(api);
    bad.extend([
        "--endpoint",
        endpoint.as_str(),
        "--since",
        "0s",
        "--until",
        "10m",
    ]);
    let (ok, _, err) = capy(&stack, &bad).await;
    assert!(!ok && err.contains("400"), "{err}");
}
