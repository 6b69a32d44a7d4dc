//! `safeguard generate` (and openEuler safeguard's spelling, `safeguard
//! controller generate`): a whitelist policy of the host as it is now, and
//! a JSON report of what it was built from.
//!
//! What goes in, as in the original: the running executables (by path),
//! the users of `/etc/passwd` and of the running processes (network UID
//! and GID allow lists), the networks of the host's interfaces and the
//! peers of its current connections (CIDR allow list), and the system
//! directories, the home directories and the executables' paths (file
//! allow list). Mounts are left out (the original enables an empty mount
//! module, which under a whitelist would refuse every mount). The policy
//! is written in monitor mode unless asked otherwise: it is a start to
//! review, not a policy to enforce blind.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use ipnetwork::IpNetwork;
use serde::Serialize;

use crate::{
    cli::{GenerateArgs, GenerateMode},
    config::{self, Mode},
    policy::Policy,
};

/// Directories every host needs to read: allowed whatever ran.
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/dev", "/etc", "/lib", "/lib64", "/opt", "/proc", "/run", "/sbin", "/sys", "/tmp",
    "/usr", "/var", "/home", "/root",
];

/// What the host was found running and holding, before it is made a policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub hostname: String,
    pub accounts: Vec<Account>,
    /// Executables of the running processes (`/proc/PID/exe`).
    pub executables: BTreeSet<PathBuf>,
    /// Real and effective user and group ids of the running processes.
    pub uids: BTreeSet<u32>,
    pub gids: BTreeSet<u32>,
    /// Networks of the host's interfaces and peers of its connections.
    pub networks: BTreeSet<IpNetwork>,
    /// What could not be read, in words.
    pub warnings: Vec<String>,
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The generated policy's lists, and the report's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Whitelist {
    pub hostname: String,
    pub generated_at: String,
    pub mode: &'static str,
    pub files_allow: Vec<String>,
    pub process_allow: Vec<String>,
    pub network_cidr_allow: Vec<String>,
    pub network_uid_allow: Vec<u32>,
    pub network_gid_allow: Vec<u32>,
    pub accounts: Vec<Account>,
    pub warnings: Vec<String>,
}

pub fn generate(args: &GenerateArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safeguard generate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let snapshot = Snapshot::collect(Path::new("/etc/passwd"));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mode = match args.mode {
        GenerateMode::Monitor => Mode::Monitor,
        GenerateMode::Block => Mode::Block,
    };
    let whitelist = Whitelist::build(&snapshot, mode, now);
    let yaml = whitelist.to_yaml();
    check_accepted(&yaml)?;
    match &args.output {
        Some(path) => write(path, &yaml)?,
        None => print!("{yaml}"),
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&whitelist)? + "\n";
        write(path, &json)?;
    }
    for w in &whitelist.warnings {
        eprintln!("safeguard generate: warning: {w}");
    }
    if let Some(path) = &args.output {
        eprintln!(
            "safeguard generate: wrote {} ({} files, {} process, {} network rules, {} mode); review it, then `safeguard check --config {}`",
            path.display(),
            whitelist.files_allow.len(),
            whitelist.process_allow.len(),
            whitelist.network_cidr_allow.len()
                + whitelist.network_uid_allow.len()
                + whitelist.network_gid_allow.len(),
            whitelist.mode,
            path.display()
        );
    }
    Ok(())
}

/// The policy must be one `check` takes as it is: loaded, compiled and
/// within the kernel's maps, or nothing is written.
pub(super) fn check_accepted(yaml: &str) -> anyhow::Result<()> {
    let config = config::load_yaml(yaml).map_err(|errors| {
        anyhow::anyhow!(
            "the generated policy does not load (a bug): {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    Policy::compile(&config)
        .fits()
        .map_err(|e| anyhow::anyhow!("the generated policy does not fit the kernel: {e}"))
}

/// Writes `text` to `path` whole (a temporary file renamed over it), with
/// the mode a policy should have (0600: it tells what the host runs).
pub(super) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

impl Snapshot {
    /// The host as it is now; what cannot be read becomes a warning.
    pub fn collect(passwd: &Path) -> Self {
        let mut s = Snapshot {
            hostname: crate::telemetry::resource::host_name().to_string(),
            ..Default::default()
        };
        match std::fs::read_to_string(passwd) {
            Ok(text) => s.accounts = parse_passwd(&text),
            Err(e) => s.warnings.push(format!("{}: {e}", passwd.display())),
        }
        for a in &s.accounts {
            s.uids.insert(a.uid);
            s.gids.insert(a.gid);
        }
        s.collect_processes();
        s.collect_interfaces();
        s.collect_peers();
        s
    }

    fn collect_processes(&mut self) {
        let processes = match procfs::process::all_processes() {
            Ok(p) => p,
            Err(e) => {
                self.warnings.push(format!("/proc: {e}"));
                return;
            }
        };
        let mut unreadable = 0;
        for process in processes.flatten() {
            // Kernel threads have no executable; a process that exited
            // meanwhile has nothing to read.
            match process.exe() {
                Ok(exe) => {
                    let exe = exe.to_string_lossy();
                    // A deleted or replaced executable is not a path to allow.
                    if !exe.ends_with(" (deleted)") {
                        self.executables.insert(PathBuf::from(exe.as_ref()));
                    }
                }
                Err(procfs::ProcError::PermissionDenied(_)) => unreadable += 1,
                Err(_) => {}
            }
            if let Ok(status) = process.status() {
                self.uids.extend([status.ruid, status.euid]);
                self.gids.extend([status.rgid, status.egid]);
            }
        }
        if unreadable > 0 {
            // SAFETY: geteuid has no preconditions.
            let hint = if unsafe { libc::geteuid() } == 0 {
                ""
            } else {
                " (run as root to read them)"
            };
            self.warnings.push(format!(
                "the executables of {unreadable} processes could not be read{hint}"
            ));
        }
    }

    fn collect_interfaces(&mut self) {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => {
                for i in interfaces {
                    let (ip, netmask) = match &i.addr {
                        if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), IpAddr::V4(a.netmask)),
                        if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), IpAddr::V6(a.netmask)),
                    };
                    if let Some(network) = network_of(ip, netmask) {
                        self.networks.insert(network);
                    }
                }
            }
            Err(e) => self.warnings.push(format!("network interfaces: {e}")),
        }
    }

    /// The peers of the host's TCP connections and connected UDP sockets.
    fn collect_peers(&mut self) {
        let mut peers = Vec::new();
        for (name, entries) in [
            ("/proc/net/tcp", procfs::net::tcp().map(remote_tcp)),
            ("/proc/net/tcp6", procfs::net::tcp6().map(remote_tcp)),
            ("/proc/net/udp", procfs::net::udp().map(remote_udp)),
            ("/proc/net/udp6", procfs::net::udp6().map(remote_udp)),
        ] {
            match entries {
                Ok(addresses) => peers.extend(addresses),
                // A kernel without IPv6 has no tcp6.
                Err(procfs::ProcError::NotFound(_)) => {}
                Err(e) => self.warnings.push(format!("{name}: {e}")),
            }
        }
        for ip in peers {
            if !ip.is_unspecified() {
                let prefix = if ip.is_ipv4() { 32 } else { 128 };
                if let Ok(n) = IpNetwork::new(ip, prefix) {
                    self.networks.insert(n);
                }
            }
        }
    }
}

fn remote_tcp(entries: Vec<procfs::net::TcpNetEntry>) -> Vec<IpAddr> {
    entries.iter().map(|e| e.remote_address.ip()).collect()
}

fn remote_udp(entries: Vec<procfs::net::UdpNetEntry>) -> Vec<IpAddr> {
    entries.iter().map(|e| e.remote_address.ip()).collect()
}

/// The network an interface address is in (`10.1.2.3`/`255.255.0.0` →
/// `10.1.0.0/16`).
fn network_of(ip: IpAddr, netmask: IpAddr) -> Option<IpNetwork> {
    let with = IpNetwork::with_netmask(ip, netmask).ok()?;
    IpNetwork::new(with.network(), with.prefix()).ok()
}

/// The accounts of an `/etc/passwd` text. Seven colon-separated fields a
/// line; a line that is not one is skipped. (No crate reads the file
/// rather than asking NSS, which would add directory users this host does
/// not hold.)
fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 7).then_some(())?;
            Some(Account {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

impl Whitelist {
    pub fn build(snapshot: &Snapshot, mode: Mode, generated_at: String) -> Self {
        let executables: Vec<String> = snapshot
            .executables
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.starts_with('/'))
            .collect();
        let mut files: BTreeSet<String> = SYSTEM_DIRS.iter().map(|d| d.to_string()).collect();
        files.extend(executables.iter().cloned());
        files.extend(
            snapshot
                .accounts
                .iter()
                .map(|a| a.home.clone())
                .filter(|h| h.starts_with('/') && h != "/" && !h.starts_with("/nonexistent")),
        );
        Whitelist {
            hostname: snapshot.hostname.clone(),
            generated_at,
            mode: match mode {
                Mode::Monitor => semconv::mode::MONITOR,
                Mode::Block => semconv::mode::BLOCK,
            },
            files_allow: files.into_iter().collect(),
            process_allow: executables,
            network_cidr_allow: snapshot.networks.iter().map(ToString::to_string).collect(),
            network_uid_allow: snapshot.uids.iter().copied().collect(),
            network_gid_allow: snapshot.gids.iter().copied().collect(),
            accounts: snapshot.accounts.clone(),
            warnings: snapshot.warnings.clone(),
        }
    }

    /// The policy as a configuration file. Written here rather than with a
    /// YAML serializer (none is a dependency; the `config` crate only
    /// reads): every string is written as a JSON string, which is a YAML
    /// double-quoted scalar, so no path or name can change its meaning.
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let list = |out: &mut String, indent: &str, items: &[String]| {
            if items.is_empty() {
                out.push_str(" []\n");
            } else {
                out.push('\n');
                for item in items {
                    let _ = writeln!(out, "{indent}- {item}");
                }
            }
        };
        let strings = |items: &[String]| items.iter().map(|s| q(s)).collect::<Vec<_>>();
        let numbers = |items: &[u32]| items.iter().map(u32::to_string).collect::<Vec<_>>();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# A whitelist of host {} as it ran at {}, by `safeguard generate`:\n\
             # its running executables, its users, its networks and the peers it\n\
             # was connected to. Review it, try it in monitor mode, then set\n\
             # mode: block. `safeguard generate --report FILE` says what was found.",
            self.hostname, self.generated_at
        );
        out.push_str("policy: whitelist\n");
        let module = |out: &mut String, name: &str| {
            let _ = writeln!(
                out,
                "{name}:\n  enable: true\n  mode: {}\n  target: host",
                self.mode
            );
        };
        module(&mut out, "files");
        out.push_str("  allow:");
        list(&mut out, "    ", &strings(&self.files_allow));
        out.push_str("  deny: []\n");
        module(&mut out, "process");
        out.push_str("  allow:");
        list(&mut out, "    ", &strings(&self.process_allow));
        module(&mut out, "network");
        out.push_str("  cidr:\n    allow:");
        list(&mut out, "      ", &strings(&self.network_cidr_allow));
        out.push_str("  uid:\n    allow:");
        list(&mut out, "      ", &numbers(&self.network_uid_allow));
        out.push_str("  gid:\n    allow:");
        list(&mut out, "      ", &numbers(&self.network_gid_allow));
        // Under a whitelist, a mount module without allow rules would
        // refuse every mount: mounts are not part of a snapshot.
        out.push_str("mount:\n  enable: false\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            hostname: "node-1".into(),
            accounts: parse_passwd(
                "root:x:0:0:root:/root:/bin/bash\n\
                 # a comment\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                 broken line\n\
                 alice:x:1000:1000:Alice \"A\" Smith:/home/alice: odd/path\n",
            ),
            executables: [
                "/usr/sbin/sshd",
                "/opt/app/bin/my app \"v2\"",
                "/usr/bin/bash",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            uids: [0, 1000, 33].into(),
            gids: [0, 1000].into(),
            networks: ["127.0.0.0/8", "10.1.0.0/16", "fe80::/64", "192.0.2.7/32"]
                .into_iter()
                .map(|n| n.parse().unwrap())
                .collect(),
            warnings: vec!["/proc/net/udp6: gone".into()],
        }
    }

    #[test]
    fn passwd_lines_become_accounts_and_bad_lines_are_skipped() {
        let s = snapshot();
        let names: Vec<_> = s.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["root", "nobody", "alice"]);
        assert_eq!(s.accounts[2].uid, 1000);
        assert_eq!(s.accounts[2].home, "/home/alice");
    }

    #[test]
    fn interface_addresses_become_their_networks() {
        let n = |ip: &str, mask: &str| {
            network_of(ip.parse().unwrap(), mask.parse().unwrap()).map(|n| n.to_string())
        };
        assert_eq!(n("10.1.2.3", "255.255.0.0").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(n("127.0.0.1", "255.0.0.0").as_deref(), Some("127.0.0.0/8"));
        assert_eq!(
            n("fe80::1:2", "ffff:ffff:ffff:ffff::").as_deref(),
            Some("fe80::/64")
        );
    }

    #[test]
    fn the_whitelist_allows_what_ran_and_who_is_there() {
        let w = Whitelist::build(&snapshot(), Mode::Monitor, "2026-12-04T00:00:00Z".into());
        assert_eq!(w.mode, "monitor");
        assert_eq!(
            w.process_allow,
            [
                "/opt/app/bin/my app \"v2\"",
                "/usr/bin/bash",
                "/usr/sbin/sshd"
            ]
        );
        for path in ["/etc", "/usr", "/home/alice", "/root", "/usr/sbin/sshd"] {
            assert!(w.files_allow.iter().any(|f| f == path), "{path}: {w:?}");
        }
        assert!(
            !w.files_allow.iter().any(|f| f.starts_with("/nonexistent")),
            "no home that is not one"
        );
        assert_eq!(
            w.network_cidr_allow,
            ["10.1.0.0/16", "127.0.0.0/8", "192.0.2.7/32", "fe80::/64"]
        );
        assert_eq!(w.network_uid_allow, [0, 33, 1000]);
        assert_eq!(w.warnings, ["/proc/net/udp6: gone"]);
    }

    /// The written policy loads as written: the names with quotes and
    /// spaces, the lists, the modes; and it fits the kernel's maps.
    #[test]
    fn the_policy_is_one_check_accepts_unchanged() {
        let w = Whitelist::build(&snapshot(), Mode::Block, "2026-12-04T00:00:00Z".into());
        let yaml = w.to_yaml();
        check_accepted(&yaml).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = config::load(&config::Sources {
            file: Some(path),
            overrides: Vec::new(),
            environment: false,
        })
        .unwrap();
        assert_eq!(config.files.settings.policy, config::ListPolicy::Whitelist);
        assert_eq!(config.files.settings.mode, Mode::Block);
        assert!(config.process.settings.enable && config.network.settings.enable);
        assert!(!config.mount.settings.enable, "no mount would be allowed");
        let policy = Policy::compile(&config);
        assert!(policy.fits().is_ok());
        assert_eq!(policy.process.rules.len(), 3, "{yaml}");
        assert!(yaml.contains(r#"- "/opt/app/bin/my app \"v2\"""#), "{yaml}");
    }
}
