//! Publish on the in-memory twins: inline fan-out up to `INLINE_FAN_OUT` endpoints, the
//! fan-out consumer beyond, and idempotency keys.

use super::*;
use crate::consumers::testkit::*;
use crate::domain::endpoint::Endpoint;
use crate::domain::event::FanOutState;
use crate::domain::ids::EndpointId;
use crate::domain::time;
use crate::ports::EventQuery;

fn request(key: Option<&str>, payload: &str) -> PublishRequest {
    PublishRequest {
        event_type: "invoice.paid".into(),
        payload: payload.into(),
        idempotency_key: key.map(str::to_owned),
    }
}

/// `n` endpoints receiving `invoice.paid`, in id order.
async fn subscribers(w: &World, n: usize) -> Vec<EndpointId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(w.endpoint(UNREACHABLE, |e| e).await.0.id);
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn up_to_ten_matching_endpoints_fan_out_inside_the_request() {
    let w = world();
    let targets = subscribers(&w, INLINE_FAN_OUT).await;
    // Endpoints that do not match cost nothing and receive nothing.
    w.endpoint(UNREACHABLE, |e| Endpoint {
        event_types: vec!["customer.*".into()],
        ..e
    })
    .await;
    w.endpoint(UNREACHABLE, |e| Endpoint {
        is_active: false,
        ..e
    })
    .await;

    let p = publish(&w.deps, ORG, &request(None, r#"{"a":1}"#), time::now())
        .await
        .expect("publish");
    let expected: Vec<DeliveryId> = targets
        .iter()
        .map(|ep| DeliveryId::for_event(p.event.id, *ep))
        .collect();
    assert_eq!(p.delivery_ids, expected, "deterministic, in endpoint order");
    let sent = w.stores.queue.take_sent();
    assert_eq!(
        sent.iter().map(|m| m.delivery_id).collect::<Vec<_>>(),
        expected
    );
    assert!(
        sent.iter()
            .all(|m| m.event_id == p.event.id && m.organization_id == ORG)
    );
    assert_eq!(
        sent.iter().map(|m| m.endpoint_id).collect::<Vec<_>>(),
        targets
    );
    assert!(w.stores.queue.take_fan_outs().is_empty());
    assert_eq!(p.event.fan_out.state, FanOutState::Done);
    assert_eq!(p.event.fan_out.endpoints, INLINE_FAN_OUT as u32);
    assert_eq!(
        w.deps.events.get(ORG, p.event.id).await.expect("get"),
        Some(p.event.clone())
    );
    assert!(
        w.stores.deliveries.all().is_empty(),
        "a delivery item is written by its first attempt, not by publish"
    );
}

#[tokio::test]
async fn more_than_ten_matching_endpoints_go_to_the_fan_out_consumer() {
    let w = world();
    subscribers(&w, INLINE_FAN_OUT + 1).await;
    let p = publish(&w.deps, ORG, &request(None, r#"{"a":1}"#), time::now())
        .await
        .expect("publish");
    assert!(p.delivery_ids.is_empty());
    assert!(w.stores.queue.take_sent().is_empty());
    assert_eq!(
        w.stores.queue.take_fan_outs(),
        [FanOutMessage {
            event_id: p.event.id,
            organization_id: ORG.into(),
            sent_through: None,
        }]
    );
    let stored = w
        .deps
        .events
        .get(ORG, p.event.id)
        .await
        .expect("get")
        .expect("recorded before the fan-out ran");
    assert_eq!(stored.fan_out.state, FanOutState::Pending);
    assert_eq!(stored.fan_out.endpoints, 0);
}

#[tokio::test]
async fn an_organization_seen_with_more_than_a_page_goes_to_the_consumer_until_the_hint_lapses() {
    let w = world();
    let ids = subscribers(&w, INLINE_SCAN + 1).await;
    let t0 = time::now();
    let first = publish(&w.deps, ORG, &request(None, "{}"), t0)
        .await
        .expect("publish");
    assert_eq!(first.event.fan_out.state, FanOutState::Pending);
    // Down to one endpoint: a publish inside the hint still goes to the consumer, which
    // reads the endpoints afresh; the request did not read them.
    for id in &ids[1..] {
        assert!(w.deps.endpoints.delete(ORG, *id).await.expect("delete"));
    }
    w.stores.queue.take_fan_outs();
    let hinted = publish(
        &w.deps,
        ORG,
        &request(None, "{}"),
        t0 + chrono::TimeDelta::seconds(59),
    )
    .await
    .expect("publish");
    assert_eq!(hinted.event.fan_out.state, FanOutState::Pending);
    assert!(hinted.delivery_ids.is_empty());
    assert_eq!(w.stores.queue.take_fan_outs().len(), 1);
    // Once the hint lapses the request reads the page again and fans out inline.
    let after = publish(
        &w.deps,
        ORG,
        &request(None, "{}"),
        t0 + large_orgs::LARGE_ORG_HINT,
    )
    .await
    .expect("publish");
    assert_eq!(after.event.fan_out.state, FanOutState::Done);
    assert_eq!(
        after.delivery_ids,
        [DeliveryId::for_event(after.event.id, ids[0])]
    );
    assert!(w.stores.queue.take_fan_outs().is_empty());
}

#[tokio::test]
async fn an_event_with_no_matching_endpoint_is_still_recorded() {
    let w = world();
    let p = publish(&w.deps, ORG, &request(None, "{}"), time::now())
        .await
        .expect("publish");
    assert!(p.delivery_ids.is_empty());
    assert_eq!(p.event.fan_out.state, FanOutState::Done);
    assert!(
        w.deps
            .events
            .get(ORG, p.event.id)
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test]
async fn an_idempotent_publish_returns_the_same_event() {
    let w = world();
    subscribers(&w, 3).await;
    let first = publish(
        &w.deps,
        ORG,
        &request(Some("k-1"), r#"{"a":1}"#),
        time::now(),
    )
    .await
    .expect("publish");
    assert_eq!(w.stores.queue.take_sent().len(), 3);

    let again = publish(
        &w.deps,
        ORG,
        &request(Some("k-1"), r#"{"a":1}"#),
        time::now(),
    )
    .await
    .expect("publish again");
    assert_eq!(again.event, first.event);
    assert_eq!(again.delivery_ids, first.delivery_ids);
    assert!(w.stores.queue.take_sent().is_empty(), "nothing sent twice");
    let (events, _) = w
        .deps
        .events
        .list(
            ORG,
            &EventQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(events.len(), 1);

    let other = publish(
        &w.deps,
        ORG,
        &request(Some("k-1"), r#"{"a":2}"#),
        time::now(),
    )
    .await;
    assert!(
        matches!(other, Err(ServiceError::Conflict(_))),
        "{:?}",
        other.err()
    );
    // The key is scoped to its organization.
    let elsewhere = publish(
        &w.deps,
        "org_other",
        &request(Some("k-1"), r#"{"a":2}"#),
        time::now(),
    )
    .await
    .expect("another organization's key");
    assert_ne!(elsewhere.event.id, first.event.id);
}

#[tokio::test]
async fn a_delivery_not_yet_attempted_is_found_through_its_event() {
    let w = world();
    let targets = subscribers(&w, 2).await;
    let other = w
        .endpoint(UNREACHABLE, |e| Endpoint {
            event_types: vec!["customer.*".into()],
            ..e
        })
        .await
        .0
        .id;
    let p = publish(&w.deps, ORG, &request(None, r#"{"a":1}"#), time::now())
        .await
        .expect("publish");
    let find = |ep, id| crate::services::deliveries::find(&w.deps, ORG, ep, id);
    let d = find(targets[1], p.delivery_ids[1])
        .await
        .expect("find")
        .expect("a pending delivery");
    assert_eq!(
        (d.id, d.event_id, d.endpoint_id, d.attempts),
        (p.delivery_ids[1], p.event.id, targets[1], 0)
    );
    assert_eq!(d.state, crate::domain::delivery::DeliveryState::Pending);
    // Under another endpoint, for a non-recipient, or from another organization: none.
    assert_eq!(
        find(targets[0], p.delivery_ids[1]).await.expect("find"),
        None
    );
    let not_sent = DeliveryId::for_event(p.event.id, other);
    assert_eq!(find(other, not_sent).await.expect("find"), None);
    let foreign = crate::services::deliveries::find(&w.deps, "org_other", targets[1], d.id);
    assert_eq!(foreign.await.expect("find"), None);
}
