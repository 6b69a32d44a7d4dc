//! From the ring buffer to the pipeline: records read, dropped, malformed,
//! unresolved, reported.

use tracing::warn;

use super::{Counter, InternalEvent, Registry, Throttle};
use crate::events::decode::DecodeError;

/// A record read from the ring buffer. On the per-event path: one atomic
/// add.
#[derive(Debug)]
pub struct KernelRecordReceived;

impl InternalEvent for KernelRecordReceived {
    #[inline]
    fn emit(self, registry: &Registry) {
        registry.add(Counter::Received, 1);
    }
}

/// An event dropped because the queue between the reader and the pipeline
/// was full (the reader never waits: the ring buffer keeps draining).
#[derive(Debug)]
pub struct QueueFull;

impl InternalEvent for QueueFull {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::QueueDrops, 1);
        if Throttle::DOUBLING.allows(n) {
            warn!(dropped = n, "event queue full: events dropped");
        }
    }
}

/// A kernel record that did not decode. The first ten are said, then
/// doubling.
#[derive(Debug)]
pub struct KernelRecordMalformed<'a> {
    /// The record's length.
    pub bytes: usize,
    pub error: &'a DecodeError,
}

impl InternalEvent for KernelRecordMalformed<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::DecodeErrors, 1);
        if Throttle::after(10).allows(n) {
            warn!(
                total = n,
                "malformed kernel record ({} bytes): {}", self.bytes, self.error
            );
        }
    }
}

/// A relative path (audit tier) whose process was gone before the agent
/// could resolve it: the event is not reported. Counted, not said (a
/// short-lived process makes many).
#[derive(Debug)]
pub struct PathUnresolved;

impl InternalEvent for PathUnresolved {
    fn emit(self, registry: &Registry) {
        registry.add(Counter::UnresolvedPaths, 1);
    }
}

/// An event at or above the configured level, handed to the local log or
/// the OpenTelemetry export. On the per-event path: one atomic add.
#[derive(Debug)]
pub struct EventReported;

impl InternalEvent for EventReported {
    #[inline]
    fn emit(self, registry: &Registry) {
        registry.add(Counter::Reported, 1);
    }
}
