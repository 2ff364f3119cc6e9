//! Capy Webhooks: the library every Lambda, the local server and the tests share.
//!
//! | module | holds |
//! |---|---|
//! | `domain` | records and rules as pure data and functions (ids, time, retry, signing, health, subscriptions) |
//! | `ports` | one trait per capability the services need |
//! | `adapters` | the ports on DynamoDB, SQS and KMS, and their in-memory twins |
//! | `services` | the use cases: publish, fan-out, endpoint changes, retries |
//! | `api` | the HTTP routes: one file per resource, one error mapping, one view mapping |
//! | `consumers` | the queue and schedule handlers |
//! | `dispatch` | the destination transport trait the deliver consumer sends through (HTTP first) |
//! | `portal_assets` | how the portal's built files are served (`capy serve`, the `portal` Lambda) |
//! | `auth`, `http`, `ssrf`, `config`, `wiring` | credentials; outbound sends; destination policy; settings; building `Deps` |

pub mod adapters;
pub mod api;
pub mod auth;
pub mod config;
pub mod consumers;
pub mod dispatch;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod portal_assets;
pub mod ports;
pub mod services;
pub mod ssrf;
pub mod wiring;
