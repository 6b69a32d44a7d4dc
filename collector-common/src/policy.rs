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
    /// container's cgroup or below one (`crate::container`).
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
/// `ModuleConfig::flags` of the process module: refuse the exec of a file
/// no directory names (`i_nlink == 0`: a memfd, or a deleted file).
pub const FLAG_PROCESS_DENY_MEMFD_EXEC: u8 = 2;
/// `ModuleConfig::flags` of the process module: there are deny rules, so
/// an executable mapping (`mmap`, `mprotect` with `PROT_EXEC`) of a file is
/// judged by them too: how a dynamic loader runs a program without exec.
pub const FLAG_PROCESS_JUDGE_MAPPINGS: u8 = 4;
/// `ModuleConfig::flags` of the network module: refuse raw and packet
/// sockets (`network.raw: deny`).
pub const FLAG_NET_DENY_RAW: u8 = 2;
/// `ModuleConfig::flags` of the network module: the configuration has an
/// allow list of commands, UIDs or GIDs (only those may connect).
pub const FLAG_NET_ALLOW_COMMAND: u8 = 4;
pub const FLAG_NET_ALLOW_UID: u8 = 8;
pub const FLAG_NET_ALLOW_GID: u8 = 16;
/// `ModuleConfig::flags` of the file module: rules have identities
/// (`FILE_INODES`), so a file is also judged by the identities of its
/// dentry and the dentries above it.
pub const FLAG_FILE_IDENTITIES: u8 = 64;
/// `ModuleConfig::flags` of the file module: the identities settle most
/// files alone (every rule path, and every directory a path rule may
/// match below, lives on a filesystem whose inode numbers hold), so a
/// file whose walk ends at a known root without passing an
/// [`IDENTITY_CHECK_PATH`] mark needs no path: see [`IdentityRule`].
pub const FLAG_FILE_IDENTITY_FIRST: u8 = 128;
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
    /// The inode's `i_generation` on a filesystem [`keyed_by_generation`]
    /// names, else 0 (and 0 in every other map keyed by `InodeKey`): an
    /// inode number freed by a deleted file and given to a new one comes
    /// with another generation, so the new file is not taken for the old.
    pub generation: u32,
}

/// `statfs` magic numbers of the filesystems whose identities carry the
/// inode's generation: each gives every new inode a generation of its own,
/// and hands it out in its file handles, where the agent reads it.
/// (btrfs too, [`keyed_by_generation`], whose walks go their own way.)
pub const GENERATION_MAGICS: [u64; 3] = [
    0xef53,      // ext2/3/4
    0x5846_5342, // XFS
    0x0102_1994, // tmpfs
];

/// Whether identities on a filesystem of `magic` carry the inode's
/// generation: those of [`GENERATION_MAGICS`], and btrfs, whose walks take
/// each inode's device from its subvolume and its generation with it.
pub fn keyed_by_generation(magic: u64) -> bool {
    generation_mask(magic) != 0 || magic == BTRFS_MAGIC
}

/// The btrfs ioctls that copy a whole subvolume without opening its
/// files: a snapshot (`BTRFS_IOC_SNAP_CREATE`, `_V2`, the source's
/// descriptor first in the argument) and a send stream
/// (`BTRFS_IOC_SEND`, on the subvolume's own descriptor).
pub const BTRFS_IOC_SNAP_CREATE: u32 = 0x5000_9401;
pub const BTRFS_IOC_SNAP_CREATE_V2: u32 = 0x5000_9417;
pub const BTRFS_IOC_SEND: u32 = 0x4048_9426;

impl InodeKey {
    /// The key that stands for a whole btrfs subvolume (its device number,
    /// as `stat` and the programs give it): no inode has number 0. Its
    /// entry's deny rule is one that denies a file in it, so a snapshot or
    /// a send of the subvolume, which copies that file, is judged by it.
    pub const fn subvolume(dev: u32) -> Self {
        Self {
            ino: 0,
            dev,
            generation: 0,
        }
    }
}

/// btrfs's `statfs` magic number. Its inodes are numbered per subvolume,
/// and `stat` gives each subvolume a device number of its own (not the
/// superblock's): the programs read that one too
/// (`globals::BTRFS_SUBVOLUMES`).
pub const BTRFS_MAGIC: u64 = 0x9123_683e;

/// The mask an identity's generation is taken through on a filesystem of
/// `magic` (its superblock's `s_magic`): all ones where identities carry
/// it, 0 elsewhere. The programs work it out once per walk, so the walk
/// itself has no branch more.
#[inline(always)]
pub fn generation_mask(magic: u64) -> u32 {
    if magic == GENERATION_MAGICS[0]
        || magic == GENERATION_MAGICS[1]
        || magic == GENERATION_MAGICS[2]
    {
        u32::MAX
    } else {
        0
    }
}

/// Value of the identity map (`FILE_INODES`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityRule {
    /// The deny and allow rules whose path is this file or directory (or,
    /// at a known root, the nearest above its mount point); 0 for none.
    pub deny_rule: u32,
    pub allow_rule: u32,
    /// [`IDENTITY_CHECK_PATH`], [`IDENTITY_KNOWN_ROOT`].
    pub flags: u32,
    pub _pad: u32,
}

/// A path rule may match below this directory though no identity says so
/// (a rule path that does not exist yet, or the directory of a rule path,
/// whose file may be replaced by another): a file below it is judged by
/// its path too.
pub const IDENTITY_CHECK_PATH: u32 = 1;
/// The root of a filesystem mounted in the host's tree when the policy was
/// compiled, with the rules of the path it is mounted on: a walk that
/// reaches it has seen every identity that can speak for the file.
pub const IDENTITY_KNOWN_ROOT: u32 = 2;

impl IdentityRule {
    pub fn rule(&self) -> PathRule {
        PathRule {
            deny_rule: self.deny_rule,
            allow_rule: self.allow_rule,
        }
    }
}

/// Words of the identity filter (`FILE_INODE_FILTER`): 2^19 bits, one set
/// for each key of `FILE_INODES`, so that the dentries a program walks
/// past are looked up only when their bit is set. With the map full
/// (65,536 keys) about one lookup in eight is made for nothing.
pub const INODE_FILTER_WORDS: usize = 8192;

/// The identity filter of one policy set.
pub type InodeFilter = [u64; INODE_FILTER_WORDS];

impl InodeKey {
    /// The key's bit in the identity filter (a multiplicative hash: a
    /// multiply and a shift in the programs).
    #[inline(always)]
    pub fn filter_bit(&self) -> usize {
        let mixed = (self.ino ^ (u64::from(self.dev) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - 19)) as usize
    }

    /// Sets the key's bit in `filter`.
    pub fn enter(&self, filter: &mut InodeFilter) {
        let bit = self.filter_bit();
        filter[bit >> 6] |= 1 << (bit & 63);
    }

    /// Whether the key's bit is set in `filter`: if not, the key is not in
    /// the map.
    #[inline(always)]
    pub fn may_be_in(&self, filter: &InodeFilter) -> bool {
        let bit = self.filter_bit();
        filter[(bit >> 6) & (INODE_FILTER_WORDS - 1)] & (1 << (bit & 63)) != 0
    }
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
    unsafe impl aya::Pod for super::IdentityRule {}
    unsafe impl aya::Pod for crate::guard::AgentGuard {}
    unsafe impl aya::Pod for crate::mount::MountIdentity {}
    unsafe impl aya::Pod for crate::guard::ObjectKey {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{boxed::Box, vec::Vec};

    use super::*;

    fn key(ino: u64, dev: u32) -> InodeKey {
        InodeKey {
            ino,
            dev,
            generation: 0,
        }
    }

    #[test]
    fn generations_are_kept_on_the_filesystems_that_give_them() {
        for magic in GENERATION_MAGICS {
            assert_eq!(generation_mask(magic), u32::MAX);
        }
        // btrfs: a walk of its own, with generations.
        assert_eq!(generation_mask(BTRFS_MAGIC), 0);
        assert!(keyed_by_generation(BTRFS_MAGIC));
        // overlayfs, procfs: the number alone.
        for magic in [0x794c_7630, 0x9fa0] {
            assert!(!keyed_by_generation(magic));
            assert_eq!(generation_mask(magic), 0);
        }
        // The filter speaks of numbers: a key's generation moves no bit.
        let fresh = InodeKey {
            generation: 7,
            ..key(12, 0x80_0001)
        };
        assert_eq!(fresh.filter_bit(), key(12, 0x80_0001).filter_bit());
    }

    #[test]
    fn the_identity_filter_never_turns_away_a_key_it_holds() {
        let mut filter: Box<InodeFilter> = Box::new([0; INODE_FILTER_WORDS]);
        let held: Vec<InodeKey> = (0..65_536u64)
            .map(|i| key(i * 7919 + 2, (8 << 20) | (i % 3) as u32))
            .collect();
        for k in &held {
            assert!(k.filter_bit() < INODE_FILTER_WORDS * 64);
            k.enter(&mut filter);
        }
        assert!(held.iter().all(|k| k.may_be_in(&filter)));
        // Full map: most other keys are still turned away without a lookup.
        let strangers = (0..100_000u64)
            .map(|i| key(i * 104_729 + 1_000_000_007, 8 << 20))
            .filter(|k| k.may_be_in(&filter))
            .count();
        assert!(strangers < 20_000, "{strangers} of 100,000 let through");
        let empty: Box<InodeFilter> = Box::new([0; INODE_FILTER_WORDS]);
        assert!(!held[0].may_be_in(&empty));
    }
}
