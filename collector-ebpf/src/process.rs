//! The process module: exec policy at `bprm_check_security` (BPF-LSM), and
//! the process life cycle from the scheduler's raw tracepoints (both tiers).
//!
//! Exec rules match the executable's path (prefix rules) or the name it was
//! run as (the basename of the path given to execve, as safeguard does). In
//! block mode a denied exec is refused and reported from the LSM hook; every
//! exec that happens is reported from `sched_process_exec`, judged again
//! there so monitor mode and the audit tier say "would block".

use aya_ebpf::{
    helpers::generated::{self, bpf_probe_read_user, bpf_probe_read_user_str},
    macros::{lsm, map, raw_tracepoint},
    maps::PerCpuArray,
    programs::{LsmContext, RawTracePointContext},
};
use collector_common::{
    EventKind, FLAG_LSM, FLAG_PROCESS_DENY_MEMFD_EXEC, FLAG_PROCESS_JUDGE_MAPPINGS, Hook, Module,
    ModuleConfig, NAME_KEY_LEN, PATH_MAX, PATH_TRUNCATED, POLICY_BLACKLIST, PathRule,
    RULE_MEMFD_EXEC,
    process::{
        ARGS_MAX, ARGS_TRUNCATED, EXEC_EVENT_SIZE, EXEC_MAPPING, ExecRecord, ExitEvent, ForkEvent,
    },
};

use crate::{
    kernel,
    maps::{EXEC_SCRATCH, NAME_KEY_SCRATCH, exec_name_rules, exec_path_rules},
    record::{self, Verdict},
};

/// Bytes of the executable name read to find its basename.
const FILENAME_SCAN: usize = 256;

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 1);
    let Some(config) = record::active_module(Module::Process) else {
        return 0;
    };
    let Some(rec) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };
    let bprm: *const u8 = ctx.arg(0);
    let Some((len, denial)) = judge(rec, config, bprm) else {
        return 0;
    };
    match record::verdict(config, denial, true) {
        Some(verdict) if verdict.lsm_return() != 0 => {
            // Refused: this exec never reaches sched_process_exec, so the
            // arguments come from the execve call itself.
            let args_len = exec_call_args(len);
            emit(rec, Hook::LsmBprmCheck, config, &verdict, len, args_len);
            verdict.lsm_return()
        }
        _ => 0,
    }
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let Some(config) = record::active_module(Module::Process) else {
        return 0;
    };
    let Some(rec) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };
    let bprm: *const u8 = ctx.arg(2);
    let Some((len, denial)) = judge(rec, config, bprm) else {
        return 0;
    };
    let verdict = record::verdict(config, denial, false).unwrap_or(Verdict::AUDIT);
    // Where BPF-LSM is attached, the decision is the LSM hook's (this is
    // monitor mode); elsewhere the audit tier made it.
    let hook = if verdict.rule_id != 0 || denial.is_some() {
        if config.flags & FLAG_LSM != 0 {
            Hook::LsmBprmCheck
        } else {
            Hook::TpSchedExec
        }
    } else {
        Hook::TpSchedExec
    };
    let args_len = read_args(rec, len);
    emit(rec, hook, config, &verdict, len, args_len);
    0
}

/// Writes the executable's path into the record and applies the exec
/// policy: `(path length, denial)`.
#[inline(always)]
fn judge(
    rec: &mut ExecRecord,
    config: &ModuleConfig,
    bprm: *const u8,
) -> Option<(usize, Option<u32>)> {
    let file = kernel::bprm_file(bprm);
    let (mnt, dentry) = kernel::path_parts(kernel::file_f_path(file));
    let (len, cut) = kernel::walk_path(mnt, dentry, rec.data.as_mut_ptr())?;
    rec.event.flags = if cut { PATH_TRUNCATED } else { 0 };
    let by_path = record::lookup_path(exec_path_rules(config), rec.data.as_ptr(), len);
    let by_name = name_rule(rec, config, kernel::bprm_filename(bprm));
    let mut denial = record::unless_cut(
        record::as_denial(PathRule::denial(
            [by_path.as_ref(), by_name.as_ref()],
            config.policy,
        )),
        cut,
    );
    // A file no directory names (a memfd, a deleted file): no path rule
    // can speak of it, so it has a switch of its own.
    if config.flags & FLAG_PROCESS_DENY_MEMFD_EXEC != 0
        && (denial == record::NO_DENIAL || denial == 0)
        && kernel::file_nlink(file) == 0
    {
        denial = RULE_MEMFD_EXEC;
    }
    Some((len, record::denial_of(denial)))
}

/// Looks up the basename of `filename` (the path given to execve) in the
/// name rules. Uses the record's argument area as scratch.
#[inline(always)]
fn name_rule(rec: &mut ExecRecord, config: &ModuleConfig, filename: *const u8) -> Option<PathRule> {
    let buf = unsafe { rec.data.as_mut_ptr().add(PATH_MAX) };
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(buf.cast(), FILENAME_SCAN as u32, filename.cast())
    };
    if n <= 1 {
        return None;
    }
    // Find where the basename starts. Under bpf_loop the verifier checks
    // one step, not every combination of steps.
    let mut scan = Scan {
        buf,
        len: n as u64,
        start: 0,
    };
    unsafe {
        generated::bpf_loop(
            FILENAME_SCAN as u32,
            scan_step as *mut core::ffi::c_void,
            (&mut scan as *mut Scan).cast(),
            0,
        )
    };
    let start = kernel::bounded(scan.start as usize, FILENAME_SCAN - 1);
    let key = NAME_KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    *key = [0u8; NAME_KEY_LEN];
    unsafe {
        generated::bpf_probe_read_kernel_str(
            key.as_mut_ptr().cast(),
            NAME_KEY_LEN as u32,
            buf.add(start).cast(),
        )
    };
    unsafe { exec_name_rules(config).get(&*key) }.copied()
}

/// State of the basename scan, shared with its `bpf_loop` callback.
#[repr(C)]
struct Scan {
    buf: *const u8,
    /// Bytes in `buf`, with the NUL.
    len: u64,
    /// Index after the last '/' seen.
    start: u64,
}

#[inline(never)]
extern "C" fn scan_step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let scan = unsafe { &mut *ctx.cast::<Scan>() };
    if index >= scan.len {
        return 1;
    }
    let i = (index as usize) & (FILENAME_SCAN - 1);
    if unsafe { *scan.buf.add(i) } == b'/' {
        scan.start = index + 1;
    }
    0
}

/// State of an argv copy, in map memory (see `kernel::Walk` for why).
#[repr(C)]
#[derive(Clone, Copy)]
struct ArgvCopy {
    /// User address of the `char *argv[]` array.
    argv: u64,
    /// Where the next argument goes, from the start of the record's data.
    off: u64,
    /// Where the arguments end (the data area's size).
    end: u64,
}

#[map]
static ARGV_COPY: PerCpuArray<ArgvCopy> = PerCpuArray::with_max_entries(1, 0);

/// The most arguments a refused exec reports.
const ARGS_COUNT_MAX: u32 = 32;

/// Copies the arguments of the execve call in progress after the path;
/// their length.
#[inline(always)]
fn exec_call_args(path_len: usize) -> usize {
    let argv = kernel::exec_argv();
    if argv == 0 {
        return 0;
    }
    let Some(state) = ARGV_COPY.get_ptr_mut(0) else {
        return 0;
    };
    let state = unsafe { &mut *state };
    let start = (path_len & (PATH_MAX - 1)) as u64;
    *state = ArgvCopy {
        argv,
        off: start,
        end: start + ARGS_MAX as u64,
    };
    unsafe {
        generated::bpf_loop(
            ARGS_COUNT_MAX,
            argv_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    ((state.off - start) as usize) & (2 * ARGS_MAX - 1)
}

/// Copies `argv[index]` (NUL included) into the record; 1 stops the loop.
#[inline(never)]
extern "C" fn argv_step(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(state), Some(rec)) = (ARGV_COPY.get_ptr_mut(0), EXEC_SCRATCH.get_ptr_mut(0)) else {
        return 1;
    };
    let (state, rec) = unsafe { (&mut *state, &mut *rec) };
    let Ok(arg) =
        (unsafe { aya_ebpf::helpers::bpf_probe_read_user((state.argv + index * 8) as *const u64) })
    else {
        return 1;
    };
    if arg == 0 {
        return 1; // the NULL that ends argv
    }
    if state.off as usize >= PATH_MAX {
        // A path near PATH_MAX leaves no room that the masks can prove.
        rec.event.flags |= ARGS_TRUNCATED;
        return 1;
    }
    let off = (state.off as usize) & (PATH_MAX - 1);
    let room = (state.end as usize).saturating_sub(state.off as usize) & (2 * ARGS_MAX - 1);
    if room <= 1 || room > ARGS_MAX {
        rec.event.flags |= ARGS_TRUNCATED;
        return 1;
    }
    let n = unsafe {
        bpf_probe_read_user_str(
            rec.data.as_mut_ptr().add(off).cast(),
            room as u32,
            arg as *const _,
        )
    };
    if n <= 0 {
        return 1;
    }
    state.off += n as u64;
    0
}

/// Copies the new program's arguments (NUL-separated) after the path.
#[inline(always)]
fn read_args(rec: &mut ExecRecord, path_len: usize) -> usize {
    let (start, end) = kernel::current_args();
    if end <= start {
        return 0;
    }
    let mut len = (end - start) as usize;
    if len > ARGS_MAX {
        len = ARGS_MAX;
        rec.event.flags |= ARGS_TRUNCATED;
    }
    let dst = unsafe { rec.data.as_mut_ptr().add(path_len & (PATH_MAX - 1)) };
    let len = len & (2 * ARGS_MAX - 1);
    if len == 0 || len > ARGS_MAX {
        return 0;
    }
    let rc = unsafe { bpf_probe_read_user(dst.cast(), len as u32, start as *const _) };
    if rc == 0 { len } else { 0 }
}

/// Bytes of path and arguments, clamped where the verifier can see it.
#[inline(always)]
fn data_len(path_len: usize, args_len: usize) -> usize {
    let total = kernel::bounded(path_len + args_len, 2 * PATH_MAX - 1);
    if total > PATH_MAX + ARGS_MAX {
        PATH_MAX + ARGS_MAX
    } else {
        total
    }
}

#[inline(always)]
fn emit(
    rec: &mut ExecRecord,
    hook: Hook,
    config: &ModuleConfig,
    verdict: &Verdict,
    len: usize,
    args_len: usize,
) {
    let ev = &mut rec.event;
    ev.header = record::header(EventKind::Exec, hook, config.mode, verdict);
    kernel::current_process(&mut ev.process);
    ev.path_len = len as u16;
    ev.args_len = args_len as u16;
    record::submit(
        hook,
        (rec as *const ExecRecord).cast(),
        EXEC_EVENT_SIZE + data_len(len, args_len),
    );
}

/// `PROT_EXEC` and `VM_EXEC`.
const PROT_EXEC: u64 = 0x4;
const VM_EXEC: u64 = 0x4;

/// An executable mapping of a file: how a dynamic loader runs a program
/// without exec (`/lib64/ld-linux-x86-64.so.2 /path/to/program` maps it
/// itself). Judged by the exec rules' denials.
#[lsm(hook = "mmap_file")]
pub fn exec_mmap_file(ctx: LsmContext) -> i32 {
    // (struct file *file, unsigned long reqprot, unsigned long prot,
    //  unsigned long flags)
    earlier_denial!(ctx, 4);
    let file: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    if file.is_null() || prot & PROT_EXEC == 0 {
        return 0;
    }
    judge_mapping(file, Hook::LsmExecMmap)
}

/// The same, for a mapping made executable afterwards (`mmap` without
/// `PROT_EXEC`, then `mprotect`).
#[lsm(hook = "file_mprotect")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    // (struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
    earlier_denial!(ctx, 3);
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let (file, vm_flags) = kernel::vma_file_flags(ctx.arg(0));
    if file.is_null() || vm_flags & VM_EXEC != 0 {
        return 0; // anonymous memory, or judged when it was mapped
    }
    judge_mapping(file, Hook::LsmFileMprotect)
}

/// Judges an executable mapping of `file` by the exec rules' denials
/// only: under `policy: whitelist`, every library a program maps would
/// otherwise need a rule. Reported like an exec, marked as a mapping.
#[inline(always)]
fn judge_mapping(file: *const u8, hook: Hook) -> i32 {
    let Some(config) = record::active_module(Module::Process) else {
        return 0;
    };
    // The program the process runs was judged at its exec (the kernel
    // maps it while executing it).
    if config.flags & FLAG_PROCESS_JUDGE_MAPPINGS == 0 || kernel::current_exe_file() == file {
        return 0;
    }
    let Some(rec) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };
    let (mnt, dentry) = kernel::path_parts(kernel::file_f_path(file));
    let Some((len, cut)) = kernel::walk_path(mnt, dentry, rec.data.as_mut_ptr()) else {
        return 0;
    };
    let by_path = record::lookup_path(exec_path_rules(config), rec.data.as_ptr(), len);
    // The walk does not end the path with a NUL, and the scratch holds
    // what the last exec on this CPU left after it: end it here, or the
    // basename would run on into another program's name.
    rec.data[len & (PATH_MAX - 1)] = 0;
    let by_name = name_rule(rec, config, rec.data.as_ptr());
    let denial = record::denial_of(record::unless_cut(
        record::as_denial(PathRule::denial(
            [by_path.as_ref(), by_name.as_ref()],
            POLICY_BLACKLIST,
        )),
        cut,
    ));
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    rec.event.flags = EXEC_MAPPING | if cut { PATH_TRUNCATED } else { 0 };
    emit(rec, hook, config, &verdict, len, 0);
    verdict.lsm_return()
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let Some(config) = record::active_module(Module::Process) else {
        return 0;
    };
    let child: *const u8 = ctx.arg(1);
    let (child_tid, child_pid) = (kernel::task_pid(child), kernel::task_tgid(child));
    if child_tid != child_pid {
        return 0; // a new thread, not a new process
    }
    let mut ev = ForkEvent {
        header: record::header(
            EventKind::Fork,
            Hook::TpSchedFork,
            config.mode,
            &Verdict::AUDIT,
        ),
        child_pid,
        child_tid,
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(
        Hook::TpSchedFork,
        (&ev as *const ForkEvent).cast(),
        size_of::<ForkEvent>(),
    );
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p); p is current.
    let Some(config) = record::active_module(Module::Process) else {
        return 0;
    };
    let task: *const u8 = ctx.arg(0);
    if !kernel::task_group_dead(task) {
        return 0; // other threads live on
    }
    let mut ev = ExitEvent {
        header: record::header(
            EventKind::Exit,
            Hook::TpSchedExit,
            config.mode,
            &Verdict::AUDIT,
        ),
        exit_code: kernel::task_exit_code(task),
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(
        Hook::TpSchedExit,
        (&ev as *const ExitEvent).cast(),
        size_of::<ExitEvent>(),
    );
    0
}
