//! API keys as stored: only the SHA-256 of the key, never the key.

use serde::{Deserialize, Serialize};

use crate::domain::time::{self, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_hash: String,
    pub organization_id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
}
