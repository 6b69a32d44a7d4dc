//! The names safeguard emits: attribute keys, event names, the values of
//! enumerated attributes and the agent's metrics. Each is spelled here
//! once; everything else refers to these constants.
//!
//! Keys come from the OpenTelemetry semantic conventions (v1.44) where one
//! exists. What OpenTelemetry lacks lives under the single `safeguard.*`
//! namespace.
//!
//! Every module also lists its names (`ALL`, with their doc comments), so
//! tools and tests can walk them without spelling them again;
//! `docs/semconv.md` is generated from these lists.

/// A name and its doc comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    /// The key, event name or value itself.
    pub name: &'static str,
    /// The doc comment, as written: one line per source line, each with
    /// its leading space.
    pub doc: &'static str,
}

impl Name {
    /// The doc comment on one line.
    pub fn summary(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Declares documented `&str` constants and `ALL`, every one of them with
/// its doc comment, in order. Names may come in groups (`GROUP { ... }`):
/// each group then gets a list of its own as well.
macro_rules! names {
    ($(
        $(#[doc = $group_doc:literal])*
        $group:ident {
            $( $(#[doc = $doc:literal])+ $name:ident = $value:literal; )*
        }
    )+) => {
        $(
            $( $(#[doc = $doc])+ pub const $name: &str = $value; )*

            $(#[doc = $group_doc])*
            pub const $group: &[$crate::Name] = &[$(
                $crate::Name { name: $value, doc: concat!($($doc, "\n"),+) }
            ),*];
        )+

        /// Every name in this module with its doc comment, in order.
        pub const ALL: &[$crate::Name] = &[$($(
            $crate::Name { name: $value, doc: concat!($($doc, "\n"),+) }
        ),*),+];
    };
    ($( $(#[doc = $doc:literal])+ $name:ident = $value:literal; )*) => {
        $( $(#[doc = $doc])+ pub const $name: &str = $value; )*

        /// Every name in this module with its doc comment, in order.
        pub const ALL: &[$crate::Name] = &[$(
            $crate::Name { name: $value, doc: concat!($($doc, "\n"),+) }
        ),*];
    };
}

pub mod attr;
pub mod event;
pub mod metric;

/// Values of [`attr::DECISION`].
pub mod decision {
    names! {
        /// The operation matched the policy and went through.
        ALLOWED = "allowed";
        /// The kernel refused the operation.
        BLOCKED = "blocked";
        /// The policy denies the operation but it went through: monitor
        /// mode, or a tier that can only audit.
        WOULD_BLOCK = "would_block";
    }
}

/// Values of [`attr::SECURITY_RULE_NAME`] for refusals no written rule
/// made.
pub mod rule {
    names! {
        /// Under `policy: whitelist`, an operation no allow rule admits.
        WHITELIST_DEFAULT = "whitelist default";
        /// An operation whose path could not be established whole (longer
        /// than PATH_MAX, cut off from its mount, or a mount source or
        /// overlay layer spelled with `.`, `..` or doubled slashes):
        /// refused in block mode, since no rule can be ruled out (fail
        /// closed).
        PATH_UNRESOLVED = "unresolved path";
        /// An exec of a file no directory names (a memfd, a deleted
        /// file), under `process.memfd_exec: deny`.
        MEMFD_EXEC = "process.memfd_exec";
        /// A list of addresses longer than the program reads (SCTP's
        /// `connectx` and `bindx`, past 64): refused in block mode, since
        /// no rule can be ruled out (fail closed).
        ADDRESS_LIST_TOO_LONG = "address list too long";
        /// A raw or packet socket, under `network.raw: deny`.
        RAW_SOCKET = "network.raw";
        /// An attempt on the agent itself, under `kernel.protect`.
        AGENT_PROTECT = "kernel.protect";
    }
}

/// Values of [`attr::MODE`].
pub mod mode {
    names! {
        /// Denials are reported, not enforced.
        MONITOR = "monitor";
        /// Denials are refused by the kernel (where the tier can).
        BLOCK = "block";
    }
}

/// Values of [`attr::MODULE`].
pub mod module {
    names! {
        /// File operations (`files` in the configuration).
        FILES = "files";
        /// Process creation, exec and exit (`process`).
        PROCESS = "process";
        /// Mounts (`mount`).
        MOUNT = "mount";
        /// Network connections and datagrams (`network`).
        NETWORK = "network";
        /// The agent itself (`kernel.protect`).
        AGENT = "agent";
    }
}

/// Values of [`attr::TAMPER_ACTION`].
pub mod tamper {
    names! {
        /// A signal that would end or stop the agent (`kill`, `tgkill`,
        /// `pidfd_send_signal`) from a process other than PID 1.
        SIGNAL = "signal";
        /// The same, as a file's I/O signal (`F_SETOWN` with `F_SETSIG`).
        SIGNAL_BY_IO = "signal_by_io";
        /// A change to one of the agent's resource limits (`prlimit`).
        RLIMIT = "rlimit";
        /// ptrace attach, `/proc/PID/mem`, `process_vm_writev` or
        /// `pidfd_getfd` on the agent.
        PTRACE = "ptrace";
        /// A descriptor of one of the agent's BPF maps (by id or pin).
        BPF_MAP = "bpf_map";
        /// A descriptor of one of the agent's BPF programs.
        BPF_PROG = "bpf_prog";
        /// Removing or renaming one of the agent's pins or their
        /// directories.
        PIN = "pin";
    }
}

/// Values of [`attr::NETWORK_TRANSPORT`], [`attr::NETWORK_TYPE`] and
/// [`attr::NETWORK_DIRECTION`].
pub mod net {
    names! {
        /// Values of [`attr::NETWORK_TRANSPORT`](crate::attr::NETWORK_TRANSPORT).
        TRANSPORT {
            /// TCP.
            TCP = "tcp";
            /// UDP.
            UDP = "udp";
            /// SCTP (not among OpenTelemetry's values, which allow others).
            SCTP = "sctp";
        }
        /// Values of [`attr::NETWORK_TYPE`](crate::attr::NETWORK_TYPE).
        TYPE {
            /// IPv4.
            IPV4 = "ipv4";
            /// IPv6.
            IPV6 = "ipv6";
        }
        /// Values of [`attr::NETWORK_DIRECTION`](crate::attr::NETWORK_DIRECTION).
        DIRECTION {
            /// The process reaches out or takes a local address: connect,
            /// send, bind.
            OUTBOUND = "outbound";
            /// The other end comes to the process: receive, accept,
            /// getpeername.
            INBOUND = "inbound";
        }
    }
}

/// Values of [`attr::ENFORCEMENT_TIER`].
/// Why the kernel lost a record (`safeguard.kernel.event.dropped`).
pub mod drop_reason {
    names! {
        /// The ring buffer was full.
        RING_FULL = "ring_full";
        /// An audit record (not a blocked operation) found the ring buffer
        /// three quarters full: the last quarter is kept for blocked
        /// operations.
        RESERVED_FOR_BLOCKED = "reserved_for_blocked";
        /// An audit record over its process's allowance for the hook and
        /// rule this second (`kernel.audit_rate_limit`).
        SAMPLED = "sampled";
    }
}

pub mod tier {
    names! {
        /// BPF-LSM: the operation can be refused.
        ENFORCED = "enforced";
        /// Tracepoints or similar: seen, not refusable.
        AUDIT_ONLY = "audit-only";
        /// Nothing on this kernel covers it.
        UNAVAILABLE = "unavailable";
    }
}

/// Values of [`attr::FILE_MMAP_PROT`]: `READ`, `WRITE` and `EXEC` of
/// [`open_mode`].
pub mod mmap_prot {
    pub use super::open_mode::{EXEC, READ, WRITE};

    /// Every value of [`attr::FILE_MMAP_PROT`](crate::attr::FILE_MMAP_PROT)
    /// with its meaning there.
    pub const ALL: &[crate::Name] = &[
        crate::Name {
            name: READ,
            doc: "`PROT_READ`: the mapping can be read.",
        },
        crate::Name {
            name: WRITE,
            doc: "`PROT_WRITE`: the mapping can be written.",
        },
        crate::Name {
            name: EXEC,
            doc: "`PROT_EXEC`: the mapping can be executed.",
        },
    ];
}

/// Values of [`attr::FILE_OPEN_MODE`].
pub mod open_mode {
    names! {
        /// Opened for reading.
        READ = "read";
        /// Opened for writing.
        WRITE = "write";
        /// `O_CREAT`: the file may be created.
        CREATE = "create";
        /// Opened for execution.
        EXEC = "exec";
        /// `O_TRUNC`.
        TRUNCATE = "truncate";
        /// `O_APPEND`.
        APPEND = "append";
    }
}

/// Values of [`attr::EXPORT_SIGNAL`].
pub mod signal {
    names! {
        /// OTLP logs (the audit events).
        LOGS = "logs";
        /// OTLP traces (the process spans).
        TRACES = "traces";
        /// OTLP metrics (the agent's own).
        METRICS = "metrics";
    }
}

/// The values of [`attr::OTEL_COMPONENT_TYPE`]: the agent's OTLP exporter
/// for each signal and protocol, as OpenTelemetry names them.
pub mod component_type {
    names! {
        /// Logs over OTLP/gRPC.
        OTLP_GRPC_LOG_EXPORTER = "otlp_grpc_log_exporter";
        /// Logs over OTLP/HTTP (protobuf).
        OTLP_HTTP_LOG_EXPORTER = "otlp_http_log_exporter";
        /// Spans over OTLP/gRPC.
        OTLP_GRPC_SPAN_EXPORTER = "otlp_grpc_span_exporter";
        /// Spans over OTLP/HTTP (protobuf).
        OTLP_HTTP_SPAN_EXPORTER = "otlp_http_span_exporter";
        /// Metrics over OTLP/gRPC.
        OTLP_GRPC_METRIC_EXPORTER = "otlp_grpc_metric_exporter";
        /// Metrics over OTLP/HTTP (protobuf).
        OTLP_HTTP_METRIC_EXPORTER = "otlp_http_metric_exporter";
    }
}

/// The fixed values of [`attr::ERROR_TYPE`]. An export failure may also
/// carry the Collector's answer: an HTTP status (`503`) or a gRPC status
/// code by its canonical name (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`).
pub mod error_type {
    names! {
        /// The Collector could not be reached (connection refused, DNS,
        /// TLS) or said it is unavailable.
        UNAVAILABLE = "unavailable";
        /// The Collector did not answer in time.
        TIMEOUT = "timeout";
        /// The Collector accepted a request only in part and rejected the
        /// rest (OTLP partial success).
        REJECTED = "rejected";
        /// A spooled batch no longer decodes.
        ENCODING = "encoding";
        /// A batch could not be written to the spool; it went to the local
        /// files.
        SPOOL = "spool";
        /// A kernel record did not decode.
        DECODE = "decode";
        /// The path of a file event could not be resolved.
        UNRESOLVED_PATH = "unresolved_path";
        /// On a process span whose status is ERROR: the policy refused
        /// one of its operations (block mode).
        BLOCKED = "blocked";
    }
}

/// The values of [`attr::DNS_PROXY_OUTCOME`]: how `dns_proxy` answered a
/// query.
pub mod dns_proxy_outcome {
    names! {
        /// An upstream's answer, about no name under a domain rule.
        ANSWERED = "answered";
        /// An answer about a name under a domain rule, passed on once its
        /// addresses were in force.
        RULE_HIT = "rule_hit";
        /// SERVFAIL: no upstream answered.
        UPSTREAM_FAILURE = "upstream_failure";
        /// SERVFAIL: the answer's addresses could not be put in force.
        NOT_IN_FORCE = "not_in_force";
    }
}

/// Every set of enumerated values: the attribute that takes them and the
/// values. A new values module goes here (the reference table is built
/// from this list).
pub const VALUE_SETS: &[(&str, &[Name])] = &[
    (attr::DECISION, decision::ALL),
    (attr::SECURITY_RULE_NAME, rule::ALL),
    (attr::MODE, mode::ALL),
    (attr::MODULE, module::ALL),
    (attr::TAMPER_ACTION, tamper::ALL),
    (attr::NETWORK_TRANSPORT, net::TRANSPORT),
    (attr::NETWORK_TYPE, net::TYPE),
    (attr::NETWORK_DIRECTION, net::DIRECTION),
    (attr::ENFORCEMENT_TIER, tier::ALL),
    (attr::FILE_OPEN_MODE, open_mode::ALL),
    (attr::FILE_MMAP_PROT, mmap_prot::ALL),
    (attr::EXPORT_SIGNAL, signal::ALL),
    (attr::OTEL_COMPONENT_TYPE, component_type::ALL),
    (attr::ERROR_TYPE, error_type::ALL),
    (attr::DROP_REASON, drop_reason::ALL),
    (attr::DNS_PROXY_OUTCOME, dns_proxy_outcome::ALL),
];
