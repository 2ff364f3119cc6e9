//! One clock and one timestamp spelling: RFC 3339 UTC with milliseconds.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds so a value survives a round trip through its text form.
pub fn now() -> Timestamp {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub fn format(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn after(t: Timestamp, d: std::time::Duration) -> Timestamp {
    t + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `t - d`, never before the Unix epoch (ids cannot spell earlier times).
pub fn before(t: Timestamp, d: std::time::Duration) -> Timestamp {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .filter(|b| *b > DateTime::UNIX_EPOCH)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Serde adapters so every stored and served time has the same shape.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

/// Durations as operators write them: `500ms`, `0s`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m, h or d)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let secs = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "duration {s:?} has unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// A duration as a person reads it, in its largest whole unit: `5 days`, `90 seconds`.
pub fn spelled(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0 => (d.as_millis() as u64, "millisecond"),
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_are_spelled_for_people() {
        assert_eq!(spelled(Duration::from_secs(5 * 86_400)), "5 days");
        assert_eq!(spelled(Duration::from_secs(3600)), "1 hour");
        assert_eq!(spelled(Duration::from_secs(90)), "90 seconds");
        assert_eq!(spelled(Duration::from_secs(120)), "2 minutes");
        assert_eq!(spelled(Duration::from_millis(500)), "500 milliseconds");
    }

    #[test]
    fn parses_operator_durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("10h"), Ok(Duration::from_secs(36_000)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn before_stops_at_the_epoch() {
        let t = DateTime::from_timestamp(1_614_265_330, 0).expect("valid");
        assert_eq!(
            before(t, Duration::from_secs(30)),
            DateTime::from_timestamp(1_614_265_300, 0).expect("valid")
        );
        assert_eq!(before(t, Duration::MAX), DateTime::UNIX_EPOCH);
        assert_eq!(
            before(t, Duration::from_secs(2_000_000_000)),
            DateTime::UNIX_EPOCH
        );
    }

    #[test]
    fn formats_with_millis_and_z() {
        let t = DateTime::from_timestamp(1_614_265_330, 0).expect("valid");
        assert_eq!(format(&t), "2021-02-25T15:02:10.000Z");
    }
}
