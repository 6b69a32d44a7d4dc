//! The agent's metrics, through the OpenTelemetry metrics API with one
//! Resource shared with logs and traces. Names, units and descriptions come
//! from `semconv::metric`. The SDK's periodic reader collects them; a small
//! exporter of our own encodes each collection as an OTLP request and hands
//! it to the same transport the logs use, so metrics get the same endpoint,
//! protocol, compression, TLS and headers. Metrics are not spooled: they are
//! cumulative, so the next export after an outage carries the totals.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, MeterProvider as _},
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
};
use prost::Message as _;
use semconv::{attr, metric};
use tokio::sync::{mpsc, oneshot};

use super::spool::Spool;
use crate::stats::Stats;

/// An encoded metrics request and where to say how it went.
pub type MetricsExport = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Values read when metrics are collected, kept up to date by the agent.
#[derive(Default)]
pub struct Observed {
    /// Ring-buffer reserve failures per hook (read from the kernel).
    /// Per hook and reason (`semconv::drop_reason`).
    pub kernel_drops: Mutex<Vec<(String, &'static str, u64)>>,
    /// Rules loaded per module.
    pub rules: Mutex<Vec<(&'static str, u64)>>,
    /// Each policy row and its tier on this kernel.
    pub rows: Mutex<Vec<(String, &'static str)>>,
}

/// The agent's OpenTelemetry meter: one per agent while export is on,
/// created at start and shut down (one last export) at stop. Owns the
/// SDK's meter provider and periodic reader; shared (`Arc`) by the
/// pipeline and delivery, which count on it. Every instrument carries its
/// `semconv::metric` name, unit and description; nothing is spooled (sums
/// are cumulative, so the next export after an outage carries the totals).
pub struct Metrics {
    provider: SdkMeterProvider,
    events: Counter<u64>,
    blocked: Counter<u64>,
    fallback_records: Counter<u64>,
    export_failures: Counter<u64>,
    latency: Histogram<f64>,
}

impl Metrics {
    /// Metrics exported through `exports` (see [`MetricsExport`]).
    pub fn new(
        resource: Resource,
        interval: Option<Duration>,
        exports: mpsc::Sender<MetricsExport>,
        stats: Arc<Stats>,
        spool: Option<Arc<Spool>>,
        observed: Arc<Observed>,
    ) -> Self {
        let mut reader = PeriodicReader::builder(Bridge { exports });
        if let Some(interval) = interval {
            reader = reader.with_interval(interval);
        }
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader.build())
            .build();
        let meter = provider.meter("safeguard");
        register_observed(&meter, stats, spool, observed);
        let counter = |m: &metric::Metric| {
            meter
                .u64_counter(m.name)
                .with_unit(m.unit)
                .with_description(m.description)
                .build()
        };
        Self {
            events: counter(&metric::EVENTS),
            blocked: counter(&metric::BLOCKED_OPERATIONS),
            fallback_records: counter(&metric::FALLBACK_RECORDS),
            export_failures: counter(&metric::EXPORT_FAILURES),
            latency: meter
                .f64_histogram(metric::PIPELINE_LATENCY.name)
                .with_unit(metric::PIPELINE_LATENCY.unit)
                .with_description(metric::PIPELINE_LATENCY.description)
                .with_boundaries(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0,
                ])
                .build(),
            provider,
        }
    }

    pub fn event(&self, module: &'static str, hook: &'static str, decision: &'static str) {
        self.events.add(
            1,
            &[
                KeyValue::new(attr::MODULE, module),
                KeyValue::new(attr::HOOK, hook),
                KeyValue::new(attr::DECISION, decision),
            ],
        );
    }

    pub fn blocked(&self, module: &'static str, rule: &str, ruleset: &str, decision: &'static str) {
        self.blocked.add(
            1,
            &[
                KeyValue::new(attr::MODULE, module),
                KeyValue::new(attr::SECURITY_RULE_NAME, rule.to_string()),
                KeyValue::new(attr::SECURITY_RULE_RULESET_NAME, ruleset.to_string()),
                KeyValue::new(attr::DECISION, decision),
            ],
        );
    }

    pub fn fallback_records(&self, n: u64) {
        self.fallback_records.add(n, &[]);
    }

    pub fn export_failure(&self, signal: &'static str, error_type: &str) {
        self.export_failures.add(
            1,
            &[
                KeyValue::new(attr::EXPORT_SIGNAL, signal),
                KeyValue::new(attr::ERROR_TYPE, error_type.to_string()),
            ],
        );
    }

    /// Seconds from the kernel's event to the Collector's acknowledgement.
    pub fn latency(&self, seconds: f64) {
        self.latency.record(seconds, &[]);
    }

    /// Collects and exports once more, then stops. Blocks: call it where
    /// the runtime can still run the export (`spawn_blocking`).
    pub fn shutdown(&self) {
        // A Collector that is away was reported already, and the failed
        // export counted.
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!("metrics: final export: {e}");
        }
    }
}

fn register_observed(
    meter: &Meter,
    stats: Arc<Stats>,
    spool: Option<Arc<Spool>>,
    observed: Arc<Observed>,
) {
    let o = observed.clone();
    meter
        .u64_observable_counter(metric::KERNEL_DROPS.name)
        .with_unit(metric::KERNEL_DROPS.unit)
        .with_description(metric::KERNEL_DROPS.description)
        .with_callback(move |obs| {
            for (hook, reason, n) in o
                .kernel_drops
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                obs.observe(
                    *n,
                    &[
                        KeyValue::new(attr::HOOK, hook.clone()),
                        KeyValue::new(attr::DROP_REASON, *reason),
                    ],
                );
            }
        })
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter(metric::QUEUE_DROPS.name)
        .with_unit(metric::QUEUE_DROPS.unit)
        .with_description(metric::QUEUE_DROPS.description)
        .with_callback(move |obs| obs.observe(Stats::get(&s.queue_drops), &[]))
        .build();
    let s = stats;
    meter
        .u64_observable_counter(metric::UNREPORTED_EVENTS.name)
        .with_unit(metric::UNREPORTED_EVENTS.unit)
        .with_description(metric::UNREPORTED_EVENTS.description)
        .with_callback(move |obs| {
            obs.observe(
                Stats::get(&s.decode_errors),
                &[KeyValue::new(attr::ERROR_TYPE, semconv::error_type::DECODE)],
            );
            obs.observe(
                Stats::get(&s.unresolved_paths),
                &[KeyValue::new(
                    attr::ERROR_TYPE,
                    semconv::error_type::UNRESOLVED_PATH,
                )],
            );
        })
        .build();
    if let Some(spool) = spool {
        let sp = spool.clone();
        meter
            .u64_observable_gauge(metric::SPOOL_SIZE.name)
            .with_unit(metric::SPOOL_SIZE.unit)
            .with_description(metric::SPOOL_SIZE.description)
            .with_callback(move |obs| obs.observe(sp.usage().bytes, &[]))
            .build();
        let limit = spool.max_bytes();
        meter
            .u64_observable_gauge(metric::SPOOL_LIMIT.name)
            .with_unit(metric::SPOOL_LIMIT.unit)
            .with_description(metric::SPOOL_LIMIT.description)
            .with_callback(move |obs| obs.observe(limit, &[]))
            .build();
        let sp = spool.clone();
        meter
            .u64_observable_gauge(metric::SPOOL_RECORDS.name)
            .with_unit(metric::SPOOL_RECORDS.unit)
            .with_description(metric::SPOOL_RECORDS.description)
            .with_callback(move |obs| obs.observe(sp.usage().records, &[]))
            .build();
        let sp = spool;
        meter
            .u64_observable_counter(metric::SPOOL_EVICTED.name)
            .with_unit(metric::SPOOL_EVICTED.unit)
            .with_description(metric::SPOOL_EVICTED.description)
            .with_callback(move |obs| obs.observe(sp.usage().evicted_records, &[]))
            .build();
    }
    let o = observed.clone();
    meter
        .u64_observable_gauge(metric::RULES.name)
        .with_unit(metric::RULES.unit)
        .with_description(metric::RULES.description)
        .with_callback(move |obs| {
            for (module, n) in o.rules.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                obs.observe(*n, &[KeyValue::new(attr::MODULE, *module)]);
            }
        })
        .build();
    let o = observed;
    meter
        .u64_observable_gauge(metric::ROWS.name)
        .with_unit(metric::ROWS.unit)
        .with_description(metric::ROWS.description)
        .with_callback(move |obs| {
            for (row, tier) in o.rows.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                obs.observe(
                    1,
                    &[
                        KeyValue::new(attr::ROW, row.clone()),
                        KeyValue::new(attr::ENFORCEMENT_TIER, *tier),
                    ],
                );
            }
        })
        .build();
}

/// The SDK's reader runs on its own thread and blocks on `export`; the
/// request goes to the agent's runtime through a channel and the answer
/// comes back the same way.
struct Bridge {
    exports: mpsc::Sender<MetricsExport>,
}

impl PushMetricExporter for Bridge {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let payload = ExportMetricsServiceRequest::from(metrics).encode_to_vec();
        let (done, result) = oneshot::channel();
        self.exports
            .send((payload, done))
            .await
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OTelSdkError::InternalFailure(e)),
            Err(_) => Err(OTelSdkError::AlreadyShutdown),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}
