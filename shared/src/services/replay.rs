//! Recovering after an outage: replay jobs over a time range, one event resent to one
//! endpoint, test events.
//!
//! A replay is a job: the request counts what the window selects and queues the job; the
//! jobs worker ([`run`]) sends the deliveries again page by page, oldest first. Each page is
//! recorded on the job (`page`) before any of it is sent, and the write that finishes a page
//! records the next one, so a run that dies resumes with exactly the page it was on. A
//! delivery sent again keeps its id (receivers dedupe on `webhook-id`) and goes back to
//! pending like a manual retry: one more attempt on top of those spent
//! ([`Delivery::requeued`]). The job sends only deliveries not written since it was created
//! ([`Job::should_send`]): one it already sent again has been written since, so a resumed
//! page never sends it twice.
//!
//! Cost per delivery sent again: one conditional write, a tenth of a `SendMessageBatch`
//! (10 a call, per page), and a page's share of one job write.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::deliveries::active_endpoint;
use super::{Deps, ServiceError};
use crate::domain::delivery::{Delivery, DeliveryMessage, Expected};
use crate::domain::endpoint::Endpoint;
use crate::domain::ids::{DeliveryId, EndpointId, JobId};
use crate::domain::job::{Job, JobMessage, JobState, ReplayParams};
use crate::domain::time::{self, Timestamp};
use crate::ports::StoreError;

/// Deliveries per page unless the worker is told otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// Conditional writes in flight at once within a page.
const WRITES_IN_FLIGHT: usize = 16;

/// How the worker paces a replay: deliveries per page, and a pause between pages (so a
/// receiver that just came back is not handed the whole backlog in one burst).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub page: usize,
    pub pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            page: DEFAULT_PAGE,
            pause: Duration::ZERO,
        }
    }
}

pub fn job_not_found() -> ServiceError {
    ServiceError::NotFound("no such job in this organization".into())
}

/// The endpoint's deliveries the window selects.
async fn selected(
    deps: &Deps,
    endpoint: EndpointId,
    params: &ReplayParams,
) -> Result<Vec<Delivery>, ServiceError> {
    let mut found = deps
        .deliveries
        .range(endpoint, params.since, params.until)
        .await?;
    found.retain(|d| params.selects(d));
    Ok(found)
}

pub enum Started {
    DryRun { matched: u64 },
    Job(Box<Job>),
}

/// A replay request: counts what it selects (`dry_run`), or queues the job.
pub async fn start(
    deps: &Deps,
    org: &str,
    endpoint_id: EndpointId,
    mut params: ReplayParams,
    dry_run: bool,
    now: Timestamp,
) -> Result<Started, ServiceError> {
    // A window reaching into the future ends now: the job replays what exists.
    params.until = params.until.min(now);
    check_window(params.since, params.until, now, deps.policy.retention)?;
    let endpoint = active_endpoint(deps, org, endpoint_id).await?;
    let matched = selected(deps, endpoint.id, &params).await?.len() as u64;
    if dry_run {
        return Ok(Started::DryRun { matched });
    }
    let mut job = Job::replay(org, endpoint.id, params, matched, now);
    match deps.jobs.create(&job).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ServiceError::Conflict(
                "another replay of this endpoint is queued or running; wait for it or cancel it"
                    .into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = deps.jobs_queue.request_job(&JobMessage::of(&job)).await {
        // Never picked up: end it so the endpoint's slot is free for a new request.
        job.version += 1;
        job.finish(
            JobState::Failed,
            Some("the job could not be queued".into()),
            time::now(),
        );
        if let Err(save) = deps.jobs.save(&job).await {
            tracing::error!(job_id = %job.id, error = %save, "could not end a job that was never queued");
        }
        return Err(e.into());
    }
    Ok(Started::Job(Box::new(job)))
}

pub async fn get(deps: &Deps, org: &str, id: JobId) -> Result<Job, ServiceError> {
    deps.jobs.get(org, id).await?.ok_or_else(job_not_found)
}

/// Cancels a queued or running job: the worker stops before its next page. A job that
/// already ended (cancelled, succeeded or failed) is answered as it is: cancel is idempotent,
/// and a small replay may well end before its cancel arrives.
pub async fn cancel(
    deps: &Deps,
    org: &str,
    id: JobId,
    now: Timestamp,
) -> Result<Job, ServiceError> {
    for _ in 0..10 {
        let mut job = get(deps, org, id).await?;
        if !job.state.is_active() {
            return Ok(job);
        }
        job.version += 1;
        job.finish(JobState::Canceled, None, now);
        // `false`: the worker checkpointed meanwhile; read it again.
        if checkpoint(deps, &job).await? {
            return Ok(job);
        }
    }
    Err(ServiceError::Conflict(
        "the job kept changing while this request ran; retry it".into(),
    ))
}

/// How a worker run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The job is over (succeeded, failed, cancelled), or gone.
    Done,
    /// The time budget ran out with pages left: run again.
    More,
    /// Another run moved the job on (a duplicate message): that run carries on.
    TakenOver,
}

/// Writes `job`; `Ok(false)` if another writer got there first. A `Conflict` whose stored
/// copy is exactly this write is this write (its answer was lost and the SDK sent it again).
async fn checkpoint(deps: &Deps, job: &Job) -> Result<bool, ServiceError> {
    match deps.jobs.save(job).await {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => Ok(deps
            .jobs
            .get(&job.organization_id, job.id)
            .await?
            .is_some_and(|s| {
                (s.version, s.state, s.cursor, &s.page, s.processed)
                    == (job.version, job.state, job.cursor, &job.page, job.processed)
            })),
        Err(e) => Err(e.into()),
    }
}

/// Ends `job` as failed with `why`.
async fn fail(deps: &Deps, mut job: Job, why: &str) -> Result<Progress, ServiceError> {
    job.version += 1;
    job.finish(JobState::Failed, Some(why.into()), time::now());
    checkpoint(deps, &job).await?;
    Ok(Progress::Done)
}

/// Ends the job of `msg` as failed (a fault no retry of its message will fix).
pub async fn abandon(deps: &Deps, msg: &JobMessage, why: &str) -> Result<(), ServiceError> {
    if let Some(job) = deps.jobs.get(&msg.organization_id, msg.job_id).await?
        && job.state.is_active()
    {
        fail(deps, job, why).await?;
    }
    if let Some(job) = deps.jobs.get(&msg.organization_id, msg.job_id).await? {
        finished::announce(deps, job).await?;
    }
    Ok(())
}

/// The next page: up to `size` deliveries after `after` (ids ascending) the job should send.
fn next_page(
    job: &Job,
    ordered: &[Delivery],
    after: Option<DeliveryId>,
    size: usize,
) -> Vec<DeliveryId> {
    ordered
        .iter()
        .filter(|d| after.is_none_or(|a| d.id > a))
        .filter(|d| job.should_send(d))
        .take(size)
        .map(|d| d.id)
        .collect()
}

/// Puts one delivery back to pending, conditional on what the job read; its message, or
/// `None` if it moved on since (a manual retry, a consumer): not the job's to send then.
async fn send_again(
    deps: &Deps,
    before: &Delivery,
    now: Timestamp,
) -> Result<Option<DeliveryMessage>, ServiceError> {
    let d = before.requeued(
        now,
        deps.policy.sweep_grace,
        deps.policy.retry.max_attempts(),
    );
    match deps.deliveries.save(&d, Expected::of(before, true)).await {
        Ok(()) => Ok(Some(d.message())),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs a job until it ends or `deadline` passes (the jobs worker's one call). Whoever
/// ended it (this run, a cancel, an earlier run that died right after), the run that finds
/// it ended announces it; a failed announcement fails the run, so its message comes back.
pub async fn run(
    deps: &Deps,
    msg: &JobMessage,
    pacing: Pacing,
    deadline: Instant,
) -> Result<Progress, ServiceError> {
    let progress = run_pages(deps, msg, pacing, deadline).await?;
    if progress != Progress::More
        && let Some(job) = deps.jobs.get(&msg.organization_id, msg.job_id).await?
    {
        finished::announce(deps, job).await?;
    }
    Ok(progress)
}

async fn run_pages(
    deps: &Deps,
    msg: &JobMessage,
    pacing: Pacing,
    deadline: Instant,
) -> Result<Progress, ServiceError> {
    let size = pacing.page.max(1);
    let Some(mut job) = deps.jobs.get(&msg.organization_id, msg.job_id).await? else {
        tracing::warn!("the job does not exist; dropping its message");
        return Ok(Progress::Done);
    };
    if !job.state.is_active() {
        return Ok(Progress::Done);
    }
    let endpoint: Endpoint = match deps
        .endpoints
        .get(&job.organization_id, job.endpoint_id)
        .await?
    {
        None => return fail(deps, job, "the endpoint was deleted").await,
        Some(e) if !e.is_active => {
            return fail(
                deps,
                job,
                "the endpoint was disabled; re-enable it and replay again",
            )
            .await;
        }
        Some(e) => e,
    };
    // What is left of the window, oldest first: one read per run, not per page.
    let lower = job
        .cursor
        .map(|c| c.created_at())
        .unwrap_or(job.params.since)
        .max(job.params.since);
    let mut ordered = deps
        .deliveries
        .range(endpoint.id, lower, job.params.until)
        .await?;
    ordered.reverse();
    ordered.retain(|d| job.cursor.is_none_or(|c| d.id > c));
    let by_id: HashMap<DeliveryId, &Delivery> = ordered.iter().map(|d| (d.id, d)).collect();

    if job.state == JobState::Queued || (job.page.is_empty() && job.cursor.is_none()) {
        let now = time::now();
        job.state = JobState::Running;
        job.page = next_page(&job, &ordered, job.cursor, size);
        job.updated_at = now;
        job.version += 1;
        if job.page.is_empty() {
            job.finish(JobState::Succeeded, None, now);
        }
        if !checkpoint(deps, &job).await? {
            return Ok(Progress::TakenOver);
        }
        if !job.state.is_active() {
            return Ok(Progress::Done);
        }
    }
    let mut first = true;
    loop {
        if !first {
            // Cancelled (or moved on by another run) since the last checkpoint: stop here.
            match deps.jobs.get(&job.organization_id, job.id).await? {
                Some(j) if j.version == job.version => {}
                Some(j) if !j.state.is_active() => return Ok(Progress::Done),
                _ => return Ok(Progress::TakenOver),
            }
        }
        first = false;
        let now = time::now();
        let sends: Vec<&Delivery> = job
            .page
            .iter()
            .filter_map(|id| by_id.get(id).copied())
            .filter(|d| job.should_send(d))
            .collect();
        let mut messages = Vec::with_capacity(sends.len());
        for chunk in sends.chunks(WRITES_IN_FLIGHT) {
            let written = join_all(chunk.iter().map(|before| send_again(deps, before, now))).await;
            for w in written {
                messages.extend(w?);
            }
        }
        // If this run dies before the send, the sweeper sends them after `sweep_grace`.
        deps.queue.enqueue(&messages).await?;
        let sent = messages.len();
        job.processed += job.page.len() as u64;
        job.cursor = job.page.iter().max().copied().or(job.cursor);
        job.page = next_page(&job, &ordered, job.cursor, size);
        job.updated_at = time::now();
        job.version += 1;
        if job.page.is_empty() {
            job.finish(JobState::Succeeded, None, job.updated_at);
        }
        // Cancelled, or another run got there: either way this run stops.
        if !checkpoint(deps, &job).await? {
            return Ok(Progress::TakenOver);
        }
        tracing::info!(job_id = %job.id, sent, processed = job.processed, matched = job.matched, "replay page done");
        if !job.state.is_active() {
            return Ok(Progress::Done); // its end is reported with `capy.replay.finished`
        }
        deps.metrics.replay_progress(
            &job.id.to_string(),
            "running",
            job.processed,
            job.matched.saturating_sub(job.processed),
            crate::metrics::Ids::endpoint(&job.organization_id, job.endpoint_id),
        );
        if Instant::now() + pacing.pause >= deadline {
            return Ok(Progress::More);
        }
        if !pacing.pause.is_zero() {
            tokio::time::sleep(pacing.pause).await;
        }
    }
}

mod finished;
mod params;

pub use params::{check_window, parse_state};
#[cfg(test)]
mod tests;
