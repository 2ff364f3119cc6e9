//! Which organizations this process has seen with more endpoints than one inline page.
//!
//! Such an organization's publish always goes to the fan-out consumer, so reading its first
//! endpoint page inside the request buys nothing: the hint lets the request skip that Query
//! (one read unit and one round trip fewer, and no read of `ORG#{org}` per publish). A stale
//! hint is harmless: an organization that shrank is fanned out by the consumer, exactly and
//! from a fresh read, until the hint expires; the only cost is the consumer's invocation.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::domain::time::Timestamp;

/// How long a sighting holds before the request reads the page again.
pub const LARGE_ORG_HINT: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Organizations remembered per process (least recently published forgotten first).
const CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).expect("non-zero");

pub struct LargeOrgs(Mutex<LruCache<String, Timestamp>>);

impl Default for LargeOrgs {
    fn default() -> Self {
        Self(Mutex::new(LruCache::new(CAPACITY)))
    }
}

impl LargeOrgs {
    /// Whether `org` was seen large within [`LARGE_ORG_HINT`] before `now`.
    pub fn is_large(&self, org: &str, now: Timestamp) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(org) {
            Some(at) if now - *at < LARGE_ORG_HINT && *at <= now => true,
            Some(_) => {
                seen.pop(org);
                false
            }
            None => false,
        }
    }

    pub fn saw_large(&self, org: &str, now: Timestamp) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.put(org.to_owned(), now);
    }

    /// Forget every sighting (benchmarks measure the first publish of a container).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time;

    #[test]
    fn a_sighting_holds_for_the_hint_and_then_lapses() {
        let orgs = LargeOrgs::default();
        let t0 = time::now();
        assert!(!orgs.is_large("org_a", t0));
        orgs.saw_large("org_a", t0);
        assert!(orgs.is_large("org_a", t0));
        assert!(orgs.is_large("org_a", t0 + LARGE_ORG_HINT - chrono::TimeDelta::seconds(1)));
        assert!(!orgs.is_large("org_b", t0), "per organization");
        assert!(!orgs.is_large("org_a", t0 + LARGE_ORG_HINT));
        assert!(
            !orgs.is_large("org_a", t0),
            "a lapsed sighting is forgotten, not revived by an earlier clock"
        );
    }

    #[test]
    fn a_clock_behind_the_sighting_does_not_trust_it() {
        let orgs = LargeOrgs::default();
        let t0 = time::now();
        orgs.saw_large("org_a", t0);
        assert!(!orgs.is_large("org_a", t0 - chrono::TimeDelta::seconds(1)));
    }
}
