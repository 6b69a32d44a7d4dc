//! Network rules → LPM trie entries for IPv4 and IPv6, and hash entries for
//! commands, UIDs and GIDs.
//!
//! As with paths, each distinct network becomes one trie entry carrying the
//! nearest deny rule and the nearest allow rule among itself and the
//! networks that contain it, so the kernel's single longest-prefix lookup
//! answers both questions.

use std::{collections::HashMap, net::IpAddr};

use collector_common::{COMM_LEN, PathRule};
use ipnetwork::IpNetwork;

use super::inherit;

/// One trie entry: the network's address bytes (network order) and its
/// prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrEntry<const N: usize> {
    pub addr: [u8; N],
    pub prefix: u8,
    pub rule: PathRule,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetRules {
    v4: HashMap<([u8; 4], u8), PathRule>,
    v6: HashMap<([u8; 16], u8), PathRule>,
    pub commands: HashMap<String, PathRule>,
    pub uids: HashMap<u32, PathRule>,
    pub gids: HashMap<u32, PathRule>,
}

/// Sets the deny or allow rule of `slot` unless it already has one.
fn mark(slot: &mut PathRule, id: u32, deny: bool) {
    let field = if deny {
        &mut slot.deny_rule
    } else {
        &mut slot.allow_rule
    };
    if *field == 0 {
        *field = id;
    }
}

/// The IPv4 network a network inside `::ffff:0:0/96` stands for.
fn v4_mapped(addr: &[u8; 16], prefix: u8) -> Option<([u8; 4], u8)> {
    let mapped = addr[..10] == [0; 10] && addr[10..12] == [0xff, 0xff];
    (mapped && prefix >= 96).then(|| {
        let mut v4 = [0u8; 4];
        v4.copy_from_slice(&addr[12..]);
        (v4, prefix - 96)
    })
}

impl NetRules {
    /// `(rule id, network, deny?)`.
    pub fn add_cidrs(&mut self, cidrs: &[(u32, IpNetwork, bool)]) {
        let mut own4: HashMap<([u8; 4], u8), PathRule> = HashMap::new();
        let mut own6: HashMap<([u8; 16], u8), PathRule> = HashMap::new();
        for (id, net, deny) in cidrs {
            match net.network() {
                IpAddr::V4(a) => mark(
                    own4.entry((a.octets(), net.prefix())).or_default(),
                    *id,
                    *deny,
                ),
                IpAddr::V6(a) => {
                    mark(
                        own6.entry((a.octets(), net.prefix())).or_default(),
                        *id,
                        *deny,
                    );
                    // The kernel judges an IPv4-mapped address by the IPv4
                    // rules: a rule inside ::ffff:0:0/96 is one of them.
                    if let Some(v4) = v4_mapped(&a.octets(), net.prefix()) {
                        mark(own4.entry(v4).or_default(), *id, *deny);
                    }
                }
            }
        }
        self.v4 = inherit(&own4);
        self.v6 = inherit(&own6);
    }

    pub fn add_ids<K: std::hash::Hash + Eq + Clone>(
        map: &mut HashMap<K, PathRule>,
        ids: &[(u32, K, bool)],
    ) {
        for (id, key, deny) in ids {
            mark(map.entry(key.clone()).or_default(), *id, *deny);
        }
    }

    /// IPv4 trie entries: one per distinct network.
    pub fn v4_len(&self) -> usize {
        self.v4.len()
    }

    /// IPv6 trie entries: one per distinct network.
    pub fn v6_len(&self) -> usize {
        self.v6.len()
    }

    pub fn v4_entries(&self) -> Vec<CidrEntry<4>> {
        entries(&self.v4)
    }

    pub fn v6_entries(&self) -> Vec<CidrEntry<16>> {
        entries(&self.v6)
    }

    pub fn command_entries(&self) -> Vec<([u8; COMM_LEN], PathRule)> {
        self.commands
            .iter()
            .map(|(name, rule)| {
                let mut key = [0u8; COMM_LEN];
                key[..name.len()].copy_from_slice(name.as_bytes());
                (key, *rule)
            })
            .collect()
    }

    /// The longest matching network entry for `addr`, as the kernel finds it.
    #[cfg(test)]
    pub fn lookup(&self, addr: IpAddr) -> Option<&PathRule> {
        // As the programs do: an IPv4-mapped address is looked up as IPv4.
        match addr {
            IpAddr::V4(a) => longest(&self.v4, a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => longest(&self.v4, v4.octets()),
                None => longest(&self.v6, a.octets()),
            },
        }
    }
}

/// `addr` with all bits after the first `prefix` cleared.
fn masked<const N: usize>(addr: [u8; N], prefix: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, byte) in addr.iter().enumerate() {
        let bits = (prefix as usize).saturating_sub(i * 8).min(8);
        out[i] = if bits == 0 {
            0
        } else {
            byte & (0xffu8 << (8 - bits))
        };
    }
    out
}

#[cfg(test)]
fn longest<const N: usize>(
    map: &HashMap<([u8; N], u8), PathRule>,
    addr: [u8; N],
) -> Option<&PathRule> {
    (0..=(N * 8) as u8)
        .rev()
        .find_map(|p| map.get(&(masked(addr, p), p)))
}

/// Each network with the nearest deny and allow rule among itself and the
/// networks that contain it.
fn inherit<const N: usize>(
    own: &HashMap<([u8; N], u8), PathRule>,
) -> HashMap<([u8; N], u8), PathRule> {
    // By address, then prefix length: a network comes after those that
    // contain it (same address, shorter prefix, or it would not be inside
    // them), and the networks inside it follow it up to its last address.
    let mut sorted: Vec<(([u8; N], u8), PathRule)> = own.iter().map(|(k, r)| (*k, *r)).collect();
    sorted.sort_unstable_by_key(|(k, _)| *k);
    inherit::nearest(&mut sorted, |&(outer, len), &(inner, inner_len)| {
        len <= inner_len && masked(inner, len) == outer
    });
    sorted.into_iter().collect()
}

fn entries<const N: usize>(map: &HashMap<([u8; N], u8), PathRule>) -> Vec<CidrEntry<N>> {
    let mut v: Vec<CidrEntry<N>> = map
        .iter()
        .map(|(&(addr, prefix), &rule)| CidrEntry { addr, prefix, rule })
        .collect();
    v.sort_by_key(|e| (e.prefix, e.addr));
    v
}
