//! The deliver consumer on the in-memory twins (`wiring::memory`), with loopback receivers.

use std::time::{Duration, Instant};

use super::deliver_batch;
use crate::consumers::sweeper::sweep;
use crate::consumers::testkit::*;
use crate::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected};
use crate::domain::endpoint::{DeliveryStats, Endpoint};
use crate::domain::event::Event;
use crate::domain::health::{DISABLE_AFTER, Health, health};
use crate::domain::ids::{DeliveryId, EventId};
use crate::domain::retry::RetryPolicy;
use crate::domain::time;
use crate::ports::StoreError;
use crate::services::Policy;
use crate::services::publish::ORPHAN_AFTER;

/// An endpoint at `url` (shaped by `shape`), an event, and the delivery of one to the other
/// before its first attempt (not stored: the fan-out only sends messages).
async fn pending(
    w: &World,
    url: &str,
    shape: impl FnOnce(Endpoint) -> Endpoint,
) -> (Endpoint, Event, Delivery) {
    let (e, _) = w.endpoint(url, shape).await;
    let event = w.event("invoice.paid", r#"{"n":1}"#).await;
    let d = Delivery::first(&event, e.id, w.deps.policy.retry.max_attempts());
    (e, event, d)
}

fn failures(resp: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    resp.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_first_attempt_creates_the_delivery_and_sends_the_payload_byte_for_byte() {
    let w = world();
    let rx = receiver(200).await;
    let (e, secret) = w.endpoint(&rx.url, |e| e).await;
    let payload = r#"{"big":12345678901234567890,"f":1.50}"#;
    let event = w.event("invoice.paid", payload).await;
    let d = Delivery::first(&event, e.id, 3);
    assert_eq!(w.stored(&d).await, None, "no item before the first attempt");

    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    let got = w
        .stored(&d)
        .await
        .expect("the first attempt wrote the item");
    assert_eq!((got.state, got.attempts), (DeliveryState::Delivered, 1));
    assert_eq!(got.response_status, Some(200));
    assert!(got.delivered_at.is_some() && got.next_attempt_at.is_none());
    assert_eq!(got.attempt_log.len(), 1);

    let sent = rx.requests();
    assert_eq!(sent.len(), 1);
    let body = event.webhook_body();
    assert_eq!(sent[0].body, body.as_bytes());
    assert!(body.ends_with(&format!(r#""data":{payload}}}"#)), "{body}");
    let id = d.id.to_string();
    assert_eq!(sent[0].header("webhook-id"), Some(id.as_str()));
    let ts: i64 = sent[0]
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("timestamp");
    assert_eq!(
        sent[0].header("webhook-signature"),
        Some(secret.sign(&id, ts, body.as_bytes()).as_str())
    );
}

#[tokio::test]
async fn an_early_message_goes_back_to_sleep_without_an_attempt() {
    let w = world();
    let rx = receiver(200).await;
    let (_, _, d) = pending(&w, &rx.url, |e| e).await;
    let mut early = d.clone();
    early.next_attempt_at = Some(time::now() + chrono::TimeDelta::seconds(120));
    w.deps
        .deliveries
        .save(&early, Expected::New)
        .await
        .expect("save");
    let resp = deliver_batch(&w.deps, batch(&early.message())).await;
    assert_eq!(failures(&resp), ["m-1"]);
    let postponed = w.stores.queue.postponed();
    assert_eq!(postponed.len(), 1);
    assert_eq!(postponed[0].0, "rh-m-1");
    assert!(
        postponed[0].1 > Duration::from_secs(100) && postponed[0].1 <= Duration::from_secs(120),
        "{postponed:?}"
    );
    assert_eq!(w.stored(&d).await, Some(early));
    assert!(rx.requests().is_empty());
}

#[tokio::test]
async fn a_terminal_delivery_is_acknowledged_and_never_resurrected() {
    for state in [DeliveryState::Delivered, DeliveryState::Failed] {
        let w = world();
        let rx = receiver(200).await;
        let (_, _, d) = pending(&w, &rx.url, |e| e).await;
        let mut done = d.clone();
        done.state = state;
        done.attempts = 1;
        done.next_attempt_at = None;
        w.deps
            .deliveries
            .save(&done, Expected::New)
            .await
            .expect("save");
        let resp = deliver_batch(&w.deps, batch(&done.message())).await;
        assert_eq!(failures(&resp), Vec::<String>::new(), "{state:?}");
        assert_eq!(w.stored(&d).await, Some(done), "{state:?}");
        assert!(rx.requests().is_empty(), "{state:?}");
        assert!(w.stores.queue.postponed().is_empty(), "{state:?}");
    }
}

#[tokio::test]
async fn a_failed_attempt_is_counted_once_and_timed_by_visibility() {
    let w = world();
    let (e, _, d) = pending(&w, UNREACHABLE, |e| e).await;
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), ["m-1"]);
    let got = w.stored(&d).await.expect("the attempt wrote the item");
    assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 1));
    assert_eq!(got.last_error.as_deref(), Some("connection refused"));
    assert_eq!(
        got.sweep_at,
        got.next_attempt_at
            .map(|due| time::after(due, w.deps.policy.sweep_grace)),
        "a short wait is held in flight, the sweeper a grace behind it"
    );
    let postponed = w.stores.queue.postponed();
    assert_eq!(postponed.len(), 1);
    let (receipt, delay) = &postponed[0];
    assert_eq!(receipt, "rh-m-1");
    assert!(
        *delay >= Duration::from_millis(800) && *delay <= Duration::from_millis(1200),
        "{delay:?}"
    );
    assert_eq!(w.endpoint_now(e.id).await.stats.failure_streak, 1);
    // A stale copy of the same message (read before that attempt) loses its write.
    for stale in [
        Expected::New,
        Expected::Was {
            attempts: 0,
            state: DeliveryState::Pending,
            lease: None,
        },
    ] {
        assert!(matches!(
            w.deps.deliveries.save(&d, stale).await,
            Err(StoreError::Conflict)
        ));
    }
}

#[tokio::test]
async fn an_inactive_endpoint_fails_the_delivery_with_the_reason() {
    for (reason, expected) in [
        (None, "endpoint disabled"),
        (Some("by its owner"), "endpoint disabled (by its owner)"),
    ] {
        let w = world();
        let rx = receiver(200).await;
        let (_, _, d) = pending(&w, &rx.url, |e| Endpoint {
            is_active: false,
            disabled_reason: reason.map(str::to_owned),
            ..e
        })
        .await;
        let resp = deliver_batch(&w.deps, batch(&d.message())).await;
        assert_eq!(failures(&resp), Vec::<String>::new());
        let got = w.stored(&d).await.expect("stored");
        assert_eq!(got.state, DeliveryState::Failed);
        assert_eq!(got.last_error.as_deref(), Some(expected));
        assert_eq!(got.attempts, 0);
        assert!(rx.requests().is_empty());
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_by_its_next_failure() {
    let w = world();
    let long_ago = time::now() - DISABLE_AFTER - chrono::TimeDelta::hours(1);
    let (e, _, d) = pending(&w, UNREACHABLE, |e| past_its_forecast(e, long_ago, true)).await;
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    let got = w.stored(&d).await.expect("stored");
    assert_eq!(got.state, DeliveryState::Failed);
    assert_eq!(got.attempts, 1, "sent once more first");
    assert!(
        got.last_error
            .as_deref()
            .is_some_and(|e| e.contains("endpoint disabled (every attempt failed for 5 days)")),
        "{:?}",
        got.last_error
    );
    let e = w.endpoint_now(e.id).await;
    assert!(!e.is_active);
    assert!(e.disabled_reason.is_some_and(|r| r.contains("5 days")));
    assert_eq!(
        health(&w.endpoint_now(e.id).await, time::now()),
        Health::Disabled
    );
}

/// An endpoint failing since `since`, with `capy.endpoint.disable_scheduled` out for that
/// clock or not.
fn past_its_forecast(e: Endpoint, since: time::Timestamp, warned: bool) -> Endpoint {
    Endpoint {
        updated_at: since,
        stats: DeliveryStats {
            failure_streak: 40,
            failing_since: Some(since),
            last_failure_at: Some(since),
            failing_announced: true,
            disable_scheduled_for: warned.then_some(since),
            disable_deferred_to: None,
            disabled_at: None,
        },
        ..e
    }
}

/// Past its forecast, the receiver is back: the delivery goes out and the streak closes,
/// instead of a disable without a try.
#[tokio::test]
async fn an_endpoint_past_its_forecast_that_answers_again_is_not_disabled() {
    let w = world();
    let rx = receiver(200).await;
    let long_ago = time::now() - DISABLE_AFTER - chrono::TimeDelta::hours(1);
    let (e, _, d) = pending(&w, &rx.url, |e| past_its_forecast(e, long_ago, true)).await;
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    assert_eq!(
        w.stored(&d).await.expect("stored").state,
        DeliveryState::Delivered
    );
    assert_eq!(rx.requests().len(), 1);
    let e = w.endpoint_now(e.id).await;
    assert!(e.is_active);
    assert_eq!((e.stats.failure_streak, e.stats.failing_since), (0, None));
}

/// No attempt failed within the warning lead (sparse traffic): the first failure after the
/// forecast raises `capy.endpoint.disable_scheduled` late, announcing a full lead after
/// itself, and the disable waits for that time.
#[tokio::test]
async fn a_streak_whose_warning_never_went_out_is_warned_late_and_disabled_a_lead_after() {
    let w = world();
    let long_ago = time::now() - DISABLE_AFTER - chrono::TimeDelta::hours(1);
    let (e, _, d) = pending(&w, UNREACHABLE, |e| past_its_forecast(e, long_ago, false)).await;
    let before = time::now();
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(
        failures(&resp).len(),
        1,
        "retried: the endpoint stays active"
    );
    let stored = w.endpoint_now(e.id).await;
    assert!(stored.is_active);
    assert_eq!(stored.stats.disable_scheduled_for, Some(long_ago));
    let lead = chrono::TimeDelta::from_std(w.deps.policy.disable_warning_lead).expect("lead");
    let deferred = stored.stats.disable_deferred_to.expect("deferred");
    assert!(
        deferred >= before + lead && deferred <= time::now() + lead,
        "{deferred}"
    );
    let q = crate::ports::EventQuery {
        limit: 10,
        event_type: Some("capy.endpoint.disable_scheduled".into()),
        ..Default::default()
    };
    let (raised, _) = w.deps.events.list(ORG, &q).await.expect("list");
    assert_eq!(raised.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&raised[0].payload).expect("json");
    assert_eq!(payload["disable_at"], time::format(&deferred));
    assert_eq!(
        crate::domain::health::disable_at_after(&stored, DISABLE_AFTER),
        Some(deferred),
        "the views' forecast moved with it"
    );
    assert!(!crate::domain::health::should_disable_after(
        &stored,
        deferred - chrono::TimeDelta::seconds(1),
        DISABLE_AFTER
    ));
    assert!(crate::domain::health::should_disable_after(
        &stored,
        deferred,
        DISABLE_AFTER
    ));
}

#[tokio::test]
async fn unreadable_messages_are_left_for_the_dead_letter_queue() {
    let w = world();
    let mut b = aws_lambda_events::sqs::SqsEvent::default();
    b.records.push(record("m-1", "not json", time::now()));
    let resp = deliver_batch(&w.deps, b).await;
    assert_eq!(failures(&resp), ["m-1"]);
    assert!(w.stores.queue.postponed().is_empty());
    assert!(w.stores.deliveries.all().is_empty());
}

/// Polls the sweeper until it sends something (its clock is the real one).
async fn sweep_until_sent(w: &World, within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let n = sweep(&w.deps).await.expect("sweep");
        if n > 0 {
            return n;
        }
        assert!(
            Instant::now() < end,
            "the sweeper sent nothing in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SQS handed one message to two pollers: both send, the first write wins and holds the
/// retry on the message's visibility, the second loses and acknowledges the message, which
/// deletes that retry. The sweeper sends the delivery again a grace after it was due.
#[tokio::test]
async fn a_retry_whose_message_a_losing_copy_deleted_is_swept_after_its_grace() {
    let w = world_with(Policy {
        sweep_grace: Duration::from_millis(500),
        ..policy()
    });
    let (_, _, d) = pending(&w, UNREACHABLE, |e| e).await;
    let (first, second) = tokio::join!(
        deliver_batch(&w.deps, batch(&d.message())),
        deliver_batch(&w.deps, batch(&d.message()))
    );
    let mut held = [failures(&first).len(), failures(&second).len()];
    held.sort_unstable();
    assert_eq!(
        held,
        [0, 1],
        "one copy holds the retry, the loser acknowledges"
    );
    let got = w.stored(&d).await.expect("stored");
    assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 1));
    assert!(w.stores.queue.take_sent().is_empty());
    // The message that held it is gone: the sweeper sends it again once due plus grace.
    assert_eq!(sweep_until_sent(&w, Duration::from_secs(10)).await, 1);
    let swept = w.stores.queue.take_sent();
    assert_eq!(swept, vec![d.message()]);
    let due = got.next_attempt_at.expect("due");
    assert!(time::now() >= due + chrono::TimeDelta::milliseconds(500));
}

#[tokio::test]
async fn a_long_wait_is_parked_and_the_sweeper_sends_it_when_due() {
    let mut policy = policy();
    policy.retry = RetryPolicy::parse("0s,1500ms,1500ms").expect("schedule");
    policy.park_after = Duration::from_secs(1);
    let w = world_with(policy);
    let (_, _, d) = pending(&w, UNREACHABLE, |e| e).await;
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(
        failures(&resp),
        Vec::<String>::new(),
        "parked: acknowledged"
    );
    assert!(
        w.stores.queue.postponed().is_empty(),
        "nothing held in flight"
    );
    let parked = w.stored(&d).await.expect("stored");
    assert_eq!((parked.state, parked.attempts), (DeliveryState::Pending, 1));
    let due = parked.sweep_at.expect("parked with its due time");
    assert_eq!(parked.next_attempt_at, Some(due));

    assert_eq!(sweep(&w.deps).await.expect("sweep"), 0, "not due yet");
    assert!(w.stores.queue.take_sent().is_empty());
    assert_eq!(sweep_until_sent(&w, Duration::from_secs(5)).await, 1);
    assert!(time::now() >= due);
    assert_eq!(w.stores.queue.take_sent(), [d.message()]);
    let moved = w
        .stored(&d)
        .await
        .expect("stored")
        .sweep_at
        .expect("sweep_at");
    assert!(
        moved >= time::now() + chrono::TimeDelta::minutes(14),
        "moved one grace period on: {moved:?}"
    );
    assert_eq!(sweep(&w.deps).await.expect("sweep"), 0, "not sent twice");

    // The swept message makes the second attempt, which clears the sweep entry.
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    let after = w.stored(&d).await.expect("stored");
    assert_eq!(after.attempts, 2);
    assert!(
        after.sweep_at.is_some_and(|t| t < moved),
        "parked again: {after:?}"
    );
}

#[tokio::test]
async fn an_early_message_for_a_long_wait_is_parked_instead_of_postponed() {
    let w = world();
    let (_, _, d) = pending(&w, UNREACHABLE, |e| e).await;
    let mut waiting = d.clone();
    waiting.attempts = 1;
    waiting.next_attempt_at = Some(time::now() + chrono::TimeDelta::hours(1));
    w.deps
        .deliveries
        .save(&waiting, Expected::New)
        .await
        .expect("save");
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    assert!(w.stores.queue.postponed().is_empty());
    let got = w.stored(&d).await.expect("stored");
    assert_eq!(got.attempts, 1, "no attempt");
    assert_eq!(got.sweep_at, waiting.next_attempt_at);
}

fn orphan() -> DeliveryMessage {
    let (event, endpoint) = (EventId::new(), crate::domain::ids::EndpointId::new());
    DeliveryMessage {
        delivery_id: DeliveryId::for_event(event, endpoint),
        endpoint_id: endpoint,
        organization_id: ORG.into(),
        event_id: event,
    }
}

#[tokio::test]
async fn a_message_whose_event_is_missing_waits_while_young_and_is_dropped_when_old() {
    let w = world();
    let young = orphan();
    let resp = deliver_batch(&w.deps, batch(&young)).await;
    assert_eq!(failures(&resp), ["m-1"]);
    assert_eq!(
        w.stores.queue.postponed(),
        [("rh-m-1".to_owned(), Duration::from_secs(1))]
    );

    let w = world();
    let old = orphan();
    let sent = time::now() - ORPHAN_AFTER - chrono::TimeDelta::minutes(1);
    let resp = deliver_batch(&w.deps, batch_sent_at(&old, sent)).await;
    assert_eq!(failures(&resp), Vec::<String>::new(), "dropped");
    assert!(w.stores.queue.postponed().is_empty());
    assert!(w.stores.deliveries.all().is_empty());
}

/// The consumer died between saving a success and closing the endpoint's failing streak:
/// the message comes back, finds its delivery delivered, and raises `recovered` and closes
/// the streak without sending again. A success older than the streak closes nothing.
#[tokio::test]
async fn a_finished_delivery_whose_follow_ups_did_not_run_runs_them_without_sending() {
    for (delivered_after_streak, recovers) in [(true, true), (false, false)] {
        let w = world();
        let rx = receiver(200).await;
        let since = time::now() - chrono::TimeDelta::hours(1);
        let (e, _, d) = pending(&w, &rx.url, |e| Endpoint {
            stats: DeliveryStats {
                failure_streak: 7,
                failing_since: Some(since),
                last_failure_at: Some(since),
                failing_announced: true,
                disable_scheduled_for: None,
                disable_deferred_to: None,
                disabled_at: None,
            },
            ..e
        })
        .await;
        w.endpoint("https://w.example", |e| Endpoint {
            event_types: vec!["capy.endpoint.recovered".into()],
            ..e
        })
        .await;
        let mut done = d.clone();
        done.state = DeliveryState::Delivered;
        done.attempts = 1;
        done.next_attempt_at = None;
        done.delivered_at = Some(if delivered_after_streak {
            since + chrono::TimeDelta::minutes(30)
        } else {
            since - chrono::TimeDelta::minutes(30)
        });
        w.deps
            .deliveries
            .save(&done, Expected::New)
            .await
            .expect("save");
        let resp = deliver_batch(&w.deps, batch(&done.message())).await;
        assert_eq!(failures(&resp), Vec::<String>::new());
        assert!(rx.requests().is_empty(), "no second send");
        let stats = w.endpoint_now(e.id).await.stats;
        assert_eq!(stats.failure_streak == 0, recovers, "{stats:?}");
        let q = crate::ports::EventQuery {
            limit: 10,
            event_type: Some("capy.endpoint.recovered".into()),
            ..Default::default()
        };
        let (raised, _) = w
            .deps
            .events
            .list(&e.organization_id, &q)
            .await
            .expect("list");
        assert_eq!(raised.len(), usize::from(recovers));
    }
}

/// Counts `record_outcome` calls, delegating everything to the twin.
struct CountingOutcomes {
    inner: std::sync::Arc<dyn crate::ports::EndpointStore>,
    outcomes: std::sync::Mutex<Vec<crate::domain::endpoint::Outcome>>,
}

#[async_trait::async_trait]
impl crate::ports::EndpointStore for CountingOutcomes {
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError> {
        self.inner.create(e).await
    }
    async fn get(
        &self,
        org: &str,
        id: crate::domain::ids::EndpointId,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.inner.get(org, id).await
    }
    async fn page(
        &self,
        org: &str,
        after: Option<crate::domain::ids::EndpointId>,
        limit: usize,
    ) -> Result<(Vec<Endpoint>, Option<crate::domain::ids::EndpointId>), StoreError> {
        self.inner.page(org, after, limit).await
    }
    async fn save_settings(
        &self,
        e: &Endpoint,
        expected: time::Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.save_settings(e, expected).await
    }
    async fn delete(
        &self,
        org: &str,
        id: crate::domain::ids::EndpointId,
    ) -> Result<bool, StoreError> {
        self.inner.delete(org, id).await
    }
    async fn record_outcome(
        &self,
        org: &str,
        id: crate::domain::ids::EndpointId,
        outcome: crate::domain::endpoint::Outcome,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.outcomes.lock().expect("lock").push(outcome.clone());
        self.inner.record_outcome(org, id, outcome).await
    }
}

/// A batch's failed attempts to one endpoint are counted in one write to it, so a dead
/// endpoint's item takes a write per batch, not per attempt; the streak still counts each,
/// and the 5th raises `capy.endpoint.failing` once.
#[tokio::test]
async fn a_batch_counts_its_failures_to_an_endpoint_in_one_write() {
    let mut w = world();
    let counting = std::sync::Arc::new(CountingOutcomes {
        inner: w.deps.endpoints.clone(),
        outcomes: Default::default(),
    });
    w.deps.endpoints = counting.clone();
    let rx = receiver(200).await;
    let (dead, _) = w.endpoint(UNREACHABLE, |e| e).await;
    let (flaky, _) = w.endpoint(UNREACHABLE, |e| e).await;
    let (fine, _) = w.endpoint(&rx.url, |e| e).await;
    w.endpoint("https://w.example", |e| Endpoint {
        event_types: vec!["capy.endpoint.failing".into()],
        ..e
    })
    .await;
    let mut deliveries = Vec::new();
    for (endpoint, n) in [(dead.id, 6), (flaky.id, 3), (fine.id, 1)] {
        for _ in 0..n {
            let event = w.event("invoice.paid", r#"{"n":1}"#).await;
            deliveries.push(Delivery::first(&event, endpoint, 3));
        }
    }
    let mut sqs = aws_lambda_events::sqs::SqsEvent::default();
    for (i, d) in deliveries.iter().enumerate() {
        let body = serde_json::to_string(&d.message()).expect("json");
        sqs.records
            .push(record(&format!("m-{i}"), &body, time::now()));
    }

    let resp = deliver_batch(&w.deps, sqs).await;

    // The failures wait for their 1 s retry in flight; the success is done.
    assert_eq!(failures(&resp).len(), 9);
    let outcomes = counting.outcomes.lock().expect("lock").clone();
    let mut counts: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            crate::domain::endpoint::Outcome::Failures { count, .. } => Some(*count),
            _ => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![3, 6], "one write per failing endpoint");
    let announced = outcomes
        .iter()
        .filter(|o| matches!(o, crate::domain::endpoint::Outcome::FailingAnnounced { .. }))
        .count();
    assert_eq!((outcomes.len(), announced), (3, 1), "{outcomes:?}");
    assert_eq!(w.endpoint_now(dead.id).await.stats.failure_streak, 6);
    assert_eq!(w.endpoint_now(flaky.id).await.stats.failure_streak, 3);
    assert_eq!(w.endpoint_now(fine.id).await.stats.failure_streak, 0);
    for d in &deliveries[..9] {
        let got = w.stored(d).await.expect("stored");
        assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 1));
    }
    let q = crate::ports::EventQuery {
        limit: 10,
        event_type: Some("capy.endpoint.failing".into()),
        ..Default::default()
    };
    let (raised, _) = w.deps.events.list(ORG, &q).await.expect("list");
    assert_eq!(raised.len(), 1, "the dead endpoint's streak reached 5 once");
    let payload: serde_json::Value = serde_json::from_str(&raised[0].payload).expect("json");
    assert_eq!(payload["endpoint_id"], dead.id.to_string());
}

/// A failed delivery sent again by hand (or by a replay) has a fresh schedule: its next
/// failure waits like a first run's second attempt instead of ending it.
#[tokio::test]
async fn a_delivery_sent_again_retries_on_a_fresh_schedule() {
    let w = world();
    let (_, _, d) = pending(&w, UNREACHABLE, |e| e).await;
    let spent = Delivery {
        state: DeliveryState::Failed,
        attempts: 3,
        next_attempt_at: None,
        ..d
    };
    w.deps
        .deliveries
        .save(&spent, Expected::New)
        .await
        .expect("save");
    let again = spent.requeued(time::now(), w.deps.policy.sweep_grace, 3);
    w.deps
        .deliveries
        .save(&again, Expected::of(&spent, true))
        .await
        .expect("requeue");
    let resp = deliver_batch(&w.deps, batch(&again.message())).await;
    assert_eq!(failures(&resp), ["m-1"], "held for its retry");
    let got = w.stored(&again).await.expect("stored");
    assert_eq!(
        (got.state, got.attempts, got.max_attempts),
        (DeliveryState::Pending, 4, 6)
    );
    let (_, delay) = w.stores.queue.postponed()[0].clone();
    assert!(
        delay >= Duration::from_millis(800) && delay <= Duration::from_millis(1200),
        "the schedule's second wait (1 s), {delay:?}"
    );
}

/// The consumer sends through the destination transport alone: a transport that is not HTTP
/// gets the endpoint's destination and the signed headers, and its outcome is recorded.
#[tokio::test]
async fn deliveries_go_through_the_destination_transport() {
    use std::sync::{Arc, Mutex};

    use crate::dispatch::{SendOutcome, Transport};

    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, Vec<String>)>>);

    #[async_trait::async_trait]
    impl Transport for Recording {
        async fn send(
            &self,
            destination: &str,
            headers: &[(&str, String)],
            _body: bytes::Bytes,
        ) -> SendOutcome {
            let names = headers.iter().map(|(n, _)| (*n).to_owned()).collect();
            self.0
                .lock()
                .expect("lock")
                .push((destination.to_owned(), names));
            SendOutcome {
                status: Some(202),
                error: None,
                kind: crate::domain::retry::FailureKind::Other,
                retry_after: None,
                excerpt: None,
                duration: Duration::from_millis(3),
                gone: false,
            }
        }
    }

    let mut w = world();
    let transport = Arc::new(Recording::default());
    w.deps.sender = transport.clone();
    let (_, _, d) = pending(&w, "queue://orders", |e| e).await;
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp), Vec::<String>::new());
    let got = w.stored(&d).await.expect("recorded");
    assert_eq!(
        (got.state, got.response_status),
        (DeliveryState::Delivered, Some(202))
    );
    assert_eq!(
        transport.0.lock().expect("lock").clone(),
        vec![(
            "queue://orders".to_owned(),
            vec![
                "webhook-id".to_owned(),
                "webhook-timestamp".to_owned(),
                "webhook-signature".to_owned()
            ]
        )]
    );
}

/// `ATTEMPT_LEASE`: the copy of a message SQS handed to a second poller waits out the lease
/// instead of sending; it comes back to find the attempt recorded and is acknowledged. The
/// same race without the lease sends twice (the duplicate the README's figures count).
#[tokio::test]
async fn with_an_attempt_lease_a_message_handed_to_two_pollers_is_sent_once() {
    for (lease, sends) in [(None, 2), (Some(Duration::from_secs(30)), 1)] {
        let w = world_with(Policy {
            attempt_lease: lease,
            ..policy()
        });
        let rx = receiver(200).await;
        let (_, _, d) = pending(&w, &rx.url, |e| e).await;
        let (first, second) = tokio::join!(
            deliver_batch(&w.deps, batch(&d.message())),
            deliver_batch(&w.deps, batch(&d.message()))
        );
        assert_eq!(rx.requests().len(), sends, "lease {lease:?}");
        let got = w.stored(&d).await.expect("stored");
        assert_eq!((got.state, got.attempts), (DeliveryState::Delivered, 1));
        assert_eq!(got.lease, None, "the record clears the lease");
        let Some(lease) = lease else { continue };
        let mut waiting = [failures(&first).len(), failures(&second).len()];
        waiting.sort_unstable();
        assert_eq!(
            waiting,
            [0, 1],
            "the holder acknowledges, the other copy waits"
        );
        let postponed = w.stores.queue.postponed();
        assert_eq!(postponed.len(), 1);
        assert!(postponed[0].1 <= lease && postponed[0].1 >= lease - Duration::from_secs(2));
        // The waiting copy comes back: nothing left to send.
        let again = deliver_batch(&w.deps, batch(&d.message())).await;
        assert!(failures(&again).is_empty());
        assert_eq!(rx.requests().len(), 1);
    }
}

/// A live lease held by another poller defers this copy for the lease's rest; a lapsed one
/// (its holder died between the lease and the record) is taken over and the attempt made.
#[tokio::test]
async fn a_held_lease_defers_the_send_and_a_lapsed_one_is_taken_over() {
    let w = world_with(Policy {
        attempt_lease: Some(Duration::from_secs(30)),
        ..policy()
    });
    let rx = receiver(200).await;
    let (_, _, d) = pending(&w, &rx.url, |e| e).await;
    let mut held = d.clone();
    held.lease = Some(crate::domain::delivery::Lease {
        until: time::now() + chrono::TimeDelta::seconds(10),
        holder: 7,
    });
    w.deps
        .deliveries
        .save(&held, Expected::New)
        .await
        .expect("seed");
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert_eq!(failures(&resp).len(), 1);
    assert!(rx.requests().is_empty());
    let postponed = w.stores.queue.postponed();
    assert!(postponed[0].1 <= Duration::from_secs(10) && postponed[0].1 >= Duration::from_secs(8));

    let mut lapsed = held.clone();
    lapsed.lease = Some(crate::domain::delivery::Lease {
        until: time::now() - chrono::TimeDelta::seconds(1),
        holder: 7,
    });
    w.deps
        .deliveries
        .save(&lapsed, Expected::of(&held, true))
        .await
        .expect("the holder's lease lapses");
    let resp = deliver_batch(&w.deps, batch(&d.message())).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(rx.requests().len(), 1);
    let got = w.stored(&d).await.expect("stored");
    assert_eq!(
        (got.state, got.attempts, got.lease),
        (DeliveryState::Delivered, 1, None)
    );
}
