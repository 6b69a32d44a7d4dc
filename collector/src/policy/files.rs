//! File rules → path-prefix LPM trie entries.
//!
//! Each distinct prefix becomes one entry whose key is the prefix followed
//! by `/` (so rules match on directory boundaries) and whose value carries
//! the nearest deny rule and the nearest allow rule among the prefix and its
//! ancestors. The kernel's single longest-prefix lookup then answers the
//! whole policy question (`PathRule::denial`).

use std::collections::HashMap;

use collector_common::{
    MODE_BLOCK, MODE_MONITOR, ModuleConfig, PATH_KEY_LEN, POLICY_BLACKLIST, POLICY_WHITELIST,
    PathKey, PathRule,
};

use super::RuleRef;
use crate::config::{FilesConfig, Mode, Policy};

/// One trie entry: key data and the number of leading bytes that count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    pub key: PathKey,
    pub key_len: usize,
    pub rule: PathRule,
}

#[derive(Debug, Clone)]
pub struct CompiledFiles {
    pub module: ModuleConfig,
    pub entries: Vec<PathEntry>,
    /// Rule id `n` is `rules[n - 1]`.
    pub rules: Vec<RuleRef>,
    by_prefix: HashMap<Vec<u8>, PathRule>,
}

pub const RULESET_DENY: &str = "files.deny";
pub const RULESET_ALLOW: &str = "files.allow";

impl CompiledFiles {
    pub fn compile(config: &FilesConfig) -> Self {
        let mut rules = Vec::new();
        // Prefix (with trailing '/') → (own deny rule, own allow rule).
        let mut own: HashMap<Vec<u8>, PathRule> = HashMap::new();
        for (ruleset, paths) in [(RULESET_DENY, &config.deny), (RULESET_ALLOW, &config.allow)] {
            for path in paths {
                let key = prefix_key(path.as_str());
                let slot = own.entry(key).or_default();
                let field = if ruleset == RULESET_DENY {
                    &mut slot.deny_rule
                } else {
                    &mut slot.allow_rule
                };
                if *field == 0 {
                    rules.push(RuleRef {
                        ruleset,
                        name: path.as_str().to_string(),
                    });
                    *field = rules.len() as u32;
                }
            }
        }

        // Inherit the nearest deny and allow from ancestors.
        let by_prefix: HashMap<Vec<u8>, PathRule> = own
            .keys()
            .map(|key| {
                let mut rule = PathRule::default();
                for ancestor in boundaries(key).filter_map(|len| own.get(&key[..len])) {
                    if rule.deny_rule == 0 {
                        rule.deny_rule = ancestor.deny_rule;
                    }
                    if rule.allow_rule == 0 {
                        rule.allow_rule = ancestor.allow_rule;
                    }
                }
                (key.clone(), rule)
            })
            .collect();

        let mut entries: Vec<PathEntry> = by_prefix
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

        Self {
            module: ModuleConfig {
                enabled: config.enable as u8,
                mode: match config.mode {
                    Mode::Monitor => MODE_MONITOR,
                    Mode::Block => MODE_BLOCK,
                },
                policy: match config.policy {
                    Policy::Blacklist => POLICY_BLACKLIST,
                    Policy::Whitelist => POLICY_WHITELIST,
                },
                _pad: [0; 5],
            },
            entries,
            rules,
            by_prefix,
        }
    }

    /// The policy's answer for an absolute path, as the kernel would give it:
    /// `Some(rule id)` when denied. Used for paths only the agent can
    /// resolve (relative paths seen on the fallback tier).
    pub fn denial(&self, path: &str) -> Option<u32> {
        let key = lookup_key(path);
        let entry = boundaries(&key).find_map(|len| self.by_prefix.get(&key[..len]));
        PathRule::denial(entry, self.module.policy)
    }

    pub fn rule(&self, id: u32) -> Option<&RuleRef> {
        id.checked_sub(1).and_then(|i| self.rules.get(i as usize))
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

/// A lookup key: the path and a `/`, cut to the kernel's key width.
fn lookup_key(path: &str) -> Vec<u8> {
    let mut key = path.as_bytes().to_vec();
    key.push(b'/');
    key.truncate(PATH_KEY_LEN);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RulePath, Target};

    fn files(policy: Policy, allow: &[&str], deny: &[&str]) -> CompiledFiles {
        let paths = |v: &[&str]| -> Vec<RulePath> {
            v.iter()
                .map(|p| crate::config::validate_rule_path(p).unwrap())
                .collect()
        };
        CompiledFiles::compile(&FilesConfig {
            enable: true,
            mode: Mode::Block,
            target: Target::Host,
            policy,
            allow: paths(allow),
            deny: paths(deny),
        })
    }

    fn denied_by(c: &CompiledFiles, path: &str) -> Option<String> {
        c.denial(path)
            .map(|id| c.rule(id).map_or("default".into(), |r| r.name.clone()))
    }

    #[test]
    fn prefixes_match_on_directory_boundaries_only() {
        let c = files(Policy::Blacklist, &[], &["/etc/secret"]);
        assert_eq!(denied_by(&c, "/etc/secret"), Some("/etc/secret".into()));
        assert_eq!(denied_by(&c, "/etc/secret/x"), Some("/etc/secret".into()));
        assert_eq!(
            denied_by(&c, "/etc/secret/a/b/c"),
            Some("/etc/secret".into())
        );
        assert_eq!(denied_by(&c, "/etc/secrets.d/x"), None);
        assert_eq!(denied_by(&c, "/etc/secre"), None);
        assert_eq!(denied_by(&c, "/etc"), None);
    }

    #[test]
    fn deny_wins_over_a_longer_allow_as_in_safeguard() {
        let c = files(Policy::Blacklist, &["/etc/ssl"], &["/etc"]);
        assert_eq!(denied_by(&c, "/etc/ssl/certs/x"), Some("/etc".into()));
        // The compiled entry for /etc/ssl carries the ancestor's deny.
        let ssl = c
            .entries
            .iter()
            .find(|e| &e.key[..e.key_len] == b"/etc/ssl/")
            .unwrap();
        assert_ne!(ssl.rule.deny_rule, 0);
        assert_ne!(ssl.rule.allow_rule, 0);
    }

    #[test]
    fn whitelist_denies_what_is_not_allowed() {
        let c = files(Policy::Whitelist, &["/usr", "/etc"], &["/etc/shadow"]);
        assert_eq!(denied_by(&c, "/usr/bin/ls"), None);
        assert_eq!(denied_by(&c, "/etc/hosts"), None);
        assert_eq!(denied_by(&c, "/etc/shadow"), Some("/etc/shadow".into()));
        assert_eq!(denied_by(&c, "/home/x"), Some("default".into()));
        assert_eq!(denied_by(&c, "/usrlocal/x"), Some("default".into()));
    }

    #[test]
    fn root_allow_covers_everything() {
        let c = files(Policy::Whitelist, &["/"], &["/root/.ssh"]);
        assert_eq!(denied_by(&c, "/anything/at/all"), None);
        assert_eq!(
            denied_by(&c, "/root/.ssh/id_rsa"),
            Some("/root/.ssh".into())
        );
    }

    #[test]
    fn duplicate_rules_share_an_id() {
        let c = files(Policy::Blacklist, &[], &["/a", "/a/", "/b"]);
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.entries.len(), 2);
    }

    #[test]
    fn long_paths_are_judged_on_the_key_width() {
        let c = files(Policy::Blacklist, &[], &["/deep"]);
        let long = format!("/deep/{}", "x/".repeat(300));
        assert_eq!(denied_by(&c, &long), Some("/deep".into()));
    }
}
