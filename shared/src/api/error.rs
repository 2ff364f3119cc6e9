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
        match e {
            CipherError::KmsUnavailable(_) => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
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
            // The JWKS could not be fetched: the caller's credential may be fine; retry.
            AuthError::KeysUnavailable(s) => Self::Unavailable(format!("JWKS: {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: impl Into<ApiError>) -> (u16, Vec<(String, String)>, String) {
        let r = e.into().into_response();
        let error = r.body["error"].as_str().expect("error sentence").to_owned();
        (r.status, r.headers, error)
    }

    /// Known answers: what a retry can fix is a 503 with `Retry-After`, by the error's type;
    /// our own faults are an opaque 500; neither leaks its detail.
    #[test]
    fn errors_map_to_http_by_kind() {
        let retry = vec![("retry-after".to_owned(), "1".to_owned())];
        let busy = "the service is busy; retry after a second".to_owned();
        let opaque = (500, vec![], "internal error".to_owned());
        assert_eq!(
            answer(StoreError::Transient("throttled: secret detail".into())),
            (503, retry.clone(), busy.clone())
        );
        assert_eq!(
            answer(QueueError {
                retryable: true,
                message: "x".into()
            }),
            (503, retry.clone(), busy.clone())
        );
        assert_eq!(
            answer(CipherError::KmsUnavailable("x".into())),
            (503, retry.clone(), busy.clone())
        );
        assert_eq!(
            answer(ApiError::from_auth(
                AuthError::KeysUnavailable("x".into()),
                "o"
            )),
            (503, retry, busy)
        );
        assert_eq!(answer(StoreError::Backend("secret detail".into())), opaque);
        assert_eq!(answer(CipherError::Kms("denied".into())), opaque);
        assert_eq!(
            answer(QueueError {
                retryable: false,
                message: "x".into()
            }),
            opaque
        );
        assert_eq!(answer(StoreError::Conflict).0, 409);
        assert_eq!(
            answer(ServiceError::Invalid("bad".into())),
            (400, vec![], "bad".to_owned())
        );
        assert_eq!(answer(ServiceError::event_not_found()).0, 404);
    }
}
