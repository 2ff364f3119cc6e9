//! The fan-out of an event too large to fan out inside its publish request: page through
//! the organization's endpoints, checkpoint each page, send its deliveries' messages.
//!
//! Resumable and idempotent: a page is written (conditionally) before its messages are
//! sent, delivery ids are determined by (event, endpoint), and a worker that finds pages
//! already written resumes after the last one, sending that page's messages again (the one
//! place a crash can duplicate a message; the consumer's conditional writes absorb it).

use std::time::Instant;

use super::{Deps, ServiceError};
use crate::domain::delivery::Delivery;
use crate::domain::event::{FanOutMessage, FanOutPage, FanOutState};
use crate::domain::ids::EndpointId;
use crate::domain::subscription::subscribed;
use crate::ports::StoreError;

/// Endpoints read per page by default (one Query, then at most 10 SendMessageBatch calls).
pub const PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOutProgress {
    /// Every page sent; the event's fan-out is marked done with this many endpoints.
    Done(u32),
    /// Stopped at the deadline with every page up to this one sent; a fresh message hands
    /// the rest to the next worker.
    Incomplete(u32),
    /// Another worker wrote the page this one was about to: it carries on.
    TakenOver,
    /// No such event (yet): its publish may still be writing it, or died.
    EventMissing,
}

pub async fn fan_out(
    deps: &Deps,
    msg: &FanOutMessage,
    deadline: Instant,
) -> Result<FanOutProgress, ServiceError> {
    let Some(event) = deps.events.get(&msg.organization_id, msg.event_id).await? else {
        return Ok(FanOutProgress::EventMissing);
    };
    if event.fan_out.state == FanOutState::Done {
        return Ok(FanOutProgress::Done(event.fan_out.endpoints));
    }
    let max_attempts = deps.policy.retry.max_attempts();
    let send = |endpoints: &[EndpointId]| {
        let messages: Vec<_> = endpoints
            .iter()
            .map(|ep| Delivery::first(&event, *ep, max_attempts).message())
            .collect();
        async move { deps.queue.enqueue(&messages).await }
    };

    let pages = deps.events.pages(event.id).await?;
    let (mut page_no, mut cursor, mut total) = match pages.last() {
        None => (0, None, 0),
        Some(last) => {
            // Its messages may not have gone out before the worker that wrote it died (a
            // worker that handed over at its deadline says how far it sent).
            if msg.sent_through.is_none_or(|sent| last.page > sent) {
                send(&last.endpoints).await?;
            }
            if last.last {
                deps.events
                    .finish_fan_out(&event.organization_id, event.id, last.total)
                    .await?;
                return Ok(FanOutProgress::Done(last.total));
            }
            (last.page + 1, last.cursor, last.total)
        }
    };
    loop {
        let (endpoints, next) = deps
            .endpoints
            .page(
                &event.organization_id,
                cursor,
                deps.policy.fan_out_page_size,
            )
            .await?;
        let matched: Vec<EndpointId> = endpoints
            .iter()
            .filter(|e| {
                e.is_active
                    && subscribed(&e.event_types, &event.event_type)
                    && Some(e.id) != event.subject_endpoint
            })
            .map(|e| e.id)
            .collect();
        let page = FanOutPage {
            event_id: event.id,
            page: page_no,
            total: total + matched.len() as u32,
            endpoints: matched,
            cursor: next,
            last: next.is_none(),
        };
        match deps.events.put_page(&page).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Ok(FanOutProgress::TakenOver),
            Err(e) => return Err(e.into()),
        }
        send(&page.endpoints).await?;
        total = page.total;
        if page.last {
            deps.events
                .finish_fan_out(&event.organization_id, event.id, total)
                .await?;
            tracing::info!(event_id = %event.id, endpoints = total, pages = page_no + 1, "fan-out done");
            return Ok(FanOutProgress::Done(total));
        }
        cursor = next;
        page_no += 1;
        if Instant::now() >= deadline {
            return Ok(FanOutProgress::Incomplete(page.page));
        }
    }
}

#[cfg(test)]
mod tests;
