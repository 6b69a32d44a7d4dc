//! File rules by identity: every rule path that exists when the policy is
//! compiled, as the kernel knows it (device and inode), for the
//! `FILE_INODES` map. The programs look up a file's dentry and those above
//! it, so a bind mount, a chroot, another mount namespace's view or a hard
//! link of a denied file answers to the same rule as its path.
//!
//! Files below a denied directory with more than one link are entered too:
//! a link made before the agent started is another name in another
//! directory, and only the file's own identity can tell.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use collector_common::{InodeKey, PathRule};
use tracing::warn;

/// Most entries looked at below denied directories for hard links, per
/// policy: a rule on a large tree must not make every reload walk it all.
pub const LINK_SCAN_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct Identities {
    by_inode: HashMap<InodeKey, PathRule>,
    /// Hard links below denied directories entered.
    pub links: usize,
    /// Whether the scan for hard links stopped at [`LINK_SCAN_LIMIT`].
    pub scan_cut: bool,
}

impl Identities {
    /// `deny` and `allow` are `(rule id, normalised absolute path)`; paths
    /// that do not exist (yet) are left to the path rules.
    pub fn resolve(deny: &[(u32, &str)], allow: &[(u32, &str)]) -> Self {
        let mut ids = Self::default();
        for (id, path) in deny {
            if let Ok(meta) = fs::metadata(path) {
                let slot = ids.by_inode.entry(key_of(&meta)).or_default();
                if slot.deny_rule == 0 {
                    slot.deny_rule = *id;
                }
            }
        }
        for (id, path) in allow {
            if let Ok(meta) = fs::metadata(path) {
                let slot = ids.by_inode.entry(key_of(&meta)).or_default();
                if slot.allow_rule == 0 {
                    slot.allow_rule = *id;
                }
            }
        }
        let mut budget = LINK_SCAN_LIMIT;
        for (id, path) in deny {
            if budget == 0 {
                break;
            }
            ids.enter_links_below(Path::new(path), *id, &mut budget);
        }
        if budget == 0 {
            ids.scan_cut = true;
            warn!(
                "files.deny: stopped looking for hard links below denied directories after \
                 {LINK_SCAN_LIMIT} entries; a link made before now to a file further down is \
                 judged by its own path only"
            );
        }
        ids
    }

    /// Enters every file below `dir` with more than one link, as denied by
    /// `rule`; each entry looked at costs one of `budget`.
    fn enter_links_below(&mut self, dir: &Path, rule: u32, budget: &mut usize) {
        let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    pending.push(entry.path());
                } else if meta.nlink() > 1 && !meta.file_type().is_symlink() {
                    let slot = self.by_inode.entry(key_of(&meta)).or_default();
                    if slot.deny_rule == 0 {
                        slot.deny_rule = rule;
                        self.links += 1;
                    }
                }
            }
        }
    }

    /// The map's entries.
    pub fn entries(&self) -> impl Iterator<Item = (InodeKey, PathRule)> + '_ {
        self.by_inode.iter().map(|(k, v)| (*k, *v))
    }

    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// The rule `path` answers to by its own identity (not its ancestors'),
    /// as the kernel's lookup finds it.
    pub fn lookup(&self, path: &Path) -> Option<&PathRule> {
        fs::symlink_metadata(path)
            .ok()
            .and_then(|meta| self.by_inode.get(&key_of(&meta)))
    }
}

/// A file's identity as the kernel writes it: `super_block.s_dev` is
/// `MKDEV(major, minor)` (major << 20 | minor), not the encoding `stat`
/// returns.
fn key_of(meta: &fs::Metadata) -> InodeKey {
    let dev = meta.dev();
    InodeKey {
        ino: meta.ino(),
        dev: (libc::major(dev) << 20) | libc::minor(dev),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_and_extra_links_below_denied_directories_get_identities() {
        let dir = tempfile::tempdir().unwrap();
        let denied = dir.path().join("secret");
        let allowed = dir.path().join("public");
        fs::create_dir_all(denied.join("sub")).unwrap();
        fs::create_dir_all(&allowed).unwrap();
        fs::write(denied.join("sub/key"), "k").unwrap();
        fs::write(denied.join("lonely"), "l").unwrap();
        // A link made elsewhere before the policy: another name, same file.
        fs::hard_link(denied.join("sub/key"), allowed.join("k")).unwrap();
        let (d, a) = (denied.to_str().unwrap(), allowed.to_str().unwrap());
        let missing = dir.path().join("not-yet");
        let ids = Identities::resolve(&[(1, d), (3, missing.to_str().unwrap())], &[(2, a)]);
        assert_eq!(ids.lookup(&denied).map(|r| r.deny_rule), Some(1));
        assert_eq!(ids.lookup(&allowed).map(|r| r.allow_rule), Some(2));
        // The extra link answers to the denied directory's rule.
        assert_eq!(ids.lookup(&allowed.join("k")).map(|r| r.deny_rule), Some(1));
        assert_eq!(ids.links, 1);
        // A file with one name is found by its directory, not entered.
        assert!(ids.lookup(&denied.join("lonely")).is_none());
        assert_eq!(ids.len(), 3);
        assert!(!ids.scan_cut);
    }

    #[test]
    fn the_kernel_device_number_is_major_shifted_by_20() {
        let meta = fs::metadata("/").unwrap();
        let key = key_of(&meta);
        assert_eq!(key.dev >> 20, libc::major(meta.dev()));
        assert_eq!(key.dev & 0xfffff, libc::minor(meta.dev()));
    }
}
