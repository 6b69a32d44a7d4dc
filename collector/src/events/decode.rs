//! Ring-buffer bytes → typed events. The record layouts are
//! `collector_common`'s; anything that does not fit them is an error that
//! names what was wrong, never a guess.

use collector_common::{
    Decision, EventHeader, EventKind, Hook, PATH_RELATIVE, PATH_TRUNCATED, ProcessInfo,
    file::{FileEvent, FileOp},
    guard::{TamperAction, TamperEvent},
    mount::{MountEvent, MountOp},
    net::{NetEvent, NetOp},
    process::{ARGS_TRUNCATED, CgroupEvent, EXEC_MAPPING, ExecEvent, ExitEvent, ForkEvent},
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("{kind} record of {len} bytes is shorter than its {need} fixed bytes")]
    Truncated {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown hook {0}")]
    UnknownHook(u8),
    #[error("unknown decision {0}")]
    UnknownDecision(u8),
    #[error("unknown {what} {value}")]
    UnknownValue { what: &'static str, value: u8 },
    #[error("{what} length {len} exceeds the {available} bytes left in the record")]
    Length {
        what: &'static str,
        len: usize,
        available: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub boot_ns: u64,
    pub hook: Hook,
    pub decision: Decision,
    /// `MODE_MONITOR` or `MODE_BLOCK`.
    pub mode: u8,
    pub rule_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub tid: u32,
    pub pid: u32,
    pub ppid: u32,
    /// Real user and group id.
    pub uid: u32,
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub header: Header,
    pub process: Process,
    pub op: FileOp,
    pub open_flags: u32,
    pub fmode: u32,
    pub dfd: i32,
    pub arg: u64,
    pub path: String,
    /// The target of a rename.
    pub path2: Option<String>,
    /// The path is relative to `dfd` (audit tier).
    pub relative: bool,
    /// For a relative path, the directory it starts from, as the kernel
    /// saw it during the call; `None` where it could not tell.
    pub base: Option<String>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub header: Header,
    pub process: Process,
    pub path: String,
    pub args: Vec<String>,
    pub path_truncated: bool,
    pub args_truncated: bool,
    /// Not an exec: an executable mapping of the file at `path` (a
    /// dynamic loader running it), judged by the exec rules; the process
    /// runs on as it was.
    pub mapping: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    pub header: Header,
    /// The parent.
    pub process: Process,
    pub child_pid: u32,
    pub child_tid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub header: Header,
    pub process: Process,
    /// As `wait(2)` reports it: status in bits 8-15, signal in bits 0-6.
    pub exit_code: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub header: Header,
    pub process: Process,
    pub op: MountOp,
    pub flags: u64,
    pub fstype: String,
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    pub header: Header,
    pub process: Process,
    pub op: NetOp,
    /// `IPPROTO_*`, 0 when unknown.
    pub protocol: u8,
    pub local: std::net::SocketAddr,
    pub peer: std::net::SocketAddr,
    /// A socket made ([`NetOp::Socket`], whose addresses are unspecified):
    /// its `(family, type, protocol)`.
    pub socket: Option<(u16, u16, u16)>,
}

/// A refused attempt on the agent itself (`kernel.protect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub header: Header,
    /// Who tried.
    pub process: Process,
    pub action: TamperAction,
    /// The signal, resource, ptrace access mode, or map or program id.
    pub detail: u32,
    pub agent_pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Tamper(Tamper),
    Net(Net),
    File(File),
    Exec(Exec),
    Fork(Fork),
    Exit(Exit),
    Mount(Mount),
    Cgroup(Cgroup),
}

/// A cgroup v2 directory made: what names the containers of later events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    /// Its path below the hierarchy's root; `None` when too long for the
    /// record (it is then found by id, while it exists).
    pub path: Option<String>,
    /// A container's cgroup that `CONTAINER_CGROUPS` had no room for: its
    /// tasks are not in a container for `target: container`.
    pub untracked: bool,
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    match EventKind::from_u8(bytes[0]) {
        Some(EventKind::File) => file(bytes).map(Event::File),
        Some(EventKind::Exec) => exec(bytes).map(Event::Exec),
        Some(EventKind::Fork) => fork(bytes).map(Event::Fork),
        Some(EventKind::Exit) => exit(bytes).map(Event::Exit),
        Some(EventKind::Mount) => mount(bytes).map(Event::Mount),
        Some(EventKind::Net) => net(bytes).map(Event::Net),
        Some(EventKind::Tamper) => tamper(bytes).map(Event::Tamper),
        Some(EventKind::Cgroup) => cgroup(bytes).map(Event::Cgroup),
        None => Err(DecodeError::UnknownKind(bytes[0])),
    }
}

/// Marker for the `#[repr(C)]` plain-old-data records of `collector_common`.
trait KernelRecord: Copy {
    const KIND: &'static str;
}
impl KernelRecord for FileEvent {
    const KIND: &'static str = "file";
}
impl KernelRecord for ExecEvent {
    const KIND: &'static str = "exec";
}
impl KernelRecord for ForkEvent {
    const KIND: &'static str = "fork";
}
impl KernelRecord for ExitEvent {
    const KIND: &'static str = "exit";
}
impl KernelRecord for MountEvent {
    const KIND: &'static str = "mount";
}
impl KernelRecord for CgroupEvent {
    const KIND: &'static str = "cgroup";
}
impl KernelRecord for NetEvent {
    const KIND: &'static str = "network";
}
impl KernelRecord for TamperEvent {
    const KIND: &'static str = "tamper";
}

/// The fixed part of a record and the bytes after it.
fn fixed<T: KernelRecord>(bytes: &[u8]) -> Result<(T, Tail<'_>), DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            kind: T::KIND,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; `T` is plain old data (every bit
    // pattern is valid) and the read tolerates any alignment.
    let value = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) };
    Ok((value, Tail(&bytes[need..])))
}

/// The variable-length part of a record, taken piece by piece.
struct Tail<'a>(&'a [u8]);

impl<'a> Tail<'a> {
    fn take(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.0.len() {
            return Err(DecodeError::Length {
                what,
                len,
                available: self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self, what: &'static str, len: usize) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.take(what, len)?).into_owned())
    }
}

fn header(h: &EventHeader) -> Result<Header, DecodeError> {
    Ok(Header {
        seq: h.seq,
        boot_ns: h.boot_ns,
        hook: Hook::from_u8(h.hook).ok_or(DecodeError::UnknownHook(h.hook))?,
        decision: Decision::from_u8(h.decision).ok_or(DecodeError::UnknownDecision(h.decision))?,
        mode: h.mode,
        rule_id: h.rule_id,
    })
}

fn process(p: &ProcessInfo) -> Process {
    Process {
        tid: p.tid,
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        euid: p.euid,
        cgroup_id: p.cgroup_id,
        comm: c_string(&p.comm),
    }
}

/// A NUL-padded byte array as a string.
fn c_string(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

fn file(bytes: &[u8]) -> Result<File, DecodeError> {
    let (raw, mut tail) = fixed::<FileEvent>(bytes)?;
    let op = FileOp::from_u8(raw.op).ok_or(DecodeError::UnknownValue {
        what: "file operation",
        value: raw.op,
    })?;
    let path = tail.string("path", usize::from(raw.path_len))?;
    let mut path2 = match raw.path2_len {
        0 => None,
        n => Some(tail.string("second path", usize::from(n))?),
    };
    let relative = raw.path_flags & PATH_RELATIVE != 0;
    let base = if relative { path2.take() } else { None };
    Ok(File {
        header: header(&raw.header)?,
        process: process(&raw.process),
        op,
        open_flags: raw.open_flags,
        fmode: raw.fmode,
        dfd: raw.dfd,
        arg: raw.arg,
        path,
        path2,
        relative,
        base,
        truncated: raw.path_flags & PATH_TRUNCATED != 0,
    })
}

fn exec(bytes: &[u8]) -> Result<Exec, DecodeError> {
    let (raw, mut tail) = fixed::<ExecEvent>(bytes)?;
    let path = tail.string("path", usize::from(raw.path_len))?;
    let args = tail.take("arguments", usize::from(raw.args_len))?;
    let args = args
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Ok(Exec {
        header: header(&raw.header)?,
        process: process(&raw.process),
        path,
        args,
        path_truncated: raw.flags & PATH_TRUNCATED != 0,
        args_truncated: raw.flags & ARGS_TRUNCATED != 0,
        mapping: raw.flags & EXEC_MAPPING != 0,
    })
}

fn fork(bytes: &[u8]) -> Result<Fork, DecodeError> {
    let (raw, _) = fixed::<ForkEvent>(bytes)?;
    Ok(Fork {
        header: header(&raw.header)?,
        process: process(&raw.process),
        child_pid: raw.child_pid,
        child_tid: raw.child_tid,
    })
}

fn exit(bytes: &[u8]) -> Result<Exit, DecodeError> {
    let (raw, _) = fixed::<ExitEvent>(bytes)?;
    Ok(Exit {
        header: header(&raw.header)?,
        process: process(&raw.process),
        exit_code: raw.exit_code,
    })
}

fn cgroup(bytes: &[u8]) -> Result<Cgroup, DecodeError> {
    let (raw, _) = fixed::<CgroupEvent>(bytes)?;
    let len = raw.path_len as usize;
    let path = (len < raw.path.len())
        .then(|| String::from_utf8_lossy(&raw.path[..len]).into_owned())
        .filter(|p| p.starts_with('/'));
    Ok(Cgroup {
        id: raw.id,
        path,
        untracked: raw.container == collector_common::process::CGROUP_CONTAINER_UNTRACKED,
    })
}

fn tamper(bytes: &[u8]) -> Result<Tamper, DecodeError> {
    let (raw, _) = fixed::<TamperEvent>(bytes)?;
    Ok(Tamper {
        header: header(&raw.header)?,
        process: process(&raw.process),
        action: TamperAction::from_u8(raw.action).ok_or(DecodeError::UnknownValue {
            what: "tamper action",
            value: raw.action,
        })?,
        detail: raw.detail,
        agent_pid: raw.agent_pid,
    })
}

fn mount(bytes: &[u8]) -> Result<Mount, DecodeError> {
    let (raw, mut tail) = fixed::<MountEvent>(bytes)?;
    let op = MountOp::from_u8(raw.op).ok_or(DecodeError::UnknownValue {
        what: "mount operation",
        value: raw.op,
    })?;
    Ok(Mount {
        header: header(&raw.header)?,
        process: process(&raw.process),
        op,
        flags: raw.flags,
        fstype: c_string(&raw.fstype),
        source: tail.string("source", usize::from(raw.source_len))?,
        target: tail.string("target", usize::from(raw.target_len))?,
    })
}

fn net(bytes: &[u8]) -> Result<Net, DecodeError> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let (raw, _) = fixed::<NetEvent>(bytes)?;
    let op = NetOp::from_u8(raw.op).ok_or(DecodeError::UnknownValue {
        what: "network operation",
        value: raw.op,
    })?;
    let ip = |a: [u8; 16]| -> Result<IpAddr, DecodeError> {
        match raw.family {
            collector_common::net::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            collector_common::net::AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(a))),
            other => Err(DecodeError::UnknownValue {
                what: "address family",
                value: other as u8,
            }),
        }
    };
    if op == NetOp::Socket {
        let none = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        return Ok(Net {
            header: header(&raw.header)?,
            process: process(&raw.process),
            op,
            protocol: raw.protocol,
            local: none,
            peer: none,
            socket: Some((raw.family, raw.local_port, raw.peer_port)),
        });
    }
    Ok(Net {
        header: header(&raw.header)?,
        process: process(&raw.process),
        op,
        protocol: raw.protocol,
        local: SocketAddr::new(ip(raw.local_addr)?, raw.local_port),
        peer: SocketAddr::new(ip(raw.peer_addr)?, raw.peer_port),
        socket: None,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use collector_common::{COMM_LEN, MODE_BLOCK};

    use super::*;

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: viewing a plain old data struct as bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn head(kind: EventKind, hook: Hook) -> EventHeader {
        EventHeader {
            kind: kind as u8,
            hook: hook as u8,
            decision: Decision::Blocked as u8,
            mode: MODE_BLOCK,
            rule_id: 3,
            seq: 42,
            boot_ns: 1_000,
        }
    }

    fn proc_info() -> ProcessInfo {
        let mut comm = [0u8; COMM_LEN];
        comm[..3].copy_from_slice(b"cat");
        ProcessInfo {
            tid: 11,
            pid: 10,
            ppid: 1,
            uid: 1000,
            gid: 100,
            euid: 0,
            _pad: [0; 2],
            cgroup_id: 77,
            comm,
        }
    }

    #[test]
    fn a_socket_made_has_its_family_type_and_protocol_and_no_addresses() {
        let ev = NetEvent {
            header: head(EventKind::Net, Hook::LsmSocketCreate),
            process: proc_info(),
            op: NetOp::Socket as u8,
            protocol: 0x03,
            family: collector_common::net::AF_PACKET,
            local_port: collector_common::net::SOCK_RAW,
            peer_port: 0x0300,
            ..Default::default()
        };
        let Ok(Event::Net(net)) = decode(&as_bytes(&ev)) else {
            panic!("not a network event");
        };
        assert_eq!(net.op, NetOp::Socket);
        assert_eq!(net.socket, Some((17, 3, 0x0300)));
        assert!(net.peer.ip().is_unspecified() && net.local.ip().is_unspecified());
        // Another operation with a family that has no addresses is malformed.
        let bad = NetEvent {
            op: NetOp::Connect as u8,
            ..ev
        };
        assert!(decode(&as_bytes(&bad)).is_err());
    }

    #[test]
    fn a_cgroup_made_is_its_id_and_path_and_a_cut_path_is_none() {
        let path = b"/machine.slice/libpod-abc.scope";
        let mut ev = CgroupEvent {
            header: head(EventKind::Cgroup, Hook::TpCgroupMkdir),
            id: 4242,
            path_len: path.len() as u32,
            ..Default::default()
        };
        ev.path[..path.len()].copy_from_slice(path);
        assert_eq!(
            decode(&as_bytes(&ev)),
            Ok(Event::Cgroup(Cgroup {
                id: 4242,
                path: Some("/machine.slice/libpod-abc.scope".into()),
                untracked: false,
            }))
        );
        ev.path_len = ev.path.len() as u32;
        ev.container = collector_common::process::CGROUP_CONTAINER_UNTRACKED;
        assert_eq!(
            decode(&as_bytes(&ev)),
            Ok(Event::Cgroup(Cgroup {
                id: 4242,
                path: None,
                untracked: true,
            }))
        );
    }

    #[test]
    fn a_refused_signal_to_the_agent_names_who_sent_it_and_the_signal() {
        let ev = TamperEvent {
            header: head(EventKind::Tamper, Hook::LsmTaskKill),
            process: proc_info(),
            action: TamperAction::Signal as u8,
            detail: 9,
            agent_pid: 500,
            ..Default::default()
        };
        let Ok(Event::Tamper(t)) = decode(&as_bytes(&ev)) else {
            panic!("not a tamper event");
        };
        assert_eq!(t.action, TamperAction::Signal);
        assert_eq!((t.detail, t.agent_pid), (9, 500));
        assert_eq!(t.process.pid, 10);
        assert_eq!(t.header.hook, Hook::LsmTaskKill);
        // An action this build does not know is malformed, and a short
        // record too.
        let unknown = TamperEvent { action: 200, ..ev };
        assert!(decode(&as_bytes(&unknown)).is_err());
        assert!(decode(&as_bytes(&ev)[..size_of::<TamperEvent>() - 1]).is_err());
    }

    fn file_record(op: FileOp, path: &[u8], path2: &[u8], path_len: u16) -> Vec<u8> {
        let ev = FileEvent {
            header: head(EventKind::File, Hook::LsmFileOpen),
            process: proc_info(),
            op: op as u8,
            open_flags: 0o100,
            dfd: -100,
            path_len,
            path2_len: path2.len() as u16,
            ..Default::default()
        };
        let mut bytes = as_bytes(&ev);
        bytes.extend_from_slice(path);
        bytes.extend_from_slice(path2);
        bytes
    }

    #[test]
    fn decodes_a_file_record() {
        let Ok(Event::File(ev)) = decode(&file_record(FileOp::Open, b"/etc/secret/x", b"", 13))
        else {
            panic!("not a file event");
        };
        assert_eq!(ev.path, "/etc/secret/x");
        assert_eq!(ev.path2, None);
        assert_eq!(ev.op, FileOp::Open);
        assert_eq!(ev.header.seq, 42);
        assert_eq!(ev.header.decision, Decision::Blocked);
        assert_eq!(ev.header.rule_id, 3);
        assert_eq!(ev.process.comm, "cat");
        assert_eq!(
            (ev.process.pid, ev.process.tid, ev.process.ppid),
            (10, 11, 1)
        );
        assert_eq!((ev.process.uid, ev.process.gid), (1000, 100));
        assert_eq!(ev.process.euid, 0, "a setuid-root program run by uid 1000");
    }

    #[test]
    fn decodes_both_paths_of_a_rename() {
        let Ok(Event::File(ev)) = decode(&file_record(FileOp::Rename, b"/a/x", b"/b/y", 4)) else {
            panic!("not a file event");
        };
        assert_eq!(ev.path, "/a/x");
        assert_eq!(ev.path2.as_deref(), Some("/b/y"));
    }

    #[test]
    fn the_second_path_of_a_relative_open_is_its_base_directory() {
        let mut bytes = file_record(FileOp::Open, b"sub/x", b"/home/me", 5);
        bytes[offset_of!(FileEvent, path_flags)] = PATH_RELATIVE;
        let Ok(Event::File(ev)) = decode(&bytes) else {
            panic!("not a file event");
        };
        assert!(ev.relative);
        assert_eq!(ev.path, "sub/x");
        assert_eq!(ev.base.as_deref(), Some("/home/me"));
        assert_eq!(ev.path2, None);
    }

    #[test]
    fn decodes_exec_arguments() {
        let ev = ExecEvent {
            header: head(EventKind::Exec, Hook::LsmBprmCheck),
            process: proc_info(),
            path_len: 12,
            args_len: 14,
            ..Default::default()
        };
        let mut bytes = as_bytes(&ev);
        bytes.extend_from_slice(b"/bin/busyboxcat\0-n\0/etc/x\0");
        let Ok(Event::Exec(ev)) = decode(&bytes) else {
            panic!("not an exec event");
        };
        assert_eq!(ev.path, "/bin/busybox");
        assert_eq!(ev.args, ["cat", "-n", "/etc/x"]);
        assert!(!ev.mapping);
    }

    #[test]
    fn an_executable_mapping_is_told_from_an_exec() {
        let ev = ExecEvent {
            header: head(EventKind::Exec, Hook::LsmExecMmap),
            process: proc_info(),
            path_len: 13,
            flags: EXEC_MAPPING,
            ..Default::default()
        };
        let mut bytes = as_bytes(&ev);
        bytes.extend_from_slice(b"/srv/bin/tool");
        let Ok(Event::Exec(ev)) = decode(&bytes) else {
            panic!("not an exec record");
        };
        assert!(ev.mapping && !ev.path_truncated);
        assert_eq!(ev.path, "/srv/bin/tool");
        assert_eq!(ev.header.hook, Hook::LsmExecMmap);
        assert_eq!(ev.header.hook.name(), "lsm/mmap_file");
        assert_eq!(ev.header.hook.program(), "exec_mmap_file");
    }

    #[test]
    fn rejects_malformed_records_with_a_reason() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
        let mut bad_kind = file_record(FileOp::Open, b"/x", b"", 2);
        bad_kind[0] = 99;
        assert_eq!(decode(&bad_kind), Err(DecodeError::UnknownKind(99)));
        let full = file_record(FileOp::Open, b"/x", b"", 2);
        assert!(matches!(
            decode(&full[..40]),
            Err(DecodeError::Truncated { len: 40, .. })
        ));
        assert_eq!(
            decode(&file_record(FileOp::Open, b"/x", b"", 200)),
            Err(DecodeError::Length {
                what: "path",
                len: 200,
                available: 2
            })
        );
        let mut bad_decision = file_record(FileOp::Open, b"/x", b"", 2);
        bad_decision[2] = 9;
        assert_eq!(decode(&bad_decision), Err(DecodeError::UnknownDecision(9)));
        let mut bad_op = file_record(FileOp::Open, b"/x", b"", 2);
        bad_op[80] = 200;
        assert_eq!(
            decode(&bad_op),
            Err(DecodeError::UnknownValue {
                what: "file operation",
                value: 200
            })
        );
    }
}
