//! safeguard: the agent's entry point.
//!
//! Data flows: kernel programs → `events::reader` (drain, decode) →
//! `events::enrich` → `output`. `config` → `policy` → `kernel` maps.

mod cli;
mod config;
mod events;
mod kernel;
mod output;
mod policy;
mod stats;

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::Parser as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    cli::{Cli, Command, ConfigArgs, RunArgs},
    config::{Config, Output},
    events::enrich::Enricher,
    kernel::{Coverage, Kernel, Row},
    output::EventWriter,
    policy::Policy,
    stats::Stats,
};

/// Exit status for a configuration error (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Capacity of the queue between the reader and the pipeline.
const QUEUE_CAPACITY: usize = 65_536;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Run(args) => run(args),
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
    match runtime.block_on(agent(config, output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
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

async fn agent(config: Config, output: Output) -> anyhow::Result<()> {
    let mut writer = EventWriter::open(&config.log, &output)?;
    for module in &config.unsupported_modules {
        warn!("{module} is enabled in the configuration, but this version does not enforce it yet");
    }
    let policy = Arc::new(Policy::compile(&config));
    let stats = Arc::new(Stats::default());
    // Everything the agent itself opens is opened before the policy is in
    // the kernel, so a strict policy cannot lock the agent out.
    let enricher = Enricher::new(policy.clone(), stats.clone());
    let mut kernel = Kernel::start(
        &policy,
        config.ring_buffer_bytes,
        config.tier,
        config.network.cgroup.as_deref(),
    )
    .context("cannot start the kernel programs")?;
    report_coverage(&kernel.rows);

    let (queue_tx, mut queue_rx) = mpsc::channel(QUEUE_CAPACITY);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(events::reader::run(
        kernel.take_events()?,
        queue_tx,
        stats.clone(),
        stop_rx,
    ));

    // Handlers first: a stop request that arrives right after READY must
    // still be a clean stop.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    info!(
        rules = policy.rule_count(),
        output = %match &output { Output::Stdout => "stdout".to_string(), Output::File(p) => p.display().to_string() },
        "safeguard ready"
    );
    notify_ready();

    loop {
        tokio::select! {
            event = queue_rx.recv() => match event {
                Some(event) => write(&enricher, &mut writer, &stats, event),
                None => break,
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    // Stop: detach the programs, let the reader drain what they wrote, then
    // empty the queue, so nothing the kernel reported is left unwritten.
    info!("stopping");
    kernel.detach();
    let _ = stop_tx.send(true);
    match reader.await {
        Ok(Err(e)) => warn!("ring buffer reader: {e}"),
        Err(e) => warn!("ring buffer reader: {e}"),
        Ok(Ok(())) => {}
    }
    while let Some(event) = queue_rx.recv().await {
        write(&enricher, &mut writer, &stats, event);
    }
    writer.flush()?;
    summarize(&kernel, &stats);
    Ok(())
}

fn write(enricher: &Enricher, writer: &mut EventWriter, stats: &Stats, event: events::Event) {
    let Some(record) = enricher.enrich(event) else {
        return;
    };
    match writer.write(&record) {
        Ok(true) => {
            Stats::add(&stats.written, 1);
        }
        Ok(false) => {}
        Err(e) => {
            let n = Stats::add(&stats.write_errors, 1);
            if n == 1 || n.is_power_of_two() {
                error!(failed = n, "cannot write event: {e}");
            }
        }
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

fn summarize(kernel: &Kernel, stats: &Stats) {
    let kernel_drops: u64 = match kernel.kernel_drops() {
        Ok(d) => d.iter().map(|(_, n)| n).sum(),
        Err(e) => {
            warn!("cannot read kernel drop counters: {e}");
            0
        }
    };
    info!(
        received = Stats::get(&stats.received),
        written = Stats::get(&stats.written),
        kernel_drops,
        queue_drops = Stats::get(&stats.queue_drops),
        decode_errors = Stats::get(&stats.decode_errors),
        unresolved_paths = Stats::get(&stats.unresolved_paths),
        write_errors = Stats::get(&stats.write_errors),
        "stopped"
    );
}

/// Tells systemd (Type=notify) or a test harness that enforcement is in place.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify readiness: {e}");
    }
}
