//! Jobs: `ORG#{org}#JOB` / `JOB#{id}` (newest first by Query), and each endpoint's replay
//! slot `ORG#{org}#JOB` / `SLOT#{endpoint}`, naming the job that holds it.
//!
//! The slot is taken before the job is written and given back after the write that ends the
//! job, each a single conditional write, not a transaction: a slot left behind by a crash
//! (its job ended, or never written) is taken over by the next replay ([`SLOT_SETTLING`]),
//! and a failed transaction on moto rolls back its whole table snapshot, undoing every
//! write other requests made meanwhile (seen as two replays of one endpoint running and
//! jobs stuck in `queued`). Two single writes also cost half a transaction's units.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use serde::{Deserialize, Serialize};

use super::{Item, Table, from_item, is_own_write, key, s, store_error, to_av, to_item};
use crate::domain::ids::{EndpointId, JobId};
use crate::domain::job::Job;
use crate::domain::time::{self, Timestamp};
use crate::ports::{JobStore, StoreError};

/// How long a slot whose job does not exist yet counts as a creation under way; after
/// that, the creation died between the two writes and the slot is free.
pub const SLOT_SETTLING: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

fn jobs_pk(org: &str) -> String {
    format!("ORG#{org}#JOB")
}

fn job_sk(id: JobId) -> String {
    format!("JOB#{id}")
}

fn slot_sk(endpoint: EndpointId) -> String {
    format!("SLOT#{endpoint}")
}

#[derive(Serialize, Deserialize)]
struct JobItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    job: Job,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct SlotItem {
    pk: String,
    sk: String,
    job_id: JobId,
    /// When it was taken (slots written before this field: long ago).
    #[serde(default, with = "time::rfc3339::option")]
    taken_at: Option<Timestamp>,
}

impl Table {
    /// Takes the endpoint's replay slot for `job`: `Conflict` while another job that is
    /// queued or running (or being created) holds it.
    async fn take_slot(&self, job: &Job) -> Result<(), StoreError> {
        let mut stale: Option<JobId> = None;
        for _ in 0..3 {
            let now = time::now();
            let put = self
                .client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(to_item(&SlotItem {
                    pk: jobs_pk(&job.organization_id),
                    sk: slot_sk(job.endpoint_id),
                    job_id: job.id,
                    taken_at: Some(now),
                })?))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let put = match stale {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(holder) => put
                    .condition_expression("job_id = :holder")
                    .expression_attribute_values(":holder", s(holder.to_string())),
            };
            let held = match put.send().await {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(se))
                    if se.err().is_conditional_check_failed_exception() =>
                {
                    match se.into_err() {
                        PutItemError::ConditionalCheckFailedException(c) => c.item,
                        _ => None,
                    }
                }
                Err(e) => return Err(store_error(e)),
            };
            // Freed (or taken over) meanwhile: try again from scratch.
            let Some(held) = held else {
                stale = None;
                continue;
            };
            let held: SlotItem = from_item(held)?;
            if held.job_id == job.id {
                return Ok(());
            }
            let holder = self.get(&job.organization_id, held.job_id).await?;
            let settling = held.taken_at.is_some_and(|at| now - at < SLOT_SETTLING);
            match holder {
                Some(h) if h.state.is_active() => return Err(StoreError::Conflict),
                None if settling => return Err(StoreError::Conflict),
                _ => stale = Some(held.job_id),
            }
        }
        Err(StoreError::Conflict)
    }

    /// After the job's write: a write that took longer than [`SLOT_SETTLING`] may find the
    /// slot taken over by a replay that saw no job. Then this job never runs: it is ended
    /// and the request is a conflict, so one replay of the endpoint runs at a time.
    async fn still_holds_slot(&self, job: &Job) -> Result<(), StoreError> {
        let slot: Option<SlotItem> = self
            .get_item(jobs_pk(&job.organization_id), slot_sk(job.endpoint_id))
            .await?;
        if slot.is_some_and(|s| s.job_id == job.id) {
            return Ok(());
        }
        let mut ended = job.clone();
        ended.version += 1;
        ended.finish(
            crate::domain::job::JobState::Failed,
            Some("another replay of this endpoint started while this one was being created".into()),
            time::now(),
        );
        self.save(&ended).await?;
        Err(StoreError::Conflict)
    }

    /// Gives the endpoint's slot back if `job` holds it.
    async fn free_slot(&self, job: &Job) -> Result<(), StoreError> {
        let freed = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(
                jobs_pk(&job.organization_id),
                slot_sk(job.endpoint_id),
            )))
            .condition_expression("job_id = :job")
            .expression_attribute_values(":job", s(job.id.to_string()))
            .send()
            .await
            .map_err(store_error);
        match freed {
            // Held by a later job, or already gone.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn job_item(&self, job: &Job) -> Result<Item, StoreError> {
        to_item(&JobItem {
            pk: jobs_pk(&job.organization_id),
            sk: job_sk(job.id),
            job: job.clone(),
            // Kept as long as the deliveries it replayed.
            expires_at: time::after(job.created_at, self.retention).timestamp(),
        })
    }
}

#[async_trait]
impl JobStore for Table {
    async fn create(&self, job: &Job) -> Result<(), StoreError> {
        self.take_slot(job).await?;
        let item = self.job_item(job)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => {}
            // This very job: a retry of a write that landed, or the same job created again.
            Err(e) if is_own_write(&e, &item) => {}
            Err(e) => match store_error(e) {
                StoreError::Conflict => return Err(StoreError::Conflict),
                // Timed out, maybe after it landed: only a job that is not there lets go.
                e => {
                    if self.get(&job.organization_id, job.id).await? == Some(job.clone()) {
                        return self.still_holds_slot(job).await;
                    }
                    let _ = self.free_slot(job).await;
                    return Err(e);
                }
            },
        }
        self.still_holds_slot(job).await
    }

    async fn get(&self, org: &str, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self
            .get_item::<JobItem>(jobs_pk(org), job_sk(id))
            .await?
            .map(|i| i.job)
            .filter(|j| j.organization_id == org))
    }

    async fn list(
        &self,
        org: &str,
        limit: usize,
        after: Option<JobId>,
    ) -> Result<(Vec<Job>, Option<JobId>), StoreError> {
        let upper = after.map(job_sk).unwrap_or_else(|| "JOB#~".into());
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .scan_index_forward(false)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(jobs_pk(org)))
                .expression_attribute_values(":lo", s("JOB#"))
                .expression_attribute_values(":hi", s(upper.clone()))
                .limit((limit + 2) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in page.items.unwrap_or_default() {
                let job = from_item::<JobItem>(item)?.job;
                if after != Some(job.id) {
                    found.push(job);
                }
            }
            start = page.last_evaluated_key;
            if found.len() > limit || start.is_none() {
                break;
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more {
            found.last().map(|j| j.id)
        } else {
            None
        };
        Ok((found, next))
    }

    async fn save(&self, job: &Job) -> Result<(), StoreError> {
        let expected = job.version.checked_sub(1).ok_or(StoreError::Conflict)?;
        let item = self.job_item(job)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", to_av(&expected)?)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => {}
            // The SDK's retry of a write that landed: done, and the slot still to free.
            Err(e) if is_own_write(&e, &item) => {}
            Err(e) => return Err(store_error(e)),
        }
        if !job.state.is_active() {
            // Left behind if this fails: the next replay of the endpoint takes it over.
            if let Err(e) = self.free_slot(job).await {
                tracing::warn!(job_id = %job.id, error = %e, "the replay slot of an ended job was not freed");
            }
        }
        Ok(())
    }
}
