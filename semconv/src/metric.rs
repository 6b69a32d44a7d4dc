//! The agent's metrics: name, unit, instrument kind and attributes of each.

use crate::attr;

mod prometheus;

/// The OpenTelemetry instrument a metric is recorded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (a monotonic sum).
    Counter,
    /// Goes up and down (a non-monotonic sum).
    UpDownCounter,
    /// The current value of something.
    Gauge,
    /// A distribution of measurements.
    Histogram,
}

impl Kind {
    /// The instrument's name in the OpenTelemetry specification.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Counter => "Counter",
            Kind::UpDownCounter => "UpDownCounter",
            Kind::Gauge => "Gauge",
            Kind::Histogram => "Histogram",
        }
    }
}

/// A metric the agent exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The OTLP metric name.
    pub name: &'static str,
    /// The UCUM unit (`By`, `s`) or an annotation (`{event}`).
    pub unit: &'static str,
    /// The OTLP description.
    pub description: &'static str,
    /// The instrument it is recorded with.
    pub kind: Kind,
    /// The attribute keys its points carry (keys of [`attr`]).
    pub attributes: &'static [&'static str],
}

impl Metric {
    /// The name Prometheus shows for this metric when it arrives over OTLP,
    /// through the Collector's Prometheus exporters or Prometheus's own OTLP
    /// receiver with their default settings (translation strategy
    /// `UnderscoreEscapingWithSuffixes`):
    ///
    /// - characters other than `[a-zA-Z0-9:]` separate words, which are
    ///   joined with single underscores (`.` becomes `_`);
    /// - the unit is added as a word unless the name has it already:
    ///   `By` → `bytes`, `s` → `seconds` and so on, `{…}` annotations
    ///   dropped, `1` nothing, `x/y` → `x_per_y`;
    /// - a [`Kind::Counter`] ends in `_total`; a [`Kind::Gauge`] of unit `1`
    ///   in `_ratio`.
    ///
    /// A histogram's series are this name followed by `_bucket`, `_sum` and
    /// `_count`.
    pub fn prometheus_name(&self) -> String {
        prometheus::name(self.name, self.unit, self.kind)
    }
}

/// Declares the metrics and [`ALL`]. Each metric's doc comment gets the
/// list of its attributes.
macro_rules! metrics {
    (@attributes) => { "No attributes." };
    (@attributes $($attr:ident)+) => { "Attributes:" };
    ($(
        $(#[doc = $doc:literal])+
        $id:ident = $kind:ident {
            name: $name:literal,
            unit: $unit:literal,
            attributes: [$($attr:ident),* $(,)?],
            description: $description:literal $(,)?
        };
    )*) => {
        $(
            $(#[doc = $doc])+
            #[doc = ""]
            #[doc = metrics!(@attributes $($attr)*)]
            $(#[doc = concat!(
                "- [`attr::", stringify!($attr), "`](crate::attr::", stringify!($attr), ")"
            )])*
            pub const $id: Metric = Metric {
                name: $name,
                unit: $unit,
                description: $description,
                kind: Kind::$kind,
                attributes: &[$(attr::$attr),*],
            };
        )*

        /// Every metric above, in order.
        pub const ALL: &[Metric] = &[$($id),*];
    };
}

metrics! {
    /// Audit events, one per event reported.
    EVENT_REPORTED = Counter {
        name: "safeguard.event.reported",
        unit: "{event}",
        attributes: [MODULE, HOOK, DECISION],
        description: "Audit events, by module, hook and decision",
    };
    /// Operations the policy denied: decision `blocked` or `would_block`.
    /// The one alert rules are written on.
    OPERATION_DENIED = Counter {
        name: "safeguard.operation.denied",
        unit: "{operation}",
        attributes: [MODULE, SECURITY_RULE_NAME, SECURITY_RULE_RULESET_NAME, DECISION],
        description: "Operations the policy denied, by module, rule and decision",
    };
    /// Events lost in the kernel before the agent saw them: the ring buffer
    /// was full, or an audit record met the quarter kept for blocked
    /// operations.
    KERNEL_EVENT_DROPPED = Counter {
        name: "safeguard.kernel.event.dropped",
        unit: "{event}",
        attributes: [HOOK, DROP_REASON],
        description: "Events the kernel could not hand to the agent, by hook and reason (ring buffer full, or its last quarter kept for blocked operations)",
    };
    /// Events dropped between the ring-buffer reader and the pipeline
    /// (the queue between them was full).
    QUEUE_EVENT_DROPPED = Counter {
        name: "safeguard.queue.event.dropped",
        unit: "{event}",
        attributes: [],
        description: "Events dropped because the agent's queue was full",
    };
    /// Events received but not reportable; `error.type` says why
    /// (`decode`, `unresolved_path`).
    EVENT_UNREPORTED = Counter {
        name: "safeguard.event.unreported",
        unit: "{event}",
        attributes: [ERROR_TYPE],
        description: "Events received but not reportable, by reason",
    };
    /// Export requests that failed, per signal and error class: every
    /// failed try, retries included, and batches that never became a
    /// request (spool write failed, spooled batch damaged). The items'
    /// final outcomes are in the `otel.sdk.exporter.*.exported` metrics.
    EXPORT_REQUEST_FAILED = Counter {
        name: "safeguard.export.request.failed",
        unit: "{request}",
        attributes: [EXPORT_SIGNAL, ERROR_TYPE],
        description: "Export requests the Collector did not accept, by signal and error type",
    };
    /// OpenTelemetry's exporter metric for log records: each counted once,
    /// when its export is final: accepted by the Collector (no
    /// `error.type`), or not and never to be retried (`error.type`:
    /// `rejected` by the Collector, `encoding` for a spooled batch that no
    /// longer decodes, `spool` for one evicted from the full spool; all of
    /// these are in the local files). A spooled batch that waits for the
    /// Collector is not counted until it is delivered.
    EXPORTER_LOG_EXPORTED = Counter {
        name: "otel.sdk.exporter.log.exported",
        unit: "{log_record}",
        attributes: [OTEL_COMPONENT_TYPE, OTEL_COMPONENT_NAME, ERROR_TYPE],
        description: "Log records whose export is final, by exporter and, when not delivered, error type",
    };
    /// The same for process spans (a refused or damaged span batch is
    /// lost: spans have no local file).
    EXPORTER_SPAN_EXPORTED = Counter {
        name: "otel.sdk.exporter.span.exported",
        unit: "{span}",
        attributes: [OTEL_COMPONENT_TYPE, OTEL_COMPONENT_NAME, ERROR_TYPE],
        description: "Spans whose export is final, by exporter and, when not delivered, error type",
    };
    /// The same for the agent's own metric data points, which are not
    /// spooled: a collection is tried once and, failed, counted with the
    /// failure's `error.type` (the next carries the cumulative totals).
    EXPORTER_METRIC_DATA_POINT_EXPORTED = Counter {
        name: "otel.sdk.exporter.metric_data_point.exported",
        unit: "{data_point}",
        attributes: [OTEL_COMPONENT_TYPE, OTEL_COMPONENT_NAME, ERROR_TYPE],
        description: "Metric data points whose export is final, by exporter and, when not delivered, error type",
    };
    /// Records written to the local fallback files. OpenTelemetry has no
    /// metric for telemetry kept elsewhere while its exporter fails.
    FALLBACK_RECORD_WRITTEN = Counter {
        name: "safeguard.fallback.record.written",
        unit: "{record}",
        attributes: [],
        description: "Log records written to the local files because the Collector did not answer",
    };
    /// Bytes waiting in the spool.
    SPOOL_USAGE = Gauge {
        name: "safeguard.spool.usage",
        unit: "By",
        attributes: [],
        description: "Bytes waiting in the spool for the Collector",
    };
    /// The spool's size cap (`otel.spool_max_bytes`), for alerts on how
    /// full it is.
    SPOOL_LIMIT = Gauge {
        name: "safeguard.spool.limit",
        unit: "By",
        attributes: [],
        description: "Size cap of the spool: past it the oldest batches are evicted",
    };
    /// Records waiting in the spool. Not OpenTelemetry's
    /// `otel.sdk.exporter.log.inflight`: the spool holds spans as well as
    /// log records, and keeps them across restarts.
    SPOOL_RECORD_COUNT = Gauge {
        name: "safeguard.spool.record.count",
        unit: "{record}",
        attributes: [],
        description: "Records waiting in the spool for the Collector",
    };
    /// Records evicted from the spool because of its size cap (they are in
    /// the local files).
    SPOOL_RECORD_EVICTED = Counter {
        name: "safeguard.spool.record.evicted",
        unit: "{record}",
        attributes: [],
        description: "Records evicted from the full spool (kept in the local files)",
    };
    /// Rules loaded.
    POLICY_RULE_COUNT = Gauge {
        name: "safeguard.policy.rule.count",
        unit: "{rule}",
        attributes: [MODULE],
        description: "Policy rules loaded, by module",
    };
    /// Value 1 per row of the policy coverage table, with the tier that
    /// covers it on this kernel.
    POLICY_ROW_COUNT = Gauge {
        name: "safeguard.policy.row.count",
        unit: "{row}",
        attributes: [ROW, ENFORCEMENT_TIER],
        description: "Policy rows and how this kernel covers them",
    };
    /// What the agent's last self-check (every 10 s) found no longer as it
    /// left it: its policy set not in force, a link running another
    /// program, a pin removed, its guard (`kernel.protect`) off. 0 when
    /// all is well.
    INTEGRITY_PROBLEM_COUNT = Gauge {
        name: "safeguard.agent.integrity.problem.count",
        unit: "{problem}",
        attributes: [],
        description: "Problems the agent's self-check found with its programs, policy set, pins and guard",
    };
    /// Queries `dns_proxy` answered, by outcome: rule hits are answers
    /// whose addresses were put in force first; upstream failures and
    /// addresses not in force are answered SERVFAIL.
    DNS_PROXY_QUERY = Counter {
        name: "safeguard.dns_proxy.query",
        unit: "{query}",
        attributes: [DNS_PROXY_OUTCOME],
        description: "DNS queries the agent's proxy answered, by outcome",
    };
    /// Seconds from the kernel's event to the Collector's acknowledgement.
    PIPELINE_DURATION = Histogram {
        name: "safeguard.pipeline.duration",
        unit: "s",
        attributes: [],
        description: "Time from the kernel event to the Collector's acknowledgement",
    };
}
