use std::sync::Arc;

use super::*;
use crate::adapters::eventbridge::MemoryBus;
use crate::adapters::memory::MemoryStores;
use crate::adapters::secrets::LocalCipher;
use crate::domain::delivery::DeliveryState;
use crate::domain::endpoint::SealedSecret;
use crate::ports::EventQuery;

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
}

#[test]
fn durations_are_spelled_for_people() {
    assert_eq!(spelled(Duration::from_secs(5 * 86_400)), "5 days");
    assert_eq!(spelled(Duration::from_secs(3600)), "1 hour");
    assert_eq!(spelled(Duration::from_secs(90)), "90 seconds");
    assert_eq!(spelled(Duration::from_secs(120)), "2 minutes");
    assert_eq!(spelled(Duration::from_millis(500)), "500 milliseconds");
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
    endpoint_recovered(&deps, &subject, now).await;
    endpoint_recovered(&deps, &subject, now + chrono::TimeDelta::seconds(1)).await;
    assert_eq!(raised(ENDPOINT_RECOVERED).await, 1);

    // The disable update's answer was lost: its retry reads back this very write.
    let reason = "the receiver answered 410 Gone";
    let mut after_own_write = subject.clone();
    after_own_write.is_active = false;
    after_own_write.disabled_reason = Some(reason.into());
    after_own_write.updated_at = now;
    endpoint_disabled(&deps, &subject, &after_own_write, reason, now).await;
    // Another record of the same batch, from the same read of the endpoint.
    endpoint_disabled(&deps, &subject, &subject, reason, now).await;
    assert_eq!(raised(ENDPOINT_DISABLED).await, 1);
    // Disabled by someone else before this write: not ours to announce.
    let later = now + chrono::TimeDelta::seconds(5);
    endpoint_disabled(&deps, &subject, &after_own_write, reason, later).await;
    assert_eq!(raised(ENDPOINT_DISABLED).await, 1);
}
