//! Fallback tier: audit opens from the syscall entry tracepoints, on kernels
//! that refuse BPF-LSM. These cannot block; a denied path is reported as
//! "would block".
//!
//! The path is what the caller passed, so it may be relative to a directory
//! fd: such records carry `PATH_RELATIVE` and the agent resolves and judges
//! them. Absolute paths are judged here.

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use collector_common::{
    AT_FDCWD, Decision, EventKind, FILE_OPEN_EVENT_SIZE, Hook, Module, PATH_RELATIVE,
};

use crate::{
    kernel,
    maps::{FILE_SCRATCH, MODULE_CONFIG},
    record::{self, Verdict},
};

// Offsets of the syscall arguments in the tracepoint record
// (/sys/kernel/tracing/events/syscalls/sys_enter_*/format): an 8-byte common
// header, the syscall number, padding, then one u64 per argument.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let (Ok(dfd), Ok(filename), Ok(flags)) = (unsafe {
        (
            ctx.read_at::<u64>(ARG0),
            ctx.read_at::<u64>(ARG1),
            ctx.read_at::<u64>(ARG2),
        )
    }) else {
        return 0;
    };
    audit_open(
        Hook::TpOpenat,
        dfd as i32,
        filename as *const u8,
        flags as u32,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let (Ok(dfd), Ok(filename), Ok(how)) = (unsafe {
        (
            ctx.read_at::<u64>(ARG0),
            ctx.read_at::<u64>(ARG1),
            ctx.read_at::<u64>(ARG2),
        )
    }) else {
        return 0;
    };
    // `struct open_how` starts with `u64 flags`.
    let flags = unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0);
    audit_open(
        Hook::TpOpenat2,
        dfd as i32,
        filename as *const u8,
        flags as u32,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let (Ok(filename), Ok(flags)) =
        (unsafe { (ctx.read_at::<u64>(ARG0), ctx.read_at::<u64>(ARG1)) })
    else {
        return 0;
    };
    audit_open(Hook::TpOpen, AT_FDCWD, filename as *const u8, flags as u32);
    0
}

#[inline(always)]
fn audit_open(hook: Hook, dfd: i32, filename: *const u8, flags: u32) {
    let Some(config) = MODULE_CONFIG.get(Module::Files as u32) else {
        return;
    };
    if config.enabled == 0 {
        return;
    }
    let Some(rec) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let rec = unsafe { &mut *rec };
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename, &mut rec.path) } {
        Ok(s) if !s.is_empty() => s.len(),
        _ => return,
    };
    let len = len & (collector_common::PATH_MAX - 1);

    let (verdict, path_flags) = if rec.path[0] == b'/' {
        match record::file_verdict(config, &rec.path, len, false) {
            Some(v) => (v, 0),
            None => return,
        }
    } else {
        // Relative: the agent resolves the path and applies the policy.
        (
            Verdict {
                decision: Decision::Allowed,
                rule_id: 0,
            },
            PATH_RELATIVE,
        )
    };

    let ev = &mut rec.event;
    ev.header = record::header(EventKind::FileOpen, hook, config, &verdict);
    kernel::current_process(&mut ev.process);
    ev.open_flags = flags;
    ev.fmode = 0;
    ev.dfd = dfd;
    ev.path_len = len as u16;
    ev.path_flags = path_flags;
    ev._pad = 0;
    record::submit(
        hook,
        (rec as *const collector_common::FileOpenRecord).cast(),
        FILE_OPEN_EVENT_SIZE + len,
    );
}
