//! Policy maps: per-module switches and rule lookups.

/// Policy modules; index into the `MODULE_CONFIG` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    Files = 0,
    Process = 1,
    Mount = 2,
    Network = 3,
}

impl Module {
    /// Every module, in index order.
    pub const ALL: [Module; 4] = [
        Module::Files,
        Module::Process,
        Module::Mount,
        Module::Network,
    ];
}

pub const MODULE_COUNT: u32 = Module::ALL.len() as u32;

pub const MODE_MONITOR: u8 = 0;
pub const MODE_BLOCK: u8 = 1;
pub const POLICY_BLACKLIST: u8 = 0;
pub const POLICY_WHITELIST: u8 = 1;
pub const TARGET_HOST: u8 = 0;
pub const TARGET_CONTAINER: u8 = 1;

/// Per-module switches, one entry per [`Module`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleConfig {
    /// 0: the module's programs return at once.
    pub enabled: u8,
    /// [`MODE_MONITOR`] or [`MODE_BLOCK`].
    pub mode: u8,
    /// [`POLICY_BLACKLIST`] or [`POLICY_WHITELIST`].
    pub policy: u8,
    /// [`TARGET_HOST`]: everything; [`TARGET_CONTAINER`]: only tasks in a
    /// mount namespace other than the host's.
    pub target: u8,
    /// [`FLAG_LSM`], [`FLAG_FILE_IOCTL`].
    pub flags: u8,
    /// Which of the two sets of rule maps this configuration goes with
    /// (see [`POLICY_SETS`]).
    pub generation: u8,
    pub _pad: [u8; 2],
}

/// The policy lives in two sets of maps. The programs read the active set's
/// number first (`POLICY_ACTIVE`), then that set's module switches
/// (`MODULE_CONFIG[set * MODULE_COUNT + module]`) and rule maps. A reload
/// fills the other set and then switches the one number, so every operation
/// is judged wholly by the old policy or wholly by the new one.
pub const POLICY_SETS: u32 = 2;

/// `POLICY_ACTIVE` holds two things in one number, so that one write hands
/// over both: the epoch of the programs in force and their policy set.
/// Every load of the programs gets an epoch (`POLICY_EPOCH`); programs of
/// any other epoch do nothing. That is how an agent takes over from a
/// previous agent's pinned programs: it attaches its own while they stand
/// aside, then switches, and at no moment do both, or neither, judge.
#[inline(always)]
pub const fn active_value(epoch: u32, set: u32) -> u32 {
    (epoch << 1) | (set & 1)
}

#[inline(always)]
pub const fn active_epoch(active: u32) -> u32 {
    active >> 1
}

#[inline(always)]
pub const fn active_set(active: u32) -> u32 {
    active & 1
}

/// `ModuleConfig::flags`: the module's BPF-LSM programs are attached, so
/// its denials are enforced in block mode (set by the agent).
pub const FLAG_LSM: u8 = 1;
/// `ModuleConfig::flags` of the file module: judge ioctls too.
pub const FLAG_FILE_IOCTL: u8 = 2;
/// `ModuleConfig::flags` of the network module: the configuration has an
/// allow list of commands, UIDs or GIDs (only those may connect).
pub const FLAG_NET_ALLOW_COMMAND: u8 = 4;
pub const FLAG_NET_ALLOW_UID: u8 = 8;
pub const FLAG_NET_ALLOW_GID: u8 = 16;
/// `ModuleConfig::flags` of the file module: rules have identities
/// (`FILE_INODES`), so a file is also judged by the identities of its
/// dentry and the dentries above it.
pub const FLAG_FILE_IDENTITIES: u8 = 64;
/// `ModuleConfig::flags` of the network module: there are rules by
/// command, UID or GID (deny or allow), so who connects must be looked up.
pub const FLAG_NET_WHO_RULES: u8 = 32;

/// Bytes of a path prefix lookup key. The kernel's LPM trie accepts at most
/// 256 bytes of key data; a rule's prefix plus its trailing `/` must fit.
pub const PATH_KEY_LEN: usize = 256;
/// Longest path prefix a rule may have (the key also holds a trailing `/`).
pub const PATH_RULE_MAX: usize = PATH_KEY_LEN - 1;

/// Data of a path-prefix LPM trie key: the prefix followed by `/`, so that a
/// rule matches on directory boundaries only (`/etc/secret/` is not a prefix
/// of `/etc/secrets.d/x/`). Lookups use the full path followed by `/`.
pub type PathKey = [u8; PATH_KEY_LEN];

/// Bytes of a program-name key (an executable's basename, NUL-padded).
pub const NAME_KEY_LEN: usize = 64;
/// A program name as a hash-map key.
pub type NameKey = [u8; NAME_KEY_LEN];

/// Value of a rule lookup (path-prefix trie entries and name entries). The
/// policy compiler stores in each path entry the nearest deny rule and the
/// nearest allow rule among the entry's own prefix and its ancestors, so the
/// single longest match answers both "is any deny rule a prefix?" and "is
/// any allow rule a prefix?". Rule ids start at 1; 0 means none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRule {
    pub deny_rule: u32,
    pub allow_rule: u32,
}

impl PathRule {
    /// The policy's answer given the entries that match: `Some(rule id)`
    /// when denied (rule id 0 for a whitelist's default deny), `None` when
    /// allowed. A deny rule wins over an allow rule, as in safeguard. Both
    /// sides use this one function.
    #[inline(always)]
    pub fn denial<const N: usize>(entries: [Option<&PathRule>; N], policy: u8) -> Option<u32> {
        let mut deny = 0;
        let mut allow = 0;
        let mut i = 0;
        while i < entries.len() {
            if let Some(r) = entries[i] {
                if deny == 0 {
                    deny = r.deny_rule;
                }
                if allow == 0 {
                    allow = r.allow_rule;
                }
            }
            i += 1;
        }
        if deny != 0 {
            Some(deny)
        } else if policy == POLICY_WHITELIST && allow == 0 {
            Some(0)
        } else {
            None
        }
    }
}

/// Key of the identity map (`FILE_INODES`): a file or directory as the
/// kernel knows it, whatever name or mount reaches it. `dev` is the
/// kernel's `super_block.s_dev` (`MKDEV(major, minor)`: major << 20 | minor).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// Value of the ancestor trie: its key is a proper ancestor directory of a
/// denied path (with trailing `/`), and an entry answers only for that
/// directory itself, not for what lies below it (a longest-prefix trie has
/// no exact lookup, so the entry says how long its key is). Renaming such a
/// directory would carry the denied path to a name no rule speaks of.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AncestorRule {
    /// The first deny rule below the directory.
    pub deny_rule: u32,
    /// Length of the entry's key in bits (the trie's prefix length).
    pub key_bits: u32,
}

/// The network policy, as safeguard has it. `Some(rule id)` when denied
/// (0: a whitelist or allow-list default). A denied command, UID or GID
/// always denies; a denied CIDR is overridden by an allowed command, UID or
/// GID; under a whitelist the address must be allowed; an allow list of
/// commands, UIDs or GIDs admits only those.
#[inline(always)]
pub fn net_denial(
    cidr: Option<&PathRule>,
    command: Option<&PathRule>,
    uid: Option<&PathRule>,
    gid: Option<&PathRule>,
    policy: u8,
    flags: u8,
) -> Option<u32> {
    let deny = |r: Option<&PathRule>| r.map_or(0, |r| r.deny_rule);
    let allow = |r: Option<&PathRule>| r.map_or(0, |r| r.allow_rule);
    for who in [command, uid, gid] {
        if deny(who) != 0 {
            return Some(deny(who));
        }
    }
    let who_allowed = allow(command) != 0 || allow(uid) != 0 || allow(gid) != 0;
    let cidr_denied = deny(cidr);
    if cidr_denied != 0 && !who_allowed {
        return Some(cidr_denied);
    }
    if policy == POLICY_WHITELIST && cidr_denied == 0 && allow(cidr) == 0 {
        return Some(0);
    }
    let someone_not_allowed = (flags & FLAG_NET_ALLOW_COMMAND != 0 && allow(command) == 0)
        || (flags & FLAG_NET_ALLOW_UID != 0 && allow(uid) == 0)
        || (flags & FLAG_NET_ALLOW_GID != 0 && allow(gid) == 0);
    if policy == POLICY_WHITELIST && someone_not_allowed {
        return Some(0);
    }
    None
}

const _: () = {
    assert!(core::mem::size_of::<ModuleConfig>() == 8);
    assert!(core::mem::size_of::<PathRule>() == 8);
    assert!(core::mem::size_of::<AncestorRule>() == 8);
    assert!(core::mem::size_of::<InodeKey>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data without padding-sensitive invariants.
    unsafe impl aya::Pod for super::ModuleConfig {}
    unsafe impl aya::Pod for super::PathRule {}
    unsafe impl aya::Pod for super::AncestorRule {}
    unsafe impl aya::Pod for super::InodeKey {}
}
