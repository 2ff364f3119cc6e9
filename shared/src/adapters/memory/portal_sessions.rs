use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::domain::ids::PortalSessionId;
use crate::domain::portal_session::PortalSessionRecord;
use crate::domain::time::Timestamp;
use crate::ports::{PortalSessionStore, StoreError};

#[derive(Default)]
pub struct MemoryPortalSessions {
    items: Mutex<HashMap<PortalSessionId, PortalSessionRecord>>,
}

#[async_trait]
impl PortalSessionStore for MemoryPortalSessions {
    async fn create(&self, s: &PortalSessionRecord) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        if items.contains_key(&s.id) {
            return Err(StoreError::Conflict);
        }
        items.insert(s.id, s.clone());
        Ok(())
    }

    async fn get(&self, id: PortalSessionId) -> Result<Option<PortalSessionRecord>, StoreError> {
        Ok(lock(&self.items).get(&id).cloned())
    }

    async fn revoke(
        &self,
        org: &str,
        id: PortalSessionId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        match lock(&self.items).get_mut(&id) {
            Some(s) if s.organization_id == org => {
                s.revoked_at.get_or_insert(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
