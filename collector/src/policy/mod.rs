//! Policy compiler: validated configuration → the entries the kernel
//! programs look up, plus the tables that turn a rule id in an event back
//! into the rule as the operator wrote it.

mod capacity;
pub(crate) mod identity;
mod inherit;
mod names;
mod network;
mod paths;

pub use capacity::{MapUse, TooLarge};
pub use identity::Identities;
pub use names::NameRules;
pub use network::NetRules;
pub use paths::{Ancestors, PathRules};

use std::collections::HashMap;

use collector_common::{
    FLAG_FILE_IDENTITIES, FLAG_FILE_IDENTITY_FIRST, FLAG_FILE_IOCTL, FLAG_NET_ALLOW_COMMAND,
    FLAG_NET_ALLOW_GID, FLAG_NET_ALLOW_UID, FLAG_NET_DENY_RAW, FLAG_NET_WHO_RULES,
    FLAG_PROCESS_DENY_MEMFD_EXEC, FLAG_PROCESS_JUDGE_MAPPINGS, MODE_BLOCK, MODE_MONITOR,
    ModuleConfig, POLICY_BLACKLIST, POLICY_WHITELIST, TARGET_CONTAINER, TARGET_HOST,
};

use crate::config::{
    Config, ExecRule, FilesConfig, ListPolicy, Mode, ModuleSettings, MountConfig, NetworkConfig,
    ProcessConfig, Target,
};

/// A rule as written in the configuration, for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The list it came from, e.g. `files.deny`.
    pub ruleset: &'static str,
    /// The rule's value, e.g. `/etc/shadow`.
    pub name: String,
}

/// Rules of one module, by id: rule id `n` is the `n`th rule ever seen.
/// Ids outlive reloads: a recompiled policy starts from the previous one's
/// table, so a rule keeps its id, and an event judged under an older policy
/// still names its rule correctly.
#[derive(Debug, Clone, Default)]
pub struct RuleTable {
    all: Vec<RuleRef>,
    /// Ids by list, then by value (looked up without copying the value).
    index: HashMap<&'static str, HashMap<String, u32>>,
    /// Whether rule id `n` (at `n - 1`) is a rule of this policy.
    in_force: Vec<bool>,
    in_force_count: usize,
}

impl RuleTable {
    /// The id of `name` in `ruleset`, and whether this is the first time
    /// this policy lists it.
    fn add(&mut self, ruleset: &'static str, name: &str) -> (u32, bool) {
        let by_value = self.index.entry(ruleset).or_default();
        let id = match by_value.get(name) {
            Some(id) => *id,
            None => {
                self.all.push(RuleRef {
                    ruleset,
                    name: name.to_string(),
                });
                let id = self.all.len() as u32;
                by_value.insert(name.to_string(), id);
                id
            }
        };
        self.in_force.resize(self.all.len(), false);
        let first = !std::mem::replace(&mut self.in_force[id as usize - 1], true);
        self.in_force_count += usize::from(first);
        (id, first)
    }

    /// The rule with this id, from this policy or an earlier one.
    pub fn get(&self, id: u32) -> Option<&RuleRef> {
        id.checked_sub(1).and_then(|i| self.all.get(i as usize))
    }

    /// Rules of this policy.
    pub fn len(&self) -> usize {
        self.in_force_count
    }

    pub fn is_empty(&self) -> bool {
        self.in_force_count == 0
    }

    /// The same ids, none in force yet: where a recompiled policy starts.
    fn carried_over(&self) -> Self {
        Self {
            all: self.all.clone(),
            index: self.index.clone(),
            in_force: Vec::new(),
            in_force_count: 0,
        }
    }
}

/// One module's compiled policy.
#[derive(Debug, Clone)]
pub struct ModulePolicy {
    /// The module's name (`files`), as in the configuration.
    pub name: &'static str,
    pub config: ModuleConfig,
    pub rules: RuleTable,
    pub paths: PathRules,
    /// Directories whose rename is refused (files only).
    pub ancestors: Ancestors,
    /// Rule paths by identity (files only).
    pub identities: Identities,
    /// Denied sources by identity (mount only).
    pub mount_sources: Vec<(
        collector_common::InodeKey,
        collector_common::mount::MountIdentity,
    )>,
    pub names: NameRules,
    pub net: NetRules,
    /// The list a whitelist's default deny is reported against.
    pub allow_ruleset: &'static str,
}

impl ModulePolicy {
    pub fn enabled(&self) -> bool {
        self.config.enabled != 0
    }
}

/// The whole compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub files: ModulePolicy,
    pub process: ModulePolicy,
    pub mount: ModulePolicy,
    pub network: ModulePolicy,
}

impl Policy {
    pub fn compile(config: &Config) -> Self {
        Self::compile_after(config, None)
    }

    /// Compiles `config` as the successor of `previous`: rules it had keep
    /// their ids.
    pub fn compile_after(config: &Config, previous: Option<&Policy>) -> Self {
        Self::compile_with(config, previous, &crate::dns::Resolved::new())
    }

    /// [`Policy::compile_after`], with the addresses `network.domain`
    /// names resolve to: each address is a rule named after its domain.
    pub fn compile_with(
        config: &Config,
        previous: Option<&Policy>,
        resolved: &crate::dns::Resolved,
    ) -> Self {
        // Rule ids carried over from the previous policy, per module.
        let rules = |m: fn(&Policy) -> &ModulePolicy| {
            previous
                .map(|p| m(p).rules.carried_over())
                .unwrap_or_default()
        };
        Self {
            files: files(&config.files, rules(|p| &p.files)),
            process: process(&config.process, rules(|p| &p.process)),
            mount: mount(&config.mount, rules(|p| &p.mount)),
            network: network(&config.network, rules(|p| &p.network), resolved),
        }
    }

    /// This policy with the network rules compiled again for new answers
    /// of the domain rules (`resolved`), `config` being the one this policy
    /// was compiled from: the other modules are kept as they are, their
    /// identities too, so no rule path is looked at again.
    pub fn with_addresses(&self, config: &Config, resolved: &crate::dns::Resolved) -> Self {
        Self {
            network: network(&config.network, self.network.rules.carried_over(), resolved),
            ..self.clone()
        }
    }

    /// Rules loaded, over all modules.
    pub fn rule_count(&self) -> usize {
        self.files.rules.len()
            + self.process.rules.len()
            + self.mount.rules.len()
            + self.network.rules.len()
    }
}

/// `files`: path rules (deny and allow), and whether ioctl is judged.
fn files(f: &FilesConfig, mut rules: RuleTable) -> ModulePolicy {
    let deny = ids(&mut rules, "files.deny", f.deny.iter().map(|p| p.as_str()));
    let allow = ids(
        &mut rules,
        "files.allow",
        f.allow.iter().map(|p| p.as_str()),
    );
    let mut files = module(&f.settings, semconv::module::FILES, "files.allow", rules);
    if f.ioctl {
        files.config.flags |= FLAG_FILE_IOCTL;
    }
    files.paths = PathRules::build(&deny, &allow);
    files.ancestors = Ancestors::build(&deny);
    // Identities are the host's: a `target: container` rule speaks of
    // paths inside each container, which the host's tree cannot resolve.
    if f.settings.target == Target::Host {
        files.identities = Identities::resolve(&deny, &allow, &files.paths);
    }
    if !files.identities.is_empty() {
        files.config.flags |= FLAG_FILE_IDENTITIES;
        if files.identities.settle {
            files.config.flags |= FLAG_FILE_IDENTITY_FIRST;
        }
    }
    files
}

/// `process`: exec rules, by path prefix or by the name run as.
fn process(p: &ProcessConfig, mut rules: RuleTable) -> ModulePolicy {
    let (deny_paths, deny_names) = split(&mut rules, "process.deny", &p.deny);
    let (allow_paths, allow_names) = split(&mut rules, "process.allow", &p.allow);
    let mut process = module(
        &p.settings,
        semconv::module::PROCESS,
        "process.allow",
        rules,
    );
    // The programs judge the executable by its resolved path: a rule on a
    // symbolic link (`/usr/bin/nc`) or below a linked directory (`/bin/x`
    // with /bin → usr/bin) also speaks of the path it resolves to. Host
    // paths only: a container's are not this tree's.
    let host = p.settings.target == Target::Host;
    let (deny_all, allow_all) = (
        with_resolved(&deny_paths, host),
        with_resolved(&allow_paths, host),
    );
    process.paths = PathRules::build(&as_ids(&deny_all), &as_ids(&allow_all));
    if p.deny_memfd_exec {
        process.config.flags |= FLAG_PROCESS_DENY_MEMFD_EXEC;
    }
    if !deny_all.is_empty() || !deny_names.is_empty() {
        process.config.flags |= FLAG_PROCESS_JUDGE_MAPPINGS;
    }
    process.names = NameRules::build(&deny_names, &allow_names);
    process
}

/// `paths`, and (with `resolve`) the path each resolves to through
/// symbolic links where that is another path that exists, with the same
/// rule id.
fn with_resolved(paths: &Ids, resolve: bool) -> Vec<(u32, String)> {
    let real = paths.iter().filter(|_| resolve).filter_map(|(id, path)| {
        let real = std::fs::canonicalize(path).ok()?;
        let real = real.to_str()?;
        (real != *path).then(|| (*id, real.to_string()))
    });
    paths
        .iter()
        .map(|(id, path)| (*id, (*path).to_string()))
        .chain(real.collect::<Vec<_>>())
        .collect()
}

fn as_ids(paths: &[(u32, String)]) -> Ids<'_> {
    paths.iter().map(|(id, p)| (*id, p.as_str())).collect()
}

/// `mount`: denied sources.
fn mount(m: &MountConfig, mut rules: RuleTable) -> ModulePolicy {
    let deny = ids(&mut rules, "mount.deny", m.deny.iter().map(|p| p.as_str()));
    let mut mount = module(&m.settings, semconv::module::MOUNT, "mount.deny", rules);
    mount.paths = PathRules::build(&deny, &[]);
    mount.ancestors = Ancestors::build_with_root(&deny);
    if m.settings.target == Target::Host {
        mount.mount_sources = identity::mount_sources(&deny);
    }
    // Mounts have no allow list: whatever is not denied may be mounted.
    mount.config.policy = POLICY_BLACKLIST;
    mount
}

/// `network`: CIDRs and the addresses domain rules resolved to (each
/// address a rule named after its domain), commands, UIDs and GIDs.
fn network(
    n: &NetworkConfig,
    mut rules: RuleTable,
    resolved: &crate::dns::Resolved,
) -> ModulePolicy {
    let mut cidrs = Vec::new();
    for (ruleset, list, deny) in [
        ("network.cidr.deny", &n.cidr_deny, true),
        ("network.cidr.allow", &n.cidr_allow, false),
    ] {
        let values: Vec<String> = list.iter().map(ToString::to_string).collect();
        for (id, value) in ids(&mut rules, ruleset, values.iter().map(String::as_str)) {
            let net = value.parse().expect("validated network");
            cidrs.push((id, net, deny));
        }
    }
    for (ruleset, names, deny) in [
        ("network.domain.deny", &n.domain_deny, true),
        ("network.domain.allow", &n.domain_allow, false),
    ] {
        for (id, name) in ids(&mut rules, ruleset, names.iter().map(String::as_str)) {
            for ip in resolved.get(name).into_iter().flatten() {
                cidrs.push((id, ipnetwork::IpNetwork::from(*ip), deny));
            }
        }
    }
    let mut net = NetRules::default();
    net.add_cidrs(&cidrs);
    let mut flags = if n.deny_raw { FLAG_NET_DENY_RAW } else { 0 };
    for (ruleset, list, deny, flag) in [
        ("network.command.deny", &n.command_deny, true, 0),
        (
            "network.command.allow",
            &n.command_allow,
            false,
            FLAG_NET_ALLOW_COMMAND,
        ),
    ] {
        let entries: Vec<(u32, String, bool)> =
            ids(&mut rules, ruleset, list.iter().map(String::as_str))
                .into_iter()
                .map(|(id, v)| (id, v.to_string(), deny))
                .collect();
        if !entries.is_empty() {
            flags |= flag | FLAG_NET_WHO_RULES;
        }
        NetRules::add_ids(&mut net.commands, &entries);
    }
    for (ruleset, list, deny, flag, gid) in [
        ("network.uid.deny", &n.uid_deny, true, 0, false),
        (
            "network.uid.allow",
            &n.uid_allow,
            false,
            FLAG_NET_ALLOW_UID,
            false,
        ),
        ("network.gid.deny", &n.gid_deny, true, 0, true),
        (
            "network.gid.allow",
            &n.gid_allow,
            false,
            FLAG_NET_ALLOW_GID,
            true,
        ),
    ] {
        let values: Vec<String> = list.iter().map(u32::to_string).collect();
        let entries: Vec<(u32, u32, bool)> =
            ids(&mut rules, ruleset, values.iter().map(String::as_str))
                .into_iter()
                .map(|(id, v)| (id, v.parse().expect("a number"), deny))
                .collect();
        if !entries.is_empty() {
            flags |= flag | FLAG_NET_WHO_RULES;
        }
        let target = if gid { &mut net.gids } else { &mut net.uids };
        NetRules::add_ids(target, &entries);
    }
    let mut network = module(
        &n.settings,
        semconv::module::NETWORK,
        "network.cidr.allow",
        rules,
    );
    network.config.flags |= flags;
    network.net = net;
    network
}

fn module(
    s: &ModuleSettings,
    name: &'static str,
    allow_ruleset: &'static str,
    rules: RuleTable,
) -> ModulePolicy {
    ModulePolicy {
        name,
        config: ModuleConfig {
            enabled: s.enable as u8,
            mode: match s.mode {
                Mode::Monitor => MODE_MONITOR,
                Mode::Block => MODE_BLOCK,
            },
            policy: match s.policy {
                ListPolicy::Blacklist => POLICY_BLACKLIST,
                ListPolicy::Whitelist => POLICY_WHITELIST,
            },
            target: match s.target {
                Target::Host => TARGET_HOST,
                Target::Container => TARGET_CONTAINER,
            },
            flags: 0,
            generation: 0,
            _pad: [0; 2],
        },
        rules,
        paths: PathRules::default(),
        ancestors: Ancestors::default(),
        identities: Identities::default(),
        mount_sources: Vec::new(),
        names: NameRules::default(),
        net: NetRules::default(),
        allow_ruleset,
    }
}

/// Registers each value as a rule; `(id, value)` pairs, in the order
/// written. A value listed twice keeps its first id and appears once.
fn ids<'a>(
    table: &mut RuleTable,
    ruleset: &'static str,
    values: impl Iterator<Item = &'a str>,
) -> Ids<'a> {
    values
        .filter_map(|v| {
            let (id, first) = table.add(ruleset, v);
            first.then_some((id, v))
        })
        .collect()
}

type Ids<'a> = Vec<(u32, &'a str)>;

/// Exec rules split into path rules and name rules.
fn split<'a>(
    table: &mut RuleTable,
    ruleset: &'static str,
    rules: &'a [ExecRule],
) -> (Ids<'a>, Ids<'a>) {
    let all = ids(table, ruleset, rules.iter().map(ExecRule::as_str));
    all.into_iter().partition(|(_, v)| v.starts_with('/'))
}

#[cfg(test)]
mod tests;
