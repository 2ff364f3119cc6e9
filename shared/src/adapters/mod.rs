//! The ports' implementations: AWS (`dynamo`, `sqs`, `secrets` with KMS) and the
//! in-memory twins (`memory`).

pub mod dynamo;
pub mod eventbridge;
pub mod memory;
pub mod secrets;
pub mod sqs;
