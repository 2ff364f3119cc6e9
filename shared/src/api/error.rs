//! The one place errors become HTTP: `{"error": "<sentence>"}`; 5xx logged in full, opaque outside.

use serde_json::json;

use crate::auth::AuthError;
use crate::ports::{QueueError, StoreError};
use crate::secrets::CipherError;

use super::ApiResponse;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("this credential does not grant access to organization {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::Internal(_) => 500,
        }
    }

    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        let message = match self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        ApiResponse::json(status, json!({ "error": message }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<CipherError> for ApiError {
    fn from(e: CipherError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl ApiError {
    pub fn from_auth(e: AuthError, org: &str) -> Self {
        match e {
            AuthError::Missing => Self::Unauthorized(e.to_string()),
            AuthError::Invalid(why) => {
                // Why it failed goes to the log (never the credential); the caller learns less.
                tracing::info!(reason = why, "authentication failed");
                Self::Unauthorized("invalid credential".into())
            }
            AuthError::WrongOrganization => Self::Forbidden(org.to_owned()),
            AuthError::Store(s) => Self::Internal(s.to_string()),
            AuthError::KeysUnavailable(s) => Self::Internal(format!("JWKS: {s}")),
        }
    }
}
