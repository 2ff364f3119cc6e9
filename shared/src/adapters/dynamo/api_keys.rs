//! API keys: `KEY#{sha256}` / `KEY`.
//!
//! Every API request looks its key up, so the lookup reads eventually consistent, at half the
//! read units; only a miss (a key minted a moment ago, or no key at all) is read again strongly.
//! A revocation (`capy api-keys revoke`) therefore takes effect within DynamoDB's replication lag,
//! typically well under a second, rather than at the instant of the write.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Table, from_item, store_error, to_item};
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
        let pk = format!("KEY#{key_hash}");
        let item = match self.get_raw(pk.clone(), "KEY".into(), false).await? {
            Some(item) => Some(item),
            None => self.get_raw(pk, "KEY".into(), true).await?,
        };
        item.map(|i| from_item::<ApiKeyItem>(i).map(|i| i.record))
            .transpose()
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
