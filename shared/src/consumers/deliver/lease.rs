//! The attempt lease (`ATTEMPT_LEASE`, off by default): one conditional write before the
//! send claims the attempt, so a message SQS hands to two pollers at once is sent by one.
//! The other copy waits out the lease and comes back to find the attempt recorded; if the
//! holder died, the lease has lapsed and that copy takes it.

use std::time::Duration;

use super::{Current, ProcessError};
use crate::domain::delivery::{Expected, Lease};
use crate::domain::time::{self, Timestamp};
use crate::ports::StoreError;
use crate::services::Deps;

/// The attempt is this poller's (`Ok`), or someone else's for this long yet (`Err`).
pub(super) async fn take(
    deps: &Deps,
    cur: Current,
    lease: Duration,
    now: Timestamp,
) -> Result<Result<Current, Duration>, ProcessError> {
    if let Some(held) = cur.d.lease.filter(|l| l.until > now) {
        return Ok(Err((held.until - now).to_std().unwrap_or(lease)));
    }
    let mut d = cur.d.clone();
    d.lease = Some(Lease {
        until: time::after(now, lease),
        holder: rand::random(),
    });
    d.updated_at = now;
    match deps
        .deliveries
        .save(&d, Expected::of(&cur.d, cur.stored))
        .await
    {
        Ok(()) => Ok(Ok(Current { d, stored: true })),
        Err(StoreError::Conflict) => {
            tracing::info!("another poller holds this attempt; this copy of its message waits");
            Ok(Err(lease))
        }
        Err(e) => Err(e.into()),
    }
}
