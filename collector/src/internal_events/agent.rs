//! The agent as a whole: configuration reloads, the kernel's drop
//! counters, stop requests, and the summary said when it stops.

use std::fmt::Display;

use collector_common::{DropReason, Hook};
use tracing::{error, info, warn};

use super::{Counter, InternalEvent, KernelDrops, Registry, Throttle};

/// A reloaded configuration whose policy is now in force.
#[derive(Debug)]
pub struct ReloadApplied {
    /// Rules in the new policy.
    pub rules: usize,
}

impl InternalEvent for ReloadApplied {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::Reloads, 1);
        info!(
            reloads = n,
            rules = self.rules,
            "configuration reloaded: the new policy is in force"
        );
    }
}

/// A reloaded configuration that is not valid or could not be put in
/// force: the running policy stays.
pub struct ReloadRejected<'a> {
    /// Why, as `safeguard check` would say it.
    pub why: &'a dyn std::fmt::Display,
}

impl InternalEvent for ReloadRejected<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::ReloadFailures, 1);
        error!(
            rejected = n,
            "configuration reload rejected, the running policy stays: {}", self.why
        );
    }
}

/// The kernel's drop counters, read (every few seconds, and at stop):
/// they replace what was read before.
#[derive(Debug)]
pub struct KernelDropsRead {
    pub drops: Vec<(Hook, DropReason, u64)>,
}

impl InternalEvent for KernelDropsRead {
    fn emit(self, registry: &Registry) {
        registry.set_kernel_drops(
            self.drops
                .into_iter()
                .map(|(hook, reason, n)| KernelDrops::new(hook, reason, n))
                .collect(),
        );
    }
}

/// The kernel's drop counters could not be read; the last values read
/// stay.
pub struct KernelDropsUnreadable<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for KernelDropsUnreadable<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::KernelDropReadErrors, 1);
        if Throttle::DOUBLING.allows(n) {
            warn!("cannot read kernel drop counters: {}", self.error);
        }
    }
}

/// Root asked the agent to stop over the status socket (`safeguard
/// stop`): it stops as on SIGTERM.
pub struct StopRequested<'a> {
    /// Who asked, as `pid N uid 0`.
    pub by: &'a dyn Display,
}

impl InternalEvent for StopRequested<'_> {
    fn emit(self, _: &Registry) {
        info!("stop requested over the status socket by {}", self.by);
    }
}

/// The self-check's answer changed: problems found (each said once,
/// until the answer changes again), or none left.
pub struct IntegrityChecked<'a> {
    pub problems: &'a [String],
}

impl InternalEvent for IntegrityChecked<'_> {
    fn emit(self, _: &Registry) {
        if self.problems.is_empty() {
            info!("self-check: programs, policy set, pins and guard are as the agent left them");
        }
        for problem in self.problems {
            warn!("self-check: {problem}");
        }
    }
}

/// A stop request over the status socket was refused (not from root); the
/// agent goes on.
pub struct StopRefused<'a> {
    /// Why, as the client is told.
    pub why: &'a dyn Display,
}

impl InternalEvent for StopRefused<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::StopsRefused, 1);
        if Throttle::DOUBLING.allows(n) {
            warn!(refused = n, "{}", self.why);
        }
    }
}

/// The agent stopped: what it received, reported and lost, in one line
/// (tests and operators read its `key=value` fields).
#[derive(Debug)]
pub struct AgentStopped;

impl InternalEvent for AgentStopped {
    fn emit(self, registry: &Registry) {
        info!(
            received = registry.get(Counter::Received),
            written = registry.get(Counter::Reported),
            kernel_drops = registry.kernel_drops_total(),
            queue_drops = registry.get(Counter::QueueDrops),
            decode_errors = registry.get(Counter::DecodeErrors),
            unresolved_paths = registry.get(Counter::UnresolvedPaths),
            write_errors = registry.get(Counter::EventLogWriteErrors),
            "stopped"
        );
    }
}
