//! The mount module on overlay layers: `lowerdir`, `upperdir`, `workdir`,
//! `lowerdir+` and `datadir+` name directories the new mount shows (or, for
//! `workdir`, writes into), so each is judged like a mount source: a layer
//! at or below a denied source, or (but `workdir`) above one, is refused.
//!
//! The kernel hands the layers over in one of two ways, and each has its
//! own hook:
//! - `fs_context_parse_param`: each option as it is parsed, for `fsconfig(2)`
//!   and for `mount(2)` of a filesystem with a mount context of its own
//!   (overlay since Linux 6.5);
//! - `sb_eat_lsm_opts`: the whole option string of a `mount(2)` of a
//!   filesystem without one (overlay before 6.5).
//!
//! A layer is a string the kernel resolves after the hook, so it is judged
//! as a path: a relative layer from the task's working directory, an
//! absolute one from the task's root (a chroot cannot rename a layer). One
//! spelled with `.` or `..` components or doubled slashes, or one that
//! cannot be read whole, is refused in block mode (fail closed); so is a
//! relative one a legacy filesystem resolves later (`fsconfig(2)` before
//! 6.5, when the working directory may have changed). Layers through a
//! symbolic link are not followed (README).

use aya_ebpf::{helpers::generated, macros::lsm, programs::LsmContext};
use collector_common::{
    EventKind, Hook, Module, ModuleConfig, PATH_MAX, RULE_PATH_UNRESOLVED,
    mount::{FSTYPE_LEN, MOUNT_EVENT_SIZE, MountOp, MountRecord},
};

use crate::{
    kernel,
    maps::{MOUNT_SCRATCH, OVERLAY_SCAN, mount_rules},
    record,
};

/// `overlay`, as [`kernel::FsType::name`] holds it.
const OVERLAY: [u8; 8] = *b"overlay\0";

/// `enum fs_value_type`: a string value, and an open file.
const FS_VALUE_IS_STRING: u8 = 2;
const FS_VALUE_IS_FILE: u8 = 5;

/// Longest key and value `fsconfig(2)` takes (it copies 256 bytes of each).
const FSCONFIG_MAX: usize = 256;

/// The scan of one option string or value, shared with its `bpf_loop`
/// callback. Kept in a per-CPU map: state on the stack would make the
/// verifier follow every path through the loop.
#[repr(C)]
pub struct OverlayScan {
    /// The text scanned: an option string, `key=value`, or one value.
    pub text: [u8; PATH_MAX],
    /// The layer being read, made absolute.
    pub layer: [u8; PATH_MAX],
    /// Where absolute layers start from: the task's root ("" for the real
    /// root).
    pub root: [u8; PATH_MAX],
    /// Where relative layers start from: the task's working directory.
    pub cwd: [u8; PATH_MAX],
    pub text_len: u64,
    pub layer_len: u64,
    pub root_len: u64,
    pub cwd_len: u64,
    /// 1: the text is a list of `key=value` options split by `,`.
    pub whole: u64,
    /// 1: relative layers can be told (the working directory is known and
    /// is the one the kernel will use).
    pub relative_ok: u64,
    /// What the current option's value is: a `:` list, with `\` escapes,
    /// a layer the mount shows.
    pub list: u64,
    pub escapes: u64,
    pub shows: u64,
    /// 1: inside a layer option's value.
    pub in_layer: u64,
    /// 1: the next byte starts an option (whole text) or a layer.
    pub option_start: u64,
    pub layer_start: u64,
    /// 1: the byte before was an escaping `\`.
    pub escaped: u64,
    /// Bytes of an option's key to pass over.
    pub skip_until: u64,
    /// Bytes of the current path component, and how many of them are `.`.
    pub seg_len: u64,
    pub seg_dots: u64,
    /// 1: the layer cannot be told (not canonical, too long).
    pub bad: u64,
    /// The deny rule the first refused layer answers to; 0 for none.
    pub rule: u64,
}

#[lsm(hook = "fs_context_parse_param")]
pub fn fs_context_parse_param(ctx: LsmContext) -> i32 {
    // (struct fs_context *fc, struct fs_parameter *param). Returning 0
    // leaves the option to the filesystem (the hook's default, -ENOPARAM,
    // is what the kernel then sees).
    earlier_denial!(ctx, 2);
    let Some(config) = record::active_module(Module::Mount) else {
        return 0;
    };
    let fs = kernel::fs_context_type(ctx.arg(0));
    if fs.name != OVERLAY {
        return 0;
    }
    let (key, kind, value) = kernel::fs_param(ctx.arg(1));
    let Some(s) = OVERLAY_SCAN.get_ptr_mut(0) else {
        return 0;
    };
    let s = unsafe { &mut *s };
    reset(s);
    if fs.legacy {
        // A filesystem without a mount context gets `key[=value]` as one
        // option of its string, whatever the key says: scan it so.
        let k = read_str(s.text.as_mut_ptr(), FSCONFIG_MAX, key);
        let mut len = k;
        if k >= FSCONFIG_MAX - 1 {
            s.bad = 1;
        } else if kind == FS_VALUE_IS_STRING {
            s.text[k & (FSCONFIG_MAX - 1)] = b'=';
            let text = unsafe { s.text.as_mut_ptr().add((k + 1) & (FSCONFIG_MAX - 1)) };
            let v = read_str(text, 2 * FSCONFIG_MAX, value);
            if v >= 2 * FSCONFIG_MAX - 1 {
                s.bad = 1;
            }
            len = k + 1 + v;
        }
        s.text_len = len as u64;
        s.whole = 1;
        s.option_start = 1;
        s.relative_ok = 0;
    } else {
        let mut name = [0u8; 16];
        if key.is_null() {
            return 0;
        }
        unsafe { generated::bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), 16, key.cast()) };
        let (list, escapes, shows) = match &name {
            b"lowerdir\0\0\0\0\0\0\0\0" => (1, 1, 1),
            b"upperdir\0\0\0\0\0\0\0\0" => (0, 1, 1),
            b"workdir\0\0\0\0\0\0\0\0\0" => (0, 1, 0),
            b"lowerdir+\0\0\0\0\0\0\0" | b"datadir+\0\0\0\0\0\0\0\0" => (0, 0, 1),
            _ => return 0,
        };
        if kind == FS_VALUE_IS_FILE {
            return judge_file(config, value, shows);
        }
        if kind != FS_VALUE_IS_STRING {
            // Nothing else names a directory; the filesystem refuses it.
            return 0;
        }
        let len = read_str(s.text.as_mut_ptr(), PATH_MAX, value);
        if len >= PATH_MAX - 1 {
            s.bad = 1;
        }
        s.text_len = len as u64;
        s.list = list;
        s.escapes = escapes;
        s.shows = shows;
        s.in_layer = 1;
        s.relative_ok = 1;
    }
    judge(config, Hook::LsmFsContextParseParam)
}

#[lsm(hook = "sb_eat_lsm_opts")]
pub fn sb_eat_lsm_opts(ctx: LsmContext) -> i32 {
    // (char *options, void **mnt_opts): mnt_opts is the `security` field
    // of the mount context.
    earlier_denial!(ctx, 2);
    let Some(config) = record::active_module(Module::Mount) else {
        return 0;
    };
    let options: *const u8 = ctx.arg(0);
    if options.is_null() {
        return 0;
    }
    // The verifier refuses a plain read of a `void **` argument.
    let mut mnt_opts: u64 = 0;
    unsafe { generated::bpf_get_func_arg(aya_ebpf::EbpfContext::as_ptr(&ctx), 1, &mut mnt_opts) };
    let fs = kernel::fs_context_type(kernel::fs_context_of_security(mnt_opts as *const u8));
    // A filesystem with a mount context sees each option at
    // fs_context_parse_param.
    if fs.name != OVERLAY || !fs.legacy {
        return 0;
    }
    let Some(s) = OVERLAY_SCAN.get_ptr_mut(0) else {
        return 0;
    };
    let s = unsafe { &mut *s };
    reset(s);
    let len = read_str(s.text.as_mut_ptr(), PATH_MAX, options);
    if len >= PATH_MAX - 1 {
        s.bad = 1;
    }
    s.text_len = len as u64;
    s.whole = 1;
    s.option_start = 1;
    // The filesystem resolves the layers within this mount(2), from this
    // task's working directory.
    s.relative_ok = 1;
    judge(config, Hook::LsmSbEatLsmOpts)
}

#[inline(always)]
fn reset(s: &mut OverlayScan) {
    s.text_len = 0;
    s.layer_len = 0;
    s.root_len = 0;
    s.cwd_len = 0;
    s.whole = 0;
    s.relative_ok = 0;
    s.list = 0;
    s.escapes = 1;
    s.shows = 0;
    s.in_layer = 0;
    s.option_start = 0;
    s.layer_start = 1;
    s.escaped = 0;
    s.skip_until = 0;
    s.seg_len = 0;
    s.seg_dots = 0;
    s.bad = 0;
    s.rule = 0;
}

/// Reads the kernel string at `src` into `dst` (at most `max` bytes, a
/// power of two, the NUL included); its length, 0 when unreadable.
#[inline(always)]
fn read_str(dst: *mut u8, max: usize, src: *const u8) -> usize {
    if src.is_null() {
        return 0;
    }
    let n = unsafe { generated::bpf_probe_read_kernel_str(dst.cast(), max as u32, src.cast()) };
    if n > 1 {
        (n as usize - 1) & (max - 1)
    } else {
        0
    }
}

/// Scans the text, judges each layer, and reports the first one refused.
#[inline(always)]
fn judge(config: &ModuleConfig, hook: Hook) -> i32 {
    let Some(s) = OVERLAY_SCAN.get_ptr_mut(0) else {
        return 0;
    };
    let s = unsafe { &mut *s };
    // Where layers start from: the task's root, and its working directory.
    let (mnt, dentry) = kernel::path_parts(kernel::task_root());
    match kernel::walk_path(mnt, dentry, s.root.as_mut_ptr()) {
        Some((len, false)) => s.root_len = if len == 1 { 0 } else { len as u64 },
        _ => s.bad = 1,
    }
    let (mnt, dentry) = kernel::path_parts(kernel::relative_base(collector_common::AT_FDCWD));
    match kernel::walk_path(mnt, dentry, s.cwd.as_mut_ptr()) {
        Some((len, false)) => s.cwd_len = len as u64,
        _ => s.relative_ok = 0,
    }
    if s.bad != 0 {
        s.rule = u64::from(RULE_PATH_UNRESOLVED);
    } else {
        // One step per byte, and one for the end.
        unsafe {
            generated::bpf_loop(
                (s.text_len as u32 & (PATH_MAX as u32 - 1)) + 1,
                scan_step as *mut core::ffi::c_void,
                core::ptr::null_mut(),
                0,
            )
        };
    }
    let denial = (s.rule != 0).then_some(s.rule as u32);
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    let Some(rec) = MOUNT_SCRATCH.get_ptr_mut(0) else {
        return verdict.lsm_return();
    };
    let rec = unsafe { &mut *rec };
    let len = (s.layer_len as usize) & (PATH_MAX - 1);
    unsafe {
        generated::bpf_probe_read_kernel(
            rec.paths.as_mut_ptr().cast(),
            len as u32,
            s.layer.as_ptr().cast(),
        )
    };
    emit(rec, hook, config, &verdict, len)
}

/// A layer given as an open directory (`lowerdir+` and `datadir+` by
/// descriptor): judged by the path it is open on.
#[inline(always)]
fn judge_file(config: &ModuleConfig, file: *const u8, shows: u64) -> i32 {
    let Some(s) = OVERLAY_SCAN.get_ptr_mut(0) else {
        return 0;
    };
    let s = unsafe { &mut *s };
    s.shows = shows;
    let (mnt, dentry) = if file.is_null() {
        (core::ptr::null(), core::ptr::null())
    } else {
        kernel::path_parts(kernel::file_f_path(file))
    };
    match kernel::walk_path(mnt, dentry, s.layer.as_mut_ptr()) {
        Some((len, false)) => {
            s.layer_len = len as u64;
            layer_denial(s);
        }
        _ => s.rule = u64::from(RULE_PATH_UNRESOLVED),
    }
    let denial = (s.rule != 0).then_some(s.rule as u32);
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    let Some(rec) = MOUNT_SCRATCH.get_ptr_mut(0) else {
        return verdict.lsm_return();
    };
    let rec = unsafe { &mut *rec };
    let len = (s.layer_len as usize) & (PATH_MAX - 1);
    unsafe {
        generated::bpf_probe_read_kernel(
            rec.paths.as_mut_ptr().cast(),
            len as u32,
            s.layer.as_ptr().cast(),
        )
    };
    emit(rec, Hook::LsmFsContextParseParam, config, &verdict, len)
}

/// One byte of the text (or, past its end, the end). Returns 1 to stop:
/// at the end, or at the first refused layer.
#[inline(never)]
extern "C" fn scan_step(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = OVERLAY_SCAN.get_ptr_mut(0) else {
        return 1;
    };
    let s = unsafe { &mut *s };
    let end = index >= s.text_len;
    let c = if end {
        0
    } else {
        s.text[(index as usize) & (PATH_MAX - 1)]
    };
    if index < s.skip_until {
        return 0;
    }
    if s.option_start != 0 {
        s.option_start = 0;
        s.in_layer = 0;
        // lowerdir=, upperdir= and workdir= start a layer option.
        let key = option_key(s, index);
        if key != 0 {
            s.in_layer = 1;
            s.list = u64::from(key == LOWERDIR);
            s.shows = u64::from(key != WORKDIR);
            s.escapes = 1;
            s.layer_start = 1;
            s.skip_until = index + if key == WORKDIR { 8 } else { 9 };
            return 0;
        }
    }
    if s.in_layer == 0 {
        // Another option: pass over it.
        if end {
            return 1;
        }
        if s.escaped != 0 {
            s.escaped = 0;
        } else if c == b'\\' {
            s.escaped = 1;
        } else if c == b',' && s.whole != 0 {
            s.option_start = 1;
        }
        return 0;
    }
    if !end && s.escaped != 0 {
        s.escaped = 0;
        push(s, c);
        return 0;
    }
    if !end && s.escapes != 0 && c == b'\\' {
        s.escaped = 1;
        return 0;
    }
    let option_end = end || (s.whole != 0 && c == b',');
    if option_end || (s.list != 0 && c == b':') {
        if layer_denial(s) {
            return 1;
        }
        s.layer_len = 0;
        s.layer_start = 1;
        s.seg_len = 0;
        s.seg_dots = 0;
        s.bad = 0;
        if option_end {
            s.in_layer = 0;
            s.option_start = 1;
        }
        return i64::from(end);
    }
    push(s, c);
    0
}

const LOWERDIR: u8 = 1;
const UPPERDIR: u8 = 2;
const WORKDIR: u8 = 3;

/// Which layer key the option at `at` starts with; 0 for none.
#[inline(always)]
fn option_key(s: &OverlayScan, at: u64) -> u8 {
    let byte = |i: u64| -> u8 {
        if at + i >= s.text_len {
            0
        } else {
            s.text[((at + i) as usize) & (PATH_MAX - 1)]
        }
    };
    let is = |key: &[u8; 9], n: u64| -> bool {
        let mut i = 0;
        while i < n {
            if byte(i) != key[i as usize] {
                return false;
            }
            i += 1;
        }
        true
    };
    if is(b"lowerdir=", 9) {
        LOWERDIR
    } else if is(b"upperdir=", 9) {
        UPPERDIR
    } else if is(b"workdir=\0", 8) {
        WORKDIR
    } else {
        0
    }
}

/// Adds one byte to the layer, starting it from the root or the working
/// directory, and keeps track of whether it is still canonical.
#[inline(always)]
fn push(s: &mut OverlayScan, c: u8) {
    if s.layer_start != 0 {
        s.layer_start = 0;
        let (from, n) = if c == b'/' {
            (s.root.as_ptr(), s.root_len)
        } else {
            if s.relative_ok == 0 {
                s.bad = 1;
            }
            (s.cwd.as_ptr(), s.cwd_len)
        };
        let n = (n as usize) & (PATH_MAX - 1);
        unsafe {
            generated::bpf_probe_read_kernel(s.layer.as_mut_ptr().cast(), n as u32, from.cast())
        };
        s.layer_len = n as u64;
        if c != b'/' && n != 1 {
            s.layer[n & (PATH_MAX - 1)] = b'/';
            s.layer_len += 1;
        }
        s.seg_len = 0;
        s.seg_dots = 0;
        if c == b'/' && n != 0 {
            // The root's path, then this layer's own leading slash.
            s.seg_len = 1;
        }
    }
    let len = s.layer_len as usize;
    if len >= PATH_MAX - 1 {
        s.bad = 1;
        return;
    }
    if c == b'/' {
        if len > 0 && (s.seg_len == 0 || (s.seg_len == s.seg_dots && s.seg_len <= 2)) {
            s.bad = 1;
        }
        s.seg_len = 0;
        s.seg_dots = 0;
    } else {
        s.seg_len += 1;
        if c == b'.' {
            s.seg_dots += 1;
        }
    }
    s.layer[len & (PATH_MAX - 1)] = c;
    s.layer_len = len as u64 + 1;
}

/// Judges the layer read so far; true (with `s.rule` set) when refused.
#[inline(always)]
fn layer_denial(s: &mut OverlayScan) -> bool {
    if s.layer_len == 0 {
        // An empty entry (`::`, which starts the data-only layers).
        return false;
    }
    if s.seg_len != 0 && s.seg_len == s.seg_dots && s.seg_len <= 2 {
        s.bad = 1;
    }
    if s.bad != 0 {
        s.rule = u64::from(RULE_PATH_UNRESOLVED);
        return true;
    }
    let Some(config) = record::active_module(Module::Mount) else {
        return false;
    };
    let mut len = (s.layer_len as usize) & (PATH_MAX - 1);
    if len > 1 && s.layer[kernel::bounded(len - 1, PATH_MAX - 1)] == b'/' {
        len -= 1;
    }
    if let Some(rule) = record::path_denial(mount_rules(config), config, s.layer.as_ptr(), len) {
        s.rule = u64::from(rule);
        return true;
    }
    if s.shows != 0 {
        // The root's entry is "/" itself: looked up as the empty name.
        let map = if config.generation == 0 {
            &crate::maps::MOUNT_ANCESTORS_0
        } else {
            &crate::maps::MOUNT_ANCESTORS_1
        };
        let name_len = if len == 1 { 0 } else { len };
        if let Some(rule) = record::ancestor_denial(map, s.layer.as_ptr(), name_len) {
            s.rule = u64::from(rule);
            return true;
        }
    }
    false
}

#[inline(always)]
fn emit(
    rec: &mut MountRecord,
    hook: Hook,
    config: &ModuleConfig,
    verdict: &record::Verdict,
    source_len: usize,
) -> i32 {
    let ev = &mut rec.event;
    ev.header = record::header(EventKind::Mount, hook, config.mode, verdict);
    kernel::current_process(&mut ev.process);
    ev.op = MountOp::Mount as u8;
    ev.flags = 0;
    ev.source_len = source_len as u16;
    ev.target_len = 0;
    ev.fstype = [0; FSTYPE_LEN];
    ev.fstype[..OVERLAY.len()].copy_from_slice(&OVERLAY);
    record::submit(
        hook,
        (rec as *const MountRecord).cast(),
        MOUNT_EVENT_SIZE + (source_len & (PATH_MAX - 1)),
    );
    verdict.lsm_return()
}
