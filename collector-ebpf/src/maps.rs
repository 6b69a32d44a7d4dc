//! Every map the programs share with the agent. Names are part of the ABI
//! (`collector_common::maps`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
};
use collector_common::{
    HOOK_COUNT, MODULE_COUNT, ModuleConfig, NameKey, PATH_MAX, PathKey, PathRule,
    file::FileRecord,
    maps::{CIDR_RULES_MAX, ID_RULES_MAX, NAME_RULES_MAX, PATH_RULES_MAX},
    mount::MountRecord,
    net::{V4Key, V6Key},
    process::ExecRecord,
};

/// Events to the agent. The agent sets the size before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// One u64: the next event sequence number.
#[map]
pub static SEQUENCE: Array<u64> = Array::with_max_entries(1, 0);

/// Per hook: records lost because the ring buffer was full.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HOOK_COUNT, 0);

/// Per module: enabled, mode, policy, target.
#[map]
pub static MODULE_CONFIG: Array<ModuleConfig> = Array::with_max_entries(MODULE_COUNT, 0);

/// File rules: path prefix (with trailing `/`) → the deny/allow rules that
/// cover it.
#[map]
pub static FILE_RULES: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);

/// Exec rules by executable path prefix.
#[map]
pub static EXEC_PATH_RULES: LpmTrie<PathKey, PathRule> =
    LpmTrie::with_max_entries(PATH_RULES_MAX, 0);

/// Exec rules by program name (the basename the program was run as).
#[map]
pub static EXEC_NAME_RULES: HashMap<NameKey, PathRule> =
    HashMap::with_max_entries(NAME_RULES_MAX, 0);

/// Mount rules: denied source path prefixes.
#[map]
pub static MOUNT_RULES: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(PATH_RULES_MAX, 0);

/// Network rules by destination (or source) network, IPv4 and IPv6.
#[map]
pub static NET_V4_RULES: LpmTrie<V4Key, PathRule> = LpmTrie::with_max_entries(CIDR_RULES_MAX, 0);

#[map]
pub static NET_V6_RULES: LpmTrie<V6Key, PathRule> = LpmTrie::with_max_entries(CIDR_RULES_MAX, 0);

/// Network rules by command (`comm`, NUL-padded), UID and GID.
#[map]
pub static NET_COMMAND_RULES: HashMap<[u8; collector_common::COMM_LEN], PathRule> =
    HashMap::with_max_entries(ID_RULES_MAX, 0);

#[map]
pub static NET_UID_RULES: HashMap<u32, PathRule> = HashMap::with_max_entries(ID_RULES_MAX, 0);

#[map]
pub static NET_GID_RULES: HashMap<u32, PathRule> = HashMap::with_max_entries(ID_RULES_MAX, 0);

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
}

#[map]
pub static WALK_SCRATCH: PerCpuArray<WalkScratch> = PerCpuArray::with_max_entries(1, 0);
