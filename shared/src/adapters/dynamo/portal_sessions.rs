//! Portal sessions: `PS#{id}` / `PS`, with a TTL at the session's expiry.
//!
//! A token names its session (`capy_portal_{id}{random}`), so authenticating one is a single
//! GetItem by id followed by a constant-time comparison of the token's SHA-256 with the
//! stored hash; revoking by id needs no index either.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Table, s, store_error, to_item};
use crate::domain::ids::PortalSessionId;
use crate::domain::portal_session::{Capability, PortalSessionRecord};
use crate::domain::time::{self, Timestamp};
use crate::ports::{PortalSessionStore, StoreError};

fn session_pk(id: PortalSessionId) -> String {
    format!("PS#{id}")
}

const SESSION_SK: &str = "PS";

/// The record, with `expires_at` as the table's TTL attribute (epoch seconds, rounded up so
/// the item outlives the session) and the exact expiry kept beside it.
#[derive(Serialize, Deserialize)]
struct SessionItem {
    pk: String,
    sk: String,
    id: PortalSessionId,
    token_hash: String,
    organization_id: String,
    capabilities: Vec<Capability>,
    #[serde(with = "time::rfc3339")]
    created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    expires: Timestamp,
    expires_at: i64,
    /// Absent until revoked (not NULL: revoking sets it with `if_not_exists`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::rfc3339::option"
    )]
    revoked_at: Option<Timestamp>,
}

impl From<&PortalSessionRecord> for SessionItem {
    fn from(r: &PortalSessionRecord) -> Self {
        let secs = r.expires_at.timestamp();
        let ttl = if r.expires_at.timestamp_subsec_millis() > 0 {
            secs + 1
        } else {
            secs
        };
        Self {
            pk: session_pk(r.id),
            sk: SESSION_SK.into(),
            id: r.id,
            token_hash: r.token_hash.clone(),
            organization_id: r.organization_id.clone(),
            capabilities: r.capabilities.clone(),
            created_at: r.created_at,
            expires: r.expires_at,
            expires_at: ttl,
            revoked_at: r.revoked_at,
        }
    }
}

impl From<SessionItem> for PortalSessionRecord {
    fn from(i: SessionItem) -> Self {
        Self {
            id: i.id,
            token_hash: i.token_hash,
            organization_id: i.organization_id,
            capabilities: i.capabilities,
            created_at: i.created_at,
            expires_at: i.expires,
            revoked_at: i.revoked_at,
        }
    }
}

#[async_trait]
impl PortalSessionStore for Table {
    async fn create(&self, r: &PortalSessionRecord) -> Result<(), StoreError> {
        let item = to_item(&SessionItem::from(r))?;
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

    async fn get(&self, id: PortalSessionId) -> Result<Option<PortalSessionRecord>, StoreError> {
        Ok(self
            .get_item::<SessionItem>(session_pk(id), SESSION_SK.into())
            .await?
            .map(Into::into))
    }

    async fn revoke(
        &self,
        org: &str,
        id: PortalSessionId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        // One conditional update: a missing item or another organization's fails the
        // condition, which is the "no such session" answer.
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", s(session_pk(id)))
            .key("sk", s(SESSION_SK))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("organization_id = :org")
            .expression_attribute_values(":org", s(org))
            .expression_attribute_values(":at", s(time::format(&at)))
            .send()
            .await
            .map_err(store_error);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
