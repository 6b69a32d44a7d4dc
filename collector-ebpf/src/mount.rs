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
    let earlier: i32 = ctx.arg(5);
    if earlier != 0 {
        return if (-4095..0).contains(&earlier) {
            earlier
        } else {
            -1
        };
    }
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
    if source_len == 0 || rec.paths[0] != b'/' {
        return 0;
    }
    let denial = record::path_denial(mount_rules(config), config, rec.paths.as_ptr(), source_len);
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
    let earlier: i32 = ctx.arg(2);
    if earlier != 0 {
        return if (-4095..0).contains(&earlier) {
            earlier
        } else {
            -1
        };
    }
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
        .or_else(|| identity_denial(config, kernel::load_path_parts(from).1));
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

/// The deny rule a tree rooted at `dentry` (a typed pointer) answers to
/// by identity: a denied source at or above it on its filesystem, its
/// filesystem a denied device, or it the directory above a denied source
/// (mounting it would show the source). A tree deeper than
/// `MOUNT_WALK_STEPS` below its filesystem's root cannot be told: refused
/// (fail closed).
#[inline(always)]
fn identity_denial(config: &ModuleConfig, dentry: *const u8) -> Option<u32> {
    if dentry.is_null() {
        return None;
    }
    let map = mount_inodes(config);
    let device = InodeKey {
        ino: 0,
        dev: kernel::dentry_dev(dentry),
        _pad: 0,
    };
    if let Some(rule) = unsafe { map.get(&device) }
        && rule.below != 0
    {
        return Some(rule.below);
    }
    let mut d = dentry;
    for step in 0..MOUNT_WALK_STEPS {
        let inode = kernel::dentry_inode(d);
        if let Some(key) = kernel::inode_key(inode)
            && let Some(rule) = unsafe { map.get(&key) }
        {
            if rule.below != 0 {
                return Some(rule.below);
            }
            if step == 0 && rule.at != 0 {
                return Some(rule.at);
            }
        }
        let parent = kernel::dentry_parent(d);
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
