//! The agent's metrics, through the OpenTelemetry metrics API with one
//! Resource shared with logs and traces. Names, units and descriptions come
//! from `semconv::metric`. The agent's own counters are read from the
//! [`Registry`] (observable instruments, read when metrics are collected);
//! only what needs attributes per event (events by module, hook and
//! decision; blocked operations by rule; latency) is recorded here. The
//! SDK's periodic reader collects them; a small exporter of our own
//! encodes each collection as an OTLP request and hands it to the same
//! transport the logs use, so metrics get the same endpoint, protocol,
//! compression, TLS and headers. Metrics are not spooled: they are
//! cumulative, so the next export after an outage carries the totals.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter as OtelCounter, Histogram, Meter, MeterProvider as _},
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

use super::{
    export::{self, Signal},
    spool::Spool,
};
use crate::{
    config::OtlpProtocol,
    internal_events::{Counter, DnsProxyOutcome, Registry},
};

/// An encoded metrics request, its number of data points, and where to
/// say how it went.
pub type MetricsExport = (Vec<u8>, u64, oneshot::Sender<Result<(), String>>);

/// What is in force, read when metrics are collected and by `status`;
/// kept up to date by the agent (at start, and rules at each reload).
#[derive(Default)]
pub struct Observed {
    /// Rules loaded per module.
    pub rules: Mutex<Vec<(&'static str, u64)>>,
    /// Each policy row and its tier on this kernel.
    pub rows: Mutex<Vec<(String, &'static str)>>,
    /// What the last self-check found wrong (`Kernel::integrity`).
    pub integrity: Mutex<Vec<String>>,
    /// `kernel.protect`, as the kernel took it.
    pub protection: Mutex<String>,
}

/// The agent's OpenTelemetry meter: one per agent while export is on,
/// created at start and shut down (one last export) at stop. Owns the
/// SDK's meter provider and periodic reader; shared (`Arc`) by the
/// pipeline (events, blocked operations) and delivery (latency). Every
/// instrument carries its `semconv::metric` name, unit and description;
/// nothing is spooled (sums are cumulative, so the next export after an
/// outage carries the totals).
pub struct Metrics {
    provider: SdkMeterProvider,
    events: OtelCounter<u64>,
    blocked: OtelCounter<u64>,
    latency: Histogram<f64>,
}

impl Metrics {
    /// Metrics exported through `exports` (see [`MetricsExport`]), by
    /// the exporters of `protocol`.
    pub fn new(
        resource: Resource,
        interval: Option<Duration>,
        protocol: OtlpProtocol,
        exports: mpsc::Sender<MetricsExport>,
        registry: Arc<Registry>,
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
        register_observed(&meter, registry, protocol, spool, observed);
        let counter = |m: &metric::Metric| {
            meter
                .u64_counter(m.name)
                .with_unit(m.unit)
                .with_description(m.description)
                .build()
        };
        Self {
            events: counter(&metric::EVENT_REPORTED),
            blocked: counter(&metric::OPERATION_DENIED),
            latency: meter
                .f64_histogram(metric::PIPELINE_DURATION.name)
                .with_unit(metric::PIPELINE_DURATION.unit)
                .with_description(metric::PIPELINE_DURATION.description)
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
    registry: Arc<Registry>,
    protocol: OtlpProtocol,
    spool: Option<Arc<Spool>>,
    observed: Arc<Observed>,
) {
    register_exported(meter, registry.clone(), protocol);
    register_counters(meter, registry);
    if let Some(spool) = spool {
        let sp = spool.clone();
        meter
            .u64_observable_gauge(metric::SPOOL_USAGE.name)
            .with_unit(metric::SPOOL_USAGE.unit)
            .with_description(metric::SPOOL_USAGE.description)
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
            .u64_observable_gauge(metric::SPOOL_RECORD_COUNT.name)
            .with_unit(metric::SPOOL_RECORD_COUNT.unit)
            .with_description(metric::SPOOL_RECORD_COUNT.description)
            .with_callback(move |obs| obs.observe(sp.usage().records, &[]))
            .build();
        let sp = spool;
        meter
            .u64_observable_counter(metric::SPOOL_RECORD_EVICTED.name)
            .with_unit(metric::SPOOL_RECORD_EVICTED.unit)
            .with_description(metric::SPOOL_RECORD_EVICTED.description)
            .with_callback(move |obs| obs.observe(sp.usage().evicted_records, &[]))
            .build();
    }
    let o = observed.clone();
    meter
        .u64_observable_gauge(metric::POLICY_RULE_COUNT.name)
        .with_unit(metric::POLICY_RULE_COUNT.unit)
        .with_description(metric::POLICY_RULE_COUNT.description)
        .with_callback(move |obs| {
            for (module, n) in o.rules.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                obs.observe(*n, &[KeyValue::new(attr::MODULE, *module)]);
            }
        })
        .build();
    let o = observed.clone();
    meter
        .u64_observable_gauge(metric::INTEGRITY_PROBLEM_COUNT.name)
        .with_unit(metric::INTEGRITY_PROBLEM_COUNT.unit)
        .with_description(metric::INTEGRITY_PROBLEM_COUNT.description)
        .with_callback(move |obs| {
            let n = o.integrity.lock().unwrap_or_else(|e| e.into_inner()).len();
            obs.observe(n as u64, &[]);
        })
        .build();
    let o = observed;
    meter
        .u64_observable_gauge(metric::POLICY_ROW_COUNT.name)
        .with_unit(metric::POLICY_ROW_COUNT.unit)
        .with_description(metric::POLICY_ROW_COUNT.description)
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

/// OpenTelemetry's exporter metrics: items whose export is final, per
/// signal, by exporter and (when not delivered) `error.type`.
fn register_exported(meter: &Meter, registry: Arc<Registry>, protocol: OtlpProtocol) {
    for (signal, m) in [
        (Signal::Logs, &metric::EXPORTER_LOG_EXPORTED),
        (Signal::Traces, &metric::EXPORTER_SPAN_EXPORTED),
        (
            Signal::Metrics,
            &metric::EXPORTER_METRIC_DATA_POINT_EXPORTED,
        ),
    ] {
        let r = registry.clone();
        let component = export::component_type(protocol, signal);
        let name = format!("{component}/0");
        meter
            .u64_observable_counter(m.name)
            .with_unit(m.unit)
            .with_description(m.description)
            .with_callback(move |obs| {
                for e in r.exported().iter().filter(|e| e.signal == signal) {
                    let mut attributes = vec![
                        KeyValue::new(attr::OTEL_COMPONENT_TYPE, component),
                        KeyValue::new(attr::OTEL_COMPONENT_NAME, name.clone()),
                    ];
                    if let Some(error) = e.error {
                        attributes.push(KeyValue::new(attr::ERROR_TYPE, error.name().into_owned()));
                    }
                    obs.observe(e.items, &attributes);
                }
            })
            .build();
    }
}

/// The registry's counters, as observable counters.
fn register_counters(meter: &Meter, registry: Arc<Registry>) {
    let observable = |m: &metric::Metric| {
        meter
            .u64_observable_counter(m.name)
            .with_unit(m.unit)
            .with_description(m.description)
    };
    let r = registry.clone();
    observable(&metric::KERNEL_EVENT_DROPPED)
        .with_callback(move |obs| {
            for d in r.kernel_drops() {
                obs.observe(
                    d.records,
                    &[
                        KeyValue::new(attr::HOOK, d.hook),
                        KeyValue::new(attr::DROP_REASON, d.reason),
                    ],
                );
            }
        })
        .build();
    let r = registry.clone();
    observable(&metric::DNS_PROXY_QUERY)
        .with_callback(move |obs| {
            for outcome in DnsProxyOutcome::ALL {
                obs.observe(
                    r.get(outcome.counter()),
                    &[KeyValue::new(attr::DNS_PROXY_OUTCOME, outcome.name())],
                );
            }
        })
        .build();
    let r = registry.clone();
    observable(&metric::QUEUE_EVENT_DROPPED)
        .with_callback(move |obs| obs.observe(r.get(Counter::QueueDrops), &[]))
        .build();
    let r = registry.clone();
    observable(&metric::EVENT_UNREPORTED)
        .with_callback(move |obs| {
            obs.observe(
                r.get(Counter::DecodeErrors),
                &[KeyValue::new(attr::ERROR_TYPE, semconv::error_type::DECODE)],
            );
            obs.observe(
                r.get(Counter::UnresolvedPaths),
                &[KeyValue::new(
                    attr::ERROR_TYPE,
                    semconv::error_type::UNRESOLVED_PATH,
                )],
            );
        })
        .build();
    let r = registry.clone();
    observable(&metric::EXPORT_REQUEST_FAILED)
        .with_callback(move |obs| {
            for f in r.export_failures() {
                obs.observe(
                    f.requests,
                    &[
                        KeyValue::new(attr::EXPORT_SIGNAL, f.signal.name()),
                        KeyValue::new(attr::ERROR_TYPE, f.error.to_string()),
                    ],
                );
            }
        })
        .build();
    let r = registry;
    observable(&metric::FALLBACK_RECORD_WRITTEN)
        .with_callback(move |obs| {
            // No series until the first fallback record.
            let n = r.get(Counter::FallbackRecords);
            if n > 0 {
                obs.observe(n, &[]);
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

/// The data points of a metrics request, of every kind.
fn data_points(request: &ExportMetricsServiceRequest) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let points = |data: &Data| match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    };
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter_map(|m| m.data.as_ref())
        .map(|d| points(d) as u64)
        .sum()
}

impl PushMetricExporter for Bridge {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let request = ExportMetricsServiceRequest::from(metrics);
        let points = data_points(&request);
        let payload = request.encode_to_vec();
        let (done, result) = oneshot::channel();
        self.exports
            .send((payload, points, done))
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
