//! Shared steps of every program: policy lookup, sequence numbers, and
//! handing a record to the agent (counting it when the ring buffer is full).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::{bpf_probe_read_kernel_buf, generated::bpf_ktime_get_boot_ns};
use collector_common::{
    Decision, EventHeader, EventKind, Hook, MODE_BLOCK, ModuleConfig, PATH_KEY_LEN, PATH_MAX,
    PathRule,
};

use crate::maps::{DROPS, EVENTS, FILE_RULES, PATH_KEY_SCRATCH, SEQUENCE};

/// The verdict of the file policy on one path.
pub struct Verdict {
    pub decision: Decision,
    pub rule_id: u32,
}

impl Verdict {
    /// The value an LSM program returns for this verdict: 0 or -EPERM only
    /// (newer verifiers reject LSM programs whose return value they cannot
    /// bound to [-4095, 0]).
    #[inline(always)]
    pub fn lsm_return(&self) -> i32 {
        const EPERM: i32 = 1;
        if matches!(self.decision, Decision::Blocked) {
            -EPERM
        } else {
            0
        }
    }
}

/// Applies the file policy to `path[..len]`. `None`: allowed, nothing to
/// report. `enforcing` is false on tiers that can only audit.
#[inline(always)]
pub fn file_verdict(
    config: &ModuleConfig,
    path: &[u8; PATH_MAX],
    len: usize,
    enforcing: bool,
) -> Option<Verdict> {
    let rule_id = PathRule::denial(lookup_path(path, len).as_ref(), config.policy)?;
    let decision = if enforcing && config.mode == MODE_BLOCK {
        Decision::Blocked
    } else {
        Decision::WouldBlock
    };
    Some(Verdict { decision, rule_id })
}

/// Longest-prefix lookup of `path[..len]` followed by `/` in the file rules.
#[inline(always)]
fn lookup_path(path: &[u8; PATH_MAX], len: usize) -> Option<PathRule> {
    let key = PATH_KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    // Copy the whole key width; bytes past the prefix length are ignored.
    unsafe { bpf_probe_read_kernel_buf(path.as_ptr(), &mut key.data) }.ok()?;
    let used = if len < PATH_KEY_LEN {
        // `len & (PATH_KEY_LEN - 1)` is `len`; the mask shows the verifier the bound.
        key.data[len & (PATH_KEY_LEN - 1)] = b'/';
        len + 1
    } else {
        PATH_KEY_LEN
    };
    key.prefix_len = (used * 8) as u32;
    FILE_RULES.get(&*key).copied()
}

#[inline(always)]
pub fn next_seq() -> u64 {
    match SEQUENCE.get_ptr_mut(0) {
        // The BPF target has no compare-and-swap, so `AtomicU64::fetch_add`
        // is unavailable; the intrinsic lowers to the BPF atomic add with
        // fetch. It must be SeqCst: LLVM 22 lowers a Relaxed one to the
        // plain `lock add`, which returns nothing, and hands back the
        // addend as if it were the old value.
        Some(p) => unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) },
        None => 0,
    }
}

#[inline(always)]
pub fn header(
    kind: EventKind,
    hook: Hook,
    config: &ModuleConfig,
    verdict: &Verdict,
) -> EventHeader {
    EventHeader {
        kind: kind as u8,
        hook: hook as u8,
        decision: verdict.decision as u8,
        mode: config.mode,
        rule_id: verdict.rule_id,
        seq: next_seq(),
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    }
}

/// Copies `len` bytes from `record` into the ring buffer; a full ring buffer
/// is counted against `hook`, never silent.
#[inline(always)]
pub fn submit(hook: Hook, record: *const u8, len: usize) {
    let bytes = unsafe { core::slice::from_raw_parts(record, len) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count_drop(hook);
    }
}

#[inline(always)]
fn count_drop(hook: Hook) {
    if let Some(n) = DROPS.get_ptr_mut(hook as u32) {
        unsafe { *n += 1 };
    }
}
