//! Process life cycle: fork, exec, exit.

use crate::{EventHeader, PATH_MAX, ProcessInfo};

/// Bytes of argv carried by an exec record (NUL-separated arguments).
pub const ARGS_MAX: usize = 1024;

/// An exec, allowed or refused. On the wire it is followed by `path_len`
/// bytes of the executable's path, then `args_len` bytes of arguments, each
/// ending in a NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// The task that execs (after a successful exec, the new program).
    pub process: ProcessInfo,
    pub path_len: u16,
    pub args_len: u16,
    /// `PATH_TRUNCATED`; `ARGS_TRUNCATED`.
    pub flags: u8,
    pub _pad: [u8; 3],
}

/// `ExecEvent::flags`: the arguments did not fit and were cut.
pub const ARGS_TRUNCATED: u8 = 4;
/// `ExecEvent::flags`: not an exec but an executable mapping of the file
/// (`mmap` or `mprotect` with `PROT_EXEC`), judged by the exec rules; the
/// process runs on as it was.
pub const EXEC_MAPPING: u8 = 8;

pub const EXEC_EVENT_SIZE: usize = core::mem::size_of::<ExecEvent>();

/// Scratch layout for exec records.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub event: ExecEvent,
    pub data: [u8; PATH_MAX + ARGS_MAX],
}

/// A new task: fork, vfork or clone (a new process or a new thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: EventHeader,
    /// The parent task.
    pub process: ProcessInfo,
    /// The child's process id (tgid) and thread id.
    pub child_pid: u32,
    pub child_tid: u32,
}

/// A process ended (its last thread exited).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// `task->exit_code`: the exit status in bits 8-15, the terminating
    /// signal in bits 0-6, as `wait(2)` reports it.
    pub exit_code: u32,
    pub _pad: u32,
}

/// Longest cgroup path a [`CgroupEvent`] carries whole.
pub const CGROUP_PATH_MAX: usize = 256;

/// [`CgroupEvent::container`]: not a container's cgroup.
pub const CGROUP_NOT_CONTAINER: u32 = 0;
/// [`CgroupEvent::container`]: a container's, entered in `CONTAINER_CGROUPS`.
pub const CGROUP_CONTAINER: u32 = 1;
/// [`CgroupEvent::container`]: a container's, which `CONTAINER_CGROUPS`
/// had no room for: its tasks are not in a container for `target:
/// container`.
pub const CGROUP_CONTAINER_UNTRACKED: u32 = 2;

/// A cgroup v2 directory was made (`cgroup_mkdir`): not an audit event but
/// what names containers. The agent keeps the path by the id its tasks'
/// records carry, so a container that is gone by the time its records are
/// read is still named.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupEvent {
    pub header: EventHeader,
    /// The cgroup's id (its kernfs node's), as `bpf_get_current_cgroup_id`
    /// gives it to its tasks.
    pub id: u64,
    /// Bytes of `path` used, its NUL not counted; `CGROUP_PATH_MAX` or more:
    /// it was cut.
    pub path_len: u32,
    /// Whether the cgroup is a container's or below one
    /// (`crate::container`): `CGROUP_*`.
    pub container: u32,
    /// The path below the hierarchy's root (`/machine.slice/libpod-….scope`).
    pub path: [u8; CGROUP_PATH_MAX],
}

impl Default for CgroupEvent {
    fn default() -> Self {
        Self {
            header: EventHeader::default(),
            id: 0,
            path_len: 0,
            container: CGROUP_NOT_CONTAINER,
            path: [0; CGROUP_PATH_MAX],
        }
    }
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<CgroupEvent>() == 24 + 16 + CGROUP_PATH_MAX);
    assert!(size_of::<ExecEvent>() == 88);
    assert!(offset_of!(ExecRecord, data) == EXEC_EVENT_SIZE);
    assert!(size_of::<ForkEvent>() == 88);
    assert!(size_of::<ExitEvent>() == 88);
};
