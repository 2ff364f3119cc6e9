//! The `jobs` consumer: one record per job run (replays). A run goes page by page until the
//! job ends or its time budget is spent, then queues a fresh message for the rest.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use tracing::Instrument;

use super::{Disposition, batch_response, parse, receipt};
use crate::domain::job::JobMessage;
use crate::services::Deps;
use crate::services::replay::{self, DEFAULT_PAGE, Pacing, Progress};

/// How long one record may run before it hands over to a fresh message (well under the
/// function's timeout and the queue's visibility timeout).
pub const JOBS_BUDGET: Duration = Duration::from_secs(40);

/// `REPLAY_PAGE_SIZE` (deliveries per page, default 100) and `REPLAY_PAGE_INTERVAL` (a pause
/// between pages, default none).
pub fn pacing_from_env() -> Result<Pacing, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let page = match var("REPLAY_PAGE_SIZE") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| format!("REPLAY_PAGE_SIZE must be 1 to 1000, not {v:?}"))?,
        None => DEFAULT_PAGE,
    };
    let pause = match var("REPLAY_PAGE_INTERVAL") {
        Some(v) => crate::domain::time::parse_duration(&v)
            .map_err(|e| format!("REPLAY_PAGE_INTERVAL: {e}"))?,
        None => Duration::ZERO,
    };
    Ok(Pacing { page, pause })
}

pub async fn jobs_batch(deps: &Deps, event: SqsEvent, pacing: Pacing) -> SqsBatchResponse {
    let deadline = Instant::now() + JOBS_BUDGET;
    let work = event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("job", message_id = %id, job_id = tracing::field::Empty, organization_id = tracing::field::Empty);
        async move {
            let msg: JobMessage = match parse(&record) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "unreadable message");
                    return (id, Disposition::Retry);
                }
            };
            let span = tracing::Span::current();
            span.record("job_id", tracing::field::display(msg.job_id));
            span.record("organization_id", msg.organization_id.as_str());
            let d = match replay::run(deps, &msg, pacing, deadline).await {
                Ok(Progress::Done | Progress::TakenOver) => Disposition::Ack,
                Ok(Progress::More) => match deps.jobs_queue.request_job(&msg).await {
                    Ok(()) => Disposition::Ack,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not queue the rest of the job; retrying this message");
                        let _ = deps.jobs_visibility.postpone(receipt(&record), Duration::ZERO).await;
                        Disposition::Retry
                    }
                },
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "job run failed; the message will be retried");
                    Disposition::Retry
                }
                Err(e) => {
                    tracing::error!(error = %e, "job run failed for good");
                    match replay::abandon(deps, &msg, "an internal error stopped the job").await {
                        Ok(()) => Disposition::Ack,
                        Err(_) => Disposition::Retry,
                    }
                }
            };
            (id, d)
        }
        .instrument(span)
    });
    batch_response(join_all(work).await)
}
