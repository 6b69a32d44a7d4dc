//! The kernel/userspace ABI of safeguard, spelled once.
//!
//! Every record the eBPF programs write into the ring buffer starts with an
//! [`EventHeader`] whose first byte is the record's [`EventKind`]; the agent's
//! decoder dispatches on it. Map keys and values are defined here as well, so
//! both sides agree on sizes and layouts. `const` assertions fail the build
//! if a layout drifts.
#![no_std]

pub mod container;
pub mod file;
pub mod guard;
pub mod mount;
pub mod names;
pub mod net;
pub mod policy;
pub mod process;
pub mod rows;

pub use names::{globals, maps, offsets};
pub use policy::*;

/// Length of `task_struct::comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;
/// Largest path the kernel hands out (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// `AT_FDCWD`: a path relative to the current directory.
pub const AT_FDCWD: i32 = -100;

/// What a ring-buffer record is. The first byte of every record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`file::FileEvent`].
    File = 1,
    /// [`process::ExecEvent`].
    Exec = 2,
    /// [`process::ForkEvent`].
    Fork = 3,
    /// [`process::ExitEvent`].
    Exit = 4,
    /// [`mount::MountEvent`].
    Mount = 5,
    /// [`net::NetEvent`].
    Net = 6,
    /// [`guard::TamperEvent`].
    Tamper = 7,
    /// [`process::CgroupEvent`].
    Cgroup = 8,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::File),
            2 => Some(Self::Exec),
            3 => Some(Self::Fork),
            4 => Some(Self::Exit),
            5 => Some(Self::Mount),
            6 => Some(Self::Net),
            7 => Some(Self::Tamper),
            8 => Some(Self::Cgroup),
            _ => None,
        }
    }
}

macro_rules! hooks {
    ($( $(#[$doc:meta])* $variant:ident = $n:literal => $name:literal, $enforcing:literal; )*) => {
        /// The program that produced a record; also the index of its drop
        /// counter.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Hook {
            $( $(#[$doc])* $variant = $n, )*
        }

        impl Hook {
            /// Every hook, in index order.
            pub const ALL: &'static [Hook] = &[$(Hook::$variant),*];

            /// Where the program attaches, as reported in events.
            pub const fn name(self) -> &'static str {
                match self { $(Hook::$variant => $name,)* }
            }

            /// Whether the hook can refuse the operation (BPF-LSM) or only
            /// see it (the audit tier).
            pub const fn enforcing(self) -> bool {
                match self { $(Hook::$variant => $enforcing,)* }
            }

            pub const fn from_u8(v: u8) -> Option<Self> {
                match v { $($n => Some(Hook::$variant),)* _ => None }
            }
        }
    };
}

hooks! {
    LsmFileOpen = 0 => "lsm/file_open", true;
    TpOpenat = 1 => "tracepoint/syscalls/sys_enter_openat", false;
    TpOpenat2 = 2 => "tracepoint/syscalls/sys_enter_openat2", false;
    TpOpen = 3 => "tracepoint/syscalls/sys_enter_open", false;
    LsmPathUnlink = 4 => "lsm/path_unlink", true;
    LsmPathRmdir = 5 => "lsm/path_rmdir", true;
    LsmPathRename = 6 => "lsm/path_rename", true;
    LsmPathTruncate = 7 => "lsm/path_truncate", true;
    LsmPathChmod = 8 => "lsm/path_chmod", true;
    LsmPathChown = 9 => "lsm/path_chown", true;
    LsmMmapFile = 10 => "lsm/mmap_file", true;
    LsmFileIoctl = 11 => "lsm/file_ioctl", true;
    LsmBprmCheck = 12 => "lsm/bprm_check_security", true;
    TpSchedFork = 13 => "raw_tracepoint/sched_process_fork", false;
    TpSchedExec = 14 => "raw_tracepoint/sched_process_exec", false;
    TpSchedExit = 15 => "raw_tracepoint/sched_process_exit", false;
    LsmSbMount = 16 => "lsm/sb_mount", true;
    LsmMoveMount = 17 => "lsm/move_mount", true;
    LsmSocketConnect = 18 => "lsm/socket_connect", true;
    LsmSocketSendmsg = 19 => "lsm/socket_sendmsg", true;
    LsmSocketRecvmsg = 20 => "lsm/socket_recvmsg", true;
    LsmSocketGetpeername = 21 => "lsm/socket_getpeername", true;
    LsmSocketBind = 22 => "lsm/socket_bind", true;
    LsmInetConnRequest = 23 => "lsm/inet_conn_request", true;
    CgroupConnect4 = 24 => "cgroup/connect4", true;
    CgroupConnect6 = 25 => "cgroup/connect6", true;
    CgroupSendmsg4 = 26 => "cgroup/sendmsg4", true;
    CgroupSendmsg6 = 27 => "cgroup/sendmsg6", true;
    CgroupRecvmsg4 = 28 => "cgroup/recvmsg4", false;
    CgroupRecvmsg6 = 29 => "cgroup/recvmsg6", false;
    CgroupGetpeername4 = 30 => "cgroup/getpeername4", false;
    CgroupGetpeername6 = 31 => "cgroup/getpeername6", false;
    LsmSockRcvSkb = 32 => "lsm/socket_sock_rcv_skb", true;
    LsmPathLink = 33 => "lsm/path_link", true;
    LsmPathSymlink = 34 => "lsm/path_symlink", true;
    LsmPathMkdir = 35 => "lsm/path_mkdir", true;
    LsmPathMknod = 36 => "lsm/path_mknod", true;
    LsmFileReceive = 37 => "lsm/file_receive", true;
    LsmSocketCreate = 38 => "lsm/socket_create", true;
    LsmTaskKill = 39 => "lsm/task_kill", true;
    LsmFileSendSigiotask = 40 => "lsm/file_send_sigiotask", true;
    LsmTaskSetrlimit = 41 => "lsm/task_setrlimit", true;
    LsmPtraceAccessCheck = 42 => "lsm/ptrace_access_check", true;
    LsmBpfMap = 43 => "lsm/bpf_map", true;
    LsmBpfProg = 44 => "lsm/bpf_prog", true;
    LsmInodeUnlink = 45 => "lsm/inode_unlink", true;
    LsmInodeRmdir = 46 => "lsm/inode_rmdir", true;
    LsmInodeRename = 47 => "lsm/inode_rename", true;
    /// The process module's program on `mmap_file` (`exec_mmap_file`):
    /// an executable mapping judged by the exec rules.
    LsmExecMmap = 48 => "lsm/mmap_file", true;
    LsmFileMprotect = 49 => "lsm/file_mprotect", true;
    LsmSctpBindConnect = 50 => "lsm/sctp_bind_connect", true;
    /// Each option of a mount as the kernel parses it: `fsconfig(2)`, and
    /// `mount(2)` of a filesystem with a mount context (overlay since 6.5).
    LsmFsContextParseParam = 51 => "lsm/fs_context_parse_param", true;
    /// The whole option string of a `mount(2)` of a filesystem without a
    /// mount context (overlay before 6.5).
    LsmSbEatLsmOpts = 52 => "lsm/sb_eat_lsm_opts", true;
    /// A cgroup v2 directory made: its id and path, so that a container's
    /// events are named after it even once its cgroup is gone.
    TpCgroupMkdir = 53 => "raw_tracepoint/cgroup_mkdir", false;
    /// A 32-bit program's ioctl, on kernels that have this hook (6.8 on,
    /// and the stable kernels it went back to): judged as `file_ioctl`.
    LsmFileIoctlCompat = 54 => "lsm/file_ioctl_compat", true;
}

/// Number of [`Hook`] values: the size of per-hook counter maps.
pub const HOOK_COUNT: u32 = Hook::ALL.len() as u32;

const _: () = {
    let mut i = 0;
    while i < Hook::ALL.len() {
        assert!(
            Hook::ALL[i] as usize == i,
            "hook indices must be 0, 1, 2, ..."
        );
        i += 1;
    }
};

/// What happened to the operation.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let through: matched an allow rule, or reported for audit only
    /// (process life cycle events).
    Allowed = 0,
    /// Refused by the kernel with EPERM.
    Blocked = 1,
    /// The policy denies it, but it went through: monitor mode, or a tier
    /// that can only audit.
    WouldBlock = 2,
}

impl Decision {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Allowed),
            1 => Some(Self::Blocked),
            2 => Some(Self::WouldBlock),
            _ => None,
        }
    }
}

/// Why the kernel lost a record: the index of its counter in `DROPS` is
/// `reason * HOOK_COUNT + hook`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The ring buffer was full.
    RingFull = 0,
    /// Not a blocked operation, and the ring buffer was three quarters
    /// full: the last quarter is kept for blocked operations, so that a
    /// flood of audit records cannot crowd them out.
    ReservedForBlocked = 1,
    /// Not a blocked operation, and its process had already had
    /// `AUDIT_RATE_LIMIT` records for this hook and rule in the current
    /// second (`kernel.audit_rate_limit`).
    Sampled = 2,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::RingFull,
        DropReason::ReservedForBlocked,
        DropReason::Sampled,
    ];

    /// The counter of `hook` for this reason in `DROPS`.
    pub const fn index(self, hook: u32) -> u32 {
        self as u32 * HOOK_COUNT + hook
    }
}

/// Start of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// [`EventKind`].
    pub kind: u8,
    /// [`Hook`].
    pub hook: u8,
    /// [`Decision`].
    pub decision: u8,
    /// [`MODE_MONITOR`] or [`MODE_BLOCK`] at the time of the event.
    pub mode: u8,
    /// Matched rule id, per module (see [`PathRule`]); 0 when no rule
    /// matched (a whitelist's default deny, or an audit-only event).
    pub rule_id: u32,
    /// Monotonic across all hooks and CPUs; a gap means a record was lost.
    pub seq: u64,
    /// `bpf_ktime_get_boot_ns()`: CLOCK_BOOTTIME in nanoseconds.
    pub boot_ns: u64,
}

/// The task that caused an event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessInfo {
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id (differs from `uid` in a setuid program).
    pub euid: u32,
    pub _pad: [u32; 2],
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// Path flag: the path is relative to a directory fd (audit tier only; the
/// record's second path is that directory, and the agent joins the two).
pub const PATH_RELATIVE: u8 = 1;
/// Path flag: the path could not be established whole (longer than
/// PATH_MAX, or a dentry cut off from its mount): what the record holds is
/// its innermost part.
pub const PATH_TRUNCATED: u8 = 2;

/// Rule id of a refusal for want of a whole path: in block mode a file
/// operation whose path cannot be established is refused (fail closed), in
/// monitor mode it is reported as "would block".
pub const RULE_PATH_UNRESOLVED: u32 = u32::MAX;
/// Rule id of a refused exec of a file no directory names
/// (`process.memfd_exec: deny`), reported as
/// `semconv::rule::MEMFD_EXEC`.
pub const RULE_MEMFD_EXEC: u32 = u32::MAX - 2;
/// Rule id of a refused raw or packet socket (`network.raw: deny`),
/// reported as `semconv::rule::RAW_SOCKET`.
pub const RULE_RAW_SOCKET: u32 = u32::MAX - 3;
/// Rule id of a refused list of addresses longer than the program reads
/// (SCTP), reported as `semconv::rule::ADDRESS_LIST_TOO_LONG`.
pub const RULE_LIST_TOO_LONG: u32 = u32::MAX - 4;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<EventHeader>() == 24);
    assert!(offset_of!(EventHeader, kind) == 0);
    assert!(offset_of!(EventHeader, seq) == 8);
    assert!(size_of::<ProcessInfo>() == 56);
    assert!(offset_of!(ProcessInfo, cgroup_id) == 32);
    assert!(offset_of!(ProcessInfo, comm) == 40);
};

/// Key of the `SAMPLING` map: a process, a hook and the rule its records
/// matched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleKey {
    pub tgid: u32,
    pub hook: u32,
    pub rule_id: u32,
    pub _pad: u32,
}

/// Value of the `SAMPLING` map: the records of the current one-second
/// window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleWindow {
    /// `bpf_ktime_get_boot_ns()` when the window opened.
    pub start_ns: u64,
    pub records: u64,
}

const _: () = assert!(core::mem::size_of::<SampleKey>() == 16);
const _: () = assert!(core::mem::size_of::<SampleWindow>() == 16);
