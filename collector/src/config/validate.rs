//! Raw configuration → typed, checked settings.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Component, Path, PathBuf},
};

use collector_common::PATH_RULE_MAX;

use ipnetwork::IpNetwork;

use super::raw::{RawConfig, RawFiles, RawLog, RawMount, RawNetwork, RawOtel, RawProcess};

/// A configuration problem: which key, what value, what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.expected)
        } else {
            write!(
                f,
                "{}: {:?} is not valid: {}",
                self.key, self.value, self.expected
            )
        }
    }
}

impl ConfigError {
    /// An error the `config` crate reported while reading `origin`.
    pub fn source(origin: &str, err: config::ConfigError) -> Self {
        Self {
            key: origin.to_string(),
            value: String::new(),
            expected: err.to_string().replace('\n', " "),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Monitor,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListPolicy {
    Blacklist,
    Whitelist,
}

/// Which kernel tier the agent may use (`kernel.tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierChoice {
    /// BPF-LSM where the kernel allows it, the tracepoint tier elsewhere.
    Auto,
    /// BPF-LSM or nothing: start-up fails when it is unavailable.
    Lsm,
    /// The tracepoint tier (audit only), even where BPF-LSM would load.
    Tracepoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Host,
    Container,
}

/// An absolute, normalised path prefix from a file rule, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePath(String);

impl RulePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The switches every module has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSettings {
    pub enable: bool,
    pub mode: Mode,
    pub target: Target,
    pub policy: ListPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    pub settings: ModuleSettings,
    pub allow: Vec<RulePath>,
    pub deny: Vec<RulePath>,
    /// Judge ioctl(2) on files too.
    pub ioctl: bool,
}

/// An exec rule: an executable path prefix, or the name a program is run
/// as (the basename of the path given to execve, as in safeguard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecRule {
    Path(RulePath),
    Name(String),
}

impl ExecRule {
    pub fn as_str(&self) -> &str {
        match self {
            ExecRule::Path(p) => p.as_str(),
            ExecRule::Name(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub settings: ModuleSettings,
    pub allow: Vec<ExecRule>,
    pub deny: Vec<ExecRule>,
    /// `process.memfd_exec: deny`: refuse the exec of a file no directory
    /// names (a memfd, a deleted file).
    pub deny_memfd_exec: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub settings: ModuleSettings,
    pub cidr_allow: Vec<IpNetwork>,
    pub cidr_deny: Vec<IpNetwork>,
    /// Commands, as the kernel names a task (`comm`, at most 15 bytes).
    pub command_allow: Vec<String>,
    pub command_deny: Vec<String>,
    pub uid_allow: Vec<u32>,
    pub uid_deny: Vec<u32>,
    pub gid_allow: Vec<u32>,
    pub gid_deny: Vec<u32>,
    /// Names whose addresses are allowed or denied (lowercase, no
    /// trailing dot).
    pub domain_allow: Vec<String>,
    pub domain_deny: Vec<String>,
    /// DNS servers for the domain rules; empty: the system's.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// cgroup v2 directory for the audit tier; `None`: the v2 root.
    pub cgroup: Option<PathBuf>,
    /// `network.raw: deny`: refuse raw and packet sockets.
    pub deny_raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub settings: ModuleSettings,
    /// Denied mount sources (devices or paths), as prefixes.
    pub deny: Vec<RulePath>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

/// When events go to the local log (`log.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalLog {
    /// Every event.
    Always,
    /// Only while the Collector cannot be reached (and every event when
    /// OpenTelemetry export is off).
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// OpenTelemetry export (`otel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    pub enable: bool,
    /// Base URL: `http://host:4317` (gRPC) or `http://host:4318` (HTTP, the
    /// signal paths are appended).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub gzip: bool,
    pub headers: Vec<(String, String)>,
    pub ca_file: Option<PathBuf>,
    pub timeout_ms: u64,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub mode: LocalLog,
    pub level: LogLevel,
    pub format: LogFormat,
    pub output: Output,
    pub max_size_mb: u64,
    pub max_age_days: u64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub files: FilesConfig,
    pub process: ProcessConfig,
    pub mount: MountConfig,
    pub network: NetworkConfig,
    pub log: LogConfig,
    /// Bytes of the kernel-to-agent ring buffer.
    pub ring_buffer_bytes: u32,
    /// Records per second per process, hook and rule of operations that
    /// were not blocked; 0: no limit (`kernel.audit_rate_limit`).
    pub audit_rate_limit: u32,
    pub tier: TierChoice,
    /// Where the programs and maps stay pinned across restarts
    /// (`kernel.pin_dir`), and whether this agent leaves them pinned
    /// (`kernel.pin`). A previous agent's pins there are taken over either
    /// way.
    pub pin_dir: PathBuf,
    pub pin: bool,
    /// `kernel.protect`: while the agent runs, no other task may end, stop
    /// or trace it, open its maps or programs, or remove its pins (PID 1
    /// may still signal it). `auto` (the default): on when an enabled
    /// module is in block mode.
    pub protect: bool,
    pub otel: OtelConfig,
    /// The Unix socket `safeguard status` asks (`status.socket`).
    pub status_socket: PathBuf,
    pub dns_proxy: DnsProxyConfig,
}

/// `dns_proxy`: the agent answers DNS on `bind` itself, forwarding to
/// `upstreams`, and puts every address it answers for a name under a
/// domain rule in force before the answer goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProxyConfig {
    pub enable: bool,
    /// Where to ask; empty: the servers of /etc/resolv.conf.
    pub upstreams: Vec<std::net::SocketAddr>,
    /// Where to listen (UDP and TCP).
    pub bind: Vec<std::net::SocketAddr>,
}

/// Collects every problem rather than stopping at the first.
#[derive(Default)]
pub struct Errors(Vec<ConfigError>);

impl Errors {
    #[cfg(test)]
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    fn push(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.0.push(ConfigError {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        });
    }
}

/// Where `kernel.pin` keeps the programs' links and maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/safeguard";

pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors::default();

    let global_policy = parse_policy(
        &mut errors,
        "policy",
        raw.policy.as_deref(),
        ListPolicy::Blacklist,
    );
    let files = files(&mut errors, &raw.files, global_policy);
    let process = process(&mut errors, &raw.process, global_policy);
    let mount = mount(&mut errors, &raw.mount, global_policy);
    let log = log(&mut errors, &raw.log);
    let otel = otel(&mut errors, &raw.otel, &|k| std::env::var(k).ok());

    let network = network(&mut errors, &raw.network, global_policy);
    let dns_proxy = DnsProxyConfig {
        enable: raw.dns_proxy.enable,
        upstreams: list(
            &mut errors,
            "dns_proxy.upstreams",
            &raw.dns_proxy.upstreams,
            nameserver,
        ),
        bind: list(
            &mut errors,
            "dns_proxy.bind",
            &raw.dns_proxy.bind,
            nameserver,
        ),
    };
    if dns_proxy.enable && dns_proxy.bind.is_empty() && raw.dns_proxy.bind.is_empty() {
        errors.push(
            "dns_proxy.bind",
            "[]",
            "at least one address to listen on (127.0.0.1)",
        );
    }

    let ring_buffer_bytes = match raw.kernel.ring_buffer_bytes.unwrap_or(4 << 20) {
        n if n.is_power_of_two() && (4096..=(1 << 30)).contains(&n) => n as u32,
        n => {
            errors.push(
                "kernel.ring_buffer_bytes",
                n.to_string(),
                "a power of two from 4096 to 1073741824",
            );
            0
        }
    };

    let audit_rate_limit = match raw.kernel.audit_rate_limit.unwrap_or(0) {
        n if n <= u64::from(u32::MAX) => n as u32,
        n => {
            errors.push(
                "kernel.audit_rate_limit",
                n.to_string(),
                "records per second, from 0 (no limit) to 4294967295",
            );
            0
        }
    };

    let tier = match raw.kernel.tier.as_deref().map(str::trim) {
        None | Some("auto") => TierChoice::Auto,
        Some("lsm") => TierChoice::Lsm,
        Some("tracepoint") => TierChoice::Tracepoint,
        Some(other) => {
            errors.push("kernel.tier", other, "auto, lsm or tracepoint");
            TierChoice::Auto
        }
    };

    let pin_dir = PathBuf::from(
        raw.kernel
            .pin_dir
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_PIN_DIR),
    );
    if !pin_dir.is_absolute() {
        errors.push(
            "kernel.pin_dir",
            pin_dir.display().to_string(),
            "an absolute path of a directory on a BPF filesystem (bpffs)",
        );
    }

    let status_socket = PathBuf::from(
        raw.status
            .socket
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("/run/safeguard/status.sock"),
    );
    if !status_socket.is_absolute() {
        errors.push(
            "status.socket",
            status_socket.display().to_string(),
            "an absolute path",
        );
    }

    let blocks = [
        &files.settings,
        &process.settings,
        &mount.settings,
        &network.settings,
    ]
    .iter()
    .any(|s| s.enable && s.mode == Mode::Block);
    let protect = match raw.kernel.protect.as_deref().map(str::trim) {
        None | Some("auto") => blocks,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            errors.push("kernel.protect", other, "auto, true or false");
            false
        }
    };

    if errors.0.is_empty() {
        Ok(Config {
            status_socket,
            protect,
            files,
            process,
            mount,
            network,
            log,
            otel,
            ring_buffer_bytes,
            audit_rate_limit,
            tier,
            pin_dir,
            pin: raw.kernel.pin,
            dns_proxy,
        })
    } else {
        Err(errors.0)
    }
}

fn settings(
    errors: &mut Errors,
    module: &str,
    enable: bool,
    [mode, target, policy]: [&Option<String>; 3],
    global_policy: ListPolicy,
) -> ModuleSettings {
    ModuleSettings {
        enable,
        mode: parse_mode(errors, &format!("{module}.mode"), mode.as_deref()),
        target: parse_target(errors, &format!("{module}.target"), target.as_deref()),
        policy: parse_policy(
            errors,
            &format!("{module}.policy"),
            policy.as_deref(),
            global_policy,
        ),
    }
}

/// Validates a list with `check`, naming `key[index]` in each error.
fn list<T>(
    errors: &mut Errors,
    key: &str,
    values: &[String],
    check: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match check(v) {
            Ok(t) => Some(t),
            Err(expected) => {
                errors.push(format!("{key}[{i}]"), v.clone(), expected);
                None
            }
        })
        .collect()
}

fn files(errors: &mut Errors, raw: &RawFiles, global_policy: ListPolicy) -> FilesConfig {
    FilesConfig {
        settings: settings(
            errors,
            "files",
            raw.enable,
            [&raw.mode, &raw.target, &raw.policy],
            global_policy,
        ),
        allow: list(errors, "files.allow", &raw.allow, rule_path),
        deny: list(errors, "files.deny", &raw.deny, rule_path),
        ioctl: raw.ioctl,
    }
}

fn process(errors: &mut Errors, raw: &RawProcess, global_policy: ListPolicy) -> ProcessConfig {
    ProcessConfig {
        settings: settings(
            errors,
            "process",
            raw.enable,
            [&raw.mode, &raw.target, &raw.policy],
            global_policy,
        ),
        allow: list(errors, "process.allow", &raw.allow, exec_rule),
        deny: list(errors, "process.deny", &raw.deny, exec_rule),
        deny_memfd_exec: denies(errors, "process.memfd_exec", raw.memfd_exec.as_deref()),
    }
}

fn mount(errors: &mut Errors, raw: &RawMount, global_policy: ListPolicy) -> MountConfig {
    MountConfig {
        settings: settings(
            errors,
            "mount",
            raw.enable,
            [&raw.mode, &raw.target, &None],
            global_policy,
        ),
        deny: list(errors, "mount.deny", &raw.deny, rule_path),
    }
}

fn network(errors: &mut Errors, raw: &RawNetwork, global_policy: ListPolicy) -> NetworkConfig {
    let command = |v: &str| -> Result<String, String> {
        let v = v.trim();
        if v.is_empty() || v.contains('/') {
            Err("a command name as the kernel shows it (like curl)".into())
        } else if v.len() >= collector_common::COMM_LEN {
            Err(format!(
                "a command name of at most {} bytes (the kernel's task name)",
                collector_common::COMM_LEN - 1
            ))
        } else {
            Ok(v.to_string())
        }
    };
    let cgroup = match raw.cgroup.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if Path::new(p).is_absolute() => Some(PathBuf::from(p)),
        Some(other) => {
            errors.push(
                "network.cgroup",
                other,
                "an absolute path of a cgroup v2 directory",
            );
            None
        }
    };
    NetworkConfig {
        settings: settings(
            errors,
            "network",
            raw.enable,
            [&raw.mode, &raw.target, &raw.policy],
            global_policy,
        ),
        cidr_allow: list(errors, "network.cidr.allow", &raw.cidr.allow, cidr),
        cidr_deny: list(errors, "network.cidr.deny", &raw.cidr.deny, cidr),
        command_allow: list(errors, "network.command.allow", &raw.command.allow, command),
        command_deny: list(errors, "network.command.deny", &raw.command.deny, command),
        uid_allow: raw.uid.allow.clone(),
        uid_deny: raw.uid.deny.clone(),
        gid_allow: raw.gid.allow.clone(),
        gid_deny: raw.gid.deny.clone(),
        domain_allow: list(errors, "network.domain.allow", &raw.domain.allow, domain),
        domain_deny: list(errors, "network.domain.deny", &raw.domain.deny, domain),
        nameservers: list(errors, "network.nameservers", &raw.nameservers, nameserver),
        cgroup,
        deny_raw: denies(errors, "network.raw", raw.raw.as_deref()),
    }
}

/// A switch of `allow` (the default) or `deny`: whether it denies.
fn denies(errors: &mut Errors, key: &str, value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("allow") => false,
        Some("deny") => true,
        Some(other) => {
            errors.push(key, other, "allow or deny");
            false
        }
    }
}

/// A DNS name: letters, digits and hyphens in dot-separated labels of at
/// most 63 bytes, 253 in all; a trailing dot is dropped.
fn domain(value: &str) -> Result<String, String> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(name)
    } else {
        Err("a DNS name such as example.com".into())
    }
}

/// `IP` (port 53) or `IP:port` / `[IPv6]:port`.
fn nameserver(value: &str) -> Result<std::net::SocketAddr, String> {
    let v = value.trim();
    v.parse::<std::net::SocketAddr>()
        .or_else(|_| v.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| "an IP address, optionally with a port (127.0.0.1:5353)".into())
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `::1/128`) or a single address.
fn cidr(value: &str) -> Result<IpNetwork, String> {
    let value = value.trim();
    let net: IpNetwork = value
        .parse()
        .map_err(|_| "an IPv4 or IPv6 network like 10.0.0.0/8 or 2001:db8::/32".to_string())?;
    // Normalise 10.1.2.3/8 to 10.0.0.0/8, as the kernel's trie will.
    IpNetwork::new(net.network(), net.prefix()).map_err(|e| e.to_string())
}

/// A path prefix (starting with `/`) or a program name.
pub fn exec_rule(value: &str) -> Result<ExecRule, String> {
    if value.starts_with('/') {
        return rule_path(value).map(ExecRule::Path);
    }
    let name = value.trim();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err("a program name (like bash) or an absolute path".into());
    }
    if name.len() >= collector_common::NAME_KEY_LEN {
        return Err(format!(
            "a program name of at most {} bytes",
            collector_common::NAME_KEY_LEN - 1
        ));
    }
    Ok(ExecRule::Name(name.to_string()))
}

/// Checks and normalises a path prefix: absolute, no `.` or `..`, no
/// trailing `/` (except the root), short enough for the kernel's key.
pub fn rule_path(value: &str) -> Result<RulePath, String> {
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err("an absolute path (starting with /)".into());
    }
    let mut normal = String::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => {
                normal.push('/');
                normal.push_str(part.to_str().ok_or("a UTF-8 path")?);
            }
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err("a path without . or .. components".into());
            }
        }
    }
    if normal.is_empty() {
        normal.push('/');
    }
    if normal.len() > PATH_RULE_MAX {
        return Err(format!("a path of at most {PATH_RULE_MAX} bytes"));
    }
    Ok(RulePath(normal))
}

fn parse_mode(errors: &mut Errors, key: &str, value: Option<&str>) -> Mode {
    match value.map(str::trim) {
        None | Some("monitor") => Mode::Monitor,
        Some("block") => Mode::Block,
        Some(other) => {
            errors.push(key, other, "monitor or block");
            Mode::Monitor
        }
    }
}

fn parse_target(errors: &mut Errors, key: &str, value: Option<&str>) -> Target {
    match value.map(str::trim) {
        None | Some("host") => Target::Host,
        Some("container") => Target::Container,
        Some(other) => {
            errors.push(key, other, "host or container");
            Target::Host
        }
    }
}

fn parse_policy(
    errors: &mut Errors,
    key: &str,
    value: Option<&str>,
    default: ListPolicy,
) -> ListPolicy {
    match value.map(str::trim) {
        // Empty: the top-level `policy`.
        None | Some("") => default,
        Some("blacklist") => ListPolicy::Blacklist,
        Some("whitelist") => ListPolicy::Whitelist,
        Some(other) => {
            errors.push(key, other, "blacklist or whitelist");
            default
        }
    }
}

fn log(errors: &mut Errors, raw: &RawLog) -> LogConfig {
    let level = match raw.level.as_deref().map(|l| l.trim().to_ascii_uppercase()) {
        None => LogLevel::Info,
        Some(l) => match l.as_str() {
            "DEBUG" | "TRACE" | "10" => LogLevel::Debug,
            "INFO" | "20" => LogLevel::Info,
            "WARN" | "WARNING" | "30" => LogLevel::Warning,
            "ERROR" | "40" => LogLevel::Error,
            "CRITICAL" | "FATAL" | "50" => LogLevel::Critical,
            _ => {
                errors.push(
                    "log.level",
                    raw.level.clone().unwrap_or_default(),
                    "DEBUG (10), INFO (20), WARNING (30), ERROR (40) or CRITICAL (50)",
                );
                LogLevel::Info
            }
        },
    };
    let mode = match raw.mode.as_deref().map(str::trim) {
        None | Some("fallback") => LocalLog::Fallback,
        Some("always") => LocalLog::Always,
        Some(other) => {
            errors.push("log.mode", other, "always or fallback");
            LocalLog::Fallback
        }
    };
    let format = match raw.format.as_deref().map(str::trim) {
        None | Some("json") => LogFormat::Json,
        Some("text" | "txt") => LogFormat::Text,
        Some(other) => {
            errors.push("log.format", other, "json or text");
            LogFormat::Json
        }
    };
    let output = match raw.output.as_deref().map(str::trim) {
        None | Some("" | "stdout" | "-") => Output::Stdout,
        Some(path) if Path::new(path).is_absolute() => Output::File(PathBuf::from(path)),
        Some(other) => {
            errors.push("log.output", other, "stdout or an absolute file path");
            Output::Stdout
        }
    };
    let positive = |errors: &mut Errors, key: &str, v: Option<u64>, default: u64| match v {
        None => default,
        Some(0) => {
            errors.push(key, "0", "a positive number");
            default
        }
        Some(n) => n,
    };
    LogConfig {
        mode,
        level,
        format,
        output,
        max_size_mb: positive(errors, "log.max_size", raw.max_size, 100),
        max_age_days: positive(errors, "log.max_age", raw.max_age, 365),
        labels: raw.labels.clone(),
    }
}

/// `otel`, with the standard `OTEL_EXPORTER_OTLP_*` variables (read through
/// `env`) where the configuration leaves a value empty.
pub fn otel(
    errors: &mut Errors,
    raw: &RawOtel,
    env: &dyn Fn(&str) -> Option<String>,
) -> OtelConfig {
    let pick = |value: &Option<String>, var: &str| -> Option<String> {
        value
            .clone()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| env(var).filter(|v| !v.trim().is_empty()))
    };
    let protocol = match pick(&raw.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL")
        .as_deref()
        .map(str::trim)
    {
        None | Some("grpc") => OtlpProtocol::Grpc,
        Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some(other) => {
            errors.push("otel.protocol", other, "grpc or http/protobuf");
            OtlpProtocol::Grpc
        }
    };
    let default_endpoint = match protocol {
        OtlpProtocol::Grpc => "http://localhost:4317",
        OtlpProtocol::HttpProtobuf => "http://localhost:4318",
    };
    let endpoint = pick(&raw.endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|| default_endpoint.into())
        .trim()
        .trim_end_matches('/')
        .to_string();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.len() <= "https://".len()
    {
        errors.push(
            "otel.endpoint",
            endpoint.clone(),
            "a URL like http://localhost:4317",
        );
    }
    let gzip = match pick(&raw.compression, "OTEL_EXPORTER_OTLP_COMPRESSION")
        .as_deref()
        .map(str::trim)
    {
        None | Some("gzip") => true,
        Some("none") => false,
        Some(other) => {
            errors.push("otel.compression", other, "gzip or none");
            true
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(list) = env("OTEL_EXPORTER_OTLP_HEADERS") {
        // key1=value1,key2=value2, values percent-encoded.
        for item in list.split(',').filter(|i| !i.trim().is_empty()) {
            match item.split_once('=') {
                Some((k, v)) => {
                    headers.push((k.trim().to_ascii_lowercase(), percent_decode(v.trim())))
                }
                None => errors.push(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    item,
                    "key=value pairs separated by commas",
                ),
            }
        }
    }
    for (k, v) in &raw.headers {
        headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
        headers.push((k.to_ascii_lowercase(), v.clone()));
    }
    let ca_file = pick(&raw.ca_file, "OTEL_EXPORTER_OTLP_CERTIFICATE").map(PathBuf::from);
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        errors.push(
            "otel.ca_file",
            ca.display().to_string(),
            "a readable PEM file",
        );
    }
    let timeout_ms = raw
        .timeout_ms
        .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT").and_then(|t| t.trim().parse().ok()))
        .unwrap_or(10_000);
    let spool_dir = PathBuf::from(
        raw.spool_dir
            .clone()
            .unwrap_or_else(|| "/var/lib/safeguard/spool".into()),
    );
    if !spool_dir.is_absolute() {
        errors.push(
            "otel.spool_dir",
            spool_dir.display().to_string(),
            "an absolute directory path",
        );
    }
    let positive = |errors: &mut Errors, key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => {
            errors.push(key, "0", "a positive number");
            default
        }
        Some(n) => n,
        None => default,
    };
    OtelConfig {
        enable: raw.enable.unwrap_or(true),
        endpoint,
        protocol,
        gzip,
        headers,
        ca_file,
        timeout_ms: positive(errors, "otel.timeout_ms", Some(timeout_ms), 10_000),
        batch_size: positive(errors, "otel.batch_size", raw.batch_size, 512) as usize,
        batch_timeout_ms: positive(errors, "otel.batch_timeout_ms", raw.batch_timeout_ms, 200),
        spool_dir,
        spool_max_bytes: positive(errors, "otel.spool_max_bytes", raw.spool_max_bytes, 1 << 30),
    }
}

/// `%XX` escapes, as OTEL_EXPORTER_OTLP_HEADERS values use them.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
