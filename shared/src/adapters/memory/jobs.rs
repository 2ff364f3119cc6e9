use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::domain::ids::{EndpointId, JobId};
use crate::domain::job::{Job, JobMessage};
use crate::ports::{JobQueue, JobStore, QueueError, StoreError};

/// Jobs, their endpoints' replay slots, and the job messages sent (tests read them back).
#[derive(Default)]
pub struct MemoryJobs {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    slots: Mutex<HashMap<EndpointId, JobId>>,
    pub sent: Mutex<Vec<JobMessage>>,
}

impl MemoryJobs {
    pub fn take_sent(&self) -> Vec<JobMessage> {
        std::mem::take(&mut *lock(&self.sent))
    }
}

#[async_trait]
impl JobStore for MemoryJobs {
    async fn create(&self, job: &Job) -> Result<(), StoreError> {
        let mut jobs = lock(&self.jobs);
        let mut slots = lock(&self.slots);
        let held_by_another = slots.get(&job.endpoint_id).is_some_and(|holder| {
            *holder != job.id && jobs.get(holder).is_some_and(|h| h.state.is_active())
        });
        if held_by_another {
            return Err(StoreError::Conflict);
        }
        // The same job again is a no-op (as an SDK retry of the write is on DynamoDB).
        match jobs.get(&job.id) {
            Some(stored) if stored == job => return Ok(()),
            Some(_) => return Err(StoreError::Conflict),
            None => {}
        }
        slots.insert(job.endpoint_id, job.id);
        jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn get(&self, org: &str, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(lock(&self.jobs)
            .get(&id)
            .filter(|j| j.organization_id == org)
            .cloned())
    }

    async fn list(
        &self,
        org: &str,
        limit: usize,
        after: Option<JobId>,
    ) -> Result<(Vec<Job>, Option<JobId>), StoreError> {
        let jobs = lock(&self.jobs);
        let mut found: Vec<Job> = jobs
            .values()
            .rev()
            .filter(|j| j.organization_id == org && after.is_none_or(|a| j.id < a))
            .take(limit + 1)
            .cloned()
            .collect();
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
        let mut jobs = lock(&self.jobs);
        let stored = jobs.get(&job.id).ok_or(StoreError::Conflict)?;
        // The same write again is a no-op (as an SDK retry of the write is on DynamoDB).
        if stored.version + 1 != job.version && stored != job {
            return Err(StoreError::Conflict);
        }
        if !job.state.is_active() {
            let mut slots = lock(&self.slots);
            if slots.get(&job.endpoint_id) == Some(&job.id) {
                slots.remove(&job.endpoint_id);
            }
        }
        jobs.insert(job.id, job.clone());
        Ok(())
    }
}

#[async_trait]
impl JobQueue for MemoryJobs {
    async fn request_job(&self, message: &JobMessage) -> Result<(), QueueError> {
        lock(&self.sent).push(message.clone());
        Ok(())
    }
}
