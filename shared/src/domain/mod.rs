//! The records and the rules, as pure data and functions: no I/O here.

pub mod api_key;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod health;
pub mod ids;
pub mod job;
pub mod portal_session;
pub mod retry;
pub mod signing;
pub mod subscription;
pub mod time;
