//! Records in: each becomes an OTLP log record and updates its process's
//! span; log records and ended spans are batched, encoded once and put in
//! the spool, and written to the local event log when it is wanted.

use std::{
    cell::Cell,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope, logs::v1::LogRecord, resource::v1::Resource,
};
use semconv::{attr, decision};

use super::{
    delivery::ExportState,
    encode::LogBatch,
    export::Signal,
    local_log::{self, SharedLog},
    logs,
    metrics::Metrics,
    scope,
    spool::Spool,
    traces::Tracker,
};
use crate::{
    config::LogLevel,
    events::Enriched,
    internal_events::{
        EventReported, FallbackRecordsWritten, Registry, SpoolBatchEvicted, SpoolWriteFailed,
    },
};

/// Where the pipeline's batches go when OpenTelemetry export is on.
pub struct Export {
    pub spool: Arc<Spool>,
    pub state: Arc<ExportState>,
    pub batch_size: usize,
    pub batch_timeout: Duration,
}

/// Largest encoded log batch, whatever `otel.batch_size` says: below the
/// 4 MiB a gRPC server accepts by default (the Collector's
/// `max_recv_msg_size_mib`); a bigger request would be refused every time
/// it is sent.
const MAX_BATCH_BYTES: usize = 3 << 20;

/// The agent's pipeline after enrichment: takes each [`Enriched`], counts
/// it, keeps its process's span ([`Tracker`]) and adds its log record to
/// the open batch; a batch is sealed (encoded once) into the [`Spool`] when
/// full or old enough, and the delivery task sends it from there. Records
/// also go to the local event log, always (`log.mode: always`, or export
/// off) or while the Collector does not answer.
///
/// Owned by the agent's run loop, which calls [`Pipeline::push`] for each
/// record, [`Pipeline::tick`] on a timer and [`Pipeline::finish`] once at
/// stop; not shared between threads. Nothing pushed is lost: a batch that
/// cannot be spooled or is evicted goes to the local event log.
pub struct Pipeline {
    resource: Resource,
    tracker: Tracker,
    scope: InstrumentationScope,
    logs: LogBatch,
    batch_opened: Option<Instant>,
    /// `None`: OpenTelemetry export is off; records go only to the local log.
    export: Option<Export>,
    local: SharedLog,
    /// Every record goes to the local log, not only while falling back.
    local_always: bool,
    min_level: LogLevel,
    metrics: Option<Arc<Metrics>>,
    /// Written to the local log since its last flush.
    local_dirty: Cell<bool>,
    last_sweep: Instant,
    registry: Arc<Registry>,
}

impl Pipeline {
    pub fn new(
        resource: Resource,
        export: Option<Export>,
        local: SharedLog,
        local_always: bool,
        min_level: LogLevel,
        metrics: Option<Arc<Metrics>>,
        registry: Arc<Registry>,
    ) -> Self {
        Self {
            resource,
            tracker: Tracker::new(),
            scope: scope(),
            logs: LogBatch::default(),
            batch_opened: None,
            local_always: local_always || export.is_none(),
            export,
            local,
            min_level,
            metrics,
            local_dirty: Cell::new(false),
            last_sweep: Instant::now(),
            registry,
        }
    }

    pub fn push(&mut self, record: Enriched) {
        if let Some(m) = &self.metrics {
            count(m, &record);
        }
        let span = if self.export.is_some() {
            self.tracker.observe(&record)
        } else {
            None
        };
        if (record.severity as u8) < (self.min_level as u8) {
            return;
        }
        self.registry.emit(EventReported);
        let observed = SystemTime::now();
        if self.local_always {
            let log = logs::log_record(&record, observed, span);
            self.write_local(std::slice::from_ref(&log));
        }
        if let Some(export) = &self.export {
            self.logs.push(&record, logs::unix_nanos(observed), span);
            self.batch_opened.get_or_insert_with(Instant::now);
            if self.logs.len() >= export.batch_size || self.logs.bytes() >= MAX_BATCH_BYTES {
                self.seal();
            }
        }
    }

    /// Called periodically: flushes the local log, seals a batch that has
    /// waited long enough and ends the spans of processes that are gone
    /// unseen.
    pub fn tick(&mut self) {
        self.local_dirty.set(false);
        local_log::flush(&self.local, &self.registry);
        let Some(export) = &self.export else { return };
        if self
            .batch_opened
            .is_some_and(|t| t.elapsed() >= export.batch_timeout)
            || (self.tracker.ended() > 0 && self.logs.is_empty())
        {
            self.seal();
        }
        if self.last_sweep.elapsed() >= Duration::from_secs(10) {
            self.last_sweep = Instant::now();
            self.tracker.sweep(SystemTime::now(), |pid| {
                std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
        }
    }

    /// The agent is stopping: ends the spans of processes still running
    /// (marked unfinished) and seals what is left.
    pub fn finish(&mut self) {
        if self.export.is_some() {
            self.tracker.end_all(SystemTime::now());
            self.seal();
        }
        local_log::flush(&self.local, &self.registry);
    }

    /// Nothing waits for [`Pipeline::tick`]: no open batch, no ended span,
    /// nothing unflushed in the local log.
    pub fn idle(&self) -> bool {
        self.batch_opened.is_none() && self.tracker.ended() == 0 && !self.local_dirty.get()
    }

    fn write_local(&self, records: &[LogRecord]) {
        self.local_dirty.set(true);
        local_log::write(&self.local, records, &self.registry);
    }

    /// Encodes the open batches and puts them in the spool.
    fn seal(&mut self) {
        let Some(export) = &self.export else { return };
        self.batch_opened = None;
        let mut pending = Vec::new();
        if !self.logs.is_empty() {
            let n = self.logs.len() as u64;
            let (payload, times) = self.logs.seal(&self.resource, &self.scope);
            pending.push((Signal::Logs, payload, n, times));
        }
        if self.tracker.ended() > 0 {
            let n = self.tracker.ended() as u64;
            let payload = self.tracker.seal_ended(&self.resource, &self.scope);
            pending.push((Signal::Traces, payload, n, Vec::new()));
        }
        for (signal, payload, n, times) in pending {
            match export
                .spool
                .push_timed(signal, &payload, n, self.local_always, times)
            {
                Ok(pushed) => {
                    // Falling back: the records go to the local files too
                    // (decoded from the batch; only while the Collector
                    // does not answer).
                    if pushed.to_local && signal == Signal::Logs {
                        self.write_local_counted(&local_log::log_records(&payload, &self.registry));
                    }
                    for (batch, payload) in pushed.evicted {
                        self.registry.emit(SpoolBatchEvicted {
                            signal: batch.signal,
                            records: batch.records,
                            spool_bytes: export.spool.usage().bytes,
                        });
                        if batch.signal == Signal::Logs && !batch.local {
                            let records = local_log::log_records(&payload, &self.registry);
                            self.write_local_counted(&records);
                        }
                    }
                    export.state.spooled.notify_one();
                }
                Err(error) => {
                    // Nothing may be lost: what cannot be spooled goes to
                    // the local log.
                    self.registry.emit(SpoolWriteFailed {
                        signal,
                        records: n,
                        error: &error,
                    });
                    if signal == Signal::Logs && !self.local_always {
                        self.write_local_counted(&local_log::log_records(&payload, &self.registry));
                    }
                }
            }
        }
    }

    fn write_local_counted(&self, records: &[LogRecord]) {
        self.write_local(records);
        self.registry.emit(FallbackRecordsWritten {
            records: records.len() as u64,
        });
    }
}

/// The `&'static str` among `names` equal to `value`: metric attributes
/// from fixed sets need no String per event.
fn interned(names: impl IntoIterator<Item = &'static str>, value: Option<&str>) -> &'static str {
    let value = value.unwrap_or("");
    names.into_iter().find(|n| *n == value).unwrap_or("")
}

fn count(m: &Metrics, r: &Enriched) {
    // Kernel events only: what the agent says itself (a DNS answer) has
    // its own metric.
    if r.get(attr::HOOK).is_none() {
        return;
    }
    let module = interned(
        semconv::module::ALL.iter().map(|n| n.name),
        r.str(attr::MODULE),
    );
    let decision = interned(
        semconv::decision::ALL.iter().map(|n| n.name),
        r.str(attr::DECISION),
    );
    let hook = interned(
        collector_common::Hook::ALL.iter().map(|h| h.name()),
        r.str(attr::HOOK),
    );
    m.event(module, hook, decision);
    if decision == decision::BLOCKED || decision == decision::WOULD_BLOCK {
        m.blocked(
            module,
            r.str(attr::SECURITY_RULE_NAME).unwrap_or(""),
            r.str(attr::SECURITY_RULE_RULESET_NAME).unwrap_or(""),
            decision,
        );
    }
}
