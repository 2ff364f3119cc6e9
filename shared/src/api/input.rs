//! Request bodies and query strings, parsed strictly: unknown fields, wrong types and nulls
//! are 400s that name the problem.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_EVENT_TYPES: usize = 100;
pub const MAX_EVENT_TYPE_CHARS: usize = 128;

/// Parses a JSON object body, refusing nulls for the listed fields (absent is how to omit).
pub fn json_object<T: for<'de> Deserialize<'de>>(
    content_type: Option<&str>,
    body: &[u8],
    no_null: &[&str],
) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body exceeds {MAX_BODY_BYTES} bytes"
        )));
    }
    if let Some(ct) = content_type {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::BadRequest(format!(
                "content-type must be application/json, not {essence:?}"
            )));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is required (a JSON object)".into(),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    for field in no_null {
        if map.get(*field).is_some_and(Value::is_null) {
            return Err(ApiError::BadRequest(format!("`{field}` must not be null")));
        }
    }
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// A body-less POST must not carry a body we would silently ignore.
pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    let trimmed: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if trimmed.is_empty() || trimmed == b"{}" {
        Ok(())
    } else {
        Err(ApiError::BadRequest("this request takes no body".into()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

pub const ENDPOINT_FIELDS: &[&str] = &["url", "description", "event_types", "is_active"];

pub fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

fn is_name_char(c: char, wildcard: bool) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (wildcard && c == '*')
}

pub fn check_event_type_name(name: &str, what: &str, wildcard: bool) -> Result<(), ApiError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_EVENT_TYPE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_EVENT_TYPE_CHARS} characters"
        )));
    }
    if !name.chars().all(|c| is_name_char(c, wildcard)) {
        let allowed = if wildcard {
            "letters, digits, '_', '.', '-' and '*'"
        } else {
            "letters, digits, '_', '.' and '-'"
        };
        return Err(ApiError::BadRequest(format!(
            "{what} {name:?} may contain only {allowed}"
        )));
    }
    // The only wildcards that can match: `*` alone, or a trailing `.*` (`invoice.*`).
    let body = name.strip_suffix(".*").unwrap_or(name);
    if wildcard && name != "*" && body.contains('*') {
        return Err(ApiError::BadRequest(format!(
            "{what} {name:?}: a wildcard is \"*\" alone or a trailing \".*\" (\"invoice.*\")"
        )));
    }
    Ok(())
}

pub fn check_event_types(types: &[String]) -> Result<(), ApiError> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::BadRequest(format!(
            "event_types may list at most {MAX_EVENT_TYPES} names"
        )));
    }
    for (i, t) in types.iter().enumerate() {
        check_event_type_name(t, "each event_types entry", true)?;
        if types[..i].contains(t) {
            return Err(ApiError::BadRequest(format!(
                "event_types lists {t:?} twice"
            )));
        }
    }
    Ok(())
}

/// A subscription under `capy.` names one of the system's own types, or a `capy.` prefix
/// wildcard that matches one: a typo there would never match, silently.
pub fn check_system_subscriptions(types: &[String]) -> Result<(), ApiError> {
    use crate::domain::event::SYSTEM_PREFIX;
    use crate::services::{deliveries::TEST_EVENT_TYPE, operational::TYPES};
    let known = || TYPES.iter().chain([&TEST_EVENT_TYPE]);
    for t in types.iter().filter(|t| t.starts_with(SYSTEM_PREFIX)) {
        let matches = match t.strip_suffix('*') {
            Some(prefix) => known().any(|k| k.starts_with(prefix)),
            None => known().any(|k| k == t),
        };
        if !matches {
            let names: Vec<&str> = known().copied().collect();
            return Err(ApiError::BadRequest(format!(
                "event_types entry {t:?} is under `{SYSTEM_PREFIX}`, the system's own types, and names none of them: {}",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    pub event_type: String,
    /// Required; any JSON, `null` included.
    pub payload: Value,
    pub idempotency_key: Option<String>,
}

/// `payload` must be present even when null, which serde alone cannot tell from absent.
pub fn require_payload(body: &[u8]) -> Result<(), ApiError> {
    let has =
        serde_json::from_slice::<Map<String, Value>>(body).is_ok_and(|m| m.contains_key("payload"));
    if has {
        Ok(())
    } else {
        Err(ApiError::BadRequest("missing field `payload`".into()))
    }
}

pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `limit`: 1 to 250.
pub fn parse_limit(v: &str) -> Result<usize, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=250).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("limit must be an integer from 1 to 250, not {v:?}"))
        })
}

/// A cursor this API returned: the base64url of the last id of the page before.
pub fn parse_cursor<T: std::str::FromStr>(v: &str) -> Result<T, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<T>().ok())
        .ok_or_else(|| ApiError::BadRequest("cursor is not one this API returned".into()))
}

pub fn cursor_of(id: impl std::fmt::Display) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

/// An RFC 3339 time (`since`, `until`).
pub fn parse_time(name: &str, v: &str) -> Result<crate::domain::time::Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::BadRequest(format!("{name} must be an RFC 3339 time, not {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_whole_or_trailing() {
        for ok in ["*", "invoice.*", "invoice.line.*", "invoice.paid"] {
            assert!(check_event_type_name(ok, "pattern", true).is_ok(), "{ok}");
        }
        for bad in ["*.paid", "inv*", "invoice.*.paid", "*.*", "invoice*"] {
            assert!(
                check_event_type_name(bad, "pattern", true).is_err(),
                "{bad}"
            );
        }
        assert!(check_event_type_name("invoice.*", "event_type", false).is_err());
    }

    #[test]
    fn strict_bodies() {
        assert_eq!(parse_limit("250").expect("ok"), 250);
        assert!(
            parse_limit("0").is_err() && parse_limit("251").is_err() && parse_limit("x").is_err()
        );
        assert!(parse_time("since", "2026-01-02T03:04:05Z").is_ok());
        assert!(parse_time("since", "yesterday").is_err());
        let id = crate::domain::ids::EventId::new();
        assert_eq!(
            parse_cursor::<crate::domain::ids::EventId>(&cursor_of(id)).expect("round trip"),
            id
        );
        assert!(parse_cursor::<crate::domain::ids::EventId>("bm9wZQ").is_err());
        let ok: EndpointInput = json_object(
            Some("application/json; charset=utf-8"),
            br#"{"url":"https://a.example"}"#,
            ENDPOINT_FIELDS,
        )
        .expect("ok");
        assert_eq!(ok.url.as_deref(), Some("https://a.example"));
        let e = |r: Result<EndpointInput, ApiError>| r.expect_err("rejected").to_string();
        assert!(
            e(json_object(
                None,
                br#"{"url":"x","extra":1}"#,
                ENDPOINT_FIELDS
            ))
            .contains("unknown field `extra`")
        );
        assert!(e(json_object(None, br#"{"url":5}"#, ENDPOINT_FIELDS)).contains("invalid type"));
        assert!(
            e(json_object(
                None,
                br#"{"description":null}"#,
                ENDPOINT_FIELDS
            ))
            .contains("must not be null")
        );
        assert!(e(json_object(None, b"{", ENDPOINT_FIELDS)).contains("not valid JSON"));
        assert!(e(json_object(None, b"[]", ENDPOINT_FIELDS)).contains("JSON object"));
        assert!(
            e(json_object(Some("text/plain"), b"{}", ENDPOINT_FIELDS)).contains("content-type")
        );
        assert!(matches!(
            json_object::<EndpointInput>(None, &vec![b' '; MAX_BODY_BYTES + 1], ENDPOINT_FIELDS),
            Err(ApiError::PayloadTooLarge(_))
        ));
        assert!(check_event_types(&["a.*".into(), "a.*".into()]).is_err());
        assert!(check_event_types(&["bad type".into()]).is_err());
        assert!(check_event_types(&vec!["x".to_string(); 101]).is_err());
        let subscribe = |t: &[&str]| {
            check_system_subscriptions(&t.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        for ok in [
            &["capy.*"][..],
            &["capy.endpoint.*", "capy.delivery.exhausted"],
            &["capy.ping", "capy.replay.finished", "invoice.*", "capy"],
        ] {
            assert!(subscribe(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["capy.endpoint.disbled"][..],
            &["capy.billing.*"],
            &["capy."],
        ] {
            assert!(subscribe(bad).is_err(), "{bad:?}");
        }
    }
}
