//! The sweeper (every minute): sends the messages of deliveries whose `sweep_at` has come
//! (parked retries now due, and messages sent outside a consumer that never arrived), then
//! moves their `sweep_at` one grace period on, so a message lost again is sent again. A
//! consumer's next write of the delivery clears it. Redundant messages are harmless: every
//! attempt is a conditional write.

use crate::domain::time;
use crate::services::Deps;

pub async fn sweep(deps: &Deps) -> Result<usize, String> {
    let now = time::now();
    let due = deps
        .deliveries
        .due_for_sweep(now, 1000)
        .await
        .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(0);
    }
    let messages: Vec<_> = due.iter().map(|e| e.message.clone()).collect();
    deps.queue
        .enqueue(&messages)
        .await
        .map_err(|e| e.to_string())?;
    let next = time::after(now, deps.policy.sweep_grace);
    for entry in &due {
        deps.deliveries
            .reschedule_sweep(entry, next)
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(count = due.len(), "sweeper sent due deliveries");
    Ok(due.len())
}
