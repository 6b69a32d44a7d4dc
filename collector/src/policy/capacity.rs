//! What a policy needs of the kernel's rule maps, against what they hold.
//!
//! The maps are created with a fixed number of entries
//! (`collector_common::maps::*_RULES_MAX`); a policy that needs more would
//! fail part way through being written. It is refused whole instead, before
//! anything reaches the kernel, with the map, the entries needed and the
//! limit: by `check`, at start-up, and by a reload (which keeps the running
//! policy).

use std::fmt;

use collector_common::maps;

use super::Policy;

/// One rule map: how many entries the policy needs and how many it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapUse {
    /// The map as the eBPF object names it, without its policy set
    /// (`FILE_RULES` for `FILE_RULES_0` and `FILE_RULES_1`).
    pub map: &'static str,
    /// What one entry is, and the keys the entries come from.
    pub entry: &'static str,
    pub needed: usize,
    pub limit: u32,
}

impl MapUse {
    pub fn fits(&self) -> bool {
        self.needed <= self.limit as usize
    }
}

impl fmt::Display for MapUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} entries needed ({}), the map holds {}",
            self.map, self.needed, self.entry, self.limit
        )
    }
}

/// The maps a policy does not fit, each with what it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the policy does not fit the kernel's rule maps: {}",
    .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct TooLarge(pub Vec<MapUse>);

/// `FILE_RULES` for the pair `FILE_RULES_0`, `FILE_RULES_1`.
fn family(pair: [&'static str; 2]) -> &'static str {
    pair[0].strip_suffix("_0").unwrap_or(pair[0])
}

impl Policy {
    /// Every rule map with the entries this policy puts in it. Each policy
    /// set has maps of its own, so the whole size is available to each.
    pub fn map_use(&self) -> [MapUse; 12] {
        let net = &self.network.net;
        let at = |pair, entry, needed, limit| MapUse {
            map: family(pair),
            entry,
            needed,
            limit,
        };
        [
            at(
                maps::FILE_RULES,
                "one per distinct path prefix of files.allow and files.deny",
                self.files.paths.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::FILE_ANCESTORS,
                "one per directory above a path of files.deny, the root left out",
                self.files.ancestors.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::MOUNT_ANCESTORS,
                "one per directory above a path of mount.deny, the root included",
                self.mount.ancestors.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::FILE_INODES,
                "one per existing path of files.allow and files.deny, per directory holding one (or nearest above a missing one), per extra hard link below a denied directory, and per mounted filesystem",
                self.files.identities.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::EXEC_PATH_RULES,
                "one per distinct path prefix of process.allow and process.deny",
                self.process.paths.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::EXEC_NAME_RULES,
                "one per distinct program name of process.allow and process.deny",
                self.process.names.len(),
                maps::NAME_RULES_MAX,
            ),
            at(
                maps::MOUNT_RULES,
                "one per distinct path prefix of mount.deny",
                self.mount.paths.len(),
                maps::PATH_RULES_MAX,
            ),
            at(
                maps::NET_V4_RULES,
                "one per distinct IPv4 network of network.cidr and network.domain, IPv4-mapped IPv6 included",
                net.v4_len(),
                maps::CIDR_RULES_MAX,
            ),
            at(
                maps::NET_V6_RULES,
                "one per distinct IPv6 network of network.cidr and network.domain",
                net.v6_len(),
                maps::CIDR_RULES_MAX,
            ),
            at(
                maps::NET_COMMAND_RULES,
                "one per distinct command of network.command",
                net.commands.len(),
                maps::ID_RULES_MAX,
            ),
            at(
                maps::NET_UID_RULES,
                "one per distinct UID of network.uid",
                net.uids.len(),
                maps::ID_RULES_MAX,
            ),
            at(
                maps::NET_GID_RULES,
                "one per distinct GID of network.gid",
                net.gids.len(),
                maps::ID_RULES_MAX,
            ),
        ]
    }

    /// Whether every rule map can take this policy; if not, the maps it
    /// does not fit.
    pub fn fits(&self) -> Result<(), TooLarge> {
        let over: Vec<MapUse> = self.map_use().into_iter().filter(|m| !m.fits()).collect();
        if over.is_empty() {
            Ok(())
        } else {
            Err(TooLarge(over))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use collector_common::maps::{CIDR_RULES_MAX, ID_RULES_MAX, NAME_RULES_MAX, PATH_RULES_MAX};
    use ipnetwork::IpNetwork;

    use super::*;
    use crate::config::{Config, ExecRule, RulePath, validate_exec_rule, validate_rule_path};

    /// The built-in configuration without a rule.
    fn empty() -> Config {
        let mut c = crate::config::load(&Default::default()).unwrap();
        c.files.allow.clear();
        c.files.deny.clear();
        c.network.cidr_allow.clear();
        c.network.cidr_deny.clear();
        c
    }

    /// `n` distinct path prefixes under `root`, a thousand per directory.
    fn paths(root: &str, n: usize) -> Vec<RulePath> {
        (0..n)
            .map(|i| validate_rule_path(&format!("{root}/{}/{i}", i / 1000)).unwrap())
            .collect()
    }

    fn v4(n: usize) -> Vec<IpNetwork> {
        (0..n as u32)
            .map(|i| IpNetwork::new(Ipv4Addr::from(0x0a00_0000 + i).into(), 32).unwrap())
            .collect()
    }

    fn v6(n: usize) -> Vec<IpNetwork> {
        (0..n as u128)
            .map(|i| IpNetwork::new(Ipv6Addr::from(0x2001_0db8 << 96 | i).into(), 128).unwrap())
            .collect()
    }

    /// A policy with `limit` entries in `map` fits; with one more it is
    /// refused, and the refusal names the map, the entries and the limit.
    fn holds_exactly(map: &str, limit: u32, fill: impl Fn(&mut Config, usize)) {
        let mut config = empty();
        fill(&mut config, limit as usize);
        assert_eq!(
            Policy::compile(&config).fits(),
            Ok(()),
            "{map} at its limit"
        );
        fill(&mut config, limit as usize + 1);
        let err = Policy::compile(&config).fits().unwrap_err();
        let [over] = err.0.as_slice() else {
            panic!("one map over its limit: {err}");
        };
        assert_eq!(
            (over.map, over.needed, over.limit),
            (map, limit as usize + 1, limit)
        );
        let needed = format!("{map}: {} entries needed (one per distinct ", limit + 1);
        assert!(err.to_string().contains(&needed), "{err}");
        assert!(
            err.to_string().ends_with(&format!("the map holds {limit}")),
            "{err}"
        );
    }

    #[test]
    fn path_tries_hold_path_rules_max_prefixes() {
        holds_exactly("FILE_RULES", PATH_RULES_MAX, |c, n| {
            c.files.deny = paths("/srv", n)
        });
        holds_exactly("EXEC_PATH_RULES", PATH_RULES_MAX, |c, n| {
            c.process.allow = paths("/opt", n).into_iter().map(ExecRule::Path).collect()
        });
        holds_exactly("MOUNT_RULES", PATH_RULES_MAX, |c, n| {
            c.mount.deny = paths("/dev", n)
        });
    }

    #[test]
    fn the_name_map_holds_name_rules_max_names() {
        holds_exactly("EXEC_NAME_RULES", NAME_RULES_MAX, |c, n| {
            c.process.deny = (0..n)
                .map(|i| validate_exec_rule(&format!("tool{i}")).unwrap())
                .collect()
        });
    }

    #[test]
    fn cidr_tries_hold_cidr_rules_max_networks() {
        holds_exactly("NET_V4_RULES", CIDR_RULES_MAX, |c, n| {
            c.network.cidr_deny = v4(n)
        });
        holds_exactly("NET_V6_RULES", CIDR_RULES_MAX, |c, n| {
            c.network.cidr_allow = v6(n)
        });
        // A network written inside ::ffff:0:0/96 is an IPv4 entry as well.
        holds_exactly("NET_V4_RULES", CIDR_RULES_MAX, |c, n| {
            c.network.cidr_deny = v4(n - 1);
            c.network.cidr_allow = vec!["::ffff:192.0.2.1/128".parse().unwrap()];
        });
    }

    #[test]
    fn id_maps_hold_id_rules_max_entries() {
        holds_exactly("NET_COMMAND_RULES", ID_RULES_MAX, |c, n| {
            c.network.command_deny = (0..n).map(|i| format!("cmd{i}")).collect()
        });
        holds_exactly("NET_UID_RULES", ID_RULES_MAX, |c, n| {
            c.network.uid_deny = (0..n as u32).collect()
        });
        holds_exactly("NET_GID_RULES", ID_RULES_MAX, |c, n| {
            c.network.gid_allow = (0..n as u32).collect()
        });
    }

    #[test]
    fn addresses_of_domain_rules_count_against_the_cidr_tries() {
        let mut config = empty();
        config.network.cidr_deny = v4(CIDR_RULES_MAX as usize);
        config.network.domain_deny = vec!["example.com".into()];
        let mut resolved = crate::dns::Resolved::new();
        resolved.insert("example.com".into(), vec!["192.0.2.7".parse().unwrap()]);
        let err = Policy::compile_with(&config, None, &resolved)
            .fits()
            .unwrap_err();
        assert_eq!(err.0[0].map, "NET_V4_RULES");
        assert_eq!(err.0[0].needed, CIDR_RULES_MAX as usize + 1);
    }

    /// A prefix listed twice, spelled with a trailing `/`, or in both the
    /// allow and the deny list is one entry.
    #[test]
    fn a_prefix_is_one_entry_however_often_it_is_listed() {
        let mut config = empty();
        let prefixes = paths("/srv", PATH_RULES_MAX as usize);
        config.files.deny = prefixes.clone();
        config.files.deny.extend(
            prefixes
                .iter()
                .map(|p| validate_rule_path(&format!("{}/", p.as_str())).unwrap()),
        );
        config.files.allow = prefixes;
        let policy = Policy::compile(&config);
        assert_eq!(policy.files.paths.len(), PATH_RULES_MAX as usize);
        assert_eq!(policy.fits(), Ok(()));
    }

    /// Not timed (speed is `make bench`'s): 200,000 rules compile to one
    /// entry per distinct prefix, each with its rules.
    #[test]
    fn two_hundred_thousand_rules_give_one_entry_per_distinct_prefix() {
        let mut config = empty();
        config.files.deny = paths("/srv", 200_000);
        // Listed again: no new entries.
        config.files.deny.extend(paths("/srv", 1_000));
        // The 200 directories holding them: 200 entries more.
        config.files.allow = (0..200)
            .map(|d| validate_rule_path(&format!("/srv/{d}")).unwrap())
            .collect();
        let policy = Policy::compile(&config);
        assert_eq!(policy.files.rules.len(), 200_200);
        let entries = policy.files.paths.entries();
        assert_eq!(entries.len(), 200_200);
        let with_both = entries
            .iter()
            .filter(|e| e.rule.deny_rule != 0 && e.rule.allow_rule != 0)
            .count();
        assert_eq!(
            with_both, 200_000,
            "each path inherits its directory's allow"
        );
        let over = policy.fits().unwrap_err();
        assert_eq!(
            over.0,
            [MapUse {
                map: "FILE_RULES",
                entry: "one per distinct path prefix of files.allow and files.deny",
                needed: 200_200,
                limit: PATH_RULES_MAX,
            }]
        );
    }
}
