//! Publish claims: `IDEM#{org}#{key}` / `IDEM`, with a TTL.
//!
//! Each claim is its own partition: an organization publishing thousands of keyed events a
//! second writes one claim per event, which would exceed one partition's 1,000 write units/s
//! if they shared the organization's `ORG#{org}` (where they lived before).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::{Table, from_item, key, n, s, store_error, to_item};
use crate::domain::ids::EventId;
use crate::domain::time;
use crate::ports::{Claim, IdempotencyStore, PublishRecord, StoreError};

/// As everywhere in the table (`ORG#{org}#EVT#…`), organization ids are taken to hold no `#`.
fn idem_pk(org: &str, key: &str) -> String {
    format!("IDEM#{org}#{key}")
}

const IDEM_SK: &str = "IDEM";

#[derive(Serialize, Deserialize)]
struct PublishItem {
    pk: String,
    sk: String,
    expires_at: i64,
    #[serde(flatten)]
    record: PublishRecord,
}

#[async_trait]
impl IdempotencyStore for Table {
    async fn claim(
        &self,
        org: &str,
        key_: &str,
        record: &PublishRecord,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = time::now();
        let item = to_item(&PublishItem {
            pk: idem_pk(org, key_),
            sk: IDEM_SK.into(),
            expires_at: time::after(now, ttl).timestamp(),
            record: record.clone(),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            // TTL deletion lags by up to days; an expired claim is as good as none.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            // A repeated request learns the first one's claim from the refusal itself,
            // without a second call.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match put {
            Ok(_) => return Ok(Claim::Claimed),
            Err(e) => e,
        };
        let refused_with = match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
            _ => return Err(store_error(err)),
        };
        let existing: PublishItem = match refused_with {
            Some(item) => from_item(item)?,
            // Refused, but the store did not say with what: read it.
            None => self
                .get_item(idem_pk(org, key_), IDEM_SK.into())
                .await?
                .ok_or(StoreError::Conflict)?,
        };
        Ok(Claim::Existing(existing.record))
    }

    async fn release(&self, org: &str, key_: &str, event_id: EventId) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(idem_pk(org, key_), IDEM_SK.into())))
            .condition_expression("event_id = :e")
            .expression_attribute_values(":e", s(event_id.to_string()))
            .send()
            .await
            .map_err(store_error);
        match res {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
