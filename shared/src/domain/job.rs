//! Jobs: long work (a replay over a time range) done by the jobs worker in checkpointed
//! pages, with its progress on the job record.

use serde::{Deserialize, Serialize};

use crate::domain::delivery::{Delivery, DeliveryState};
use crate::domain::ids::{DeliveryId, EndpointId, JobId};
use crate::domain::subscription::subscribed;
use crate::domain::time::{self, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    /// Queued or running: it holds its endpoint's replay slot.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Replay,
}

/// What a replay sends again: an endpoint's deliveries created in `[since, until]`, in one of
/// `states`, of a type `event_types` names (empty: every type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayParams {
    #[serde(with = "time::rfc3339")]
    pub since: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub until: Timestamp,
    pub states: Vec<DeliveryState>,
    pub event_types: Vec<String>,
}

impl ReplayParams {
    /// Whether `d` is one this replay is about (the dry run's count).
    pub fn selects(&self, d: &Delivery) -> bool {
        d.created_at >= self.since
            && d.created_at <= self.until
            && self.states.contains(&d.state)
            && (self.event_types.is_empty() || subscribed(&self.event_types, &d.event_type))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub organization_id: String,
    pub endpoint_id: EndpointId,
    pub state: JobState,
    pub params: ReplayParams,
    /// Deliveries the window selected when the job was created.
    pub matched: u64,
    /// Deliveries the job has gone through (sent again, or found already sent again by an
    /// earlier run of the same page).
    pub processed: u64,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub error: Option<String>,
    /// The last delivery of the last finished page: the next page starts after it.
    #[serde(default)]
    pub cursor: Option<DeliveryId>,
    /// The page being worked on, recorded before any of it is sent: a run that dies mid-page
    /// resumes with exactly these deliveries.
    #[serde(default)]
    pub page: Vec<DeliveryId>,
    /// Bumped by every write; each write is conditional on the one it read.
    #[serde(default)]
    pub version: u64,
    /// `capy.replay.finished` was published for the job's end.
    #[serde(default)]
    pub announced: bool,
}

impl Job {
    pub fn replay(
        organization_id: &str,
        endpoint_id: EndpointId,
        params: ReplayParams,
        matched: u64,
        now: Timestamp,
    ) -> Self {
        Self {
            id: JobId::new(),
            kind: JobKind::Replay,
            organization_id: organization_id.to_owned(),
            endpoint_id,
            state: JobState::Queued,
            params,
            matched,
            processed: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            error: None,
            cursor: None,
            page: Vec::new(),
            version: 0,
            announced: false,
        }
    }

    /// Whether the job should send `d` now: selected by its parameters, and not written since
    /// the job was created. A delivery written since was either sent again by this job (a run
    /// that died before its checkpoint) or moved on by something else; either way sending it
    /// again would be a second replay of it.
    pub fn should_send(&self, d: &Delivery) -> bool {
        self.params.selects(d) && d.updated_at <= self.created_at
    }

    /// Ends the job in `state` (terminal).
    pub fn finish(&mut self, state: JobState, error: Option<String>, now: Timestamp) {
        self.state = state;
        self.error = error;
        self.finished_at = Some(now);
        self.updated_at = now;
        self.page.clear();
    }
}

/// What the jobs queue carries: the job's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: JobId,
    pub organization_id: String,
}

impl JobMessage {
    pub fn of(job: &Job) -> Self {
        Self {
            job_id: job.id,
            organization_id: job.organization_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Event;

    fn delivery(event_type: &str, state: DeliveryState, at: Timestamp) -> Delivery {
        let mut e = Event::new("o", event_type, "{}".into(), at);
        e.created_at = at;
        let mut d = Delivery::first(&e, EndpointId::new(), 3);
        d.state = state;
        d
    }

    #[test]
    fn a_replay_selects_by_window_state_and_type() {
        let now = time::now();
        let hour = chrono::TimeDelta::hours(1);
        let p = ReplayParams {
            since: now - hour,
            until: now,
            states: vec![DeliveryState::Failed],
            event_types: vec!["invoice.*".into()],
        };
        assert!(p.selects(&delivery("invoice.paid", DeliveryState::Failed, now)));
        assert!(!p.selects(&delivery("invoice.paid", DeliveryState::Delivered, now)));
        assert!(!p.selects(&delivery("user.created", DeliveryState::Failed, now)));
        assert!(!p.selects(&delivery(
            "invoice.paid",
            DeliveryState::Failed,
            now - hour * 2
        )));
        let all = ReplayParams {
            event_types: vec![],
            ..p.clone()
        };
        assert!(all.selects(&delivery("capy.ping", DeliveryState::Failed, now)));
    }

    #[test]
    fn a_job_skips_what_was_written_after_it_was_created() {
        let now = time::now();
        let p = ReplayParams {
            since: now - chrono::TimeDelta::hours(1),
            until: now,
            states: vec![DeliveryState::Failed, DeliveryState::Delivered],
            event_types: vec![],
        };
        let job = Job::replay("o", EndpointId::new(), p, 1, now);
        let mut d = delivery(
            "a",
            DeliveryState::Delivered,
            now - chrono::TimeDelta::minutes(5),
        );
        assert!(job.should_send(&d));
        d.updated_at = now + chrono::TimeDelta::milliseconds(1);
        assert!(!job.should_send(&d));
    }
}
