//! Names of the maps and globals in the eBPF object (programs: `rows`).

/// Maps.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const SEQUENCE: &str = "SEQUENCE";
    pub const DROPS: &str = "DROPS";
    pub const MODULE_CONFIG: &str = "MODULE_CONFIG";
    /// One u32: which programs are in force and with which policy set
    /// (`active_value`). Rule maps come in pairs, one per set.
    pub const POLICY_ACTIVE: &str = "POLICY_ACTIVE";
    pub const FILE_RULES: [&str; 2] = ["FILE_RULES_0", "FILE_RULES_1"];
    pub const FILE_ANCESTORS: [&str; 2] = ["FILE_ANCESTORS_0", "FILE_ANCESTORS_1"];
    pub const FILE_INODES: [&str; 2] = ["FILE_INODES_0", "FILE_INODES_1"];
    /// One `InodeFilter` per policy set (index = set): which keys
    /// `FILE_INODES` may hold.
    pub const FILE_INODE_FILTER: &str = "FILE_INODE_FILTER";
    pub const EXEC_PATH_RULES: [&str; 2] = ["EXEC_PATH_RULES_0", "EXEC_PATH_RULES_1"];
    pub const EXEC_NAME_RULES: [&str; 2] = ["EXEC_NAME_RULES_0", "EXEC_NAME_RULES_1"];
    pub const MOUNT_RULES: [&str; 2] = ["MOUNT_RULES_0", "MOUNT_RULES_1"];
    /// Directories above denied mount sources, the root included
    /// (`AncestorRule`): a bind of one would show the source.
    pub const MOUNT_ANCESTORS: [&str; 2] = ["MOUNT_ANCESTORS_0", "MOUNT_ANCESTORS_1"];
    /// Denied mount sources by identity (`InodeKey` → `mount::MountIdentity`).
    pub const MOUNT_INODES: [&str; 2] = ["MOUNT_INODES_0", "MOUNT_INODES_1"];
    pub const NET_V4_RULES: [&str; 2] = ["NET_V4_RULES_0", "NET_V4_RULES_1"];
    pub const NET_V6_RULES: [&str; 2] = ["NET_V6_RULES_0", "NET_V6_RULES_1"];
    pub const NET_COMMAND_RULES: [&str; 2] = ["NET_COMMAND_RULES_0", "NET_COMMAND_RULES_1"];
    pub const NET_UID_RULES: [&str; 2] = ["NET_UID_RULES_0", "NET_UID_RULES_1"];
    pub const NET_GID_RULES: [&str; 2] = ["NET_GID_RULES_0", "NET_GID_RULES_1"];
    /// Capacity of a CIDR rule trie.
    pub const CIDR_RULES_MAX: u32 = 65_536;
    /// Capacity of a command, UID or GID rule map.
    pub const ID_RULES_MAX: u32 = 16_384;
    /// Capacity of a path-prefix rule trie (distinct prefixes).
    pub const PATH_RULES_MAX: u32 = 65_536;
    /// Capacity of the program-name rule map.
    pub const NAME_RULES_MAX: u32 = 16_384;
    /// Per process, hook and rule: records in the current second
    /// (`SampleKey` → `SampleWindow`), for `AUDIT_RATE_LIMIT`. Private to
    /// the programs.
    pub const SAMPLING: &str = "SAMPLING";
    /// Processes, hooks and rules `SAMPLING` follows at once (least
    /// recently used go first).
    pub const SAMPLING_MAX: u32 = 65_536;
    /// Per process (tgid): the name it was executed as (`comm` right after
    /// its exec, NUL-padded), kept through fork and unchanged by
    /// `prctl(PR_SET_NAME)`: what `network.command` rules judge.
    pub const EXEC_NAMES: &str = "EXEC_NAMES";
    /// Processes `EXEC_NAMES` follows at once (least recently used go
    /// first; one that is evicted is judged by its `comm`).
    pub const EXEC_NAMES_MAX: u32 = 65_536;
    /// The cgroups (v2 ids) of containers, and those below them (`u8` 1):
    /// a task in one is in a container, for `target: container`. Kept by
    /// the programs as cgroups are made and removed; the agent enters the
    /// ones that existed before.
    pub const CONTAINER_CGROUPS: &str = "CONTAINER_CGROUPS";
    /// Container cgroups `CONTAINER_CGROUPS` holds at once; one made past
    /// it is not a container's for `target: container` (the agent says so).
    pub const CONTAINER_CGROUPS_MAX: u32 = 65_536;
    /// `kernel.protect`: whom the guard protects (`guard::AgentGuard`).
    pub const AGENT_GUARD: &str = "AGENT_GUARD";
    /// `kernel.protect`: the agent's maps and programs (`guard::ObjectKey`).
    pub const AGENT_OBJECTS: &str = "AGENT_OBJECTS";
    /// `kernel.protect`: the directories of the agent's pins (`InodeKey`).
    pub const AGENT_DIRS: &str = "AGENT_DIRS";
}

/// Other read-only globals the agent sets before load.
pub mod globals {
    /// The epoch of this load of the programs (see `POLICY_ACTIVE`).
    pub const POLICY_EPOCH: &str = "POLICY_EPOCH";
    /// `kernel.audit_rate_limit`: records per second per process, hook and
    /// rule for operations that were not blocked; 0: no limit.
    pub const AUDIT_RATE_LIMIT: &str = "AUDIT_RATE_LIMIT";
    /// 1 when the agent found btrfs's types (in the kernel's BTF or the
    /// module's), and the two offsets below are set: then the programs
    /// take a btrfs inode's device from its subvolume, as `stat` does.
    pub const BTRFS_SUBVOLUMES: &str = "BTRFS_SUBVOLUMES";
    /// `offsetof(btrfs_inode, root) - offsetof(btrfs_inode, vfs_inode)`
    /// (wrapping): from a btrfs `struct inode *` to its subvolume's root.
    pub const BTRFS_INODE_ROOT_OFFSET: &str = "BTRFS_INODE_ROOT_OFFSET";
    /// `offsetof(btrfs_root, anon_dev)`: the subvolume's device number.
    pub const BTRFS_ROOT_ANON_DEV_OFFSET: &str = "BTRFS_ROOT_ANON_DEV_OFFSET";
}

/// Field offsets in kernel structs, read from the running kernel's BTF by
/// the agent and written into the programs' read-only data before load.
/// The programs cannot use CO-RE relocations (rustc does not emit them).
pub mod offsets {
    /// Every offset the programs need, as `GLOBAL: struct.field`, handed to
    /// the macro `$m`. The programs declare their globals with it and the
    /// agent resolves the list it makes (`FIELDS`), so a global one side
    /// lacks fails the build.
    #[macro_export]
    macro_rules! kernel_offsets {
        ($m:ident) => {
            $m! {
                FILE_F_PATH_OFFSET: file.f_path,
                FILE_F_FLAGS_OFFSET: file.f_flags,
                FILE_F_MODE_OFFSET: file.f_mode,
                FILE_F_INODE_OFFSET: file.f_inode,
                INODE_I_SB_OFFSET: inode.i_sb,
                INODE_I_NLINK_OFFSET: inode.i_nlink,
                TASK_CRED_OFFSET: task_struct.cred,
                CGROUP_ROOT_OFFSET: cgroup.root,
                CGROUP_KN_OFFSET: cgroup.kn,
                CGROUP_ROOT_HIERARCHY_ID_OFFSET: cgroup_root.hierarchy_id,
                KERNFS_NODE_ID_OFFSET: kernfs_node.id,
                KERNFS_NODE_NAME_OFFSET: kernfs_node.name,
                CGROUP_SELF_OFFSET: cgroup.self,
                CSS_PARENT_OFFSET: cgroup_subsys_state.parent,
                CRED_EUID_OFFSET: cred.euid,
                CRED_GROUP_INFO_OFFSET: cred.group_info,
                GROUP_INFO_NGROUPS_OFFSET: group_info.ngroups,
                GROUP_INFO_GID_OFFSET: group_info.gid,
                INODE_I_DENTRY_OFFSET: inode.i_dentry,
                DENTRY_D_U_OFFSET: dentry.d_u,
                TASK_REAL_PARENT_OFFSET: task_struct.real_parent,
                TASK_TGID_OFFSET: task_struct.tgid,
                TASK_PID_OFFSET: task_struct.pid,
                TASK_NSPROXY_OFFSET: task_struct.nsproxy,
                TASK_EXIT_CODE_OFFSET: task_struct.exit_code,
                TASK_MM_OFFSET: task_struct.mm,
                TASK_SIGNAL_OFFSET: task_struct.signal,
                SIGNAL_LIVE_OFFSET: signal_struct.live,
                NSPROXY_MNT_NS_OFFSET: nsproxy.mnt_ns,
                MNT_NS_NS_OFFSET: mnt_namespace.ns,
                MNT_NS_ROOT_OFFSET: mnt_namespace.root,
                NS_COMMON_INUM_OFFSET: ns_common.inum,
                MM_ARG_START_OFFSET: mm_struct.arg_start,
                MM_ARG_END_OFFSET: mm_struct.arg_end,
                DENTRY_D_PARENT_OFFSET: dentry.d_parent,
                DENTRY_D_NAME_OFFSET: dentry.d_name,
                DENTRY_D_INODE_OFFSET: dentry.d_inode,
                INODE_I_INO_OFFSET: inode.i_ino,
                INODE_I_GENERATION_OFFSET: inode.i_generation,
                DENTRY_D_SB_OFFSET: dentry.d_sb,
                SB_S_DEV_OFFSET: super_block.s_dev,
                SB_S_MAGIC_OFFSET: super_block.s_magic,
                MOUNT_MNT_OFFSET: mount.mnt,
                MOUNT_MNT_PARENT_OFFSET: mount.mnt_parent,
                MOUNT_MNT_MOUNTPOINT_OFFSET: mount.mnt_mountpoint,
                VFSMOUNT_MNT_ROOT_OFFSET: vfsmount.mnt_root,
                BPRM_FILE_OFFSET: linux_binprm.file,
                SOCKET_SK_OFFSET: socket.sk,
                SOCK_PROTOCOL_OFFSET: sock.sk_protocol,
                SKC_DADDR_OFFSET: sock_common.skc_daddr,
                SKC_RCV_SADDR_OFFSET: sock_common.skc_rcv_saddr,
                SKC_DPORT_OFFSET: sock_common.skc_dport,
                SKC_NUM_OFFSET: sock_common.skc_num,
                SKC_FAMILY_OFFSET: sock_common.skc_family,
                SKC_V6_DADDR_OFFSET: sock_common.skc_v6_daddr,
                SKC_V6_RCV_SADDR_OFFSET: sock_common.skc_v6_rcv_saddr,
                MSGHDR_MSG_NAME_OFFSET: msghdr.msg_name,
                SKB_HEAD_OFFSET: sk_buff.head,
                SKB_NETWORK_HEADER_OFFSET: sk_buff.network_header,
                SKB_TRANSPORT_HEADER_OFFSET: sk_buff.transport_header,
                BPRM_FILENAME_OFFSET: linux_binprm.filename,
                TASK_FS_OFFSET: task_struct.fs,
                FS_PWD_OFFSET: fs_struct.pwd,
                FS_ROOT_OFFSET: fs_struct.root,
                TASK_FILES_OFFSET: task_struct.files,
                FILES_FDT_OFFSET: files_struct.fdt,
                FDTABLE_MAX_FDS_OFFSET: fdtable.max_fds,
                FDTABLE_FD_OFFSET: fdtable.fd,
                MM_EXE_FILE_OFFSET: mm_struct.exe_file,
                VMA_VM_FILE_OFFSET: vm_area_struct.vm_file,
                VMA_VM_FLAGS_OFFSET: vm_area_struct.vm_flags,
                BPF_MAP_ID_OFFSET: bpf_map.id,
                BPF_PROG_AUX_OFFSET: bpf_prog.aux,
                BPF_PROG_AUX_ID_OFFSET: bpf_prog_aux.id,
                FS_CONTEXT_FS_TYPE_OFFSET: fs_context.fs_type,
                FS_CONTEXT_SECURITY_OFFSET: fs_context.security,
                FS_TYPE_NAME_OFFSET: file_system_type.name,
                FS_TYPE_INIT_FS_CONTEXT_OFFSET: file_system_type.init_fs_context,
                FS_PARAM_KEY_OFFSET: fs_parameter.key,
                FS_PARAM_TYPE_OFFSET: fs_parameter.type,
                FS_PARAM_STRING_OFFSET: fs_parameter.string,
            }
        };
    }

    macro_rules! fields {
        ($($global:ident: $strukt:ident.$field:ident,)*) => {
            /// `(global name, struct, field)` for every offset the programs need.
            pub const FIELDS: &[(&str, &str, &str)] = &[
                $((stringify!($global), stringify!($strukt), stringify!($field)),)*
            ];
        };
    }

    crate::kernel_offsets!(fields);
}
