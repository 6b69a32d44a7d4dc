//! Path-prefix rules → LPM trie entries.
//!
//! Each distinct prefix becomes one entry whose key is the prefix followed
//! by `/` (so rules match on directory boundaries) and whose value carries
//! the nearest deny rule and the nearest allow rule among the prefix and its
//! ancestors. The kernel's single longest-prefix lookup then answers the
//! whole policy question (`PathRule::denial`).

use std::collections::HashMap;

use collector_common::{AncestorRule, PATH_KEY_LEN, PathKey, PathRule};

use super::inherit;

/// One trie entry: key data and the number of leading bytes that count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    pub key: PathKey,
    pub key_len: usize,
    pub rule: PathRule,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathRules {
    by_prefix: HashMap<Vec<u8>, PathRule>,
}

impl PathRules {
    /// `deny` and `allow` are `(rule id, normalised absolute path)`.
    pub fn build(deny: &[(u32, &str)], allow: &[(u32, &str)]) -> Self {
        // Prefix (with trailing '/') → its own deny and allow rules.
        let mut own: HashMap<Vec<u8>, PathRule> = HashMap::new();
        for (id, path) in deny {
            let slot = own.entry(prefix_key(path)).or_default();
            if slot.deny_rule == 0 {
                slot.deny_rule = *id;
            }
        }
        for (id, path) in allow {
            let slot = own.entry(prefix_key(path)).or_default();
            if slot.allow_rule == 0 {
                slot.allow_rule = *id;
            }
        }
        // Inherit the nearest deny and allow from ancestors. A key ends in
        // `/`, so it contains exactly the keys it is a prefix of.
        let mut sorted: Vec<(Vec<u8>, PathRule)> = own.into_iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        inherit::nearest(&mut sorted, |ancestor, key| key.starts_with(ancestor));
        let by_prefix = sorted.into_iter().collect();
        Self { by_prefix }
    }

    /// The trie entries, sorted by key.
    pub fn entries(&self) -> Vec<PathEntry> {
        let mut entries: Vec<PathEntry> = self
            .by_prefix
            .iter()
            .map(|(key, rule)| {
                let mut data = [0u8; PATH_KEY_LEN];
                data[..key.len()].copy_from_slice(key);
                PathEntry {
                    key: data,
                    key_len: key.len(),
                    rule: *rule,
                }
            })
            .collect();
        entries.sort_by(|a, b| a.key[..a.key_len].cmp(&b.key[..b.key_len]));
        entries
    }

    /// Trie entries: one per distinct prefix.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Whether a rule speaks of `path`, or of something below it: a rule
    /// path at or above it, or one below it.
    pub fn touches(&self, path: &str) -> bool {
        let key = prefix_key(path);
        self.lookup(path).is_some() || self.by_prefix.keys().any(|k| k.starts_with(&key))
    }

    /// The longest matching entry for an absolute path, as the kernel's
    /// lookup finds it.
    pub fn lookup(&self, path: &str) -> Option<&PathRule> {
        let mut key = path.as_bytes().to_vec();
        key.push(b'/');
        key.truncate(PATH_KEY_LEN);
        boundaries(&key).find_map(|len| self.by_prefix.get(&key[..len]))
    }
}

/// A rule's key: `/etc/secret` → `/etc/secret/`; the root stays `/`.
fn prefix_key(path: &str) -> Vec<u8> {
    let mut key = path.as_bytes().to_vec();
    if key.last() != Some(&b'/') {
        key.push(b'/');
    }
    key
}

/// Lengths of `key`'s prefixes that end on a `/`, longest first.
fn boundaries(key: &[u8]) -> impl Iterator<Item = usize> + '_ {
    key.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| i + 1)
}

/// Proper ancestors of denied paths, each with the first deny rule below
/// it: renaming one of these directories is refused
/// (`collector_common::AncestorRule`). The root has no name to rename and
/// is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ancestors {
    by_dir: HashMap<Vec<u8>, u32>,
}

impl Ancestors {
    /// `deny` is `(rule id, normalised absolute path)`. The root is left
    /// out (no one renames it).
    pub fn build(deny: &[(u32, &str)]) -> Self {
        Self::build_from(deny, 2)
    }

    /// [`Ancestors::build`] with the root ("/") in: a bind mount of it
    /// shows every denied source.
    pub fn build_with_root(deny: &[(u32, &str)]) -> Self {
        Self::build_from(deny, 1)
    }

    fn build_from(deny: &[(u32, &str)], shortest: usize) -> Self {
        let mut by_dir = HashMap::new();
        for (id, path) in deny {
            let key = prefix_key(path);
            // Skip the path itself (its own key).
            for len in boundaries(&key).skip(1).filter(|len| *len >= shortest) {
                if len <= PATH_KEY_LEN {
                    by_dir.entry(key[..len].to_vec()).or_insert(*id);
                }
            }
        }
        Self { by_dir }
    }

    /// The trie entries: `(key, key length in bytes, rule)`.
    pub fn entries(&self) -> impl Iterator<Item = (PathKey, usize, AncestorRule)> + '_ {
        self.by_dir.iter().map(|(dir, id)| {
            let mut key = [0u8; PATH_KEY_LEN];
            key[..dir.len()].copy_from_slice(dir);
            let rule = AncestorRule {
                deny_rule: *id,
                key_bits: (dir.len() * 8) as u32,
            };
            (key, dir.len(), rule)
        })
    }

    pub fn len(&self) -> usize {
        self.by_dir.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_dir.is_empty()
    }

    /// The deny rule renaming the directory at `path` would carry away, as
    /// the kernel finds it.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        let mut key = path.as_bytes().to_vec();
        key.push(b'/');
        self.by_dir.get(&key).copied()
    }
}
