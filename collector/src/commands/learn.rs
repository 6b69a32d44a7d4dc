//! `safeguard learn`: the narrowest policy that lets what a workload did
//! through, from the agent's own events: watched for `--duration` (the
//! agent runs with every module it needs in monitor mode, reporting each
//! exec, each connect and each file used under a `--protect` tree), or read
//! from a JSON event log (`--from`).
//!
//! The policy: `process` and `network` as whitelists of the executables
//! that ran and the addresses connected to (collapsed into networks where
//! a whole block was used), and, with `--protect`, `files` as a whitelist
//! of everything outside the protected trees and the files used inside
//! them. Each rule says in a comment where it came from.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::BufRead as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use collector_common::Hook;
use semconv::{attr, event};
use serde::Serialize;
use serde_json::Value;

use super::{
    EXIT_CONFIG,
    generate::{check_accepted, write},
    load_config,
};
use crate::{
    agent,
    cli::{ConfigArgs, GenerateMode, LearnArgs},
    config::Output,
};

pub fn learn(args: &LearnArgs) -> ExitCode {
    let protect = match protected_trees(&args.protect) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("safeguard learn: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let events = match (&args.from, args.duration) {
        (Some(file), _) => file.clone(),
        (None, Some(duration)) => match watch(args, &protect, duration) {
            Ok(file) => file,
            Err(code) => return code,
        },
        (None, None) => unreachable!("clap requires --duration or --from"),
    };
    match write_policy(args, &protect, &events) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safeguard learn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `--protect` trees as the kernel names them (symbolic links
/// followed): each must exist.
fn protected_trees(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    dirs.iter()
        .map(|d| {
            std::fs::canonicalize(d)
                .with_context(|| format!("--protect {}: cannot be resolved", d.display()))
        })
        .collect()
}

/// Runs the agent for `duration` with the learning settings; the JSON
/// event log it wrote.
fn watch(
    args: &LearnArgs,
    protect: &[PathBuf],
    duration: std::time::Duration,
) -> Result<PathBuf, ExitCode> {
    let dir = std::env::temp_dir().join(format!("safeguard-learn-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("safeguard learn: mkdir {}: {e}", dir.display());
        return Err(ExitCode::FAILURE);
    }
    let events = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&events);
    let sources = ConfigArgs {
        config: args.config.clone(),
        overrides: args
            .overrides
            .iter()
            .cloned()
            .chain(learning_overrides(protect))
            .collect(),
        mode: None,
    };
    let config = load_config(&sources)?;
    eprintln!(
        "safeguard learn: watching for {}",
        humantime::format_duration(duration)
    );
    let options = agent::Options {
        sources,
        output: Output::File(events.clone()),
        local_always: true,
        record: None,
        stop_after: Some(duration),
    };
    let code = super::run::run_agent(config, options);
    if code != ExitCode::SUCCESS {
        return Err(code);
    }
    Ok(events)
}

/// What the agent runs with while learning: every exec, connect and file
/// use under the protected trees reported (monitor mode, no sampling),
/// nothing refused.
fn learning_overrides(protect: &[PathBuf]) -> Vec<String> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut set = vec![
        "kernel.audit_rate_limit=0".to_string(),
        "log.format=json".into(),
        "log.level=info".into(),
        "mount.enable=false".into(),
        "process.enable=true".into(),
        "process.mode=monitor".into(),
        // A whitelist that allows nothing: every connect is reported.
        "network.enable=true".into(),
        "network.mode=monitor".into(),
        "network.policy=whitelist".into(),
        "network.cidr.allow=[]".into(),
        "network.cidr.deny=[]".into(),
        // Allowances that would let a connect through unreported.
        "network.domain.allow=[]".into(),
        "network.domain.deny=[]".into(),
        "network.command.allow=[]".into(),
        "network.uid.allow=[]".into(),
        "network.gid.allow=[]".into(),
    ];
    if protect.is_empty() {
        set.push("files.enable=false".into());
    } else {
        let trees: Vec<String> = protect.iter().map(|p| q(&p.to_string_lossy())).collect();
        set.extend([
            "files.enable=true".into(),
            "files.mode=monitor".into(),
            "files.policy=blacklist".into(),
            "files.allow=[/]".into(),
            format!("files.deny=[{}]", trees.join(", ")),
        ]);
    }
    set
}

fn write_policy(args: &LearnArgs, protect: &[PathBuf], events: &Path) -> anyhow::Result<()> {
    let mut learned = Learned::default();
    let file = std::fs::File::open(events).with_context(|| format!("open {}", events.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", events.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{}: not a JSON event (learn reads the agent's JSON event log, log.format: json)",
                events.display(),
                n + 1
            )
        })?;
        learned.observe(&event, protect);
    }
    learned.finish();
    let mode = match args.mode {
        GenerateMode::Monitor => semconv::mode::MONITOR,
        GenerateMode::Block => semconv::mode::BLOCK,
    };
    let outside = outside_trees(protect, &|dir| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    });
    let yaml = learned.to_yaml(mode, Scope::Host, protect, &outside);
    check_accepted(&yaml)?;
    let mut policies = BTreeMap::new();
    match &args.output {
        Some(path) => {
            write(path, &yaml)?;
            let mut taken = BTreeSet::from([path.clone()]);
            for (image, seen) in &learned.images {
                let yaml = seen.to_yaml(mode, Scope::Image(image), protect, &outside);
                check_accepted(&yaml)
                    .with_context(|| format!("the policy of image {}", printable(image)))?;
                let at = image_policy_path(path, image, &mut taken);
                write(&at, &yaml)?;
                eprintln!(
                    "safeguard learn: image {}: {} events; wrote {}",
                    printable(image),
                    seen.events,
                    at.display()
                );
                policies.insert(image.clone(), at);
            }
        }
        None => {
            print!("{yaml}");
            if !learned.images.is_empty() {
                eprintln!(
                    "safeguard learn: {} container images seen; with --output, each one's policy is written next to it",
                    learned.images.len()
                );
            }
        }
    }
    if let Some(path) = &args.report {
        write(
            path,
            &(serde_json::to_string_pretty(&learned.report(&policies))? + "\n"),
        )?;
    }
    eprintln!(
        "safeguard learn: {} events: {} executables, {} destinations ({} names, {} networks), {} files{}",
        learned.events,
        learned.executables.len(),
        learned.destinations.len(),
        learned.by_name().0.len(),
        collapse(learned.by_name().1.into_iter()).len(),
        learned.files.len(),
        args.output
            .as_ref()
            .map(|p| format!("; wrote {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// How often one thing was seen, and by which programs and containers.
#[derive(Debug, Default, Clone, Serialize)]
struct Seen {
    count: u64,
    /// `process.command` of the tasks (their `comm`).
    commands: BTreeSet<String>,
    /// What was done (`open read`, `connect`, `exec`).
    operations: BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    containers: BTreeSet<String>,
}

impl Seen {
    fn add(&mut self, event: &Value, operation: String) {
        self.count += 1;
        if let Some(comm) = event[attr::PROCESS_COMM].as_str() {
            self.commands.insert(comm.to_string());
        }
        if let Some(id) = event[attr::CONTAINER_ID].as_str() {
            self.containers.insert(id.to_string());
        }
        self.operations.insert(operation);
    }

    /// The YAML comment that says where a rule came from.
    fn comment(&self) -> String {
        let text = format!(
            "{} {} time{} by {}",
            self.operations
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.commands.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        printable(&text)
    }
}

/// What the events showed.
#[derive(Debug, Default)]
struct Learned {
    events: u64,
    first: Option<String>,
    last: Option<String>,
    executables: BTreeMap<String, Seen>,
    destinations: BTreeMap<IpAddr, Seen>,
    /// The users and groups (real ids, as the kernel judges them) of the
    /// tasks that connected, sent or bound.
    users: BTreeMap<u32, Seen>,
    groups: BTreeMap<u32, Seen>,
    files: BTreeMap<String, Seen>,
    /// The names `dns_proxy` answered each address for.
    answered: BTreeMap<IpAddr, BTreeSet<String>>,
    /// The containers seen (`container.id`).
    containers: BTreeSet<String>,
    /// What the containers of each image did (`container.image.name`).
    images: BTreeMap<String, Learned>,
}

#[derive(Serialize)]
struct Report<'a> {
    events: u64,
    first: &'a Option<String>,
    last: &'a Option<String>,
    executables: Vec<Item<'a, String>>,
    destinations: Vec<Item<'a, String>>,
    users: Vec<Id<'a>>,
    groups: Vec<Id<'a>>,
    files: Vec<Item<'a, String>>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    containers: &'a BTreeSet<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<ImageReport<'a>>,
}

/// One image's part of the report, and the policy written for it.
#[derive(Serialize)]
struct ImageReport<'a> {
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(flatten)]
    seen: Report<'a>,
}

#[derive(Serialize)]
struct Id<'a> {
    id: u32,
    #[serde(flatten)]
    seen: &'a Seen,
}

#[derive(Serialize)]
struct Item<'a, K> {
    #[serde(rename = "path", skip_serializing_if = "Option::is_none")]
    path: Option<K>,
    #[serde(rename = "address", skip_serializing_if = "Option::is_none")]
    address: Option<K>,
    /// For an address: the names `dns_proxy` answered it for.
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<&'a BTreeSet<String>>,
    #[serde(flatten)]
    seen: &'a Seen,
}

impl Learned {
    /// Takes in one event of the log, for the whole host and for the image
    /// of its container.
    fn observe(&mut self, e: &Value, protect: &[PathBuf]) {
        self.take_in(e, protect);
        if let Some(image) = e[attr::CONTAINER_IMAGE_NAME].as_str() {
            self.images
                .entry(image.to_string())
                .or_default()
                .take_in(e, protect);
        }
    }

    /// The image policies name destinations by the answers of `dns_proxy`,
    /// which the agent gave, not a container: once every event is in.
    fn finish(&mut self) {
        for image in self.images.values_mut() {
            image.answered.clone_from(&self.answered);
        }
    }

    /// Takes in one event. A refused operation (`blocked`) did not happen
    /// and teaches nothing.
    fn take_in(&mut self, e: &Value, protect: &[PathBuf]) {
        self.events += 1;
        if let Some(id) = e[attr::CONTAINER_ID].as_str() {
            self.containers.insert(id.to_string());
        }
        if let Some(time) = e["time"].as_str() {
            self.first.get_or_insert_with(|| time.to_string());
            self.last = Some(time.to_string());
        }
        if e[attr::DECISION] == semconv::decision::BLOCKED {
            return;
        }
        let Some(name) = event_name(e) else {
            return;
        };
        if name == event::DNS_PROXY_ANSWER {
            let Some(asked) = e[attr::DNS_QUESTION_NAME].as_str() else {
                return;
            };
            for ip in e[attr::DNS_ANSWERS]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|a| a.parse::<IpAddr>().ok())
            {
                self.answered
                    .entry(ip.to_canonical())
                    .or_default()
                    .insert(asked.to_string());
            }
        } else if name == event::PROCESS_EXEC {
            if let Some(path) = e[attr::PROCESS_EXECUTABLE_PATH].as_str()
                && path.starts_with('/')
                && !path.starts_with("/memfd:")
                && !path.ends_with(" (deleted)")
            {
                self.executables
                    .entry(path.to_string())
                    .or_default()
                    .add(e, "exec".into());
            }
        } else if let Some(op) = name.strip_prefix("safeguard.network.") {
            let peer = e[attr::NETWORK_PEER_ADDRESS]
                .as_str()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical());
            let Some(ip) = peer.filter(|ip| !ip.is_unspecified()) else {
                return;
            };
            self.destinations
                .entry(ip)
                .or_default()
                .add(e, op.to_string());
            // Rules on who connects judge the task that asks; an inbound
            // connection or datagram is handled in whatever task the
            // kernel was running, which says nothing of the receiver.
            let inbound = [Hook::LsmInetConnRequest, Hook::LsmSockRcvSkb]
                .iter()
                .any(|h| e[attr::HOOK] == h.name());
            if !inbound {
                let id = |key: &str| e[key].as_u64().and_then(|v| u32::try_from(v).ok());
                if let Some(uid) = id(attr::PROCESS_REAL_USER_ID) {
                    self.users.entry(uid).or_default().add(e, op.to_string());
                }
                if let Some(gid) = id(attr::PROCESS_GROUP_ID) {
                    self.groups.entry(gid).or_default().add(e, op.to_string());
                }
            }
        } else if let Some(op) = name.strip_prefix("safeguard.file.") {
            let Some(path) = e[attr::FILE_PATH].as_str() else {
                return;
            };
            if !protect.iter().any(|tree| Path::new(path).starts_with(tree)) {
                return;
            }
            let op = match e[attr::FILE_OPEN_MODE].as_array() {
                Some(modes) => format!(
                    "{op} {}",
                    modes
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("+")
                ),
                None => op.to_string(),
            };
            self.files.entry(path.to_string()).or_default().add(e, op);
        }
    }

    /// The destinations reached by a name `dns_proxy` answered, by name
    /// (an address answered for several names goes to each), and those
    /// reached by address alone.
    fn by_name(&self) -> (BTreeMap<String, Seen>, Vec<IpAddr>) {
        let mut names: BTreeMap<String, Seen> = BTreeMap::new();
        let mut bare = Vec::new();
        for (ip, seen) in &self.destinations {
            match self.answered.get(ip) {
                Some(asked) => {
                    for name in asked {
                        let to = names.entry(name.clone()).or_default();
                        to.count += seen.count;
                        to.commands.extend(seen.commands.iter().cloned());
                        to.operations.extend(seen.operations.iter().cloned());
                        to.containers.extend(seen.containers.iter().cloned());
                    }
                }
                None => bare.push(*ip),
            }
        }
        (names, bare)
    }

    /// The report; `policies` says where each image's policy went.
    fn report(&self, policies: &BTreeMap<String, PathBuf>) -> Report<'_> {
        fn paths(m: &BTreeMap<String, Seen>) -> Vec<Item<'_, String>> {
            m.iter()
                .map(|(k, seen)| Item {
                    path: Some(k.clone()),
                    address: None,
                    names: None,
                    seen,
                })
                .collect()
        }
        fn ids(m: &BTreeMap<u32, Seen>) -> Vec<Id<'_>> {
            m.iter().map(|(&id, seen)| Id { id, seen }).collect()
        }
        Report {
            events: self.events,
            first: &self.first,
            last: &self.last,
            executables: paths(&self.executables),
            destinations: self
                .destinations
                .iter()
                .map(|(ip, seen)| Item {
                    path: None,
                    address: Some(ip.to_string()),
                    names: self.answered.get(ip),
                    seen,
                })
                .collect(),
            users: ids(&self.users),
            groups: ids(&self.groups),
            files: paths(&self.files),
            containers: &self.containers,
            images: self
                .images
                .iter()
                .map(|(image, learned)| ImageReport {
                    image,
                    policy: policies.get(image).map(|p| p.display().to_string()),
                    seen: learned.report(&BTreeMap::new()),
                })
                .collect(),
        }
    }

    /// The policy, as a configuration `check` accepts unchanged. Strings
    /// are written as JSON strings (YAML double-quoted scalars), so no
    /// path can change the meaning of a line.
    fn to_yaml(&self, mode: &str, scope: Scope, protect: &[PathBuf], outside: &[String]) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut out = String::new();
        // A container names its files inside its own root, which neither
        // the host's trees nor the host's listing of them describe: an
        // image's policy leaves files out.
        let files_left_out = matches!(scope, Scope::Image(_)) && !protect.is_empty();
        let protect = if files_left_out { &[][..] } else { protect };
        let target = match scope {
            Scope::Host => "host",
            Scope::Image(_) => "container",
        };
        if let Scope::Image(image) = scope {
            let _ = writeln!(
                out,
                "# The containers of image {} ({}): what they did alone.\n\
                 # target: container: in force, it judges every container on the host\n\
                 # by this image's behaviour (the host's own tasks are not judged), so\n\
                 # it fits where this image's containers are the ones that run.",
                printable(image),
                self.containers
                    .iter()
                    .map(|id| &id[..id.len().min(12)])
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "# Learned by `safeguard learn` from {} events, {} to {}.\n\
             # It lets through the executables that ran and the addresses connected to{}:\n\
             # the whitelists below refuse everything else. Review it, try it in\n\
             # monitor mode, then set mode: block.",
            self.events,
            self.first.as_deref().unwrap_or("-"),
            self.last.as_deref().unwrap_or("-"),
            if protect.is_empty() {
                String::new()
            } else {
                format!(
                    ",\n# and the files used under {} (the directories above them are\n\
                     # allowed by their other entries only: a new entry next to a protected\n\
                     # tree, or opening such a directory itself, is refused)",
                    protect
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        if scope == Scope::Host && !self.images.is_empty() {
            let _ = writeln!(
                out,
                "# It holds the containers' behaviour too (images: {}); each image's\n\
                 # alone is written next to it.",
                self.images
                    .keys()
                    .map(|i| printable(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.push_str("policy: whitelist\n");
        let module = |out: &mut String, name: &str| {
            let _ = writeln!(
                out,
                "{name}:\n  enable: true\n  mode: {mode}\n  target: {target}\n  policy: whitelist"
            );
        };
        let list = |out: &mut String, indent: &str, items: Vec<(String, String)>| {
            if items.is_empty() {
                out.push_str(" []\n");
                return;
            }
            out.push('\n');
            for (item, comment) in items {
                let _ = writeln!(out, "{indent}- {item}  # {comment}");
            }
        };

        module(&mut out, "process");
        out.push_str("  allow:");
        list(
            &mut out,
            "    ",
            self.executables
                .iter()
                .map(|(path, seen)| (q(path), seen.comment()))
                .collect(),
        );
        out.push_str("  deny: []\n");

        module(&mut out, "network");
        let (names, bare) = self.by_name();
        out.push_str("  domain:\n    allow:");
        list(
            &mut out,
            "      ",
            names
                .iter()
                .map(|(name, seen)| (q(name), format!("through dns_proxy: {}", seen.comment())))
                .collect(),
        );
        out.push_str("    deny: []\n");
        out.push_str("  cidr:\n    allow:");
        let networks = collapse(bare.into_iter())
            .into_iter()
            .map(|net| {
                let within: Vec<&Seen> = self
                    .destinations
                    .iter()
                    .filter(|(ip, _)| net.contains(**ip))
                    .map(|(_, seen)| seen)
                    .collect();
                let comment = if let [one] = within[..] {
                    one.comment()
                } else {
                    format!(
                        "{} addresses, {} times",
                        within.len(),
                        within.iter().map(|s| s.count).sum::<u64>()
                    )
                };
                (q(&net.to_string()), comment)
            })
            .collect();
        list(&mut out, "      ", networks);
        out.push_str("    deny: []\n");
        // Only these users and groups may connect: an allow list of UIDs
        // or GIDs lets no one else through a whitelist.
        for (key, ids) in [("uid", &self.users), ("gid", &self.groups)] {
            let _ = write!(out, "  {key}:\n    allow:");
            list(
                &mut out,
                "      ",
                ids.iter()
                    .map(|(id, seen)| (id.to_string(), seen.comment()))
                    .collect(),
            );
            out.push_str("    deny: []\n");
        }

        if files_left_out {
            out.push_str(
                "# Files are not in an image's policy: --protect names the host's trees,\n\
                 # and a container names its files inside its own root.\n\
                 files:\n  enable: false\n",
            );
        } else if protect.is_empty() {
            out.push_str(
                "# No --protect tree: file use was not learned.\nfiles:\n  enable: false\n",
            );
        } else {
            module(&mut out, "files");
            out.push_str("  allow:");
            let mut items: Vec<(String, String)> = outside
                .iter()
                .map(|p| (q(p), "outside the protected trees".to_string()))
                .collect();
            items.extend(self.files.iter().map(|(p, seen)| (q(p), seen.comment())));
            list(&mut out, "    ", items);
            out.push_str("  deny: []\n");
        }
        out.push_str("mount:\n  enable: false\n");
        out
    }
}

/// `text` on one line, for a YAML comment: a command or image name is
/// whatever someone set.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Whom a learned policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// Every task (`target: host`): what the host and its containers did.
    Host,
    /// The containers of one image (`target: container`).
    Image(&'a str),
}

/// Where the policy of `image` goes, next to the host's `output`
/// (`policy.yaml` → `policy.image-localhost_app_1.yaml`): a name made of
/// the image's letters and digits, numbered where two images would share
/// one.
fn image_policy_path(output: &Path, image: &str, taken: &mut BTreeSet<PathBuf>) -> PathBuf {
    let stem = output
        .file_stem()
        .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
    let ext = output
        .extension()
        .map_or_else(|| "yaml".into(), |s| s.to_string_lossy().into_owned());
    let slug: String = image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = output.with_file_name(format!("{stem}.image-{slug}{suffix}.{ext}"));
        if taken.insert(path.clone()) {
            return path;
        }
        n += 1;
    }
}

/// The event name, under either key the log may use.
fn event_name(e: &Value) -> Option<&str> {
    e[event::NAME_KEY]
        .as_str()
        .or_else(|| e[event::LEGACY_NAME_KEY].as_str())
}

/// Everything next to the protected trees and their parents, so that a
/// whitelist of these and of the files used inside the trees lets all
/// else through: for `/srv/data`, every entry of `/` but `srv`, and every
/// entry of `/srv` but `data`. `list` gives a directory's entry names.
fn outside_trees(protect: &[PathBuf], list: &dyn Fn(&Path) -> Vec<String>) -> Vec<String> {
    let protected = |p: &Path| protect.iter().any(|t| p.starts_with(t));
    // The proper ancestors of the trees, outside every tree.
    let ancestors: BTreeSet<&Path> = protect
        .iter()
        .flat_map(|t| t.ancestors().skip(1))
        .filter(|a| !protected(a))
        .collect();
    let mut out = Vec::new();
    for dir in &ancestors {
        let mut names = list(dir);
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if !ancestors.contains(path.as_path()) && !protected(&path) {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The fewest networks that hold exactly `addrs`: two halves of a block,
/// both held, make the block (256 neighbours in 10.0.0.0/24 are one rule;
/// 10.0.0.1 and 10.0.0.2 stay two).
fn collapse(addrs: impl Iterator<Item = IpAddr>) -> Vec<ipnetwork::IpNetwork> {
    let (mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new());
    for ip in addrs {
        match ip {
            IpAddr::V4(a) => v4.insert(u128::from(u32::from(a))),
            IpAddr::V6(a) => v6.insert(u128::from(a)),
        };
    }
    let mut out = Vec::new();
    for (net, prefix) in merge(v4, 32) {
        let ip = std::net::Ipv4Addr::from(net as u32);
        out.extend(ipnetwork::IpNetwork::new(ip.into(), prefix));
    }
    for (net, prefix) in merge(v6, 128) {
        let ip = std::net::Ipv6Addr::from(net);
        out.extend(ipnetwork::IpNetwork::new(ip.into(), prefix));
    }
    out
}

/// Merges sibling blocks of `bits`-bit addresses, longest prefixes first:
/// `(network, prefix length)`.
fn merge(addrs: BTreeSet<u128>, bits: u8) -> Vec<(u128, u8)> {
    let mut done = Vec::new();
    let mut level = addrs;
    for prefix in (1..=bits).rev() {
        let size = 1u128 << (bits - prefix);
        let mut up = BTreeSet::new();
        for &net in &level {
            let sibling = net ^ size;
            if net & size == 0 && level.contains(&sibling) {
                up.insert(net);
            } else if net & size != 0 && level.contains(&(net & !size)) {
                // Its lower half carried it up.
            } else {
                done.push((net, prefix));
            }
        }
        level = up;
        if level.is_empty() {
            break;
        }
    }
    done.extend(level.into_iter().map(|net| (net, 0)));
    done.sort();
    done
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exec(path: &str, comm: &str) -> Value {
        json!({
            "time": "2026-12-04T10:00:00Z",
            "otel.event.name": event::PROCESS_EXEC,
            "safeguard.decision": "allowed",
            "process.executable.path": path,
            "safeguard.process.comm": comm,
        })
    }

    fn connect(addr: &str, decision: &str) -> Value {
        json!({
            "time": "2026-12-04T10:00:01Z",
            "otel.event.name": event::NETWORK_CONNECT,
            "safeguard.decision": decision,
            "safeguard.hook": "lsm/socket_connect",
            "network.peer.address": addr,
            "safeguard.process.comm": "curl",
            "process.user.id": 0,
            "process.real_user.id": 1000,
            "safeguard.process.group_id": 100,
        })
    }

    /// An inbound connection, judged in whatever task the kernel ran.
    fn accept(addr: &str) -> Value {
        json!({
            "otel.event.name": event::NETWORK_ACCEPT,
            "safeguard.decision": "would_block",
            "safeguard.hook": "lsm/inet_conn_request",
            "network.peer.address": addr,
            "safeguard.process.comm": "swapper/0",
            "process.real_user.id": 0,
            "safeguard.process.group_id": 0,
        })
    }

    fn open(path: &str, modes: &[&str]) -> Value {
        json!({
            "otel.event.name": event::FILE_OPEN,
            "safeguard.decision": "would_block",
            "file.path": path,
            "safeguard.file.open_mode": modes,
            "safeguard.process.comm": "sh",
        })
    }

    #[test]
    fn what_ran_what_was_reached_and_what_was_used_under_the_trees() {
        let protect = [PathBuf::from("/srv/data")];
        let mut l = Learned::default();
        for e in [
            exec("/usr/bin/curl", "curl"),
            exec("/usr/bin/curl", "curl"),
            exec("/memfd:x", "x"),
            connect("192.0.2.7", "would_block"),
            connect("::ffff:192.0.2.8", "would_block"),
            connect("192.0.2.9", "blocked"),
            accept("192.0.2.10"),
            // A raw socket made: no peer, no destination, no user.
            json!({
                "otel.event.name": event::NETWORK_SOCKET,
                "safeguard.decision": "would_block",
                "process.real_user.id": 2000,
                "safeguard.process.group_id": 2000,
            }),
            open("/srv/data/a", &["read"]),
            open("/srv/database/x", &["read"]),
            open("/etc/passwd", &["read"]),
        ] {
            l.observe(&e, &protect);
        }
        assert_eq!(l.events, 11);
        assert_eq!(l.executables.keys().collect::<Vec<_>>(), ["/usr/bin/curl"]);
        assert_eq!(l.executables["/usr/bin/curl"].count, 2);
        let reached: Vec<String> = l.destinations.keys().map(ToString::to_string).collect();
        assert_eq!(reached, ["192.0.2.7", "192.0.2.8", "192.0.2.10"]);
        // The real ids of who connected; not the task an inbound
        // connection happened to interrupt, nor a refused connect's.
        assert_eq!(l.users.keys().collect::<Vec<_>>(), [&1000]);
        assert_eq!(l.users[&1000].count, 2);
        assert_eq!(l.groups.keys().collect::<Vec<_>>(), [&100]);
        assert_eq!(l.files.keys().collect::<Vec<_>>(), ["/srv/data/a"]);
        assert_eq!(l.files["/srv/data/a"].comment(), "open read 1 time by sh");
    }

    #[test]
    fn an_address_dns_proxy_answered_is_reached_by_its_name() {
        let answer = json!({
            "otel.event.name": event::DNS_PROXY_ANSWER,
            "safeguard.decision": "allowed",
            "dns.question.name": "api.example.test",
            "dns.answers": ["192.0.2.7", "192.0.2.8"],
        });
        let mut l = Learned::default();
        // The connect may be read before the answer that led to it.
        for e in [
            connect("192.0.2.7", "would_block"),
            answer,
            connect("192.0.2.8", "would_block"),
            connect("198.51.100.1", "would_block"),
        ] {
            l.observe(&e, &[]);
        }
        let (names, bare) = l.by_name();
        assert_eq!(names.keys().collect::<Vec<_>>(), ["api.example.test"]);
        assert_eq!(names["api.example.test"].count, 2);
        assert_eq!(bare, [IpAddr::from([198, 51, 100, 1])]);
        let yaml = l.to_yaml("monitor", Scope::Host, &[], &[]);
        check_accepted(&yaml).unwrap();
        assert!(
            yaml.contains(r#"- "api.example.test"  # through dns_proxy: connect 2 times"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"- "198.51.100.1/32""#), "{yaml}");
        assert!(!yaml.contains("192.0.2.7"), "{yaml}");
    }

    /// `event` as done in a container of `image`.
    fn in_container(mut event: Value, image: &str, id: &str) -> Value {
        event[attr::CONTAINER_IMAGE_NAME] = image.into();
        event[attr::CONTAINER_ID] = id.into();
        event
    }

    #[test]
    fn each_image_gets_a_policy_of_its_own_and_the_host_one_holds_them_all() {
        const WEB: &str = "localhost/web:1";
        const DB: &str = "registry.example/db:2";
        let mut l = Learned::default();
        for e in [
            exec("/usr/bin/ssh", "ssh"),
            in_container(exec("/usr/sbin/nginx", "nginx"), WEB, "aaaa1111"),
            in_container(exec("/usr/sbin/nginx", "nginx"), WEB, "bbbb2222"),
            in_container(connect("192.0.2.7", "would_block"), WEB, "aaaa1111"),
            in_container(exec("/usr/bin/postgres", "postgres"), DB, "cccc3333"),
        ] {
            l.observe(&e, &[]);
        }
        l.finish();
        assert_eq!(l.executables.len(), 3);
        assert_eq!(l.images.keys().collect::<Vec<_>>(), [WEB, DB]);
        let web = &l.images[WEB];
        assert_eq!(web.events, 3);
        assert_eq!(
            web.executables.keys().collect::<Vec<_>>(),
            ["/usr/sbin/nginx"]
        );
        assert_eq!(web.containers.len(), 2);

        let host = l.to_yaml("monitor", Scope::Host, &[], &[]);
        check_accepted(&host).unwrap();
        assert!(host.contains("target: host"), "{host}");
        assert!(host.contains(r#""/usr/bin/postgres""#), "{host}");
        let yaml = web.to_yaml("monitor", Scope::Image(WEB), &[], &[]);
        check_accepted(&yaml).unwrap();
        let protected = web.to_yaml(
            "monitor",
            Scope::Image(WEB),
            &[PathBuf::from("/srv/data")],
            &["/bin".to_string()],
        );
        check_accepted(&protected).unwrap();
        assert!(
            protected.contains("files:\n  enable: false\n") && !protected.contains("\"/bin\""),
            "{protected}"
        );
        assert!(
            yaml.contains("# The containers of image localhost/web:1 (aaaa1111, bbbb2222)"),
            "{yaml}"
        );
        assert!(
            yaml.contains("target: container") && !yaml.contains("target: host"),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"- "/usr/sbin/nginx"  # exec 2 times by nginx"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"- "192.0.2.7/32""#), "{yaml}");
        assert!(
            !yaml.contains("postgres") && !yaml.contains("ssh"),
            "{yaml}"
        );

        let policies = BTreeMap::from([(WEB.to_string(), PathBuf::from("/p.image-web.yaml"))]);
        let report = serde_json::to_value(l.report(&policies)).unwrap();
        assert_eq!(report["images"][0]["image"], WEB, "{report}");
        assert_eq!(
            report["images"][0]["policy"], "/p.image-web.yaml",
            "{report}"
        );
        assert_eq!(
            report["images"][0]["executables"][0]["path"],
            "/usr/sbin/nginx"
        );
        assert_eq!(
            report["containers"].as_array().unwrap().len(),
            3,
            "{report}"
        );
    }

    #[test]
    fn image_policies_are_named_after_the_image_next_to_the_output() {
        let mut taken = BTreeSet::new();
        let out = Path::new("/etc/safeguard/learned.yaml");
        assert_eq!(
            image_policy_path(out, "localhost/web:1", &mut taken),
            Path::new("/etc/safeguard/learned.image-localhost_web_1.yaml")
        );
        // Another image with the same letters gets a number.
        assert_eq!(
            image_policy_path(out, "localhost/web_1", &mut taken),
            Path::new("/etc/safeguard/learned.image-localhost_web_1-2.yaml")
        );
        assert_eq!(
            image_policy_path(Path::new("p"), "../x", &mut taken),
            Path::new("p.image-.._x.yaml")
        );
    }

    #[test]
    fn whole_blocks_collapse_and_partial_ones_do_not() {
        let addrs = (0..=255u8)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .chain([IpAddr::from([10, 0, 1, 1]), IpAddr::from([10, 0, 1, 2])])
            .chain([
                "2001:db8::".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ]);
        let nets: Vec<String> = collapse(addrs).iter().map(ToString::to_string).collect();
        assert_eq!(
            nets,
            [
                "10.0.0.0/24",
                "10.0.1.1/32",
                "10.0.1.2/32",
                "2001:db8::/127"
            ]
        );
    }

    #[test]
    fn outside_the_trees_is_every_sibling_along_the_way() {
        let fs: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            ("/", vec!["bin", "etc", "srv"]),
            ("/srv", vec!["data", "database", "www"]),
        ]);
        let list = |d: &Path| {
            fs.get(d.to_str().unwrap())
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            outside_trees(&[PathBuf::from("/srv/data")], &list),
            ["/bin", "/etc", "/srv/database", "/srv/www"]
        );
    }

    #[test]
    fn the_policy_loads_and_refuses_what_was_not_seen() {
        let protect = [PathBuf::from("/srv/data")];
        let mut l = Learned::default();
        for e in [
            exec("/usr/bin/curl", "cu\nrl"),
            connect("192.0.2.7", "would_block"),
            open("/srv/data/a", &["write"]),
        ] {
            l.observe(&e, &protect);
        }
        let yaml = l.to_yaml("block", Scope::Host, &protect, &["/bin".to_string()]);
        check_accepted(&yaml).unwrap();
        assert!(
            yaml.contains(r#"- "/usr/bin/curl"  # exec 1 time by cu?rl"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"- "192.0.2.7/32"  # connect"#), "{yaml}");
        assert!(yaml.contains("- 1000  # connect 1 time by curl"), "{yaml}");
        assert!(yaml.contains(r#"- "/srv/data/a"  # open write"#), "{yaml}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = crate::config::load(&crate::config::Sources {
            file: Some(path),
            overrides: Vec::new(),
            environment: false,
        })
        .unwrap();
        assert_eq!(
            config.process.settings.policy,
            crate::config::ListPolicy::Whitelist
        );
        assert_eq!(
            config.network.settings.policy,
            crate::config::ListPolicy::Whitelist
        );
        assert_eq!(config.files.settings.mode, crate::config::Mode::Block);
        assert_eq!(config.network.uid_allow, [1000]);
        assert_eq!(config.network.gid_allow, [100]);
        let policy = crate::policy::Policy::compile(&config);
        assert_eq!(policy.process.rules.len(), 1, "{yaml}");
    }
}
