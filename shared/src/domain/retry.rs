//! The retry schedule: when the next attempt happens, if at all.

use std::time::Duration;

/// SQS cannot hide a message for longer than this.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
pub const JITTER: f64 = 0.2;

/// Why an attempt failed, as far as the schedule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 429, or the receiver did not answer in time: back off at least `min_backoff`.
    Throttled,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `schedule[i]` is the wait before attempt `i + 1`; its length is the attempt budget.
    schedule: Vec<Duration>,
    /// Floor after a 429 or a timeout.
    pub min_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::parse("0s,5s,5m,30m,2h,5h,10h,10h").expect("the default schedule parses")
    }
}

impl RetryPolicy {
    /// Parses `RETRY_SCHEDULE`: comma-separated waits, the first before the first attempt.
    pub fn parse(s: &str) -> Result<Self, String> {
        let schedule = s
            .split(',')
            .map(crate::domain::time::parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        if schedule.is_empty() || schedule.len() > 50 {
            return Err("RETRY_SCHEDULE must list between 1 and 50 delays".into());
        }
        if let Some(d) = schedule.iter().find(|d| **d > MAX_VISIBILITY) {
            return Err(format!(
                "RETRY_SCHEDULE delay {d:?} exceeds the SQS maximum of 12h"
            ));
        }
        Ok(Self {
            schedule,
            min_backoff: Duration::from_secs(60),
        })
    }

    pub fn with_min_backoff(mut self, d: Duration) -> Self {
        self.min_backoff = d;
        self
    }

    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32
    }

    /// Where in the schedule a delivery with this many attempts and this budget stands: its
    /// attempts since its budget last started afresh (a retry or replay gives a finished
    /// delivery `attempts + schedule length`), so a second run waits as the first did.
    pub fn position(&self, attempts: u32, max_attempts: u32) -> u32 {
        self.max_attempts()
            .saturating_sub(max_attempts.saturating_sub(attempts))
    }

    /// The wait before the next attempt after `attempts_made` failed ones, or `None` when the
    /// budget is spent. `jitter` in `[-1, 1]` spreads retries by ±20 %; `retry_after` is the
    /// receiver's `Retry-After`, honoured up to the SQS maximum.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        kind: FailureKind,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let base = *self.schedule.get(attempts_made as usize)?;
        let factor = 1.0 + JITTER * jitter.clamp(-1.0, 1.0);
        let mut delay = base.mul_f64(factor);
        if let Some(ra) = retry_after {
            delay = delay.max(ra);
        }
        if kind == FailureKind::Throttled {
            delay = delay.max(self.min_backoff);
        }
        Some(delay.min(MAX_VISIBILITY))
    }
}

/// `Retry-After` as seconds (an HTTP date is rarely sent to webhook senders; ignored).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_schedule_spans_eight_attempts_over_a_day() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        let total: Duration = (1..8)
            .map(|n| {
                p.next_delay(n, FailureKind::Other, None, 0.0)
                    .expect("within budget")
            })
            .sum();
        assert_eq!(total, S(5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000));
        assert_eq!(p.next_delay(8, FailureKind::Other, None, 0.0), None);
    }

    #[test]
    fn jitter_is_twenty_percent_either_way() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_delay(2, FailureKind::Other, None, 1.0), Some(S(360)));
        assert_eq!(
            p.next_delay(2, FailureKind::Other, None, -1.0),
            Some(S(240))
        );
        assert_eq!(p.next_delay(2, FailureKind::Other, None, 7.0), Some(S(360)));
    }

    #[test]
    fn throttling_and_retry_after_lengthen_the_wait_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, FailureKind::Throttled, None, 0.0),
            Some(S(60))
        );
        assert_eq!(
            p.next_delay(1, FailureKind::Other, Some(S(120)), 0.0),
            Some(S(120))
        );
        assert_eq!(
            p.next_delay(2, FailureKind::Other, Some(S(1)), 0.0),
            Some(S(300))
        );
        assert_eq!(
            p.next_delay(1, FailureKind::Other, Some(S(86_400)), 0.0),
            Some(MAX_VISIBILITY)
        );
    }

    #[test]
    fn a_fresh_budget_starts_the_schedule_again() {
        let p = RetryPolicy::default();
        // The first run: the position is the attempt count.
        assert_eq!(
            (p.position(0, 8), p.position(3, 8), p.position(8, 8)),
            (0, 3, 8)
        );
        // Retried after 8 attempts: the budget is 16, and attempt 9 waited like attempt 1.
        assert_eq!((p.position(9, 16), p.position(12, 16)), (1, 4));
        assert_eq!(
            p.next_delay(p.position(9, 16), FailureKind::Other, None, 0.0),
            Some(S(5))
        );
        // A budget from before a longer schedule (or a pending one's extra attempt) never
        // reads before the schedule's start.
        assert_eq!((p.position(2, 30), p.position(5, 6)), (0, 7));
    }

    #[test]
    fn rejects_bad_schedules() {
        assert!(RetryPolicy::parse("").is_err());
        assert!(RetryPolicy::parse("0s,13h").is_err());
        assert!(RetryPolicy::parse("0s,five").is_err());
        assert_eq!(
            RetryPolicy::parse("0s,1s,1s").map(|p| p.max_attempts()),
            Ok(3)
        );
        assert_eq!(parse_retry_after(" 30 "), Some(S(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
