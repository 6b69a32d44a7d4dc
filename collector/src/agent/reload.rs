//! Reload: the configuration file watch, what is in force ([`Live`]), the
//! domain-rule watch, the watch for rule paths that do not exist yet
//! ([`RulePathWatch`]), and the keys that take effect only at a restart.
//!
//! A reload is all or nothing: the new configuration is loaded, validated
//! and compiled, then written into the policy set not in force and
//! switched to in one step ([`crate::kernel::Kernel::reload`]). Anything
//! that fails on the way leaves the running policy in force.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, error, info, warn};

use super::{Programs, rule_counts};
use crate::{
    cli::ConfigArgs,
    config::{self, Config, ConfigError},
    dns,
    events::enrich::Enricher,
    internal_events::{Registry, ReloadApplied, ReloadRejected},
    kernel::ReloadError,
    policy::Policy,
    telemetry::metrics::Observed,
};

/// Whether a key is the same in two configurations.
type Unchanged = fn(&Config, &Config) -> bool;

/// Keys a reload cannot change: they are read once, at start-up. A reload
/// that changes one puts the rest in force and says the key waits for the
/// next restart.
pub const RESTART_KEYS: &[(&str, Unchanged)] = &[
    ("kernel.ring_buffer_bytes", |a, b| {
        a.ring_buffer_bytes == b.ring_buffer_bytes
    }),
    ("kernel.audit_rate_limit", |a, b| {
        a.audit_rate_limit == b.audit_rate_limit
    }),
    ("kernel.tier", |a, b| a.tier == b.tier),
    ("kernel.pin", |a, b| a.pin == b.pin),
    ("kernel.pin_dir", |a, b| a.pin_dir == b.pin_dir),
    ("kernel.protect", |a, b| a.protect == b.protect),
    ("network.cgroup", |a, b| {
        a.network.cgroup == b.network.cgroup
    }),
    ("log", |a, b| a.log == b.log),
    ("otel", |a, b| a.otel == b.otel),
    ("status.socket", |a, b| a.status_socket == b.status_socket),
    ("dns_proxy", |a, b| a.dns_proxy == b.dns_proxy),
];

/// The keys of [`RESTART_KEYS`] that differ between `running` and `new`.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_KEYS
        .iter()
        .filter(|(_, same)| !same(running, new))
        .map(|(key, _)| *key)
        .collect()
}

/// Why a reload was rejected; the running policy stays.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The configuration does not validate: the same messages as `check`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    /// The kernel maps cannot take the new policy.
    #[error(transparent)]
    Kernel(#[from] ReloadError),
}

/// What is in force: the configuration, its compiled policy, the
/// addresses its domain rules resolved to, and those `dns_proxy` answered.
pub struct Live {
    pub config: Config,
    pub policy: Arc<Policy>,
    pub resolved: dns::Resolved,
    pub learned: dns::Learned,
}

impl Live {
    /// Compiles `config` with `resolved` and puts it in force in the
    /// kernel and the enricher; on failure nothing changes.
    pub fn apply(
        &mut self,
        config: Config,
        resolved: dns::Resolved,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) -> Result<(), ReloadError> {
        let next =
            Policy::compile_with(&config, Some(&self.policy), &self.learned.merged(&resolved));
        self.put_in_force(next, kernel, enricher, observed)?;
        self.config = config;
        self.resolved = resolved;
        Ok(())
    }

    /// Puts the running configuration in force with other addresses for
    /// its domain rules (`resolved`, and those `dns_proxy` answered): only
    /// the network rules are compiled and written again.
    fn apply_addresses(
        &mut self,
        resolved: dns::Resolved,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) -> Result<(), ReloadError> {
        let next = self
            .policy
            .with_addresses(&self.config, &self.learned.merged(&resolved));
        self.put_in_force(next, kernel, enricher, observed)?;
        self.resolved = resolved;
        Ok(())
    }

    fn put_in_force(
        &mut self,
        next: Policy,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) -> Result<(), ReloadError> {
        next.fits()?;
        let next = Arc::new(next);
        kernel.reload(&next)?;
        enricher.set_policy(next.clone());
        *observed.rules.lock().unwrap_or_else(|e| e.into_inner()) = rule_counts(&next);
        self.policy = next;
        Ok(())
    }

    /// Puts addresses `dns_proxy` answered for `name` in force (kept for
    /// their TTL and [`dns::LEARNED_GRACE`]); true once they are. Nothing
    /// is compiled when the name has them already.
    pub fn apply_learned(
        &mut self,
        name: &str,
        addrs: &[std::net::IpAddr],
        ttl: Duration,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) -> bool {
        let mut next = self.learned.clone();
        next.add(
            name,
            addrs,
            tokio::time::Instant::now() + ttl + dns::LEARNED_GRACE,
        );
        let in_force = self.learned.merged(&self.resolved);
        let known = in_force
            .get(name)
            .is_some_and(|have| addrs.iter().all(|ip| have.contains(ip)));
        let previous = std::mem::replace(&mut self.learned, next);
        if known {
            return true;
        }
        let resolved = self.resolved.clone();
        match self.apply_addresses(resolved, kernel, enricher, observed) {
            Ok(()) => {
                debug!("dns_proxy: {name} → {addrs:?} in force");
                true
            }
            Err(e) => {
                self.learned = previous;
                error!("dns_proxy: {name} → {addrs:?} cannot be put in force: {e}");
                false
            }
        }
    }

    /// Drops the addresses `dns_proxy` answered that have expired, and
    /// puts the policy without them in force.
    pub fn expire_learned(
        &mut self,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) {
        let mut next = self.learned.clone();
        if !next.expire(tokio::time::Instant::now()) {
            return;
        }
        let previous = std::mem::replace(&mut self.learned, next);
        let resolved = self.resolved.clone();
        if let Err(e) = self.apply_addresses(resolved, kernel, enricher, observed) {
            self.learned = previous;
            error!("dns_proxy: expired addresses cannot be dropped: {e}");
        }
    }

    /// Compiles the running configuration again, so that rule paths made
    /// since are entered by identity (`appeared` says what appeared).
    pub fn refresh_identities(
        &mut self,
        why: &dyn std::fmt::Display,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) {
        let (config, resolved) = (self.config.clone(), self.resolved.clone());
        match self.apply(config, resolved, kernel, enricher, observed) {
            Ok(()) => info!("{why}: the rules' identities are in force again"),
            Err(e) => error!("{why}, but the policy cannot be put in force again: {e}"),
        }
    }

    /// Whether a mount at `point` coming or going can change what the
    /// rules' identities hold (file rules, and `mount.deny`): a denied
    /// path at, above or below it; under a whitelist, any rule path (the
    /// default configuration's `allow: [/]` is everywhere, and only its
    /// denials need identities).
    pub fn mount_matters(&self, point: &Path) -> bool {
        let text = point.to_string_lossy();
        let denied_near = |module: &crate::policy::ModulePolicy| {
            point == Path::new("/")
                || module.paths.lookup(&text).is_some_and(|r| r.deny_rule != 0)
                || module.ancestors.lookup(&text).is_some()
        };
        let files = &self.policy.files;
        let files_matter = if files.config.policy == collector_common::POLICY_WHITELIST {
            files.paths.touches(&text)
        } else {
            denied_near(files)
        };
        (self.config.files.settings.enable && files_matter)
            || (self.config.mount.settings.enable && denied_near(&self.policy.mount))
    }

    /// Puts new answers of the domain rules in force with the running
    /// configuration.
    pub fn apply_resolved(
        &mut self,
        resolved: dns::Resolved,
        kernel: &mut impl Programs,
        enricher: &Enricher,
        observed: &Observed,
    ) {
        let changes: Vec<String> = resolved
            .iter()
            .filter(|(name, addrs)| self.resolved.get(*name) != Some(*addrs))
            .map(|(name, addrs)| format!("{name} → {addrs:?}"))
            .collect();
        match self.apply_addresses(resolved, kernel, enricher, observed) {
            Ok(()) => info!(
                "network.domain: addresses changed, in force: {}",
                changes.join(", ")
            ),
            Err(e) => error!("network.domain: the new addresses cannot be put in force: {e}"),
        }
    }
}

/// Loads the configuration again and puts its policy in force, or, if it
/// is not valid or cannot be put in force, says why, counts it and keeps
/// the running one. True when the domain rules' names or servers changed
/// (the domain watch must start over).
pub fn reload(
    sources: &ConfigArgs,
    live: &mut Live,
    kernel: &mut impl Programs,
    enricher: &Enricher,
    observed: &Observed,
    registry: &Registry,
) -> bool {
    let outcome = config::load(&config::Sources {
        file: sources.config.clone(),
        overrides: sources.overrides(),
        environment: true,
    })
    .map_err(Rejected::Invalid)
    .and_then(|new| {
        for key in restart_needed(&live.config, &new) {
            warn!("{key} changed: that takes effect at the next restart");
        }
        let names_changed = domain_names(&new) != domain_names(&live.config)
            || new.network.nameservers != live.config.network.nameservers;
        let resolved = live.resolved.clone();
        live.apply(new, resolved, kernel, enricher, observed)?;
        Ok(names_changed)
    });
    match outcome {
        Ok(names_changed) => {
            registry.emit(ReloadApplied {
                rules: live.policy.rule_count(),
            });
            names_changed
        }
        Err(why) => {
            registry.emit(ReloadRejected { why: &why });
            false
        }
    }
}

/// The names the domain rules resolve, if the network module is on.
pub fn domain_names(config: &Config) -> Vec<String> {
    if !config.network.settings.enable {
        return Vec::new();
    }
    let mut names: Vec<String> = config
        .network
        .domain_deny
        .iter()
        .chain(&config.network.domain_allow)
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Keeps the domain rules' names resolved: a task looks each name up
/// again when its answer's TTL runs out and sends every change to
/// `updates`, which the run loop puts in force.
pub struct DomainWatch {
    task: Option<JoinHandle<()>>,
    sender: mpsc::Sender<dns::Resolved>,
    pub updates: mpsc::Receiver<dns::Resolved>,
}

impl DomainWatch {
    /// Starts watching `live`'s names (nothing to do without names), the
    /// first lookup at `next`.
    pub fn start(live: &Live, next: tokio::time::Instant) -> Self {
        let (sender, updates) = mpsc::channel(4);
        let mut watch = Self {
            task: None,
            sender,
            updates,
        };
        watch.restart(live, next);
        watch
    }

    /// Starts over with `live`'s names and servers.
    pub fn restart(&mut self, live: &Live, next: tokio::time::Instant) {
        self.stop();
        let names = domain_names(&live.config);
        if names.is_empty() {
            return;
        }
        match dns::resolver(&live.config.network.nameservers) {
            Ok(resolver) => {
                self.task = Some(tokio::spawn(dns::watch(
                    resolver,
                    names,
                    live.resolved.clone(),
                    next,
                    self.sender.clone(),
                )));
            }
            Err(e) => error!("network.domain: {e}; domain rules are not enforced"),
        }
    }

    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Stamp of a file: modification time, size and inode (editors replace
/// files as often as they rewrite them).
type Stamp = (SystemTime, u64, u64);

/// The configuration file, watched for changes.
pub struct ConfigFile {
    path: PathBuf,
    seen: Option<Stamp>,
    last_check: Instant,
}

impl ConfigFile {
    /// How often the file is looked at.
    const INTERVAL: Duration = Duration::from_secs(1);

    /// The file `sources` names, or the default one.
    pub fn new(sources: &ConfigArgs) -> Self {
        let path = sources
            .config
            .clone()
            .unwrap_or_else(|| config::DEFAULT_CONFIG_PATH.into());
        let seen = stamp(&path);
        Self {
            path,
            seen,
            last_check: Instant::now(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is there now is taken as seen (a reload has just read it).
    pub fn mark_seen(&mut self) {
        self.seen = stamp(&self.path);
    }

    /// True once after each change; looks at most once a second.
    pub fn changed(&mut self) -> bool {
        if self.last_check.elapsed() < Self::INTERVAL {
            return false;
        }
        self.last_check = Instant::now();
        self.poll()
    }

    /// True once after each change, looking now.
    fn poll(&mut self) -> bool {
        let now = stamp(&self.path);
        if now.is_some() && now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Watches (inotify) the nearest existing directory above each file rule
/// path that does not exist, for the next name on the way to it
/// (`Identities::awaited`). When one appears, or a watched directory goes
/// away, the policy is compiled again: a rule path is entered by identity
/// as soon as it exists, not at the next reload, and a name made through
/// another mount of its directory no longer hides it. Names that lead to
/// no rule path are let by without a recompile.
pub struct RulePathWatch {
    inotify: Option<tokio::io::unix::AsyncFd<inotify::Inotify>>,
    awaited: std::collections::HashMap<
        inotify::WatchDescriptor,
        (PathBuf, std::collections::BTreeSet<std::ffi::OsString>),
    >,
    /// The policy the watches were set for.
    policy: Arc<Policy>,
}

impl RulePathWatch {
    pub fn start(policy: &Arc<Policy>) -> Self {
        use inotify::WatchMask;
        let mut watch = Self {
            inotify: None,
            awaited: Default::default(),
            policy: policy.clone(),
        };
        let awaited = &policy.files.identities.awaited;
        if awaited.is_empty() {
            return watch;
        }
        let inotify = match inotify::Inotify::init() {
            Ok(inotify) => inotify,
            Err(e) => {
                warn!(
                    "files: cannot watch for rule paths to appear ({e}); they are entered by \
                     identity at the next reload"
                );
                return watch;
            }
        };
        let mask = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        for (dir, names) in awaited {
            match inotify.watches().add(dir, mask) {
                Ok(wd) => {
                    watch.awaited.insert(wd, (dir.clone(), names.clone()));
                }
                Err(e) => warn!(
                    "files: cannot watch {} for rule paths to appear ({e}); they are entered by \
                     identity at the next reload",
                    dir.display()
                ),
            }
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return watch; // no reactor to wait on (a synchronous caller)
        }
        // SAFETY: `Inotify` owns its descriptor, keeps it open until it is
        // dropped and always returns that same one.
        match unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(inotify, tokio::io::Interest::READABLE)
        } {
            Ok(fd) => watch.inotify = Some(fd),
            Err(e) => warn!("files: cannot watch for rule paths to appear ({e})"),
        }
        watch
    }

    /// Whether the watches are those of `policy`.
    pub fn is_for(&self, policy: &Arc<Policy>) -> bool {
        Arc::ptr_eq(&self.policy, policy)
    }

    /// Waits until a name on the way to a rule path appears, or a watched
    /// directory goes away, and returns its path; never, with nothing
    /// watched. Cancel-safe: an event is acted on once it is read.
    pub async fn appeared(&mut self) -> PathBuf {
        let Self {
            inotify, awaited, ..
        } = self;
        let Some(fd) = inotify.as_mut() else {
            return std::future::pending().await;
        };
        let mut buffer = [0u8; 4096];
        loop {
            let Ok(mut ready) = fd.readable_mut().await else {
                return std::future::pending().await;
            };
            let events = match ready.try_io(|i| i.get_mut().read_events(&mut buffer)) {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    warn!("files: the watch for rule paths stopped: {e}");
                    return std::future::pending().await;
                }
                Err(_would_block) => continue,
            };
            for event in events {
                let Some((dir, names)) = awaited.get(&event.wd) else {
                    continue;
                };
                let gone = event
                    .mask
                    .intersects(inotify::EventMask::DELETE_SELF | inotify::EventMask::MOVE_SELF);
                match event.name {
                    Some(name) if names.contains(name) => return dir.join(name),
                    _ if gone => return dir.clone(),
                    _ => {}
                }
            }
        }
    }
}

/// Watches the agent's mount table (`/proc/self/mountinfo` signals a
/// change with `POLLPRI`). The file rules' identities give the root of
/// every filesystem mounted below a rule path that rule, and `mount.deny`
/// denies trees by identity too, both from the mounts there were when the
/// policy was compiled: a filesystem mounted later is entered when the
/// policy is compiled again, which a change of the mount table starts,
/// once the table has been quiet for [`MountWatch::QUIET`] (a container
/// start mounts a dozen things at once) and only if a mount that came or
/// went is where a rule speaks ([`Live::mount_matters`]): a busy container
/// host mounts all the time, and a large policy takes a while to compile.
pub struct MountWatch {
    mountinfo: Option<tokio::io::unix::AsyncFd<std::fs::File>>,
    /// The table as last seen.
    table: std::collections::BTreeSet<(PathBuf, bool)>,
}

impl MountWatch {
    /// How long the mount table must stay unchanged before the policy is
    /// compiled again.
    pub const QUIET: Duration = Duration::from_millis(250);

    pub fn start() -> Self {
        let unwatched = |e: &dyn std::fmt::Display| {
            warn!(
                "cannot watch the mount table ({e}); a filesystem mounted while the agent runs \
                 is entered by identity at the next reload"
            );
            Self {
                mountinfo: None,
                table: Default::default(),
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // No reactor to wait on (a synchronous caller).
            return Self {
                mountinfo: None,
                table: Default::default(),
            };
        }
        let file = match std::fs::File::open("/proc/self/mountinfo") {
            Ok(file) => file,
            Err(e) => return unwatched(&e),
        };
        // SAFETY: `File` owns its descriptor, keeps it open until it is
        // dropped and always returns that same one.
        match unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(file, tokio::io::Interest::PRIORITY)
        } {
            Ok(fd) => Self {
                mountinfo: Some(fd),
                table: crate::policy::identity::mount_table(),
            },
            Err(e) => unwatched(&e),
        }
    }

    /// Waits until the mount table has changed and then stayed quiet for
    /// [`Self::QUIET`], and returns the mount points that came or went;
    /// never, when unwatched. Cancel-safe: a change is forgotten only once
    /// this returns.
    pub async fn changed(&mut self) -> Vec<PathBuf> {
        let Some(fd) = self.mountinfo.as_mut() else {
            return std::future::pending().await;
        };
        let Ok(mut ready) = fd.ready_mut(tokio::io::Interest::PRIORITY).await else {
            return std::future::pending().await;
        };
        // Changes during the wait are part of this one: the compile that
        // follows reads the table after it.
        tokio::time::sleep(Self::QUIET).await;
        ready.clear_ready();
        let table = crate::policy::identity::mount_table();
        let moved = table
            .symmetric_difference(&self.table)
            .map(|(point, _)| point.clone())
            .collect();
        self.table = table;
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{agent::tests::FakeKernel, internal_events::Counter};

    fn load(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("safeguard.yaml");
        std::fs::write(&path, yaml).unwrap();
        config::load(&config::Sources {
            file: Some(path),
            overrides: Vec::new(),
            environment: false,
        })
        .unwrap()
    }

    struct Reloading {
        dir: tempfile::TempDir,
        sources: ConfigArgs,
        live: Live,
        kernel: FakeKernel,
        enricher: Enricher,
        observed: Observed,
        registry: Arc<Registry>,
    }

    impl Reloading {
        fn new(yaml: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("safeguard.yaml");
            std::fs::write(&path, yaml).unwrap();
            let config = load(yaml);
            let policy = Arc::new(Policy::compile(&config));
            let registry = Arc::new(Registry::default());
            Self {
                sources: ConfigArgs {
                    config: Some(path),
                    overrides: Vec::new(),
                    mode: None,
                },
                dir,
                enricher: Enricher::new(policy.clone(), registry.clone()),
                live: Live {
                    config,
                    policy,
                    resolved: dns::Resolved::new(),
                    learned: dns::Learned::default(),
                },
                kernel: FakeKernel::default(),
                observed: Observed::default(),
                registry,
            }
        }

        /// Writes `yaml` as the configuration file and reloads it.
        fn reload(&mut self, yaml: &str) -> bool {
            std::fs::write(self.dir.path().join("safeguard.yaml"), yaml).unwrap();
            reload(
                &self.sources,
                &mut self.live,
                &mut self.kernel,
                &self.enricher,
                &self.observed,
                &self.registry,
            )
        }

        fn denied(&self) -> Vec<String> {
            self.live
                .config
                .files
                .deny
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        }
    }

    const SECRET: &str = "files:\n  deny: [/srv/secret]\n";
    const OTHER: &str = "files:\n  deny: [/srv/other]\n";

    #[test]
    fn a_valid_configuration_is_put_in_force_in_the_kernel() {
        let mut r = Reloading::new(SECRET);
        let before = r.live.policy.clone();
        assert!(!r.reload(OTHER));
        assert_eq!(r.denied(), ["/srv/other"]);
        assert!(!Arc::ptr_eq(&before, &r.live.policy));
        assert_eq!(r.kernel.reloads, 1, "the kernel got the new policy");
        assert_eq!(r.registry.get(Counter::Reloads), 1);
        assert_eq!(r.registry.get(Counter::ReloadFailures), 0);
        let rules = r.observed.rules.lock().unwrap().clone();
        assert!(rules.contains(&(
            semconv::module::FILES,
            r.live.policy.files.rules.len() as u64
        )));
    }

    #[test]
    fn an_invalid_configuration_keeps_the_running_policy() {
        let mut r = Reloading::new(SECRET);
        let before = r.live.policy.clone();
        r.reload("files:\n  mode: enforce\n  deny: [/srv/other]\n");
        assert!(Arc::ptr_eq(&before, &r.live.policy));
        assert_eq!(r.denied(), ["/srv/secret"]);
        assert_eq!(r.kernel.reloads, 0, "nothing reached the kernel");
        assert_eq!(r.registry.get(Counter::ReloadFailures), 1);
        assert_eq!(r.registry.get(Counter::Reloads), 0);
    }

    #[test]
    fn a_policy_the_kernel_refuses_keeps_the_running_one() {
        let mut r = Reloading::new(SECRET);
        r.kernel.refuse = true;
        let before = r.live.policy.clone();
        r.reload(OTHER);
        assert!(Arc::ptr_eq(&before, &r.live.policy));
        assert_eq!(r.denied(), ["/srv/secret"]);
        assert_eq!(r.registry.get(Counter::ReloadFailures), 1);
    }

    #[test]
    fn a_policy_too_large_for_the_kernel_maps_keeps_the_running_one() {
        let mut r = Reloading::new(SECRET);
        let before = r.live.policy.clone();
        let limit = collector_common::maps::PATH_RULES_MAX;
        let deny: Vec<String> = (0..=limit).map(|i| format!("/srv/{i}")).collect();
        let files = "files:\n  allow: []\n  deny: ";
        r.reload(&format!("{files}[{}]\n", deny.join(", ")));
        assert!(Arc::ptr_eq(&before, &r.live.policy));
        assert_eq!(r.denied(), ["/srv/secret"]);
        assert_eq!(r.kernel.reloads, 0, "nothing reached the kernel");
        assert_eq!(r.registry.get(Counter::ReloadFailures), 1);
        // At the limit it goes in.
        r.reload(&format!("{files}[{}]\n", deny[1..].join(", ")));
        assert_eq!(r.kernel.reloads, 1);
        assert_eq!(r.live.policy.files.paths.len(), limit as usize);
    }

    #[test]
    fn changed_domain_names_restart_the_watch() {
        let network = "network:\n  enable: true\n  domain:\n    deny: ";
        let mut r = Reloading::new(&format!("{network}[]\n"));
        assert!(r.reload(&format!("{network}[example.com]\n")));
        // The same names again: nothing to start over.
        assert!(!r.reload(&format!("{SECRET}{network}[example.com]\n")));
        assert_eq!(r.registry.get(Counter::Reloads), 2);
    }

    /// A `dns_proxy` answer or new addresses of a domain rule put only the
    /// network rules in force again: the file rules' identities are kept
    /// as they were, not looked for again on every answer (a rule on a
    /// large tree would make each answer wait for a walk of it).
    #[test]
    fn new_addresses_compile_the_network_rules_alone() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        let yaml = format!(
            "files:\n  deny: [{}]\nnetwork:\n  enable: true\n  domain:\n    deny: [example.test]\n",
            secret.display()
        );
        let mut r = Reloading::new(&yaml);
        let identities = r.live.policy.files.identities.clone();
        assert!(!identities.is_empty());
        // Gone from the disk: a whole compile would no longer find it.
        std::fs::remove_file(&secret).unwrap();
        let addr: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        assert!(r.live.apply_learned(
            "example.test",
            &[addr],
            Duration::from_secs(60),
            &mut r.kernel,
            &r.enricher,
            &r.observed,
        ));
        assert_eq!(r.kernel.reloads, 1);
        assert!(r.live.policy.files.identities.same_entries(&identities));
        let v4 = r.live.policy.network.net.v4_entries();
        assert!(
            v4.iter()
                .any(|e| e.addr == [192, 0, 2, 7] && e.rule.deny_rule != 0),
            "{v4:?}"
        );
        // New answers of the domain rules likewise.
        let mut resolved = dns::Resolved::new();
        resolved.insert("example.test".into(), vec!["192.0.2.8".parse().unwrap()]);
        r.live
            .apply_resolved(resolved, &mut r.kernel, &r.enricher, &r.observed);
        assert_eq!(r.kernel.reloads, 2);
        assert!(r.live.policy.files.identities.same_entries(&identities));
        assert_eq!(
            r.live.resolved["example.test"],
            ["192.0.2.8".parse::<std::net::IpAddr>().unwrap()]
        );
        // A reload compiles everything: the file is gone.
        r.reload(&yaml);
        assert!(!r.live.policy.files.identities.same_entries(&identities));
    }

    #[test]
    fn keys_read_at_start_wait_for_a_restart() {
        let running = load(SECRET);
        assert!(restart_needed(&running, &load(OTHER)).is_empty());
        let new = load(
            "files:\n  deny: [/srv/secret]\nkernel:\n  tier: tracepoint\notel:\n  endpoint: http://other:4317\n",
        );
        assert_eq!(restart_needed(&running, &new), ["kernel.tier", "otel"]);
    }

    #[test]
    fn the_file_watch_sees_each_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("safeguard.yaml");
        std::fs::write(&path, SECRET).unwrap();
        let mut file = ConfigFile::new(&ConfigArgs {
            config: Some(path.clone()),
            overrides: Vec::new(),
            mode: None,
        });
        assert!(!file.poll(), "unchanged");
        // Replaced, as editors do: another inode.
        let next = dir.path().join("next.yaml");
        std::fs::write(&next, OTHER).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(file.poll());
        assert!(!file.poll(), "said once");
        std::fs::write(&path, "files:\n  deny: [/srv/a/longer/one]\n").unwrap();
        file.mark_seen();
        assert!(!file.poll(), "a reload already read it");
    }

    #[test]
    fn a_mount_matters_near_a_denied_path_only() {
        let live = |yaml: &str| {
            let config = load(yaml);
            let policy = Arc::new(Policy::compile(&config));
            Live {
                config,
                policy,
                resolved: dns::Resolved::new(),
                learned: dns::Learned::default(),
            }
        };
        // The default allows `/`; only the denial needs identities.
        let blacklist = live("files:\n  deny: [/srv/secret]\n");
        for point in ["/srv/secret", "/srv/secret/a", "/srv", "/"] {
            assert!(blacklist.mount_matters(Path::new(point)), "{point}");
        }
        for point in [
            "/var/lib/containers/storage/overlay/x/merged",
            "/srv/public",
        ] {
            assert!(!blacklist.mount_matters(Path::new(point)), "{point}");
        }
        // Under a whitelist an allowance is held by identity too.
        let whitelist = live("files:\n  policy: whitelist\n  allow: [/opt/app]\n  deny: []\n");
        assert!(whitelist.mount_matters(Path::new("/opt/app/data")));
        assert!(!whitelist.mount_matters(Path::new("/var/tmp")));
        // mount.deny, the root's ancestors included.
        let mount =
            live("files:\n  enable: false\nmount:\n  enable: true\n  deny: [/srv/sgm/secret]\n");
        assert!(mount.mount_matters(Path::new("/srv/sgm")));
        assert!(!mount.mount_matters(Path::new("/srv/other")));
    }
}
