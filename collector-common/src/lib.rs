//! The kernel/userspace ABI of safeguard, spelled once.
//!
//! Every record the eBPF programs write into the ring buffer starts with an
//! [`EventHeader`] whose first byte is the record's [`EventKind`]; the agent's
//! decoder dispatches on it. Map keys and values are defined here as well, so
//! both sides agree on sizes and layouts. The `const` assertions at the bottom
//! fail the build if a layout drifts.
#![no_std]

/// Length of `task_struct::comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;
/// Largest path the kernel hands out (PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Bytes of a path prefix lookup key. The kernel's LPM trie accepts at most
/// 256 bytes of key data; a rule's prefix plus its trailing `/` must fit.
pub const PATH_KEY_LEN: usize = 256;
/// Longest path prefix a file rule may have (the key also holds a trailing `/`).
pub const PATH_RULE_MAX: usize = PATH_KEY_LEN - 1;

/// What a ring-buffer record is. The first byte of every record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    FileOpen = 1,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::FileOpen),
            _ => None,
        }
    }
}

/// The program that produced a record; also the index of its drop counter.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// BPF-LSM `file_open`.
    LsmFileOpen = 0,
    /// Tracepoint `syscalls/sys_enter_openat` (fallback tier).
    TpOpenat = 1,
    /// Tracepoint `syscalls/sys_enter_openat2` (fallback tier).
    TpOpenat2 = 2,
    /// Tracepoint `syscalls/sys_enter_open` (fallback tier).
    TpOpen = 3,
}

/// Number of [`Hook`] values: the size of per-hook counter maps.
pub const HOOK_COUNT: u32 = 4;

impl Hook {
    pub const ALL: [Hook; HOOK_COUNT as usize] = [
        Self::LsmFileOpen,
        Self::TpOpenat,
        Self::TpOpenat2,
        Self::TpOpen,
    ];

    /// Where the program attaches, as reported in events.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LsmFileOpen => "lsm/file_open",
            Self::TpOpenat => "tracepoint/syscalls/sys_enter_openat",
            Self::TpOpenat2 => "tracepoint/syscalls/sys_enter_openat2",
            Self::TpOpen => "tracepoint/syscalls/sys_enter_open",
        }
    }

    /// Whether the hook can refuse the operation (BPF-LSM) or only see it.
    pub const fn enforcing(self) -> bool {
        matches!(self, Self::LsmFileOpen)
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::LsmFileOpen),
            1 => Some(Self::TpOpenat),
            2 => Some(Self::TpOpenat2),
            3 => Some(Self::TpOpen),
            _ => None,
        }
    }
}

/// What happened to the operation.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Matched the policy and was let through.
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

/// Policy modules; index into [`MODULE_CONFIG`](ModuleConfig) maps.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    Files = 0,
}

pub const MODULE_COUNT: u32 = 1;

pub const MODE_MONITOR: u8 = 0;
pub const MODE_BLOCK: u8 = 1;
pub const POLICY_BLACKLIST: u8 = 0;
pub const POLICY_WHITELIST: u8 = 1;

/// Per-module switches, one entry per [`Module`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleConfig {
    /// 0: the module's programs return at once.
    pub enabled: u8,
    /// [`MODE_MONITOR`] or [`MODE_BLOCK`].
    pub mode: u8,
    /// [`POLICY_BLACKLIST`] or [`POLICY_WHITELIST`].
    pub policy: u8,
    pub _pad: [u8; 5],
}

/// Data of a path-prefix LPM trie key: the prefix followed by `/`, so that a
/// rule matches on directory boundaries only (`/etc/secret/` is not a prefix
/// of `/etc/secrets.d/x/`). Lookups use the full path followed by `/`.
pub type PathKey = [u8; PATH_KEY_LEN];

/// Value of a path-prefix LPM trie entry. The policy compiler stores in each
/// entry the nearest deny rule and the nearest allow rule among the entry's
/// own prefix and its ancestors, so the single longest match answers both
/// "is any deny rule a prefix?" and "is any allow rule a prefix?".
/// Rule ids start at 1; 0 means none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRule {
    pub deny_rule: u32,
    pub allow_rule: u32,
}

impl PathRule {
    /// The file policy's answer for a path whose longest matching entry is
    /// `entry`: `Some(rule id)` when the path is denied (rule id 0 for a
    /// whitelist's default deny), `None` when it is allowed. A deny rule wins
    /// over an allow rule, as in safeguard. Both sides use this one function.
    #[inline(always)]
    pub fn denial(entry: Option<&PathRule>, policy: u8) -> Option<u32> {
        let (deny, allow) = match entry {
            Some(r) => (r.deny_rule, r.allow_rule),
            None => (0, 0),
        };
        if deny != 0 {
            Some(deny)
        } else if policy == POLICY_WHITELIST && allow == 0 {
            Some(0)
        } else {
            None
        }
    }
}

/// `AT_FDCWD`: a path relative to the current directory.
pub const AT_FDCWD: i32 = -100;

/// Names of the maps and programs in the eBPF object.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const SEQUENCE: &str = "SEQUENCE";
    pub const DROPS: &str = "DROPS";
    pub const MODULE_CONFIG: &str = "MODULE_CONFIG";
    pub const FILE_RULES: &str = "FILE_RULES";
    /// Capacity of the file rule trie (distinct path prefixes).
    pub const FILE_RULES_MAX: u32 = 65_536;
}

/// Names of the programs in the eBPF object and where they attach.
pub mod programs {
    /// BPF-LSM program on the `file_open` hook.
    pub const LSM_FILE_OPEN: &str = "file_open";
    /// Fallback tier: `(program, tracepoint category, tracepoint name)`.
    pub const OPEN_TRACEPOINTS: [(&str, &str, &str); 3] = [
        ("sys_enter_openat", "syscalls", "sys_enter_openat"),
        ("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
        ("sys_enter_open", "syscalls", "sys_enter_open"),
    ];
}

/// Field offsets in kernel structs, read from the running kernel's BTF by
/// the agent and written into the programs' read-only data before load.
/// The programs cannot use CO-RE relocations (rustc does not emit them).
pub mod offsets {
    /// Names of the globals in the eBPF object.
    pub const FILE_F_PATH: &str = "FILE_F_PATH_OFFSET";
    pub const FILE_F_FLAGS: &str = "FILE_F_FLAGS_OFFSET";
    pub const FILE_F_MODE: &str = "FILE_F_MODE_OFFSET";
    pub const TASK_REAL_PARENT: &str = "TASK_REAL_PARENT_OFFSET";
    pub const TASK_TGID: &str = "TASK_TGID_OFFSET";
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
    /// Matched rule id (see [`PathRule`]); 0 when no rule matched (for
    /// example a whitelist default deny).
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
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// `flags` bit: the path is relative to `dfd` (fallback tier only; the
/// agent resolves it).
pub const PATH_RELATIVE: u8 = 1;
/// `flags` bit: the path did not fit and was cut.
pub const PATH_TRUNCATED: u8 = 2;

/// Fixed part of a file-open record. On the wire it is followed by
/// `path_len` bytes of path (no NUL); the record is no longer than that.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// Open flags (`O_*`, plus `__FMODE_EXEC` for an exec).
    pub open_flags: u32,
    /// `file->f_mode` (LSM tier); 0 on the fallback tier.
    pub fmode: u32,
    /// Directory fd a relative path is resolved against (fallback tier).
    pub dfd: i32,
    /// Bytes of path that follow.
    pub path_len: u16,
    /// [`PATH_RELATIVE`], [`PATH_TRUNCATED`].
    pub path_flags: u8,
    pub _pad: u8,
}

/// Scratch layout the programs fill before copying the used part out.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpenRecord {
    pub event: FileOpenEvent,
    pub path: [u8; PATH_MAX],
}

/// Size of the fixed part of a [`FileOpenEvent`] record.
pub const FILE_OPEN_EVENT_SIZE: usize = core::mem::size_of::<FileOpenEvent>();

// Layout checks: both sides compile these, so a change that moves a field
// breaks the build instead of the decoder.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<EventHeader>() == 24);
    assert!(offset_of!(EventHeader, kind) == 0);
    assert!(offset_of!(EventHeader, seq) == 8);
    assert!(size_of::<ProcessInfo>() == 48);
    assert!(offset_of!(ProcessInfo, comm) == 32);
    assert!(size_of::<FileOpenEvent>() == 88);
    assert!(offset_of!(FileOpenEvent, process) == 24);
    assert!(offset_of!(FileOpenEvent, path_len) == 84);
    assert!(offset_of!(FileOpenRecord, path) == FILE_OPEN_EVENT_SIZE);
    assert!(size_of::<ModuleConfig>() == 8);
    assert!(size_of::<PathRule>() == 8);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data with no padding-sensitive invariants.
    unsafe impl aya::Pod for super::ModuleConfig {}
    unsafe impl aya::Pod for super::PathRule {}
}
