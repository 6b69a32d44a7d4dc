//! `kernel.protect`: while the agent runs, no other task may end or stop
//! it, trace it, open its maps or programs, or remove its pins. Each
//! refusal is reported (`TamperEvent`). PID 1, the service manager, may
//! still signal it (that is how `systemctl stop` works).
//!
//! The guard is off while `AGENT_GUARD` holds no process id: before the
//! agent has written it, and after the agent's process ended
//! (`guard_exit`).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{lsm, raw_tracepoint},
    programs::{LsmContext, RawTracePointContext},
};
use collector_common::{
    Decision, EventHeader, EventKind, Hook, MODE_BLOCK,
    guard::{
        OBJECT_MAP, OBJECT_PROG, ObjectKey, PTRACE_MODE_ATTACH, RULE_AGENT_PROTECT, TamperAction,
        TamperEvent, signal_allowed,
    },
};

use crate::{
    kernel,
    maps::{AGENT_DIRS, AGENT_GUARD, AGENT_OBJECTS},
    record,
};

/// SIGIO: what a file's owner gets when no other signal was set.
const SIGIO: u32 = 29;

/// The agent's process id, when the guard is on.
#[inline(always)]
fn agent() -> Option<u32> {
    let tgid = AGENT_GUARD.get(0)?.tgid;
    (tgid != 0).then_some(tgid)
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Reports the refused attempt and returns -EPERM.
#[inline(always)]
fn refuse(hook: Hook, action: TamperAction, detail: u32, agent: u32) -> i32 {
    let mut ev = TamperEvent {
        header: EventHeader {
            kind: EventKind::Tamper as u8,
            hook: hook as u8,
            decision: Decision::Blocked as u8,
            mode: MODE_BLOCK,
            rule_id: RULE_AGENT_PROTECT,
            seq: record::next_seq(),
            boot_ns: unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() },
        },
        action: action as u8,
        detail,
        agent_pid: agent,
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(
        hook,
        (&ev as *const TamperEvent).cast(),
        size_of::<TamperEvent>(),
    );
    record::Verdict {
        decision: Decision::Blocked,
        rule_id: RULE_AGENT_PROTECT,
    }
    .lsm_return()
}

/// A signal to the agent from anyone but itself and PID 1 (`kill`,
/// `tgkill`, `pidfd_send_signal`; signals the kernel sends, such as the
/// OOM killer's, do not come this way).
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    // (struct task_struct *p, struct kernel_siginfo *info, int sig,
    //  const struct cred *cred)
    earlier_denial!(ctx, 4);
    let Some(agent) = agent() else {
        return 0;
    };
    let sig: u32 = ctx.arg(2);
    if signal_allowed(sig) || kernel::task_tgid(ctx.arg(0)) != agent {
        return 0;
    }
    let sender = current_tgid();
    if sender == agent || sender == 1 {
        return 0;
    }
    refuse(Hook::LsmTaskKill, TamperAction::Signal, sig, agent)
}

/// The same signals, sent as a file's I/O signal to the agent as its owner
/// (`fcntl(F_SETOWN)` with `F_SETSIG`): whoever does the I/O that raises
/// it, the agent included, so no one is let through.
#[lsm(hook = "file_send_sigiotask")]
pub fn file_send_sigiotask(ctx: LsmContext) -> i32 {
    // (struct task_struct *tsk, struct fown_struct *fown, int sig)
    earlier_denial!(ctx, 3);
    let Some(agent) = agent() else {
        return 0;
    };
    let sig = match ctx.arg::<u32>(2) {
        0 => SIGIO,
        sig => sig,
    };
    if signal_allowed(sig) || kernel::task_tgid(ctx.arg(0)) != agent {
        return 0;
    }
    refuse(
        Hook::LsmFileSendSigiotask,
        TamperAction::SignalByIo,
        sig,
        agent,
    )
}

/// A resource limit of the agent set by another task (`prlimit`): a CPU
/// time limit would have the kernel kill it.
#[lsm(hook = "task_setrlimit")]
pub fn task_setrlimit(ctx: LsmContext) -> i32 {
    // (struct task_struct *p, unsigned int resource, struct rlimit *new_rlim)
    earlier_denial!(ctx, 3);
    let Some(agent) = agent() else {
        return 0;
    };
    if kernel::task_tgid(ctx.arg(0)) != agent || current_tgid() == agent {
        return 0;
    }
    refuse(
        Hook::LsmTaskSetrlimit,
        TamperAction::Rlimit,
        ctx.arg(1),
        agent,
    )
}

/// Attach access to the agent: ptrace, `/proc/PID/mem`,
/// `process_vm_writev`, `pidfd_getfd` (which would hand over its map
/// descriptors).
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    // (struct task_struct *child, unsigned int mode)
    earlier_denial!(ctx, 2);
    let Some(agent) = agent() else {
        return 0;
    };
    let mode: u32 = ctx.arg(1);
    if mode & PTRACE_MODE_ATTACH == 0
        || kernel::task_tgid(ctx.arg(0)) != agent
        || current_tgid() == agent
    {
        return 0;
    }
    refuse(
        Hook::LsmPtraceAccessCheck,
        TamperAction::Ptrace,
        mode,
        agent,
    )
}

/// A file descriptor of one of the agent's maps, by id or from its pin:
/// with one, any root process could rewrite the rules or switch the
/// policy set in force. Read-only ones too: a program loaded with one
/// could write the map.
#[lsm(hook = "bpf_map")]
pub fn bpf_map(ctx: LsmContext) -> i32 {
    // (struct bpf_map *map, fmode_t fmode)
    earlier_denial!(ctx, 2);
    let Some(agent) = agent() else {
        return 0;
    };
    if current_tgid() == agent {
        return 0;
    }
    let id: u32 = kernel::bpf_map_id(ctx.arg(0));
    let key = ObjectKey {
        kind: OBJECT_MAP,
        id,
    };
    if unsafe { AGENT_OBJECTS.get(&key) }.is_none() {
        return 0;
    }
    refuse(Hook::LsmBpfMap, TamperAction::Map, id, agent)
}

/// A file descriptor of one of the agent's programs: with one, a program
/// could be attached to replace it (`freplace`) or trace it.
#[lsm(hook = "bpf_prog")]
pub fn bpf_prog(ctx: LsmContext) -> i32 {
    // (struct bpf_prog *prog)
    earlier_denial!(ctx, 1);
    let Some(agent) = agent() else {
        return 0;
    };
    if current_tgid() == agent {
        return 0;
    }
    let id: u32 = kernel::bpf_prog_id(ctx.arg(0));
    let key = ObjectKey {
        kind: OBJECT_PROG,
        id,
    };
    if unsafe { AGENT_OBJECTS.get(&key) }.is_none() {
        return 0;
    }
    refuse(Hook::LsmBpfProg, TamperAction::Program, id, agent)
}

/// Whether `inode` is one of the directories of the agent's pins.
#[inline(always)]
fn pin_dir(inode: *const u8) -> bool {
    let Some(key) = kernel::inode_key(inode) else {
        return false;
    };
    unsafe { AGENT_DIRS.get(&key) }.is_some()
}

/// Removing a pin, or an epoch's directory of pins.
#[inline(always)]
fn removal(hook: Hook, dir: *const u8) -> i32 {
    let Some(agent) = agent() else {
        return 0;
    };
    if current_tgid() == agent || !pin_dir(dir) {
        return 0;
    }
    refuse(hook, TamperAction::Pin, 0, agent)
}

#[lsm(hook = "inode_unlink")]
pub fn inode_unlink(ctx: LsmContext) -> i32 {
    // (struct inode *dir, struct dentry *dentry)
    earlier_denial!(ctx, 2);
    removal(Hook::LsmInodeUnlink, ctx.arg(0))
}

#[lsm(hook = "inode_rmdir")]
pub fn inode_rmdir(ctx: LsmContext) -> i32 {
    // (struct inode *dir, struct dentry *dentry)
    earlier_denial!(ctx, 2);
    removal(Hook::LsmInodeRmdir, ctx.arg(0))
}

/// Moving a pin out, replacing one by another file, or moving a directory
/// of pins.
#[lsm(hook = "inode_rename")]
pub fn inode_rename(ctx: LsmContext) -> i32 {
    // (struct inode *old_dir, struct dentry *old_dentry,
    //  struct inode *new_dir, struct dentry *new_dentry)
    earlier_denial!(ctx, 4);
    let Some(agent) = agent() else {
        return 0;
    };
    if current_tgid() == agent {
        return 0;
    }
    let moved = kernel::dentry_inode(ctx.arg(1));
    if pin_dir(ctx.arg(0)) || pin_dir(ctx.arg(2)) || pin_dir(moved) {
        return refuse(Hook::LsmInodeRename, TamperAction::Pin, 0, agent);
    }
    0
}

/// The agent's process ended: the guard goes off, so that the next
/// agent can take over its pins and a later process given the same id is
/// not protected.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn guard_exit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p); p is current.
    let Some(agent) = agent() else {
        return 0;
    };
    if current_tgid() != agent || !kernel::task_group_dead(ctx.arg(0)) {
        return 0;
    }
    if let Some(guard) = AGENT_GUARD.get_ptr_mut(0) {
        unsafe { (*guard).tgid = 0 };
    }
    0
}
