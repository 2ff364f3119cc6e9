//! Metrics as CloudWatch Embedded Metric Format: one JSON document a line on stdout, which
//! CloudWatch Logs turns into metrics without an API call from the function.
//!
//! Every document is in namespace [`NAMESPACE`] with exactly the dimensions
//! `[function, outcome]`: few values each, because every combination of dimension values is
//! a metric billed on its own. Organization, endpoint, event and delivery ids ride along as
//! properties (searchable in Logs Insights, never dimensions).
//!
//! | metric | unit | function / outcome |
//! |---|---|---|
//! | `Deliveries` | Count | `deliver` / `delivered`, `retrying`, `failed`, `gone`, `dropped` |
//! | `AttemptDuration` | Milliseconds | `deliver` / as above, for attempts that were sent |
//! | `EndToEndLag` | Milliseconds | `deliver` / `delivered`: event created → delivered (on its first schedule; not a retry, replay or resend of an ended delivery) |
//! | `FanOutSize` | Count | `publish-event` / `inline`, `fan-out` / `done` |
//! | `ReplayProcessed`, `ReplayRemaining` | Count | `replay` / `running`, `finished`, `cancelled`, ... |
//! | `OperationalEvents` | Count | the function that raised it / the event type |
//!
//! The writer is injectable ([`MetricsWriter`]) so tests capture the documents.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::domain::time::{self, Timestamp};

pub const NAMESPACE: &str = "CapyWebhooks";
/// The only dimension set of every document.
pub const DIMENSIONS: [&str; 2] = ["function", "outcome"];

/// Where the documents go: one call per document, `line` without its newline.
pub trait MetricsWriter: Send + Sync {
    fn write_line(&self, line: &str);
}

/// Standard output, one line per document (what the Lambda log agent forwards to CloudWatch).
pub struct Stdout;

impl MetricsWriter for Stdout {
    fn write_line(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout loses a metric; it must not fail the work it measures.
        let _ = writeln!(out, "{line}");
    }
}

/// Keeps every document in memory (tests).
#[derive(Default)]
pub struct Captured(Mutex<Vec<String>>);

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl MetricsWriter for Captured {
    fn write_line(&self, line: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_owned());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// The ids a document carries as properties.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    pub organization_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub delivery_id: Option<String>,
}

impl Ids {
    /// An organization's endpoint (replay progress, endpoint-level events).
    pub fn endpoint(organization_id: &str, endpoint_id: impl std::fmt::Display) -> Self {
        Self {
            organization_id: Some(organization_id.to_owned()),
            endpoint_id: Some(endpoint_id.to_string()),
            ..Self::default()
        }
    }
}

/// One EMF document: its dimension values, metrics and properties.
#[derive(Debug, Clone)]
pub struct Document {
    pub function: &'static str,
    pub outcome: String,
    pub metrics: Vec<(&'static str, Unit, f64)>,
    pub ids: Ids,
    pub properties: Vec<(&'static str, Value)>,
}

impl Document {
    /// The document as EMF JSON at `at`.
    pub fn render(&self, at: Timestamp) -> String {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [DIMENSIONS],
                    "Metrics": self.metrics.iter()
                        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("function".into(), Value::from(self.function));
        root.insert("outcome".into(), Value::from(self.outcome.clone()));
        for (name, _, value) in &self.metrics {
            root.insert((*name).into(), json!(value));
        }
        let ids = [
            ("organization_id", &self.ids.organization_id),
            ("endpoint_id", &self.ids.endpoint_id),
            ("event_id", &self.ids.event_id),
            ("delivery_id", &self.ids.delivery_id),
        ];
        for (k, v) in ids {
            if let Some(v) = v {
                root.insert(k.into(), Value::from(v.clone()));
            }
        }
        for (k, v) in &self.properties {
            root.insert((*k).into(), v.clone());
        }
        Value::Object(root).to_string()
    }
}

/// The metrics of one process; cheap to clone. [`Metrics::off`] writes nothing.
#[derive(Clone)]
pub struct Metrics {
    writer: Option<Arc<dyn MetricsWriter>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("on", &self.writer.is_some())
            .finish()
    }
}

/// How one delivery attempt (or non-attempt) ended, as the `outcome` dimension says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed, another attempt is scheduled.
    Retrying,
    /// Failed for good (attempts exhausted, or a permanent refusal).
    Failed,
    /// `410 Gone`: failed, and the endpoint disabled.
    Gone,
    /// Failed without an attempt (endpoint deleted or disabled).
    Dropped,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Gone => "gone",
            Self::Dropped => "dropped",
        }
    }
}

impl Metrics {
    pub fn stdout() -> Self {
        Self::to(Arc::new(Stdout))
    }

    pub fn off() -> Self {
        Self { writer: None }
    }

    pub fn to(writer: Arc<dyn MetricsWriter>) -> Self {
        Self {
            writer: Some(writer),
        }
    }

    pub fn emit(&self, doc: &Document) {
        if let Some(w) = &self.writer {
            w.write_line(&doc.render(time::now()));
        }
    }

    /// One delivery's attempt: `attempt_ms` when it was sent, `lag_ms` when it was delivered.
    pub fn delivery(
        &self,
        outcome: DeliveryOutcome,
        ids: Ids,
        attempt: u32,
        attempt_ms: Option<u64>,
        lag_ms: Option<u64>,
    ) {
        let mut metrics = vec![("Deliveries", Unit::Count, 1.0)];
        if let Some(ms) = attempt_ms {
            metrics.push(("AttemptDuration", Unit::Milliseconds, ms as f64));
        }
        if let Some(ms) = lag_ms {
            metrics.push(("EndToEndLag", Unit::Milliseconds, ms as f64));
        }
        self.emit(&Document {
            function: "deliver",
            outcome: outcome.as_str().into(),
            metrics,
            ids,
            properties: vec![("attempt", Value::from(attempt))],
        });
    }

    /// An event's fan-out: `function` is `publish-event` (inline) or `fan-out`.
    pub fn fan_out(&self, function: &'static str, outcome: &str, endpoints: u32, ids: Ids) {
        self.emit(&Document {
            function,
            outcome: outcome.into(),
            metrics: vec![("FanOutSize", Unit::Count, f64::from(endpoints))],
            ids,
            properties: vec![],
        });
    }

    /// A replay job's progress: `state` is its state (`running`, `finished`, ...).
    pub fn replay_progress(
        &self,
        job_id: &str,
        state: &str,
        processed: u64,
        remaining: u64,
        ids: Ids,
    ) {
        self.emit(&Document {
            function: "replay",
            outcome: state.into(),
            metrics: vec![
                ("ReplayProcessed", Unit::Count, processed as f64),
                ("ReplayRemaining", Unit::Count, remaining as f64),
            ],
            ids,
            properties: vec![("job_id", Value::from(job_id))],
        });
    }

    /// An operational event raised by `function`, its type as the outcome.
    pub fn operational_event(&self, function: &'static str, event_type: &str, ids: Ids) {
        self.emit(&Document {
            function,
            outcome: event_type.into(),
            metrics: vec![("OperationalEvents", Unit::Count, 1.0)],
            ids,
            properties: vec![],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks one line against the EMF specification's structure; returns its metric names.
    pub(crate) fn check_emf(line: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(line).expect("one JSON document per line");
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].as_i64().is_some_and(|t| t > 0), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert_eq!(directives.len(), 1, "{line}");
        let d = &directives[0];
        assert_eq!(d["Namespace"], NAMESPACE);
        assert_eq!(d["Dimensions"], json!([["function", "outcome"]]), "{line}");
        for dim in DIMENSIONS {
            assert!(v[dim].as_str().is_some_and(|s| !s.is_empty()), "{line}");
        }
        let metrics = d["Metrics"].as_array().expect("metrics");
        assert!(!metrics.is_empty());
        metrics
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().expect("name").to_owned();
                assert!(["Count", "Milliseconds"].contains(&m["Unit"].as_str().expect("unit")));
                assert!(v[&name].as_f64().is_some(), "{name} has no value in {line}");
                name
            })
            .collect()
    }

    #[test]
    fn documents_follow_the_emf_structure() {
        let captured = Arc::new(Captured::default());
        let m = Metrics::to(captured.clone());
        let ids = Ids {
            organization_id: Some("org_1".into()),
            endpoint_id: Some("ep_1".into()),
            event_id: Some("evt_1".into()),
            delivery_id: Some("dlv_1".into()),
        };
        m.delivery(
            DeliveryOutcome::Delivered,
            ids.clone(),
            1,
            Some(12),
            Some(340),
        );
        m.delivery(DeliveryOutcome::Dropped, ids.clone(), 0, None, None);
        m.fan_out("fan-out", "done", 250, ids.clone());
        m.replay_progress("job_1", "running", 10, 90, ids.clone());
        m.operational_event("deliver", "capy.endpoint.disabled", ids);
        let lines = captured.lines();
        assert_eq!(lines.len(), 5);
        let names: Vec<Vec<String>> = lines.iter().map(|l| check_emf(l)).collect();
        assert_eq!(
            names[0],
            ["Deliveries", "AttemptDuration", "EndToEndLag"].map(String::from)
        );
        assert_eq!(names[1], ["Deliveries"].map(String::from));
        let first: Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(first["EndToEndLag"], 340.0);
        assert_eq!(first["endpoint_id"], "ep_1");
        assert_eq!(first["organization_id"], "org_1");
        // Ids are properties only: never in a dimension set.
        assert!(!lines[0].contains(r#"["function","outcome","#));

        Metrics::off().fan_out("fan-out", "done", 1, Ids::default());
    }
}
