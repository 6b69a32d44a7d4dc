//! Every map the programs share with the agent. Names are part of the ABI
//! (`collector_common::maps`).

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray, RingBuf},
};
use collector_common::{
    FileOpenRecord, HOOK_COUNT, MODULE_COUNT, ModuleConfig, PathKey, PathRule, maps::FILE_RULES_MAX,
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

/// Per module: enabled, mode, policy.
#[map]
pub static MODULE_CONFIG: Array<ModuleConfig> = Array::with_max_entries(MODULE_COUNT, 0);

/// File rules: path prefix (with trailing `/`) to the deny/allow rules that
/// cover it.
#[map]
pub static FILE_RULES: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(FILE_RULES_MAX, 0);

/// Per-CPU scratch space: a file record is too big for the 512-byte stack.
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileOpenRecord> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for a path lookup key.
#[map]
pub static PATH_KEY_SCRATCH: PerCpuArray<aya_ebpf::maps::lpm_trie::Key<PathKey>> =
    PerCpuArray::with_max_entries(1, 0);
