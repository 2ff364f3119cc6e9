//! The fan-out on the in-memory twins: stopped at its deadline and resumed, and system
//! events' recipients.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::consumers::testkit::*;
use crate::domain::endpoint::Endpoint;
use crate::domain::event::Event;
use crate::domain::ids::DeliveryId;
use crate::domain::time;
use crate::services::publish::publish_event;

fn message(e: &Event) -> FanOutMessage {
    FanOutMessage {
        event_id: e.id,
        organization_id: e.organization_id.clone(),
        sent_through: None,
    }
}

#[tokio::test]
async fn a_fan_out_stopped_at_its_deadline_resumes_with_no_duplicate_and_no_gap() {
    let mut policy = policy();
    policy.fan_out_page_size = 100;
    let w = world_with(policy);
    let mut all = Vec::new();
    for _ in 0..250 {
        all.push(w.endpoint(UNREACHABLE, |e| e).await.0.id);
    }
    all.sort();
    let event = w.event("invoice.paid", r#"{"n":1}"#).await;
    let msg = message(&event);

    // A deadline already past: one page, then it hands over.
    let first = fan_out(&w.deps, &msg, Instant::now())
        .await
        .expect("fan out");
    assert_eq!(first, FanOutProgress::Incomplete(0));
    assert_eq!(w.deps.events.pages(event.id).await.expect("pages").len(), 1);
    assert_eq!(w.stores.queue.sent.lock().expect("lock").len(), 100);

    // The hand-over message says page 0 was sent: the next worker carries on after it.
    let handed_over = FanOutMessage {
        sent_through: Some(0),
        ..msg.clone()
    };
    let resumed = fan_out(
        &w.deps,
        &handed_over,
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .expect("resume");
    assert_eq!(resumed, FanOutProgress::Done(250));

    let pages = w.deps.events.pages(event.id).await.expect("pages");
    assert_eq!(
        pages
            .iter()
            .map(|p| (p.page, p.total, p.last))
            .collect::<Vec<_>>(),
        [(0, 100, false), (1, 200, false), (2, 250, true)],
        "each page written once"
    );
    let paged: Vec<_> = pages.iter().flat_map(|p| p.endpoints.clone()).collect();
    assert_eq!(paged, all);
    assert!(matches!(
        w.deps.events.put_page(&pages[0]).await,
        Err(StoreError::Conflict)
    ));

    // One message per endpoint: nothing sent twice across the hand-over.
    let sent = w.stores.queue.take_sent();
    assert_eq!(sent.len(), 250);
    let mut ids: BTreeMap<EndpointId, BTreeSet<DeliveryId>> = BTreeMap::new();
    for m in sent {
        assert_eq!(m.event_id, event.id);
        ids.entry(m.endpoint_id).or_default().insert(m.delivery_id);
    }
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), all);
    for (ep, set) in &ids {
        assert_eq!(
            set.iter().copied().collect::<Vec<_>>(),
            [DeliveryId::for_event(event.id, *ep)]
        );
    }
    let done = w
        .deps
        .events
        .get(ORG, event.id)
        .await
        .expect("get")
        .expect("event");
    assert_eq!(done.fan_out.state, FanOutState::Done);
    assert_eq!(done.fan_out.endpoints, 250);

    // A redelivered message finds the fan-out done and sends nothing.
    let late = fan_out(&w.deps, &msg, Instant::now() + Duration::from_secs(60))
        .await
        .expect("again");
    assert_eq!(late, FanOutProgress::Done(250));
    assert!(w.stores.queue.take_sent().is_empty());
}

#[tokio::test]
async fn a_fan_out_message_before_its_event_exists_reports_it_missing() {
    let w = world();
    let event = Event::new(ORG, "invoice.paid", "{}".into(), time::now());
    let got = fan_out(&w.deps, &message(&event), Instant::now())
        .await
        .expect("fan out");
    assert_eq!(got, FanOutProgress::EventMissing);
    assert!(w.stores.queue.take_sent().is_empty());
}

#[tokio::test]
async fn a_system_event_never_reaches_its_subject_nor_catch_all_subscribers() {
    let w = world();
    let with = |types: &[&str]| {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        move |e: Endpoint| Endpoint {
            event_types: types,
            ..e
        }
    };
    let subject = w.endpoint(UNREACHABLE, with(&["capy.*"])).await.0.id;
    w.endpoint(UNREACHABLE, with(&[])).await;
    w.endpoint(UNREACHABLE, with(&["*"])).await;
    w.endpoint(UNREACHABLE, with(&["invoice.*"])).await;
    let wildcard = w.endpoint(UNREACHABLE, with(&["capy.*"])).await.0.id;
    let named = w
        .endpoint(UNREACHABLE, with(&["capy.endpoint.disabled"]))
        .await
        .0
        .id;
    let mut expected = vec![wildcard, named];
    expected.sort();
    let system = || Event {
        subject_endpoint: Some(subject),
        ..Event::new(ORG, "capy.endpoint.disabled", "{}".into(), time::now())
    };

    // Inline (six endpoints, two matching).
    let p = publish_event(&w.deps, system()).await.expect("publish");
    let sent: Vec<_> = w
        .stores
        .queue
        .take_sent()
        .iter()
        .map(|m| m.endpoint_id)
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(p.event.targets, expected);

    // Through the fan-out consumer's path.
    let e = system();
    w.deps.events.create(&e).await.expect("event");
    let done = fan_out(
        &w.deps,
        &message(&e),
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .expect("fan out");
    assert_eq!(done, FanOutProgress::Done(2));
    let sent: Vec<_> = w
        .stores
        .queue
        .take_sent()
        .iter()
        .map(|m| m.endpoint_id)
        .collect();
    assert_eq!(sent, expected);
}
