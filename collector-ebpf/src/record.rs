//! Shared steps of every program: policy lookup, sequence numbers, and
//! handing a record to the agent (counting it when the ring buffer is full).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_ktime_get_boot_ns},
    maps::{LpmTrie, lpm_trie::Key},
};
use collector_common::{
    AncestorRule, Decision, DropReason, EventHeader, EventKind, Hook, MODE_BLOCK, MODULE_COUNT,
    ModuleConfig, PATH_KEY_LEN, PathKey, PathRule, SampleKey, SampleWindow, file::FileRecord,
};

use crate::{
    kernel::audit_rate_limit,
    maps::{DROPS, EVENTS, MODULE_CONFIG, PATH_KEY_SCRATCH, POLICY_ACTIVE, SAMPLING, SEQUENCE},
};

/// The verdict of a policy on one operation.
pub struct Verdict {
    pub decision: Decision,
    pub rule_id: u32,
}

impl Verdict {
    /// An operation reported for audit, not judged.
    pub const AUDIT: Verdict = Verdict {
        decision: Decision::Allowed,
        rule_id: 0,
    };

    /// The value an LSM program returns for this verdict: 0 or -EPERM only
    /// (newer verifiers reject LSM programs whose return value they cannot
    /// bound to [-4095, 0]).
    ///
    /// Computed as `allowed - 1` from a value the compiler cannot see
    /// through: left to itself it turns "blocked ? -1 : 0" into a
    /// negation, which the verifier (6.12) does not bound, while it does
    /// bound a masked value minus one.
    #[inline(always)]
    pub fn lsm_return(&self) -> i32 {
        let allowed: i32 = if matches!(self.decision, Decision::Blocked) {
            0
        } else {
            1
        };
        let allowed = unsafe { core::ptr::read_volatile(&allowed) } & 1;
        allowed - 1
    }
}

/// The module's switches, if it is enabled and the current task is in its
/// scope (`target`).
#[inline(always)]
pub fn active_module(module: collector_common::Module) -> Option<&'static ModuleConfig> {
    // The programs in force and their policy set, in one number: programs
    // of another epoch (a previous agent's, still pinned, or a new one's
    // not yet switched on) stand aside. Then the set's switches: they name
    // the set, and every rule map is taken from that same set.
    let active = *POLICY_ACTIVE.get(0)?;
    if collector_common::active_epoch(active) != crate::kernel::policy_epoch() {
        return None;
    }
    let set = collector_common::active_set(active);
    let config = MODULE_CONFIG.get(set * MODULE_COUNT + module as u32)?;
    (config.enabled != 0 && crate::kernel::in_scope(config.target)).then_some(config)
}

/// Turns a denial (`Some(rule id)`) into a verdict. `enforcing` is false on
/// hooks that can only audit.
#[inline(always)]
pub fn verdict(config: &ModuleConfig, denial: Option<u32>, enforcing: bool) -> Option<Verdict> {
    let rule_id = denial?;
    let decision = if enforcing && config.mode == MODE_BLOCK {
        Decision::Blocked
    } else {
        Decision::WouldBlock
    };
    Some(Verdict { decision, rule_id })
}

/// No denial, in the `u32` form the file and exec programs carry a
/// denial in while they combine several lookups: an `Option<u32>` kept
/// across branches reaches the verifier with its payload register never
/// written when it is `None` ("R5 !read_ok"). Rule ids never reach it.
pub const NO_DENIAL: u32 = u32::MAX - 1;

#[inline(always)]
pub fn as_denial(denial: Option<u32>) -> u32 {
    denial.unwrap_or(NO_DENIAL)
}

#[inline(always)]
pub fn denial_of(denial: u32) -> Option<u32> {
    (denial != NO_DENIAL).then_some(denial)
}

/// Folds what a file answers to by identity into its path's denial: a
/// deny rule by identity denies what its path alone would let through; an
/// allow rule by identity lifts a whitelist's default deny (0), never a
/// deny rule.
#[inline(always)]
pub fn with_identity(denial: u32, identity: &PathRule) -> u32 {
    if identity.deny_rule != 0 && (denial == NO_DENIAL || denial == 0) {
        identity.deny_rule
    } else if denial == 0 && identity.allow_rule != 0 {
        NO_DENIAL
    } else {
        denial
    }
}

/// Fail closed: the denial for a path that was cut keeps the deny rule it
/// matched, and is otherwise [`RULE_PATH_UNRESOLVED`](collector_common::RULE_PATH_UNRESOLVED)
/// (also in place of a whitelist's default). A cut path is its innermost
/// part: it may look allowed while the whole path is denied, so no answer
/// but a denial is safe.
#[inline(always)]
pub fn unless_cut(denial: u32, cut: bool) -> u32 {
    if cut && (denial == NO_DENIAL || denial == 0) {
        collector_common::RULE_PATH_UNRESOLVED
    } else {
        denial
    }
}

/// Longest-prefix lookup of the path at `path` (`len` bytes, followed by at
/// least PATH_KEY_LEN readable bytes) followed by `/`.
#[inline(always)]
pub fn lookup_path(
    rules: &LpmTrie<PathKey, PathRule>,
    path: *const u8,
    len: usize,
) -> Option<PathRule> {
    let key = PATH_KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    // Copy the whole key width; bytes past the prefix length are ignored.
    unsafe { bpf_probe_read_kernel_buf(path, &mut key.data) }.ok()?;
    let used = if len < PATH_KEY_LEN {
        key.data[crate::kernel::bounded(len, PATH_KEY_LEN - 1)] = b'/';
        len + 1
    } else {
        PATH_KEY_LEN
    };
    key.prefix_len = (used * 8) as u32;
    rules.get(&*key).copied()
}

/// Applies a path policy to the first path of a file record, using the
/// record itself as the trie key (`FileEvent::key_bits`): no copy.
#[inline(always)]
pub fn file_path_denial(
    rules: &LpmTrie<PathKey, PathRule>,
    config: &ModuleConfig,
    rec: &mut FileRecord,
    len: usize,
) -> Option<u32> {
    let used = if len < PATH_KEY_LEN {
        rec.paths[crate::kernel::bounded(len, PATH_KEY_LEN - 1)] = b'/';
        len + 1
    } else {
        PATH_KEY_LEN
    };
    rec.event.key_bits = (used * 8) as u32;
    let key = unsafe { &*core::ptr::addr_of!(rec.event.key_bits).cast::<Key<PathKey>>() };
    // No match is a rule of zeros: an Option's empty payload would reach
    // the verifier as a register never written.
    let entry = rules.get(key).copied().unwrap_or_default();
    rec.event.key_bits = 0;
    PathRule::denial([Some(&entry)], config.policy)
}

/// Whether the directory at `path` (`len` bytes) is itself a proper
/// ancestor of a denied path: `Some(deny rule)`.
#[inline(always)]
pub fn ancestor_denial(
    ancestors: &LpmTrie<PathKey, AncestorRule>,
    path: *const u8,
    len: usize,
) -> Option<u32> {
    let key = PATH_KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    unsafe { bpf_probe_read_kernel_buf(path, &mut key.data) }.ok()?;
    if len >= PATH_KEY_LEN {
        return None;
    }
    key.data[crate::kernel::bounded(len, PATH_KEY_LEN - 1)] = b'/';
    key.prefix_len = ((len + 1) * 8) as u32;
    let entry = ancestors.get(&*key)?;
    (entry.key_bits == key.prefix_len && entry.deny_rule != 0).then_some(entry.deny_rule)
}

/// Applies a path policy to one absolute path.
#[inline(always)]
pub fn path_denial(
    rules: &LpmTrie<PathKey, PathRule>,
    config: &ModuleConfig,
    path: *const u8,
    len: usize,
) -> Option<u32> {
    let entry = lookup_path(rules, path, len);
    PathRule::denial([entry.as_ref(), None], config.policy)
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
pub fn header(kind: EventKind, hook: Hook, mode: u8, verdict: &Verdict) -> EventHeader {
    EventHeader {
        kind: kind as u8,
        hook: hook as u8,
        decision: verdict.decision as u8,
        mode,
        rule_id: verdict.rule_id,
        seq: next_seq(),
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    }
}

/// Copies `len` bytes from `record` (which starts with an `EventHeader`)
/// into the ring buffer; a record that does not go in is counted against
/// `hook` and the reason, never silent.
///
/// The last quarter of the ring buffer is kept for blocked operations: a
/// flood of audit records (allowed, would-block) is cut at three quarters,
/// so the operations that were refused are still reported.
///
/// With `kernel.audit_rate_limit` set, a process's records of operations
/// that were not blocked are cut, per hook and rule, at that many a second
/// (see [`sampled_away`]).
///
/// The agent is woken only once a sixteenth of the ring buffer waits: a
/// wakeup per record is an interrupt per record, and it cost more than the
/// rest of a program's run (measured with `make bench`). The agent also
/// drains on a short timer, so a trickle of records waits at most that
/// long.
#[inline(always)]
pub fn submit(hook: Hook, record: *const u8, len: usize) {
    use aya_ebpf::bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE,
    };
    let header = unsafe { &*record.cast::<EventHeader>() };
    let blocked = header.decision == Decision::Blocked as u8;
    if !blocked && sampled_away(header) {
        count_drop(DropReason::Sampled, hook);
        return;
    }
    let size = EVENTS.query(BPF_RB_RING_SIZE.into());
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    if !blocked && waiting >= size - size / 4 {
        count_drop(DropReason::ReservedForBlocked, hook);
        return;
    }
    let flags = if waiting >= size / 16 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    let bytes = unsafe { core::slice::from_raw_parts(record, len) };
    if EVENTS.output::<[u8]>(bytes, flags.into()).is_err() {
        count_drop(DropReason::RingFull, hook);
    }
}

/// Whether this record goes over its process's allowance for its hook and
/// rule in the current one-second window. Blocked operations never do, nor
/// the process life cycle (forks, execs and exits make the process trees)
/// and cgroups made (they name containers).
/// Two CPUs counting one key at the same instant may let a record or two
/// more through; what is cut is counted exactly (`DROPS`).
#[inline(always)]
fn sampled_away(header: &EventHeader) -> bool {
    const WINDOW_NS: u64 = 1_000_000_000;
    let limit = audit_rate_limit();
    if limit == 0
        || header.kind == EventKind::Fork as u8
        || header.kind == EventKind::Exec as u8
        || header.kind == EventKind::Exit as u8
        || header.kind == EventKind::Cgroup as u8
    {
        return false;
    }
    let key = SampleKey {
        tgid: (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32,
        hook: u32::from(header.hook),
        rule_id: header.rule_id,
        _pad: 0,
    };
    let now = header.boot_ns;
    match SAMPLING.get_ptr_mut(&key) {
        Some(window) => unsafe {
            if now.wrapping_sub((*window).start_ns) >= WINDOW_NS {
                (*window).start_ns = now;
                (*window).records = 1;
                false
            } else {
                (*window).records += 1;
                (*window).records > limit
            }
        },
        None => {
            let window = SampleWindow {
                start_ns: now,
                records: 1,
            };
            let _ = SAMPLING.insert(&key, &window, 0);
            false
        }
    }
}

#[inline(always)]
fn count_drop(reason: DropReason, hook: Hook) {
    if let Some(n) = DROPS.get_ptr_mut(reason.index(hook as u32)) {
        unsafe { *n += 1 };
    }
}
