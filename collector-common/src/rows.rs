//! The rows of the policy: each operation the agent covers, the BPF-LSM hook
//! that enforces it, and what covers it on kernels without BPF-LSM.
//! Attaching, the coverage it reports (`safeguard status`, the tier metric,
//! the start-up warnings) and the README's table all follow this one list.

use crate::{Hook, Module};

/// One row of the policy, e.g. `files.open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowSpec {
    pub name: &'static str,
    pub module: Module,
    /// The BPF-LSM hook that judges the row; its program has the hook's
    /// name. `None`: the row is reported on every tier, never judged.
    pub lsm: Option<Hook>,
    /// What covers the row where BPF-LSM does not.
    pub audit: AuditTier,
}

/// The programs that cover a row without BPF-LSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditTier {
    /// Nothing: the row is unavailable.
    None,
    /// Tracepoints, attached in place of the BPF-LSM program. Those the
    /// kernel lacks are left out.
    Tracepoints(&'static [Hook]),
    /// Raw tracepoints, attached on every tier (for a row without a
    /// BPF-LSM hook).
    RawTracepoints(&'static [Hook]),
    /// Raw tracepoints another row of the module attaches.
    AttachedByRow(&'static [Hook]),
    /// cgroup sock_addr programs on `network.cgroup`. They are attached,
    /// those of every row of the module at once, when any row of the
    /// module goes without BPF-LSM.
    CgroupSockAddr(&'static [Hook]),
}

impl AuditTier {
    /// Every hook the tier reports, in the order they attach.
    pub const fn hooks(&self) -> &'static [Hook] {
        match self {
            AuditTier::None => &[],
            AuditTier::Tracepoints(hooks)
            | AuditTier::RawTracepoints(hooks)
            | AuditTier::AttachedByRow(hooks)
            | AuditTier::CgroupSockAddr(hooks) => hooks,
        }
    }
}

impl RowSpec {
    /// Whether the audit tier can refuse the operation, not only report it
    /// (connect and send, through cgroup programs).
    pub const fn audit_refuses(&self) -> bool {
        let hooks = self.audit.hooks();
        let mut i = 0;
        while i < hooks.len() {
            if !hooks[i].enforcing() {
                return false;
            }
            i += 1;
        }
        !hooks.is_empty()
    }
}

impl Hook {
    /// The program at this hook: the last part of its name (`file_open`
    /// for `lsm/file_open`, `connect4` for `cgroup/connect4`).
    pub fn program(self) -> &'static str {
        // A second program on a hook another module's program is named
        // after.
        if let Hook::LsmExecMmap = self {
            return "exec_mmap_file";
        }
        let name = self.name();
        match name.rfind('/') {
            Some(i) => &name[i + 1..],
            None => name,
        }
    }

    /// The LSM hook a BPF-LSM program attaches to (`file_open` for
    /// `lsm/file_open`); `None` for other programs.
    pub fn lsm_hook(self) -> Option<&'static str> {
        self.name().strip_prefix("lsm/")
    }

    /// `(category, name)` of a tracepoint hook
    /// (`tracepoint/syscalls/sys_enter_openat`).
    pub fn tracepoint(self) -> Option<(&'static str, &'static str)> {
        self.name().strip_prefix("tracepoint/")?.split_once('/')
    }
}

/// BPF-LSM hooks attached together with a row's hook where the kernel has
/// them: another way into the same operation, judged by the same program
/// body. `(row's hook, companion)`.
pub const COMPANION_HOOKS: &[(Hook, Hook)] = &[
    // compat_sys_ioctl calls security_file_ioctl_compat, not
    // security_file_ioctl, where the former exists.
    (Hook::LsmFileIoctl, Hook::LsmFileIoctlCompat),
];

const fn lsm(name: &'static str, module: Module, hook: Hook, audit: AuditTier) -> RowSpec {
    RowSpec {
        name,
        module,
        lsm: Some(hook),
        audit,
    }
}

/// Every row, grouped by module in [`Module::ALL`] order: the order rows
/// are attached and reported in.
pub const ROWS: &[RowSpec] = &[
    lsm(
        "files.open",
        Module::Files,
        Hook::LsmFileOpen,
        AuditTier::Tracepoints(&[Hook::TpOpenat, Hook::TpOpenat2, Hook::TpOpen]),
    ),
    lsm(
        "files.unlink",
        Module::Files,
        Hook::LsmPathUnlink,
        AuditTier::None,
    ),
    lsm(
        "files.rmdir",
        Module::Files,
        Hook::LsmPathRmdir,
        AuditTier::None,
    ),
    lsm(
        "files.rename",
        Module::Files,
        Hook::LsmPathRename,
        AuditTier::None,
    ),
    lsm(
        "files.truncate",
        Module::Files,
        Hook::LsmPathTruncate,
        AuditTier::None,
    ),
    lsm(
        "files.chmod",
        Module::Files,
        Hook::LsmPathChmod,
        AuditTier::None,
    ),
    lsm(
        "files.chown",
        Module::Files,
        Hook::LsmPathChown,
        AuditTier::None,
    ),
    lsm(
        "files.mmap",
        Module::Files,
        Hook::LsmMmapFile,
        AuditTier::None,
    ),
    lsm(
        "files.ioctl",
        Module::Files,
        Hook::LsmFileIoctl,
        AuditTier::None,
    ),
    lsm(
        "files.link",
        Module::Files,
        Hook::LsmPathLink,
        AuditTier::None,
    ),
    lsm(
        "files.symlink",
        Module::Files,
        Hook::LsmPathSymlink,
        AuditTier::None,
    ),
    lsm(
        "files.mkdir",
        Module::Files,
        Hook::LsmPathMkdir,
        AuditTier::None,
    ),
    lsm(
        "files.mknod",
        Module::Files,
        Hook::LsmPathMknod,
        AuditTier::None,
    ),
    lsm(
        "files.receive",
        Module::Files,
        Hook::LsmFileReceive,
        AuditTier::None,
    ),
    lsm(
        "process.exec",
        Module::Process,
        Hook::LsmBprmCheck,
        AuditTier::AttachedByRow(&[Hook::TpSchedExec]),
    ),
    lsm(
        "process.exec.mapped",
        Module::Process,
        Hook::LsmExecMmap,
        AuditTier::None,
    ),
    lsm(
        "process.exec.mprotect",
        Module::Process,
        Hook::LsmFileMprotect,
        AuditTier::None,
    ),
    RowSpec {
        name: "process.lifecycle",
        module: Module::Process,
        lsm: None,
        audit: AuditTier::RawTracepoints(&[
            Hook::TpSchedFork,
            Hook::TpSchedExec,
            Hook::TpSchedExit,
        ]),
    },
    lsm(
        "mount.mount",
        Module::Mount,
        Hook::LsmSbMount,
        AuditTier::None,
    ),
    lsm(
        "mount.move",
        Module::Mount,
        Hook::LsmMoveMount,
        AuditTier::None,
    ),
    lsm(
        "mount.overlay.layer",
        Module::Mount,
        Hook::LsmFsContextParseParam,
        AuditTier::None,
    ),
    lsm(
        "mount.overlay.options",
        Module::Mount,
        Hook::LsmSbEatLsmOpts,
        AuditTier::None,
    ),
    lsm(
        "network.connect",
        Module::Network,
        Hook::LsmSocketConnect,
        AuditTier::CgroupSockAddr(&[Hook::CgroupConnect4, Hook::CgroupConnect6]),
    ),
    lsm(
        "network.send",
        Module::Network,
        Hook::LsmSocketSendmsg,
        AuditTier::CgroupSockAddr(&[Hook::CgroupSendmsg4, Hook::CgroupSendmsg6]),
    ),
    lsm(
        "network.receive",
        Module::Network,
        Hook::LsmSocketRecvmsg,
        AuditTier::CgroupSockAddr(&[Hook::CgroupRecvmsg4, Hook::CgroupRecvmsg6]),
    ),
    lsm(
        "network.getpeername",
        Module::Network,
        Hook::LsmSocketGetpeername,
        AuditTier::CgroupSockAddr(&[Hook::CgroupGetpeername4, Hook::CgroupGetpeername6]),
    ),
    lsm(
        "network.bind",
        Module::Network,
        Hook::LsmSocketBind,
        AuditTier::None,
    ),
    lsm(
        "network.accept",
        Module::Network,
        Hook::LsmInetConnRequest,
        AuditTier::None,
    ),
    lsm(
        "network.receive.datagram",
        Module::Network,
        Hook::LsmSockRcvSkb,
        AuditTier::None,
    ),
    lsm(
        "network.raw",
        Module::Network,
        Hook::LsmSocketCreate,
        AuditTier::None,
    ),
    lsm(
        "network.sctp",
        Module::Network,
        Hook::LsmSctpBindConnect,
        AuditTier::None,
    ),
];

const _: () = {
    // Grouped by module, in module order.
    let mut i = 1;
    while i < ROWS.len() {
        assert!(
            ROWS[i - 1].module as u32 <= ROWS[i].module as u32,
            "ROWS must be grouped by module, in module order"
        );
        i += 1;
    }
};
