//! Adds what the kernel did not know: wall-clock time, the executable's
//! path, the full path of a relative open (audit tier), the rule as written,
//! the host. Produces output-independent [`Enriched`] events.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use collector_common::{
    AT_FDCWD, Decision, MODE_BLOCK, PathRule, RULE_LIST_TOO_LONG, RULE_MEMFD_EXEC,
    RULE_PATH_UNRESOLVED, RULE_RAW_SOCKET,
    file::FileOp,
    guard::TamperAction,
    mount::MountOp,
    net::{AF_INET, AF_INET6, AF_PACKET, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, NetOp, SOCK_RAW},
};
use semconv::{attr, event};

use super::{
    container::Containers,
    decode::{Event, Exec, Exit, File, Fork, Header, Mount, Net, Process, Tamper},
    enriched::{Enriched, Severity, Value},
    exe::Executables,
};
use crate::{
    internal_events::{PathUnresolved, Registry},
    policy::{ModulePolicy, Policy},
};

type Attributes = Vec<(&'static str, Value)>;

pub struct Enricher {
    /// Swapped on reload.
    policy: std::sync::RwLock<Arc<Policy>>,
    clock: BootClock,
    /// The Resource's `host.name`, so an event names the node as the
    /// signals around it do.
    host_name: Arc<str>,
    registry: Arc<Registry>,
    exes: Executables,
    containers: Containers,
}

impl Enricher {
    pub fn new(policy: Arc<Policy>, registry: Arc<Registry>) -> Self {
        Self {
            policy: std::sync::RwLock::new(policy),
            clock: BootClock::now(),
            host_name: crate::telemetry::resource::host_name().into(),
            exes: Executables::default(),
            registry,
            containers: Containers::default(),
        }
    }

    /// An answer `dns_proxy` passed on (not a kernel record: no process,
    /// no hook).
    pub fn dns_answer(&self, answer: crate::dns::proxy::Answer) -> Enriched {
        Enriched {
            name: semconv::event::DNS_PROXY_ANSWER,
            time: std::time::SystemTime::now(),
            severity: Severity::Info,
            attributes: vec![
                (attr::MODULE, semconv::module::NETWORK.into()),
                (attr::DECISION, semconv::decision::ALLOWED.into()),
                (attr::DNS_QUESTION_NAME, answer.name.into()),
                (
                    attr::DNS_ANSWERS,
                    answer
                        .addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<String>>()
                        .into(),
                ),
                (attr::CLIENT_ADDRESS, answer.client.ip().to_string().into()),
                (attr::DNS_PROXY_OUTCOME, answer.outcome.name().into()),
                (attr::HOST_NAME, self.host_name.clone().into()),
            ],
        }
    }

    /// The policy events are judged and named by from now on (rule ids
    /// carry over, so events judged under the old one are named right).
    pub fn set_policy(&self, policy: Arc<Policy>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `None` when the event is not reportable: a relative path (audit
    /// tier) that resolves outside the policy, or cannot be resolved
    /// (counted).
    pub fn enrich(&self, event: Event) -> Option<Enriched> {
        match event {
            Event::File(e) => self.file(e),
            Event::Exec(e) => Some(self.exec(e)),
            Event::Fork(e) => Some(self.fork(e)),
            Event::Exit(e) => Some(self.exit(e)),
            Event::Mount(e) => Some(self.mount(e)),
            Event::Net(e) => Some(self.net(e)),
            Event::Tamper(e) => Some(self.tamper(e)),
            // Not reported: it names the containers of later events.
            Event::Cgroup(c) => {
                if c.untracked {
                    tracing::warn!(
                        cgroup.id = c.id,
                        cgroup.path = c.path.as_deref().unwrap_or("?"),
                        "{} is full ({}): this container's tasks are not in a container \
                         for `target: container`",
                        collector_common::maps::CONTAINER_CGROUPS,
                        collector_common::maps::CONTAINER_CGROUPS_MAX
                    );
                }
                if let Some(path) = c.path {
                    self.containers.made(c.id, &path);
                }
                None
            }
        }
    }

    fn tamper(&self, e: Tamper) -> Enriched {
        use semconv::tamper;
        let mut a = self.common(&e.header, e.process, semconv::module::AGENT);
        let (action, detail_key) = match e.action {
            TamperAction::Signal => (tamper::SIGNAL, attr::TAMPER_SIGNAL),
            TamperAction::SignalByIo => (tamper::SIGNAL_BY_IO, attr::TAMPER_SIGNAL),
            TamperAction::Rlimit => (tamper::RLIMIT, attr::TAMPER_RESOURCE),
            TamperAction::Ptrace => (tamper::PTRACE, ""),
            TamperAction::Map => (tamper::BPF_MAP, attr::TAMPER_OBJECT_ID),
            TamperAction::Program => (tamper::BPF_PROG, attr::TAMPER_OBJECT_ID),
            TamperAction::Pin => (tamper::PIN, ""),
        };
        a.push((attr::TAMPER_ACTION, action.into()));
        if !detail_key.is_empty() {
            a.push((detail_key, e.detail.into()));
        }
        a.push((attr::TAMPER_AGENT_PID, e.agent_pid.into()));
        a.push((
            attr::SECURITY_RULE_NAME,
            semconv::rule::AGENT_PROTECT.into(),
        ));
        a.push((attr::SECURITY_RULE_RULESET_NAME, "kernel".into()));
        self.record(event::AGENT_TAMPER, &e.header, a)
    }

    fn file(&self, mut e: File) -> Option<Enriched> {
        let policy = self.policy();
        let files = &policy.files;
        if e.relative {
            let Some(path) = resolve_relative(e.base.take(), e.process.pid, e.dfd, &e.path) else {
                self.registry.emit(PathUnresolved);
                return None;
            };
            // The audit tier cannot enforce, so a denial is "would block".
            e.header.rule_id =
                PathRule::denial([files.paths.lookup(&path), None], files.config.policy)?;
            e.header.decision = Decision::WouldBlock;
            e.path = path;
        }

        let name = match e.op {
            FileOp::Open => event::FILE_OPEN,
            FileOp::Unlink => event::FILE_UNLINK,
            FileOp::Rmdir => event::FILE_RMDIR,
            FileOp::Rename => event::FILE_RENAME,
            FileOp::Truncate => event::FILE_TRUNCATE,
            FileOp::Chmod => event::FILE_CHMOD,
            FileOp::Chown => event::FILE_CHOWN,
            FileOp::Mmap => event::FILE_MMAP,
            FileOp::Ioctl => event::FILE_IOCTL,
            FileOp::Link => event::FILE_LINK,
            FileOp::Symlink => event::FILE_SYMLINK,
            FileOp::Mkdir => event::FILE_MKDIR,
            FileOp::Mknod => event::FILE_MKNOD,
            FileOp::Receive => event::FILE_RECEIVE,
        };
        let mut a = self.common(&e.header, e.process, semconv::module::FILES);
        a.push((attr::FILE_PATH, e.path.into()));
        if e.truncated {
            a.push((attr::FILE_PATH_TRUNCATED, true.into()));
        }
        match e.op {
            FileOp::Open => {
                a.push((
                    attr::FILE_OPEN_MODE,
                    open_mode(e.open_flags, e.fmode).into(),
                ));
                a.push((attr::FILE_OPEN_FLAGS, e.open_flags.into()));
            }
            FileOp::Rename | FileOp::Link => {
                if let Some(to) = e.path2 {
                    a.push((attr::FILE_NEW_PATH, to.into()));
                }
            }
            FileOp::Chmod => a.push((
                attr::FILE_REQUESTED_MODE,
                format!("{:04o}", e.arg & 0o7777).into(),
            )),
            FileOp::Chown => {
                // u32::MAX (-1) means "unchanged".
                let (uid, gid) = (e.arg as u32, (e.arg >> 32) as u32);
                if uid != u32::MAX {
                    a.push((attr::FILE_REQUESTED_OWNER_ID, uid.to_string().into()));
                }
                if gid != u32::MAX {
                    a.push((attr::FILE_REQUESTED_GROUP_ID, gid.to_string().into()));
                }
            }
            FileOp::Mmap => a.push((attr::FILE_MMAP_PROT, mmap_prot(e.arg as u32).into())),
            FileOp::Ioctl => a.push((attr::FILE_IOCTL_CMD, e.arg.into())),
            FileOp::Unlink
            | FileOp::Rmdir
            | FileOp::Truncate
            | FileOp::Symlink
            | FileOp::Mkdir
            | FileOp::Mknod
            | FileOp::Receive => {}
        }
        rule_attributes(&mut a, files, &e.header);
        Some(self.record(name, &e.header, a))
    }

    fn exec(&self, e: Exec) -> Enriched {
        if e.mapping {
            return self.exec_mapping(e);
        }
        // The program the kernel ran (or refused), not what /proc shows.
        let exe: Arc<str> = e.path.into();
        if e.header.decision == Decision::Blocked {
            // Refused: the old program runs on, as remembered.
        } else if e.path_truncated {
            // It runs a program whose path is known only in part.
            self.exes.forget(e.process.pid);
        } else {
            self.exes.ran(e.process.pid, exe.clone());
        }
        let mut a = self.common_with_exe(&e.header, e.process, semconv::module::PROCESS, Some(exe));
        a.push((attr::PROCESS_COMMAND_ARGS, e.args.into()));
        if e.args_truncated {
            a.push((attr::PROCESS_ARGS_TRUNCATED, true.into()));
        }
        rule_attributes(&mut a, &self.policy().process, &e.header);
        self.record(event::PROCESS_EXEC, &e.header, a)
    }

    /// An executable mapping of a file the exec rules deny: the process
    /// is the one mapping it (its program unchanged), the file is the
    /// mapped one.
    fn exec_mapping(&self, e: Exec) -> Enriched {
        let mut a = self.common(&e.header, e.process, semconv::module::PROCESS);
        a.push((attr::FILE_PATH, e.path.into()));
        if e.path_truncated {
            a.push((attr::FILE_PATH_TRUNCATED, true.into()));
        }
        rule_attributes(&mut a, &self.policy().process, &e.header);
        self.record(event::PROCESS_EXEC_MAPPING, &e.header, a)
    }

    fn fork(&self, e: Fork) -> Enriched {
        // A fork runs the parent's program: the child's is the parent's.
        let exe = self
            .exes
            .inherit(e.process.pid, &e.process.comm, e.child_pid);
        // The event describes the child; its parent is the task that forked.
        let child = Process {
            tid: e.child_tid,
            pid: e.child_pid,
            ppid: e.process.pid,
            ..e.process
        };
        let a = self.common_with_exe(&e.header, child, semconv::module::PROCESS, exe);
        self.record(event::PROCESS_FORK, &e.header, a)
    }

    fn exit(&self, e: Exit) -> Enriched {
        // What was known of it: by the time the agent reads the event the
        // process is usually gone, and reading /proc would fail.
        let exe = self.exes.take(e.process.pid);
        let mut a = self.common_with_exe(&e.header, e.process, semconv::module::PROCESS, exe);
        let signal = e.exit_code & 0x7f;
        if signal == 0 {
            a.push((attr::PROCESS_EXIT_CODE, ((e.exit_code >> 8) & 0xff).into()));
        } else {
            a.push((attr::PROCESS_EXIT_SIGNAL, signal.into()));
        }
        self.record(event::PROCESS_EXIT, &e.header, a)
    }

    fn mount(&self, e: Mount) -> Enriched {
        let mut a = self.common(&e.header, e.process, semconv::module::MOUNT);
        a.push((attr::MOUNT_SOURCE, e.source.into()));
        // An overlay's layer is judged before the mount has a place.
        if !e.target.is_empty() {
            a.push((attr::MOUNT_TARGET, e.target.into()));
        }
        if !e.fstype.is_empty() {
            a.push((attr::MOUNT_FSTYPE, e.fstype.into()));
        }
        if e.op == MountOp::Mount {
            a.push((attr::MOUNT_FLAGS, e.flags.into()));
        }
        rule_attributes(&mut a, &self.policy().mount, &e.header);
        let name = match e.op {
            MountOp::Mount => event::MOUNT_MOUNT,
            MountOp::Move => event::MOUNT_MOVE,
        };
        self.record(name, &e.header, a)
    }

    fn net(&self, e: Net) -> Enriched {
        let mut a = self.common(&e.header, e.process, semconv::module::NETWORK);
        if let Some((family, kind, protocol)) = e.socket {
            let family = match family {
                AF_INET => "inet",
                AF_INET6 => "inet6",
                AF_PACKET => "packet",
                _ => "other",
            };
            let kind = if kind == SOCK_RAW { "raw" } else { "dgram" };
            a.push((attr::NETWORK_SOCKET_FAMILY, family.into()));
            a.push((attr::NETWORK_SOCKET_TYPE, kind.into()));
            a.push((attr::NETWORK_SOCKET_PROTOCOL, u32::from(protocol).into()));
            rule_attributes(&mut a, &self.policy().network, &e.header);
            return self.record(event::NETWORK_SOCKET, &e.header, a);
        }
        match e.protocol {
            IPPROTO_TCP => a.push((attr::NETWORK_TRANSPORT, semconv::net::TCP.into())),
            IPPROTO_UDP => a.push((attr::NETWORK_TRANSPORT, semconv::net::UDP.into())),
            IPPROTO_SCTP => a.push((attr::NETWORK_TRANSPORT, semconv::net::SCTP.into())),
            _ => {}
        }
        let net_type = if e.peer.is_ipv4() {
            semconv::net::IPV4
        } else {
            semconv::net::IPV6
        };
        a.push((attr::NETWORK_TYPE, net_type.into()));
        if !e.local.ip().is_unspecified() || e.local.port() != 0 {
            a.push((attr::NETWORK_LOCAL_ADDRESS, e.local.ip().to_string().into()));
            a.push((attr::NETWORK_LOCAL_PORT, u32::from(e.local.port()).into()));
        }
        if e.op != NetOp::Bind {
            a.push((attr::NETWORK_PEER_ADDRESS, e.peer.ip().to_string().into()));
            a.push((attr::NETWORK_PEER_PORT, u32::from(e.peer.port()).into()));
        } else {
            // A bind's "peer" is the local address asked for.
            a.retain(|(k, _)| *k != attr::NETWORK_LOCAL_ADDRESS && *k != attr::NETWORK_LOCAL_PORT);
            a.push((attr::NETWORK_LOCAL_ADDRESS, e.peer.ip().to_string().into()));
            a.push((attr::NETWORK_LOCAL_PORT, u32::from(e.peer.port()).into()));
        }
        let (name, direction) = match e.op {
            NetOp::Connect => (event::NETWORK_CONNECT, semconv::net::OUTBOUND),
            NetOp::Send => (event::NETWORK_SEND, semconv::net::OUTBOUND),
            NetOp::Bind => (event::NETWORK_BIND, semconv::net::OUTBOUND),
            NetOp::Receive => (event::NETWORK_RECEIVE, semconv::net::INBOUND),
            NetOp::Getpeername => (event::NETWORK_GETPEERNAME, semconv::net::INBOUND),
            NetOp::Accept => (event::NETWORK_ACCEPT, semconv::net::INBOUND),
            NetOp::Socket => unreachable!("a socket made has no peer: handled above"),
        };
        a.push((attr::NETWORK_DIRECTION, direction.into()));
        rule_attributes(&mut a, &self.policy().network, &e.header);
        self.record(name, &e.header, a)
    }

    fn record(&self, name: &'static str, h: &Header, attributes: Attributes) -> Enriched {
        Enriched {
            name,
            time: self.clock.wall_time(h.boot_ns),
            severity: severity(h.decision),
            attributes,
        }
    }

    fn common(&self, h: &Header, p: Process, module: &'static str) -> Attributes {
        let exe = self.exes.get(p.pid, &p.comm);
        self.common_with_exe(h, p, module, exe)
    }

    fn common_with_exe(
        &self,
        h: &Header,
        p: Process,
        module: &'static str,
        exe: Option<Arc<str>>,
    ) -> Attributes {
        let mut a = Vec::with_capacity(24);
        a.push((attr::SEQUENCE, h.seq.into()));
        a.push((attr::DECISION, decision_name(h.decision).into()));
        let mode = if h.mode == MODE_BLOCK {
            semconv::mode::BLOCK
        } else {
            semconv::mode::MONITOR
        };
        a.push((attr::MODE, mode.into()));
        a.push((attr::MODULE, module.into()));
        a.push((attr::HOOK, h.hook.name().into()));
        let tier = if h.hook.enforcing() {
            semconv::tier::ENFORCED
        } else {
            semconv::tier::AUDIT_ONLY
        };
        a.push((attr::ENFORCEMENT_TIER, tier.into()));
        a.push((attr::PROCESS_PID, p.pid.into()));
        a.push((attr::THREAD_TID, p.tid.into()));
        a.push((attr::PROCESS_PARENT_PID, p.ppid.into()));
        a.push((attr::PROCESS_USER_ID, p.euid.into()));
        a.push((attr::PROCESS_REAL_USER_ID, p.uid.into()));
        a.push((attr::PROCESS_GROUP_ID, p.gid.into()));
        a.push((attr::PROCESS_COMM, p.comm.into()));
        if let Some(exe) = exe {
            // OpenTelemetry's executable name is the base name of the
            // executable's path, so it is there only when the path is.
            let name = exe.rsplit('/').next().unwrap_or(&exe).to_owned();
            a.push((attr::PROCESS_EXECUTABLE_NAME, name.into()));
            a.push((attr::PROCESS_EXECUTABLE_PATH, exe.into()));
        }
        a.push((attr::CGROUP_ID, p.cgroup_id.into()));
        // The cgroup the programs judged `target: container` by, named by
        // the same rule (`collector_common::container`).
        let container = self.containers.lookup(p.cgroup_id, p.pid);
        a.push((attr::PROCESS_IN_CONTAINER, container.is_some().into()));
        if let Some(c) = container {
            a.push((attr::CONTAINER_ID, c.container_id.clone().into()));
            if let Some(runtime) = c.runtime {
                a.push((attr::CONTAINER_RUNTIME_NAME, runtime.into()));
            }
            if let Some(uid) = &c.pod_uid {
                a.push((attr::K8S_POD_UID, uid.clone().into()));
            }
            if let Some(image) = &c.image {
                a.push((attr::CONTAINER_IMAGE_NAME, image.clone().into()));
            }
        }
        a.push((attr::HOST_NAME, self.host_name.clone().into()));
        a
    }
}

/// The rule behind a denial, as the operator wrote it.
fn rule_attributes(a: &mut Attributes, module: &ModulePolicy, h: &Header) {
    if h.decision == Decision::Allowed {
        return;
    }
    match module.rules.get(h.rule_id) {
        _ if [
            RULE_PATH_UNRESOLVED,
            RULE_MEMFD_EXEC,
            RULE_RAW_SOCKET,
            RULE_LIST_TOO_LONG,
        ]
        .contains(&h.rule_id) =>
        {
            let name = match h.rule_id {
                RULE_MEMFD_EXEC => semconv::rule::MEMFD_EXEC,
                RULE_RAW_SOCKET => semconv::rule::RAW_SOCKET,
                RULE_LIST_TOO_LONG => semconv::rule::ADDRESS_LIST_TOO_LONG,
                _ => semconv::rule::PATH_UNRESOLVED,
            };
            a.push((attr::SECURITY_RULE_NAME, name.into()));
            a.push((attr::SECURITY_RULE_RULESET_NAME, module.name.into()));
        }
        Some(rule) => {
            a.push((attr::SECURITY_RULE_NAME, rule.name.clone().into()));
            a.push((attr::SECURITY_RULE_RULESET_NAME, rule.ruleset.into()));
        }
        None => {
            a.push((
                attr::SECURITY_RULE_NAME,
                semconv::rule::WHITELIST_DEFAULT.into(),
            ));
            a.push((
                attr::SECURITY_RULE_RULESET_NAME,
                module.allow_ruleset.into(),
            ));
        }
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allowed => semconv::decision::ALLOWED,
        Decision::Blocked => semconv::decision::BLOCKED,
        Decision::WouldBlock => semconv::decision::WOULD_BLOCK,
    }
}

fn severity(d: Decision) -> Severity {
    match d {
        Decision::Allowed => Severity::Info,
        Decision::WouldBlock => Severity::Warning,
        Decision::Blocked => Severity::Error,
    }
}

/// How a file was opened, from the open flags (and `f_mode` where known).
pub fn open_mode(flags: u32, fmode: u32) -> Vec<&'static str> {
    use semconv::open_mode::*;
    const FMODE_EXEC: u32 = 0x20;
    const O_FMODE_EXEC: u32 = 0x20; // __FMODE_EXEC in f_flags
    let flags = flags as i32;
    let mut mode = Vec::with_capacity(3);
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => mode.push(READ),
        libc::O_WRONLY => mode.push(WRITE),
        _ => mode.extend([READ, WRITE]),
    }
    if flags & libc::O_CREAT != 0 {
        mode.push(CREATE);
    }
    if flags & libc::O_TRUNC != 0 {
        mode.push(TRUNCATE);
    }
    if flags & libc::O_APPEND != 0 {
        mode.push(APPEND);
    }
    if fmode & FMODE_EXEC != 0 || (flags as u32) & O_FMODE_EXEC != 0 {
        mode.push(EXEC);
    }
    mode
}

/// The protection bits of a mapping, as words.
fn mmap_prot(prot: u32) -> Vec<&'static str> {
    use semconv::mmap_prot::*;
    let prot = prot as i32;
    [
        (libc::PROT_READ, READ),
        (libc::PROT_WRITE, WRITE),
        (libc::PROT_EXEC, EXEC),
    ]
    .into_iter()
    .filter(|(bit, _)| prot & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// Joins a relative path to the directory it was relative to: `base`, as
/// the kernel saw it during the call, or else read from /proc now (which
/// fails once the process is gone, and may have changed since). Normalised
/// lexically: `..` is applied to the text, as the caller wrote it.
fn resolve_relative(base: Option<String>, pid: u32, dfd: i32, path: &str) -> Option<String> {
    let base = match base {
        Some(base) => PathBuf::from(base),
        None if dfd == AT_FDCWD => std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?,
        None => std::fs::read_link(format!("/proc/{pid}/fd/{dfd}")).ok()?,
    };
    Some(normalize(&base.join(path)))
}

fn normalize(path: &Path) -> String {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
struct BootClock {
    /// Wall-clock time at boot.
    boot: SystemTime,
}

impl BootClock {
    fn now() -> Self {
        let boot_now = clock_ns(libc::CLOCK_BOOTTIME);
        let wall_now = SystemTime::now();
        Self {
            boot: wall_now - Duration::from_nanos(boot_now),
        }
    }

    fn wall_time(&self, boot_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(boot_ns)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enricher() -> Enricher {
        let config = crate::config::load(&Default::default()).unwrap();
        Enricher::new(
            Arc::new(Policy::compile(&config)),
            Arc::new(Registry::default()),
        )
    }

    fn header(hook: collector_common::Hook, decision: Decision) -> Header {
        Header {
            seq: 1,
            boot_ns: 0,
            hook,
            decision,
            mode: MODE_BLOCK,
            rule_id: 0,
        }
    }

    /// This test process, under a task name other than its executable's.
    fn process() -> Process {
        let pid = std::process::id();
        Process {
            tid: pid + 1,
            pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            euid: 0,
            cgroup_id: 1,
            comm: "renamed".into(),
        }
    }

    #[test]
    fn comm_and_tid_have_keys_of_their_own_and_the_executable_name_is_the_paths() {
        let e = enricher().exec(Exec {
            header: header(collector_common::Hook::LsmBprmCheck, Decision::Allowed),
            process: process(),
            path: "/bin/busybox".into(),
            args: vec!["cat".into()],
            path_truncated: false,
            args_truncated: false,
            mapping: false,
        });
        assert_eq!(e.str(attr::PROCESS_COMM), Some("renamed"));
        assert_eq!(e.str(attr::PROCESS_EXECUTABLE_PATH), Some("/bin/busybox"));
        assert_eq!(e.str(attr::PROCESS_EXECUTABLE_NAME), Some("busybox"));
        assert_eq!(e.int(attr::THREAD_TID), Some(i64::from(process().tid)));
        assert!(e.get("thread.id").is_none());
    }

    #[test]
    fn a_chmod_and_a_chown_report_what_they_asked_for() {
        let enricher = enricher();
        let file = |op, arg| File {
            header: header(collector_common::Hook::LsmPathChmod, Decision::Blocked),
            process: process(),
            op,
            open_flags: 0,
            fmode: 0,
            dfd: AT_FDCWD,
            arg,
            path: "/srv/x".into(),
            path2: None,
            relative: false,
            base: None,
            truncated: false,
        };
        let chmod = enricher.file(file(FileOp::Chmod, 0o100640)).unwrap();
        assert_eq!(chmod.str(attr::FILE_REQUESTED_MODE), Some("0640"));
        // The owner left unchanged (-1) is not reported.
        let chown = enricher
            .file(file(FileOp::Chown, (1000u64 << 32) | u64::from(u32::MAX)))
            .unwrap();
        assert_eq!(chown.get(attr::FILE_REQUESTED_OWNER_ID), None);
        assert_eq!(chown.str(attr::FILE_REQUESTED_GROUP_ID), Some("1000"));
        for e in [&chmod, &chown] {
            for key in ["file.mode", "file.owner.id", "file.group.id"] {
                assert!(e.get(key).is_none(), "{key}");
            }
        }
        // The executable's name, where known, is the base name of its path.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let name = exe.file_name().unwrap().to_string_lossy();
        assert_eq!(chmod.str(attr::PROCESS_EXECUTABLE_NAME), Some(&*name));
    }

    #[test]
    fn network_events_carry_the_logical_direction() {
        let enricher = enricher();
        let net = |op| Net {
            header: header(collector_common::Hook::LsmSocketConnect, Decision::Allowed),
            process: process(),
            op,
            protocol: IPPROTO_TCP,
            local: "10.0.0.1:40000".parse().unwrap(),
            peer: "10.0.0.2:443".parse().unwrap(),
            socket: None,
        };
        for (op, direction) in [
            (NetOp::Connect, semconv::net::OUTBOUND),
            (NetOp::Bind, semconv::net::OUTBOUND),
            (NetOp::Accept, semconv::net::INBOUND),
        ] {
            let e = enricher.enrich(Event::Net(net(op))).unwrap();
            assert_eq!(e.str(attr::NETWORK_DIRECTION), Some(direction), "{op:?}");
            assert!(e.get("network.io.direction").is_none(), "{op:?}");
        }
    }

    #[test]
    fn open_modes_follow_the_flags() {
        use semconv::open_mode::*;
        assert_eq!(open_mode(libc::O_RDONLY as u32, 0), vec![READ]);
        assert_eq!(
            open_mode((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32, 0),
            vec![WRITE, CREATE, TRUNCATE]
        );
        assert_eq!(
            open_mode((libc::O_RDWR | libc::O_APPEND) as u32, 0),
            vec![READ, WRITE, APPEND]
        );
        assert_eq!(open_mode(0x20, 0), vec![READ, EXEC]);
    }

    #[test]
    fn mmap_protection_in_words() {
        assert_eq!(
            mmap_prot((libc::PROT_READ | libc::PROT_EXEC) as u32),
            ["read", "exec"]
        );
        assert!(mmap_prot(0).is_empty());
    }

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), "/a/c/d");
        assert_eq!(normalize(Path::new("/../x")), "/x");
    }

    #[test]
    fn resolves_against_the_process_working_directory() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        let got = resolve_relative(None, me, AT_FDCWD, "sub/../file").unwrap();
        assert_eq!(got, cwd.join("file").to_string_lossy());
    }

    #[test]
    fn the_kernels_base_directory_comes_before_proc() {
        let got = resolve_relative(Some("/srv/app".into()), u32::MAX, AT_FDCWD, "../etc/x");
        assert_eq!(got.as_deref(), Some("/srv/etc/x"));
        // Without it, a process that is gone leaves the path unresolved.
        assert_eq!(resolve_relative(None, u32::MAX, AT_FDCWD, "x"), None);
    }

    #[test]
    fn boot_clock_maps_now_to_now() {
        let clock = BootClock::now();
        let now = clock.wall_time(clock_ns(libc::CLOCK_BOOTTIME));
        let skew = SystemTime::now().duration_since(now).unwrap_or_default();
        assert!(skew < Duration::from_secs(5), "{skew:?}");
    }
}
