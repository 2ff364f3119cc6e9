//! The one place errors become HTTP: `{"error": "<sentence>"}`; 5xx logged in full, opaque
//! outside; a fault a retry can fix is a 503 with `Retry-After`.

use serde_json::json;

use crate::auth::AuthError;
use crate::ports::{CipherError, QueueError, StoreError};
use crate::services::ServiceError;

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
    ForbiddenAction(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) | Self::ForbiddenAction(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }

    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        match self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                ApiResponse::json(status, json!({ "error": "internal error" }))
            }
            Self::Unavailable(detail) => {
                tracing::warn!(error = %detail, "request failed on a transient fault");
                ApiResponse::json(
                    status,
                    json!({ "error": "the service is busy; retry after a second" }),
                )
                .with_header("retry-after", "1")
            }
            other => ApiResponse::json(status, json!({ "error": other.to_string() })),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transient(_) => Self::Unavailable(e.to_string()),
            StoreError::Conflict => {
                Self::Conflict("the record changed while this request ran; retry it".into())
            }
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.retryable {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<CipherError> for ApiError {
    fn from(e: CipherError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => Self::NotFound(m),
            ServiceError::Invalid(m) => Self::BadRequest(m),
            ServiceError::Conflict(m) => Self::Conflict(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Queue(e) => e.into(),
            ServiceError::Cipher(e) => e.into(),
        }
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
            AuthError::Store(s) => s.into(),
            AuthError::KeysUnavailable(s) => Self::Internal(format!("JWKS: {s}")),
        }
    }
}
