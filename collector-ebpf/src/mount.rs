//! The mount module: deny mounts by source path (`sb_mount` for mount(2),
//! `move_mount` for move_mount(2)), as safeguard does.

use aya_ebpf::{helpers::generated, macros::lsm, programs::LsmContext};
use collector_common::{
    EventKind, Hook, InodeKey, Module, ModuleConfig, PATH_MAX, RULE_PATH_UNRESOLVED,
    mount::{FSTYPE_LEN, MOUNT_EVENT_SIZE, MOUNT_WALK_STEPS, MountOp, MountRecord},
};

use crate::{
    kernel,
    maps::{MOUNT_SCRATCH, mount_inodes, mount_rules},
    record::{self, Verdict},
};

#[lsm(hook = "sb_mount")]
pub fn sb_mount(ctx: LsmContext) -> i32 {
    // (const char *dev_name, const struct path *path, const char *type,
    //  unsigned long flags, void *data)
    earlier_denial!(ctx, 5);
    let Some(config) = record::active_module(Module::Mount) else {
        return 0;
    };
    let Some(rec) = MOUNT_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };
    let dev_name: *const u8 = ctx.arg(0);
    let fstype: *const u8 = ctx.arg(2);
    let flags: u64 = ctx.arg(3);

    // The source as given; only an absolute path can match a rule.
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(
            rec.paths.as_mut_ptr().cast(),
            PATH_MAX as u32,
            dev_name.cast(),
        )
    };
    let source_len = if n > 1 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        0
    };
    // A remount (`-o remount,bind,ro`) changes flags, not what is mounted.
    let bind = flags & MS_BIND != 0 && flags & MS_REMOUNT == 0;
    // A bind's source is a path the kernel resolves after this hook: one
    // spelled with `.` or `..` components, doubled slashes or relative to
    // the working directory cannot be told here, so it is refused in
    // block mode (fail closed). A descriptor's link (/proc/self/fd/N, how
    // container runtimes name bind sources) is followed to the directory
    // open on it. Other mounts name a device, or nothing: only an
    // absolute source can match a rule.
    let absolute = source_len > 0 && rec.paths[0] == b'/';
    let denial = if bind && !absolute {
        Some(RULE_PATH_UNRESOLVED)
    } else if !absolute {
        return 0;
    } else if let Some(fd) = own_fd_link(&rec.paths, source_len) {
        fd_denial(config, fd)
    } else if !canonical(&rec.paths, source_len) {
        Some(RULE_PATH_UNRESOLVED)
    } else {
        record::path_denial(mount_rules(config), config, rec.paths.as_ptr(), source_len).or_else(
            || {
                bind.then(|| ancestor_denial(config, &rec.paths, source_len))
                    .flatten()
            },
        )
    };
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    let (mnt, dentry) = kernel::path_parts(ctx.arg(1));
    let target = unsafe { rec.paths.as_mut_ptr().add(source_len) };
    let target_len = kernel::walk_path(mnt, dentry, target).map_or(0, |(len, _)| len);
    rec.event.fstype = [0; FSTYPE_LEN];
    if !fstype.is_null() {
        unsafe {
            generated::bpf_probe_read_kernel_str(
                rec.event.fstype.as_mut_ptr().cast(),
                FSTYPE_LEN as u32,
                fstype.cast(),
            )
        };
    }
    emit(
        rec,
        Hook::LsmSbMount,
        config,
        &verdict,
        MountOp::Mount,
        flags,
        source_len,
        target_len,
    )
}

#[lsm(hook = "move_mount")]
pub fn move_mount(ctx: LsmContext) -> i32 {
    // (const struct path *from_path, const struct path *to_path)
    earlier_denial!(ctx, 2);
    let Some(config) = record::active_module(Module::Mount) else {
        return 0;
    };
    let Some(rec) = MOUNT_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let rec = unsafe { &mut *rec };
    let from: *const u8 = ctx.arg(0);
    let (mnt, dentry) = kernel::path_parts(from);
    let Some((source_len, _)) = kernel::walk_path(mnt, dentry, rec.paths.as_mut_ptr()) else {
        return 0;
    };
    // By path, then by identity: a tree cloned with open_tree(2) or made
    // with fsmount(2) is detached, and its path says only "/".
    let denial = record::path_denial(mount_rules(config), config, rec.paths.as_ptr(), source_len)
        .or_else(|| identity_denial(config, dentry));
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    let (mnt, dentry) = kernel::path_parts(ctx.arg(1));
    let target = unsafe { rec.paths.as_mut_ptr().add(source_len & (PATH_MAX - 1)) };
    let target_len = kernel::walk_path(mnt, dentry, target).map_or(0, |(len, _)| len);
    rec.event.fstype = [0; FSTYPE_LEN];
    emit(
        rec,
        Hook::LsmMoveMount,
        config,
        &verdict,
        MountOp::Move,
        0,
        source_len,
        target_len,
    )
}

/// `MS_BIND`, `MS_REMOUNT`.
const MS_BIND: u64 = 0x1000;
const MS_REMOUNT: u64 = 0x20;

/// The descriptor a source of the form `/proc/self/fd/N` or
/// `/proc/thread-self/fd/N` names.
#[inline(always)]
fn own_fd_link(source: &[u8; 2 * PATH_MAX], len: usize) -> Option<i32> {
    const SELF: &[u8] = b"/proc/self/fd/";
    const THREAD_SELF: &[u8] = b"/proc/thread-self/fd/";
    let start = if source[..SELF.len()] == *SELF {
        SELF.len()
    } else if source[..THREAD_SELF.len()] == *THREAD_SELF {
        THREAD_SELF.len()
    } else {
        return None;
    };
    // At most 9 digits, then the end.
    let mut fd: i32 = 0;
    let mut digits = 0;
    for i in 0..10 {
        let at = start + i;
        if at >= len {
            break;
        }
        let c = source[at & (2 * PATH_MAX - 1)];
        if !c.is_ascii_digit() || i == 9 {
            return None;
        }
        fd = fd * 10 + i32::from(c - b'0');
        digits += 1;
    }
    (digits > 0).then_some(fd)
}

/// The deny rule of the directory open on the current task's `fd`, by its
/// path and by identity; a descriptor that is not open cannot be told.
#[inline(always)]
fn fd_denial(config: &ModuleConfig, fd: i32) -> Option<u32> {
    let path = kernel::relative_base(fd);
    if path.is_null() {
        return Some(RULE_PATH_UNRESOLVED);
    }
    let (mnt, dentry) = kernel::path_parts(path);
    let scratch = crate::maps::MOUNT_FD_SCRATCH.get_ptr_mut(0)?;
    let scratch = unsafe { &mut *scratch };
    let by_path = match kernel::walk_path(mnt, dentry, scratch.as_mut_ptr()) {
        Some((len, false)) => {
            record::path_denial(mount_rules(config), config, scratch.as_ptr(), len)
        }
        _ => None,
    };
    by_path.or_else(|| identity_denial(config, dentry))
}

/// Whether the canonical absolute `source` (`len` bytes) is a directory
/// above a denied source, the root included: a bind of it would show the
/// source. A trailing slash is not part of the name. Looked up in a
/// one-step `bpf_loop`, so that the verifier checks the lookup once rather
/// than on every path through `sb_mount`, which it could not afford.
#[inline(always)]
fn ancestor_denial(config: &ModuleConfig, source: &[u8; 2 * PATH_MAX], len: usize) -> Option<u32> {
    let mut look = AncestorLookup {
        buf: source.as_ptr(),
        len: len as u64,
        set: u64::from(config.generation),
        rule: 0,
    };
    unsafe {
        generated::bpf_loop(
            1,
            ancestor_step as *mut core::ffi::c_void,
            (&mut look as *mut AncestorLookup).cast(),
            0,
        )
    };
    (look.rule != 0).then_some(look.rule as u32)
}

/// State of [`ancestor_denial`], shared with its callback.
#[repr(C)]
struct AncestorLookup {
    buf: *const u8,
    len: u64,
    /// The policy set in force.
    set: u64,
    /// The deny rule found; 0 for none.
    rule: u64,
}

#[inline(never)]
extern "C" fn ancestor_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let look = unsafe { &mut *ctx.cast::<AncestorLookup>() };
    let mut len = (look.len as usize) & (PATH_MAX - 1);
    if len > 1 && unsafe { *look.buf.add(len - 1) } == b'/' {
        len -= 1;
    }
    // The root's entry is "/" itself: looked up as the empty name.
    if len == 1 {
        len = 0;
    }
    let map = if look.set == 0 {
        &crate::maps::MOUNT_ANCESTORS_0
    } else {
        &crate::maps::MOUNT_ANCESTORS_1
    };
    if let Some(rule) = record::ancestor_denial(map, look.buf, len) {
        look.rule = u64::from(rule);
    }
    1
}

/// State of the scan for `.`/`..` components and doubled slashes, shared
/// with its `bpf_loop` callback.
#[repr(C)]
struct Canonical {
    buf: *const u8,
    len: u64,
    ok: u64,
}

/// Whether the absolute path in `source` (`len` bytes) has no `.` or `..`
/// component and no doubled slash.
#[inline(always)]
fn canonical(source: &[u8; 2 * PATH_MAX], len: usize) -> bool {
    let mut scan = Canonical {
        buf: source.as_ptr(),
        len: len as u64,
        ok: 1,
    };
    unsafe {
        generated::bpf_loop(
            len as u32,
            canonical_step as *mut core::ffi::c_void,
            (&mut scan as *mut Canonical).cast(),
            0,
        )
    };
    scan.ok != 0
}

#[inline(never)]
extern "C" fn canonical_step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let scan = unsafe { &mut *ctx.cast::<Canonical>() };
    let at = |i: u64| -> u8 {
        if i >= scan.len {
            b'/' // the end reads as a separator
        } else {
            unsafe { *scan.buf.add((i as usize) & (2 * PATH_MAX - 1)) }
        }
    };
    if at(index) != b'/' || index + 1 >= scan.len {
        return 0;
    }
    let (a, b, c) = (at(index + 1), at(index + 2), at(index + 3));
    if a == b'/' || (a == b'.' && b == b'/') || (a == b'.' && b == b'.' && c == b'/') {
        scan.ok = 0;
        return 1;
    }
    0
}

/// The deny rule a tree rooted at `dentry` answers to by identity: a
/// denied source at or above it on its filesystem, its filesystem a denied
/// device, or it the directory above a denied source (mounting it would
/// show the source). A tree deeper than `MOUNT_WALK_STEPS` below its
/// filesystem's root cannot be told: refused (fail closed). Mounts are
/// rare: helper reads, so any dentry will do.
#[inline(always)]
fn identity_denial(config: &ModuleConfig, dentry: *const u8) -> Option<u32> {
    if dentry.is_null() {
        return None;
    }
    let map = mount_inodes(config);
    let mut d = dentry;
    for step in 0..MOUNT_WALK_STEPS {
        let (key, parent) = kernel::dentry_step(d);
        if let Some(key) = key {
            if step == 0 {
                let device = InodeKey { ino: 0, ..key };
                if let Some(rule) = unsafe { map.get(&device) }
                    && rule.below != 0
                {
                    return Some(rule.below);
                }
            }
            if let Some(rule) = unsafe { map.get(&key) } {
                if rule.below != 0 {
                    return Some(rule.below);
                }
                if step == 0 && rule.at != 0 {
                    return Some(rule.at);
                }
            }
        }
        if parent.is_null() || parent == d {
            return None;
        }
        d = parent;
    }
    Some(RULE_PATH_UNRESOLVED)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    rec: &mut MountRecord,
    hook: Hook,
    config: &ModuleConfig,
    verdict: &Verdict,
    op: MountOp,
    flags: u64,
    source_len: usize,
    target_len: usize,
) -> i32 {
    let ev = &mut rec.event;
    ev.header = record::header(EventKind::Mount, hook, config.mode, verdict);
    kernel::current_process(&mut ev.process);
    ev.op = op as u8;
    ev.flags = flags;
    ev.source_len = source_len as u16;
    ev.target_len = target_len as u16;
    record::submit(
        hook,
        (rec as *const MountRecord).cast(),
        MOUNT_EVENT_SIZE + (source_len & (PATH_MAX - 1)) + (target_len & (PATH_MAX - 1)),
    );
    verdict.lsm_return()
}
