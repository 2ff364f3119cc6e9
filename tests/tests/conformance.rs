//! Storage conformance: every case is one async fn over the ports' trait objects, run once
//! on the in-memory twins (`adapters::memory`) and once on the DynamoDB adapters against
//! moto, each DynamoDB run on a fresh table made by `Table::ensure`. A twin that behaves
//! differently from DynamoDB fails here.
//!
//! `cargo test -p capy-tests --test conformance` (the count: `-- --list | grep -c ': test'`).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capy_shared::adapters::dynamo::Table;
use capy_shared::adapters::memory::{
    MemoryApiKeys, MemoryDeliveries, MemoryEndpoints, MemoryEvents, MemoryIdempotency, MemoryJobs,
    MemoryMarkers, MemoryPortalSessions, SeparateReads,
};
use capy_shared::domain::api_key::ApiKeyRecord;
use capy_shared::domain::delivery::{Delivery, DeliveryMessage, DeliveryState, Expected, Lease};
use capy_shared::domain::endpoint::{
    DeliveryStats, Endpoint, Outcome, PreviousSecret, SealedSecret,
};
use capy_shared::domain::event::{Event, FanOutPage, FanOutState};
use capy_shared::domain::ids::{DeliveryId, EndpointId, EventId, JobId, PortalSessionId};
use capy_shared::domain::job::{Job, JobState, ReplayParams};
use capy_shared::domain::portal_session::{Capability, PortalSessionRecord};
use capy_shared::domain::time::{self, Timestamp};
use capy_shared::ports::*;
use chrono::TimeDelta;

const ORG: &str = "org_conf";
const OTHER_ORG: &str = "org_conf_other";
const RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Every storage port of one backend.
struct Stores {
    endpoints: Arc<dyn EndpointStore>,
    deliveries: Arc<dyn DeliveryLog>,
    events: Arc<dyn EventStore>,
    keys: Arc<dyn ApiKeyStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    reader: Arc<dyn DeliveryReader>,
    portal_sessions: Arc<dyn PortalSessionStore>,
    markers: Arc<dyn OpsMarkerStore>,
    jobs: Arc<dyn JobStore>,
}

fn memory(retention: Duration) -> Stores {
    let endpoints = Arc::new(MemoryEndpoints::default());
    let deliveries = Arc::new(MemoryDeliveries::with_retention(retention));
    let events = Arc::new(MemoryEvents::with_retention(retention));
    Stores {
        reader: Arc::new(SeparateReads {
            endpoints: endpoints.clone(),
            deliveries: deliveries.clone(),
            events: events.clone(),
        }),
        endpoints,
        deliveries,
        events,
        keys: Arc::new(MemoryApiKeys::default()),
        idempotency: Arc::new(MemoryIdempotency::default()),
        portal_sessions: Arc::new(MemoryPortalSessions::default()),
        markers: Arc::new(MemoryMarkers::default()),
        jobs: Arc::new(MemoryJobs::default()),
    }
}

fn moto_client() -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&capy_tests::moto().endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "conformance",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

async fn dynamodb(retention: Duration) -> Stores {
    let name = format!("conformance-{:016x}", rand::random::<u64>());
    let table = Table::new(moto_client(), name).with_retention(retention);
    table.ensure().await.expect("create the table");
    let table = Arc::new(table);
    Stores {
        endpoints: table.clone(),
        deliveries: table.clone(),
        events: table.clone(),
        keys: table.clone(),
        idempotency: table.clone(),
        portal_sessions: table.clone(),
        markers: table.clone(),
        jobs: table.clone(),
        reader: table,
    }
}

/// Each case as two tests, `<case>::memory` and `<case>::dynamodb`.
macro_rules! conformance {
    ($($case:ident $(with retention $retention:expr)?),* $(,)?) => {$(
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            fn retention() -> std::time::Duration {
                #[allow(unused_variables)]
                let r = super::RETENTION;
                $(let r = $retention;)?
                r
            }

            #[tokio::test]
            async fn memory() {
                super::$case(&super::memory(retention())).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$case(&super::dynamodb(retention()).await).await;
            }
        }
    )*};
}

conformance!(
    endpoint_create_get_delete,
    endpoint_pages_follow_their_cursors,
    endpoint_save_settings_writes_the_owner_fields_and_never_the_stats,
    endpoint_record_outcome_keeps_the_counters,
    delivery_save_new_and_was_conflict,
    delivery_list_is_newest_first_across_shards_without_duplicates_or_gaps,
    delivery_list_state_filter_pages_exactly,
    delivery_range_is_inclusive_and_newest_first,
    delivery_sweep_finds_only_pending_and_reschedules,
    delivery_past_retention_is_neither_listed_nor_got with retention HOUR,
    event_create_get_and_conflict,
    event_long_payloads_come_back_byte_for_byte,
    event_list_filters_and_cursor,
    event_pages_and_finish_fan_out,
    event_extra_recipients,
    event_past_retention_is_neither_listed_nor_got with retention Duration::ZERO,
    idempotency_claim_existing_release,
    idempotency_an_expired_claim_is_as_good_as_none,
    api_keys_put_and_get,
    reader_loads_a_batch_in_one_go,
    portal_sessions_create_get_revoke,
    markers_claim_once_and_count_in_windows,
    jobs_hold_their_endpoint_slot_and_save_by_version,
);

// ---- records ----

fn endpoint(org: &str) -> Endpoint {
    Endpoint::new(
        EndpointId::new(),
        org,
        "https://hooks.example.com/x",
        SealedSecret("local1:sealed".into()),
        time::now(),
    )
}

/// An event of [`ORG`] created at `t`; `late` picks the last id of that millisecond
/// instead of the first, so two events can share one.
fn event_at(event_type: &str, t: Timestamp, late: bool) -> Event {
    let id = if late {
        EventId::highest_at(t)
    } else {
        EventId::lowest_at(t)
    };
    Event {
        id,
        created_at: id.created_at(),
        ..Event::new(ORG, event_type, r#"{"n":1}"#.into(), t)
    }
}

fn delivery_at(endpoint: EndpointId, t: Timestamp, late: bool) -> Delivery {
    Delivery::first(&event_at("invoice.paid", t, late), endpoint, 8)
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict))
}

// ---- EndpointStore ----

async fn endpoint_create_get_delete(s: &Stores) {
    let e = endpoint(ORG);
    s.endpoints.create(&e).await.expect("create");
    assert!(is_conflict(s.endpoints.create(&e).await), "a second create");
    assert_eq!(
        s.endpoints.get(ORG, e.id).await.expect("get"),
        Some(e.clone())
    );
    assert_eq!(s.endpoints.get(OTHER_ORG, e.id).await.expect("get"), None);
    assert!(!s.endpoints.delete(OTHER_ORG, e.id).await.expect("delete"));
    assert!(s.endpoints.delete(ORG, e.id).await.expect("delete"));
    assert!(!s.endpoints.delete(ORG, e.id).await.expect("delete again"));
    assert_eq!(s.endpoints.get(ORG, e.id).await.expect("get"), None);
}

async fn endpoint_pages_follow_their_cursors(s: &Stores) {
    let mut ids = Vec::new();
    for _ in 0..7 {
        let e = endpoint(ORG);
        s.endpoints.create(&e).await.expect("create");
        ids.push(e.id);
    }
    for _ in 0..2 {
        s.endpoints
            .create(&endpoint(OTHER_ORG))
            .await
            .expect("create");
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    let mut sizes = Vec::new();
    loop {
        let (page, next) = s.endpoints.page(ORG, after, 3).await.expect("page");
        sizes.push(page.len());
        seen.extend(page.iter().map(|e| e.id));
        match next {
            Some(n) => {
                assert_eq!(Some(n), page.last().map(|e| e.id));
                after = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, ids, "id order, no duplicate, no gap");
    // A limit equal to what remains says there is no more (moto omits LastEvaluatedKey).
    let (all, next) = s.endpoints.page(ORG, None, 7).await.expect("page");
    assert_eq!((all.len(), next), (7, None));
    let (rest, next) = s.endpoints.page(ORG, Some(ids[3]), 3).await.expect("page");
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), ids[4..]);
    assert_eq!(next, None);
    let (none, next) = s
        .endpoints
        .page("org_conf_empty", None, 3)
        .await
        .expect("page");
    assert!(none.is_empty() && next.is_none());
    let everything = all_endpoints(s.endpoints.as_ref(), ORG).await.expect("all");
    assert_eq!(everything.len(), 7);
}

async fn endpoint_save_settings_writes_the_owner_fields_and_never_the_stats(s: &Stores) {
    let before = endpoint(ORG);
    s.endpoints.create(&before).await.expect("create");
    let failed_at = time::now();
    s.endpoints
        .record_outcome(ORG, before.id, Outcome::failure(failed_at))
        .await
        .expect("outcome");
    let counted = s
        .endpoints
        .get(ORG, before.id)
        .await
        .expect("get")
        .expect("endpoint");

    // The owner's copy was read before the failure was counted: its stats are stale, and
    // it tries to change what is not the owner's to change.
    let mut changed = before.clone();
    changed.url = "https://hooks.example.com/changed".into();
    changed.description = "Billing".into();
    changed.event_types = vec!["invoice.*".into(), "customer.created".into()];
    changed.is_active = false;
    changed.updated_at = before.updated_at + ms(5);
    changed.secret = SealedSecret("local1:new".into());
    changed.previous_secret = Some(PreviousSecret {
        secret: before.secret.clone(),
        expires_at: before.updated_at + TimeDelta::hours(24),
    });
    changed.disabled_reason = Some("paused by its owner".into());
    changed.stats = DeliveryStats {
        failure_streak: 99,
        ..DeliveryStats::default()
    };
    changed.created_at = before.created_at - TimeDelta::days(1);
    s.endpoints
        .save_settings(&changed, before.updated_at)
        .await
        .expect("save");
    let got = s
        .endpoints
        .get(ORG, before.id)
        .await
        .expect("get")
        .expect("endpoint");
    assert_eq!(
        got,
        Endpoint {
            stats: counted.stats.clone(),
            created_at: before.created_at,
            ..changed.clone()
        },
        "exactly the owner fields"
    );
    assert_eq!(got.stats.failure_streak, 1);

    // A writer that read before that save loses.
    let mut stale = before.clone();
    stale.description = "stale".into();
    stale.updated_at = before.updated_at + ms(6);
    assert!(is_conflict(
        s.endpoints.save_settings(&stale, before.updated_at).await
    ));
    // Optional fields can be cleared again.
    let mut cleared = got.clone();
    cleared.previous_secret = None;
    cleared.disabled_reason = None;
    cleared.is_active = true;
    cleared.updated_at = got.updated_at + ms(1);
    s.endpoints
        .save_settings(&cleared, got.updated_at)
        .await
        .expect("save");
    assert_eq!(
        s.endpoints.get(ORG, before.id).await.expect("get"),
        Some(cleared)
    );
    // A deleted endpoint is not recreated by a save.
    let gone = endpoint(ORG);
    assert!(is_conflict(
        s.endpoints.save_settings(&gone, gone.updated_at).await
    ));
    assert_eq!(s.endpoints.get(ORG, gone.id).await.expect("get"), None);
}

async fn endpoint_record_outcome_keeps_the_counters(s: &Stores) {
    let e = endpoint(ORG);
    s.endpoints.create(&e).await.expect("create");
    let get = || async {
        s.endpoints
            .get(ORG, e.id)
            .await
            .expect("get")
            .expect("endpoint")
    };
    let t1 = time::now();
    let (t2, t3, t4) = (t1 + ms(10), t1 + ms(20), t1 + ms(30));
    let record = |o: Outcome| async move {
        s.endpoints
            .record_outcome(ORG, e.id, o)
            .await
            .expect("outcome")
            .expect("the endpoint as it was before")
    };
    assert_eq!(
        record(Outcome::failure(t1)).await,
        e,
        "returns the endpoint before"
    );
    assert_eq!(
        get().await.stats,
        DeliveryStats {
            failure_streak: 1,
            failing_since: Some(t1),
            last_failure_at: Some(t1),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        }
    );
    assert_eq!(record(Outcome::failure(t2)).await.stats.failure_streak, 1);
    assert_eq!(
        get().await.stats,
        DeliveryStats {
            failure_streak: 2,
            failing_since: Some(t1),
            last_failure_at: Some(t2),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        }
    );
    // An announcement names its streak: another streak's changes nothing.
    assert_eq!(
        s.endpoints
            .record_outcome(ORG, e.id, Outcome::FailingAnnounced { since: t2 })
            .await
            .expect("outcome"),
        None
    );
    assert!(!get().await.stats.failing_announced);
    let _ = record(Outcome::FailingAnnounced { since: t1 }).await;
    assert!(get().await.stats.failing_announced);
    assert_eq!(
        s.endpoints
            .record_outcome(
                ORG,
                e.id,
                Outcome::DisableScheduledAnnounced {
                    since: t2,
                    clock: t2,
                    deferred_to: None,
                }
            )
            .await
            .expect("outcome"),
        None
    );
    assert_eq!(get().await.stats.disable_scheduled_for, None);
    let _ = record(Outcome::DisableScheduledAnnounced {
        since: t1,
        clock: t2,
        deferred_to: None,
    })
    .await;
    assert_eq!(get().await.stats.disable_scheduled_for, Some(t2));
    // A late warning keeps the time it announced; an on-time one again clears it.
    let late = t4 + TimeDelta::hours(24);
    let _ = record(Outcome::DisableScheduledAnnounced {
        since: t1,
        clock: t2,
        deferred_to: Some(late),
    })
    .await;
    assert_eq!(get().await.stats.disable_deferred_to, Some(late));
    let _ = record(Outcome::DisableScheduledAnnounced {
        since: t1,
        clock: t2,
        deferred_to: None,
    })
    .await;
    assert_eq!(get().await.stats.disable_deferred_to, None);
    let _ = record(Outcome::DisableScheduledAnnounced {
        since: t1,
        clock: t2,
        deferred_to: Some(late),
    })
    .await;
    assert_eq!(
        record(Outcome::RecoveredAfterFailures)
            .await
            .stats
            .failure_streak,
        2
    );
    assert_eq!(
        get().await.stats,
        DeliveryStats {
            failure_streak: 0,
            failing_since: None,
            last_failure_at: Some(t2),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        }
    );
    // A consumer batch counts its failures to the endpoint in one write.
    let _ = record(Outcome::Failures {
        count: 4,
        first_at: t3,
        last_at: t3 + ms(5),
    })
    .await;
    let stats = get().await.stats;
    assert_eq!(
        (
            stats.failure_streak,
            stats.failing_since,
            stats.last_failure_at
        ),
        (4, Some(t3), Some(t3 + ms(5)))
    );
    assert!(
        record(Outcome::Disable {
            reason: "the receiver answered 410 Gone".into(),
            at: t4,
        })
        .await
        .is_active,
        "it was active before"
    );
    let got = get().await;
    assert!(!got.is_active);
    assert_eq!(
        got.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert_eq!(got.updated_at, t4);
    assert_eq!(got.stats.disabled_at, Some(t4), "names the disable's event");
    // A second disabler finds it inactive and moves nothing; this very write again (an SDK
    // retry) reads as itself.
    let second = Outcome::Disable {
        reason: "every attempt failed for 5 days".into(),
        at: t4 + TimeDelta::seconds(1),
    };
    assert_eq!(
        s.endpoints
            .record_outcome(ORG, e.id, second)
            .await
            .expect("outcome"),
        None
    );
    assert_eq!(get().await.stats.disabled_at, Some(t4));
    let again = record(Outcome::Disable {
        reason: "the receiver answered 410 Gone".into(),
        at: t4,
    })
    .await;
    assert!(!again.is_active && again.updated_at == t4);
    assert_eq!(got.stats.failing_since, Some(t3), "the streak is kept");
    assert_eq!((got.url, got.secret), (e.url.clone(), e.secret.clone()));
    // Nothing happens to an endpoint that does not exist.
    let ghost = EndpointId::new();
    assert_eq!(
        s.endpoints
            .record_outcome(ORG, ghost, Outcome::failure(t1))
            .await
            .expect("outcome on a missing endpoint"),
        None
    );
    assert_eq!(s.endpoints.get(ORG, ghost).await.expect("get"), None);
}

// ---- DeliveryLog ----

async fn delivery_save_new_and_was_conflict(s: &Stores) {
    let ep = EndpointId::new();
    let d = delivery_at(ep, time::now(), false);
    s.deliveries
        .save(&d, Expected::New)
        .await
        .expect("first write");
    let mut other = d.clone();
    other.updated_at += ms(1);
    assert!(is_conflict(s.deliveries.save(&other, Expected::New).await));
    // The same write again (an SDK retry of a write whose answer was lost) is that write.
    s.deliveries
        .save(&d, Expected::New)
        .await
        .expect("the same write repeated");
    assert_eq!(
        s.deliveries.get(ep, d.id).await.expect("get"),
        Some(d.clone())
    );
    assert_eq!(
        s.deliveries
            .get(EndpointId::new(), d.id)
            .await
            .expect("get"),
        None
    );

    let mut tried = d.clone();
    tried.attempts = 1;
    tried.last_error = Some("HTTP 500".into());
    tried.next_attempt_at = Some(d.created_at + TimeDelta::seconds(5));
    s.deliveries
        .save(&tried, Expected::of(&d, true))
        .await
        .expect("second write");
    // A worker that read the delivery before that attempt loses; the same write repeated
    // does not.
    let mut rival = tried.clone();
    rival.last_error = Some("HTTP 503".into());
    assert!(is_conflict(
        s.deliveries.save(&rival, Expected::of(&d, true)).await
    ));
    s.deliveries
        .save(&tried, Expected::of(&d, true))
        .await
        .expect("the same write repeated");
    assert!(is_conflict(
        s.deliveries
            .save(
                &rival,
                Expected::Was {
                    attempts: 1,
                    state: DeliveryState::Delivered,
                    lease: None,
                },
            )
            .await
    ));
    let missing = delivery_at(ep, time::now(), true);
    assert!(is_conflict(
        s.deliveries
            .save(
                &missing,
                Expected::Was {
                    attempts: 0,
                    state: DeliveryState::Pending,
                    lease: None,
                },
            )
            .await
    ));
    assert_eq!(s.deliveries.get(ep, missing.id).await.expect("get"), None);

    // Attempt leases: two pollers read `tried`; the first lease wins, the second (same
    // attempts and state, no lease seen) loses, and only the holder's record lands.
    let lease = |holder| Lease {
        until: time::now() + TimeDelta::seconds(30),
        holder,
    };
    let (mut first, mut second) = (tried.clone(), tried.clone());
    first.lease = Some(lease(1));
    second.lease = Some(lease(2));
    s.deliveries
        .save(&first, Expected::of(&tried, true))
        .await
        .expect("the first lease");
    assert!(is_conflict(
        s.deliveries.save(&second, Expected::of(&tried, true)).await
    ));
    let mut recorded = first.clone();
    recorded.attempts = 2;
    recorded.lease = None;
    assert!(is_conflict(
        s.deliveries
            .save(&recorded, Expected::of(&second, true))
            .await
    ));
    s.deliveries
        .save(&recorded, Expected::of(&first, true))
        .await
        .expect("the holder's record");
    let tried = recorded;
    assert_eq!(
        s.deliveries.get(ep, tried.id).await.expect("get"),
        Some(tried.clone())
    );
    let mut many = s
        .deliveries
        .get_many(&[(ep, d.id), (ep, missing.id)])
        .await
        .expect("get_many");
    many.sort_by_key(|d| d.id);
    assert_eq!(many, [tried]);
}

/// `n` deliveries of one endpoint, a few milliseconds apart and some sharing one, stored.
async fn history(s: &Stores, ep: EndpointId, n: usize) -> Vec<Delivery> {
    let base = time::now() - TimeDelta::minutes(10);
    let mut all = Vec::new();
    for i in 0..n {
        let d = delivery_at(ep, base + ms((i / 2) as i64 * 7), i % 2 == 1);
        s.deliveries.save(&d, Expected::New).await.expect("save");
        all.push(d);
    }
    all.sort_by_key(|d| std::cmp::Reverse(d.id));
    all
}

async fn collect_pages(
    s: &Stores,
    ep: EndpointId,
    limit: usize,
    state: Option<DeliveryState>,
) -> Vec<Vec<DeliveryId>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .deliveries
            .list(ep, limit, after, state)
            .await
            .expect("list");
        assert!(page.deliveries.len() <= limit);
        pages.push(page.deliveries.iter().map(|d| d.id).collect());
        match page.next_after {
            Some(n) => {
                assert_eq!(Some(n), page.deliveries.last().map(|d| d.id));
                after = Some(n);
            }
            None => return pages,
        }
        assert!(pages.len() < 100, "the cursor does not move");
    }
}

async fn delivery_list_is_newest_first_across_shards_without_duplicates_or_gaps(s: &Stores) {
    let ep = EndpointId::new();
    let all = history(s, ep, 90).await;
    // Another endpoint's deliveries are not listed.
    history(s, EndpointId::new(), 5).await;
    let pages = collect_pages(s, ep, 30, None).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [30, 30, 30]);
    let listed: Vec<DeliveryId> = pages.concat();
    assert_eq!(listed, all.iter().map(|d| d.id).collect::<Vec<_>>());
    let first = s.deliveries.list(ep, 1, None, None).await.expect("list");
    assert_eq!(first.deliveries, all[..1]);
    let empty = s
        .deliveries
        .list(EndpointId::new(), 30, None, None)
        .await
        .expect("list");
    assert!(empty.deliveries.is_empty() && empty.next_after.is_none());
}

async fn delivery_list_state_filter_pages_exactly(s: &Stores) {
    let ep = EndpointId::new();
    let all = history(s, ep, 45).await;
    let mut delivered = Vec::new();
    for (i, d) in all.iter().enumerate() {
        if i % 3 == 0 {
            let mut done = d.clone();
            done.state = DeliveryState::Delivered;
            done.attempts = 1;
            s.deliveries
                .save(&done, Expected::of(d, true))
                .await
                .expect("save");
            delivered.push(d.id);
        }
    }
    let pages = collect_pages(s, ep, 7, Some(DeliveryState::Delivered)).await;
    assert_eq!(pages.concat(), delivered);
    let pending = collect_pages(s, ep, 10, Some(DeliveryState::Pending)).await;
    let pending: Vec<_> = pending.concat();
    assert_eq!(pending.len(), 30);
    assert!(pending.iter().all(|id| !delivered.contains(id)));
    assert!(pending.windows(2).all(|w| w[0] > w[1]), "newest first");
    let failed = s
        .deliveries
        .list(ep, 10, None, Some(DeliveryState::Failed))
        .await
        .expect("list");
    assert!(failed.deliveries.is_empty() && failed.next_after.is_none());
}

async fn delivery_range_is_inclusive_and_newest_first(s: &Stores) {
    let ep = EndpointId::new();
    let all = history(s, ep, 20).await;
    // Oldest first: all[19] is the oldest.
    let since = all[14].created_at;
    let until = all[4].created_at;
    let expected: Vec<DeliveryId> = all
        .iter()
        .filter(|d| d.created_at >= since && d.created_at <= until)
        .map(|d| d.id)
        .collect();
    assert!(expected.len() >= 10);
    let got: Vec<DeliveryId> = s
        .deliveries
        .range(ep, since, until)
        .await
        .expect("range")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(got, expected);
    let none = s
        .deliveries
        .range(ep, until + ms(100_000), until + ms(200_000))
        .await
        .expect("range");
    assert!(none.is_empty());
}

async fn delivery_past_retention_is_neither_listed_nor_got(s: &Stores) {
    // Retention is one hour here: TTL deletion lags by days, so reads must leave it out.
    let ep = EndpointId::new();
    let expired = delivery_at(ep, time::now() - TimeDelta::hours(2), false);
    let live = delivery_at(ep, time::now() - TimeDelta::minutes(1), false);
    for d in [&expired, &live] {
        s.deliveries.save(d, Expected::New).await.expect("save");
    }
    assert_eq!(s.deliveries.get(ep, expired.id).await.expect("get"), None);
    assert_eq!(
        s.deliveries.get(ep, live.id).await.expect("get"),
        Some(live.clone())
    );
    let page = s.deliveries.list(ep, 10, None, None).await.expect("list");
    assert_eq!(
        page.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![live.id]
    );
    assert!(page.next_after.is_none());
    let range = s
        .deliveries
        .range(ep, time::now() - TimeDelta::hours(3), time::now())
        .await
        .expect("range");
    assert_eq!(
        range.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![live.id]
    );
    let many = s
        .deliveries
        .get_many(&[(ep, expired.id), (ep, live.id)])
        .await
        .expect("get_many");
    assert_eq!(many.iter().map(|d| d.id).collect::<Vec<_>>(), vec![live.id]);
    // A cursor saved before the horizon passed it: an empty last page, not an error.
    let past = s
        .deliveries
        .list(ep, 10, Some(expired.id), None)
        .await
        .expect("a cursor from before the horizon");
    assert!(past.deliveries.is_empty() && past.next_after.is_none());
}

async fn delivery_sweep_finds_only_pending_and_reschedules(s: &Stores) {
    let now = time::now();
    let ep = EndpointId::new();
    let with = |sweep_at: Option<Timestamp>, state: DeliveryState, late: bool, back: i64| {
        let mut d = delivery_at(ep, now - ms(back), late);
        d.sweep_at = sweep_at;
        d.state = state;
        d
    };
    let due = with(Some(now - ms(500)), DeliveryState::Pending, false, 10);
    let later = with(
        Some(now + TimeDelta::hours(1)),
        DeliveryState::Pending,
        true,
        10,
    );
    let done = with(Some(now - ms(500)), DeliveryState::Delivered, false, 20);
    let inflight = with(None, DeliveryState::Pending, true, 20);
    for d in [&due, &later, &done, &inflight] {
        s.deliveries.save(d, Expected::New).await.expect("save");
    }
    let found = s.deliveries.due_for_sweep(now, 100).await.expect("sweep");
    assert_eq!(
        found,
        [SweepEntry {
            message: due.message(),
            sweep_at: due.sweep_at.expect("set"),
        }]
    );
    let far = now + TimeDelta::days(1);
    let mut everything: Vec<DeliveryId> = s
        .deliveries
        .due_for_sweep(far, 100)
        .await
        .expect("sweep")
        .iter()
        .map(|e| e.message.delivery_id)
        .collect();
    everything.sort();
    let mut pending = vec![due.id, later.id];
    pending.sort();
    assert_eq!(
        everything, pending,
        "only pending deliveries with a sweep_at"
    );
    assert_eq!(
        s.deliveries
            .due_for_sweep(far, 1)
            .await
            .expect("sweep")
            .len(),
        1
    );

    let moved_to = now + TimeDelta::minutes(15);
    s.deliveries
        .reschedule_sweep(&found[0], moved_to)
        .await
        .expect("reschedule");
    assert!(
        s.deliveries
            .due_for_sweep(now, 100)
            .await
            .expect("sweep")
            .is_empty()
    );
    let got = s
        .deliveries
        .get(ep, due.id)
        .await
        .expect("get")
        .expect("delivery");
    assert_eq!(got.sweep_at, Some(moved_to));
    assert_eq!(
        got,
        Delivery {
            sweep_at: Some(moved_to),
            ..due.clone()
        }
    );
    // A stale entry (its sweep_at moved since) changes nothing.
    s.deliveries
        .reschedule_sweep(&found[0], now + TimeDelta::minutes(30))
        .await
        .expect("stale reschedule");
    assert_eq!(
        s.deliveries
            .get(ep, due.id)
            .await
            .expect("get")
            .expect("delivery")
            .sweep_at,
        Some(moved_to)
    );
    // Once delivered it leaves the sweep, even with its sweep_at still set.
    let delivered = Delivery {
        state: DeliveryState::Delivered,
        attempts: 1,
        ..got.clone()
    };
    s.deliveries
        .save(&delivered, Expected::of(&got, true))
        .await
        .expect("save");
    let left: Vec<DeliveryId> = s
        .deliveries
        .due_for_sweep(far, 100)
        .await
        .expect("sweep")
        .iter()
        .map(|e| e.message.delivery_id)
        .collect();
    assert_eq!(left, [later.id]);
    s.deliveries
        .reschedule_sweep(
            &SweepEntry {
                message: delivered.message(),
                sweep_at: moved_to,
            },
            far,
        )
        .await
        .expect("reschedule a delivered one");
    assert_eq!(
        s.deliveries.get(ep, due.id).await.expect("get"),
        Some(delivered)
    );
    // An in-flight delivery given a sweep_at joins it.
    let mut parked = inflight.clone();
    parked.sweep_at = Some(now - ms(1));
    s.deliveries
        .save(&parked, Expected::of(&inflight, true))
        .await
        .expect("save");
    let due_now: Vec<_> = s
        .deliveries
        .due_for_sweep(now, 100)
        .await
        .expect("sweep")
        .iter()
        .map(|e| e.message.delivery_id)
        .collect();
    assert_eq!(due_now, [inflight.id]);
}

// ---- EventStore ----

async fn event_create_get_and_conflict(s: &Stores) {
    let mut e = Event::new(
        ORG,
        "invoice.paid",
        r#"{"big":12345678901234567890,"f":1.50}"#.into(),
        time::now(),
    );
    e.idempotency_key = Some("k-1".into());
    e.targets = vec![EndpointId::new(), EndpointId::new()];
    e.subject_endpoint = Some(EndpointId::new());
    s.events.create(&e).await.expect("create");
    assert!(is_conflict(s.events.create(&e).await));
    let got = s.events.get(ORG, e.id).await.expect("get");
    assert_eq!(got, Some(e.clone()));
    assert_eq!(
        got.map(|g| g.payload),
        Some(r#"{"big":12345678901234567890,"f":1.50}"#.to_owned()),
        "the payload byte for byte"
    );
    assert_eq!(s.events.get(OTHER_ORG, e.id).await.expect("get"), None);
    assert_eq!(s.events.get(ORG, EventId::new()).await.expect("get"), None);
}

/// The DynamoDB adapter stores payloads over 512 bytes deflated: every read path gives the
/// text back byte for byte, whatever its size, key order, escapes or non-ASCII.
async fn event_long_payloads_come_back_byte_for_byte(s: &Stores) {
    let item = r#"{"id":"li_01J8","amount":4200,"note":"caf\u00e9 \"x\" ünïcødé ✓","qty":1.50},"#;
    let mut published = Vec::new();
    for repeats in [8usize, 60, 1000] {
        let payload = format!(
            r#"{{"z":1,"a":[{}]}}"#,
            item.repeat(repeats).trim_end_matches(',')
        );
        let event = Event::new(ORG, "invoice.long", payload, time::now());
        s.events.create(&event).await.expect("create");
        published.push(event);
    }
    for e in &published {
        let got = s.events.get(ORG, e.id).await.expect("get");
        assert_eq!(got.as_ref().map(|g| &g.payload), Some(&e.payload));
    }
    let listed = s
        .events
        .list(
            ORG,
            &EventQuery {
                limit: 10,
                event_type: Some("invoice.long".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list")
        .0;
    // Newest first by id (ids made in one millisecond order by their random part).
    let mut want = published.clone();
    want.sort_by_key(|e| std::cmp::Reverse(e.id));
    assert_eq!(listed, want, "listed newest first with their payloads");
    let ep = endpoint(ORG);
    s.endpoints.create(&ep).await.expect("endpoint");
    let msgs: Vec<DeliveryMessage> = published
        .iter()
        .map(|e| Delivery::first(e, ep.id, 8).message())
        .collect();
    let loaded = s.reader.load(&msgs).await.expect("load");
    for e in &published {
        assert_eq!(loaded.events.get(&e.id), Some(e), "the consumer's read");
    }
}

async fn list_all(s: &Stores, q: EventQuery) -> Vec<EventId> {
    let mut out = Vec::new();
    let mut q = q;
    loop {
        let (page, next) = s.events.list(ORG, &q).await.expect("list");
        assert!(page.len() <= q.limit);
        out.extend(page.iter().map(|e| e.id));
        match next {
            Some(n) => {
                assert_eq!(Some(n), page.last().map(|e| e.id));
                q.after = Some(n);
            }
            None => return out,
        }
        assert!(out.len() < 10_000, "the cursor does not move");
    }
}

async fn event_list_filters_and_cursor(s: &Stores) {
    let base = time::now() - TimeDelta::minutes(30);
    let types = [
        "invoice.paid",
        "invoice.failed",
        "customer.created",
        "invoicex.paid",
        "capy.ping",
        "capy.endpoint.failing",
    ];
    let mut all = Vec::new();
    for i in 0..24 {
        let e = event_at(types[i % 6], base + TimeDelta::seconds(i as i64), false);
        s.events.create(&e).await.expect("create");
        all.push(e);
    }
    let mut foreign = Event::new(OTHER_ORG, "invoice.paid", "{}".into(), base);
    foreign.id = EventId::highest_at(base + TimeDelta::seconds(3));
    s.events.create(&foreign).await.expect("create");
    all.sort_by_key(|d| std::cmp::Reverse(d.id));
    let ids = |f: &dyn Fn(&Event) -> bool| -> Vec<EventId> {
        all.iter().filter(|e| f(e)).map(|e| e.id).collect()
    };
    let q = |limit: usize| EventQuery {
        limit,
        ..Default::default()
    };

    assert_eq!(list_all(s, q(50)).await, ids(&|_| true), "newest first");
    for limit in [1, 5, 23] {
        assert_eq!(
            list_all(s, q(limit)).await,
            ids(&|_| true),
            "pages of {limit}"
        );
    }
    let (one, next) = s.events.list(ORG, &q(24)).await.expect("list");
    assert_eq!((one.len(), next), (24, None));
    assert_eq!(
        list_all(
            s,
            EventQuery {
                event_type: Some("invoice.paid".into()),
                ..q(2)
            }
        )
        .await,
        ids(&|e| e.event_type == "invoice.paid")
    );
    assert_eq!(
        list_all(
            s,
            EventQuery {
                event_type: Some("invoice.*".into()),
                ..q(4)
            }
        )
        .await,
        ids(&|e| e.event_type.starts_with("invoice.")),
        "a prefix wildcard, not invoicex."
    );
    for (pattern, system) in [("*", false), ("capy.*", true)] {
        assert_eq!(
            list_all(
                s,
                EventQuery {
                    event_type: Some(pattern.into()),
                    ..q(5)
                }
            )
            .await,
            ids(&|e| e.event_type.starts_with("capy.") == system),
            "`*` is every type outside capy., as in subscriptions"
        );
    }
    let (since, until) = (all[17].created_at, all[6].created_at);
    assert_eq!(
        list_all(
            s,
            EventQuery {
                since: Some(since),
                until: Some(until),
                ..q(3)
            }
        )
        .await,
        ids(&|e| e.created_at >= since && e.created_at <= until),
        "since and until are inclusive"
    );
    assert_eq!(
        list_all(
            s,
            EventQuery {
                since: Some(since),
                event_type: Some("customer.*".into()),
                ..q(1)
            }
        )
        .await,
        ids(&|e| e.created_at >= since && e.event_type == "customer.created")
    );
    // A cursor from before the window's start: an empty page, not an error.
    let (page, next) = s
        .events
        .list(
            ORG,
            &EventQuery {
                since: Some(all[6].created_at),
                after: Some(all[17].id),
                ..q(5)
            },
        )
        .await
        .expect("a cursor older than since");
    assert_eq!((page.len(), next), (0, None));
    assert!(
        list_all(
            s,
            EventQuery {
                event_type: Some("nothing.here".into()),
                ..q(3)
            }
        )
        .await
        .is_empty()
    );
}

async fn event_pages_and_finish_fan_out(s: &Stores) {
    let e = Event::new(ORG, "invoice.paid", "{}".into(), time::now());
    s.events.create(&e).await.expect("create");
    let (a, b, c) = (EndpointId::new(), EndpointId::new(), EndpointId::new());
    let p0 = FanOutPage {
        event_id: e.id,
        page: 0,
        endpoints: vec![a, b],
        cursor: Some(b),
        last: false,
        total: 2,
    };
    let p1 = FanOutPage {
        event_id: e.id,
        page: 1,
        endpoints: vec![c],
        cursor: None,
        last: true,
        total: 3,
    };
    s.events.put_page(&p0).await.expect("page 0");
    s.events.put_page(&p1).await.expect("page 1");
    assert!(
        is_conflict(s.events.put_page(&p0).await),
        "a page is written once"
    );
    assert_eq!(s.events.pages(e.id).await.expect("pages"), [p0, p1]);
    assert!(
        s.events
            .pages(EventId::new())
            .await
            .expect("pages")
            .is_empty()
    );
    s.events.finish_fan_out(ORG, e.id, 3).await.expect("finish");
    let got = s.events.get(ORG, e.id).await.expect("get").expect("event");
    assert_eq!(
        (got.fan_out.state, got.fan_out.endpoints),
        (FanOutState::Done, 3)
    );
    assert_eq!(got.payload, e.payload);
    assert!(is_conflict(
        s.events.finish_fan_out(ORG, EventId::new(), 1).await
    ));
    assert!(is_conflict(
        s.events.finish_fan_out(OTHER_ORG, e.id, 1).await
    ));
}

async fn event_extra_recipients(s: &Stores) {
    let e = EventId::new();
    let (a, b) = (EndpointId::new(), EndpointId::new());
    for ep in [b, a, b] {
        s.events.add_recipient(e, ep).await.expect("add");
    }
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(
        s.events.extra_recipients(e).await.expect("recipients"),
        expected
    );
    assert!(
        s.events
            .extra_recipients(EventId::new())
            .await
            .expect("none")
            .is_empty()
    );
}

async fn event_past_retention_is_neither_listed_nor_got(s: &Stores) {
    let e = event_at("invoice.paid", time::now() - TimeDelta::seconds(2), false);
    s.events.create(&e).await.expect("create");
    assert_eq!(s.events.get(ORG, e.id).await.expect("get"), None);
    let (listed, next) = s
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
    assert!(listed.is_empty() && next.is_none());
    // Nor read by the consumer: its deliveries are past retention too.
    let msg = Delivery::first(&e, EndpointId::new(), 8).message();
    let loaded = s.reader.load(&[msg]).await.expect("load");
    assert!(loaded.events.is_empty(), "{:?}", loaded.events.keys());
}

// ---- IdempotencyStore ----

fn claim_record() -> PublishRecord {
    PublishRecord {
        request_hash: format!("{:016x}", rand::random::<u64>()),
        event_id: EventId::new(),
        created_at: time::now(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

async fn idempotency_claim_existing_release(s: &Stores) {
    let (r1, r2, r3) = (claim_record(), claim_record(), claim_record());
    let idem = &s.idempotency;
    assert_eq!(
        idem.claim(ORG, "k", &r1, HOUR).await.expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        idem.claim(ORG, "k", &r2, HOUR).await.expect("claim"),
        Claim::Existing(r1.clone())
    );
    assert_eq!(
        idem.claim(OTHER_ORG, "k", &r2, HOUR).await.expect("claim"),
        Claim::Claimed,
        "keys are per organization"
    );
    assert_eq!(
        idem.claim(ORG, "k2", &r2, HOUR).await.expect("claim"),
        Claim::Claimed
    );
    // Only the claim of that event is released.
    idem.release(ORG, "k", r2.event_id).await.expect("release");
    assert_eq!(
        idem.claim(ORG, "k", &r3, HOUR).await.expect("claim"),
        Claim::Existing(r1.clone())
    );
    idem.release(ORG, "k", r1.event_id).await.expect("release");
    assert_eq!(
        idem.claim(ORG, "k", &r3, HOUR).await.expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        idem.claim(ORG, "k", &r1, HOUR).await.expect("claim"),
        Claim::Existing(r3)
    );
    idem.release(ORG, "never-claimed", r1.event_id)
        .await
        .expect("release nothing");
}

async fn idempotency_an_expired_claim_is_as_good_as_none(s: &Stores) {
    let (r1, r2, r3) = (claim_record(), claim_record(), claim_record());
    let idem = &s.idempotency;
    assert_eq!(
        idem.claim(ORG, "k", &r1, Duration::ZERO)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    // DynamoDB deletes expired items days late, if at all (moto never): the claim's own
    // expiry decides. DynamoDB's TTL has one-second resolution, hence the wait of up to 1 s.
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        match idem.claim(ORG, "k", &r2, HOUR).await.expect("claim") {
            Claim::Claimed => break,
            Claim::Existing(r) => assert_eq!(r, r1, "only the expired claim stands in the way"),
        }
        assert!(
            Instant::now() < end,
            "the expired claim still counts after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        idem.claim(ORG, "k", &r3, HOUR).await.expect("claim"),
        Claim::Existing(r2),
        "the new claim is live"
    );
}

// ---- ApiKeyStore ----

async fn api_keys_put_and_get(s: &Stores) {
    let hash = format!("{:064x}", rand::random::<u128>());
    let mut r = ApiKeyRecord {
        key_hash: hash.clone(),
        organization_id: ORG.into(),
        project_id: Some("proj_1".into()),
        created_at: time::now(),
        revoked_at: None,
    };
    s.keys.put(&r).await.expect("put");
    assert_eq!(s.keys.get(&hash).await.expect("get"), Some(r.clone()));
    assert_eq!(s.keys.get("0000").await.expect("get"), None);
    r.revoked_at = Some(time::now());
    s.keys.put(&r).await.expect("put again");
    assert_eq!(s.keys.get(&hash).await.expect("get"), Some(r));
}

// ---- DeliveryReader ----

async fn reader_loads_a_batch_in_one_go(s: &Stores) {
    let event = Event::new(ORG, "invoice.paid", r#"{"n":1}"#.into(), time::now());
    s.events.create(&event).await.expect("event");
    // 60 endpoints: 121 keys, more than one BatchGetItem holds.
    let mut endpoints = Vec::new();
    for _ in 0..60 {
        let e = endpoint(ORG);
        s.endpoints.create(&e).await.expect("endpoint");
        endpoints.push(e);
    }
    let mut stored = HashSet::new();
    let mut msgs: Vec<DeliveryMessage> = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let d = Delivery::first(&event, e.id, 8);
        // Half have had their first attempt; the rest have no item yet.
        if i % 2 == 0 {
            s.deliveries
                .save(&d, Expected::New)
                .await
                .expect("delivery");
            stored.insert(d.id);
        }
        msgs.push(d.message());
    }
    msgs.push(msgs[0].clone());
    // A message naming another organization finds neither its endpoint nor its event.
    let foreign = endpoint(OTHER_ORG);
    s.endpoints.create(&foreign).await.expect("endpoint");
    let mut stray = Delivery::first(&event, foreign.id, 8).message();
    stray.organization_id = "org_conf_nobody".into();
    msgs.push(stray);

    let loaded = s.reader.load(&msgs).await.expect("load");
    assert_eq!(
        loaded.deliveries.keys().copied().collect::<HashSet<_>>(),
        stored
    );
    assert!(
        loaded
            .deliveries
            .values()
            .all(|d| *d == Delivery::first(&event, d.endpoint_id, 8))
    );
    assert_eq!(
        loaded.endpoints.keys().copied().collect::<BTreeSet<_>>(),
        endpoints.iter().map(|e| e.id).collect::<BTreeSet<_>>()
    );
    assert!(
        endpoints
            .iter()
            .all(|e| loaded.endpoints.get(&e.id) == Some(e))
    );
    assert_eq!(loaded.events.len(), 1);
    assert_eq!(loaded.events.get(&event.id), Some(&event));
    let empty = s.reader.load(&[]).await.expect("load nothing");
    assert!(empty.deliveries.is_empty() && empty.endpoints.is_empty() && empty.events.is_empty());
}

// ---- PortalSessionStore ----

async fn portal_sessions_create_get_revoke(s: &Stores) {
    let now = time::now();
    let r = PortalSessionRecord {
        id: PortalSessionId::new(),
        token_hash: format!("{:064x}", rand::random::<u128>()),
        organization_id: ORG.into(),
        capabilities: vec![Capability::Read, Capability::Replay],
        created_at: now,
        expires_at: now + TimeDelta::hours(1),
        revoked_at: None,
    };
    let ps = &s.portal_sessions;
    ps.create(&r).await.expect("create");
    assert!(is_conflict(ps.create(&r).await));
    assert_eq!(ps.get(r.id).await.expect("get"), Some(r.clone()));
    assert_eq!(ps.get(PortalSessionId::new()).await.expect("get"), None);
    assert!(
        !ps.revoke(OTHER_ORG, r.id, now).await.expect("revoke"),
        "another organization's"
    );
    assert_eq!(
        ps.get(r.id).await.expect("get").and_then(|g| g.revoked_at),
        None
    );
    let (t1, t2) = (now + ms(10), now + ms(20));
    assert!(ps.revoke(ORG, r.id, t1).await.expect("revoke"));
    assert!(ps.revoke(ORG, r.id, t2).await.expect("revoke again"));
    assert_eq!(
        ps.get(r.id).await.expect("get"),
        Some(PortalSessionRecord {
            revoked_at: Some(t1),
            ..r
        }),
        "the first revocation time stays"
    );
    assert!(
        !ps.revoke(ORG, PortalSessionId::new(), t1)
            .await
            .expect("revoke")
    );
}

// ---- OpsMarkerStore ----

async fn markers_claim_once_and_count_in_windows(s: &Stores) {
    let m = &s.markers;
    let now = time::now();
    let minute = Duration::from_secs(60);
    let scope = format!("ep_{:016x}", rand::random::<u64>());
    let (first, second) = (EventId::new(), EventId::new());
    let claim = |marker: &'static str, scope: String, at: Timestamp, event: EventId| async move {
        m.claim(&scope, marker, at, minute, event)
            .await
            .expect("claim")
    };
    assert_eq!(
        claim("failing", scope.clone(), now, first).await,
        Marked::Claimed
    );
    // A retry of this very claim (its answer lost) is still this call's.
    assert_eq!(
        claim("failing", scope.clone(), now, first).await,
        Marked::Claimed
    );
    // Another caller, even in the same millisecond, is told whose event the claim is.
    assert_eq!(
        claim("failing", scope.clone(), now, second).await,
        Marked::Held(Some(first))
    );
    assert_eq!(
        claim(
            "failing",
            scope.clone(),
            now + TimeDelta::seconds(1),
            second
        )
        .await,
        Marked::Held(Some(first))
    );
    assert_eq!(
        claim("disabled", scope.clone(), now, second).await,
        Marked::Claimed,
        "per marker"
    );
    assert_eq!(
        claim("failing", format!("{scope}-other"), now, second).await,
        Marked::Claimed,
        "per scope"
    );
    assert_eq!(
        claim(
            "failing",
            scope.clone(),
            now + TimeDelta::seconds(62),
            second
        )
        .await,
        Marked::Claimed,
        "an expired claim is as good as none"
    );
    assert_eq!(
        claim(
            "failing",
            scope.clone(),
            now + TimeDelta::seconds(63),
            first
        )
        .await,
        Marked::Held(Some(second))
    );

    let window = Duration::from_secs(600);
    let scope = &scope;
    let count = |at: Timestamp, event: EventId| async move {
        m.count_in_window(scope, "dlq", at, window, event)
            .await
            .expect("count")
    };
    assert_eq!(
        count(now, first).await,
        WindowCount::Opened { previous: None }
    );
    let counted_in_first = WindowCount::Counted {
        event: Some(first),
        started_at: Some(now),
    };
    assert_eq!(
        count(now + TimeDelta::minutes(1), second).await,
        counted_in_first
    );
    assert_eq!(
        count(now + TimeDelta::minutes(9), second).await,
        counted_in_first
    );
    let reopened = now + TimeDelta::minutes(11);
    assert_eq!(
        count(reopened, second).await,
        WindowCount::Opened {
            previous: Some(WindowTally {
                started_at: now,
                count: 3,
            }),
        }
    );
    assert_eq!(
        count(reopened + TimeDelta::minutes(1), first).await,
        WindowCount::Counted {
            event: Some(second),
            started_at: Some(reopened),
        }
    );
}

// ---- JobStore ----

async fn jobs_hold_their_endpoint_slot_and_save_by_version(s: &Stores) {
    let jobs = &s.jobs;
    let now = time::now();
    let params = ReplayParams {
        since: now - TimeDelta::hours(1),
        until: now,
        states: vec![DeliveryState::Failed],
        event_types: Vec::new(),
    };
    let ep = EndpointId::new();
    let first = Job::replay(ORG, ep, params.clone(), 3, now);
    jobs.create(&first).await.expect("create");
    jobs.create(&first)
        .await
        .expect("the same job again (an SDK retry) changes nothing");
    assert!(
        is_conflict(
            jobs.create(&Job {
                matched: 9,
                ..first.clone()
            })
            .await
        ),
        "another job under an existing id"
    );
    let second = Job::replay(ORG, ep, params.clone(), 0, now);
    assert!(
        is_conflict(jobs.create(&second).await),
        "the endpoint's slot is taken"
    );
    assert_eq!(jobs.get(ORG, second.id).await.expect("get"), None);
    assert_eq!(
        jobs.get(ORG, first.id).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(jobs.get(OTHER_ORG, first.id).await.expect("get"), None);

    let running = Job {
        state: JobState::Running,
        processed: 1,
        version: 1,
        ..first.clone()
    };
    jobs.save(&running).await.expect("save");
    jobs.save(&running)
        .await
        .expect("the same write again (an SDK retry) changes nothing");
    assert!(
        is_conflict(
            jobs.save(&Job {
                processed: 2,
                ..running.clone()
            })
            .await
        ),
        "another write that read version 0"
    );
    assert!(
        is_conflict(
            jobs.save(&Job {
                version: 5,
                ..running.clone()
            })
            .await
        ),
        "versions move one at a time"
    );
    assert!(is_conflict(jobs.create(&second).await), "still running");
    let done = Job {
        state: JobState::Succeeded,
        processed: 3,
        finished_at: Some(now + ms(5)),
        version: 2,
        ..running.clone()
    };
    jobs.save(&done).await.expect("finish");
    assert_eq!(
        jobs.get(ORG, first.id).await.expect("get"),
        Some(done.clone())
    );
    jobs.create(&second)
        .await
        .expect("the slot is free once the job finished");
    // A later write of the ended job (its announcement recorded) while the next job of the
    // endpoint holds the slot: the job is written, the slot stays the next job's.
    let mut announced = done.clone();
    announced.version += 1;
    announced.announced = true;
    jobs.save(&announced)
        .await
        .expect("a later write of an ended job");
    assert_eq!(jobs.get(ORG, first.id).await.expect("get"), Some(announced));
    assert!(
        is_conflict(
            jobs.create(&Job::replay(
                ORG,
                second.endpoint_id,
                params.clone(),
                0,
                now
            ))
            .await
        ),
        "the slot is still the next job's"
    );
    assert!(
        is_conflict(
            jobs.save(&Job {
                version: 1,
                ..Job::replay(ORG, EndpointId::new(), params.clone(), 0, now)
            })
            .await
        ),
        "no such job"
    );

    let mut ids = vec![first.id, second.id];
    for _ in 0..3 {
        let j = Job::replay(ORG, EndpointId::new(), params.clone(), 0, now);
        jobs.create(&j).await.expect("create");
        ids.push(j.id);
    }
    jobs.create(&Job::replay(OTHER_ORG, EndpointId::new(), params, 0, now))
        .await
        .expect("create");
    ids.sort_by_key(|id| std::cmp::Reverse(*id));
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = jobs.list(ORG, 2, after).await.expect("list");
        assert!(page.len() <= 2);
        listed.extend(page.iter().map(|j| j.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(listed.len() <= ids.len(), "the cursor does not move");
    }
    assert_eq!(listed, ids, "newest first, this organization's only");
}

// ---- DynamoDB only: what a crash leaves behind, written by hand ----

/// A replay slot is taken and freed by single writes around the job's; a crash between them
/// leaves a slot naming a job that ended or was never written, and the next replay of the
/// endpoint takes it over (once a creation under way has had `SLOT_SETTLING`).
#[tokio::test]
async fn a_replay_slot_left_behind_by_a_crash_is_taken_over() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let client = moto_client();
    let name = format!("conformance-{:016x}", rand::random::<u64>());
    let table = Table::new(client.clone(), name.clone()).with_retention(RETENTION);
    table.ensure().await.expect("create the table");
    let now = time::now();
    let params = ReplayParams {
        since: now - TimeDelta::hours(1),
        until: now,
        states: vec![DeliveryState::Failed],
        event_types: Vec::new(),
    };
    let leave_slot = |ep: EndpointId, job: JobId, taken_at: Option<Timestamp>| {
        let put = client
            .put_item()
            .table_name(&name)
            .item("pk", S(format!("ORG#{ORG}#JOB")))
            .item("sk", S(format!("SLOT#{ep}")))
            .item("job_id", S(job.to_string()));
        let put = match taken_at {
            Some(at) => put.item("taken_at", S(time::format(&at))),
            None => put,
        };
        async move { put.send().await.expect("put a slot by hand") }
    };
    let jobs: &dyn JobStore = &table;

    // A creation that died after taking the slot: refused while it may still be under way…
    let ep = EndpointId::new();
    leave_slot(ep, JobId::new(), Some(now)).await;
    let job = Job::replay(ORG, ep, params.clone(), 0, now);
    assert!(is_conflict(jobs.create(&job).await), "a creation under way");
    // …taken over once it has settled, and then held by the new job.
    leave_slot(ep, JobId::new(), Some(now - TimeDelta::seconds(31))).await;
    jobs.create(&job)
        .await
        .expect("the settled slot is taken over");
    assert!(
        is_conflict(
            jobs.create(&Job::replay(ORG, ep, params.clone(), 0, now))
                .await
        ),
        "the slot is the new job's"
    );

    // A job that ended but whose slot was never given back.
    let ended = Job {
        state: JobState::Succeeded,
        finished_at: Some(now),
        version: 1,
        ..job.clone()
    };
    jobs.save(&ended).await.expect("end the job");
    leave_slot(ep, job.id, Some(now)).await;
    let next = Job::replay(ORG, ep, params.clone(), 0, now);
    jobs.create(&next)
        .await
        .expect("an ended job's slot is taken over");

    // A slot from before `taken_at` was written, naming a job that does not exist.
    let old = EndpointId::new();
    leave_slot(old, JobId::new(), None).await;
    let taker = Job::replay(ORG, old, params.clone(), 0, now);
    jobs.create(&taker)
        .await
        .expect("an old slot of no job is taken over");
    // …and one naming a job that is still queued holds.
    leave_slot(old, taker.id, None).await;
    assert!(
        is_conflict(
            jobs.create(&Job::replay(ORG, old, params.clone(), 0, now))
                .await
        ),
        "an old slot of an active job"
    );

    // Ending a job deletes its slot (not only lets the next job take it over).
    let slot_of = |ep: EndpointId| {
        let get = client
            .get_item()
            .table_name(&name)
            .key("pk", S(format!("ORG#{ORG}#JOB")))
            .key("sk", S(format!("SLOT#{ep}")))
            .consistent_read(true);
        async move { get.send().await.expect("get the slot").item }
    };
    assert!(slot_of(old).await.is_some());
    jobs.save(&Job {
        state: JobState::Canceled,
        finished_at: Some(now),
        version: 1,
        ..taker
    })
    .await
    .expect("end it");
    assert_eq!(slot_of(old).await, None, "freed by the job's end");
}
