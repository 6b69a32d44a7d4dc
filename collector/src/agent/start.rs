//! Start-up, back to front: the local event log, the policy (with domain
//! rules resolved), the status socket and the OTLP export are in place
//! before the kernel programs, so that the first event has somewhere to
//! go and a strict policy cannot lock the agent out of its own files.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use super::{Agent, Options, QUEUE_CAPACITY, Signals, coverage, reload, rule_counts};
use crate::{
    config::{self, Config},
    dns, events,
    events::enrich::Enricher,
    internal_events::Registry,
    kernel::{self, Kernel},
    output::EventLog,
    policy::Policy,
    status,
    telemetry::{self, Pipeline, SharedLog, exporter::Exporter, metrics::Observed},
};

/// Starts every stage; the agent is enforcing when this returns.
pub async fn start(config: Config, options: &Options) -> anyhow::Result<Agent<Kernel>> {
    let recorder = options
        .record
        .as_deref()
        .map(events::recording::Recorder::create)
        .transpose()?;
    let local: SharedLog = Arc::new(Mutex::new(EventLog::open(&config.log, &options.output)?));
    // Domain rules are resolved before the policy goes in: they are in
    // force when the agent says it is ready.
    let (resolved, dns_next) = resolve_domains(&config).await;
    let policy = Policy::compile_with(&config, None, &resolved);
    // A policy the rule maps cannot hold would fail part way through
    // being written: refused before anything is started.
    policy.fits()?;
    let policy = Arc::new(policy);
    for (name, addrs) in &resolved {
        info!("network.domain: {name} → {addrs:?}");
    }
    let registry = Arc::new(Registry::default());
    let enricher = Enricher::new(policy.clone(), registry.clone());
    let status_server = status::Server::bind(&config.status_socket)?;
    // Before the programs: an address it cannot listen on stops the start
    // with nothing attached. Its answers wait for the run loop.
    let proxy = if config.dns_proxy.enable {
        let names = reload::domain_names(&config).into_iter().collect();
        Some(dns::proxy::Proxy::start(&config.dns_proxy, Arc::new(names), registry.clone()).await?)
    } else {
        None
    };
    let observed = Arc::new(Observed::default());
    let exporter = if config.otel.enable {
        Some(Exporter::start(&config, &registry, &local, &observed)?)
    } else {
        info!("OpenTelemetry export is off (otel.enable: false)");
        None
    };

    let mut kernel = start_kernel(&config, &policy, &observed)?;

    let event_log = local
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .location
        .clone();
    // A stop request waits here until the run loop takes it.
    let (stop_tx, stop_requests) = watch::channel(None);
    let status = tokio::spawn(status_server.serve(
        Arc::new(status_source(
            &config,
            &observed,
            &registry,
            event_log.clone(),
            exporter.as_ref(),
        )),
        stop_tx,
    ));

    let pipeline = pipeline(&config, options, exporter.as_ref(), local, &registry);

    let (queue_tx, queue) = mpsc::channel(QUEUE_CAPACITY);
    let (stop_reader, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(events::reader::run(
        kernel.take_events()?,
        queue_tx,
        registry.clone(),
        stop_rx,
        !kernel.pinned(),
        recorder,
    ));

    // Handlers before the agent says it is ready: a stop request that
    // arrives right after must still be a clean stop.
    let signals = Signals::install()?;
    info!(
        rules = policy.rule_count(),
        event_log = %event_log,
        otlp = %if config.otel.enable { config.otel.endpoint.as_str() } else { "off" },
        "safeguard ready"
    );
    let live = reload::Live {
        config,
        policy,
        resolved,
        learned: Default::default(),
    };
    let domains = reload::DomainWatch::start(&live, dns_next);
    let rule_paths = reload::RulePathWatch::start(&live.policy);
    Ok(Agent {
        kernel,
        reader,
        stop_reader,
        queue,
        enricher,
        pipeline,
        exporter,
        status,
        stop_requests,
        live,
        domains,
        proxy,
        rule_paths,
        mounts: reload::MountWatch::start(),
        observed,
        registry,
        signals,
    })
}

/// Loads and attaches the programs with `policy` in force, and says how
/// this kernel covers each row.
fn start_kernel(config: &Config, policy: &Policy, observed: &Observed) -> anyhow::Result<Kernel> {
    let kernel = Kernel::start(
        policy,
        config.ring_buffer_bytes,
        config.audit_rate_limit,
        config.tier,
        config.network.cgroup.as_deref(),
        kernel::Pinning {
            dir: &config.pin_dir,
            keep: config.pin,
        },
        config.protect,
    )
    .context("cannot start the kernel programs")?;
    coverage::report(&kernel.rows);
    *observed.rows.lock().unwrap_or_else(|e| e.into_inner()) = kernel
        .rows
        .iter()
        .map(|r| (r.name.to_string(), r.coverage.tier()))
        .collect();
    *observed.rules.lock().unwrap_or_else(|e| e.into_inner()) = rule_counts(policy);
    *observed
        .protection
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = kernel.protection.to_string();
    Ok(kernel)
}

/// The pipeline: to the spool when the export is on, to the local event
/// log always or only while the Collector is away.
fn pipeline(
    config: &Config,
    options: &Options,
    exporter: Option<&Exporter>,
    local: SharedLog,
    registry: &Arc<Registry>,
) -> Pipeline {
    Pipeline::new(
        telemetry::resource::to_proto(
            &exporter.map_or_else(telemetry::resource::resource, |e| e.resource.clone()),
        ),
        exporter.map(|e| e.pipeline_export(config)),
        local,
        options.local_always,
        config.log.level,
        exporter.map(|e| e.metrics.clone()),
        registry.clone(),
    )
}

/// What `safeguard status` answers from.
fn status_source(
    config: &Config,
    observed: &Arc<Observed>,
    registry: &Arc<Registry>,
    event_log: String,
    exporter: Option<&Exporter>,
) -> status::Source {
    status::Source {
        started: Instant::now(),
        observed: observed.clone(),
        registry: registry.clone(),
        event_log,
        export: exporter.map(|e| status::ExportSource {
            endpoint: config.otel.endpoint.clone(),
            protocol: match config.otel.protocol {
                config::OtlpProtocol::Grpc => "grpc".into(),
                config::OtlpProtocol::HttpProtobuf => "http/protobuf".into(),
            },
            state: e.state.clone(),
            spool: e.spool.clone(),
        }),
    }
}

/// The domain rules' addresses, looked up once, and when to look again.
async fn resolve_domains(config: &Config) -> (dns::Resolved, tokio::time::Instant) {
    let names = reload::domain_names(config);
    if names.is_empty() {
        return (dns::Resolved::new(), tokio::time::Instant::now());
    }
    match dns::resolver(&config.network.nameservers) {
        Ok(resolver) => dns::resolve_all(&resolver, &names, &dns::Resolved::new()).await,
        Err(e) => {
            error!("network.domain: {e}; domain rules are not enforced");
            (dns::Resolved::new(), tokio::time::Instant::now())
        }
    }
}
