//! The status socket: the running agent answers on a Unix socket that
//! only root can open (mode 0600). `safeguard status` asks it for a JSON
//! snapshot of the agent and prints it for people or, with `--json`, for
//! scripts; `safeguard stop` asks the agent to stop.
//!
//! [`server`] is the agent's side (one request per connection, see
//! [`Request`]), [`client`] the commands' side.

mod client;
mod server;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use self::{
    client::{query, stop},
    server::{Peer, Reply, Request, RequestError, Server, refusal},
};
use crate::{
    internal_events::{Counter, Registry},
    telemetry::{ExportState, metrics::Observed, spool::Spool},
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    /// Each policy row and its tier: enforced, audit-only or unavailable.
    pub rows: Vec<RowStatus>,
    /// Rules loaded, per module.
    pub rules: BTreeMap<String, u64>,
    /// `kernel.protect`: on (and what it guards), off, or unavailable.
    #[serde(default)]
    pub protection: String,
    /// What the last self-check found no longer as the agent left it.
    #[serde(default)]
    pub integrity: Vec<String>,
    pub counters: Counters,
    /// Records lost in the kernel, as `hook: reason` (only those with drops).
    pub kernel_drops: BTreeMap<String, u64>,
    /// Where the local event log is.
    pub event_log: String,
    /// `None` when OpenTelemetry export is off.
    pub export: Option<ExportStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RowStatus {
    pub row: String,
    pub tier: String,
}

/// The registry's counters as the status socket carries them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub reported: u64,
    pub queue_drops: u64,
    pub decode_errors: u64,
    pub unresolved_paths: u64,
    pub event_log_write_errors: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportStatus {
    pub endpoint: String,
    pub protocol: String,
    /// `connected` or `falling back`.
    pub state: String,
    pub spool_dir: String,
    pub spool_batches: u64,
    pub spool_records: u64,
    pub spool_bytes: u64,
    pub spool_evicted_records: u64,
}

/// What the snapshot is made of, shared with the agent.
pub struct Source {
    pub started: Instant,
    /// Rows and rules, as the metrics see them.
    pub observed: Arc<Observed>,
    /// The agent's counters and kernel drops.
    pub registry: Arc<Registry>,
    pub event_log: String,
    pub export: Option<ExportSource>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct ExportSource {
    pub endpoint: String,
    pub protocol: String,
    pub state: Arc<ExportState>,
    pub spool: Arc<Spool>,
}

impl Counters {
    fn read(r: &Registry) -> Self {
        Self {
            received: r.get(Counter::Received),
            reported: r.get(Counter::Reported),
            queue_drops: r.get(Counter::QueueDrops),
            decode_errors: r.get(Counter::DecodeErrors),
            unresolved_paths: r.get(Counter::UnresolvedPaths),
            event_log_write_errors: r.get(Counter::EventLogWriteErrors),
            reloads: r.get(Counter::Reloads),
            reload_failures: r.get(Counter::ReloadFailures),
        }
    }
}

impl Source {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs(),
            rows: locked(&self.observed.rows)
                .iter()
                .map(|(row, tier)| RowStatus {
                    row: row.clone(),
                    tier: (*tier).to_string(),
                })
                .collect(),
            rules: locked(&self.observed.rules)
                .iter()
                .map(|(module, n)| ((*module).to_string(), *n))
                .collect(),
            protection: locked(&self.observed.protection).clone(),
            integrity: locked(&self.observed.integrity).clone(),
            counters: Counters::read(&self.registry),
            kernel_drops: self
                .registry
                .kernel_drops()
                .iter()
                .filter(|d| d.records > 0)
                .map(|d| (format!("{}: {}", d.hook, d.reason), d.records))
                .collect(),
            event_log: self.event_log.clone(),
            export: self.export.as_ref().map(|e| {
                let usage = e.spool.usage();
                ExportStatus {
                    endpoint: e.endpoint.clone(),
                    protocol: e.protocol.clone(),
                    state: if e.state.falling_back.load(Ordering::SeqCst) {
                        "falling back".into()
                    } else {
                        "connected".into()
                    },
                    spool_dir: e.spool.dir().display().to_string(),
                    spool_batches: usage.batches,
                    spool_records: usage.records,
                    spool_bytes: usage.bytes,
                    spool_evicted_records: usage.evicted_records,
                }
            }),
        }
    }
}

/// The snapshot for people.
pub fn render(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let up = Duration::from_secs(s.uptime_seconds);
    let _ = writeln!(
        out,
        "safeguard {} (pid {}), up {}",
        s.version,
        s.pid,
        humantime::format_duration(up)
    );
    let _ = writeln!(out, "\nPolicy rows:");
    let width = s.rows.iter().map(|r| r.row.len()).max().unwrap_or(0);
    for r in &s.rows {
        let _ = writeln!(out, "  {:width$}  {}", r.row, r.tier);
    }
    let rules: Vec<String> = s.rules.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let _ = writeln!(out, "\nRules loaded: {}", rules.join(", "));
    if !s.protection.is_empty() {
        let _ = writeln!(out, "Self-protection (kernel.protect): {}", s.protection);
    }
    if s.integrity.is_empty() {
        let _ = writeln!(out, "Self-check: as the agent left it");
    } else {
        let _ = writeln!(out, "Self-check: {} problems", s.integrity.len());
        for problem in &s.integrity {
            let _ = writeln!(out, "  {problem}");
        }
    }
    let c = &s.counters;
    let _ = writeln!(
        out,
        "\nEvents: {} received, {} reported; dropped: {} in the kernel, {} in the queue; {} malformed, {} unresolved paths",
        c.received,
        c.reported,
        s.kernel_drops.values().sum::<u64>(),
        c.queue_drops,
        c.decode_errors,
        c.unresolved_paths
    );
    for (hook, n) in &s.kernel_drops {
        let _ = writeln!(out, "  kernel drops at {hook}: {n}");
    }
    let _ = writeln!(
        out,
        "Configuration reloads: {} in force, {} rejected",
        c.reloads, c.reload_failures
    );
    let _ = writeln!(out, "Event log: {}", s.event_log);
    match &s.export {
        None => {
            let _ = writeln!(out, "\nOpenTelemetry export: off");
        }
        Some(e) => {
            let _ = writeln!(
                out,
                "\nOpenTelemetry export: {} to {} ({})\n  spool {}: {} batches, {} records, {} bytes; {} records evicted",
                e.state,
                e.endpoint,
                e.protocol,
                e.spool_dir,
                e.spool_batches,
                e.spool_records,
                e.spool_bytes,
                e.spool_evicted_records
            );
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{os::unix::fs::PermissionsExt as _, path::Path};

    use tokio::sync::watch;

    use super::*;

    /// A source with counters, drops and an exporter falling back, its
    /// spool under `dir`.
    pub(crate) fn source(dir: &Path) -> Source {
        use collector_common::{DropReason, Hook};

        use crate::internal_events::{
            EventReported, KernelDropsRead, KernelRecordReceived, QueueFull, ReloadRejected,
        };

        let registry = Arc::new(Registry::default());
        for _ in 0..7 {
            registry.emit(KernelRecordReceived);
        }
        for _ in 0..5 {
            registry.emit(EventReported);
        }
        registry.emit(QueueFull);
        registry.emit(ReloadRejected { why: &"files.mode" });
        registry.emit(KernelDropsRead {
            drops: vec![
                (Hook::LsmFileOpen, DropReason::RingFull, 4),
                (Hook::LsmBprmCheck, DropReason::RingFull, 0),
            ],
        });
        let state = Arc::new(ExportState::default());
        state.falling_back.store(true, Ordering::SeqCst);
        let spool = Arc::new(Spool::open(&dir.join("spool"), 1 << 20).unwrap());
        spool
            .push(crate::telemetry::export::Signal::Logs, b"abc", 2, false)
            .unwrap();
        let observed = Observed::default();
        *observed.rows.lock().unwrap() = vec![("files.open".into(), "audit-only")];
        *observed.rules.lock().unwrap() = vec![("files", 3)];
        *observed.integrity.lock().unwrap() =
            vec!["the pin /sys/fs/bpf/safeguard/links/0/file_open was removed".into()];
        Source {
            started: Instant::now(),
            observed: Arc::new(observed),
            registry,
            event_log: "/var/log/safeguard/events.log".into(),
            export: Some(ExportSource {
                endpoint: "http://localhost:4317".into(),
                protocol: "grpc".into(),
                state,
                spool,
            }),
        }
    }

    #[tokio::test]
    async fn the_socket_answers_with_a_snapshot_and_only_root_may_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/status.sock");
        let server = Server::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (stop, _) = watch::channel(None);
        let task = tokio::spawn(server.serve(Arc::new(source(dir.path())), stop));
        let p = path.clone();
        let s = tokio::task::spawn_blocking(move || query(&p))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.counters,
            Counters {
                received: 7,
                reported: 5,
                queue_drops: 1,
                decode_errors: 0,
                unresolved_paths: 0,
                event_log_write_errors: 0,
                reloads: 0,
                reload_failures: 1,
            }
        );
        assert_eq!(
            s.kernel_drops,
            BTreeMap::from([("lsm/file_open: ring_full".into(), 4)])
        );
        let e = s.export.as_ref().unwrap();
        assert_eq!(e.state, "falling back");
        assert_eq!((e.spool_batches, e.spool_records, e.spool_bytes), (1, 2, 3));
        // A second agent must not take the socket over.
        let err = Server::bind(&path).err().unwrap().to_string();
        assert!(err.contains("another safeguard agent is running"), "{err}");
        task.abort();
        let _ = task.await;
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_missing_agent_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(
            Server::bind(&path).is_ok(),
            "a dead agent's socket is replaced"
        );
        let err = query(&dir.path().join("none.sock"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot reach the agent"), "{err}");
    }

    #[test]
    fn the_human_form_names_tiers_counters_and_the_exporter() {
        let dir = tempfile::tempdir().unwrap();
        let text = render(&source(dir.path()).snapshot());
        assert!(text.contains("files.open  audit-only"), "{text}");
        assert!(text.contains("Rules loaded: files 3"), "{text}");
        assert!(
            text.contains("Self-check: 1 problems\n  the pin /sys/fs/bpf/safeguard/links/0/file_open was removed"),
            "{text}"
        );
        assert!(
            text.contains("7 received, 5 reported; dropped: 4 in the kernel"),
            "{text}"
        );
        assert!(
            text.contains("falling back to http://localhost:4317 (grpc)"),
            "{text}"
        );
        assert!(
            text.contains("4 in the kernel, 1 in the queue; 0 malformed"),
            "{text}"
        );
        assert!(
            text.contains("Configuration reloads: 0 in force, 1 rejected"),
            "{text}"
        );
        assert!(text.contains("1 batches, 2 records, 3 bytes"), "{text}");
    }

    /// Scripts read `status --json`: its counters keep their names.
    #[test]
    fn the_json_form_names_every_counter() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_value(source(dir.path()).snapshot()).unwrap();
        let keys: Vec<&str> = json["counters"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "received",
                "reported",
                "queue_drops",
                "decode_errors",
                "unresolved_paths",
                "event_log_write_errors",
                "reloads",
                "reload_failures"
            ]
        );
        assert_eq!(json["counters"]["reported"], 5);
        assert_eq!(json["kernel_drops"]["lsm/file_open: ring_full"], 4);
    }
}
