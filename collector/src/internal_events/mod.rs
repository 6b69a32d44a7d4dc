//! What happens to the agent itself: one struct per happening (a record
//! dropped, the event log failing, the Collector going away, a reload
//! rejected, …), whose [`InternalEvent::emit`] writes its log line and
//! counts it in the [`Registry`], together, in one place. Call sites say
//! `registry.emit(QueueFull)`.
//!
//! Happenings that can repeat are said under one [`Throttle`], decided on
//! their own counter. The registry is what the metrics bridge
//! (`telemetry::metrics`), `safeguard status` and the stop summary
//! ([`AgentStopped`]) read.

mod agent;
mod dns_proxy;
mod event_log;
mod export;
mod intake;
mod registry;
mod throttle;

pub use self::{
    agent::{
        AgentStopped, IntegrityChecked, KernelDropsRead, KernelDropsUnreadable, ReloadApplied,
        ReloadRejected, StopRefused, StopRequested,
    },
    dns_proxy::{DnsProxyAnswered, DnsProxyOutcome},
    event_log::{EventLogWriteFailed, FallbackRecordsWritten, LogBatchUndecodable},
    export::{
        CollectorRecovered, CollectorUnavailable, ExportFailed, ExportPartial, ExportRejected,
        ItemsExported, SpoolBatchDamaged, SpoolBatchEvicted, SpoolWriteFailed,
    },
    intake::{
        EventReported, KernelRecordMalformed, KernelRecordReceived, PathUnresolved, QueueFull,
    },
    registry::{Counter, ExportFailures, Exported, KernelDrops, Registry},
    throttle::Throttle,
};

/// A happening of the agent's own. `emit` counts it in `registry` and, if
/// it is worth a line, says it.
pub trait InternalEvent {
    fn emit(self, registry: &Registry);
}

#[cfg(test)]
mod tests;
