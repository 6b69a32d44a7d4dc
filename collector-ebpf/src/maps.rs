//! Every map the programs share with the agent. Names are part of the ABI
//! (`collector_common::maps`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use collector_common::{
    AncestorRule, DropReason, HOOK_COUNT, IdentityRule, InodeKey, MODULE_COUNT, ModuleConfig,
    NameKey, PATH_MAX, POLICY_SETS, PathKey, PathRule, SampleKey, SampleWindow,
    file::FileRecord,
    guard::{AGENT_DIRS_MAX, AGENT_OBJECTS_MAX, AgentGuard, ObjectKey},
    maps::{
        CIDR_RULES_MAX, EXEC_NAMES_MAX, ID_RULES_MAX, NAME_RULES_MAX, PATH_RULES_MAX, SAMPLING_MAX,
    },
    mount::{MountIdentity, MountRecord},
    net::{V4Key, V6Key},
    process::ExecRecord,
};

/// Events to the agent. The agent sets the size before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// One u64: the next event sequence number.
#[map]
pub static SEQUENCE: Array<u64> = Array::with_max_entries(1, 0);

/// Per reason and hook: records lost (`collector_common::DropReason`).
#[map]
pub static DROPS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(DropReason::ALL.len() as u32 * HOOK_COUNT, 0);

/// Per process, hook and rule: records this second (`AUDIT_RATE_LIMIT`).
#[map]
pub static SAMPLING: LruHashMap<SampleKey, SampleWindow> =
    LruHashMap::with_max_entries(SAMPLING_MAX, 0);

/// One u32: the policy set in force (0 or 1).
#[map]
pub static POLICY_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Per policy set and module: enabled, mode, policy, target.
#[map]
pub static MODULE_CONFIG: Array<ModuleConfig> =
    Array::with_max_entries(POLICY_SETS * MODULE_COUNT, 0);

/// Declares a rule map once per policy set, and `$select(config)`, which
/// picks the one of the set `config` belongs to.
macro_rules! rule_maps {
    ($(#[$doc:meta])* $select:ident: $ty:ty = $init:expr; $set0:ident, $set1:ident) => {
        $(#[$doc])*
        #[map]
        pub static $set0: $ty = $init;
        #[map]
        pub static $set1: $ty = $init;

        #[inline(always)]
        pub fn $select(config: &ModuleConfig) -> &'static $ty {
            if config.generation == 0 { &$set0 } else { &$set1 }
        }
    };
}

rule_maps! {
    /// File rules: path prefix (with trailing `/`) → the deny/allow rules
    /// that cover it.
    file_rules: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);
    FILE_RULES_0, FILE_RULES_1
}

rule_maps! {
    /// Proper ancestors of denied paths (`AncestorRule`): renaming one is
    /// refused.
    file_ancestors: LpmTrie<PathKey, AncestorRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);
    FILE_ANCESTORS_0, FILE_ANCESTORS_1
}

/// File rules by identity, one map per policy set: the rule paths that
/// existed when the policy was compiled, and the extra hard links of files
/// below denied directories. Looked up inside a `bpf_loop` callback, which
/// picks the set by number (`kernel::identity_rule`).
#[map]
pub static FILE_INODES_0: HashMap<InodeKey, IdentityRule> =
    HashMap::with_max_entries(PATH_RULES_MAX, 0);
#[map]
pub static FILE_INODES_1: HashMap<InodeKey, IdentityRule> =
    HashMap::with_max_entries(PATH_RULES_MAX, 0);

/// Which identities `FILE_INODES_<set>` may hold, at index `set`
/// (`InodeKey::may_be_in`): most dentries are passed by with one load.
#[map]
pub static FILE_INODE_FILTER: Array<collector_common::InodeFilter> = Array::with_max_entries(2, 0);

rule_maps! {
    /// Exec rules by executable path prefix.
    exec_path_rules: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);
    EXEC_PATH_RULES_0, EXEC_PATH_RULES_1
}

rule_maps! {
    /// Exec rules by program name (the basename the program was run as).
    exec_name_rules: HashMap<NameKey, PathRule> = HashMap::with_max_entries(NAME_RULES_MAX, 0);
    EXEC_NAME_RULES_0, EXEC_NAME_RULES_1
}

rule_maps! {
    /// Mount rules: denied source path prefixes.
    mount_rules: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);
    MOUNT_RULES_0, MOUNT_RULES_1
}

/// Directories above denied mount sources, the root included
/// (`AncestorRule`): a bind of one would show the source. Looked up inside
/// a `bpf_loop` callback, which picks the set by number.
#[map]
pub static MOUNT_ANCESTORS_0: LpmTrie<PathKey, AncestorRule> =
    LpmTrie::with_max_entries(PATH_RULES_MAX, 0);
#[map]
pub static MOUNT_ANCESTORS_1: LpmTrie<PathKey, AncestorRule> =
    LpmTrie::with_max_entries(PATH_RULES_MAX, 0);

rule_maps! {
    /// Denied mount sources by identity (`MountIdentity`).
    mount_inodes: HashMap<InodeKey, MountIdentity> =
        HashMap::with_max_entries(collector_common::mount::MOUNT_INODES_MAX, 0);
    MOUNT_INODES_0, MOUNT_INODES_1
}

rule_maps! {
    /// Network rules by destination (or source) network, IPv4.
    net_v4_rules: LpmTrie<V4Key, PathRule> = LpmTrie::with_max_entries(CIDR_RULES_MAX, 0);
    NET_V4_RULES_0, NET_V4_RULES_1
}

rule_maps! {
    /// Network rules by network, IPv6.
    net_v6_rules: LpmTrie<V6Key, PathRule> = LpmTrie::with_max_entries(CIDR_RULES_MAX, 0);
    NET_V6_RULES_0, NET_V6_RULES_1
}

rule_maps! {
    /// Network rules by command (`comm`, NUL-padded).
    net_command_rules: HashMap<[u8; collector_common::COMM_LEN], PathRule> =
        HashMap::with_max_entries(ID_RULES_MAX, 0);
    NET_COMMAND_RULES_0, NET_COMMAND_RULES_1
}

rule_maps! {
    /// Network rules by UID.
    net_uid_rules: HashMap<u32, PathRule> = HashMap::with_max_entries(ID_RULES_MAX, 0);
    NET_UID_RULES_0, NET_UID_RULES_1
}

rule_maps! {
    /// Network rules by GID.
    net_gid_rules: HashMap<u32, PathRule> = HashMap::with_max_entries(ID_RULES_MAX, 0);
    NET_GID_RULES_0, NET_GID_RULES_1
}

// Per-CPU scratch space: records are too big for the 512-byte stack.

#[map]
pub static FILE_SCRATCH: PerCpuArray<FileRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static MOUNT_SCRATCH: PerCpuArray<MountRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PATH_KEY_SCRATCH: PerCpuArray<Key<PathKey>> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static NAME_KEY_SCRATCH: PerCpuArray<NameKey> = PerCpuArray::with_max_entries(1, 0);

/// Where `kernel::walk_path` builds a path backwards, and its state.
#[repr(C)]
pub struct WalkScratch {
    pub buf: [u8; 2 * PATH_MAX],
    pub walk: crate::kernel::Walk,
    pub identity: crate::kernel::IdentityWalk,
}

#[map]
pub static WALK_SCRATCH: PerCpuArray<WalkScratch> = PerCpuArray::with_max_entries(1, 0);

/// Container cgroups and those below them (`collector_common::maps::CONTAINER_CGROUPS`).
#[map]
pub static CONTAINER_CGROUPS: HashMap<u64, u8> =
    HashMap::with_max_entries(collector_common::maps::CONTAINER_CGROUPS_MAX, 0);

/// `kernel.protect`: whom the guard protects; a process id of 0 turns it
/// off (`crate::guard`).
#[map]
pub static AGENT_GUARD: Array<AgentGuard> = Array::with_max_entries(1, 0);

/// `kernel.protect`: the agent's maps and programs, by kernel id.
#[map]
pub static AGENT_OBJECTS: HashMap<ObjectKey, u32> = HashMap::with_max_entries(AGENT_OBJECTS_MAX, 0);

/// `kernel.protect`: the directories of the agent's pins.
#[map]
pub static AGENT_DIRS: HashMap<InodeKey, u32> = HashMap::with_max_entries(AGENT_DIRS_MAX, 0);

/// Per process (tgid): the name it was executed as (`crate::exec_name`).
#[map]
pub static EXEC_NAMES: LruHashMap<u32, [u8; collector_common::COMM_LEN]> =
    LruHashMap::with_max_entries(EXEC_NAMES_MAX, 0);

/// Scratch for the path of a mount source named by a descriptor.
#[map]
pub static MOUNT_FD_SCRATCH: PerCpuArray<[u8; PATH_MAX * 2]> = PerCpuArray::with_max_entries(1, 0);

/// The scan of an overlay's option string (`crate::mount_overlay`).
#[map]
pub static OVERLAY_SCAN: PerCpuArray<crate::mount_overlay::OverlayScan> =
    PerCpuArray::with_max_entries(1, 0);
