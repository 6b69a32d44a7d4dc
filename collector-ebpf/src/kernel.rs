//! What the programs read from the kernel beyond helper calls: struct field
//! offsets (set by the agent from the running kernel's BTF before load), the
//! current task's identity, and paths built from dentries.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    generated::{self, bpf_get_current_cgroup_id, bpf_get_current_task},
};
use collector_common::{AT_FDCWD, PATH_MAX, ProcessInfo};

use crate::maps::{CONTAINER_CGROUPS, WALK_SCRATCH};

// Read-only globals, rewritten by the agent before load: struct field
// offsets (`collector_common::kernel_offsets!`) and `collector_common::globals`.
// The loader freezes `.rodata`, so the verifier sees these as constants; that
// is what lets `file + FILE_F_PATH_OFFSET` stay a typed `struct path *`.
macro_rules! globals {
    ($($name:ident),* $(,)?) => {
        $(
            #[unsafe(no_mangle)]
            static $name: u64 = 0;
        )*
    };
}

macro_rules! offset_globals {
    ($($name:ident: $strukt:ident.$field:ident,)*) => {
        globals!($($name),*);
    };
}

collector_common::kernel_offsets!(offset_globals);

globals!(
    POLICY_EPOCH,
    AUDIT_RATE_LIMIT,
    BTRFS_SUBVOLUMES,
    BTRFS_INODE_ROOT_OFFSET,
    BTRFS_ROOT_ANON_DEV_OFFSET,
);

/// `value & mask`, with the mask kept in the program: the compiler would
/// drop a mask it can prove redundant, and the verifier, which may have
/// lost track of the bound (a spilled register), then rejects the access.
#[inline(always)]
pub fn bounded(value: usize, mask: usize) -> usize {
    unsafe { core::ptr::read_volatile(&value) & mask }
}

#[inline(always)]
fn global(g: &'static u64) -> usize {
    // A volatile read keeps the compiler from folding the placeholder 0.
    unsafe { core::ptr::read_volatile(g) as usize }
}

/// Which agent's programs these are (`collector_common::globals::POLICY_EPOCH`).
#[inline(always)]
pub fn policy_epoch() -> u32 {
    global(&POLICY_EPOCH) as u32
}

/// `kernel.audit_rate_limit` (`collector_common::globals::AUDIT_RATE_LIMIT`).
#[inline(always)]
pub fn audit_rate_limit() -> u64 {
    global(&AUDIT_RATE_LIMIT) as u64
}

/// Reads a `T` at `base + offset`; zero when the read faults.
#[inline(always)]
pub fn read<T: Default>(base: *const u8, offset: &'static u64) -> T {
    if base.is_null() {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel(base.add(global(offset)).cast::<T>()) }.unwrap_or_default()
}

#[inline(always)]
fn read_ptr(base: *const u8, offset: &'static u64) -> *const u8 {
    read::<usize>(base, offset) as *const u8
}

/// Whether identities on a filesystem of `magic` take their device from
/// each inode's btrfs subvolume ([`subvolume_dev`]).
///
/// The global is tested first: the verifier knows it (frozen `.rodata`),
/// and where it is 0 it drops the test of `magic` and the paths it would
/// split.
#[inline(always)]
fn subvolume_devices(magic: u64) -> bool {
    global(&BTRFS_SUBVOLUMES) != 0 && magic == collector_common::BTRFS_MAGIC
}

/// Stands for "each inode's subvolume's" in an [`IdentityWalk`]'s `dev`.
const DEV_OF_SUBVOLUME: u64 = u64::MAX;

/// The device number `stat` gives a btrfs inode, its subvolume's
/// (`BTRFS_I(inode)->root->anon_dev`); the superblock's `s_dev` is none of
/// them. `inode` is a btrfs `struct inode *`.
#[inline(always)]
fn subvolume_dev(inode: *const u8) -> u32 {
    // `root` lies before `vfs_inode` in `struct btrfs_inode`: the offset
    // wraps.
    let at = (inode as usize).wrapping_add(global(&BTRFS_INODE_ROOT_OFFSET));
    let root: usize = unsafe { bpf_probe_read_kernel(at as *const usize) }.unwrap_or(0);
    read::<u32>(root as *const u8, &BTRFS_ROOT_ANON_DEV_OFFSET)
}

/// The id of a cgroup of the v2 hierarchy (its kernfs node's, as
/// `bpf_get_current_cgroup_id` gives it); `None` for a cgroup v1 one.
#[inline(always)]
pub fn cgroup_v2_id(cgrp: *const u8) -> Option<u64> {
    // The v2 hierarchy (cgrp_dfl_root) is the one with id 0.
    let root = read_ptr(cgrp, &CGROUP_ROOT_OFFSET);
    if root.is_null() || read::<i32>(root, &CGROUP_ROOT_HIERARCHY_ID_OFFSET) != 0 {
        return None;
    }
    let id = read::<u64>(read_ptr(cgrp, &CGROUP_KN_OFFSET), &KERNFS_NODE_ID_OFFSET);
    (id != 0).then_some(id)
}

/// `&file->f_path`, keeping the verifier's type for `bpf_d_path`.
#[inline(always)]
pub fn file_f_path(file: *const u8) -> *const u8 {
    unsafe { file.add(global(&FILE_F_PATH_OFFSET)) }
}

#[inline(always)]
pub fn file_f_flags(file: *const u8) -> u32 {
    read(file, &FILE_F_FLAGS_OFFSET)
}

#[inline(always)]
pub fn file_f_mode(file: *const u8) -> u32 {
    read(file, &FILE_F_MODE_OFFSET)
}

/// How many directory entries name `file`'s inode (`i_nlink`): 0 for a
/// memfd or a deleted file. A read that faults answers 1.
#[inline(always)]
pub fn file_nlink(file: *const u8) -> u32 {
    let inode = read_ptr(file, &FILE_F_INODE_OFFSET);
    if inode.is_null() {
        return 1;
    }
    unsafe { bpf_probe_read_kernel(inode.add(global(&INODE_I_NLINK_OFFSET)).cast::<u32>()) }
        .unwrap_or(1)
}

#[inline(always)]
pub fn bprm_file(bprm: *const u8) -> *const u8 {
    read_ptr(bprm, &BPRM_FILE_OFFSET)
}

#[inline(always)]
pub fn bprm_filename(bprm: *const u8) -> *const u8 {
    read_ptr(bprm, &BPRM_FILENAME_OFFSET)
}

/// `sock->sk`.
#[inline(always)]
pub fn socket_sk(socket: *const u8) -> *const u8 {
    read_ptr(socket, &SOCKET_SK_OFFSET)
}

/// The address family of a socket (`sk->__sk_common.skc_family`).
#[inline(always)]
pub fn socket_family(socket: *const u8) -> u16 {
    read(socket_sk(socket), &SKC_FAMILY_OFFSET)
}

/// `msg->msg_name`.
#[inline(always)]
pub fn msghdr_name(msg: *const u8) -> *const u8 {
    read_ptr(msg, &MSGHDR_MSG_NAME_OFFSET)
}

/// What a socket knows of its two ends: `(family, protocol, local address,
/// local port, peer address, peer port)`; addresses in network order,
/// ports in host order.
#[inline(always)]
pub fn sock_ends(sk: *const u8) -> (u16, u8, [u8; 16], u16, [u8; 16], u16) {
    let family: u16 = read(sk, &SKC_FAMILY_OFFSET);
    let protocol = read::<u16>(sk, &SOCK_PROTOCOL_OFFSET) as u8;
    let mut local = [0u8; 16];
    let mut peer = [0u8; 16];
    if family == collector_common::net::AF_INET6 {
        local = read(sk, &SKC_V6_RCV_SADDR_OFFSET);
        peer = read(sk, &SKC_V6_DADDR_OFFSET);
    } else {
        local[..4].copy_from_slice(&read::<[u8; 4]>(sk, &SKC_RCV_SADDR_OFFSET));
        peer[..4].copy_from_slice(&read::<[u8; 4]>(sk, &SKC_DADDR_OFFSET));
    }
    let local_port: u16 = read(sk, &SKC_NUM_OFFSET);
    let peer_port = u16::from_be(read(sk, &SKC_DPORT_OFFSET));
    (family, protocol, local, local_port, peer, peer_port)
}

/// The network and transport headers of a packet: `(skb->head +
/// network_header, skb->head + transport_header)`.
#[inline(always)]
pub fn skb_headers(skb: *const u8) -> (*const u8, *const u8) {
    let head = read_ptr(skb, &SKB_HEAD_OFFSET);
    let network: u16 = read(skb, &SKB_NETWORK_HEADER_OFFSET);
    let transport: u16 = read(skb, &SKB_TRANSPORT_HEADER_OFFSET);
    if head.is_null() {
        return (core::ptr::null(), core::ptr::null());
    }
    unsafe { (head.add(network as usize), head.add(transport as usize)) }
}

/// Whether the current task has a root of its own (`chroot`): its root is
/// not the root of its mount namespace. `bpf_d_path` names files relative
/// to the task's root, so for such a task a path is walked to the real
/// root instead: a chroot can neither hide a denied path nor make one look
/// allowed. A task whose namespace cannot be read counts as chrooted, the
/// careful side.
#[inline(always)]
pub fn chrooted() -> bool {
    let task = unsafe { generated::bpf_get_current_task_btf() } as *const u8;
    let fs: *const u8 = load(task, &TASK_FS_OFFSET);
    if fs.is_null() {
        return false; // a kernel thread
    }
    let (vfsmnt, dentry) = load_path_parts(unsafe { fs.add(global(&FS_ROOT_OFFSET)) });
    let nsproxy: *const u8 = load(task, &TASK_NSPROXY_OFFSET);
    let ns: *const u8 = load(nsproxy, &NSPROXY_MNT_NS_OFFSET);
    let ns_root: *const u8 = load(ns, &MNT_NS_ROOT_OFFSET);
    if ns_root.is_null() {
        return true;
    }
    let ns_vfsmnt = unsafe { ns_root.add(global(&MOUNT_MNT_OFFSET)) };
    vfsmnt != ns_vfsmnt || dentry != load::<*const u8>(ns_vfsmnt, &VFSMOUNT_MNT_ROOT_OFFSET)
}

/// The directory a path relative to `dfd` starts from, as a `struct path *`
/// of the current task: its working directory for `AT_FDCWD`, else the
/// file open on `dfd`. Null where there is none (a bad fd).
#[inline(always)]
pub fn relative_base(dfd: i32) -> *const u8 {
    let task = current_task();
    if dfd == AT_FDCWD {
        let fs = read_ptr(task, &TASK_FS_OFFSET);
        if fs.is_null() {
            return core::ptr::null();
        }
        return unsafe { fs.add(global(&FS_PWD_OFFSET)) };
    }
    if dfd < 0 {
        return core::ptr::null();
    }
    let fdt = read_ptr(read_ptr(task, &TASK_FILES_OFFSET), &FILES_FDT_OFFSET);
    let max_fds: u32 = read(fdt, &FDTABLE_MAX_FDS_OFFSET);
    let fds = read_ptr(fdt, &FDTABLE_FD_OFFSET);
    if dfd as u32 >= max_fds || fds.is_null() {
        return core::ptr::null();
    }
    let file: *const u8 = unsafe { bpf_probe_read_kernel(fds.add(dfd as usize * 8).cast()) }
        .unwrap_or(core::ptr::null());
    if file.is_null() {
        return core::ptr::null();
    }
    file_f_path(file)
}

/// The current task's root (`fs->root`), as a `struct path *`; null for a
/// kernel thread.
#[inline(always)]
pub fn task_root() -> *const u8 {
    let fs = read_ptr(current_task(), &TASK_FS_OFFSET);
    if fs.is_null() {
        return core::ptr::null();
    }
    unsafe { fs.add(global(&FS_ROOT_OFFSET)) }
}

/// The filesystem a mount context (`struct fs_context *`) is for.
pub struct FsType {
    /// The first 7 bytes of its name, NUL-ended.
    pub name: [u8; 8],
    /// Whether it has no mount context of its own (`init_fs_context`):
    /// such a filesystem is handed its options as one string.
    pub legacy: bool,
}

#[inline(always)]
pub fn fs_context_type(fc: *const u8) -> FsType {
    let mut name = [0u8; 8];
    let fs_type = read_ptr(fc, &FS_CONTEXT_FS_TYPE_OFFSET);
    let name_ptr = read_ptr(fs_type, &FS_TYPE_NAME_OFFSET);
    if !name_ptr.is_null() {
        unsafe {
            generated::bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), 8, name_ptr.cast())
        };
    }
    FsType {
        name,
        legacy: read_ptr(fs_type, &FS_TYPE_INIT_FS_CONTEXT_OFFSET).is_null(),
    }
}

/// The mount context whose `security` field is at `security`.
#[inline(always)]
pub fn fs_context_of_security(security: *const u8) -> *const u8 {
    if security.is_null() {
        return core::ptr::null();
    }
    unsafe { security.sub(global(&FS_CONTEXT_SECURITY_OFFSET)) }
}

/// One option of a mount (`struct fs_parameter *`): its key, its type
/// (`enum fs_value_type`) and its value pointer (a string, or the file of
/// `fs_value_is_file`).
#[inline(always)]
pub fn fs_param(param: *const u8) -> (*const u8, u8, *const u8) {
    (
        read_ptr(param, &FS_PARAM_KEY_OFFSET),
        read(param, &FS_PARAM_TYPE_OFFSET),
        read_ptr(param, &FS_PARAM_STRING_OFFSET),
    )
}

/// Reads a `T` at `base + offset` (a constant offset).
#[inline(always)]
pub fn read_at<T: Default>(base: *const u8, offset: usize) -> T {
    if base.is_null() {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel(base.add(offset).cast::<T>()) }.unwrap_or_default()
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

#[inline(always)]
pub fn task_pid(task: *const u8) -> u32 {
    read(task, &TASK_PID_OFFSET)
}

#[inline(always)]
pub fn task_tgid(task: *const u8) -> u32 {
    read(task, &TASK_TGID_OFFSET)
}

#[inline(always)]
pub fn task_exit_code(task: *const u8) -> u32 {
    read(task, &TASK_EXIT_CODE_OFFSET)
}

/// Whether `task` is the last live thread of its process (`signal->live`
/// has dropped to zero), as `sched_process_exit` sees it.
#[inline(always)]
pub fn task_group_dead(task: *const u8) -> bool {
    let signal = read_ptr(task, &TASK_SIGNAL_OFFSET);
    !signal.is_null() && read::<i32>(signal, &SIGNAL_LIVE_OFFSET) == 0
}

/// The current task's argument area (`mm->arg_start..arg_end`), in user
/// memory; valid after an exec.
#[inline(always)]
pub fn current_args() -> (u64, u64) {
    let mm = read_ptr(current_task(), &TASK_MM_OFFSET);
    (read(mm, &MM_ARG_START_OFFSET), read(mm, &MM_ARG_END_OFFSET))
}

/// The `argv` array (a user address) the current task passed to
/// execve(2) or execveat(2), read from the registers it entered the kernel
/// with; 0 when it is in neither (an exec the kernel started), or on an
/// architecture not listed here. Valid while the old program's memory is
/// still the task's, as at `bprm_check_security`.
///
/// Reading the registers, rather than stashing the argument at the
/// syscall's tracepoint, keeps syscall tracepoints off: attaching any of
/// them sends every syscall of every task through the slow entry path.
#[inline(always)]
pub fn exec_argv() -> u64 {
    let task = unsafe { generated::bpf_get_current_task_btf() };
    let regs = unsafe { generated::bpf_task_pt_regs(task) } as *const u8;
    syscall_argv(regs)
}

#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn syscall_argv(regs: *const u8) -> u64 {
    use aya_ebpf::bindings::pt_regs;
    const EXECVE: u64 = 59;
    const EXECVEAT: u64 = 322;
    match read_at::<u64>(regs, core::mem::offset_of!(pt_regs, orig_rax)) {
        EXECVE => read_at(regs, core::mem::offset_of!(pt_regs, rsi)),
        EXECVEAT => read_at(regs, core::mem::offset_of!(pt_regs, rdx)),
        _ => 0,
    }
}

#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
fn syscall_argv(regs: *const u8) -> u64 {
    // struct pt_regs { u64 regs[31], sp, pc, pstate; u64 orig_x0; s32 syscallno; ... }
    const SYSCALLNO: usize = 34 * 8 + 8;
    const EXECVE: i32 = 221;
    const EXECVEAT: i32 = 281;
    match read_at::<i32>(regs, SYSCALLNO) {
        EXECVE => read_at(regs, 8),
        EXECVEAT => read_at(regs, 2 * 8),
        _ => 0,
    }
}

#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
#[inline(always)]
fn syscall_argv(_regs: *const u8) -> u64 {
    0
}

/// The current task's supplementary groups: `(struct group_info *, how
/// many)`. The ids are read one by one ([`supplementary_gid`]).
#[inline(always)]
pub fn supplementary_groups() -> (*const u8, u32) {
    let cred = read_ptr(current_task(), &TASK_CRED_OFFSET);
    let info = read_ptr(cred, &CRED_GROUP_INFO_OFFSET);
    (
        info,
        read::<i32>(info, &GROUP_INFO_NGROUPS_OFFSET).max(0) as u32,
    )
}

/// The `i`th id of a `struct group_info *`; `None` when the read faults.
#[inline(always)]
pub fn supplementary_gid(info: *const u8, i: u32) -> Option<u32> {
    if info.is_null() {
        return None;
    }
    let at = unsafe { info.add(global(&GROUP_INFO_GID_OFFSET) + 4 * (i as usize & 0xffff)) };
    unsafe { bpf_probe_read_kernel(at.cast::<u32>()) }.ok()
}

/// Whether the current task's cgroup (v2) is a container's or below one
/// (`CONTAINER_CGROUPS`, kept by `cgroup::cgroup_mkdir`).
#[inline(always)]
fn in_container() -> bool {
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    unsafe { CONTAINER_CGROUPS.get(&cgroup_id) }.is_some()
}

/// The parent of cgroup `cgrp` (a `struct cgroup *`); null at a root.
#[inline(always)]
pub fn cgroup_parent(cgrp: *const u8) -> *const u8 {
    // `cgroup.self` is a `cgroup_subsys_state` whose `parent` points at
    // the parent's `self`.
    let css = cgrp.wrapping_add(global(&CGROUP_SELF_OFFSET));
    let parent = read_ptr(css, &CSS_PARENT_OFFSET);
    if parent.is_null() {
        return parent;
    }
    parent.wrapping_sub(global(&CGROUP_SELF_OFFSET))
}

/// The name of cgroup `cgrp`'s directory (its kernfs node's), as a
/// kernel pointer to a NUL-terminated string.
#[inline(always)]
pub fn cgroup_name(cgrp: *const u8) -> *const u8 {
    read_ptr(read_ptr(cgrp, &CGROUP_KN_OFFSET), &KERNFS_NODE_NAME_OFFSET)
}

/// The effective uid of `task` (its cred's; no helper gives it), 0 when a
/// read faults. Without a branch: `current_process` ends most programs, so
/// a branch here would have the verifier walk each one's tail again
/// (`socket_connect` on 6.1 went past its million instructions).
#[inline(always)]
fn task_euid(task: *const u8) -> u32 {
    let mut cred: usize = 0;
    let mut euid: u32 = 0;
    // SAFETY: probe reads into locals of the sizes given; a faulting read
    // (a null task or cred) leaves zero.
    unsafe {
        generated::bpf_probe_read_kernel(
            (&raw mut cred).cast(),
            8,
            task.wrapping_add(global(&TASK_CRED_OFFSET)).cast(),
        );
        generated::bpf_probe_read_kernel(
            (&raw mut euid).cast(),
            4,
            (cred as *const u8)
                .wrapping_add(global(&CRED_EUID_OFFSET))
                .cast(),
        );
    }
    euid
}

/// Fills `p` with the current task's identity.
#[inline(always)]
pub fn current_process(p: &mut ProcessInfo) {
    let pid_tgid = bpf_get_current_pid_tgid();
    p.tid = pid_tgid as u32;
    p.pid = (pid_tgid >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    p.uid = uid_gid as u32;
    p.gid = (uid_gid >> 32) as u32;
    let task = current_task();
    p.euid = task_euid(task);
    p.ppid = task_tgid(read_ptr(task, &TASK_REAL_PARENT_OFFSET));
    p.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    p.comm = bpf_get_current_comm().unwrap_or_default();
}

/// Whether the current task is in scope for a module with `target`.
#[inline(always)]
pub fn in_scope(target: u8) -> bool {
    target != collector_common::TARGET_CONTAINER || in_container()
}

/// Most steps a path walk takes: one per component or mount crossed. A
/// path of more components than this is longer than PATH_MAX (each takes
/// at least two bytes, `/` and a name), so the walk is cut by length
/// before it is cut by depth.
const MAX_DEPTH: u32 = (PATH_MAX / 2) as u32 + 64;
/// Longest name of one path component (NAME_MAX).
const NAME_MAX: usize = 255;

/// State of a path walk, shared with its `bpf_loop` callback. It lives in
/// map memory, not on the stack: the verifier does not track values there,
/// so every step looks alike to it and checking the callback converges
/// (kernels from 6.8 on re-check a callback until its state stops changing).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Walk {
    /// `struct mount *` of the current mount, its `vfsmount`, and the
    /// current dentry (kernel addresses).
    mnt: u64,
    vfsmnt: u64,
    dentry: u64,
    /// Where the path built so far starts in `WALK_SCRATCH` (it ends at
    /// PATH_MAX).
    off: u64,
    /// 1 once the walk reached the root.
    complete: u64,
}

/// Writes the path of `dentry` on the mount of `vfsmount` into `dst` (which
/// must have PATH_MAX bytes of room) and returns its length and whether it
/// was cut. No NUL follows the path: what lies after it in `dst` is
/// whatever was there before, so read it by its length. Walks `d_parent` up to the mount's root and crosses mount
/// points, as `d_path` does; used on hooks where `bpf_d_path` is not
/// allowed (the `path_*` LSM hooks and the exec path).
///
/// The walk runs under `bpf_loop`, so the verifier checks one step rather
/// than every possible sequence of steps.
#[inline(always)]
pub fn walk_path(vfsmount: *const u8, dentry: *const u8, dst: *mut u8) -> Option<(usize, bool)> {
    if vfsmount.is_null() || dentry.is_null() {
        return None;
    }
    let scratch = unsafe { &mut *WALK_SCRATCH.get_ptr_mut(0)? };
    scratch.walk = Walk {
        mnt: unsafe { vfsmount.sub(global(&MOUNT_MNT_OFFSET)) } as u64,
        vfsmnt: vfsmount as u64,
        dentry: dentry as u64,
        off: PATH_MAX as u64,
        complete: 0,
    };
    unsafe {
        generated::bpf_loop(
            MAX_DEPTH,
            walk_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let walk = scratch.walk;
    let buf = scratch.buf.as_mut_ptr();
    let mut off = (walk.off as usize) & (2 * PATH_MAX - 1);
    if off == 0 || off > PATH_MAX {
        return None;
    }
    if off == PATH_MAX {
        // The root itself.
        off -= 1;
        unsafe { *buf.add(off & (PATH_MAX - 1)) = b'/' };
    }
    let len = (PATH_MAX - off) & (PATH_MAX - 1);
    if len == 0 {
        return None;
    }
    unsafe {
        generated::bpf_probe_read_kernel(
            dst.cast(),
            len as u32,
            buf.add(off & (PATH_MAX - 1)).cast(),
        )
    };
    Some((len, walk.complete == 0))
}

/// One step of a path walk: prepend one name, or cross one mount point.
/// Returns 1 to stop the loop.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(scratch) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let scratch = unsafe { &mut *scratch };
    let buf = scratch.buf.as_mut_ptr();
    let w = &mut scratch.walk;
    let (mnt, vfsmnt, dentry) = (
        w.mnt as *const u8,
        w.vfsmnt as *const u8,
        w.dentry as *const u8,
    );
    let mnt_root = read_ptr(vfsmnt, &VFSMOUNT_MNT_ROOT_OFFSET);
    let parent = read_ptr(dentry, &DENTRY_D_PARENT_OFFSET);
    // A dentry that is its own parent without being its mount's root is
    // the last of a path: a pseudo file's (a memfd is `memfd:NAME`), or
    // one cut off from its tree. Its name ends the walk.
    let last = dentry == parent && dentry != mnt_root;
    if dentry == mnt_root {
        let mnt_parent = read_ptr(mnt, &MOUNT_MNT_PARENT_OFFSET);
        if mnt == mnt_parent || mnt_parent.is_null() {
            // The root of the mount tree.
            w.complete = 1;
            return 1;
        }
        w.dentry = read_ptr(mnt, &MOUNT_MNT_MOUNTPOINT_OFFSET) as u64;
        w.mnt = mnt_parent as u64;
        w.vfsmnt = unsafe { mnt_parent.add(global(&MOUNT_MNT_OFFSET)) } as u64;
        return 0;
    }
    // struct qstr { u32 hash; u32 len; const char *name; }
    let qstr = unsafe { dentry.add(global(&DENTRY_D_NAME_OFFSET)) };
    let len = (unsafe { bpf_probe_read_kernel(qstr.add(4).cast::<u32>()) }.unwrap_or(0) as usize)
        & NAME_MAX;
    let name = unsafe { bpf_probe_read_kernel(qstr.add(8).cast::<*const u8>()) }
        .unwrap_or(core::ptr::null());
    let off = (w.off as usize) & (2 * PATH_MAX - 1);
    if len == 0 || name.is_null() || off <= len + 1 || off > PATH_MAX {
        return 1;
    }
    let off = off - len - 1;
    unsafe {
        *buf.add(off & (PATH_MAX - 1)) = b'/';
        generated::bpf_probe_read_kernel(
            buf.add((off + 1) & (PATH_MAX - 1)).cast(),
            bounded(len, NAME_MAX) as u32,
            name.cast(),
        );
    }
    w.off = off as u64;
    w.dentry = parent as u64;
    if last {
        w.complete = 1;
        return 1;
    }
    0
}

/// State of an identity walk (see [`identity_rule`]), in map memory like
/// [`Walk`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IdentityWalk {
    /// The current dentry (a kernel address).
    dentry: u64,
    /// `s_dev` of the dentries' filesystem, or [`DEV_OF_SUBVOLUME`].
    dev: u64,
    /// The mask its generations are taken through (`generation_mask`).
    generations: u64,
    /// The policy set whose `FILE_INODES` map is looked up.
    set: u64,
    /// The first deny rule and the first allow rule found, 0 for none.
    deny: u64,
    allow: u64,
    /// The flags of every entry met (`IDENTITY_CHECK_PATH`).
    seen: u64,
    /// 1 when the walk ended at a known root without meeting a mark.
    settled: u64,
}

/// Steps of an identity walk taken in the program itself, with plain loads
/// through the kernel's typed pointers; a deeper walk goes on under
/// `bpf_loop`. Most files are fewer than this many directories down from
/// their filesystem's root.
const INLINE_IDENTITY_STEPS: usize = 8;

/// Reads a `T` at `base + offset` with a plain load. Only for `base` a
/// pointer the verifier knows the type of (a program argument, or what was
/// loaded through one): it checks the access against the kernel's BTF and
/// turns a fault into a zero, with no helper call, which makes this several
/// times cheaper than [`read`].
#[inline(always)]
pub fn load<T: Copy + Default>(base: *const u8, offset: &'static u64) -> T {
    if base.is_null() {
        return T::default();
    }
    unsafe { core::ptr::read_volatile(base.add(global(offset)).cast::<T>()) }
}

/// `(vfsmount, dentry)` of a typed `struct path *` (see [`load`]).
#[inline(always)]
pub fn load_path_parts(path: *const u8) -> (*const u8, *const u8) {
    if path.is_null() {
        return (core::ptr::null(), core::ptr::null());
    }
    unsafe {
        (
            core::ptr::read_volatile(path.cast::<*const u8>()),
            core::ptr::read_volatile(path.add(8).cast::<*const u8>()),
        )
    }
}

/// The rules `dentry` answers to by identity: its own, and those of the
/// dentries above it up to its filesystem's root (`d_parent`, within one
/// filesystem). Every name, bind mount, chroot and mount namespace view of
/// a file reaches the same dentries, so they all answer alike. A negative
/// dentry (a name about to be made) answers for its directory. The walk
/// stops at the first deny rule (a deny wins); the first allow rule met on
/// the way up is kept.
///
/// Also whether the identities settle the file: the walk ended at a known
/// root (`IDENTITY_KNOWN_ROOT`, which carries the rules above its mount
/// point) and met no `IDENTITY_CHECK_PATH` mark, so no path rule can
/// match the file unless an identity met said so.
///
/// `dentry` must be a typed pointer (see [`load`]): the first
/// [`INLINE_IDENTITY_STEPS`] steps are plain loads; only a deeper file
/// pays for the `bpf_loop` walk.
#[inline(always)]
pub fn identity_rule(dentry: *const u8, set: u8) -> (collector_common::PathRule, bool) {
    use collector_common::{IDENTITY_CHECK_PATH, IDENTITY_KNOWN_ROOT};
    let mut rule = collector_common::PathRule::default();
    if dentry.is_null() {
        return (rule, false);
    }
    let sb: *const u8 = load(dentry, &DENTRY_D_SB_OFFSET);
    let dev: u32 = load(sb, &SB_S_DEV_OFFSET);
    let magic: u64 = load(sb, &SB_S_MAGIC_OFFSET);
    // btrfs first, and `magic` read no more after `generation_mask`: the
    // paths through its tests then end in one state, and the inline steps
    // below are verified once for them, not once per magic number.
    if subvolume_devices(magic) {
        // A device per subvolume: the walk reads each inode's.
        return deeper_identity_rule(dentry, DEV_OF_SUBVOLUME, u32::MAX, set, rule, 0);
    }
    let generations = collector_common::generation_mask(magic);
    let map = if set == 0 {
        &crate::maps::FILE_INODES_0
    } else {
        &crate::maps::FILE_INODES_1
    };
    let Some(filter) = crate::maps::FILE_INODE_FILTER.get(u32::from(set & 1)) else {
        return (rule, false);
    };
    let mut seen = 0u32;
    let mut d = dentry;
    for _ in 0..INLINE_IDENTITY_STEPS {
        let inode: *const u8 = load(d, &DENTRY_D_INODE_OFFSET);
        let mut here = 0u32;
        if !inode.is_null() {
            let key = collector_common::InodeKey {
                ino: load::<u64>(inode, &INODE_I_INO_OFFSET),
                dev,
                generation: load::<u32>(inode, &INODE_I_GENERATION_OFFSET) & generations,
            };
            if !key.may_be_in(filter) {
                // Not in the map: on to the parent.
            } else if let Some(found) = unsafe { map.get(&key) } {
                if rule.allow_rule == 0 {
                    rule.allow_rule = found.allow_rule;
                }
                if found.deny_rule != 0 {
                    rule.deny_rule = found.deny_rule;
                    return (rule, false);
                }
                here = found.flags;
                seen |= here;
            }
        }
        let parent: *const u8 = load(d, &DENTRY_D_PARENT_OFFSET);
        if parent.is_null() || parent == d {
            let settled = here & IDENTITY_KNOWN_ROOT != 0 && seen & IDENTITY_CHECK_PATH == 0;
            return (rule, settled);
        }
        d = parent;
    }
    deeper_identity_rule(d, u64::from(dev), generations, set, rule, seen)
}

/// The rules a file answers to by the identity of the inode it really
/// reads, where that is not its path's: overlayfs opens the file of the
/// layer below with the overlay's path (`open_with_fake_path`, before
/// Linux 6.6), so the path names the overlay while the inode is, say, a
/// file of a denied directory used as a lower layer. The walk starts at a
/// dentry of that inode (`i_dentry`, its aliases) on the layer's own
/// filesystem. `None` when the inode is the path's own (every other file).
#[inline(always)]
pub fn real_inode_rule(
    file: *const u8,
    path_dentry: *const u8,
    set: u8,
) -> Option<collector_common::PathRule> {
    let inode: *const u8 = load(file, &FILE_F_INODE_OFFSET);
    if inode.is_null() || inode == load::<*const u8>(path_dentry, &DENTRY_D_INODE_OFFSET) {
        return None;
    }
    // `i_dentry.first` is the `d_u.d_alias` node inside a dentry.
    let alias: *const u8 = load(inode, &INODE_I_DENTRY_OFFSET);
    if alias.is_null() {
        return None;
    }
    let dentry = (alias as u64).wrapping_sub(global(&DENTRY_D_U_OFFSET) as u64) as *const u8;
    Some(whole_looped_walk(
        dentry,
        load(inode, &INODE_I_SB_OFFSET),
        set,
    ))
}

/// The rules `dentry` answers to by identity, as [`identity_rule`] finds
/// them, with every step under `bpf_loop`: for the hooks off the hot path
/// (`path_*`). Their programs walk two paths, and the inline steps cost
/// the verifier most of its million instructions there (`path_rename`
/// and `path_link` came close, and went past it as the walk changed).
/// `dentry` must be a typed pointer (see [`load`]).
#[inline(always)]
pub fn looped_identity_rule(dentry: *const u8, set: u8) -> collector_common::PathRule {
    if dentry.is_null() {
        return collector_common::PathRule::default();
    }
    whole_looped_walk(dentry, load(dentry, &DENTRY_D_SB_OFFSET), set)
}

/// A walk from `dentry`, on the filesystem of `sb` (a typed
/// `struct super_block *`), with every step under `bpf_loop`: its rules.
#[inline(always)]
fn whole_looped_walk(dentry: *const u8, sb: *const u8, set: u8) -> collector_common::PathRule {
    let (dev, generations) = walk_device(sb);
    deeper_identity_rule(
        dentry,
        dev,
        generations,
        set,
        collector_common::PathRule::default(),
        0,
    )
    .0
}

/// `(dev, generations)` of an [`IdentityWalk`] on the filesystem of `sb`,
/// a typed `struct super_block *`: its device (or each inode's
/// subvolume's, on btrfs) and the mask of its generations.
#[inline(always)]
fn walk_device(sb: *const u8) -> (u64, u32) {
    let magic: u64 = load(sb, &SB_S_MAGIC_OFFSET);
    if subvolume_devices(magic) {
        (DEV_OF_SUBVOLUME, u32::MAX)
    } else {
        (
            u64::from(load::<u32>(sb, &SB_S_DEV_OFFSET)),
            collector_common::generation_mask(magic),
        )
    }
}

/// The rest of an identity walk from `dentry` on, under `bpf_loop`.
#[inline(always)]
fn deeper_identity_rule(
    dentry: *const u8,
    dev: u64,
    generations: u32,
    set: u8,
    found: collector_common::PathRule,
    seen: u32,
) -> (collector_common::PathRule, bool) {
    let Some(scratch) = WALK_SCRATCH.get_ptr_mut(0) else {
        return (found, false);
    };
    let scratch = unsafe { &mut *scratch };
    scratch.identity = IdentityWalk {
        dentry: dentry as u64,
        dev,
        generations: u64::from(generations),
        set: u64::from(set),
        deny: 0,
        allow: u64::from(found.allow_rule),
        seen: u64::from(seen),
        settled: 0,
    };
    let step = if dev == DEV_OF_SUBVOLUME {
        identity_step::<true> as *mut core::ffi::c_void
    } else {
        identity_step::<false> as *mut core::ffi::c_void
    };
    unsafe { generated::bpf_loop(MAX_DEPTH, step, core::ptr::null_mut(), 0) };
    let w = scratch.identity;
    (
        collector_common::PathRule {
            deny_rule: w.deny as u32,
            allow_rule: w.allow as u32,
        },
        w.settled != 0,
    )
}

/// One step of an identity walk: look the dentry up, then go to its
/// parent. Returns 1 to stop the loop.
///
/// `SUBVOLUMES`: the walk is on btrfs, and takes each inode's device from
/// its subvolume ([`subvolume_dev`]); a callback of its own, so that a walk
/// elsewhere is verified as it was before btrfs was known.
#[inline(never)]
extern "C" fn identity_step<const SUBVOLUMES: bool>(
    _index: u64,
    _ctx: *mut core::ffi::c_void,
) -> i64 {
    use collector_common::{IDENTITY_CHECK_PATH, IDENTITY_KNOWN_ROOT};
    let Some(scratch) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let w = unsafe { &mut (*scratch).identity };
    let dentry = w.dentry as *const u8;
    if dentry.is_null() {
        return 1;
    }
    let inode = read_ptr(dentry, &DENTRY_D_INODE_OFFSET);
    let mut here = 0u64;
    if !inode.is_null() {
        let dev = if SUBVOLUMES {
            subvolume_dev(inode)
        } else {
            w.dev as u32
        };
        let key = collector_common::InodeKey {
            ino: read::<u64>(inode, &INODE_I_INO_OFFSET),
            dev,
            generation: read::<u32>(inode, &INODE_I_GENERATION_OFFSET) & w.generations as u32,
        };
        let map = if w.set == 0 {
            &crate::maps::FILE_INODES_0
        } else {
            &crate::maps::FILE_INODES_1
        };
        if let Some(rule) = unsafe { map.get(&key) } {
            if w.allow == 0 {
                w.allow = u64::from(rule.allow_rule);
            }
            if rule.deny_rule != 0 {
                w.deny = u64::from(rule.deny_rule);
                return 1;
            }
            here = u64::from(rule.flags);
            w.seen |= here;
        }
    }
    let parent = read_ptr(dentry, &DENTRY_D_PARENT_OFFSET);
    if parent.is_null() || parent == dentry {
        w.settled = u64::from(
            here & u64::from(IDENTITY_KNOWN_ROOT) != 0
                && w.seen & u64::from(IDENTITY_CHECK_PATH) == 0,
        );
        return 1;
    }
    w.dentry = parent as u64;
    0
}

/// The deny rule of the btrfs subvolume that the ioctl `cmd` on `file`
/// (a typed `struct file *`) would copy whole, a snapshot's source or a
/// send's subvolume (`InodeKey::subvolume`): 0 for none, or for another
/// command. [`RULE_PATH_UNRESOLVED`](collector_common::RULE_PATH_UNRESOLVED)
/// when a snapshot's source descriptor cannot be read from the argument
/// `arg`: refused, fail closed.
#[inline(always)]
pub fn subvolume_copy_rule(file: *const u8, cmd: u32, arg: u64, set: u8) -> u32 {
    use collector_common::{BTRFS_IOC_SEND, BTRFS_IOC_SNAP_CREATE, BTRFS_IOC_SNAP_CREATE_V2};
    let on_btrfs = |inode: *const u8| {
        read::<u64>(read_ptr(inode, &INODE_I_SB_OFFSET), &SB_S_MAGIC_OFFSET)
            == collector_common::BTRFS_MAGIC
    };
    if global(&BTRFS_SUBVOLUMES) == 0
        || (cmd != BTRFS_IOC_SEND
            && cmd != BTRFS_IOC_SNAP_CREATE
            && cmd != BTRFS_IOC_SNAP_CREATE_V2)
    {
        return 0;
    }
    let own: *const u8 = load(file, &FILE_F_INODE_OFFSET);
    if !on_btrfs(own) {
        // Another driver's command with the same number.
        return 0;
    }
    let inode = if cmd == BTRFS_IOC_SEND {
        own
    } else {
        let Ok(fd) = (unsafe { aya_ebpf::helpers::bpf_probe_read_user(arg as *const i64) }) else {
            return collector_common::RULE_PATH_UNRESOLVED;
        };
        if !(0..=i64::from(i32::MAX)).contains(&fd) {
            // No such descriptor: the kernel refuses it (EBADF).
            return 0;
        }
        let source = relative_base(fd as i32);
        if source.is_null() {
            return 0;
        }
        let (_, dentry) = path_parts(source);
        read_ptr(dentry, &DENTRY_D_INODE_OFFSET)
    };
    if inode.is_null() || !on_btrfs(inode) {
        return 0;
    }
    let key = collector_common::InodeKey::subvolume(subvolume_dev(inode));
    let map = if set == 0 {
        &crate::maps::FILE_INODES_0
    } else {
        &crate::maps::FILE_INODES_1
    };
    unsafe { map.get(&key) }.map_or(0, |rule| rule.deny_rule)
}

/// The `statfs` magic number of the filesystem of a typed `struct file *`.
#[inline(always)]
pub fn file_fs_magic(file: *const u8) -> u64 {
    let inode: *const u8 = load(file, &FILE_F_INODE_OFFSET);
    load(
        load::<*const u8>(inode, &INODE_I_SB_OFFSET),
        &SB_S_MAGIC_OFFSET,
    )
}

/// `(vfsmount, dentry)` of a `struct path *` (`{ mnt; dentry; }`, a layout
/// stable since Linux 2.6).
#[inline(always)]
pub fn path_parts(path: *const u8) -> (*const u8, *const u8) {
    let mnt =
        unsafe { bpf_probe_read_kernel(path.cast::<*const u8>()) }.unwrap_or(core::ptr::null());
    let dentry = unsafe { bpf_probe_read_kernel(path.add(8).cast::<*const u8>()) }
        .unwrap_or(core::ptr::null());
    (mnt, dentry)
}

/// `map->id` of a typed `struct bpf_map *` (see [`load`]).
#[inline(always)]
pub fn bpf_map_id(map: *const u8) -> u32 {
    load(map, &BPF_MAP_ID_OFFSET)
}

/// `prog->aux->id` of a typed `struct bpf_prog *` (see [`load`]).
#[inline(always)]
pub fn bpf_prog_id(prog: *const u8) -> u32 {
    let aux: *const u8 = load(prog, &BPF_PROG_AUX_OFFSET);
    load(aux, &BPF_PROG_AUX_ID_OFFSET)
}

/// `dentry->d_inode` of a typed `struct dentry *` (see [`load`]); null for
/// a negative dentry.
#[inline(always)]
pub fn dentry_inode(dentry: *const u8) -> *const u8 {
    load(dentry, &DENTRY_D_INODE_OFFSET)
}

/// The identity of a typed `struct inode *` (see [`load`]).
#[inline(always)]
pub fn inode_key(inode: *const u8) -> Option<collector_common::InodeKey> {
    if inode.is_null() {
        return None;
    }
    let sb: *const u8 = load(inode, &INODE_I_SB_OFFSET);
    Some(collector_common::InodeKey {
        ino: load::<u64>(inode, &INODE_I_INO_OFFSET),
        dev: load(sb, &SB_S_DEV_OFFSET),
        generation: 0,
    })
}

/// One step of a walk up an untyped `struct dentry *` (read with helper
/// calls, for a dentry reached through them): its identity, if it has an
/// inode, and its parent.
#[inline(always)]
pub fn dentry_step(dentry: *const u8) -> (Option<collector_common::InodeKey>, *const u8) {
    let inode = read_ptr(dentry, &DENTRY_D_INODE_OFFSET);
    let key = (!inode.is_null()).then(|| collector_common::InodeKey {
        ino: read(inode, &INODE_I_INO_OFFSET),
        dev: read(read_ptr(dentry, &DENTRY_D_SB_OFFSET), &SB_S_DEV_OFFSET),
        generation: 0,
    });
    (key, read_ptr(dentry, &DENTRY_D_PARENT_OFFSET))
}

/// `(vma->vm_file, vma->vm_flags)` of a typed `struct vm_area_struct *`
/// (see [`load`]).
#[inline(always)]
pub fn vma_file_flags(vma: *const u8) -> (*const u8, u64) {
    (
        load(vma, &VMA_VM_FILE_OFFSET),
        load(vma, &VMA_VM_FLAGS_OFFSET),
    )
}

/// The file the current process runs (`current->mm->exe_file`); null for
/// a kernel thread.
#[inline(always)]
pub fn current_exe_file() -> *const u8 {
    read_ptr(
        read_ptr(current_task(), &TASK_MM_OFFSET),
        &MM_EXE_FILE_OFFSET,
    )
}
