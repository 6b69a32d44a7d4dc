//! BPF-LSM `file_open`: every open of a file, with the file's full path.

use aya_ebpf::{helpers::generated::bpf_d_path, macros::lsm, programs::LsmContext};
use collector_common::{AT_FDCWD, EventKind, FILE_OPEN_EVENT_SIZE, Hook, Module, PATH_MAX};

use crate::{
    kernel,
    maps::{FILE_SCRATCH, MODULE_CONFIG},
    record,
};

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    // The last argument is what an earlier BPF-LSM program on this hook
    // decided; keep a denial.
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return if (-4095..0).contains(&earlier) {
            earlier
        } else {
            -1
        };
    }
    try_file_open(&ctx)
}

#[inline(always)]
fn try_file_open(ctx: &LsmContext) -> i32 {
    let Some(config) = MODULE_CONFIG.get(Module::Files as u32) else {
        return 0;
    };
    if config.enabled == 0 {
        return 0;
    }
    let Some(rec) = FILE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };

    let file: *const u8 = ctx.arg(0);
    let path = kernel::file_f_path(file);
    let len = unsafe {
        bpf_d_path(
            path as *mut _,
            rec.path.as_mut_ptr().cast(),
            PATH_MAX as u32,
        )
    };
    // d_path's length counts the NUL. Paths that are not absolute (pipes,
    // anonymous inodes) are outside any file policy.
    if len <= 1 || rec.path[0] != b'/' {
        return 0;
    }
    let len = (len as usize - 1) & (PATH_MAX - 1);

    let Some(verdict) = record::file_verdict(config, &rec.path, len, true) else {
        return 0;
    };

    let ev = &mut rec.event;
    ev.header = record::header(EventKind::FileOpen, Hook::LsmFileOpen, config, &verdict);
    kernel::current_process(&mut ev.process);
    ev.open_flags = kernel::file_f_flags(file);
    ev.fmode = kernel::file_f_mode(file);
    ev.dfd = AT_FDCWD;
    ev.path_len = len as u16;
    ev.path_flags = 0;
    ev._pad = 0;
    record::submit(
        Hook::LsmFileOpen,
        (rec as *const collector_common::FileOpenRecord).cast(),
        FILE_OPEN_EVENT_SIZE + len,
    );
    verdict.lsm_return()
}
