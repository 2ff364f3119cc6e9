//! The operator bus on EventBridge: `PutEvents` to the bus `OPERATOR_EVENT_BUS` names
//! (source [`SOURCE`], the detail type says what happened). Without the setting, [`NoBus`].
//!
//! The client is built on the first event, not at init: most invocations never raise one.

use std::sync::OnceLock;

use async_trait::async_trait;
use aws_sdk_eventbridge::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::ports::{BusError, OperatorBus, OperatorEvent};

/// Every event's `Source`: what an EventBridge rule matches on.
pub const SOURCE: &str = "capy.webhooks";
/// `PutEvents` takes at most 10 entries a call.
const PUT_EVENTS_MAX: usize = 10;

pub struct EventBridgeBus {
    sdk: aws_config::SdkConfig,
    bus: String,
    client: OnceLock<aws_sdk_eventbridge::Client>,
}

impl EventBridgeBus {
    pub fn new(sdk: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self {
            sdk: sdk.clone(),
            bus: bus.into(),
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> &aws_sdk_eventbridge::Client {
        self.client
            .get_or_init(|| aws_sdk_eventbridge::Client::new(&self.sdk))
    }
}

#[async_trait]
impl OperatorBus for EventBridgeBus {
    async fn put(&self, events: &[OperatorEvent]) -> Result<(), BusError> {
        for chunk in events.chunks(PUT_EVENTS_MAX) {
            let entries = chunk
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(&e.detail_type)
                        .detail(e.detail.to_string())
                        .build()
                })
                .collect();
            let out = self
                .client()
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| BusError {
                    message: match e.code() {
                        Some(code) => format!("{code}: {}", DisplayErrorContext(&e)),
                        None => DisplayErrorContext(&e).to_string(),
                    },
                })?;
            if out.failed_entry_count > 0 {
                let why: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        e.error_code()
                            .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                    })
                    .collect();
                return Err(BusError {
                    message: format!(
                        "{} of {} events refused ({})",
                        out.failed_entry_count,
                        chunk.len(),
                        why.join("; ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// No bus configured: every event is dropped (operators read the logs and alarms).
pub struct NoBus;

#[async_trait]
impl OperatorBus for NoBus {
    async fn put(&self, _: &[OperatorEvent]) -> Result<(), BusError> {
        Ok(())
    }
}

/// Keeps what is put (tests and benchmarks).
#[derive(Default)]
pub struct MemoryBus(std::sync::Mutex<Vec<OperatorEvent>>);

impl MemoryBus {
    pub fn events(&self) -> Vec<OperatorEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl OperatorBus for MemoryBus {
    async fn put(&self, events: &[OperatorEvent]) -> Result<(), BusError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}
