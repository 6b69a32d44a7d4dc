//! OpenTelemetry: records become OTLP log records and process spans, are
//! batched into the on-disk spool, and are delivered from there to the
//! Collector in order. While the Collector does not answer, records also go
//! to the local event log, and the spool keeps them for when it does.
//!
//! ```text
//! Enriched → Pipeline ─┬─ tracker (process spans) ─┐
//!                    ├─ log record ──────────────┴→ batch → spool → deliver → Collector
//!                    └─ local event log (always, or while falling back)
//! ```
//!
//! [`pipeline`] batches, [`delivery`] sends and falls back, [`local_log`]
//! is the event log as both share it, and [`exporter`] starts and stops
//! the export.

pub mod delivery;
pub mod encode;
pub mod export;
pub mod exporter;
pub mod local_log;
pub mod logs;
pub mod metrics;
pub mod pipeline;
pub mod resource;
pub mod spool;
pub mod traces;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

pub use self::{
    delivery::{ExportState, deliver, forward_metrics},
    local_log::SharedLog,
    pipeline::{Export, Pipeline},
};

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "safeguard".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

pub fn logs_request(resource: &Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
