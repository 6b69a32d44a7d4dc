//! The file module: one BPF-LSM program per hook, all judged against the
//! same path-prefix rules (`FILE_RULES`).
//!
//! `file_open`, `mmap_file`, `file_ioctl` and `file_receive` get the path
//! from `bpf_d_path` (or, for a task in a chroot, from the walk); the
//! `path_*` hooks, where the kernel does not allow it, walk the dentries
//! (`kernel::walk_path`). Every path is named from the root of the task's
//! mount namespace, never from a root the task chose.

use aya_ebpf::{helpers::generated::bpf_d_path, macros::lsm, programs::LsmContext};
use collector_common::{
    AT_FDCWD, EventKind, FLAG_FILE_IDENTITIES, FLAG_FILE_IDENTITY_FIRST, FLAG_FILE_IOCTL, Hook,
    Module, ModuleConfig, PATH_MAX, PATH_TRUNCATED, POLICY_WHITELIST, PathRule,
    RULE_PATH_UNRESOLVED,
    file::{FILE_EVENT_SIZE, FileOp, FileRecord},
};

use crate::{
    kernel,
    maps::{FILE_SCRATCH, file_ancestors, file_rules},
    record::{self, Verdict},
};

#[inline(always)]
fn scratch() -> Option<&'static mut FileRecord> {
    FILE_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Fills the record's fixed part and hands `paths[..len1 + len2]` over.
// Inlined into each hook: arguments stay in registers, where a struct of
// them would take stack.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn emit(
    rec: &mut FileRecord,
    hook: Hook,
    config: &ModuleConfig,
    verdict: &Verdict,
    op: FileOp,
    arg: u64,
    len1: usize,
    len2: usize,
) {
    let ev = &mut rec.event;
    ev.header = record::header(EventKind::File, hook, config.mode, verdict);
    kernel::current_process(&mut ev.process);
    ev.op = op as u8;
    ev.dfd = AT_FDCWD;
    ev.arg = arg;
    ev.path_len = len1 as u16;
    ev.path2_len = len2 as u16;
    record::submit(
        hook,
        (rec as *const FileRecord).cast(),
        FILE_EVENT_SIZE + (len1 & (PATH_MAX - 1)) + (len2 & (PATH_MAX - 1)),
    );
}

/// What `bpf_d_path` made of a file's path.
enum FilePath {
    /// An absolute path of this length.
    Whole(usize),
    /// No path at all: pipes, sockets and anonymous inodes are outside
    /// any policy.
    Nameless,
    /// A path that could not be built (longer than PATH_MAX).
    Unresolved,
}

/// `bpf_d_path(&file->f_path)` into the record.
#[inline(always)]
fn file_path(rec: &mut FileRecord, file: *const u8) -> FilePath {
    let path = kernel::file_f_path(file);
    let len = unsafe {
        bpf_d_path(
            path as *mut _,
            rec.paths.as_mut_ptr().cast(),
            PATH_MAX as u32,
        )
    };
    if len < 0 {
        return FilePath::Unresolved;
    }
    if len <= 1 || rec.paths[0] != b'/' {
        return FilePath::Nameless;
    }
    // d_path's length counts the NUL.
    FilePath::Whole((len as usize - 1) & (PATH_MAX - 1))
}

/// The file's path from the real root, walked (`kernel::walk_path`).
#[inline(always)]
fn walked_file_path(rec: &mut FileRecord, file: *const u8) -> FilePath {
    let (mnt, dentry) = kernel::path_parts(kernel::file_f_path(file));
    match kernel::walk_path(mnt, dentry, rec.paths.as_mut_ptr()) {
        Some((len, false)) => FilePath::Whole(len),
        _ => FilePath::Unresolved,
    }
}

/// `statfs` magic numbers of the filesystems whose files have no path
/// (`bpf_d_path` names them without a leading `/`): pipes, sockets,
/// anonymous inodes, namespaces, pidfds, DMA buffers, secret memory. For
/// the hook that cannot call `bpf_d_path` (`file_ioctl_compat`).
const NAMELESS_FILESYSTEMS: [u64; 7] = [
    0x5049_5045, // pipefs
    0x534f_434b, // sockfs
    0x0904_1934, // anon_inodefs
    0x6e73_6673, // nsfs
    0x5049_4446, // pidfs
    0x444d_4142, // dmabuf
    0x5345_434d, // secretmem
];

/// What `dentry` answers to by identity, where the policy has identities,
/// and whether that settles it (`kernel::identity_rule`).
#[inline(always)]
fn by_identity(config: &ModuleConfig, dentry: *const u8) -> (PathRule, bool) {
    if config.flags & FLAG_FILE_IDENTITIES != 0 && !dentry.is_null() {
        kernel::identity_rule(dentry, config.generation)
    } else {
        (PathRule::default(), false)
    }
}

/// [`by_identity`]'s rule, for the `path_*` hooks
/// (`kernel::looped_identity_rule`).
#[inline(always)]
fn by_identity_looped(config: &ModuleConfig, dentry: *const u8) -> PathRule {
    if config.flags & FLAG_FILE_IDENTITIES != 0 && !dentry.is_null() {
        kernel::looped_identity_rule(dentry, config.generation)
    } else {
        PathRule::default()
    }
}

/// A hook on a `struct file *`: open, mmap, ioctl. `ioctl_arg` is an
/// ioctl's argument (0 for the others). `d_path`: whether the hook may
/// call `bpf_d_path`; where not, the path is walked.
#[inline(always)]
fn judge_file(
    file: *const u8,
    hook: Hook,
    op: FileOp,
    arg: u64,
    ioctl_arg: u64,
    d_path: bool,
) -> i32 {
    let Some(config) = record::active_module(Module::Files) else {
        return 0;
    };
    // A btrfs snapshot or send copies a whole subvolume without opening
    // its files: judged by the denied files in it, `ioctl: true` or not.
    let copied = if op == FileOp::Ioctl && config.flags & FLAG_FILE_IDENTITIES != 0 {
        kernel::subvolume_copy_rule(file, arg as u32, ioctl_arg, config.generation)
    } else {
        0
    };
    if op == FileOp::Ioctl && config.flags & FLAG_FILE_IOCTL == 0 && copied == 0 {
        return 0;
    }
    // Identities first: for most files they settle the answer, and the
    // path need not be built at all.
    let (_, dentry) = kernel::load_path_parts(kernel::file_f_path(file));
    let (mut identity, mut settled) = by_identity(config, dentry);
    if copied != 0 && identity.deny_rule == 0 {
        (identity.deny_rule, settled) = (copied, false);
    }
    let mut real = PathRule::default();
    if config.flags & FLAG_FILE_IDENTITIES != 0
        && let Some(rule) = kernel::real_inode_rule(file, dentry, config.generation)
    {
        (real, settled) = (rule, false);
    }
    if settled
        && config.flags & FLAG_FILE_IDENTITY_FIRST != 0
        && identity.deny_rule == 0
        && (config.policy != POLICY_WHITELIST || identity.allow_rule != 0)
    {
        return 0;
    }
    let Some(rec) = scratch() else { return 0 };
    let named = if !d_path {
        if NAMELESS_FILESYSTEMS.contains(&kernel::file_fs_magic(file)) {
            FilePath::Nameless
        } else {
            walked_file_path(rec, file)
        }
    } else {
        match file_path(rec, file) {
            // Named relative to a chroot: walk to the real root instead.
            FilePath::Whole(_) if kernel::chrooted() => walked_file_path(rec, file),
            named => named,
        }
    };
    let (denial, len, cut) = match named {
        FilePath::Whole(len) => (
            record::as_denial(record::file_path_denial(
                file_rules(config),
                config,
                rec,
                len,
            )),
            len,
            false,
        ),
        FilePath::Nameless => return 0,
        FilePath::Unresolved => {
            // Report the innermost part the walk can build.
            let (mnt, dentry) = kernel::path_parts(kernel::file_f_path(file));
            let len =
                kernel::walk_path(mnt, dentry, rec.paths.as_mut_ptr()).map_or(0, |(len, _)| len);
            (RULE_PATH_UNRESOLVED, len, true)
        }
    };
    let denial = record::with_identity(record::with_identity(denial, &identity), &real);
    let Some(verdict) = record::verdict(config, record::denial_of(denial), true) else {
        return 0;
    };
    rec.event.path_flags = if cut { PATH_TRUNCATED } else { 0 };
    if op == FileOp::Open {
        rec.event.open_flags = kernel::file_f_flags(file);
        rec.event.fmode = kernel::file_f_mode(file);
    } else {
        rec.event.open_flags = 0;
        rec.event.fmode = 0;
    }
    emit(rec, hook, config, &verdict, op, arg, len, 0);
    verdict.lsm_return()
}

/// A hook on one `(vfsmount, dentry)`, or two for a rename.
#[inline(always)]
fn judge_paths(
    first: (*const u8, *const u8),
    second: Option<(*const u8, *const u8)>,
    hook: Hook,
    op: FileOp,
    arg: u64,
) -> i32 {
    let Some(config) = record::active_module(Module::Files) else {
        return 0;
    };
    let Some(rec) = scratch() else { return 0 };
    let base = rec.paths.as_mut_ptr();
    let Some((len1, cut1)) = kernel::walk_path(first.0, first.1, base) else {
        return 0;
    };
    let mut denial = record::unless_cut(
        record::with_identity(
            record::as_denial(record::file_path_denial(
                file_rules(config),
                config,
                rec,
                len1,
            )),
            &by_identity_looped(config, first.1),
        ),
        cut1,
    );
    // A rename also moves what lies below: renaming an ancestor of a
    // denied path would give the denied file a name no rule speaks of.
    let renamed_ancestor = |path: *const u8, len: usize| {
        if op == FileOp::Rename {
            record::as_denial(record::ancestor_denial(file_ancestors(config), path, len))
        } else {
            record::NO_DENIAL
        }
    };
    if denial == record::NO_DENIAL {
        denial = renamed_ancestor(base, len1);
    }
    let (mut len2, mut cut2) = (0, false);
    if let Some((mnt, dentry)) = second {
        let at = unsafe { base.add(len1 & (PATH_MAX - 1)) };
        if let Some((len, cut)) = kernel::walk_path(mnt, dentry, at) {
            (len2, cut2) = (len, cut);
            if denial == record::NO_DENIAL {
                denial = record::unless_cut(
                    record::with_identity(
                        record::as_denial(record::path_denial(
                            file_rules(config),
                            config,
                            at,
                            len2,
                        )),
                        &by_identity_looped(config, dentry),
                    ),
                    cut2,
                );
            }
            if denial == record::NO_DENIAL {
                denial = renamed_ancestor(at, len2);
            }
        }
    }
    let denial = record::denial_of(denial);
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    rec.event.path_flags = if cut1 || cut2 { PATH_TRUNCATED } else { 0 };
    rec.event.open_flags = 0;
    rec.event.fmode = 0;
    emit(rec, hook, config, &verdict, op, arg, len1, len2);
    verdict.lsm_return()
}

/// `(vfsmount of dir, dentry)`: the child `dentry` lives under `dir`.
#[inline(always)]
fn under(dir: *const u8, dentry: *const u8) -> (*const u8, *const u8) {
    (kernel::path_parts(dir).0, dentry)
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 1);
    judge_file(ctx.arg(0), Hook::LsmFileOpen, FileOp::Open, 0, 0, true)
}

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 4);
    let file: *const u8 = ctx.arg(0);
    if file.is_null() {
        return 0; // anonymous memory
    }
    let prot: u64 = ctx.arg(2);
    let flags: u64 = ctx.arg(3);
    judge_file(
        file,
        Hook::LsmMmapFile,
        FileOp::Mmap,
        (prot & 0xffff_ffff) | (flags << 32),
        0,
        true,
    )
}

#[lsm(hook = "file_ioctl")]
pub fn file_ioctl(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    judge_ioctl(&ctx, Hook::LsmFileIoctl, true)
}

/// A 32-bit program's ioctl (`compat_sys_ioctl`), where the kernel has
/// this hook: judged as [`file_ioctl`]. The kernel keeps `bpf_d_path`
/// from this hook.
#[lsm(hook = "file_ioctl_compat")]
pub fn file_ioctl_compat(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    judge_ioctl(&ctx, Hook::LsmFileIoctlCompat, false)
}

/// `(struct file *file, unsigned int cmd, unsigned long arg)`.
#[inline(always)]
fn judge_ioctl(ctx: &LsmContext, hook: Hook, d_path: bool) -> i32 {
    let cmd: u32 = ctx.arg(1);
    judge_file(
        ctx.arg(0),
        hook,
        FileOp::Ioctl,
        u64::from(cmd),
        ctx.arg(2),
        d_path,
    )
}

#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 2);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        None,
        Hook::LsmPathUnlink,
        FileOp::Unlink,
        0,
    )
}

#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 2);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        None,
        Hook::LsmPathRmdir,
        FileOp::Rmdir,
        0,
    )
}

#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 5);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        Some(under(ctx.arg(2), ctx.arg(3))),
        Hook::LsmPathRename,
        FileOp::Rename,
        0,
    )
}

#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 1);
    judge_paths(
        kernel::load_path_parts(ctx.arg(0)),
        None,
        Hook::LsmPathTruncate,
        FileOp::Truncate,
        0,
    )
}

#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 2);
    let mode: u16 = ctx.arg(1);
    judge_paths(
        kernel::load_path_parts(ctx.arg(0)),
        None,
        Hook::LsmPathChmod,
        FileOp::Chmod,
        u64::from(mode),
    )
}

#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    let uid: u32 = ctx.arg(1);
    let gid: u32 = ctx.arg(2);
    judge_paths(
        kernel::load_path_parts(ctx.arg(0)),
        None,
        Hook::LsmPathChown,
        FileOp::Chown,
        u64::from(uid) | (u64::from(gid) << 32),
    )
}

#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    // The existing file is on the new name's mount (no link crosses one).
    let new_dir: *const u8 = ctx.arg(1);
    judge_paths(
        under(new_dir, ctx.arg(0)),
        Some(under(new_dir, ctx.arg(2))),
        Hook::LsmPathLink,
        FileOp::Link,
        0,
    )
}

#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        None,
        Hook::LsmPathSymlink,
        FileOp::Symlink,
        0,
    )
}

#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 3);
    let mode: u16 = ctx.arg(2);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        None,
        Hook::LsmPathMkdir,
        FileOp::Mkdir,
        u64::from(mode),
    )
}

#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 4);
    let mode: u16 = ctx.arg(2);
    let dev: u32 = ctx.arg(3);
    judge_paths(
        under(ctx.arg(0), ctx.arg(1)),
        None,
        Hook::LsmPathMknod,
        FileOp::Mknod,
        u64::from(mode) | (u64::from(dev) << 32),
    )
}

/// A descriptor passed over a Unix socket (`SCM_RIGHTS`) is judged as the
/// receiver opening the file: a task out of scope, or one that opened the
/// file before the rule, cannot hand it over.
#[lsm(hook = "file_receive")]
pub fn file_receive(ctx: LsmContext) -> i32 {
    earlier_denial!(ctx, 1);
    judge_file(
        ctx.arg(0),
        Hook::LsmFileReceive,
        FileOp::Receive,
        0,
        0,
        true,
    )
}
