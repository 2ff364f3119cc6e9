//! What a replay request may ask for: its states and its window.

use std::time::Duration;

use crate::domain::delivery::DeliveryState;
use crate::domain::time::{self, Timestamp};
use crate::services::ServiceError;

/// The states a replay may select.
pub fn parse_state(s: &str) -> Result<DeliveryState, ServiceError> {
    match DeliveryState::parse(s) {
        Some(st @ (DeliveryState::Failed | DeliveryState::Delivered)) => Ok(st),
        _ => Err(ServiceError::Invalid(format!(
            "states may list \"failed\" and \"delivered\", not {s:?}"
        ))),
    }
}

/// The window must be non-empty and within the retention (older deliveries are gone).
pub fn check_window(
    since: Timestamp,
    until: Timestamp,
    now: Timestamp,
    retention: Duration,
) -> Result<(), ServiceError> {
    if since >= until {
        return Err(ServiceError::Invalid("since must be before until".into()));
    }
    let horizon = now - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    if since < horizon {
        return Err(ServiceError::Invalid(format!(
            "since is older than the retention ({}): deliveries before {} are no longer kept",
            time::spelled(retention),
            time::format(&horizon)
        )));
    }
    Ok(())
}
