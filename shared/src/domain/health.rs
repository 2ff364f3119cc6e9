//! Endpoint health, derived from the outcome counters the consumer keeps.
//!
//! - `disabled`: the endpoint is inactive (by its owner, a `410 Gone`, or 5 days of failures);
//! - `failing`: the last [`FAILING_STREAK`] or more attempts all failed;
//! - `degraded`: an attempt failed within [`DEGRADED_WINDOW`], but it is still succeeding;
//! - `healthy`: otherwise (including an endpoint that has never been called).

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::domain::endpoint::Endpoint;
use crate::domain::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Failing,
    Disabled,
}

pub const FAILING_STREAK: u32 = 5;
pub const DEGRADED_WINDOW: TimeDelta = TimeDelta::hours(24);
/// An endpoint whose attempts have all failed for this long is disabled.
pub const DISABLE_AFTER: TimeDelta = TimeDelta::days(5);

pub fn health(e: &Endpoint, now: Timestamp) -> Health {
    if !e.is_active {
        return Health::Disabled;
    }
    if e.stats.failure_streak >= FAILING_STREAK {
        return Health::Failing;
    }
    match e.stats.last_failure_at {
        Some(t) if now - t < DEGRADED_WINDOW => Health::Degraded,
        _ => Health::Healthy,
    }
}

/// True when the current failure streak has lasted long enough to stop sending. The clock
/// restarts when the owner changes the endpoint (say, re-enables it after a fix).
pub fn should_disable(e: &Endpoint, now: Timestamp) -> bool {
    should_disable_after(e, now, DISABLE_AFTER)
}

/// [`should_disable`] with the streak length from the policy (`DISABLE_AFTER` setting):
/// only once `capy.endpoint.disable_scheduled` is out for the clock, and not before the time
/// it announced (a late warning announces a full lead after itself).
pub fn should_disable_after(e: &Endpoint, now: Timestamp, disable_after: TimeDelta) -> bool {
    disable_clock(e).is_some_and(|clock| {
        e.stats.disable_scheduled_for == Some(clock)
            && now >= scheduled_disable(e, clock, disable_after)
    })
}

/// When the current failure streak started, if one is open; a disabled endpoint keeps the
/// streak open when it was disabled (as its `capy.endpoint.disabled` event says).
pub fn failing_since(e: &Endpoint) -> Option<Timestamp> {
    e.stats.failing_since
}

/// The start of the open streak's disable clock: the streak's start, or the owner's last
/// change since (a change restarts the clock, and gets its own warning).
pub fn disable_clock(e: &Endpoint) -> Option<Timestamp> {
    failing_since(e).map(|since| since.max(e.updated_at))
}

/// When the open failure streak will disable the endpoint if nothing succeeds before: the
/// same clock as [`should_disable`].
pub fn disable_at(e: &Endpoint) -> Option<Timestamp> {
    disable_at_after(e, DISABLE_AFTER)
}

/// [`disable_at`] with the streak length from the policy: the same clock as
/// [`should_disable_after`].
pub fn disable_at_after(e: &Endpoint, disable_after: TimeDelta) -> Option<Timestamp> {
    disable_clock(e)
        .filter(|_| e.is_active)
        .map(|clock| scheduled_disable(e, clock, disable_after))
}

/// The clock's disable time, or later when its warning went out late.
fn scheduled_disable(e: &Endpoint, clock: Timestamp, disable_after: TimeDelta) -> Timestamp {
    let on_time = clock + disable_after;
    match e.stats.disable_deferred_to {
        Some(to) if e.stats.disable_scheduled_for == Some(clock) => on_time.max(to),
        _ => on_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::endpoint::{DeliveryStats, SealedSecret};
    use crate::domain::ids::EndpointId;

    fn endpoint(stats: DeliveryStats, is_active: bool) -> Endpoint {
        let t = crate::domain::time::now();
        Endpoint {
            is_active,
            stats,
            ..Endpoint::new(
                EndpointId::new(),
                "org",
                "https://example.com",
                SealedSecret(String::new()),
                t,
            )
        }
    }

    #[test]
    fn classifies_by_streak_recency_and_activity() {
        let now = crate::domain::time::now();
        let fresh = DeliveryStats::default();
        assert_eq!(health(&endpoint(fresh.clone(), true), now), Health::Healthy);
        assert_eq!(health(&endpoint(fresh, false), now), Health::Disabled);

        let recent = DeliveryStats {
            failure_streak: 1,
            failing_since: Some(now),
            last_failure_at: Some(now - TimeDelta::minutes(3)),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        };
        assert_eq!(health(&endpoint(recent, true), now), Health::Degraded);

        let old = DeliveryStats {
            failure_streak: 0,
            failing_since: None,
            last_failure_at: Some(now - TimeDelta::hours(25)),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        };
        assert_eq!(health(&endpoint(old, true), now), Health::Healthy);

        let streak = DeliveryStats {
            failure_streak: FAILING_STREAK,
            failing_since: Some(now - TimeDelta::hours(1)),
            last_failure_at: Some(now),
            failing_announced: false,
            disable_scheduled_for: None,
            disable_deferred_to: None,
            disabled_at: None,
        };
        let e = endpoint(streak, true);
        assert_eq!(health(&e, now), Health::Failing);
        // Never before its warning is out for the clock.
        assert!(!should_disable(&e, e.updated_at + DISABLE_AFTER));
        let mut e = e;
        e.stats.disable_scheduled_for = disable_clock(&e);
        assert!(!should_disable(&e, now));
        // From the endpoint's own clock: `endpoint()` reads the time after `now` did, and a
        // millisecond tick in between made `now + DISABLE_AFTER` fall 1 ms short.
        assert!(should_disable(&e, e.updated_at + DISABLE_AFTER));
        assert_eq!(failing_since(&e), e.stats.failing_since);
        // The forecast is the first instant the streak disables the endpoint.
        let at = disable_at(&e).expect("forecast");
        assert!(should_disable(&e, at));
        assert!(!should_disable(&e, at - TimeDelta::milliseconds(1)));
        assert_eq!(disable_at(&endpoint(DeliveryStats::default(), true)), None);
        // Disabled: the streak stays on record, nothing is forecast.
        let disabled = Endpoint {
            is_active: false,
            ..e.clone()
        };
        assert_eq!(failing_since(&disabled), e.stats.failing_since);
        assert_eq!(disable_at(&disabled), None);

        // A late warning (announced past the clock's disable time) defers the disable to the
        // time it announced, for that clock only.
        let late = e.updated_at + DISABLE_AFTER + TimeDelta::hours(30);
        let deferred = Endpoint {
            stats: DeliveryStats {
                disable_deferred_to: Some(late),
                ..e.stats.clone()
            },
            ..e.clone()
        };
        assert_eq!(disable_at(&deferred), Some(late));
        assert!(!should_disable(
            &deferred,
            late - TimeDelta::milliseconds(1)
        ));
        assert!(should_disable(&deferred, late));
        let restarted = Endpoint {
            updated_at: e.updated_at + TimeDelta::hours(1),
            ..deferred.clone()
        };
        assert_eq!(
            disable_at(&restarted),
            Some(restarted.updated_at + DISABLE_AFTER),
            "another clock: the deferral was its predecessor's"
        );

        // A shorter streak from the policy moves both on the same clock.
        let short = TimeDelta::seconds(30);
        let at = disable_at_after(&e, short).expect("forecast");
        assert!(at < disable_at(&e).expect("forecast"));
        assert!(should_disable_after(&e, at, short));
        assert!(!should_disable_after(
            &e,
            at - TimeDelta::milliseconds(1),
            short
        ));
    }
}
