//! The running agent: start-up, the run loop, reload and shutdown.
//!
//! [`run`] is `safeguard run` once the command line is read. It starts the
//! stages back to front ([`start`]): the outputs first, so that nothing the
//! kernel reports has nowhere to go, the kernel programs last. It then
//! serves ([`Agent::serve`]) until SIGINT, SIGTERM or a stop request on the
//! status socket (`safeguard stop`), reloading on SIGHUP,
//! on a changed configuration file and on changed domain answers
//! ([`reload`]), and stops the stages front to back ([`shutdown`]).

mod coverage;
mod reload;
mod shutdown;
mod start;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use collector_common::{DropReason, Hook};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::{
    cli::ConfigArgs,
    config::{Config, Output},
    dns,
    events::{self, enrich::Enricher},
    internal_events::Registry,
    internal_events::{IntegrityChecked, KernelDropsRead, KernelDropsUnreadable, StopRequested},
    kernel::{Kernel, KernelError, ReloadError},
    policy::Policy,
    status,
    telemetry::{Pipeline, exporter::Exporter, metrics::Observed},
};

pub use reload::RESTART_KEYS;

/// Capacity of the queue between the reader and the pipeline.
pub const QUEUE_CAPACITY: usize = 65_536;

/// How `safeguard run` was asked to run, beyond the configuration.
pub struct Options {
    /// Where the configuration came from: read again on every reload.
    pub sources: ConfigArgs,
    /// Where the local event log goes.
    pub output: Output,
    /// Every event goes to the local event log, not only while the
    /// Collector is away.
    pub local_always: bool,
    /// Also write every raw kernel record to this file (`--record`).
    pub record: Option<PathBuf>,
    /// Stop on its own after this long (`safeguard learn --duration`).
    pub stop_after: Option<Duration>,
}

/// Starts the agent, serves until a stop signal or request (or
/// `stop_after`), and stops it.
pub async fn run(config: Config, options: Options) -> anyhow::Result<()> {
    let mut agent = start::start(config, &options).await?;
    match options.stop_after {
        Some(after) => {
            tokio::select! {
                () = agent.serve(&options.sources) => {}
                () = tokio::time::sleep(after) => info!("{} passed: stopping", humantime::format_duration(after)),
            }
        }
        None => agent.serve(&options.sources).await,
    }
    shutdown::shutdown(agent).await;
    Ok(())
}

/// What the agent asks of the kernel programs once they run: the one seam
/// between the run loop and the kernel, so that reload and shutdown can be
/// tried without one.
pub trait Programs {
    /// Puts a new policy in force, or leaves the old one (see
    /// [`Kernel::reload`]).
    fn reload(&mut self, policy: &Arc<Policy>) -> Result<(), ReloadError>;
    /// Nothing new reaches the ring buffer after this (pinned programs
    /// stay; see [`Kernel::detach`]).
    fn detach(&mut self);
    /// Records lost in the kernel, per hook and reason.
    fn kernel_drops(&self) -> Result<Vec<(Hook, DropReason, u64)>, KernelError>;
    /// The self-check: what is no longer as the agent left it (see
    /// [`Kernel::integrity`]).
    fn integrity(&mut self) -> Vec<String>;
}

impl Programs for Kernel {
    fn reload(&mut self, policy: &Arc<Policy>) -> Result<(), ReloadError> {
        Kernel::reload(self, policy)
    }
    fn detach(&mut self) {
        Kernel::detach(self);
    }
    fn kernel_drops(&self) -> Result<Vec<(Hook, DropReason, u64)>, KernelError> {
        Kernel::kernel_drops(self)
    }
    fn integrity(&mut self) -> Vec<String> {
        Kernel::integrity(self)
    }
}

/// The agent's stages once started, in the order events flow through them.
pub struct Agent<K> {
    /// The kernel programs and their maps.
    kernel: K,
    /// Drains the ring buffer into `queue` until told to stop.
    reader: JoinHandle<std::io::Result<()>>,
    stop_reader: watch::Sender<bool>,
    queue: mpsc::Receiver<events::Event>,
    enricher: Enricher,
    pipeline: Pipeline,
    /// OTLP delivery and metrics; `None` with `otel.enable: false`.
    exporter: Option<Exporter>,
    /// Answers `safeguard status` and `safeguard stop`.
    status: JoinHandle<()>,
    /// Who asked over the status socket to stop, once someone has.
    stop_requests: watch::Receiver<Option<status::Peer>>,
    /// The configuration and policy in force, and the domain watch.
    live: reload::Live,
    domains: reload::DomainWatch,
    /// `dns_proxy`, when enabled.
    proxy: Option<dns::proxy::Proxy>,
    rule_paths: reload::RulePathWatch,
    mounts: reload::MountWatch,
    observed: Arc<Observed>,
    registry: Arc<Registry>,
    signals: Signals,
}

/// What `dns_proxy` hands the run loop next; never, without one.
async fn from_proxy(proxy: &mut Option<dns::proxy::Proxy>) -> Option<dns::proxy::FromProxy> {
    match proxy {
        Some(proxy) => proxy.next().await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM stop the agent, SIGHUP reloads it.
/// How often the agent checks that its programs, policy set, pins and
/// guard are as it left them.
const SELF_CHECK_EVERY: Duration = Duration::from_secs(10);

struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

impl<K: Programs> Agent<K> {
    /// Runs until SIGINT, SIGTERM or a stop request on the status socket
    /// (or until the reader ends): events through the pipeline, the
    /// pipeline's timer, reloads.
    pub async fn serve(&mut self, sources: &ConfigArgs) {
        let mut watched = reload::ConfigFile::new(sources);
        // The pipeline's timer: often while a batch is open or the local
        // log has unflushed records, once a second when there is nothing to
        // do (an idle agent should cost nothing).
        let batch_timeout = self.live.config.otel.batch_timeout_ms;
        let busy_tick = Duration::from_millis((batch_timeout / 2).clamp(10, 1000));
        let idle_tick = Duration::from_secs(1);
        let tick = tokio::time::sleep(busy_tick);
        tokio::pin!(tick);
        let mut last_drops_read = Instant::now();
        let mut last_self_check = Instant::now();
        self.self_check();
        notify_ready();

        loop {
            if !self.rule_paths.is_for(&self.live.policy) {
                self.rule_paths = reload::RulePathWatch::start(&self.live.policy);
            }
            tokio::select! {
                event = self.queue.recv() => match event {
                    Some(event) => {
                        let was_idle = self.pipeline.idle();
                        self.process(event);
                        if was_idle && !self.pipeline.idle() {
                            tick.as_mut().reset(tokio::time::Instant::now() + busy_tick);
                        }
                    }
                    None => break,
                },
                () = &mut tick => {
                    self.pipeline.tick();
                    let next = if self.pipeline.idle() { idle_tick } else { busy_tick };
                    tick.as_mut().reset(tokio::time::Instant::now() + next);
                    if last_drops_read.elapsed() >= Duration::from_secs(5) {
                        last_drops_read = Instant::now();
                        self.read_kernel_drops();
                    }
                    if last_self_check.elapsed() >= SELF_CHECK_EVERY {
                        last_self_check = Instant::now();
                        self.self_check();
                        self.live.expire_learned(&mut self.kernel, &self.enricher, &self.observed);
                    }
                    if watched.changed() {
                        info!("{} changed: reloading", watched.path().display());
                        self.reload(sources);
                    }
                }
                _ = self.signals.hangup.recv() => {
                    info!("SIGHUP: reloading the configuration");
                    // What is read now is what the watcher would reload.
                    watched.mark_seen();
                    self.reload(sources);
                }
                Some(from) = from_proxy(&mut self.proxy) => match from {
                    dns::proxy::FromProxy::Learned(learned) => {
                        let in_force = self.live.apply_learned(
                            &learned.name,
                            &learned.addrs,
                            learned.ttl,
                            &mut self.kernel,
                            &self.enricher,
                            &self.observed,
                        );
                        let _ = learned.done.send(in_force);
                    }
                    dns::proxy::FromProxy::Answer(answer) => {
                        let record = self.enricher.dns_answer(answer);
                        self.pipeline.push(record);
                    }
                },
                Some(resolved) = self.domains.updates.recv() => {
                    self.live.apply_resolved(resolved, &mut self.kernel, &self.enricher, &self.observed);
                }
                appeared = self.rule_paths.appeared() => {
                    let why = format!("files: {} appeared", appeared.display());
                    self.live.refresh_identities(&why, &mut self.kernel, &self.enricher, &self.observed);
                }
                moved = self.mounts.changed() => {
                    if let Some(point) = moved.iter().find(|p| self.live.mount_matters(p)) {
                        let why = format!("a mount at {} came or went", point.display());
                        self.live.refresh_identities(&why, &mut self.kernel, &self.enricher, &self.observed);
                    }
                }
                _ = self.signals.interrupt.recv() => break,
                _ = self.signals.terminate.recv() => break,
                Ok(()) = self.stop_requests.changed() => {
                    let by = *self.stop_requests.borrow_and_update();
                    if let Some(by) = by {
                        self.registry.emit(StopRequested { by: &by });
                        break;
                    }
                }
            }
        }
    }

    /// Reloads the configuration (see [`reload::reload`]), telling systemd
    /// (Type=notify-reload) when it starts and ends; restarts the domain
    /// watch if its names or servers changed.
    fn reload(&mut self, sources: &ConfigArgs) {
        notify_reloading();
        let names_changed = reload::reload(
            sources,
            &mut self.live,
            &mut self.kernel,
            &self.enricher,
            &self.observed,
            &self.registry,
        );
        if names_changed {
            self.domains
                .restart(&self.live, tokio::time::Instant::now());
            let names = reload::domain_names(&self.live.config);
            self.live.learned.keep_names(&names);
            if let Some(proxy) = &self.proxy {
                proxy.set_names(Arc::new(names.into_iter().collect()));
            }
        }
        notify_ready();
    }

    fn process(&mut self, event: events::Event) {
        if let Some(record) = self.enricher.enrich(event) {
            self.pipeline.push(record);
        }
    }

    /// Runs the self-check; says when its answer changes (a problem found,
    /// or gone), and keeps it for `status` and the metric.
    fn self_check(&mut self) {
        let problems = self.kernel.integrity();
        let mut kept = self
            .observed
            .integrity
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *kept != problems {
            self.registry.emit(IntegrityChecked {
                problems: &problems,
            });
            *kept = problems;
        }
    }

    fn read_kernel_drops(&self) {
        match self.kernel.kernel_drops() {
            Ok(drops) => self.registry.emit(KernelDropsRead { drops }),
            Err(e) => self.registry.emit(KernelDropsUnreadable { error: &e }),
        }
    }
}

/// Rules loaded per module, as the metrics and `status` show them.
fn rule_counts(policy: &Policy) -> Vec<(&'static str, u64)> {
    [
        (semconv::module::FILES, &policy.files),
        (semconv::module::PROCESS, &policy.process),
        (semconv::module::MOUNT, &policy.mount),
        (semconv::module::NETWORK, &policy.network),
    ]
    .into_iter()
    .map(|(name, m)| (name, m.rules.len() as u64))
    .collect()
}

/// Tells systemd (Type=notify) or a test harness that enforcement is in
/// place.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify readiness: {e}");
    }
}

/// Tells systemd (Type=notify-reload) that a reload has begun.
fn notify_reloading() {
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()
                .unwrap_or(sd_notify::NotifyState::MonotonicUsec(0)),
        ],
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use collector_common::{Decision, mount::MountOp};

    use super::*;
    use crate::{
        config,
        events::decode::{Event, Header, Mount, Process},
        output::EventLog,
        telemetry::SharedLog,
    };

    /// Kernel programs that remember what was asked of them.
    #[derive(Default)]
    pub struct FakeKernel {
        pub reloads: usize,
        /// Refuse every policy.
        pub refuse: bool,
        /// What happened, in order, shared with the other fakes.
        pub steps: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Programs for FakeKernel {
        fn reload(&mut self, _: &Arc<Policy>) -> Result<(), ReloadError> {
            if self.refuse {
                return Err(ReloadError::ModuleSwitched("files"));
            }
            self.reloads += 1;
            Ok(())
        }
        fn detach(&mut self) {
            self.steps.lock().unwrap().push("detach");
        }
        fn kernel_drops(&self) -> Result<Vec<(Hook, DropReason, u64)>, KernelError> {
            Ok(Vec::new())
        }
        fn integrity(&mut self) -> Vec<String> {
            Vec::new()
        }
    }

    fn mount_event(target: &str) -> Event {
        Event::Mount(Mount {
            header: Header {
                seq: 1,
                boot_ns: 0,
                hook: Hook::LsmSbMount,
                decision: Decision::Blocked,
                mode: collector_common::MODE_BLOCK,
                rule_id: 0,
            },
            process: Process {
                tid: std::process::id(),
                pid: std::process::id(),
                ppid: 1,
                uid: 0,
                gid: 0,
                euid: 0,
                cgroup_id: 0,
                comm: "mount".into(),
            },
            op: MountOp::Mount,
            flags: 0,
            fstype: "tmpfs".into(),
            source: "none".into(),
            target: target.into(),
        })
    }

    /// An agent around `kernel` with `queued` waiting in its queue, whose
    /// reader, once told to stop, reports `at_stop` (as the ring buffer's
    /// last drain would) and ends; events go only to the local event log
    /// at `log`.
    fn agent(
        kernel: FakeKernel,
        log: &std::path::Path,
        queued: Event,
        at_stop: Event,
    ) -> Agent<FakeKernel> {
        let config = config::load(&config::Sources {
            file: None,
            overrides: Vec::new(),
            environment: false,
        })
        .unwrap();
        let policy = Arc::new(Policy::compile(&config));
        let registry = Arc::new(Registry::default());
        let local: SharedLog = Arc::new(Mutex::new(
            EventLog::open(&config.log, &Output::File(log.into())).unwrap(),
        ));
        let (queue_tx, queue) = mpsc::channel(QUEUE_CAPACITY);
        queue_tx.try_send(queued).unwrap();
        let (stop_reader, mut stop) = watch::channel(false);
        let steps = kernel.steps.clone();
        let reader = tokio::spawn(async move {
            let _ = stop.changed().await;
            steps.lock().unwrap().push("drain");
            queue_tx.try_send(at_stop).unwrap();
            Ok(())
        });
        let live = reload::Live {
            config: config.clone(),
            policy: policy.clone(),
            resolved: Default::default(),
            learned: Default::default(),
        };
        Agent {
            kernel,
            reader,
            stop_reader,
            queue,
            enricher: Enricher::new(policy, registry.clone()),
            pipeline: Pipeline::new(
                crate::telemetry::resource::to_proto(&crate::telemetry::resource::resource()),
                None,
                local,
                true,
                config.log.level,
                None,
                registry.clone(),
            ),
            exporter: None,
            status: tokio::spawn(std::future::pending()),
            stop_requests: watch::channel(None).1,
            domains: reload::DomainWatch::start(&live, tokio::time::Instant::now()),
            proxy: None,
            rule_paths: reload::RulePathWatch::start(&live.policy),
            mounts: reload::MountWatch::start(),
            live,
            observed: Arc::default(),
            registry,
            signals: Signals::install().unwrap(),
        }
    }

    /// `safeguard stop` ends the run loop as SIGTERM does; the shutdown
    /// that follows is the same.
    #[tokio::test]
    async fn a_stop_request_on_the_status_socket_ends_the_run_loop() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let mut agent = agent(
            FakeKernel::default(),
            &log,
            mount_event("/mnt/queued-before-stop"),
            mount_event("/mnt/drained-at-stop"),
        );
        let (stop, stop_requests) = watch::channel(None);
        agent.stop_requests = stop_requests;
        stop.send_replace(Some(status::Peer {
            pid: Some(4242),
            uid: 0,
        }));
        let sources = ConfigArgs {
            config: Some(dir.path().join("none.yaml")),
            overrides: Vec::new(),
            mode: None,
        };
        tokio::time::timeout(Duration::from_secs(10), agent.serve(&sources))
            .await
            .expect("the run loop ends on a stop request");
        shutdown::shutdown(agent).await;
        let written = std::fs::read_to_string(&log).unwrap();
        for target in ["/mnt/queued-before-stop", "/mnt/drained-at-stop"] {
            assert!(
                written.contains(target),
                "{target} missing from:\n{written}"
            );
        }
    }

    #[tokio::test]
    async fn shutdown_detaches_first_and_writes_everything_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let kernel = FakeKernel::default();
        let steps = kernel.steps.clone();
        let agent = agent(
            kernel,
            &log,
            mount_event("/mnt/queued-before-stop"),
            mount_event("/mnt/drained-at-stop"),
        );

        shutdown::shutdown(agent).await;

        assert_eq!(
            *steps.lock().unwrap(),
            ["detach", "drain"],
            "the programs are detached before the ring buffer's last drain"
        );
        let written = std::fs::read_to_string(&log).unwrap();
        for target in ["/mnt/queued-before-stop", "/mnt/drained-at-stop"] {
            assert!(
                written.contains(target),
                "{target} missing from:\n{written}"
            );
        }
    }
}
