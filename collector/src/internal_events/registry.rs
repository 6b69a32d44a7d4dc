//! The one store of the agent's own counters. Internal events add to it
//! ([`super::InternalEvent::emit`]); the metrics bridge
//! (`telemetry::metrics`), `safeguard status` and the stop summary read it.

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use collector_common::{DropReason, Hook};

use super::InternalEvent;
use crate::telemetry::export::{ErrorType, Signal};

/// A counter the registry keeps, one per kind of happening that is counted
/// without attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Records read from the ring buffer.
    Received,
    /// Events reported (at or above the configured level).
    Reported,
    /// Events dropped because the queue between the reader and the
    /// pipeline was full.
    QueueDrops,
    /// Kernel records that did not decode.
    DecodeErrors,
    /// Relative paths (audit tier) whose process was gone before the agent
    /// could resolve them.
    UnresolvedPaths,
    /// Writes (and flushes) of the local event log that failed.
    EventLogWriteErrors,
    /// Log records written to the local event log because the Collector
    /// did not answer.
    FallbackRecords,
    /// Batches evicted from the full spool.
    SpoolEvictions,
    /// Configuration reloads put in force.
    Reloads,
    /// Configuration reloads rejected (the running policy stayed).
    ReloadFailures,
    /// Reads of the kernel's drop counters that failed.
    KernelDropReadErrors,
    /// Stop requests over the status socket refused (not from root).
    StopsRefused,
    /// `dns_proxy` answers about no ruled name.
    DnsProxyAnswered,
    /// `dns_proxy` answers about a ruled name, its addresses in force.
    DnsProxyRuleHits,
    /// `dns_proxy` SERVFAILs: no upstream answered.
    DnsProxyUpstreamFailures,
    /// `dns_proxy` SERVFAILs: the addresses could not be put in force.
    DnsProxyNotInForce,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 16] = [
        Counter::Received,
        Counter::Reported,
        Counter::QueueDrops,
        Counter::DecodeErrors,
        Counter::UnresolvedPaths,
        Counter::EventLogWriteErrors,
        Counter::FallbackRecords,
        Counter::SpoolEvictions,
        Counter::Reloads,
        Counter::ReloadFailures,
        Counter::KernelDropReadErrors,
        Counter::StopsRefused,
        Counter::DnsProxyAnswered,
        Counter::DnsProxyRuleHits,
        Counter::DnsProxyUpstreamFailures,
        Counter::DnsProxyNotInForce,
    ];
}

/// Records the kernel could not hand over, as last read from its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDrops {
    /// `Hook::name`.
    pub hook: &'static str,
    /// `semconv::drop_reason`.
    pub reason: &'static str,
    /// Since the programs' maps were created.
    pub records: u64,
}

impl KernelDrops {
    pub fn new(hook: Hook, reason: DropReason, records: u64) -> Self {
        Self {
            hook: hook.name(),
            reason: match reason {
                DropReason::RingFull => semconv::drop_reason::RING_FULL,
                DropReason::ReservedForBlocked => semconv::drop_reason::RESERVED_FOR_BLOCKED,
                DropReason::Sampled => semconv::drop_reason::SAMPLED,
            },
            records,
        }
    }
}

/// Export requests that failed for one signal and error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportFailures {
    pub signal: Signal,
    pub error: ErrorType,
    pub requests: u64,
}

/// Items (log records, spans, metric data points) of one signal whose
/// export is final with one outcome: delivered (`error` none) or given up
/// (`otel.sdk.exporter.*.exported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub signal: Signal,
    pub error: Option<ErrorType>,
    pub items: u64,
}

/// The agent's own counters. One per agent, shared (`Arc`) by every stage
/// that has something to count; only internal events add to it, so each
/// count goes with its log line. Counters are plain atomics (one relaxed
/// add on the per-event path); export failures and kernel drops, rarer and
/// with attributes, are behind a lock.
#[derive(Debug, Default)]
pub struct Registry {
    counters: [AtomicU64; Counter::ALL.len()],
    export_failures: Mutex<Vec<ExportFailures>>,
    exported: Mutex<Vec<Exported>>,
    kernel_drops: Mutex<Vec<KernelDrops>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change below is complete before it could panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Counts and says `event`: `registry.emit(QueueFull)`.
    #[inline]
    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(self);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Relaxed)
    }

    /// Export requests that failed, per signal and error type, in the order
    /// first seen.
    pub fn export_failures(&self) -> Vec<ExportFailures> {
        locked(&self.export_failures).clone()
    }

    /// Items whose export is final, per signal and outcome, in the order
    /// first seen.
    pub fn exported(&self) -> Vec<Exported> {
        locked(&self.exported).clone()
    }

    /// The kernel's drop counters as last read, every hook and reason.
    pub fn kernel_drops(&self) -> Vec<KernelDrops> {
        locked(&self.kernel_drops).clone()
    }

    /// Records lost in the kernel, all hooks and reasons, as last read.
    pub fn kernel_drops_total(&self) -> u64 {
        locked(&self.kernel_drops).iter().map(|d| d.records).sum()
    }

    /// Adds `n` and returns the new total.
    #[inline]
    pub(super) fn add(&self, counter: Counter, n: u64) -> u64 {
        self.counters[counter as usize].fetch_add(n, Relaxed) + n
    }

    /// Counts one failed request and returns how many failed so far for this
    /// signal and error type.
    pub(super) fn add_export_failure(&self, signal: Signal, error: ErrorType) -> u64 {
        let mut failures = locked(&self.export_failures);
        match failures
            .iter_mut()
            .find(|f| f.signal == signal && f.error == error)
        {
            Some(f) => {
                f.requests += 1;
                f.requests
            }
            None => {
                failures.push(ExportFailures {
                    signal,
                    error,
                    requests: 1,
                });
                1
            }
        }
    }

    /// Counts `items` of `signal` whose export is final with `error`.
    pub(super) fn add_exported(&self, signal: Signal, error: Option<ErrorType>, items: u64) {
        if items == 0 {
            return;
        }
        let mut exported = locked(&self.exported);
        match exported
            .iter_mut()
            .find(|e| e.signal == signal && e.error == error)
        {
            Some(e) => e.items += items,
            None => exported.push(Exported {
                signal,
                error,
                items,
            }),
        }
    }

    pub(super) fn set_kernel_drops(&self, drops: Vec<KernelDrops>) {
        *locked(&self.kernel_drops) = drops;
    }
}
