//! Delivery stats for the portal's charts, derived from the endpoint's deliveries.
//!
//! Nothing is maintained per delivery: zero extra writes on the delivery path. A stats
//! request reads the window's deliveries once ([`DeliveryLog::range`]: one Query per shard,
//! the 8 shards concurrently, strongly consistent) and buckets them here.
//!
//! Read cost and its limit: a Query is billed by the bytes it returns, one read unit per
//! 4 KB consistent, so a window costs about (sum of its delivery items' sizes) / 4 KB units.
//! A delivery item holds no payload; with a short attempt log it is ~0.5–1 KB, so roughly
//! 0.25 read units per delivery in the window (10,000 deliveries ≈ 2,500 units ≈ $0.0003).
//! The limit is time and memory, not money: each shard returns 1 MB per page, so a window
//! of N deliveries of ~1 KB is about N / 8,000 sequential pages per shard, and every
//! delivery is held in memory while bucketing. Past about 100,000 deliveries in a window
//! (a busy endpoint over 30 days) a request would approach API Gateway's 30 s; the way on
//! from there is per-batch aggregates written by the deliver consumer (one hourly counter
//! item per endpoint per batch, ≤ 0.1 writes per delivery), which these functions would
//! then sum instead of the deliveries.

use std::time::Duration;

use chrono::{DurationRound, TimeDelta};
use serde::Serialize;

use super::{Deps, ServiceError};
use crate::domain::delivery::{Delivery, DeliveryState};
use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn length(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::hours(1),
            Self::Day => TimeDelta::days(1),
        }
    }

    /// The start of the UTC hour or day holding `t`.
    pub fn floor(self, t: Timestamp) -> Timestamp {
        t.duration_trunc(self.length()).unwrap_or(t)
    }
}

/// The default window: the last 24 hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A checked window: buckets are whole UTC periods from the one holding `since` to the one
/// holding the instant before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: Timestamp,
    pub until: Timestamp,
    pub period: Period,
}

impl Window {
    /// `until` defaults to `now`, `since` to 24 h before `until`; `since` must be before
    /// `until`, and the window no longer than `retention` (older deliveries are gone).
    pub fn new(
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        period: Period,
        now: Timestamp,
        retention: Duration,
    ) -> Result<Self, ServiceError> {
        let until = until.unwrap_or(now);
        let day = TimeDelta::from_std(DEFAULT_WINDOW).unwrap_or(TimeDelta::days(1));
        // By hour, the default is 24 whole buckets: the current hour and the 23 before it.
        let since = since.unwrap_or_else(|| match period {
            // The hour holding the instant before `until` is the last bucket.
            Period::Hour => {
                period.floor(until - TimeDelta::milliseconds(1)) + period.length() - day
            }
            Period::Day => until - day,
        });
        if since >= until {
            return Err(ServiceError::Invalid("since must be before until".into()));
        }
        let retention_delta = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
        if until < now - retention_delta {
            return Err(ServiceError::Invalid(format!(
                "the window ends before the retention period ({} days): those deliveries are gone",
                retention.as_secs() / 86_400
            )));
        }
        if until - since > retention_delta {
            return Err(ServiceError::Invalid(format!(
                "the window may span at most the retention period ({} days)",
                retention.as_secs() / 86_400
            )));
        }
        Ok(Self {
            since,
            until,
            period,
        })
    }

    /// The start of the first bucket: what the deliveries are read from.
    pub fn first_start(&self) -> Timestamp {
        self.period.floor(self.since)
    }

    /// Every bucket's start, oldest first.
    pub fn starts(&self) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = self.first_start();
        while t < self.until {
            out.push(t);
            t += self.period.length();
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    #[serde(with = "time::rfc3339")]
    pub start: Timestamp,
    pub delivered: u64,
    pub failed: u64,
    pub attempts: u64,
    /// Over the attempt durations of the bucket's deliveries; `null` when it has none.
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub delivered: u64,
    pub failed: u64,
    pub attempts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub period: Period,
    pub buckets: Vec<Bucket>,
    pub totals: Totals,
}

/// The nearest-rank percentile (`p` in 1..=100) of ascending `sorted`: the smallest value
/// with at least p % of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(1, 100) as usize * sorted.len()).div_ceil(100);
    sorted.get(rank.max(1) - 1).copied()
}

/// Buckets `deliveries` by their `created_at` (which is their event's time): delivered and
/// failed by state (pending ones count only their attempts), attempts summed, latency
/// percentiles over every logged attempt. Every bucket of the window is present, empty
/// ones with zeros and no percentiles; deliveries outside the window are ignored.
pub fn bucket(deliveries: &[Delivery], window: &Window) -> Stats {
    let starts = window.starts();
    let first = window.first_start();
    let len_ms = window.period.length().num_milliseconds();
    let mut counts = vec![Totals::default(); starts.len()];
    let mut durations: Vec<Vec<u64>> = vec![Vec::new(); starts.len()];
    for d in deliveries {
        if d.created_at < first || d.created_at >= window.until {
            continue;
        }
        let i = ((d.created_at - first).num_milliseconds() / len_ms) as usize;
        let Some(c) = counts.get_mut(i) else { continue };
        match d.state {
            DeliveryState::Delivered => c.delivered += 1,
            DeliveryState::Failed => c.failed += 1,
            DeliveryState::Pending => {}
        }
        c.attempts += u64::from(d.attempts);
        durations[i].extend(d.attempt_log.iter().map(|a| a.duration_ms));
    }
    let mut totals = Totals::default();
    let buckets = starts
        .into_iter()
        .zip(counts)
        .zip(durations)
        .map(|((start, c), mut ms)| {
            totals.delivered += c.delivered;
            totals.failed += c.failed;
            totals.attempts += c.attempts;
            ms.sort_unstable();
            Bucket {
                start,
                delivered: c.delivered,
                failed: c.failed,
                attempts: c.attempts,
                p50_ms: percentile(&ms, 50),
                p95_ms: percentile(&ms, 95),
            }
        })
        .collect();
    Stats {
        period: window.period,
        buckets,
        totals,
    }
}

/// The stats of one of the organization's endpoints over `window` (404 if it has no such
/// endpoint). One read of the window's deliveries; see the module's note on its cost.
pub async fn endpoint_stats(
    deps: &Deps,
    org: &str,
    endpoint: EndpointId,
    window: &Window,
) -> Result<Stats, ServiceError> {
    let endpoint = super::endpoints::get(deps, org, endpoint).await?;
    let deliveries = deps
        .deliveries
        .range(endpoint.id, window.first_start(), window.until)
        .await?;
    Ok(bucket(&deliveries, window))
}

#[cfg(test)]
mod tests {
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
}
