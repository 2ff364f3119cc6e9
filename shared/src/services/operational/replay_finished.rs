//! `capy.replay.finished`: the payload of a replay job's end, published like every
//! operational event.

use std::collections::BTreeMap;

use serde_json::json;

use super::{REPLAY_FINISHED, publish_raised, ts};
use crate::domain::event::Event;
use crate::domain::ids::{EndpointId, EventId};
use crate::domain::time::Timestamp;
use crate::metrics::Ids;
use crate::services::Deps;
use crate::services::ServiceError;

/// A replay job's end, as the jobs engine describes it.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub job_id: String,
    pub organization_id: String,
    pub endpoint_id: EndpointId,
    /// The job's final state (`completed`, `cancelled`, `failed`).
    pub state: String,
    pub created_at: Timestamp,
    pub finished_at: Timestamp,
    /// The job's counts as the jobs API shows them (`matched`, `enqueued`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Why it ended, when not simply done (cancelled by whom, the error).
    pub reason: Option<String>,
    /// The event's id when it must be the same on every try (see [`EventId::derived`]).
    pub event_id: Option<EventId>,
}

/// `capy.replay.finished`, once per job: call it where the job reaches its final state
/// (after the conditional write that put it there, so a redelivered message cannot raise it
/// twice). The replayed endpoint is the subject: it does not receive it.
pub async fn replay_finished(deps: &Deps, job: &ReplaySummary) -> Result<Event, ServiceError> {
    let url = match deps
        .endpoints
        .get(&job.organization_id, job.endpoint_id)
        .await
    {
        Ok(e) => e.map(|e| e.url),
        Err(err) => {
            tracing::warn!(error = %err, "could not read the replayed endpoint; its url is left out");
            None
        }
    };
    let count = |k: &str| job.counts.get(k).copied().unwrap_or(0);
    deps.metrics.replay_progress(
        &job.job_id,
        &job.state,
        count("processed"),
        count("matched").saturating_sub(count("processed")),
        Ids::endpoint(&job.organization_id, job.endpoint_id),
    );
    let payload = json!({
        "job_id": job.job_id,
        "endpoint_id": job.endpoint_id,
        "url": url,
        "organization_id": job.organization_id,
        "state": job.state,
        "created_at": ts(&job.created_at),
        "finished_at": ts(&job.finished_at),
        "counts": job.counts,
        "reason": job.reason,
    });
    let mut event = Event::new(
        &job.organization_id,
        REPLAY_FINISHED,
        payload.to_string(),
        job.finished_at,
    );
    event.subject_endpoint = Some(job.endpoint_id);
    if let Some(id) = job.event_id {
        event.id = id;
    }
    publish_raised(deps, "replay", event).await
}
