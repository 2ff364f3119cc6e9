//! Endpoints: `ORG#{org}` / `EP#{id}`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::{Table, from_item, key, n, org_pk, s, store_error, to_av, to_item};
use crate::domain::endpoint::{Endpoint, Outcome};
use crate::domain::ids::EndpointId;
use crate::domain::time::{self, Timestamp};
use crate::ports::{EndpointStore, StoreError};

pub(super) fn endpoint_sk(id: EndpointId) -> String {
    format!("EP#{id}")
}

#[derive(Serialize, Deserialize)]
pub(super) struct EndpointItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    pub(super) endpoint: Endpoint,
}

#[async_trait]
impl EndpointStore for Table {
    async fn create(&self, e: &Endpoint) -> Result<(), StoreError> {
        let mut item = to_item(&EndpointItem {
            pk: org_pk(&e.organization_id),
            sk: endpoint_sk(e.id),
            endpoint: e.clone(),
        })?;
        // An unset counter must be absent, not NULL: `record_outcome` starts a streak with
        // `if_not_exists(stats.failing_since, ...)`, which leaves a NULL in place (the
        // conformance suite caught failing_since never being set on DynamoDB).
        if let Some(AttributeValue::M(stats)) = item.get_mut("stats") {
            stats.retain(|_, v| !matches!(v, AttributeValue::Null(_)));
        }
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get(&self, org: &str, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        Ok(self
            .get_item::<EndpointItem>(org_pk(org), endpoint_sk(id))
            .await?
            .map(|i| i.endpoint))
    }

    async fn page(
        &self,
        org: &str,
        after: Option<EndpointId>,
        limit: usize,
    ) -> Result<(Vec<Endpoint>, Option<EndpointId>), StoreError> {
        // One more than asked says whether more follow (moto omits LastEvaluatedKey when
        // Limit equals what remains, so that cannot be trusted).
        let mut out: Vec<Endpoint> = Vec::new();
        let mut start = after.map(|a| key(org_pk(org), endpoint_sk(a)));
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :ep)")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":ep", s("EP#"))
                .limit((limit + 1 - out.len()) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<EndpointItem>(item)?.endpoint);
            }
            start = page.last_evaluated_key;
            if out.len() > limit || start.is_none() {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = if more { out.last().map(|e| e.id) } else { None };
        Ok((out, next))
    }

    async fn save_settings(
        &self,
        e: &Endpoint,
        expected_updated_at: Timestamp,
    ) -> Result<(), StoreError> {
        // Every owner-controlled field of `Endpoint` (all but id, organization_id,
        // created_at and stats); the conformance suite checks a change to each one sticks.
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
            .map_err(store_error)?;
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
            .map_err(store_error)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn record_outcome(
        &self,
        org: &str,
        id: EndpointId,
        outcome: Outcome,
    ) -> Result<Option<Endpoint>, StoreError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(org_pk(org), endpoint_sk(id))))
            .condition_expression("attribute_exists(pk)")
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        let req = match outcome {
            Outcome::Failures {
                count,
                first_at,
                last_at,
            } => req
                .update_expression(
                    "SET stats.failure_streak = if_not_exists(stats.failure_streak, :zero) + :count, \
                     stats.last_failure_at = :last, stats.failing_since = if_not_exists(stats.failing_since, :first)",
                )
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":count", n(count))
                .expression_attribute_values(":first", s(time::format(&first_at)))
                .expression_attribute_values(":last", s(time::format(&last_at))),
            Outcome::RecoveredAfterFailures => req
                .update_expression(
                    "SET stats.failure_streak = :zero \
                     REMOVE stats.failing_since, stats.failing_announced, stats.disable_scheduled_for, \
                     stats.disable_deferred_to",
                )
                .expression_attribute_values(":zero", n(0)),
            // Only while that streak is open: a later streak gets its own announcement.
            Outcome::FailingAnnounced { since } => req
                .condition_expression("attribute_exists(pk) AND stats.failing_since = :since")
                .update_expression("SET stats.failing_announced = :t")
                .expression_attribute_values(":since", s(time::format(&since)))
                .expression_attribute_values(":t", AttributeValue::Bool(true)),
            Outcome::DisableScheduledAnnounced {
                since,
                clock,
                deferred_to,
            } => {
                let req = req
                    .condition_expression("attribute_exists(pk) AND stats.failing_since = :since")
                    .expression_attribute_values(":since", s(time::format(&since)))
                    .expression_attribute_values(":clock", s(time::format(&clock)));
                match deferred_to {
                    Some(to) => req
                        .update_expression(
                            "SET stats.disable_scheduled_for = :clock, stats.disable_deferred_to = :to",
                        )
                        .expression_attribute_values(":to", s(time::format(&to))),
                    None => req.update_expression(
                        "SET stats.disable_scheduled_for = :clock REMOVE stats.disable_deferred_to",
                    ),
                }
            }
            // Only an active endpoint, or this very write again (an SDK retry whose answer was
            // lost): a second disabler would move `disabled_at`, which names the event.
            Outcome::Disable { reason, at } => req
                .condition_expression(
                    "attribute_exists(pk) AND (is_active = :t OR (updated_at = :at AND disabled_reason = :reason))",
                )
                .update_expression(
                    "SET is_active = :f, disabled_reason = :reason, updated_at = :at, stats.disabled_at = :at",
                )
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":at", s(time::format(&at))),
        };
        match req.send().await.map_err(store_error) {
            Ok(out) => out
                .attributes
                .filter(|a| !a.is_empty())
                .map(|a| from_item::<EndpointItem>(a).map(|i| i.endpoint))
                .transpose(),
            // The endpoint was deleted meanwhile: nothing to count.
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
