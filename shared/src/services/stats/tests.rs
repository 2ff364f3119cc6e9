use super::*;
use crate::domain::delivery::Attempt;
use crate::domain::ids::{DeliveryId, EventId};

fn at(s: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

fn delivery(created: &str, state: DeliveryState, durations: &[u64]) -> Delivery {
    let created_at = at(created);
    Delivery {
        id: DeliveryId::lowest_at(created_at),
        endpoint_id: EndpointId::new(),
        organization_id: "org_a".into(),
        event_id: EventId::lowest_at(created_at),
        event_type: "t".into(),
        state,
        attempts: durations.len() as u32,
        max_attempts: 5,
        next_attempt_at: None,
        delivered_at: None,
        response_status: None,
        last_error: None,
        created_at,
        updated_at: created_at,
        attempt_log: durations
            .iter()
            .enumerate()
            .map(|(i, ms)| Attempt {
                attempt: i as u32 + 1,
                started_at: created_at,
                duration_ms: *ms,
                response_status: None,
                error: None,
                response_excerpt: None,
            })
            .collect(),
        sweep_at: None,
        lease: None,
    }
}

const MONTH: Duration = Duration::from_secs(30 * 86_400);

#[test]
fn nearest_rank_percentiles() {
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&hundred, 50), Some(50));
    assert_eq!(percentile(&hundred, 95), Some(95));
    assert_eq!(percentile(&[10, 20, 30], 50), Some(20));
    assert_eq!(percentile(&[10, 20, 30], 95), Some(30));
    assert_eq!(percentile(&[7], 50), Some(7));
    assert_eq!(percentile(&[7], 95), Some(7));
    assert_eq!(percentile(&[1, 2], 50), Some(1));
    assert_eq!(percentile(&[], 50), None);
}

#[test]
fn windows_default_and_are_checked() {
    let now = at("2026-03-10T12:34:56.789Z");
    let w = Window::new(None, None, Period::Hour, now, MONTH).expect("default");
    assert_eq!(w.until, now);
    // By hour: 24 buckets, the current hour and the 23 before it.
    assert_eq!(w.since, at("2026-03-09T13:00:00Z"));
    let starts = w.starts();
    assert_eq!(starts.len(), 24);
    assert_eq!(starts[0], at("2026-03-09T13:00:00Z"));
    assert_eq!(starts[23], at("2026-03-10T12:00:00Z"));
    let by_day = Window::new(None, None, Period::Day, now, MONTH).expect("default");
    assert_eq!(by_day.since, at("2026-03-09T12:34:56.789Z"));
    assert_eq!(by_day.starts().len(), 2);
    // An explicit `since` off the hour: its bucket is the first.
    let on_the_hour = at("2026-03-10T12:00:00Z");
    let w = Window::new(None, None, Period::Hour, on_the_hour, MONTH).expect("default");
    assert_eq!(w.starts().len(), 24);
    assert_eq!(w.starts()[23], at("2026-03-10T11:00:00Z"));
    let off = Window::new(
        Some(at("2026-03-09T12:34:56.789Z")),
        None,
        Period::Hour,
        now,
        MONTH,
    )
    .expect("24 h");
    assert_eq!(off.starts().len(), 25);

    let aligned = Window::new(
        Some(at("2026-03-01T00:00:00Z")),
        Some(at("2026-03-08T00:00:00Z")),
        Period::Day,
        now,
        MONTH,
    )
    .expect("a week");
    assert_eq!(aligned.starts().len(), 7);
    assert_eq!(aligned.starts()[6], at("2026-03-07T00:00:00Z"));

    let bad = |since: &str, until: &str| {
        Window::new(Some(at(since)), Some(at(until)), Period::Hour, now, MONTH).is_err()
    };
    assert!(bad("2026-03-02T00:00:00Z", "2026-03-02T00:00:00Z"));
    assert!(bad("2026-03-02T00:00:01Z", "2026-03-02T00:00:00Z"));
    assert!(bad("2026-01-01T00:00:00Z", "2026-03-02T00:00:00Z"));
    assert!(!bad("2026-01-31T00:00:00Z", "2026-03-02T00:00:00Z"));
    assert!(bad("2026-01-30T23:59:59Z", "2026-03-02T00:00:00Z"));
    // A window wholly older than the retention: its deliveries are gone.
    assert!(bad("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"));
    assert!(!bad("2026-02-08T00:00:00Z", "2026-02-09T00:00:00Z"));
}

#[test]
fn buckets_with_known_answers() {
    use DeliveryState::*;
    let now = at("2026-03-10T03:30:00Z");
    let w = Window::new(
        Some(at("2026-03-10T00:15:00Z")),
        Some(now),
        Period::Hour,
        now,
        MONTH,
    )
    .expect("window");
    let deliveries = vec![
        // 00:00 bucket, before `since` but in its hour: counted.
        delivery("2026-03-10T00:05:00Z", Delivered, &[100]),
        delivery("2026-03-10T00:59:59.999Z", Failed, &[10, 20, 30]),
        // 01:00 bucket is empty.
        // 02:00 bucket: a pending one counts its attempts only.
        delivery("2026-03-10T02:00:00Z", Delivered, &[40, 50]),
        delivery("2026-03-10T02:30:00Z", Pending, &[60]),
        delivery("2026-03-10T02:45:00Z", Delivered, &[70]),
        // 03:00 bucket.
        delivery("2026-03-10T03:29:59Z", Failed, &[5]),
        // Outside: before the first bucket and at/after `until`.
        delivery("2026-03-09T23:59:59Z", Delivered, &[1]),
        delivery("2026-03-10T03:30:00Z", Delivered, &[1]),
    ];
    let s = bucket(&deliveries, &w);
    let got: Vec<_> = s
        .buckets
        .iter()
        .map(|b| {
            (
                time::format(&b.start),
                b.delivered,
                b.failed,
                b.attempts,
                b.p50_ms,
                b.p95_ms,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2026-03-10T00:00:00.000Z".to_owned(),
                1,
                1,
                4,
                Some(20),
                Some(100)
            ),
            ("2026-03-10T01:00:00.000Z".to_owned(), 0, 0, 0, None, None),
            (
                "2026-03-10T02:00:00.000Z".to_owned(),
                2,
                0,
                4,
                Some(50),
                Some(70)
            ),
            (
                "2026-03-10T03:00:00.000Z".to_owned(),
                0,
                1,
                1,
                Some(5),
                Some(5)
            ),
        ]
    );
    assert_eq!(
        s.totals,
        Totals {
            delivered: 3,
            failed: 2,
            attempts: 9
        }
    );
    assert_eq!(
        serde_json::to_value(&s).expect("json")["buckets"][1],
        serde_json::json!({
            "start": "2026-03-10T01:00:00.000Z", "delivered": 0, "failed": 0,
            "attempts": 0, "p50_ms": null, "p95_ms": null
        })
    );
    assert_eq!(serde_json::to_value(&s).expect("json")["period"], "hour");
}

#[test]
fn days_bucket_by_utc_day() {
    use DeliveryState::*;
    let now = at("2026-03-10T12:00:00Z");
    let w = Window::new(
        Some(at("2026-03-08T06:00:00Z")),
        Some(now),
        Period::Day,
        now,
        MONTH,
    )
    .expect("window");
    let s = bucket(
        &[
            delivery("2026-03-08T01:00:00Z", Delivered, &[3]),
            delivery("2026-03-09T23:59:59Z", Failed, &[1, 2]),
            delivery("2026-03-09T00:00:00Z", Delivered, &[9]),
        ],
        &w,
    );
    let got: Vec<_> = s
        .buckets
        .iter()
        .map(|b| (b.delivered, b.failed, b.attempts, b.p50_ms))
        .collect();
    assert_eq!(
        got,
        vec![(1, 0, 1, Some(3)), (1, 1, 3, Some(2)), (0, 0, 0, None)]
    );
}
