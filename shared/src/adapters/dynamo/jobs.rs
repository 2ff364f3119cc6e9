//! Jobs: `ORG#{org}#JOB` / `JOB#{id}` (newest first by Query), and each endpoint's replay
//! slot `ORG#{org}#JOB` / `SLOT#{endpoint}`, taken with the job's creation in one
//! transaction and given back by the write that ends the job.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::{Item, Table, from_item, key, s, store_error, to_av, to_item};
use crate::domain::ids::{EndpointId, JobId};
use crate::domain::job::Job;
use crate::domain::time;
use crate::ports::{JobStore, StoreError};

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
}

/// A cancelled transaction whose reason is a failed condition is a lost race: `Conflict`.
fn transact_error<R>(e: SdkError<TransactWriteItemsError, R>) -> StoreError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(t)) = e.as_service_error() {
        let lost = t
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"));
        if lost || t.cancellation_reasons().is_empty() {
            return StoreError::Conflict;
        }
    }
    store_error(e)
}

impl Table {
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
        let put_job = Put::builder()
            .table_name(&self.name)
            .set_item(Some(self.job_item(job)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let put_slot = Put::builder()
            .table_name(&self.name)
            .set_item(Some(to_item(&SlotItem {
                pk: jobs_pk(&job.organization_id),
                sk: slot_sk(job.endpoint_id),
                job_id: job.id,
            })?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_job).build())
            .transact_items(TransactWriteItem::builder().put(put_slot).build())
            .send()
            .await
            .map_err(transact_error)?;
        Ok(())
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
        let put_alone = || async {
            self.client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(item.clone()))
                .condition_expression("version = :v")
                .expression_attribute_values(":v", to_av(&expected)?)
                .send()
                .await
                .map_err(store_error)?;
            Ok::<(), StoreError>(())
        };
        if job.state.is_active() {
            return put_alone().await;
        }
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item.clone()))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", to_av(&expected)?)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Ending the job frees its endpoint's slot, in the same write.
        let free = Delete::builder()
            .table_name(&self.name)
            .set_key(Some(key(
                jobs_pk(&job.organization_id),
                slot_sk(job.endpoint_id),
            )))
            .condition_expression("attribute_not_exists(pk) OR job_id = :job")
            .expression_attribute_values(":job", s(job.id.to_string()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().delete(free).build())
            .send()
            .await
            .map_err(transact_error)
        {
            Ok(_) => Ok(()),
            // The version, or the slot: a later job of the endpoint holds it (this job's end
            // freed it earlier; this is a later write of the ended job). The job alone, then.
            Err(StoreError::Conflict) => put_alone().await,
            Err(e) => Err(e),
        }
    }
}
