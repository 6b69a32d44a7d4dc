//! The names safeguard emits: attribute keys, event names and the values of
//! enumerated attributes. Each is spelled here once; everything else refers
//! to these constants.
//!
//! Keys come from the OpenTelemetry semantic conventions (v1.44) where one
//! exists. What OpenTelemetry lacks lives under the single `safeguard.*`
//! namespace.

/// Attribute keys.
pub mod attr {
    // --- OpenTelemetry semantic conventions ---------------------------------

    /// Process id (the kernel's tgid).
    pub const PROCESS_PID: &str = "process.pid";
    /// Parent process id.
    pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
    /// The task's command name (`comm`, at most 15 bytes).
    pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
    /// Full path of the process's executable.
    pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
    /// Real user id of the process.
    pub const PROCESS_REAL_USER_ID: &str = "process.real_user.id";
    /// Thread id (the kernel's pid).
    pub const THREAD_ID: &str = "thread.id";
    /// All command-line arguments of the process, `argv[0]` first.
    pub const PROCESS_COMMAND_ARGS: &str = "process.command_args";
    /// The exit status of a process that ended normally.
    pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
    /// Full path of the file the operation was on (a rename's source).
    pub const FILE_PATH: &str = "file.path";
    /// New permission bits of a chmod, in octal (`0640`).
    pub const FILE_MODE: &str = "file.mode";
    /// New owner of a chown.
    pub const FILE_OWNER_ID: &str = "file.owner.id";
    /// New group of a chown.
    pub const FILE_GROUP_ID: &str = "file.group.id";
    /// `tcp` or `udp`.
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// `ipv4` or `ipv6`.
    pub const NETWORK_TYPE: &str = "network.type";
    /// The socket's own address.
    pub const NETWORK_LOCAL_ADDRESS: &str = "network.local.address";
    /// The socket's own port.
    pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
    /// The other end's address: destination of a connect or send, source
    /// of a receive or an inbound connection.
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    /// The other end's port.
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    /// `transmit` (connect, send, bind) or `receive` (receive, accept,
    /// getpeername).
    pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
    /// Name of the host the agent runs on.
    pub const HOST_NAME: &str = "host.name";
    /// The rule that matched, as written in the configuration.
    pub const SECURITY_RULE_NAME: &str = "security_rule.name";
    /// The list the rule came from, e.g. `files.deny`.
    pub const SECURITY_RULE_RULESET_NAME: &str = "security_rule.ruleset.name";
    /// Class of an export error (`unavailable`, `timeout`, an HTTP status).
    pub const ERROR_TYPE: &str = "error.type";
    /// Container id of the task, where its cgroup path shows one.
    pub const CONTAINER_ID: &str = "container.id";
    /// The container runtime (`docker`, `containerd`, `cri-o`, `podman`),
    /// where the cgroup path shows it.
    pub const CONTAINER_RUNTIME_NAME: &str = "container.runtime.name";
    /// UID of the Kubernetes pod the container belongs to.
    pub const K8S_POD_UID: &str = "k8s.pod.uid";

    // --- Resource attributes (on every signal, not on each record) ---------

    /// `safeguard`, unless `OTEL_SERVICE_NAME` says otherwise.
    pub const SERVICE_NAME: &str = "service.name";
    /// The agent's version.
    pub const SERVICE_VERSION: &str = "service.version";
    /// Random per agent start: tells one run's records from the next.
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    /// The host's machine id (`/etc/machine-id`).
    pub const HOST_ID: &str = "host.id";
    /// `linux`.
    pub const OS_TYPE: &str = "os.type";
    /// The Kubernetes node (from `K8S_NODE_NAME`).
    pub const K8S_NODE_NAME: &str = "k8s.node.name";

    // --- safeguard.* --------------------------------------------------------

    /// What happened to the operation: see [`super::decision`].
    pub const DECISION: &str = "safeguard.decision";
    /// The module's mode when the event happened: see [`super::mode`].
    pub const MODE: &str = "safeguard.mode";
    /// The policy module: see [`super::module`].
    pub const MODULE: &str = "safeguard.module";
    /// The kernel hook that saw the operation, e.g. `lsm/file_open`.
    pub const HOOK: &str = "safeguard.hook";
    /// How the hook's row is covered on this kernel: see [`super::tier`].
    pub const ENFORCEMENT_TIER: &str = "safeguard.enforcement.tier";
    /// Monotonic event sequence number assigned in the kernel; a gap means
    /// records were lost (and counted).
    pub const SEQUENCE: &str = "safeguard.sequence";
    /// Real group id of the process (OpenTelemetry has no process group id).
    pub const PROCESS_GROUP_ID: &str = "safeguard.process.group_id";
    /// cgroup v2 id of the task.
    pub const CGROUP_ID: &str = "safeguard.cgroup.id";
    /// How a file was opened: a list of `read`, `write`, `create`, `exec`,
    /// `truncate`, `append`.
    pub const FILE_OPEN_MODE: &str = "safeguard.file.open_mode";
    /// The raw open flags (`O_*`).
    pub const FILE_OPEN_FLAGS: &str = "safeguard.file.open_flags";
    /// Where a rename moves the file to.
    pub const FILE_NEW_PATH: &str = "safeguard.file.new_path";
    /// Protection of a mapping: a list of `read`, `write`, `exec`.
    pub const FILE_MMAP_PROT: &str = "safeguard.file.mmap_prot";
    /// The ioctl request number.
    pub const FILE_IOCTL_CMD: &str = "safeguard.file.ioctl_cmd";
    /// The path was longer than the kernel program could follow and is cut
    /// at the top.
    pub const FILE_PATH_TRUNCATED: &str = "safeguard.file.path_truncated";
    /// The signal that ended a process.
    pub const PROCESS_EXIT_SIGNAL: &str = "safeguard.process.exit_signal";
    /// The task runs in a mount namespace other than the host's.
    pub const PROCESS_IN_CONTAINER: &str = "safeguard.process.in_container";
    /// The arguments did not fit in the kernel record and are cut.
    pub const PROCESS_ARGS_TRUNCATED: &str = "safeguard.process.args_truncated";
    /// A row of the coverage table, e.g. `files.open`, `network.connect`.
    pub const ROW: &str = "safeguard.row";
    /// The signal of an export: see [`super::signal`].
    pub const EXPORT_SIGNAL: &str = "safeguard.export.signal";
    /// On a process span: the process was still running when the agent
    /// stopped, so the span was ended then.
    pub const PROCESS_UNFINISHED: &str = "safeguard.process.unfinished";
    /// On a process span: how many of its operations the policy denied
    /// (blocked or would have blocked).
    pub const PROCESS_BLOCKED_OPERATIONS: &str = "safeguard.process.blocked_operations";
    /// A mount's source (device or path, as given).
    pub const MOUNT_SOURCE: &str = "safeguard.mount.source";
    /// Where a mount is (or is moved) to.
    pub const MOUNT_TARGET: &str = "safeguard.mount.target";
    /// The filesystem type of a mount.
    pub const MOUNT_FSTYPE: &str = "safeguard.mount.fstype";
    /// The mount flags (`MS_*`).
    pub const MOUNT_FLAGS: &str = "safeguard.mount.flags";
}

/// Event names (the OTLP LogRecord `EventName`).
pub mod event {
    /// A file was opened (or an open was refused).
    pub const FILE_OPEN: &str = "safeguard.file.open";
    /// A file was deleted (or the deletion was refused).
    pub const FILE_UNLINK: &str = "safeguard.file.unlink";
    /// A directory was removed (or the removal was refused).
    pub const FILE_RMDIR: &str = "safeguard.file.rmdir";
    /// A file was renamed or moved (or that was refused).
    pub const FILE_RENAME: &str = "safeguard.file.rename";
    /// A file was truncated (or that was refused).
    pub const FILE_TRUNCATE: &str = "safeguard.file.truncate";
    /// A file's permission bits were changed (or that was refused).
    pub const FILE_CHMOD: &str = "safeguard.file.chmod";
    /// A file's owner or group was changed (or that was refused).
    pub const FILE_CHOWN: &str = "safeguard.file.chown";
    /// A file was mapped into memory (or the mapping was refused).
    pub const FILE_MMAP: &str = "safeguard.file.mmap";
    /// An ioctl(2) on a file (or its refusal).
    pub const FILE_IOCTL: &str = "safeguard.file.ioctl";
    /// A program was executed (or an exec was refused).
    pub const PROCESS_EXEC: &str = "safeguard.process.exec";
    /// A new process was created (fork, vfork, clone).
    pub const PROCESS_FORK: &str = "safeguard.process.fork";
    /// A process ended.
    pub const PROCESS_EXIT: &str = "safeguard.process.exit";
    /// A filesystem was mounted (or a mount was refused).
    pub const MOUNT_MOUNT: &str = "safeguard.mount.mount";
    /// A mount was moved (or the move was refused).
    pub const MOUNT_MOVE: &str = "safeguard.mount.move";
    /// connect(2) to a denied peer.
    pub const NETWORK_CONNECT: &str = "safeguard.network.connect";
    /// A datagram sent to a denied destination.
    pub const NETWORK_SEND: &str = "safeguard.network.send";
    /// A receive on a socket connected to a denied peer.
    pub const NETWORK_RECEIVE: &str = "safeguard.network.receive";
    /// getpeername(2) on a socket connected to a denied peer.
    pub const NETWORK_GETPEERNAME: &str = "safeguard.network.getpeername";
    /// bind(2) to a denied local address.
    pub const NETWORK_BIND: &str = "safeguard.network.bind";
    /// An inbound connection from a denied source.
    pub const NETWORK_ACCEPT: &str = "safeguard.network.accept";
}

/// Values of [`attr::DECISION`].
pub mod decision {
    /// The operation matched the policy and went through.
    pub const ALLOWED: &str = "allowed";
    /// The kernel refused the operation.
    pub const BLOCKED: &str = "blocked";
    /// The policy denies the operation but it went through: monitor mode, or
    /// a tier that can only audit.
    pub const WOULD_BLOCK: &str = "would_block";
}

/// Values of [`attr::MODE`].
pub mod mode {
    /// Denials are reported, not enforced.
    pub const MONITOR: &str = "monitor";
    /// Denials are refused by the kernel (where the tier can).
    pub const BLOCK: &str = "block";
}

/// Values of [`attr::MODULE`].
pub mod module {
    /// File operations (`files` in the configuration).
    pub const FILES: &str = "files";
    /// Process creation, exec and exit (`process`).
    pub const PROCESS: &str = "process";
    /// Mounts (`mount`).
    pub const MOUNT: &str = "mount";
    /// Network connections and datagrams (`network`).
    pub const NETWORK: &str = "network";
}

/// Values of [`attr::NETWORK_TRANSPORT`], [`attr::NETWORK_TYPE`] and
/// [`attr::NETWORK_IO_DIRECTION`].
pub mod net {
    /// TCP.
    pub const TCP: &str = "tcp";
    /// UDP.
    pub const UDP: &str = "udp";
    /// IPv4.
    pub const IPV4: &str = "ipv4";
    /// IPv6.
    pub const IPV6: &str = "ipv6";
    /// Outbound: connect, send, bind.
    pub const TRANSMIT: &str = "transmit";
    /// Inbound: receive, accept, getpeername.
    pub const RECEIVE: &str = "receive";
}

/// Values of [`attr::ENFORCEMENT_TIER`].
pub mod tier {
    /// BPF-LSM: the operation can be refused.
    pub const ENFORCED: &str = "enforced";
    /// Tracepoints or similar: seen, not refusable.
    pub const AUDIT_ONLY: &str = "audit-only";
    /// Nothing on this kernel covers it.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// Values of [`attr::FILE_MMAP_PROT`] (with `READ`, `WRITE`, `EXEC` of
/// [`open_mode`]).
pub mod mmap_prot {
    pub use super::open_mode::{EXEC, READ, WRITE};
}

/// Values of [`attr::FILE_OPEN_MODE`].
pub mod open_mode {
    /// Opened (or mapped) for reading.
    pub const READ: &str = "read";
    /// Opened (or mapped) for writing.
    pub const WRITE: &str = "write";
    /// `O_CREAT`: the file may be created.
    pub const CREATE: &str = "create";
    /// Opened (or mapped) for execution.
    pub const EXEC: &str = "exec";
    /// `O_TRUNC`.
    pub const TRUNCATE: &str = "truncate";
    /// `O_APPEND`.
    pub const APPEND: &str = "append";
}

/// Values of [`attr::EXPORT_SIGNAL`].
pub mod signal {
    /// OTLP logs (the audit events).
    pub const LOGS: &str = "logs";
    /// OTLP traces (the process spans).
    pub const TRACES: &str = "traces";
    /// OTLP metrics (the agent's own).
    pub const METRICS: &str = "metrics";
}

/// The agent's metrics.
pub mod metric {
    /// What kind of instrument a metric is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Counter,
        Gauge,
        Histogram,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Metric {
        pub name: &'static str,
        pub unit: &'static str,
        pub description: &'static str,
        pub kind: Kind,
    }

    const fn m(
        name: &'static str,
        unit: &'static str,
        kind: Kind,
        description: &'static str,
    ) -> Metric {
        Metric {
            name,
            unit,
            description,
            kind,
        }
    }

    /// Audit events, by `safeguard.module`, `safeguard.hook`, `safeguard.decision`.
    pub const EVENTS: Metric = m(
        "safeguard.events",
        "{event}",
        Kind::Counter,
        "Audit events, by module, hook and decision",
    );
    /// Operations the policy denied (`blocked` or `would_block`), by
    /// `safeguard.module`, `security_rule.name`, `security_rule.ruleset.name`,
    /// `safeguard.decision`: the one alert rules are written on.
    pub const BLOCKED_OPERATIONS: Metric = m(
        "safeguard.blocked_operations",
        "{operation}",
        Kind::Counter,
        "Operations the policy denied, by module, rule and decision",
    );
    /// Ring-buffer reserve failures in the kernel, by `safeguard.hook`.
    pub const KERNEL_DROPS: Metric = m(
        "safeguard.kernel.drops",
        "{event}",
        Kind::Counter,
        "Events the kernel could not hand to the agent (ring buffer full), by hook",
    );
    /// Events dropped between the ring-buffer reader and the pipeline.
    pub const QUEUE_DROPS: Metric = m(
        "safeguard.queue.drops",
        "{event}",
        Kind::Counter,
        "Events dropped because the agent's queue was full",
    );
    /// Received but not reportable, by `error.type` (`decode`, `unresolved_path`).
    pub const UNREPORTED_EVENTS: Metric = m(
        "safeguard.events.unreported",
        "{event}",
        Kind::Counter,
        "Events received but not reportable, by reason",
    );
    /// Failed exports, by `safeguard.export.signal` and `error.type`.
    pub const EXPORT_FAILURES: Metric = m(
        "safeguard.export.failures",
        "{request}",
        Kind::Counter,
        "Export requests the Collector did not accept, by signal and error type",
    );
    /// Log records written to the local fallback files.
    pub const FALLBACK_RECORDS: Metric = m(
        "safeguard.fallback.records",
        "{record}",
        Kind::Counter,
        "Log records written to the local files because the Collector did not answer",
    );
    /// Bytes waiting in the spool.
    pub const SPOOL_SIZE: Metric = m(
        "safeguard.spool.size",
        "By",
        Kind::Gauge,
        "Bytes waiting in the spool for the Collector",
    );
    /// The spool's size cap (`otel.spool_max_bytes`), for alerts on how
    /// full it is.
    pub const SPOOL_LIMIT: Metric = m(
        "safeguard.spool.limit",
        "By",
        Kind::Gauge,
        "Size cap of the spool: past it the oldest batches are evicted",
    );
    /// Records waiting in the spool.
    pub const SPOOL_RECORDS: Metric = m(
        "safeguard.spool.records",
        "{record}",
        Kind::Gauge,
        "Records waiting in the spool for the Collector",
    );
    /// Records evicted from the spool by its size cap (they are in the
    /// local files).
    pub const SPOOL_EVICTED: Metric = m(
        "safeguard.spool.evicted",
        "{record}",
        Kind::Counter,
        "Records evicted from the full spool (kept in the local files)",
    );
    /// Rules loaded, by `safeguard.module`.
    pub const RULES: Metric = m(
        "safeguard.rules",
        "{rule}",
        Kind::Gauge,
        "Policy rules loaded, by module",
    );
    /// 1 per row of the coverage table, by `safeguard.row` and
    /// `safeguard.enforcement.tier`.
    pub const ROWS: Metric = m(
        "safeguard.rows",
        "{row}",
        Kind::Gauge,
        "Policy rows and how this kernel covers them",
    );
    /// Seconds from the kernel's event to the Collector's acknowledgement.
    pub const PIPELINE_LATENCY: Metric = m(
        "safeguard.pipeline.latency",
        "s",
        Kind::Histogram,
        "Time from the kernel event to the Collector's acknowledgement",
    );

    impl Metric {
        /// The name Prometheus shows for this metric when it arrives over
        /// OTLP (the Collector's Prometheus exporters and Prometheus's own
        /// OTLP receiver, default settings): dots become underscores, the
        /// unit becomes a suffix (`By` → `_bytes`, `s` → `_seconds`,
        /// `{…}` annotations are dropped), and counters end in `_total`.
        /// A histogram's series add `_bucket`, `_sum` and `_count`.
        pub fn prometheus_name(&self) -> String {
            let mut name = self.name.replace(['.', '-'], "_");
            let unit = match self.unit {
                "By" => "bytes",
                "s" => "seconds",
                "ms" => "milliseconds",
                "1" if self.kind == Kind::Gauge => "ratio",
                u if u.starts_with('{') => "",
                "1" => "",
                other => other,
            };
            if !unit.is_empty() && !name.ends_with(unit) {
                name = format!("{name}_{unit}");
            }
            if self.kind == Kind::Counter {
                name.push_str("_total");
            }
            name
        }
    }

    /// Every metric above.
    pub const ALL: &[Metric] = &[
        EVENTS,
        BLOCKED_OPERATIONS,
        KERNEL_DROPS,
        QUEUE_DROPS,
        UNREPORTED_EVENTS,
        EXPORT_FAILURES,
        FALLBACK_RECORDS,
        SPOOL_SIZE,
        SPOOL_LIMIT,
        SPOOL_RECORDS,
        SPOOL_EVICTED,
        RULES,
        ROWS,
        PIPELINE_LATENCY,
    ];
}
