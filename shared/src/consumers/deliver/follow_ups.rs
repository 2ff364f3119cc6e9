//! What a finished delivery sets off besides its own record: `capy.endpoint.recovered` and
//! the close of the endpoint's failure streak after a success, `capy.delivery.exhausted`
//! after the last failure, `capy.endpoint.disabled` after a `410 Gone`. They run after the delivery is saved, and an error sends the
//! message back; a message whose delivery is already finished runs them again (a crash may
//! have come between the save and them), and the markers make that one event.

use crate::domain::delivery::{Delivery, DeliveryState};
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::health::FAILING_STREAK;
use crate::domain::time::Timestamp;
use crate::ports::Loaded;
use crate::services::{Deps, operational};

use super::ProcessError;

/// After an attempt succeeded: an open streak closes, with `recovered` first if the
/// endpoint was failing (so a crash in between leaves the streak open to raise it again).
pub(super) async fn after_success(
    deps: &Deps,
    endpoint: &Endpoint,
    now: Timestamp,
) -> Result<(), ProcessError> {
    if endpoint.stats.failure_streak == 0 && endpoint.stats.failing_since.is_none() {
        return Ok(());
    }
    let raised = endpoint.stats.failure_streak >= FAILING_STREAK;
    // `false`: another record of this process is publishing it, and closes the streak.
    if raised && !operational::endpoint_recovered(deps, endpoint, now).await? {
        return Ok(());
    }
    let before = deps
        .endpoints
        .record_outcome(
            &endpoint.organization_id,
            endpoint.id,
            Outcome::RecoveredAfterFailures,
        )
        .await?;
    // The streak reached FAILING_STREAK after this message's read of the endpoint (an
    // update retried after its answer was lost answers with the streak it already reset,
    // hence `!raised`). `None`: the endpoint was deleted meanwhile.
    if let Some(before) = before.filter(|b| !raised && b.stats.failure_streak >= FAILING_STREAK)
        && let Err(e) = operational::endpoint_recovered(deps, &before, now).await
    {
        tracing::error!(error = %e, "capy.endpoint.recovered is lost");
    }
    Ok(())
}

/// After the last attempt failed.
pub(super) async fn after_exhausted(
    deps: &Deps,
    endpoint: &Endpoint,
    d: &Delivery,
    now: Timestamp,
) -> Result<(), ProcessError> {
    operational::delivery_exhausted(deps, "deliver", endpoint, d, now).await?;
    Ok(())
}

/// A message of a delivery already finished: its follow-ups once more, where they may not
/// have run. A success closes a streak only if it came after the streak began; an exhausted
/// delivery counts once more in its endpoint's window (the event stays one).
pub(super) async fn again(
    deps: &Deps,
    loaded: &Loaded,
    d: &Delivery,
    now: Timestamp,
) -> Result<(), ProcessError> {
    let Some(endpoint) = loaded
        .endpoints
        .get(&d.endpoint_id)
        .filter(|e| e.organization_id == d.organization_id)
    else {
        return Ok(());
    };
    if !endpoint.is_active {
        // This delivery's `410 Gone` may have disabled it, its event not yet out.
        operational::disabled_follow_up(deps, endpoint, now).await?;
        return Ok(());
    }
    match d.state {
        DeliveryState::Delivered => {
            let after_streak_began = d
                .delivered_at
                .zip(endpoint.stats.failing_since)
                .is_some_and(|(done, since)| done >= since);
            if after_streak_began {
                after_success(deps, endpoint, now).await?;
            }
        }
        DeliveryState::Failed if d.attempts >= d.max_attempts => {
            after_exhausted(deps, endpoint, d, d.updated_at).await?;
        }
        _ => {}
    }
    Ok(())
}
