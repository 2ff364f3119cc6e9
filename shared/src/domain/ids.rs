//! Typed, prefixed, time-sortable identifiers (`ep_…`, `dlv_…`, `evt_…` + ULID).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(Ulid::new())
            }

            pub fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($prefix).ok_or(InvalidId)?;
                // Ulid::from_string accepts lowercase too; ids we issue are uppercase, keep one spelling.
                if rest.len() != 26 || rest.bytes().any(|b| b.is_ascii_lowercase()) {
                    return Err(InvalidId);
                }
                Ulid::from_string(rest).map(Self).map_err(|_| InvalidId)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|_| serde::de::Error::custom(concat!("invalid ", $prefix, " id")))
            }
        }
    };
}

prefixed_id!(EndpointId, "ep_");
prefixed_id!(DeliveryId, "dlv_");
prefixed_id!(EventId, "evt_");
prefixed_id!(JobId, "job_");
prefixed_id!(PortalSessionId, "ps_");

impl EventId {
    /// The one event the system raises for `what` at `at` (a replay job's end): raising it
    /// twice (a run that dies after publishing) names the same event and the same deliveries.
    pub fn derived(at: crate::domain::time::Timestamp, what: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(what.as_bytes());
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&digest[..10]);
        Self(Ulid::from_parts(
            at.timestamp_millis().max(0) as u64,
            u128::from_be_bytes(random),
        ))
    }
}

impl DeliveryId {
    /// The one delivery of `event` to `endpoint`: its time part is the event's, its random
    /// part a hash of both ids, so a fan-out that runs twice (a crash, a redelivered
    /// message) names the same delivery and cannot create a second one.
    pub fn for_event(event: EventId, endpoint: EndpointId) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{event}/{endpoint}"));
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&digest[..10]);
        Self(Ulid::from_parts(
            event.ulid().timestamp_ms(),
            u128::from_be_bytes(random),
        ))
    }
}

macro_rules! time_bounds {
    ($name:ident) => {
        impl $name {
            /// The smallest id issued at or after `t`: a sort-key bound for time ranges.
            pub fn lowest_at(t: crate::domain::time::Timestamp) -> Self {
                Self(Ulid::from_parts(t.timestamp_millis().max(0) as u64, 0))
            }

            /// The largest id issued at or before `t`.
            pub fn highest_at(t: crate::domain::time::Timestamp) -> Self {
                Self(Ulid::from_parts(
                    t.timestamp_millis().max(0) as u64,
                    u128::MAX,
                ))
            }

            pub fn created_at(&self) -> crate::domain::time::Timestamp {
                chrono::DateTime::from_timestamp_millis(self.0.timestamp_ms() as i64)
                    .unwrap_or_default()
            }
        }
    };
}

time_bounds!(DeliveryId);
time_bounds!(EventId);
time_bounds!(JobId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed id")]
pub struct InvalidId;

/// Organization ids come from the path and from credentials; we only bound their shape.
pub fn is_valid_org_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_is_determined_by_its_event_and_endpoint() {
        let (e, a, b) = (EventId::new(), EndpointId::new(), EndpointId::new());
        assert_eq!(DeliveryId::for_event(e, a), DeliveryId::for_event(e, a));
        assert_ne!(DeliveryId::for_event(e, a), DeliveryId::for_event(e, b));
        assert_eq!(
            DeliveryId::for_event(e, a).ulid().timestamp_ms(),
            e.ulid().timestamp_ms()
        );
        // Known answer: the scheme is part of the stored data, so it must never drift.
        let e: EventId = "evt_01JZ0000000000000000000000".parse().expect("id");
        let a: EndpointId = "ep_01JZ0000000000000000000001".parse().expect("id");
        assert_eq!(
            DeliveryId::for_event(e, a).to_string(),
            "dlv_01JZ000000WETDK3QY4MB1KDHC"
        );
    }

    #[test]
    fn time_bounds_bracket_every_id_of_that_millisecond() {
        let id = EventId::new();
        let t = id.created_at();
        assert!(EventId::lowest_at(t) <= id && id <= EventId::highest_at(t));
        assert!(EventId::highest_at(t - chrono::TimeDelta::milliseconds(1)) < id);
    }

    #[test]
    fn round_trips_and_rejects_foreign_prefixes() {
        let id = EndpointId::new();
        let s = id.to_string();
        assert!(s.starts_with("ep_") && s.len() == 29);
        assert_eq!(s.parse::<EndpointId>(), Ok(id));
        assert!(s.replace("ep_", "dlv_").parse::<DeliveryId>().is_ok());
        assert!(s.parse::<DeliveryId>().is_err());
        assert!("ep_../../etc".parse::<EndpointId>().is_err());
        assert!(
            format!("ep_{}", s[3..].to_lowercase())
                .parse::<EndpointId>()
                .is_err()
        );
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = DeliveryId(Ulid::from_parts(1_700_000_000_000, u128::MAX >> 48));
        let b = DeliveryId(Ulid::from_parts(1_700_000_000_001, 0));
        assert!(b.to_string() > a.to_string());
    }

    #[test]
    fn org_ids_are_bounded() {
        assert!(is_valid_org_id("org_2abcDEF-9"));
        assert!(!is_valid_org_id(""));
        assert!(!is_valid_org_id("org/../x"));
        assert!(!is_valid_org_id(&"a".repeat(129)));
    }
}
