//! The OpenTelemetry export: failed requests, the Collector going away and
//! coming back, and what happens to batches in the spool.

use std::{fmt::Display, path::Path};

use tracing::{error, info, warn};

use super::{Counter, InternalEvent, Registry, Throttle};
use crate::telemetry::{
    export::{ErrorType, ExportError, Signal},
    spool::SpoolError,
};

/// An export request the Collector did not take
/// (`safeguard.export.request.failed` by signal and `error.type`). Counted
/// only: what follows from it (falling back, a refused batch) is its own
/// event.
#[derive(Debug)]
pub struct ExportFailed {
    pub signal: Signal,
    pub error: ErrorType,
}

impl InternalEvent for ExportFailed {
    fn emit(self, registry: &Registry) {
        registry.add_export_failure(self.signal, self.error);
    }
}

/// Items whose export is final: a batch the Collector accepted (`error`
/// none; items it said it dropped come as [`ExportPartial`]), or a metrics
/// collection, delivered or failed (not retried). Counted in
/// `otel.sdk.exporter.*.exported`; the failures that end a batch's
/// export count there themselves ([`ExportRejected`], [`ExportPartial`],
/// [`SpoolBatchDamaged`], [`SpoolBatchEvicted`], [`SpoolWriteFailed`]).
#[derive(Debug)]
pub struct ItemsExported {
    pub signal: Signal,
    pub items: u64,
    pub error: Option<ErrorType>,
}

impl InternalEvent for ItemsExported {
    fn emit(self, registry: &Registry) {
        registry.add_exported(self.signal, self.error, self.items);
    }
}

/// The Collector stopped answering: from now on events also go to the
/// local event log, and the spool keeps them. Emitted once per outage.
#[derive(Debug)]
pub struct CollectorUnavailable<'a> {
    pub endpoint: &'a str,
    pub error: &'a ExportError,
    /// Where the local event log is.
    pub event_log: &'a str,
    pub spool_dir: &'a Path,
}

impl InternalEvent for CollectorUnavailable<'_> {
    fn emit(self, _registry: &Registry) {
        warn!(
            "cannot deliver to the OpenTelemetry Collector at {}: {}; falling back: events are written to {} and kept in {} until it answers",
            self.endpoint,
            self.error,
            self.event_log,
            self.spool_dir.display()
        );
    }
}

/// The Collector answers again after [`CollectorUnavailable`].
#[derive(Debug)]
pub struct CollectorRecovered<'a> {
    pub endpoint: &'a str,
    /// Batches waiting in the spool, sent next.
    pub spooled_batches: u64,
}

impl InternalEvent for CollectorRecovered<'_> {
    fn emit(self, _registry: &Registry) {
        info!(
            spooled_batches = self.spooled_batches,
            "the OpenTelemetry Collector at {} answers again; sending what was spooled",
            self.endpoint
        );
    }
}

/// The Collector refused a batch as malformed: it is not sent again (its
/// log records are in the local event log).
#[derive(Debug)]
pub struct ExportRejected<'a> {
    pub signal: Signal,
    pub records: u64,
    pub error: &'a ExportError,
}

impl InternalEvent for ExportRejected<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add_export_failure(self.signal, self.error.kind());
        registry.add_exported(self.signal, Some(self.error.kind()), self.records);
        if Throttle::DOUBLING.allows(n) {
            error!(
                records = self.records,
                refused = n,
                "the Collector refused a {} batch: {}; it is dropped from the spool (log records are kept in the local event log)",
                self.signal.name(),
                self.error
            );
        }
    }
}

/// The Collector took a batch but dropped some of its items (OTLP partial
/// success).
#[derive(Debug)]
pub struct ExportPartial<'a> {
    pub signal: Signal,
    /// Items it says it dropped.
    pub rejected: i64,
    pub message: &'a str,
}

impl InternalEvent for ExportPartial<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add_export_failure(self.signal, ErrorType::Partial);
        registry.add_exported(
            self.signal,
            Some(ErrorType::Partial),
            u64::try_from(self.rejected).unwrap_or(0),
        );
        if Throttle::DOUBLING.allows(n) {
            warn!(
                rejected = self.rejected,
                partial = n,
                "the Collector accepted a {} batch only in part: {}",
                self.signal.name(),
                self.message
            );
        }
    }
}

/// A spooled batch that no longer decodes (left damaged by a previous run,
/// or damaged on disk since), moved aside as `<name>.damaged` and not sent:
/// the Collector would refuse it at every try, and every batch behind it
/// would wait. Each is named, so the operator can look at it.
pub struct SpoolBatchDamaged<'a> {
    pub signal: Signal,
    pub records: u64,
    /// Why it does not decode.
    pub error: &'a dyn Display,
    /// Where it is now.
    pub path: &'a Path,
    /// Its records are in the local event log.
    pub in_local_log: bool,
}

impl InternalEvent for SpoolBatchDamaged<'_> {
    fn emit(self, registry: &Registry) {
        registry.add_export_failure(self.signal, ErrorType::Encoding);
        registry.add_exported(self.signal, Some(ErrorType::Encoding), self.records);
        error!(
            records = self.records,
            "a spooled {} batch does not decode ({}): moved to {}, not sent{}",
            self.signal.name(),
            self.error,
            self.path.display(),
            if self.in_local_log {
                " (its records are in the local event log)"
            } else {
                ""
            }
        );
    }
}

/// The spool passed `spool_max_bytes`: its oldest batch was evicted (its
/// log records go to the local event log;
/// `safeguard.spool.record.evicted` counts them).
#[derive(Debug)]
pub struct SpoolBatchEvicted {
    pub signal: Signal,
    pub records: u64,
    /// The spool's size now.
    pub spool_bytes: u64,
}

impl InternalEvent for SpoolBatchEvicted {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::SpoolEvictions, 1);
        registry.add_exported(self.signal, Some(ErrorType::Spool), self.records);
        if Throttle::DOUBLING.allows(n) {
            warn!(
                records = self.records,
                evicted_batches = n,
                "spool is full ({} bytes): evicted its oldest {} batch",
                self.spool_bytes,
                self.signal.name()
            );
        }
    }
}

/// A batch could not be written to the spool; it goes to the local event
/// log only (`error.type=spool`).
#[derive(Debug)]
pub struct SpoolWriteFailed<'a> {
    pub signal: Signal,
    pub records: u64,
    pub error: &'a SpoolError,
}

impl InternalEvent for SpoolWriteFailed<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add_export_failure(self.signal, ErrorType::Spool);
        registry.add_exported(self.signal, Some(ErrorType::Spool), self.records);
        if Throttle::DOUBLING.allows(n) {
            error!(
                failed = n,
                "{}: the batch goes to the local event log only", self.error
            );
        }
    }
}
