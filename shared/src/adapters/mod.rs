//! The ports' implementations: AWS (`dynamo`, `sqs`, `secrets` with KMS) and the
//! in-memory twins (`memory`).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub mod dynamo;
pub mod eventbridge;
pub mod memory;
pub mod secrets;
pub mod sqs;

/// Whether a failed AWS call may succeed if made again: a timeout, a dispatch or response
/// failure, or a service error whose code is one of the service's `transient_codes`
/// (throttling, 5xx). By kind and code, never by the message's text. Every SDK crate's
/// `SdkError` is the same smithy type, so this serves DynamoDB, SQS and KMS alike.
pub(crate) fn is_transient<E, R>(e: &SdkError<E, R>, transient_codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => se
            .err()
            .code()
            .is_some_and(|c| transient_codes.contains(&c)),
        _ => false,
    }
}
