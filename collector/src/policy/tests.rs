use collector_common::PathRule;

use super::*;
use crate::config::{
    FilesConfig, ModuleSettings, MountConfig, ProcessConfig, validate_exec_rule, validate_rule_path,
};

fn settings(policy: ListPolicy) -> ModuleSettings {
    ModuleSettings {
        enable: true,
        mode: Mode::Block,
        target: Target::Host,
        policy,
    }
}

fn compile(policy: ListPolicy, allow: &[&str], deny: &[&str]) -> Policy {
    // Names (not paths) only make sense as exec rules.
    let paths = |v: &[&str]| {
        v.iter()
            .filter(|p| p.starts_with('/'))
            .map(|p| validate_rule_path(p).unwrap())
            .collect()
    };
    let execs = |v: &[&str]| v.iter().map(|p| validate_exec_rule(p).unwrap()).collect();
    let mut config = crate::config::load(&Default::default()).unwrap();
    config.files = FilesConfig {
        settings: settings(policy),
        allow: paths(allow),
        deny: paths(deny),
        ioctl: false,
    };
    config.process = ProcessConfig {
        settings: settings(policy),
        allow: execs(allow),
        deny: execs(deny),
        deny_memfd_exec: false,
    };
    config.mount = MountConfig {
        settings: settings(policy),
        deny: paths(deny),
    };
    Policy::compile(&config)
}

/// The file verdict for `path`, named by its rule: what the kernel decides.
fn file_denied_by(p: &Policy, path: &str) -> Option<String> {
    let m = &p.files;
    PathRule::denial([m.paths.lookup(path), None], m.config.policy)
        .map(|id| m.rules.get(id).map_or("default".into(), |r| r.name.clone()))
}

fn exec_denied_by(p: &Policy, path: &str, name: &str) -> Option<String> {
    let m = &p.process;
    PathRule::denial(
        [m.paths.lookup(path), m.names.lookup(name)],
        m.config.policy,
    )
    .map(|id| m.rules.get(id).map_or("default".into(), |r| r.name.clone()))
}

#[test]
fn prefixes_match_on_directory_boundaries_only() {
    let p = compile(ListPolicy::Blacklist, &[], &["/etc/secret"]);
    assert_eq!(
        file_denied_by(&p, "/etc/secret"),
        Some("/etc/secret".into())
    );
    assert_eq!(
        file_denied_by(&p, "/etc/secret/x"),
        Some("/etc/secret".into())
    );
    assert_eq!(
        file_denied_by(&p, "/etc/secret/a/b/c"),
        Some("/etc/secret".into())
    );
    assert_eq!(file_denied_by(&p, "/etc/secrets.d/x"), None);
    assert_eq!(file_denied_by(&p, "/etc/secre"), None);
    assert_eq!(file_denied_by(&p, "/etc"), None);
}

#[test]
fn deny_wins_over_a_longer_allow_as_in_safeguard() {
    let p = compile(ListPolicy::Blacklist, &["/etc/ssl"], &["/etc"]);
    assert_eq!(file_denied_by(&p, "/etc/ssl/certs/x"), Some("/etc".into()));
    // The compiled entry for /etc/ssl carries the ancestor's deny.
    let entries = p.files.paths.entries();
    let ssl = entries
        .iter()
        .find(|e| &e.key[..e.key_len] == b"/etc/ssl/")
        .unwrap();
    assert_ne!(ssl.rule.deny_rule, 0);
    assert_ne!(ssl.rule.allow_rule, 0);
}

#[test]
fn whitelist_denies_what_is_not_allowed() {
    let p = compile(ListPolicy::Whitelist, &["/usr", "/etc"], &["/etc/shadow"]);
    assert_eq!(file_denied_by(&p, "/usr/bin/ls"), None);
    assert_eq!(file_denied_by(&p, "/etc/hosts"), None);
    assert_eq!(
        file_denied_by(&p, "/etc/shadow"),
        Some("/etc/shadow".into())
    );
    assert_eq!(file_denied_by(&p, "/home/x"), Some("default".into()));
    assert_eq!(file_denied_by(&p, "/usrlocal/x"), Some("default".into()));
}

#[test]
fn root_allow_covers_everything() {
    let p = compile(ListPolicy::Whitelist, &["/"], &["/root/.ssh"]);
    assert_eq!(file_denied_by(&p, "/anything/at/all"), None);
    assert_eq!(
        file_denied_by(&p, "/root/.ssh/id_rsa"),
        Some("/root/.ssh".into())
    );
}

#[test]
fn duplicate_rules_share_an_id() {
    let p = compile(ListPolicy::Blacklist, &[], &["/a", "/a/", "/b"]);
    assert_eq!(p.files.rules.len(), 2);
    assert_eq!(p.files.paths.len(), 2);
}

#[test]
fn long_paths_are_judged_on_the_key_width() {
    let p = compile(ListPolicy::Blacklist, &[], &["/deep"]);
    let long = format!("/deep/{}", "x/".repeat(300));
    assert_eq!(file_denied_by(&p, &long), Some("/deep".into()));
}

#[test]
fn exec_rules_match_by_path_prefix_or_by_name() {
    let p = compile(ListPolicy::Blacklist, &[], &["nc", "/opt/tools"]);
    assert_eq!(
        exec_denied_by(&p, "/usr/bin/nc.openbsd", "nc"),
        Some("nc".into())
    );
    assert_eq!(
        exec_denied_by(&p, "/opt/tools/x", "x"),
        Some("/opt/tools".into())
    );
    assert_eq!(exec_denied_by(&p, "/usr/bin/ncat", "ncat"), None);
    let w = compile(ListPolicy::Whitelist, &["bash", "/usr/bin"], &[]);
    assert_eq!(exec_denied_by(&w, "/usr/bin/id", "id"), None);
    assert_eq!(exec_denied_by(&w, "/opt/bash", "bash"), None);
    assert_eq!(exec_denied_by(&w, "/opt/x", "x"), Some("default".into()));
}

#[test]
fn module_switches_follow_the_settings() {
    let p = compile(ListPolicy::Whitelist, &[], &["/dev/vdb"]);
    assert_eq!(p.files.config.policy, collector_common::POLICY_WHITELIST);
    assert_eq!(p.files.config.mode, collector_common::MODE_BLOCK);
    // Mounts have no allow list, whatever the global policy says.
    assert_eq!(p.mount.config.policy, collector_common::POLICY_BLACKLIST);
}

fn net_policy(yaml: &str) -> Policy {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
    let config = crate::config::load(&crate::config::Sources {
        file: Some(f.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    Policy::compile(&config)
}

/// The network verdict for a connection to `addr` by `comm`/`uid`/`gid`.
fn net_denied_by(p: &Policy, addr: &str, comm: &str, uid: u32, gid: u32) -> Option<String> {
    let m = &p.network;
    // As the programs do: who connects is looked up only when the policy
    // has rules about it.
    let who = m.config.flags & collector_common::FLAG_NET_WHO_RULES != 0;
    collector_common::net_denial(
        m.net.lookup(addr.parse().unwrap()),
        m.net.commands.get(comm).filter(|_| who),
        m.net.uids.get(&uid).filter(|_| who),
        m.net.gids.get(&gid).filter(|_| who),
        m.config.policy,
        m.config.flags,
    )
    .map(|id| m.rules.get(id).map_or("default".into(), |r| r.name.clone()))
}

#[test]
fn network_cidr_deny_and_allowed_command_override_as_in_safeguard() {
    let p = net_policy(
        "network:\n  enable: true\n  cidr:\n    allow: [0.0.0.0/0]\n    deny: [10.0.0.0/8, '2001:db8::/32']\n  command:\n    allow: [curl]\n    deny: [nc]\n  uid:\n    deny: [666]\n",
    );
    assert_eq!(
        net_denied_by(&p, "10.1.2.3", "wget", 0, 0),
        Some("10.0.0.0/8".into())
    );
    assert_eq!(
        net_denied_by(&p, "10.1.2.3", "curl", 0, 0),
        None,
        "allowed command overrides"
    );
    assert_eq!(
        net_denied_by(&p, "192.0.2.1", "nc", 0, 0),
        Some("nc".into())
    );
    assert_eq!(
        net_denied_by(&p, "192.0.2.1", "wget", 666, 0),
        Some("666".into())
    );
    assert_eq!(net_denied_by(&p, "192.0.2.1", "wget", 0, 0), None);
    assert_eq!(
        net_denied_by(&p, "2001:db8::1", "wget", 0, 0),
        Some("2001:db8::/32".into())
    );
    assert_eq!(net_denied_by(&p, "2001:db9::1", "wget", 0, 0), None);
}

#[test]
fn ipv4_mapped_ipv6_addresses_are_judged_by_the_ipv4_rules() {
    let p = net_policy(
        "network:\n  enable: true\n  cidr:\n    allow: [0.0.0.0/0, '::/0']\n    deny: [10.0.0.0/8, '::ffff:192.0.2.0/120']\n",
    );
    // A dual-stack socket reaches 10.1.2.3 as ::ffff:10.1.2.3.
    assert_eq!(
        net_denied_by(&p, "::ffff:10.1.2.3", "x", 0, 0),
        Some("10.0.0.0/8".into())
    );
    // A rule written in the mapped range is an IPv4 rule too.
    assert_eq!(
        net_denied_by(&p, "192.0.2.7", "x", 0, 0),
        Some("::ffff:192.0.2.0/120".into())
    );
    assert_eq!(
        net_denied_by(&p, "::ffff:192.0.2.7", "x", 0, 0),
        Some("::ffff:192.0.2.0/120".into())
    );
    assert_eq!(net_denied_by(&p, "::ffff:192.0.3.7", "x", 0, 0), None);
    // Not mapped: the IPv6 rules.
    assert_eq!(net_denied_by(&p, "::10.1.2.3", "x", 0, 0), None);
    // Under a whitelist, ::/0 alone does not admit IPv4 through the
    // mapped range.
    let w = net_policy(
        "policy: whitelist\nnetwork:\n  enable: true\n  cidr:\n    allow: ['::/0']\n    deny: []\n",
    );
    assert_eq!(
        net_denied_by(&w, "::ffff:10.1.2.3", "x", 0, 0),
        Some("default".into())
    );
    assert_eq!(net_denied_by(&w, "2001:db8::1", "x", 0, 0), None);
}

#[test]
fn network_rules_about_who_connects_are_flagged_for_the_programs() {
    let who = |yaml: &str| {
        net_policy(yaml).network.config.flags & collector_common::FLAG_NET_WHO_RULES != 0
    };
    assert!(!who(
        "network:\n  enable: true\n  cidr:\n    deny: [10.0.0.0/8]\n"
    ));
    for rules in [
        "command:\n    deny: [nc]",
        "command:\n    allow: [curl]",
        "uid:\n    deny: [666]",
        "uid:\n    allow: [1000]",
        "gid:\n    deny: [50]",
        "gid:\n    allow: [60]",
    ] {
        assert!(
            who(&format!("network:\n  enable: true\n  {rules}\n")),
            "{rules}"
        );
    }
    let p = net_policy("network:\n  enable: true\n  gid:\n    deny: [50]\n");
    assert_eq!(
        net_denied_by(&p, "192.0.2.1", "x", 0, 50),
        Some("50".into())
    );
}

#[test]
fn network_whitelist_needs_an_allowed_network() {
    let p = net_policy(
        "policy: whitelist\nnetwork:\n  enable: true\n  cidr:\n    allow: [127.0.0.0/8]\n    deny: []\n  uid:\n    allow: [1000]\n",
    );
    assert_eq!(net_denied_by(&p, "127.0.0.1", "x", 1000, 0), None);
    assert_eq!(
        net_denied_by(&p, "192.0.2.1", "x", 1000, 0),
        Some("default".into())
    );
    assert_eq!(
        net_denied_by(&p, "127.0.0.1", "x", 0, 0),
        Some("default".into()),
        "uid not allowed"
    );
}

#[test]
fn rule_ids_survive_a_recompile() {
    let a = compile(ListPolicy::Blacklist, &[], &["/etc/a", "/etc/b"]);
    let mut config = crate::config::load(&Default::default()).unwrap();
    config.files.allow.clear();
    config.files.deny = ["/etc/b", "/etc/c"]
        .iter()
        .map(|p| validate_rule_path(p).unwrap())
        .collect();
    let b = Policy::compile_after(&config, Some(&a));
    let id_of = |p: &Policy, name: &str| {
        (1..=10)
            .find(|id| p.files.rules.get(*id).is_some_and(|r| r.name == name))
            .unwrap()
    };
    assert_eq!(
        id_of(&b, "/etc/b"),
        id_of(&a, "/etc/b"),
        "same rule, same id"
    );
    assert_ne!(
        id_of(&b, "/etc/c"),
        id_of(&a, "/etc/a"),
        "a new rule gets a new id"
    );
    // An event judged under the old policy still names its rule.
    assert_eq!(
        b.files.rules.get(id_of(&a, "/etc/a")).unwrap().name,
        "/etc/a"
    );
    assert_eq!(b.files.rules.len(), 2, "rules of the new policy");
    assert_eq!(file_denied_by(&b, "/etc/c/x").as_deref(), Some("/etc/c"));
    assert_eq!(file_denied_by(&b, "/etc/a/x"), None);
}

#[test]
fn renaming_a_directory_above_a_denied_path_is_denied() {
    let p = compile(
        ListPolicy::Blacklist,
        &["/srv/public"],
        &["/srv/secret/key", "/etc/shadow"],
    );
    let renamed = |path: &str| {
        p.files
            .ancestors
            .lookup(path)
            .map(|id| p.files.rules.get(id).unwrap().name.clone())
    };
    assert_eq!(renamed("/srv"), Some("/srv/secret/key".into()));
    assert_eq!(renamed("/srv/secret"), Some("/srv/secret/key".into()));
    assert_eq!(renamed("/etc"), Some("/etc/shadow".into()));
    // The denied path itself is judged by the path rules; the root has no
    // name; neighbours and lookalikes are not ancestors; allow rules make
    // none.
    for path in [
        "/srv/secret/key",
        "/",
        "/srv/secretary",
        "/sr",
        "/srv/public",
        "/e",
    ] {
        assert_eq!(renamed(path), None, "{path}");
    }
    // What the kernel holds: each ancestor once, its key with a trailing
    // `/` and the key's length in the value.
    let keys = ancestor_keys(&p.files.ancestors);
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["/etc/", "/srv/", "/srv/secret/"]);
}

/// Nested and neighbouring prefixes (`/a/b-` and `/a/bc` sort around
/// `/a/b/` but are not inside it), deny and allow mixed: each entry carries
/// the rule of the longest of its prefixes that has one, first listed first.
#[test]
fn each_path_entry_carries_its_nearest_deny_and_allow() {
    let deny: Vec<(u32, &str)> = ["/a", "/a/b/c", "/a/b-", "/z/y", "/a/b/c/d/e", "/a/b/c"]
        .into_iter()
        .zip(1..)
        .map(|(p, id)| (id, p))
        .collect();
    let allow: Vec<(u32, &str)> = ["/", "/a/b", "/a/bc", "/a/b/c/d", "/z"]
        .into_iter()
        .zip(100..)
        .map(|(p, id)| (id, p))
        .collect();
    let nearest = |rules: &[(u32, &str)], key: &[u8]| {
        rules
            .iter()
            .filter(|(_, p)| {
                let prefix = if *p == "/" {
                    "/".into()
                } else {
                    format!("{p}/")
                };
                key.starts_with(prefix.as_bytes())
            })
            .max_by_key(|(id, p)| (p.len(), std::cmp::Reverse(*id)))
            .map_or(0, |(id, _)| *id)
    };
    let entries = PathRules::build(&deny, &allow).entries();
    assert_eq!(entries.len(), 10, "one entry per distinct prefix");
    for e in &entries {
        let key = &e.key[..e.key_len];
        let name = String::from_utf8_lossy(key);
        assert_eq!(e.rule.deny_rule, nearest(&deny, key), "deny of {name}");
        assert_eq!(e.rule.allow_rule, nearest(&allow, key), "allow of {name}");
    }
}

/// The same for networks: a network is inside another when its prefix is
/// at least as long and its address lies in the other's range.
#[test]
fn each_network_entry_carries_its_nearest_deny_and_allow() {
    let nets = [
        ("10.0.0.0/8", true),
        ("0.0.0.0/0", false),
        ("10.1.0.0/16", false),
        ("10.1.2.0/24", true),
        ("10.1.2.3/32", false),
        ("10.1.128.0/17", true),
        ("10.2.0.0/16", false),
        ("11.0.0.0/8", true),
        ("10.1.2.0/23", false),
        ("2001:db8::/32", true),
        ("2001:db8:1::/48", false),
        ("2001:db8:1:2::/64", true),
    ];
    let cidrs: Vec<(u32, ipnetwork::IpNetwork, bool)> = nets
        .iter()
        .zip(1..)
        .map(|((net, deny), id)| (id, net.parse().unwrap(), *deny))
        .collect();
    let nearest = |inner: ipnetwork::IpNetwork, deny: bool| {
        cidrs
            .iter()
            .filter(|(_, outer, d)| {
                *d == deny && outer.prefix() <= inner.prefix() && outer.contains(inner.network())
            })
            .max_by_key(|(_, outer, _)| outer.prefix())
            .map_or(0, |(id, _, _)| *id)
    };
    let mut rules = NetRules::default();
    rules.add_cidrs(&cidrs);
    let v4 = rules.v4_entries();
    let v6 = rules.v6_entries();
    assert_eq!((v4.len(), v6.len()), (9, 3));
    let all = v4
        .iter()
        .map(|e| {
            (
                ipnetwork::IpNetwork::new(std::net::Ipv4Addr::from(e.addr).into(), e.prefix),
                e.rule,
            )
        })
        .chain(v6.iter().map(|e| {
            (
                ipnetwork::IpNetwork::new(std::net::Ipv6Addr::from(e.addr).into(), e.prefix),
                e.rule,
            )
        }));
    for (net, rule) in all {
        let net = net.unwrap();
        assert_eq!(rule.deny_rule, nearest(net, true), "deny of {net}");
        assert_eq!(rule.allow_rule, nearest(net, false), "allow of {net}");
    }
}

#[test]
fn identities_are_resolved_for_host_rules_only() {
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().to_str().unwrap().to_string();
    let host = compile(ListPolicy::Blacklist, &[], &[&denied]);
    assert!(host.files.identities.lookup(dir.path()).is_some());
    assert_ne!(
        host.files.config.flags & collector_common::FLAG_FILE_IDENTITIES,
        0
    );
    let mut config = crate::config::load(&Default::default()).unwrap();
    config.files = FilesConfig {
        settings: ModuleSettings {
            target: Target::Container,
            ..settings(ListPolicy::Blacklist)
        },
        allow: vec![],
        deny: vec![validate_rule_path(&denied).unwrap()],
        ioctl: false,
    };
    let container = Policy::compile(&config);
    // A container rule names a path inside each container: the host's
    // file at that path is another file.
    assert!(container.files.identities.is_empty());
    assert_eq!(
        container.files.config.flags & collector_common::FLAG_FILE_IDENTITIES,
        0
    );
}

#[test]
fn exec_rules_on_symbolic_links_also_match_where_they_lead() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("usr/bin");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("nc.openbsd"), "").unwrap();
    std::os::unix::fs::symlink("nc.openbsd", real.join("nc")).unwrap();
    // A linked directory, as /bin → usr/bin with merged /usr.
    std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (link, in_linked_dir) = (
        format!("{}/usr/bin/nc", root.display()),
        format!("{}/bin/nc.openbsd", root.display()),
    );
    let p = compile(ListPolicy::Blacklist, &[], &[&link, &in_linked_dir]);
    let target = format!("{}/usr/bin/nc.openbsd", root.display());
    // The executable the programs see is the resolved file: denied by
    // both rules, each named as written (the first one found wins).
    assert_eq!(
        exec_denied_by(&p, &target, "nc.openbsd"),
        Some(link.clone())
    );
    let q = compile(ListPolicy::Blacklist, &[], &[&in_linked_dir]);
    assert_eq!(
        exec_denied_by(&q, &target, "nc.openbsd"),
        Some(in_linked_dir.clone())
    );
    // Nothing else under the real directory is.
    assert_eq!(
        exec_denied_by(&p, &format!("{}/usr/bin/id", root.display()), "id"),
        None
    );
}

#[test]
fn a_bind_mount_of_a_directory_above_a_denied_source_is_denied() {
    // The mount module's ancestors include the root: a bind of / shows
    // every source.
    let keys = ancestor_keys(&Ancestors::build_with_root(&[(7, "/srv/sgm/secret")]));
    assert_eq!(
        keys,
        [
            ("/".to_string(), 7),
            ("/srv/".to_string(), 7),
            ("/srv/sgm/".to_string(), 7)
        ]
    );
    // The files module's leave it out.
    assert!(
        Ancestors::build(&[(7, "/srv/sgm/secret")])
            .entries()
            .all(|(_, len, _)| len > 1)
    );
}

#[test]
fn a_mount_matters_where_a_rule_path_is_at_above_or_below_it() {
    let paths = PathRules::build(&[(1, "/srv/secret")], &[(2, "/opt/app")]);
    // At or below a rule path, and above one (a mount there can make it).
    for point in ["/srv/secret", "/srv/secret/sub", "/srv", "/", "/opt/app/x"] {
        assert!(paths.touches(point), "{point}");
    }
    // Beside: a lookalike, a sibling, elsewhere.
    for point in [
        "/srv/secretary",
        "/srv/public",
        "/var/lib/containers/x",
        "/opt/ap",
    ] {
        assert!(!paths.touches(point), "{point}");
    }
}

/// The ancestors' trie entries as `(key, deny rule)`, sorted; each entry's
/// key length must be in its value.
fn ancestor_keys(ancestors: &Ancestors) -> Vec<(String, u32)> {
    let mut keys: Vec<(String, u32)> = ancestors
        .entries()
        .map(|(key, len, rule)| {
            assert_eq!(rule.key_bits as usize, len * 8);
            (
                String::from_utf8_lossy(&key[..len]).into_owned(),
                rule.deny_rule,
            )
        })
        .collect();
    keys.sort();
    keys
}
