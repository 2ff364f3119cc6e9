//! Operational-event markers: `OPS#{scope}` / `MARK#{marker}`, small conditional items with
//! a TTL (a claim, or a counting window), each naming the event it notifies with.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use serde::{Deserialize, Serialize};

use super::{Table, from_item, is_own_write, key, n, store_error, to_item};
use crate::domain::ids::EventId;
use crate::domain::time::{self, Timestamp};
use crate::ports::{Marked, OpsMarkerStore, StoreError, WindowCount, WindowTally};

/// A counting window's marker outlives its window this many times over, so the next
/// window can still report the previous one's count.
const WINDOW_KEPT: u32 = 24;

fn ops_pk(scope: &str) -> String {
    format!("OPS#{scope}")
}

fn mark_sk(marker: &str) -> String {
    format!("MARK#{marker}")
}

#[derive(Serialize, Deserialize)]
struct ClaimItem {
    pk: String,
    sk: String,
    #[serde(with = "time::rfc3339")]
    claimed_at: Timestamp,
    /// The claim's notification, fresh per call: a stored item with it is this call's
    /// write (a retry whose first answer was lost), never another caller's of the same
    /// millisecond. `None` in claims written before markers named their events.
    #[serde(default)]
    event_id: Option<EventId>,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct WindowItem {
    pk: String,
    sk: String,
    #[serde(with = "time::rfc3339")]
    started_at: Timestamp,
    /// `started_at` in epoch milliseconds, for the conditions.
    window_start: i64,
    occurrences: u64,
    /// As [`ClaimItem::event_id`]: the window's notification.
    #[serde(default)]
    event_id: Option<EventId>,
    expires_at: i64,
}

fn cutoff(now: Timestamp, window: Duration) -> i64 {
    now.timestamp_millis() - window.as_millis() as i64
}

impl Table {
    /// Adds one to the open window; `Conflict` when none is open.
    async fn count_in_open(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
    ) -> Result<WindowCount, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(ops_pk(scope), mark_sk(marker))))
            .update_expression("ADD occurrences :one")
            .condition_expression("window_start > :cutoff")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cutoff", n(cutoff(now, window)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(store_error)?;
        let open = out
            .attributes
            .filter(|a| !a.is_empty())
            .map(from_item::<WindowItem>)
            .transpose()?;
        Ok(WindowCount::Counted {
            event: open.as_ref().and_then(|w| w.event_id),
            started_at: open.map(|w| w.started_at),
        })
    }

    /// Replaces a closed window (or none) with one opened now; returns the closed one.
    async fn open_window(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
        event: EventId,
    ) -> Result<Option<WindowTally>, StoreError> {
        let item = to_item(&WindowItem {
            pk: ops_pk(scope),
            sk: mark_sk(marker),
            started_at: now,
            window_start: now.timestamp_millis(),
            occurrences: 1,
            event_id: Some(event),
            expires_at: time::after(now, window * WINDOW_KEPT).timestamp(),
        })?;
        let out = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk) OR window_start <= :cutoff")
            .expression_attribute_values(":cutoff", n(cutoff(now, window)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // The open window is exactly the one this call wrote (its answer was lost and
            // the SDK sent it again): this call opened it; the closed one it replaced is gone.
            Err(e) if is_own_write(&e, &item) => {
                return Ok(None);
            }
            Err(e) => return Err(store_error(e)),
        };
        let previous = out
            .attributes
            .filter(|a| !a.is_empty())
            .map(from_item::<WindowItem>)
            .transpose()?;
        Ok(previous.map(|w| WindowTally {
            started_at: w.started_at,
            count: w.occurrences,
        }))
    }
}

#[async_trait]
impl OpsMarkerStore for Table {
    async fn claim(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        ttl: Duration,
        event: EventId,
    ) -> Result<Marked, StoreError> {
        let item = to_item(&ClaimItem {
            pk: ops_pk(scope),
            sk: mark_sk(marker),
            claimed_at: now,
            event_id: Some(event),
            expires_at: time::after(now, ttl).timestamp(),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            // TTL deletion lags by up to days; an expired claim is as good as none.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Marked::Claimed),
            // The live claim is exactly this one: our write landed, its answer was lost and
            // the SDK sent it again. Saying "claimed by someone else" would lose the event.
            Err(e) if is_own_write(&e, &item) => Ok(Marked::Claimed),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                let held = match se.into_err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                };
                let held = held.map(from_item::<ClaimItem>).transpose()?;
                Ok(Marked::Held(held.and_then(|c| c.event_id)))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn count_in_window(
        &self,
        scope: &str,
        marker: &str,
        now: Timestamp,
        window: Duration,
        event: EventId,
    ) -> Result<WindowCount, StoreError> {
        // Most occurrences fall in an open window: one conditional update.
        match self.count_in_open(scope, marker, now, window).await {
            Ok(counted) => return Ok(counted),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
        match self.open_window(scope, marker, now, window, event).await {
            Ok(previous) => Ok(WindowCount::Opened { previous }),
            // Another writer opened it between the two calls: count in theirs.
            Err(StoreError::Conflict) => {
                match self.count_in_open(scope, marker, now, window).await {
                    Ok(counted) => Ok(counted),
                    // Opened and closed again in between: nothing to name.
                    Err(StoreError::Conflict) => Ok(WindowCount::Counted {
                        event: None,
                        started_at: None,
                    }),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
