//! DynamoDB adapters for the stores, and the one place that maps items (single table).
//!
//! | item      | pk              | sk              |
//! |-----------|-----------------|-----------------|
//! | endpoint  | `ORG#{org}`     | `EP#{id}`       |
//! | delivery  | `EP#{endpoint}` | `DLV#{id}`      |
//! | API key   | `KEY#{sha256}`  | `KEY`           |
//! | publish   | `ORG#{org}`     | `IDEM#{key}`    |
//!
//! Pending deliveries also carry `sweep_pk`/`sweep_sk` (a sparse GSI, sharded) so the sweeper
//! finds overdue ones with a Query.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, PutRequest, ScalarAttributeType,
    TimeToLiveSpecification, WriteRequest,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::model::{ApiKeyRecord, Delivery, DeliveryMessage, DeliveryState, Endpoint};
use crate::ports::*;
use crate::time::{self, Timestamp};

type Item = HashMap<String, AttributeValue>;

pub const SWEEP_INDEX: &str = "sweep";
const SWEEP_SHARDS: u128 = 4;
/// Delivery history is kept this long (TTL).
pub const DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 86_400);

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn org_pk(org: &str) -> String {
    format!("ORG#{org}")
}

fn endpoint_sk(id: EndpointId) -> String {
    format!("EP#{id}")
}

fn delivery_pk(endpoint: EndpointId) -> String {
    format!("EP#{endpoint}")
}

fn delivery_sk(id: DeliveryId) -> String {
    format!("DLV#{id}")
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn backend<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Backend(DisplayErrorContext(e).to_string())
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

#[derive(Serialize, Deserialize)]
struct EndpointItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    endpoint: Endpoint,
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    delivery: Delivery,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep_pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep_sk: Option<String>,
}

/// The sweep index entry of a pending delivery: shard, then due time, then id.
fn sweep_keys(d: &Delivery) -> Option<(String, String)> {
    if d.state != DeliveryState::Pending {
        return None;
    }
    let due = d.next_attempt_at.unwrap_or(d.created_at);
    let shard = d.id.ulid().random() % SWEEP_SHARDS;
    Some((
        format!("PENDING#{shard}"),
        format!("{}#{}", time::format(&due), d.id),
    ))
}

impl DeliveryItem {
    fn of(d: &Delivery) -> Self {
        let sweep = sweep_keys(d);
        Self {
            pk: delivery_pk(d.endpoint_id),
            sk: delivery_sk(d.id),
            delivery: d.clone(),
            expires_at: time::after(d.created_at, DELIVERY_RETENTION).timestamp(),
            sweep_pk: sweep.as_ref().map(|s| s.0.clone()),
            sweep_sk: sweep.map(|s| s.1),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: ApiKeyRecord,
}

#[derive(Serialize, Deserialize)]
struct PublishItem {
    pk: String,
    sk: String,
    expires_at: i64,
    #[serde(flatten)]
    record: PublishRecord,
}

/// One client and table name, shared by every store.
#[derive(Clone, Debug)]
pub struct Table {
    pub client: Client,
    pub name: String,
}

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// Creates the table (with its sweep index and TTL) unless it exists; idempotent.
    pub async fn ensure(&self) -> Result<(), StoreError> {
        if self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key_el = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("name and type are set")
        };
        let sweep = GlobalSecondaryIndex::builder()
            .index_name(SWEEP_INDEX)
            .key_schema(key_el("sweep_pk", KeyType::Hash))
            .key_schema(key_el("sweep_sk", KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("endpoint_id")
                    .non_key_attributes("organization_id")
                    .build(),
            )
            .build()
            .expect("index is complete");
        let created = self
            .client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .attribute_definitions(attr("sweep_pk"))
            .attribute_definitions(attr("sweep_sk"))
            .key_schema(key_el("pk", KeyType::Hash))
            .key_schema(key_el("sk", KeyType::Range))
            .global_secondary_indexes(sweep)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another process created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(backend(e)),
        }
        for _ in 0..100 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(backend)?;
            if d.table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .expect("name and flag are set"),
            )
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_item<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item.map(from_item).transpose()
    }
}

/// A lost conditional write is a `Conflict`; anything else is the backend's fault.
fn conflict_or_backend<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if is_condition_failure(&e) {
        StoreError::Conflict
    } else {
        backend(e)
    }
}

fn is_condition_failure<E: std::fmt::Debug, R>(e: &SdkError<E, R>) -> bool {
    // Each operation has its own error enum; they share this variant name.
    matches!(e, SdkError::ServiceError(se) if format!("{:?}", se.err()).starts_with("ConditionalCheckFailed"))
}

#[async_trait]
impl EndpointStore for Table {
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError> {
        let item = to_item(&EndpointItem {
            pk: org_pk(&e.organization_id),
            sk: endpoint_sk(e.id),
            endpoint: e.clone(),
        })?;
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(conflict_or_backend)?;
        Ok(())
    }

    async fn get(&self, org: &str, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        Ok(self
            .get_item::<EndpointItem>(org_pk(org), endpoint_sk(id))
            .await?
            .map(|i| i.endpoint))
    }

    async fn list(&self, org: &str) -> Result<Vec<Endpoint>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :ep)")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":ep", s("EP#"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<EndpointItem>(item)?.endpoint);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn save_settings(
        &self,
        e: &Endpoint,
        expected_updated_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(&e.organization_id), endpoint_sk(e.id))))
            .update_expression(
                "SET #url = :url, description = :description, event_types = :event_types, \
                 is_active = :is_active, updated_at = :updated_at, secret = :secret, \
                 previous_secret = :previous_secret, disabled_reason = :disabled_reason",
            )
            .condition_expression("attribute_exists(pk) AND updated_at = :expected")
            .expression_attribute_names("#url", "url")
            .expression_attribute_values(":url", s(&e.url))
            .expression_attribute_values(":description", s(&e.description))
            .expression_attribute_values(":event_types", to_av(&e.event_types)?)
            .expression_attribute_values(":is_active", AttributeValue::Bool(e.is_active))
            .expression_attribute_values(":updated_at", s(time::format(&e.updated_at)))
            .expression_attribute_values(":secret", to_av(&e.secret)?)
            .expression_attribute_values(":previous_secret", to_av(&e.previous_secret)?)
            .expression_attribute_values(":disabled_reason", to_av(&e.disabled_reason)?)
            .expression_attribute_values(":expected", s(time::format(&expected_updated_at)))
            .send()
            .await
            .map_err(conflict_or_backend)?;
        Ok(())
    }

    async fn delete(&self, org: &str, id: EndpointId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(org), endpoint_sk(id))))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn record_outcome(
        &self,
        org: &str,
        id: EndpointId,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(org), endpoint_sk(id))))
            .condition_expression("attribute_exists(pk)");
        let req = match outcome {
            Outcome::Failure { at } => req
                .update_expression(
                    "SET stats.failure_streak = if_not_exists(stats.failure_streak, :zero) + :one, \
                     stats.last_failure_at = :at, stats.failing_since = if_not_exists(stats.failing_since, :at)",
                )
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":at", s(time::format(&at))),
            Outcome::RecoveredAfterFailures => req
                .update_expression("SET stats.failure_streak = :zero REMOVE stats.failing_since")
                .expression_attribute_values(":zero", AttributeValue::N("0".into())),
            Outcome::Disable { reason, at } => req
                .update_expression("SET is_active = :f, disabled_reason = :reason, updated_at = :at")
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":at", s(time::format(&at))),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            // The endpoint was deleted meanwhile: nothing to count.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl DeliveryLog for Table {
    async fn insert_many(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        for chunk in deliveries.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|d| {
                    let item = to_item(&DeliveryItem::of(d))?;
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut backoff = Duration::from_millis(25);
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, requests)
                    .send()
                    .await
                    .map_err(backend)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.name))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= 8 {
                    return Err(StoreError::Backend(format!(
                        "{} deliveries left unprocessed after retries",
                        requests.len()
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        endpoint: EndpointId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .get_item::<DeliveryItem>(delivery_pk(endpoint), delivery_sk(id))
            .await?
            .map(|i| i.delivery))
    }

    async fn list(
        &self,
        endpoint: EndpointId,
        limit: usize,
        after: Option<DeliveryId>,
        state: Option<DeliveryState>,
    ) -> Result<DeliveryPage, StoreError> {
        // Collect one more than asked: whether it exists decides `next_after` (moto omits
        // LastEvaluatedKey when Limit equals what remains, so that cannot be trusted).
        let mut found: Vec<Delivery> = Vec::new();
        // Descending from just below the cursor's key; the cursor item need not exist.
        let mut start: Option<Item> = after.map(|a| key(delivery_pk(endpoint), delivery_sk(a)));
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.name)
                .scan_index_forward(false)
                .key_condition_expression("pk = :pk AND begins_with(sk, :dlv)")
                .expression_attribute_values(":pk", s(delivery_pk(endpoint)))
                .expression_attribute_values(":dlv", s("DLV#"))
                .limit(((limit + 1 - found.len()) as i32).max(if state.is_some() {
                    100
                } else {
                    1
                }))
                .set_exclusive_start_key(start.take());
            if let Some(st) = state {
                q = q
                    .filter_expression("#state = :state")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":state", s(st.as_str()));
            }
            let page = q.send().await.map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                found.push(from_item::<DeliveryItem>(item)?.delivery);
            }
            start = page.last_evaluated_key;
            if found.len() > limit || start.is_none() {
                break;
            }
        }
        Ok(DeliveryPage::from_overfetch(found, limit))
    }

    async fn save_progress(
        &self,
        d: &Delivery,
        expected_attempts: u32,
        expected_state: DeliveryState,
    ) -> Result<(), StoreError> {
        let sweep = sweep_keys(d);
        let mut expr = String::from(
            "SET #state = :state, attempts = :attempts, max_attempts = :max_attempts, \
             next_attempt_at = :next_attempt_at, delivered_at = :delivered_at, \
             response_status = :response_status, last_error = :last_error, updated_at = :updated_at, \
             attempt_log = :attempt_log",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(delivery_pk(d.endpoint_id), delivery_sk(d.id))))
            .condition_expression("attempts = :expected_attempts AND #state = :expected_state")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(d.state.as_str()))
            .expression_attribute_values(":attempts", to_av(&d.attempts)?)
            .expression_attribute_values(":max_attempts", to_av(&d.max_attempts)?)
            .expression_attribute_values(
                ":next_attempt_at",
                to_av(&d.next_attempt_at.map(|t| time::format(&t)))?,
            )
            .expression_attribute_values(
                ":delivered_at",
                to_av(&d.delivered_at.map(|t| time::format(&t)))?,
            )
            .expression_attribute_values(":response_status", to_av(&d.response_status)?)
            .expression_attribute_values(":last_error", to_av(&d.last_error)?)
            .expression_attribute_values(":updated_at", s(time::format(&d.updated_at)))
            .expression_attribute_values(":attempt_log", to_av(&d.attempt_log)?)
            .expression_attribute_values(":expected_attempts", to_av(&expected_attempts)?)
            .expression_attribute_values(":expected_state", s(expected_state.as_str()));
        match sweep {
            Some((pk, sk)) => {
                expr.push_str(", sweep_pk = :sweep_pk, sweep_sk = :sweep_sk");
                req = req
                    .expression_attribute_values(":sweep_pk", s(pk))
                    .expression_attribute_values(":sweep_sk", s(sk));
            }
            None => expr.push_str(" REMOVE sweep_pk, sweep_sk"),
        }
        req.update_expression(expr)
            .send()
            .await
            .map_err(conflict_or_backend)?;
        Ok(())
    }

    async fn overdue(
        &self,
        due_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<DeliveryMessage>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..SWEEP_SHARDS {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.name)
                    .index_name(SWEEP_INDEX)
                    .key_condition_expression("sweep_pk = :pk AND sweep_sk < :due")
                    .expression_attribute_values(":pk", s(format!("PENDING#{shard}")))
                    .expression_attribute_values(":due", s(time::format(&due_before)))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(backend)?;
                for item in page.items.unwrap_or_default() {
                    let sk = item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .ok_or_else(|| StoreError::Corrupt("sweep entry without sk".into()))?;
                    #[derive(Deserialize)]
                    struct Entry {
                        endpoint_id: EndpointId,
                        organization_id: String,
                    }
                    let delivery_id = sk
                        .strip_prefix("DLV#")
                        .and_then(|id| id.parse().ok())
                        .ok_or_else(|| StoreError::Corrupt(format!("sweep entry with sk {sk}")))?;
                    let entry: Entry = from_item(item)?;
                    out.push(DeliveryMessage {
                        delivery_id,
                        endpoint_id: entry.endpoint_id,
                        organization_id: entry.organization_id,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl DeliveryReader for Table {
    /// One consistent BatchGetItem for both items: a single read request per delivery.
    async fn load(
        &self,
        msg: &DeliveryMessage,
    ) -> Result<(Option<Delivery>, Option<Endpoint>), StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(key(
                delivery_pk(msg.endpoint_id),
                delivery_sk(msg.delivery_id),
            ))
            .keys(key(
                org_pk(&msg.organization_id),
                endpoint_sk(msg.endpoint_id),
            ))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut pending = Some(keys);
        let (mut delivery, mut endpoint) = (None, None);
        let mut backoff = Duration::from_millis(25);
        for attempt in 0.. {
            let Some(keys) = pending.take() else { break };
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.name, keys)
                .send()
                .await
                .map_err(backend)?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.name))
                .unwrap_or_default()
            {
                let is_delivery = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|sk| sk.starts_with("DLV#"));
                if is_delivery {
                    delivery = Some(from_item::<DeliveryItem>(item)?.delivery);
                } else {
                    endpoint = Some(from_item::<EndpointItem>(item)?.endpoint);
                }
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.name))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                if attempt >= 8 {
                    return Err(StoreError::Backend(
                        "BatchGetItem left keys unprocessed after retries".into(),
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Ok((delivery, endpoint))
    }
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
            .map_err(backend)?;
        Ok(())
    }
}

fn idem_sk(key: &str) -> String {
    format!("IDEM#{key}")
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
            pk: org_pk(org),
            sk: idem_sk(key_),
            expires_at: time::after(now, ttl).timestamp(),
            record: record.clone(),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            // TTL deletion lags; an expired claim is as good as none.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) if is_condition_failure(&e) => {
                let existing: PublishItem = self
                    .get_item(org_pk(org), idem_sk(key_))
                    .await?
                    .ok_or(StoreError::Conflict)?;
                Ok(Claim::Existing(existing.record))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn commit(&self, org: &str, key_: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(org), idem_sk(key_))))
            .update_expression("SET committed = :t")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn release(&self, org: &str, key_: &str, event_id: EventId) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(org), idem_sk(key_))))
            .condition_expression("event_id = :e AND committed = :f")
            .expression_attribute_values(":e", s(event_id.to_string()))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}
