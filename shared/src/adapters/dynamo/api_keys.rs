//! API keys: `KEY#{sha256}` / `KEY`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Table, store_error, to_item};
use crate::domain::api_key::ApiKeyRecord;
use crate::ports::{ApiKeyStore, StoreError};

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: ApiKeyRecord,
}

#[async_trait]
impl ApiKeyStore for Table {
    async fn get(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .get_item::<ApiKeyItem>(format!("KEY#{key_hash}"), "KEY".into())
            .await?
            .map(|i| i.record))
    }

    async fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let item = to_item(&ApiKeyItem {
            pk: format!("KEY#{}", record.key_hash),
            sk: "KEY".into(),
            record: record.clone(),
        })?;
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
