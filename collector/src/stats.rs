//! The agent's own counters: every record lost or skipped is counted here
//! (kernel-side drops are counted in the kernel's DROPS map).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub received: AtomicU64,
    /// Records that did not decode (malformed); each is logged.
    pub decode_errors: AtomicU64,
    /// Events dropped because the pipeline queue was full.
    pub queue_drops: AtomicU64,
    /// Relative paths (fallback tier) whose process was gone before the
    /// agent could resolve them.
    pub unresolved_paths: AtomicU64,
    /// Events reported (at or above the configured level).
    pub written: AtomicU64,
    /// Records the local event log could not write.
    pub write_errors: AtomicU64,
    /// Configuration reloads put in force.
    pub reloads: AtomicU64,
    /// Configuration reloads rejected (the running policy stayed).
    pub reload_failures: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Relaxed) + n
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
