//! The table's schema, defined once: `capy serve` creates the table from it, and
//! `tests/tests/contract.rs` holds `template.yaml`'s table to it.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{Table, store_error};
use crate::ports::StoreError;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// Events, deliveries, fan-out pages and publish claims expire at this epoch-seconds attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// On-demand: no capacity to plan, and the prices DESIGN §7 and `make bench-aws` use.
pub const BILLING_MODE: BillingMode = BillingMode::PayPerRequest;

pub struct IndexSchema {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
    /// Attributes projected besides the keys (`INCLUDE`); empty means `KEYS_ONLY`.
    pub non_key_attributes: &'static [&'static str],
}

/// Deliveries the sweeper must look at: parked retries, and messages sent outside a
/// consumer. Sparse (only such deliveries carry its keys) and sharded, so a Query per shard
/// finds what is due without a Scan or a hot partition.
pub const SWEEP_INDEX: IndexSchema = IndexSchema {
    name: "sweep",
    partition_key: "sweep_pk",
    sort_key: "sweep_sk",
    non_key_attributes: &["endpoint_id", "organization_id", "event_id"],
};

pub const SWEEP_SHARDS: u128 = 16;

pub const INDEXES: [&IndexSchema; 1] = [&SWEEP_INDEX];

/// Every key attribute (table and indexes); all are strings.
pub fn key_attributes() -> Vec<&'static str> {
    let mut attrs = vec![PARTITION_KEY, SORT_KEY];
    for i in INDEXES {
        attrs.extend([i.partition_key, i.sort_key]);
    }
    attrs
}

fn key_el(name: &str, t: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .expect("name and type are set")
}

impl Table {
    /// Creates the table (indexes, TTL) from this schema unless it exists; idempotent.
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
        let mut create = self
            .client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BILLING_MODE)
            .key_schema(key_el(PARTITION_KEY, KeyType::Hash))
            .key_schema(key_el(SORT_KEY, KeyType::Range));
        for a in key_attributes() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            );
        }
        for i in INDEXES {
            let projection = if i.non_key_attributes.is_empty() {
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build()
            } else {
                let mut p = Projection::builder().projection_type(ProjectionType::Include);
                for a in i.non_key_attributes {
                    p = p.non_key_attributes(*a);
                }
                p.build()
            };
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(i.name)
                    .key_schema(key_el(i.partition_key, KeyType::Hash))
                    .key_schema(key_el(i.sort_key, KeyType::Range))
                    .projection(projection)
                    .build()
                    .expect("index is complete"),
            );
        }
        match create.send().await {
            Ok(_) => {}
            // Another process created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(store_error(e)),
        }
        for _ in 0..100 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(store_error)?;
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
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .expect("name and flag are set"),
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
