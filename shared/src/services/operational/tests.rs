use std::sync::Arc;

use super::*;
use crate::adapters::eventbridge::MemoryBus;
use crate::adapters::memory::MemoryStores;
use crate::adapters::secrets::LocalCipher;
use crate::domain::delivery::{Delivery, DeliveryState};
use crate::domain::endpoint::SealedSecret;
use crate::domain::endpoint::{DeliveryStats, Outcome};
use crate::ports::{EventQuery, WindowCount};

/// A dead letter marks its delivery failed, tells the operator bus, and raises
/// `capy.delivery.exhausted` to the subscriber (not to the endpoint it is about).
#[tokio::test]
async fn a_dead_letter_reaches_the_operator_bus_and_raises_exhausted() {
    let stores = MemoryStores::default();
    let settings = crate::config::Settings::from_env(true).expect("settings");
    let mut deps = crate::wiring::memory(
        &stores,
        crate::wiring::policy(&settings),
        Arc::new(LocalCipher::new([7; 32])),
    );
    let bus = Arc::new(MemoryBus::default());
    deps.operator_bus = bus.clone();
    let captured = Arc::new(crate::metrics::Captured::default());
    deps.metrics = crate::metrics::Metrics::to(captured.clone());
    let now = time::now();
    let endpoint = |types: &[&str]| Endpoint {
        event_types: types.iter().map(|t| t.to_string()).collect(),
        ..Endpoint::new(
            EndpointId::new(),
            "org_d",
            "https://x.example",
            SealedSecret(String::new()),
            now,
        )
    };
    let dead = endpoint(&["order.created", "capy.*"]);
    let watcher = endpoint(&["capy.delivery.exhausted"]);
    for e in [&dead, &watcher] {
        deps.endpoints.create(e).await.expect("create");
    }
    let event = Event::new("org_d", "order.created", "{}".into(), now);
    deps.events.create(&event).await.expect("event");
    let msg = Delivery::first(&event, dead.id, 3).message();
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some("m-1".into());
    record.body = Some(serde_json::to_string(&msg).expect("json"));
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), "12".into());
    let mut batch = aws_lambda_events::sqs::SqsEvent::default();
    batch.records = vec![record];
    let out = crate::consumers::dead_letter::dead_letter_batch(&deps, batch).await;
    assert!(out.batch_item_failures.is_empty());

    let d = deps
        .deliveries
        .get(dead.id, msg.delivery_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(d.state, DeliveryState::Failed);
    let put = bus.events();
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].detail_type, BUS_DEAD_LETTER);
    assert_eq!(put[0].detail["delivery_id"], msg.delivery_id.to_string());
    assert_eq!(put[0].detail["receives"], "12");
    let q = EventQuery {
        limit: 10,
        event_type: Some(DELIVERY_EXHAUSTED.into()),
        ..Default::default()
    };
    let (raised, _) = deps.events.list("org_d", &q).await.expect("list");
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].targets, vec![watcher.id]);
    assert_eq!(raised[0].subject_endpoint, Some(dead.id));
    // Counted as a delivery failed for good, for the failure-rate alarm.
    let failed: Vec<serde_json::Value> = captured
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .filter(|d: &serde_json::Value| d["function"] == "deliver")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (&failed[0]["outcome"], &failed[0]["Deliveries"]),
        (&serde_json::json!("failed"), &serde_json::json!(1.0))
    );
    assert_eq!(failed[0]["delivery_id"], msg.delivery_id.to_string());
}

/// Transitions whose store update may be a retry of a write whose answer was lost: the
/// event is raised once, neither lost nor doubled.
#[tokio::test]
async fn recovered_and_disabled_survive_a_retried_update() {
    let stores = MemoryStores::default();
    let settings = crate::config::Settings::from_env(true).expect("settings");
    let deps = crate::wiring::memory(
        &stores,
        crate::wiring::policy(&settings),
        Arc::new(LocalCipher::new([7; 32])),
    );
    let now = time::now();
    let endpoint = |types: &[&str]| Endpoint {
        event_types: types.iter().map(|t| t.to_string()).collect(),
        ..Endpoint::new(
            EndpointId::new(),
            "org_t",
            "https://x.example",
            SealedSecret(String::new()),
            now,
        )
    };
    let mut subject = endpoint(&[]);
    subject.stats.failure_streak = FAILING_STREAK + 2;
    subject.stats.failing_since = Some(now - chrono::TimeDelta::hours(1));
    let watcher = endpoint(&["capy.*"]);
    for e in [&subject, &watcher] {
        deps.endpoints.create(e).await.expect("create");
    }
    let raised = |t: &'static str| {
        let deps = &deps;
        async move {
            let q = EventQuery {
                limit: 50,
                event_type: Some(t.into()),
                ..Default::default()
            };
            deps.events.list("org_t", &q).await.expect("list").0.len()
        }
    };
    // Two consumers see the same first success of one streak.
    endpoint_recovered(&deps, &subject, now)
        .await
        .expect("raised");
    endpoint_recovered(&deps, &subject, now + chrono::TimeDelta::seconds(1))
        .await
        .expect("raised");
    assert_eq!(raised(ENDPOINT_RECOVERED).await, 1);

    // The disable update's answer was lost: its retry reads back this very write.
    let reason = "the receiver answered 410 Gone";
    let mut after_own_write = subject.clone();
    after_own_write.is_active = false;
    after_own_write.disabled_reason = Some(reason.into());
    after_own_write.updated_at = now;
    endpoint_disabled(&deps, &after_own_write, reason, now)
        .await
        .expect("raised");
    // The first try of that same write.
    endpoint_disabled(&deps, &subject, reason, now)
        .await
        .expect("raised");
    assert_eq!(raised(ENDPOINT_DISABLED).await, 1);
    // Disabled by someone else before this write: not ours to announce.
    let later = now + chrono::TimeDelta::seconds(5);
    endpoint_disabled(&deps, &after_own_write, reason, later)
        .await
        .expect("nothing to raise");
    assert_eq!(raised(ENDPOINT_DISABLED).await, 1);
}

/// The disabler dies between its write and the publish: the next message for the endpoint
/// within the hour raises `capy.endpoint.disabled`, once, with the disable's time; an owner's
/// disable, or one over an hour old, raises nothing.
#[tokio::test]
async fn a_disable_whose_event_never_appeared_is_raised_by_the_next_message() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let now = time::now();
    let subject = failing_subject(&deps, "org_dis", now).await;
    let at = now - chrono::TimeDelta::minutes(3);
    let reason = "the receiver answered 410 Gone";
    let before = deps
        .endpoints
        .record_outcome(
            "org_dis",
            subject.id,
            Outcome::Disable {
                reason: reason.into(),
                at,
            },
        )
        .await
        .expect("disable")
        .expect("endpoint");
    assert!(before.is_active);
    // ... and the process died here. The next messages find it disabled.
    let disabled = stored_endpoint(&deps, "org_dis", subject.id).await;
    assert_eq!(disabled.stats.disabled_at, Some(at));
    async fn events(deps: &Deps) -> Vec<Event> {
        let q = EventQuery {
            limit: 50,
            event_type: Some(ENDPOINT_DISABLED.into()),
            ..Default::default()
        };
        deps.events.list("org_dis", &q).await.expect("list").0
    }
    disabled_follow_up(&deps, &disabled, now)
        .await
        .expect("follow-up");
    // Another process (no memory of it) finds it stored.
    disabled::forget_disabled_out();
    disabled_follow_up(&deps, &disabled, now)
        .await
        .expect("follow-up");
    let raised = events(&deps).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(
        raised[0].created_at, at,
        "named by the disable, not the message"
    );
    assert_eq!(raised[0].subject_endpoint, Some(subject.id));
    let payload: serde_json::Value = serde_json::from_str(&raised[0].payload).expect("json");
    assert_eq!(payload["reason"], reason);
    assert_eq!(payload["disabled_at"], ts(&at));
    // The disabler's own publish, late, is the same event.
    endpoint_disabled(&deps, &before, reason, at)
        .await
        .expect("raised");
    assert_eq!(events(&deps).await.len(), 1);

    // Disabled over an hour ago, or by its owner: nothing.
    let old = Endpoint {
        stats: DeliveryStats {
            disabled_at: Some(now - DISABLED_FOLLOW_UP - chrono::TimeDelta::seconds(1)),
            ..disabled.stats.clone()
        },
        id: EndpointId::new(),
        ..disabled.clone()
    };
    let by_owner = Endpoint {
        disabled_reason: None,
        id: EndpointId::new(),
        ..disabled.clone()
    };
    for e in [&old, &by_owner] {
        disabled_follow_up(&deps, e, now).await.expect("follow-up");
    }
    assert_eq!(events(&deps).await.len(), 1);
}

/// The endpoint as stored now.
async fn stored_endpoint(deps: &Deps, org: &str, id: EndpointId) -> Endpoint {
    deps.endpoints
        .get(org, id)
        .await
        .expect("get")
        .expect("endpoint")
}

fn memory_deps(stores: &MemoryStores) -> Deps {
    let settings = crate::config::Settings::from_env(true).expect("settings");
    crate::wiring::memory(
        stores,
        crate::wiring::policy(&settings),
        Arc::new(LocalCipher::new([7; 32])),
    )
}

/// A failing endpoint in `org` and a `capy.*` watcher, both stored.
async fn failing_subject(deps: &Deps, org: &str, now: Timestamp) -> Endpoint {
    let mut subject = Endpoint::new(
        EndpointId::new(),
        org,
        "https://x.example",
        SealedSecret(String::new()),
        now,
    );
    subject.stats.failure_streak = FAILING_STREAK + 2;
    subject.stats.failing_since = Some(now - chrono::TimeDelta::hours(1));
    subject.stats.last_failure_at = Some(now);
    let watcher = Endpoint {
        event_types: vec!["capy.*".into()],
        ..Endpoint::new(
            EndpointId::new(),
            org,
            "https://w.example",
            SealedSecret(String::new()),
            now,
        )
    };
    for e in [&subject, &watcher] {
        deps.endpoints.create(e).await.expect("create");
    }
    subject
}

async fn raised_ids(deps: &Deps, org: &str, event_type: &str) -> Vec<EventId> {
    let q = EventQuery {
        limit: 50,
        event_type: Some(event_type.into()),
        ..Default::default()
    };
    let (events, _) = deps.events.list(org, &q).await.expect("list");
    events.into_iter().map(|e| e.id).collect()
}

/// A raiser that claimed `recovered` and died before publishing: the next caller publishes
/// the event the marker names, under that id, and the one after finds it.
#[tokio::test]
async fn a_claim_whose_event_never_appeared_is_published_under_its_id() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let now = time::now();
    let subject = failing_subject(&deps, "org_c", now).await;
    let died = EventId::new();
    let marker = format!(
        "recovered#{}",
        subject
            .stats
            .failing_since
            .expect("since")
            .timestamp_millis()
    );
    let marked = deps
        .markers
        .claim(&subject.id.to_string(), &marker, now, FAILING_DEDUP, died)
        .await
        .expect("claim");
    assert_eq!(marked, Marked::Claimed);

    // The first call publishes it; the second finds it.
    for _ in 0..2 {
        endpoint_recovered(&deps, &subject, now)
            .await
            .expect("raised");
        assert_eq!(
            raised_ids(&deps, "org_c", ENDPOINT_RECOVERED).await,
            vec![died]
        );
    }
}

/// `failing` is raised at any streak past the threshold until the endpoint records it
/// announced (a crash can carry the streak past any one value), and then no more.
#[tokio::test]
async fn failing_is_raised_until_the_endpoint_records_it_announced() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let now = time::now();
    let subject = failing_subject(&deps, "org_f", now).await;
    let org = subject.organization_id.clone();
    let before = deps
        .endpoints
        .record_outcome(&org, subject.id, Outcome::failure(now))
        .await
        .expect("count")
        .expect("endpoint");
    after_failure(&deps, &before, 1, now, now).await;
    let stored = stored_endpoint(&deps, &org, subject.id).await;
    assert!(stored.stats.failing_announced, "{:?}", stored.stats);
    assert_eq!(raised_ids(&deps, &org, ENDPOINT_FAILING).await.len(), 1);

    let before = deps
        .endpoints
        .record_outcome(&org, subject.id, Outcome::failure(now))
        .await
        .expect("count")
        .expect("endpoint");
    after_failure(&deps, &before, 1, now, now).await;
    assert_eq!(raised_ids(&deps, &org, ENDPOINT_FAILING).await.len(), 1);

    // A recovery ends the streak and its announcement; an announcement of an ended streak
    // changes nothing.
    let _ = deps
        .endpoints
        .record_outcome(&org, subject.id, Outcome::RecoveredAfterFailures)
        .await
        .expect("recover");
    let since = stored.stats.failing_since.expect("since");
    let _ = deps
        .endpoints
        .record_outcome(&org, subject.id, Outcome::FailingAnnounced { since })
        .await
        .expect("announce");
    let stored = stored_endpoint(&deps, &org, subject.id).await;
    assert!(!stored.stats.failing_announced, "{:?}", stored.stats);
}

/// The failure that entered the warning lead died before raising `disable_scheduled`: the
/// next failure within the lead raises it, once, and records it announced; later failures
/// of the streak raise nothing more, and a recovery ends the announcement with the streak.
#[tokio::test]
async fn disable_scheduled_is_raised_until_the_endpoint_records_it_announced() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let now = time::now();
    // Inside the lead: disabled at `since + disable_after`, warned from a lead before that.
    let since = now - disable_after(&deps) + lead(&deps) - chrono::TimeDelta::hours(1);
    let mut subject = failing_subject(&deps, "org_ds", since).await;
    subject.stats.failing_since = Some(since);
    subject.stats.failing_announced = true;
    deps.endpoints
        .delete("org_ds", subject.id)
        .await
        .expect("delete");
    deps.endpoints.create(&subject).await.expect("create");
    let org = subject.organization_id.clone();
    let fail = |at: Timestamp| {
        let deps = &deps;
        let org = &org;
        async move {
            deps.endpoints
                .record_outcome(org, subject.id, Outcome::failure(at))
                .await
                .expect("count")
                .expect("endpoint")
        }
    };
    // One failure counted and followed up: how many warnings are out.
    let fail_then_count = |at: Timestamp| {
        let deps = &deps;
        let org = &org;
        let fail = &fail;
        async move {
            let before = fail(at).await;
            after_failure(deps, &before, 1, at, at).await;
            raised_ids(deps, org, ENDPOINT_DISABLE_SCHEDULED)
                .await
                .len()
        }
    };
    // The first failure within the lead is counted, and the process dies.
    let _ = fail(now - chrono::TimeDelta::minutes(30)).await;
    assert_eq!(fail_then_count(now).await, 1);
    let stored = stored_endpoint(&deps, &org, subject.id).await;
    assert_eq!(stored.stats.disable_scheduled_for, Some(since));
    let later = now + chrono::TimeDelta::minutes(5);
    assert_eq!(fail_then_count(later).await, 1);
    // The owner changes the endpoint: the disable clock restarts there, and when failures
    // reach its lead, it gets its own warning.
    let changed = Endpoint {
        description: "edited".into(),
        updated_at: since + chrono::TimeDelta::minutes(30),
        ..stored.clone()
    };
    deps.endpoints
        .save_settings(&changed, stored.updated_at)
        .await
        .expect("owner change");
    let again = later + chrono::TimeDelta::minutes(1);
    assert_eq!(
        fail_then_count(again).await,
        2,
        "a warning for the restarted clock"
    );
    let _ = deps
        .endpoints
        .record_outcome(&org, subject.id, Outcome::RecoveredAfterFailures)
        .await
        .expect("recover");
    let stored = stored_endpoint(&deps, &org, subject.id).await;
    assert_eq!(stored.stats.disable_scheduled_for, None);
}

/// The delivery that opened an `exhausted` window died before publishing: the next one
/// counted in that window publishes the window's event, under its id.
#[tokio::test]
async fn an_exhausted_window_whose_event_never_appeared_is_published_by_the_next() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let now = time::now();
    let subject = failing_subject(&deps, "org_x", now).await;
    let died = EventId::new();
    let opened = deps
        .markers
        .count_in_window(
            &subject.id.to_string(),
            "exhausted",
            now,
            EXHAUSTED_WINDOW,
            died,
        )
        .await
        .expect("count");
    assert_eq!(opened, WindowCount::Opened { previous: None });
    let event = Event::new("org_x", "order.created", "{}".into(), now);
    let d = Delivery::first(&event, subject.id, 3);
    // The first counted delivery, minutes later, publishes it; the second finds it.
    let later = now + chrono::TimeDelta::minutes(7);
    for _ in 0..2 {
        delivery_exhausted(&deps, "deliver", &subject, &d, later)
            .await
            .expect("raised");
        assert_eq!(
            raised_ids(&deps, "org_x", DELIVERY_EXHAUSTED).await,
            vec![died]
        );
    }
    let published = deps
        .events
        .get("org_x", died)
        .await
        .expect("get")
        .expect("event");
    let payload: serde_json::Value = serde_json::from_str(&published.payload).expect("json");
    assert_eq!(
        payload["window_start"],
        ts(&now),
        "the window it was raised for"
    );
    assert_eq!(
        payload["window_end"],
        ts(&time::after(now, EXHAUSTED_WINDOW))
    );
}

/// A marker held by an event this process is publishing right now is left to that
/// publish: no second copy of its messages; once it ends, the next caller checks the store.
#[tokio::test]
async fn a_held_marker_whose_event_this_process_is_publishing_is_left_to_it() {
    let stores = MemoryStores::default();
    let deps = memory_deps(&stores);
    let held = EventId::new();
    let publishing = InFlight::enter(held).expect("not in flight yet");
    let to_send = still_to_send(&deps, "org_i", EventId::new(), Marked::Held(Some(held)))
        .await
        .expect("store");
    assert!(matches!(to_send, ToSend::Sending));
    drop(publishing);
    let to_send = still_to_send(&deps, "org_i", EventId::new(), Marked::Held(Some(held)))
        .await
        .expect("store");
    assert!(matches!(to_send, ToSend::Now(ref g) if g.0 == held));
}
