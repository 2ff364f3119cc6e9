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
                "the window ends before the retention period ({}): those deliveries are gone",
                crate::domain::time::spelled(retention)
            )));
        }
        if until - since > retention_delta {
            return Err(ServiceError::Invalid(format!(
                "the window may span at most the retention period ({})",
                crate::domain::time::spelled(retention)
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
mod tests;
