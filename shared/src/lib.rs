//! Capy Webhooks: the library every Lambda, the local server and the tests share.

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod dynamo;
pub mod health;
pub mod http;
pub mod ids;
pub mod memory;
pub mod model;
pub mod ports;
pub mod retry;
pub mod secrets;
pub mod signing;
pub mod sqs;
pub mod ssrf;
pub mod time;
