//! safeguard: the agent's entry point.
//!
//! Data flows: kernel programs → `events::reader` (drain, decode) →
//! `events::enrich` → `telemetry` (OTLP logs, spans, metrics; spool;
//! delivery) and `output` (the local event log). `config` → `policy` →
//! `kernel` maps.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use safeguard::{
    cli::{Cli, Command, ConfigArgs, RunArgs, StatusArgs, UnpinArgs},
    config,
    config::{Config, Output},
    dns, error_chain, events,
    events::enrich::Enricher,
    internal_events::{
        AgentStopped, KernelDropsRead, KernelDropsUnreadable, Registry, ReloadApplied,
        ReloadRejected, SpoolBatchDamaged,
    },
    kernel,
    kernel::{Coverage, Kernel, Row},
    output::EventLog,
    policy::Policy,
    status, telemetry,
    telemetry::{
        ExportState, Pipeline, SharedLog,
        export::Transport,
        metrics::{Metrics, Observed},
        spool::Spool,
    },
};

fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, EventLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exit status for a configuration error (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Capacity of the queue between the reader and the pipeline.
const QUEUE_CAPACITY: usize = 65_536;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Run(args) => run(args),
        Command::Status(args) => status(&args),
        Command::Unpin(args) => unpin(&args),
    }
}

fn unpin(args: &UnpinArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.force && status::query(&config.status_socket).is_ok() {
        eprintln!(
            "safeguard: an agent is running (it answers on {}); stop it first, or use --force",
            config.status_socket.display()
        );
        return ExitCode::FAILURE;
    }
    let pins = kernel::PinDir::new(&config.pin_dir);
    if !pins.exists() {
        println!("nothing is pinned under {}", config.pin_dir.display());
        return ExitCode::SUCCESS;
    }
    match pins.remove_all() {
        Ok(links) => {
            println!(
                "removed {links} program links and the maps pinned under {}",
                config.pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safeguard: cannot unpin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match status::query(&config.status_socket) {
        Ok(snapshot) => {
            if args.json {
                match serde_json::to_string_pretty(&snapshot) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("safeguard: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", status::render(&snapshot));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safeguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &ConfigArgs) -> Result<Config, ExitCode> {
    let sources = config::Sources {
        file: args.config.clone(),
        overrides: args.overrides(),
        environment: true,
    };
    config::load(&sources).map_err(|errors| {
        for e in &errors {
            eprintln!("safeguard: configuration error: {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(args: &ConfigArgs) -> ExitCode {
    match load_config(args) {
        Ok(config) => {
            println!("configuration is valid");
            let policy = Policy::compile(&config);
            for (name, settings, module) in [
                ("files", &config.files.settings, &policy.files),
                ("process", &config.process.settings, &policy.process),
                ("mount", &config.mount.settings, &policy.mount),
                ("network", &config.network.settings, &policy.network),
            ] {
                if settings.enable {
                    println!(
                        "  {name}: {} mode, {} policy, {} rules",
                        match settings.mode {
                            config::Mode::Monitor => semconv::mode::MONITOR,
                            config::Mode::Block => semconv::mode::BLOCK,
                        },
                        match settings.policy {
                            config::Policy::Blacklist => "blacklist",
                            config::Policy::Whitelist => "whitelist",
                        },
                        module.rules.len()
                    );
                } else {
                    println!("  {name}: disabled");
                }
            }
            for module in &config.unsupported_modules {
                println!("note: {module} is enabled, but this version does not enforce it yet");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let output = match args.output.as_deref() {
        None => config.log.output.clone(),
        Some("-" | "stdout") => Output::Stdout,
        Some(path) if path.starts_with('/') => Output::File(path.into()),
        Some(other) => {
            eprintln!(
                "safeguard: configuration error: --output: {other:?} is not valid: - (stdout) or an absolute file path"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_diagnostics(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("safeguard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // An explicit --output means every event goes there.
    let local_always = args.output.is_some() || config.log.mode == config::LocalLog::Always;
    match runtime.block_on(agent(
        config,
        args.config.clone(),
        output,
        local_always,
        args.record.as_deref(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Agent diagnostics go to stderr; RUST_LOG overrides log.level.
fn init_diagnostics(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let level = match config.log.level {
        config::LogLevel::Debug => "debug",
        config::LogLevel::Info => "info",
        config::LogLevel::Warning => "warn",
        config::LogLevel::Error | config::LogLevel::Critical => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn agent(
    config: Config,
    sources: ConfigArgs,
    output: Output,
    local_always: bool,
    record: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let recorder = record
        .map(events::recording::Recorder::create)
        .transpose()?;
    let local: SharedLog = Arc::new(Mutex::new(EventLog::open(&config.log, &output)?));
    for module in &config.unsupported_modules {
        warn!("{module} is enabled in the configuration, but this version does not enforce it yet");
    }
    // Domain rules are resolved before the policy goes in: they are in force
    // when the agent says it is ready.
    let (resolved, dns_next) = match domain_names(&config) {
        names if names.is_empty() => (dns::Resolved::new(), tokio::time::Instant::now()),
        names => match dns::resolver(&config.network.nameservers) {
            Ok(resolver) => dns::resolve_all(&resolver, &names, &dns::Resolved::new()).await,
            Err(e) => {
                error!("network.domain: {e}; domain rules are not enforced");
                (dns::Resolved::new(), tokio::time::Instant::now())
            }
        },
    };
    let policy = Arc::new(Policy::compile_with(&config, None, &resolved));
    for (name, addrs) in &resolved {
        info!("network.domain: {name} → {addrs:?}");
    }
    let registry = Arc::new(Registry::default());
    // Everything the agent itself opens is opened before the policy is in
    // the kernel, so a strict policy cannot lock the agent out.
    let enricher = Enricher::new(policy.clone(), registry.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let status_server = status::Server::bind(&config.status_socket)?;
    let observed = Arc::new(Observed::default());
    let otel = if config.otel.enable {
        Some(start_export(&config, &registry, &local, &observed)?)
    } else {
        info!("OpenTelemetry export is off (otel.enable: false)");
        None
    };
    let mut kernel = Kernel::start(
        &policy,
        config.ring_buffer_bytes,
        config.audit_rate_limit,
        config.tier,
        config.network.cgroup.as_deref(),
        kernel::Pinning {
            dir: &config.pin_dir,
            keep: config.pin,
        },
    )
    .context("cannot start the kernel programs")?;
    report_coverage(&kernel.rows);
    *observed.rows.lock().unwrap_or_else(|e| e.into_inner()) = kernel
        .rows
        .iter()
        .map(|r| (r.name.to_string(), r.coverage.tier()))
        .collect();
    *observed.rules.lock().unwrap_or_else(|e| e.into_inner()) = rule_counts(&policy);
    let status_task = tokio::spawn(status_server.serve(Arc::new(status::Source {
        started: Instant::now(),
        observed: observed.clone(),
        registry: registry.clone(),
        event_log: lock(&local).location.clone(),
        export: otel.as_ref().map(|o| status::ExportSource {
            endpoint: config.otel.endpoint.clone(),
            protocol: match config.otel.protocol {
                config::OtlpProtocol::Grpc => "grpc".into(),
                config::OtlpProtocol::HttpProtobuf => "http/protobuf".into(),
            },
            state: o.state.clone(),
            spool: o.spool.clone(),
        }),
    })));

    let mut pipeline = Pipeline::new(
        telemetry::resource::to_proto(
            &otel
                .as_ref()
                .map_or_else(telemetry::resource::resource, |o| o.resource.clone()),
        ),
        otel.as_ref().map(|o| telemetry::Export {
            spool: o.spool.clone(),
            state: o.state.clone(),
            batch_size: config.otel.batch_size,
            batch_timeout: Duration::from_millis(config.otel.batch_timeout_ms),
        }),
        local.clone(),
        local_always,
        config.log.level,
        otel.as_ref().map(|o| o.metrics.clone()),
        registry.clone(),
    );

    let (queue_tx, mut queue_rx) = mpsc::channel(QUEUE_CAPACITY);
    let reader = tokio::spawn(events::reader::run(
        kernel.take_events()?,
        queue_tx,
        registry.clone(),
        stop_rx,
        !kernel.pinned(),
        recorder,
    ));

    // Handlers first: a stop request that arrives right after READY must
    // still be a clean stop.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut watched = ConfigFile::new(&sources);
    // The pipeline's timer: often while a batch is open or the local log
    // has unflushed records, once a second when there is nothing to do (an
    // idle agent should cost nothing).
    let busy_tick = Duration::from_millis((config.otel.batch_timeout_ms / 2).clamp(10, 1000));
    let idle_tick = Duration::from_secs(1);
    let tick = tokio::time::sleep(busy_tick);
    tokio::pin!(tick);
    let mut last_drops_read = Instant::now();
    info!(
        rules = policy.rule_count(),
        event_log = %lock(&local).location,
        otlp = %if config.otel.enable { config.otel.endpoint.as_str() } else { "off" },
        "safeguard ready"
    );
    let (dns_tx, mut dns_rx) = mpsc::channel(4);
    let mut dns_task = watch_domains(&config, resolved.clone(), dns_next, &dns_tx);
    let mut live = Live {
        config: config.clone(),
        policy: policy.clone(),
        resolved,
    };
    notify_ready();

    loop {
        tokio::select! {
            event = queue_rx.recv() => match event {
                Some(event) => {
                    let was_idle = pipeline.idle();
                    process(&enricher, &mut pipeline, event);
                    if was_idle && !pipeline.idle() {
                        tick.as_mut().reset(tokio::time::Instant::now() + busy_tick);
                    }
                }
                None => break,
            },
            () = &mut tick => {
                pipeline.tick();
                let next = if pipeline.idle() { idle_tick } else { busy_tick };
                tick.as_mut().reset(tokio::time::Instant::now() + next);
                if last_drops_read.elapsed() >= Duration::from_secs(5) {
                    last_drops_read = Instant::now();
                    read_kernel_drops(&kernel, &registry);
                }
                if watched.changed() {
                    info!("{} changed: reloading", watched.path.display());
                    if reload(&sources, &mut live, &mut kernel, &enricher, &observed, &registry) {
                        dns_task.take().inspect(tokio::task::JoinHandle::abort);
                        dns_task = watch_domains(&live.config, live.resolved.clone(), tokio::time::Instant::now(), &dns_tx);
                    }
                }
            }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the configuration");
                // What is read now is what the watcher would reload.
                watched.seen = watched.stamp();
                if reload(&sources, &mut live, &mut kernel, &enricher, &observed, &registry) {
                    dns_task.take().inspect(tokio::task::JoinHandle::abort);
                    dns_task = watch_domains(&live.config, live.resolved.clone(), tokio::time::Instant::now(), &dns_tx);
                }
            }
            Some(resolved) = dns_rx.recv() => {
                let config = live.config.clone();
                let changes: Vec<String> = resolved
                    .iter()
                    .filter(|(name, addrs)| live.resolved.get(*name) != Some(*addrs))
                    .map(|(name, addrs)| format!("{name} → {addrs:?}"))
                    .collect();
                match live.apply(config, resolved, &mut kernel, &enricher, &observed) {
                    Ok(()) => info!("network.domain: addresses changed, in force: {}", changes.join(", ")),
                    Err(e) => error!("network.domain: the new addresses cannot be put in force: {e}"),
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    // Stop: detach the programs, let the reader drain what they wrote, then
    // empty the queue, so nothing the kernel reported is left unwritten;
    // then give the spool its chance to reach the Collector.
    info!("stopping");
    kernel.detach();
    let _ = stop_tx.send(true);
    match reader.await {
        Ok(Err(e)) => warn!("ring buffer reader: {e}"),
        Err(e) => warn!("ring buffer reader: {e}"),
        Ok(Ok(())) => {}
    }
    while let Some(event) = queue_rx.recv().await {
        process(&enricher, &mut pipeline, event);
    }
    pipeline.finish();
    read_kernel_drops(&kernel, &registry);
    if let Some(otel) = otel {
        // Everything is in the spool now: delivery may stop once it is
        // empty.
        let _ = otel.stop_delivery.send(true);
        if let Err(e) = otel.deliver.await {
            warn!("delivery: {e}");
        }
        // The final metrics export, bounded: the Collector may be away.
        let metrics = otel.metrics.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || metrics.shutdown()),
        )
        .await;
        otel.forwarder.abort();
    }
    if let Some(task) = dns_task {
        task.abort();
    }
    // The socket goes with the server.
    status_task.abort();
    let _ = status_task.await;
    read_kernel_drops(&kernel, &registry);
    registry.emit(AgentStopped);
    Ok(())
}

/// The running export: spool, delivery task and metrics.
struct Otel {
    resource: opentelemetry_sdk::Resource,
    spool: Arc<Spool>,
    state: Arc<ExportState>,
    metrics: Arc<Metrics>,
    deliver: tokio::task::JoinHandle<()>,
    stop_delivery: watch::Sender<bool>,
    forwarder: tokio::task::JoinHandle<()>,
}

fn start_export(
    config: &Config,
    registry: &Arc<Registry>,
    local: &SharedLog,
    observed: &Arc<Observed>,
) -> anyhow::Result<Otel> {
    let otel = &config.otel;
    let spool = Arc::new(Spool::open(&otel.spool_dir, otel.spool_max_bytes)?);
    for d in spool.damaged() {
        registry.emit(SpoolBatchDamaged {
            signal: d.signal,
            records: d.records,
            error: &d.error,
            path: &d.path,
            in_local_log: d.local,
        });
    }
    let usage = spool.usage();
    if usage.batches > 0 {
        info!(
            batches = usage.batches,
            records = usage.records,
            "found undelivered batches in {}: they are sent first",
            otel.spool_dir.display()
        );
    }
    let transport = Arc::new(Transport::new(otel)?);
    let resource = telemetry::resource::resource();
    let (exports_tx, exports_rx) = mpsc::channel(4);
    let forwarder = tokio::spawn(telemetry::forward_metrics(
        transport.clone(),
        exports_rx,
        registry.clone(),
    ));
    let metrics = Arc::new(Metrics::new(
        resource.clone(),
        None,
        exports_tx,
        registry.clone(),
        Some(spool.clone()),
        observed.clone(),
    ));
    let state = Arc::new(ExportState::default());
    let (stop_delivery, stop) = watch::channel(false);
    let deliver = tokio::spawn(telemetry::deliver(
        transport,
        spool.clone(),
        state.clone(),
        local.clone(),
        metrics.clone(),
        registry.clone(),
        stop,
    ));
    Ok(Otel {
        resource,
        spool,
        state,
        metrics,
        deliver,
        stop_delivery,
        forwarder,
    })
}

/// The configuration file, watched for changes (by its modification time,
/// size and inode: editors replace files as often as they rewrite them).
struct ConfigFile {
    path: std::path::PathBuf,
    seen: Option<(std::time::SystemTime, u64, u64)>,
    last_check: Instant,
}

impl ConfigFile {
    fn new(sources: &ConfigArgs) -> Self {
        let path = sources
            .config
            .clone()
            .unwrap_or_else(|| config::DEFAULT_CONFIG_PATH.into());
        let mut file = Self {
            path,
            seen: None,
            last_check: Instant::now(),
        };
        file.seen = file.stamp();
        file
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, u64, u64)> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// True once after each change; looks at most once a second.
    fn changed(&mut self) -> bool {
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return false;
        }
        self.last_check = Instant::now();
        let now = self.stamp();
        if now.is_some() && now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

/// What is in force: the configuration, its compiled policy, and the
/// addresses its domain rules resolved to.
struct Live {
    config: Config,
    policy: Arc<Policy>,
    resolved: dns::Resolved,
}

impl Live {
    /// Compiles `config` with `resolved` and puts it in force in the kernel
    /// and the enricher; on failure nothing changes.
    fn apply(
        &mut self,
        config: Config,
        resolved: dns::Resolved,
        kernel: &mut Kernel,
        enricher: &Enricher,
        observed: &Observed,
    ) -> Result<(), String> {
        let next = Policy::compile_with(&config, Some(&self.policy), &resolved);
        kernel.reload(&next).map_err(|e| e.to_string())?;
        let next = Arc::new(next);
        enricher.set_policy(next.clone());
        *observed.rules.lock().unwrap_or_else(|e| e.into_inner()) = rule_counts(&next);
        self.policy = next;
        self.config = config;
        self.resolved = resolved;
        Ok(())
    }
}

/// Loads the configuration again and puts its policy in force, or, if it
/// is not valid or cannot be put in force, says why and keeps the running
/// one. Tells systemd (Type=notify-reload) when it starts and ends. True
/// when the domain rules' names or servers changed.
fn reload(
    sources: &ConfigArgs,
    live: &mut Live,
    kernel: &mut Kernel,
    enricher: &Enricher,
    observed: &Observed,
    registry: &Registry,
) -> bool {
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()
                .unwrap_or(sd_notify::NotifyState::MonotonicUsec(0)),
        ],
    );
    let loaded = config::load(&config::Sources {
        file: sources.config.clone(),
        overrides: sources.overrides(),
        environment: true,
    });
    let mut names_changed = false;
    let outcome = match loaded {
        Err(errors) => Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")),
        Ok(new) => {
            let running = &live.config;
            for (key, same) in [
                (
                    "kernel.ring_buffer_bytes",
                    new.ring_buffer_bytes == running.ring_buffer_bytes,
                ),
                (
                    "kernel.audit_rate_limit",
                    new.audit_rate_limit == running.audit_rate_limit,
                ),
                ("kernel.tier", new.tier == running.tier),
                ("kernel.pin", new.pin == running.pin),
                ("kernel.pin_dir", new.pin_dir == running.pin_dir),
                (
                    "network.cgroup",
                    new.network.cgroup == running.network.cgroup,
                ),
                ("log", new.log == running.log),
                ("otel", new.otel == running.otel),
                ("status.socket", new.status_socket == running.status_socket),
            ] {
                if !same {
                    warn!("{key} changed: that takes effect at the next restart");
                }
            }
            names_changed = domain_names(&new) != domain_names(running)
                || new.network.nameservers != running.network.nameservers;
            let resolved = live.resolved.clone();
            live.apply(new, resolved, kernel, enricher, observed)
        }
    };
    match outcome {
        Ok(()) => registry.emit(ReloadApplied {
            rules: live.policy.rule_count(),
        }),
        Err(why) => {
            names_changed = false;
            registry.emit(ReloadRejected { why: &why });
        }
    }
    notify_ready();
    names_changed
}

/// The names the domain rules resolve, if the network module is on.
fn domain_names(config: &Config) -> Vec<String> {
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

/// Starts keeping the domain rules' names resolved (nothing to do without
/// names): the task sends every change to `updates`.
fn watch_domains(
    config: &Config,
    current: dns::Resolved,
    next: tokio::time::Instant,
    updates: &mpsc::Sender<dns::Resolved>,
) -> Option<tokio::task::JoinHandle<()>> {
    let names = domain_names(config);
    if names.is_empty() {
        return None;
    }
    match dns::resolver(&config.network.nameservers) {
        Ok(resolver) => Some(tokio::spawn(dns::watch(
            resolver,
            names,
            current,
            next,
            updates.clone(),
        ))),
        Err(e) => {
            error!("network.domain: {e}; domain rules are not enforced");
            None
        }
    }
}

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

fn read_kernel_drops(kernel: &Kernel, registry: &Registry) {
    match kernel.kernel_drops() {
        Ok(drops) => registry.emit(KernelDropsRead { drops }),
        Err(e) => registry.emit(KernelDropsUnreadable { error: &e }),
    }
}

fn process(enricher: &Enricher, pipeline: &mut Pipeline, event: events::Event) {
    if let Some(record) = enricher.enrich(event) {
        pipeline.push(record);
    }
}

/// One line per row of the policy: how this kernel covers it. The reason
/// BPF-LSM is unavailable is said once.
fn report_coverage(rows: &[Row]) {
    let mut said = Vec::new();
    for row in rows {
        match &row.coverage {
            Coverage::Enforced { hooks } => {
                info!(tier = row.coverage.tier(), hooks = %hooks.join(","), "{}: enforced by BPF-LSM", row.name);
            }
            Coverage::AuditOnly { hooks, reason } => {
                if !said.contains(&reason) && row.name != "process.lifecycle" {
                    warn!("BPF-LSM unavailable: {reason}");
                    said.push(reason);
                }
                warn!(
                    tier = row.coverage.tier(),
                    hooks = %hooks.join(","),
                    "{}: audit only (fallback to tracepoints): reported, not blocked",
                    row.name
                );
            }
            Coverage::Unavailable { reason } => {
                if !said.contains(&reason) {
                    warn!("BPF-LSM unavailable: {reason}");
                    said.push(reason);
                }
                warn!(
                    tier = row.coverage.tier(),
                    "{}: unavailable on this kernel", row.name
                );
            }
            Coverage::Disabled => {}
        }
    }
}

/// Tells systemd (Type=notify) or a test harness that enforcement is in place.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify readiness: {e}");
    }
}
