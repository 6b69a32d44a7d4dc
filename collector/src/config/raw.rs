//! The configuration as written: openEuler safeguard's keys, plus what
//! safeguard adds. Values stay strings here; `validate` turns them into
//! typed settings and names the key of anything wrong. (Serialize only so
//! that a test can list every key and find it in the reference,
//! `default.yaml`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A key present with no value (`deny:` with every item commented out)
/// reads as empty, as it does in safeguard (Go's YAML decoder).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Global `blacklist` or `whitelist`; a module's own `policy` wins.
    pub policy: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub files: RawFiles,
    #[serde(deserialize_with = "nullable")]
    pub network: RawNetwork,
    #[serde(deserialize_with = "nullable")]
    pub mount: RawMount,
    #[serde(deserialize_with = "nullable")]
    pub process: RawProcess,
    #[serde(deserialize_with = "nullable")]
    pub dns_proxy: RawDnsProxy,
    #[serde(deserialize_with = "nullable")]
    pub log: RawLog,
    #[serde(deserialize_with = "nullable")]
    pub kernel: RawKernel,
    #[serde(deserialize_with = "nullable")]
    pub otel: RawOtel,
    #[serde(deserialize_with = "nullable")]
    pub status: RawStatus,
}

/// safeguard addition: where `safeguard status` finds the agent.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStatus {
    pub socket: Option<String>,
}

/// safeguard addition: OpenTelemetry export. The standard
/// `OTEL_EXPORTER_OTLP_*` variables fill what the file leaves empty.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOtel {
    pub enable: Option<bool>,
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub compression: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<String>,
    pub timeout_ms: Option<u64>,
    pub batch_size: Option<u64>,
    pub batch_timeout_ms: Option<u64>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<u64>,
}

/// `enable`, `mode`, `target`: every module has them.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFiles {
    pub enable: bool,
    /// safeguard addition: judge ioctl(2) on files too.
    pub ioctl: bool,
    pub mode: Option<String>,
    pub target: Option<String>,
    pub policy: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub allow: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub deny: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(deserialize = "T: Deserialize<'de>", serialize = "T: Serialize")
)]
pub struct RawAllowDeny<T> {
    #[serde(deserialize_with = "nullable")]
    pub allow: Vec<T>,
    #[serde(deserialize_with = "nullable")]
    pub deny: Vec<T>,
}

impl<T> Default for RawAllowDeny<T> {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDomain {
    #[serde(deserialize_with = "nullable")]
    pub allow: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub deny: Vec<String>,
    /// Deprecated in safeguard; accepted and ignored.
    pub interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNetwork {
    pub enable: bool,
    pub mode: Option<String>,
    pub target: Option<String>,
    pub policy: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub cidr: RawAllowDeny<String>,
    #[serde(deserialize_with = "nullable")]
    pub domain: RawDomain,
    #[serde(deserialize_with = "nullable")]
    pub command: RawAllowDeny<String>,
    #[serde(deserialize_with = "nullable")]
    pub uid: RawAllowDeny<u32>,
    #[serde(deserialize_with = "nullable")]
    pub gid: RawAllowDeny<u32>,
    /// safeguard addition: the cgroup (v2) the audit tier's socket programs
    /// attach to, where BPF-LSM is unavailable. Default: the whole v2 tree.
    pub cgroup: Option<String>,
    /// safeguard addition: the DNS servers domain rules are resolved with
    /// (`IP` or `IP:port`); empty: the system's (/etc/resolv.conf).
    #[serde(deserialize_with = "nullable")]
    pub nameservers: Vec<String>,
    /// safeguard addition: `allow` or `deny` raw and packet sockets.
    pub raw: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMount {
    pub enable: bool,
    pub mode: Option<String>,
    pub target: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProcess {
    pub enable: bool,
    /// safeguard addition: `allow` or `deny` the exec of a file with no
    /// name (a memfd, or a deleted file).
    pub memfd_exec: Option<String>,
    pub mode: Option<String>,
    pub target: Option<String>,
    pub policy: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub allow: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDnsProxy {
    pub enable: bool,
    #[serde(deserialize_with = "nullable")]
    pub upstreams: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub bind: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// safeguard addition: `always` writes every event to `output`;
    /// `fallback` only while the Collector cannot be reached.
    pub mode: Option<String>,
    pub level: Option<String>,
    pub format: Option<String>,
    pub output: Option<String>,
    /// Megabytes.
    pub max_size: Option<u64>,
    /// Days.
    pub max_age: Option<u64>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawKernel {
    pub ring_buffer_bytes: Option<u64>,
    pub audit_rate_limit: Option<u64>,
    pub tier: Option<String>,
    pub pin: bool,
    pub pin_dir: Option<String>,
    /// safeguard addition: `auto` (on when a module blocks), `true`,
    /// `false`.
    pub protect: Option<String>,
}
