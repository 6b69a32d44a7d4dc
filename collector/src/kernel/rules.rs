//! The rule maps of one policy set, written from a compiled policy one
//! family at a time. A family is the maps filled from one part of the
//! policy (`files.paths`, the network rules, …). The agent knows what each
//! set was last written with, so a reload empties and writes only the
//! families whose entries changed: a `dns_proxy` answer, which changes
//! addresses only, rewrites the network maps and leaves a file policy of
//! 100,000 paths alone.

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
};
use collector_common::{
    AncestorRule, COMM_LEN, INODE_FILTER_WORDS, IdentityRule, InodeFilter, InodeKey, NameKey,
    PathKey, PathRule, maps, mount::MountIdentity,
};

use super::{KernelError, map_err};
use crate::policy::Policy;

/// Maps filled from one part of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `FILE_RULES`: file path prefixes.
    FilePaths,
    /// `FILE_ANCESTORS`: directories above denied files.
    FileAncestors,
    /// `FILE_INODES` and its filter: file rules by identity.
    FileIdentities,
    /// `EXEC_PATH_RULES`: executable path prefixes.
    ExecPaths,
    /// `EXEC_NAME_RULES`: the names programs are run as.
    ExecNames,
    /// `MOUNT_RULES`: mount source path prefixes.
    MountPaths,
    /// `MOUNT_ANCESTORS`: directories above denied mount sources.
    MountAncestors,
    /// `MOUNT_INODES`: denied mount sources by identity.
    MountSources,
    /// `NET_*_RULES`: networks, commands, UIDs and GIDs.
    Network,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::FilePaths,
        Family::FileAncestors,
        Family::FileIdentities,
        Family::ExecPaths,
        Family::ExecNames,
        Family::MountPaths,
        Family::MountAncestors,
        Family::MountSources,
        Family::Network,
    ];

    /// Whether `a` and `b` put the same entries into this family's maps.
    pub fn same(self, a: &Policy, b: &Policy) -> bool {
        match self {
            Family::FilePaths => a.files.paths == b.files.paths,
            Family::FileAncestors => a.files.ancestors == b.files.ancestors,
            Family::FileIdentities => a.files.identities.same_entries(&b.files.identities),
            Family::ExecPaths => a.process.paths == b.process.paths,
            Family::ExecNames => a.process.names == b.process.names,
            Family::MountPaths => a.mount.paths == b.mount.paths,
            Family::MountAncestors => a.mount.ancestors == b.mount.ancestors,
            Family::MountSources => a.mount.mount_sources == b.mount.mount_sources,
            Family::Network => a.network.net == b.network.net,
        }
    }

    /// Empties this family's maps of policy set `set`.
    fn clear(self, ebpf: &mut Ebpf, set: usize) -> Result<(), KernelError> {
        match self {
            Family::FilePaths => {
                clear::<LpmTrie<&mut MapData, PathKey, PathRule>>(ebpf, maps::FILE_RULES[set])
            }
            Family::FileAncestors => clear::<LpmTrie<&mut MapData, PathKey, AncestorRule>>(
                ebpf,
                maps::FILE_ANCESTORS[set],
            ),
            // The filter is written whole with the map.
            Family::FileIdentities => {
                clear::<HashMap<&mut MapData, InodeKey, IdentityRule>>(ebpf, maps::FILE_INODES[set])
            }
            Family::ExecPaths => {
                clear::<LpmTrie<&mut MapData, PathKey, PathRule>>(ebpf, maps::EXEC_PATH_RULES[set])
            }
            Family::ExecNames => {
                clear::<HashMap<&mut MapData, NameKey, PathRule>>(ebpf, maps::EXEC_NAME_RULES[set])
            }
            Family::MountPaths => {
                clear::<LpmTrie<&mut MapData, PathKey, PathRule>>(ebpf, maps::MOUNT_RULES[set])
            }
            Family::MountAncestors => clear::<LpmTrie<&mut MapData, PathKey, AncestorRule>>(
                ebpf,
                maps::MOUNT_ANCESTORS[set],
            ),
            Family::MountSources => clear::<HashMap<&mut MapData, InodeKey, MountIdentity>>(
                ebpf,
                maps::MOUNT_INODES[set],
            ),
            Family::Network => {
                clear::<LpmTrie<&mut MapData, [u8; 4], PathRule>>(ebpf, maps::NET_V4_RULES[set])?;
                clear::<LpmTrie<&mut MapData, [u8; 16], PathRule>>(ebpf, maps::NET_V6_RULES[set])?;
                clear::<HashMap<&mut MapData, [u8; COMM_LEN], PathRule>>(
                    ebpf,
                    maps::NET_COMMAND_RULES[set],
                )?;
                clear::<HashMap<&mut MapData, u32, PathRule>>(ebpf, maps::NET_UID_RULES[set])?;
                clear::<HashMap<&mut MapData, u32, PathRule>>(ebpf, maps::NET_GID_RULES[set])
            }
        }
    }

    /// Writes this family's entries of `policy` into policy set `set`.
    fn write(self, ebpf: &mut Ebpf, policy: &Policy, set: usize) -> Result<(), KernelError> {
        match self {
            Family::FilePaths => write_paths(ebpf, maps::FILE_RULES[set], &policy.files),
            Family::ExecPaths => write_paths(ebpf, maps::EXEC_PATH_RULES[set], &policy.process),
            Family::MountPaths => write_paths(ebpf, maps::MOUNT_RULES[set], &policy.mount),
            Family::FileAncestors => {
                write_ancestors(ebpf, maps::FILE_ANCESTORS[set], &policy.files)
            }
            Family::MountAncestors => {
                write_ancestors(ebpf, maps::MOUNT_ANCESTORS[set], &policy.mount)
            }
            Family::FileIdentities => {
                let name = maps::FILE_INODES[set];
                let mut inodes: HashMap<_, InodeKey, IdentityRule> = open(ebpf, name)?;
                let mut filter: Box<InodeFilter> = Box::new([0; INODE_FILTER_WORDS]);
                for (key, rule) in policy.files.identities.entries() {
                    inodes.insert(key, rule, 0).map_err(map_err(name))?;
                    key.enter(&mut filter);
                }
                // Written whole, so the set's filter never lacks a key of
                // its map.
                let name = maps::FILE_INODE_FILTER;
                let mut filters: Array<_, InodeFilter> = open(ebpf, name)?;
                filters.set(set as u32, filter, 0).map_err(map_err(name))
            }
            Family::ExecNames => {
                let name = maps::EXEC_NAME_RULES[set];
                let mut names: HashMap<_, NameKey, PathRule> = open(ebpf, name)?;
                for (key, rule) in policy.process.names.entries() {
                    names.insert(key, rule, 0).map_err(map_err(name))?;
                }
                Ok(())
            }
            Family::MountSources => {
                let name = maps::MOUNT_INODES[set];
                let mut sources: HashMap<_, InodeKey, MountIdentity> = open(ebpf, name)?;
                for (key, rule) in &policy.mount.mount_sources {
                    sources.insert(key, rule, 0).map_err(map_err(name))?;
                }
                Ok(())
            }
            Family::Network => write_network(ebpf, policy, set),
        }
    }
}

/// Writes `policy` into policy set `set`, which was last written with
/// `held` (`None`: not known, as for a set an earlier agent filled):
/// every family whose entries differ is emptied and written again. The
/// families written, in order.
pub fn write_set(
    ebpf: &mut Ebpf,
    policy: &Policy,
    set: u8,
    held: Option<&Policy>,
) -> Result<Vec<Family>, KernelError> {
    let set = usize::from(set);
    let written = differing(held, policy);
    for &family in &written {
        family.clear(ebpf, set)?;
        family.write(ebpf, policy, set)?;
    }
    Ok(written)
}

/// The families whose entries in `policy` differ from those of `held`;
/// every family when what a set holds is not known.
pub fn differing(held: Option<&Policy>, policy: &Policy) -> Vec<Family> {
    Family::ALL
        .into_iter()
        .filter(|family| !held.is_some_and(|held| family.same(held, policy)))
        .collect()
}

/// Map `name` as the type `M`.
fn open<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, KernelError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(KernelError::Missing(name))?;
    M::try_from(map).map_err(map_err(name))
}

/// What emptying a map needs: its keys, and removing one.
trait Clearable {
    type Key;
    fn all_keys(&self) -> Vec<Self::Key>;
    fn remove_key(&mut self, key: &Self::Key) -> Result<(), aya::maps::MapError>;
}

impl<K: aya::Pod, V: aya::Pod> Clearable for LpmTrie<&mut aya::maps::MapData, K, V> {
    type Key = Key<K>;
    fn all_keys(&self) -> Vec<Key<K>> {
        self.keys().filter_map(Result::ok).collect()
    }
    fn remove_key(&mut self, key: &Key<K>) -> Result<(), aya::maps::MapError> {
        self.remove(key)
    }
}

impl<K: aya::Pod, V: aya::Pod> Clearable for HashMap<&mut aya::maps::MapData, K, V> {
    type Key = K;
    fn all_keys(&self) -> Vec<K> {
        self.keys().filter_map(Result::ok).collect()
    }
    fn remove_key(&mut self, key: &K) -> Result<(), aya::maps::MapError> {
        self.remove(key)
    }
}

/// Empties map `name`, opened as `M`.
fn clear<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<(), KernelError>
where
    M: Clearable + TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let mut map: M = open(ebpf, name)?;
    for key in map.all_keys() {
        map.remove_key(&key).map_err(map_err(name))?;
    }
    Ok(())
}

fn write_paths(
    ebpf: &mut Ebpf,
    name: &'static str,
    module: &crate::policy::ModulePolicy,
) -> Result<(), KernelError> {
    let mut trie: LpmTrie<&mut MapData, PathKey, PathRule> = open(ebpf, name)?;
    for entry in module.paths.entries() {
        let key = Key::new((entry.key_len * 8) as u32, entry.key);
        trie.insert(&key, entry.rule, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn write_ancestors(
    ebpf: &mut Ebpf,
    name: &'static str,
    module: &crate::policy::ModulePolicy,
) -> Result<(), KernelError> {
    let mut ancestors: LpmTrie<&mut MapData, PathKey, AncestorRule> = open(ebpf, name)?;
    for (key, len, rule) in module.ancestors.entries() {
        ancestors
            .insert(&Key::new((len * 8) as u32, key), rule, 0)
            .map_err(map_err(name))?;
    }
    Ok(())
}

fn write_network(ebpf: &mut Ebpf, policy: &Policy, set: usize) -> Result<(), KernelError> {
    let net = &policy.network.net;
    let name = maps::NET_V4_RULES[set];
    let mut v4: LpmTrie<&mut MapData, [u8; 4], PathRule> = open(ebpf, name)?;
    for e in net.v4_entries() {
        v4.insert(&Key::new(u32::from(e.prefix), e.addr), e.rule, 0)
            .map_err(map_err(name))?;
    }
    let name = maps::NET_V6_RULES[set];
    let mut v6: LpmTrie<&mut MapData, [u8; 16], PathRule> = open(ebpf, name)?;
    for e in net.v6_entries() {
        v6.insert(&Key::new(u32::from(e.prefix), e.addr), e.rule, 0)
            .map_err(map_err(name))?;
    }
    let name = maps::NET_COMMAND_RULES[set];
    let mut commands: HashMap<&mut MapData, [u8; COMM_LEN], PathRule> = open(ebpf, name)?;
    for (key, rule) in net.command_entries() {
        commands.insert(key, rule, 0).map_err(map_err(name))?;
    }
    for (name, ids) in [
        (maps::NET_UID_RULES[set], &net.uids),
        (maps::NET_GID_RULES[set], &net.gids),
    ] {
        let mut m: HashMap<&mut MapData, u32, PathRule> = open(ebpf, name)?;
        for (id, rule) in ids {
            m.insert(id, rule, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, dns::Resolved};

    fn compile(yaml: &str) -> (config::Config, Policy) {
        let config = config::load_yaml(yaml).unwrap();
        let policy = Policy::compile(&config);
        (config, policy)
    }

    #[test]
    fn new_addresses_rewrite_the_network_maps_alone() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        let (config, policy) = compile(&format!(
            "files:\n  enable: true\n  deny: [{}]\n\
             process:\n  enable: true\n  deny: [/usr/bin/nc]\n\
             network:\n  enable: true\n  domain:\n    deny: [example.test]\n",
            secret.display()
        ));
        assert!(
            !policy.files.identities.is_empty(),
            "the file has an identity"
        );
        let mut answers = Resolved::new();
        answers.insert("example.test".into(), vec!["192.0.2.1".parse().unwrap()]);
        let next = policy.with_addresses(&config, &answers);
        assert_eq!(differing(Some(&policy), &next), [Family::Network]);
        // The same answers again: nothing to write.
        let again = next.with_addresses(&config, &answers);
        assert_eq!(differing(Some(&next), &again), []);
        // A set whose content is not known is written whole.
        assert_eq!(differing(None, &next), Family::ALL);
    }

    #[test]
    fn a_changed_rule_rewrites_its_family() {
        let (_, policy) = compile("files:\n  enable: true\n  deny: [/srv/a]\n");
        let (_, other) = compile("files:\n  enable: true\n  deny: [/srv/b]\n");
        // Both paths are rule 1 below /srv: only the prefixes differ.
        assert_eq!(differing(Some(&policy), &other), [Family::FilePaths]);
        let (_, elsewhere) = compile("files:\n  enable: true\n  deny: [/opt/b]\n");
        let written = differing(Some(&policy), &elsewhere);
        for family in [Family::FilePaths, Family::FileAncestors] {
            assert!(written.contains(&family), "{written:?}");
        }
        for family in [Family::ExecPaths, Family::MountPaths, Family::Network] {
            assert!(!written.contains(&family), "{written:?}");
        }
    }
}
