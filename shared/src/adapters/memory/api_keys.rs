use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::domain::api_key::ApiKeyRecord;
use crate::ports::{ApiKeyStore, StoreError};

#[derive(Default)]
pub struct MemoryApiKeys {
    items: Mutex<HashMap<String, ApiKeyRecord>>,
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn get(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.items).get(key_hash).cloned())
    }

    async fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        lock(&self.items).insert(record.key_hash.clone(), record.clone());
        Ok(())
    }
}
