//! What the programs read from the kernel beyond helper calls: struct field
//! offsets (set by the agent from the running kernel's BTF before load) and
//! the current task's identity.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task},
};
use collector_common::ProcessInfo;

// Read-only globals, rewritten by the agent (`collector_common::offsets`).
// The loader freezes `.rodata`, so the verifier sees these as constants; that
// is what lets `file + FILE_F_PATH_OFFSET` stay a typed `struct path *`.
#[unsafe(no_mangle)]
static FILE_F_PATH_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static FILE_F_FLAGS_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static FILE_F_MODE_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static TASK_REAL_PARENT_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static TASK_TGID_OFFSET: u64 = 0;

#[inline(always)]
fn offset(global: &'static u64) -> usize {
    // A volatile read keeps the compiler from folding the placeholder 0.
    unsafe { core::ptr::read_volatile(global) as usize }
}

#[inline(always)]
pub fn file_f_path(file: *const u8) -> *const u8 {
    unsafe { file.add(offset(&FILE_F_PATH_OFFSET)) }
}

#[inline(always)]
pub fn file_f_flags(file: *const u8) -> u32 {
    unsafe { bpf_probe_read_kernel(file.add(offset(&FILE_F_FLAGS_OFFSET)).cast::<u32>()) }
        .unwrap_or(0)
}

#[inline(always)]
pub fn file_f_mode(file: *const u8) -> u32 {
    unsafe { bpf_probe_read_kernel(file.add(offset(&FILE_F_MODE_OFFSET)).cast::<u32>()) }
        .unwrap_or(0)
}

/// The current task's parent process id (`current->real_parent->tgid`).
#[inline(always)]
fn parent_pid() -> u32 {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let parent = unsafe {
        bpf_probe_read_kernel(
            task.add(offset(&TASK_REAL_PARENT_OFFSET))
                .cast::<*const u8>(),
        )
    };
    match parent {
        Ok(parent) if !parent.is_null() => {
            unsafe { bpf_probe_read_kernel(parent.add(offset(&TASK_TGID_OFFSET)).cast::<u32>()) }
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Fills `p` with the current task's identity.
#[inline(always)]
pub fn current_process(p: &mut ProcessInfo) {
    let pid_tgid = bpf_get_current_pid_tgid();
    p.tid = pid_tgid as u32;
    p.pid = (pid_tgid >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    p.uid = uid_gid as u32;
    p.gid = (uid_gid >> 32) as u32;
    p.ppid = parent_pid();
    p._pad = 0;
    p.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    p.comm = bpf_get_current_comm().unwrap_or_default();
}
