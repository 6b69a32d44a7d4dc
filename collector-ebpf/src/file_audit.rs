//! Audit tier of the file module, for kernels that refuse BPF-LSM: opens
//! seen at the syscall entry tracepoints. These cannot block; a denied path
//! is reported as "would block".
//!
//! The path is what the caller passed, so it may be relative to a directory
//! fd: such records carry `PATH_RELATIVE` and, as their second path, the
//! directory it starts from; the agent joins the two and judges them.
//! Absolute paths are judged here.

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use collector_common::{
    AT_FDCWD, EventKind, Hook, Module, PATH_MAX, PATH_RELATIVE,
    file::{FILE_EVENT_SIZE, FileOp, FileRecord},
};

use crate::{
    kernel,
    maps::{FILE_SCRATCH, file_rules},
    record::{self, Verdict},
};

// Offsets of the syscall arguments in the tracepoint record
// (/sys/kernel/tracing/events/syscalls/sys_enter_*/format): an 8-byte common
// header, the syscall number, padding, then one u64 per argument.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;

#[inline(always)]
fn args3(ctx: &TracePointContext) -> Option<(u64, u64, u64)> {
    unsafe {
        Some((
            ctx.read_at::<u64>(ARG0).ok()?,
            ctx.read_at::<u64>(ARG1).ok()?,
            ctx.read_at::<u64>(ARG2).ok()?,
        ))
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    if let Some((dfd, filename, flags)) = args3(&ctx) {
        audit_open(
            Hook::TpOpenat,
            dfd as i32,
            filename as *const u8,
            flags as u32,
        );
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    if let Some((dfd, filename, how)) = args3(&ctx) {
        // `struct open_how` starts with `u64 flags`.
        let flags = unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0);
        audit_open(
            Hook::TpOpenat2,
            dfd as i32,
            filename as *const u8,
            flags as u32,
        );
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    // open(filename, flags, mode): the same slots as openat's first two.
    if let Some((filename, flags, _)) = args3(&ctx) {
        audit_open(Hook::TpOpen, AT_FDCWD, filename as *const u8, flags as u32);
    }
    0
}

#[inline(always)]
fn audit_open(hook: Hook, dfd: i32, filename: *const u8, flags: u32) {
    let Some(config) = record::active_module(Module::Files) else {
        return;
    };
    let Some(rec) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let rec: &mut FileRecord = unsafe { &mut *rec };
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename, &mut rec.paths[..PATH_MAX]) } {
        Ok(s) if !s.is_empty() => s.len() & (PATH_MAX - 1),
        _ => return,
    };

    let (verdict, path_flags, base_len) = if rec.paths[0] == b'/' {
        let denial = record::file_path_denial(file_rules(config), config, rec, len);
        match record::verdict(config, denial, false) {
            Some(v) => (v, 0, 0),
            None => return,
        }
    } else {
        // Relative: the agent joins it to the directory it starts from,
        // walked here while the task still has it (after the call the
        // process may have moved or be gone), and applies the policy.
        let (mnt, dentry) = kernel::path_parts(kernel::relative_base(dfd));
        let base = unsafe {
            rec.paths
                .as_mut_ptr()
                .add(kernel::bounded(len, PATH_MAX - 1))
        };
        let base_len = match kernel::walk_path(mnt, dentry, base) {
            Some((n, false)) => n,
            _ => 0,
        };
        (Verdict::AUDIT, PATH_RELATIVE, base_len)
    };

    let ev = &mut rec.event;
    ev.header = record::header(EventKind::File, hook, config.mode, &verdict);
    kernel::current_process(&mut ev.process);
    ev.op = FileOp::Open as u8;
    ev.path_flags = path_flags;
    ev.open_flags = flags;
    ev.fmode = 0;
    ev.dfd = dfd;
    ev.arg = 0;
    ev.path_len = len as u16;
    ev.path2_len = base_len as u16;
    record::submit(
        hook,
        (rec as *const FileRecord).cast(),
        FILE_EVENT_SIZE + (len & (PATH_MAX - 1)) + (base_len & (PATH_MAX - 1)),
    );
}
