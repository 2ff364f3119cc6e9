//! `capy.replay.finished`: announced by the worker run that finds its job ended (by that
//! run, by a cancel, or by a run that died right after ending it). The event's id derives
//! from the job, so announcing twice (a run that dies before recording it) publishes the
//! same event with the same deliveries, which receivers dedupe by `webhook-id`.

use crate::domain::ids::EventId;
use crate::domain::job::{Job, JobState};
use crate::ports::StoreError;
use crate::services::operational::{self, ReplaySummary};
use crate::services::{Deps, ServiceError};

fn state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn summary(job: &Job) -> Option<ReplaySummary> {
    let finished_at = job.finished_at.filter(|_| !job.state.is_active())?;
    Some(ReplaySummary {
        job_id: job.id.to_string(),
        organization_id: job.organization_id.clone(),
        endpoint_id: job.endpoint_id,
        state: state_name(job.state),
        created_at: job.created_at,
        finished_at,
        counts: [
            ("matched".to_owned(), job.matched),
            ("processed".to_owned(), job.processed),
        ]
        .into(),
        reason: job.error.clone(),
        event_id: Some(EventId::derived(
            finished_at,
            &format!("{}/replay.finished", job.id),
        )),
    })
}

/// Publishes the job's end unless it is running or was announced; then records it on the
/// job. A publish that fails is an error, so the run's message comes back and tries again.
pub async fn announce(deps: &Deps, mut job: Job) -> Result<(), ServiceError> {
    if job.announced {
        return Ok(());
    }
    let Some(summary) = summary(&job) else {
        return Ok(());
    };
    operational::replay_finished(deps, &summary).await?;
    job.announced = true;
    job.version += 1;
    match deps.jobs.save(&job).await {
        // Another run recorded it first: the event is the same one.
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
