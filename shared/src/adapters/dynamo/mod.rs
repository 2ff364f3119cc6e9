//! DynamoDB adapters, one file per resource, over one table ([`schema`]).
//!
//! | item            | pk                     | sk             |
//! |-----------------|------------------------|----------------|
//! | endpoint        | `ORG#{org}`            | `EP#{id}`      |
//! | event           | `ORG#{org}#EVT#{shard}` | `EVT#{id}`    |
//! | fan-out page    | `EVT#{event}`          | `FAN#{page}`   |
//! | extra recipient | `EVT#{event}`          | `ADD#{endpoint}` |
//! | delivery        | `EP#{endpoint}#{shard}`| `DLV#{id}`     |
//! | API key         | `KEY#{sha256}`         | `KEY`          |
//! | publish claim   | `IDEM#{org}#{key}`     | `IDEM`         |
//! | ops marker      | `OPS#{endpoint}`       | `MARK#{name}`  |
//! | portal session  | `PS#{id}`              | `PS`           |
//! | job             | `ORG#{org}#JOB`        | `JOB#{id}`     |
//! | replay slot     | `ORG#{org}#JOB`        | `SLOT#{endpoint}` |
//!
//! Deliveries waiting for the sweeper also carry `sweep_pk`/`sweep_sk` (a sparse GSI).

mod api_keys;
mod deliveries;
mod endpoints;
mod events;
mod idempotency;
mod jobs;
mod markers;
mod payload;
mod portal_sessions;
mod reader;
pub mod schema;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Serialize, de::DeserializeOwned};

use crate::ports::StoreError;

pub use deliveries::DELIVERY_SHARDS;
pub use events::EVENT_SHARDS;
pub use schema::SWEEP_SHARDS;

type Item = HashMap<String, AttributeValue>;

/// One client, table name and retention, shared by every store.
#[derive(Clone, Debug)]
pub struct Table {
    pub client: Client,
    pub name: String,
    /// How long events and deliveries are kept (their TTL).
    pub retention: Duration,
}

/// Events and deliveries are kept this long unless `RETENTION` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
            retention: DEFAULT_RETENTION,
        }
    }

    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    async fn get_item<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(pk, sk, true).await?.map(from_item).transpose()
    }

    /// A read of one item, as stored.
    async fn get_raw(
        &self,
        pk: String,
        sk: String,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key(pk, sk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn org_pk(org: &str) -> String {
    format!("ORG#{org}")
}

/// Whether a conditional put failed only because the stored item is exactly `item`: the
/// put landed, its answer was lost and the SDK sent it again (the request must ask for
/// `ReturnValuesOnConditionCheckFailure::AllOld`).
fn is_own_write<R>(e: &SdkError<PutItemError, R>, item: &Item) -> bool {
    matches!(
        e,
        SdkError::ServiceError(se)
            if matches!(se.err(), PutItemError::ConditionalCheckFailedException(c) if c.item() == Some(item))
    )
}

/// The one mapping from SDK errors to store errors, by the error's code and kind (never its
/// text): a lost condition is a `Conflict`; throttling, timeouts and 5xx are `Transient`.
fn store_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &e
        && se.err().code() == Some("ConditionalCheckFailedException")
    {
        return StoreError::Conflict;
    }
    let transient = super::is_transient(
        &e,
        &[
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "InternalServerError",
            "ServiceUnavailable",
            "TransactionConflictException",
        ],
    );
    let message = DisplayErrorContext(e).to_string();
    if transient {
        StoreError::Transient(message)
    } else {
        StoreError::Backend(message)
    }
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_av<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn sk_of(item: &Item) -> Option<&str> {
    item.get("sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Waits before the `attempt`th retry of what a batch call left unprocessed (25 ms,
/// doubling); after 8 retries, gives up with `Transient`.
async fn backoff(attempt: u32) -> Result<(), StoreError> {
    if attempt > 8 {
        return Err(StoreError::Transient(
            "DynamoDB left part of a batch unprocessed after retries".into(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(25) * 2u32.pow(attempt - 1)).await;
    Ok(())
}
