//! `kernel.protect`: the programs that keep other tasks from switching the
//! agent off while it runs, and the record of each refused attempt.

use crate::{EventHeader, Hook, ProcessInfo};

/// Value of the `AGENT_GUARD` map (one entry): whom the guard protects.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentGuard {
    /// The agent's process id (tgid, in the initial PID namespace); 0: the
    /// guard is off. Cleared by the kernel when that process ends
    /// (`guard_exit`), so a later process that gets the same id is not
    /// taken for the agent.
    pub tgid: u32,
    pub _pad: u32,
}

/// Key of the `AGENT_OBJECTS` map: a BPF map or program of the agent, by
/// the id the kernel gave it. Another task asking for a file descriptor of
/// one of them (`BPF_*_GET_FD_BY_ID`, `BPF_OBJ_GET` of a pin) is refused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// [`OBJECT_MAP`] or [`OBJECT_PROG`].
    pub kind: u32,
    pub id: u32,
}

pub const OBJECT_MAP: u32 = 1;
pub const OBJECT_PROG: u32 = 2;

/// Capacity of `AGENT_OBJECTS`.
pub const AGENT_OBJECTS_MAX: u32 = 1024;
/// Capacity of `AGENT_DIRS`: the directories of the agent's pins
/// (`InodeKey`), in which nothing may be removed or renamed by another task.
pub const AGENT_DIRS_MAX: u32 = 256;

/// Rule id of a refusal by `kernel.protect`, reported as
/// `semconv::rule::AGENT_PROTECT`.
pub const RULE_AGENT_PROTECT: u32 = u32::MAX - 4;

/// What a refused attempt on the agent was.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperAction {
    /// A signal that ends or stops a process (`kill`, `tgkill`,
    /// `pidfd_send_signal`); `detail` is the signal.
    Signal = 1,
    /// The same, delivered as a file's I/O signal (`F_SETOWN`/`F_SETSIG`).
    SignalByIo = 2,
    /// A resource limit of the agent changed (`prlimit`); `detail` is the
    /// resource.
    Rlimit = 3,
    /// ptrace attach, `/proc/PID/mem`, `process_vm_writev`, `pidfd_getfd`;
    /// `detail` is the ptrace access mode.
    Ptrace = 4,
    /// A file descriptor of one of its maps; `detail` is the map id.
    Map = 5,
    /// A file descriptor of one of its programs; `detail` is the program id.
    Program = 6,
    /// Removing or renaming one of its pins or their directories.
    Pin = 7,
}

impl TamperAction {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Signal),
            2 => Some(Self::SignalByIo),
            3 => Some(Self::Rlimit),
            4 => Some(Self::Ptrace),
            5 => Some(Self::Map),
            6 => Some(Self::Program),
            7 => Some(Self::Pin),
            _ => None,
        }
    }
}

/// A refused attempt on the agent (fixed size).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TamperEvent {
    pub header: EventHeader,
    /// Who tried.
    pub process: ProcessInfo,
    /// [`TamperAction`].
    pub action: u8,
    pub _pad: [u8; 3],
    /// The signal, resource, access mode or object id.
    pub detail: u32,
    /// The agent's process id.
    pub agent_pid: u32,
    pub _pad2: u32,
}

/// The hooks of the guard, attached when `kernel.protect` is on and the
/// kernel has BPF-LSM. Each program is named after its hook.
pub const GUARD_HOOKS: &[Hook] = &[
    Hook::LsmTaskKill,
    Hook::LsmFileSendSigiotask,
    Hook::LsmTaskSetrlimit,
    Hook::LsmPtraceAccessCheck,
    Hook::LsmBpfMap,
    Hook::LsmBpfProg,
    Hook::LsmInodeUnlink,
    Hook::LsmInodeRmdir,
    Hook::LsmInodeRename,
];

/// The raw tracepoint program that turns the guard off when the agent's
/// process ends (on `sched_process_exit`).
pub const GUARD_EXIT_PROGRAM: &str = "guard_exit";

/// Signals the guard lets through to the agent: 0 (is it there?),
/// SIGHUP (reload), SIGCHLD, SIGCONT, SIGURG and SIGWINCH. Every other
/// signal ends or stops a process that does not handle it.
pub const fn signal_allowed(sig: u32) -> bool {
    matches!(sig, 0 | 1 | 17 | 18 | 23 | 28)
}

/// `PTRACE_MODE_ATTACH`: the access that lets a task change another's
/// memory or registers (read access, for `/proc/PID/status` and the like,
/// is left alone).
pub const PTRACE_MODE_ATTACH: u32 = 0x02;

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<AgentGuard>() == 8);
    assert!(size_of::<ObjectKey>() == 8);
    assert!(size_of::<TamperEvent>() == 24 + 56 + 16);
};
