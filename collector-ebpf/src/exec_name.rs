//! The name each process was executed as, for `network.command` rules.
//!
//! `comm` is no identity: any task sets its own with `prctl(PR_SET_NAME)`
//! or by writing `/proc/self/comm`, so a command rule keyed on it lets
//! whoever renames itself `apt` through. The name a process was executed
//! as is its `comm` right after `exec` (the last component of the path
//! given to `execve`), before it can run a line of its own: recorded at
//! `sched_process_exec`, handed to a child at fork, dropped at exit. A
//! process that exec'd before the programs were attached is entered by
//! the agent from its executable's name (`/proc/PID/exe`).

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use collector_common::COMM_LEN;

use crate::{kernel, maps::EXEC_NAMES};

/// The name the current process was executed as; its `comm` when it is
/// not known (evicted, or a kernel thread).
#[inline(always)]
pub fn current() -> [u8; COMM_LEN] {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    match unsafe { EXEC_NAMES.get(&tgid) } {
        Some(name) => *name,
        None => bpf_get_current_comm().unwrap_or_default(),
    }
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn exec_name_exec(_ctx: RawTracePointContext) -> i32 {
    // After a successful exec, in the new program, before it runs: its
    // comm is the name it was executed as.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let name = bpf_get_current_comm().unwrap_or_default();
    let _ = EXEC_NAMES.insert(&tgid, &name, 0);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn exec_name_fork(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child: *const u8 = ctx.arg(1);
    let child_pid = kernel::task_tgid(child);
    if kernel::task_pid(child) != child_pid {
        return 0; // a new thread: same process
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(name) = unsafe { EXEC_NAMES.get(&parent) } {
        let name = *name;
        let _ = EXEC_NAMES.insert(&child_pid, &name, 0);
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn exec_name_exit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p); p is current.
    if kernel::task_group_dead(ctx.arg(0)) {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let _ = EXEC_NAMES.remove(&tgid);
    }
    0
}
