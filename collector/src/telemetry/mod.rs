//! OpenTelemetry: records become OTLP log records and process spans, are
//! batched into the on-disk spool, and are delivered from there to the
//! Collector in order. While the Collector does not answer, records also go
//! to the local event log, and the spool keeps them for when it does.
//!
//! ```text
//! Record → Pipeline ─┬─ tracker (process spans) ─┐
//!                    ├─ log record ──────────────┴→ batch → spool → deliver → Collector
//!                    └─ local event log (always, or while falling back)
//! ```

pub mod encode;
pub mod export;
pub mod logs;
pub mod metrics;
pub mod resource;
pub mod spool;
pub mod traces;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use semconv::{attr, decision};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use self::{
    encode::LogBatch,
    export::{ExportError, Signal, Transport},
    metrics::Metrics,
    spool::{Batch, Spool},
    traces::Tracker,
};
use crate::{config::LogLevel, events::Record, output::EventLog, stats::Stats};

/// The local event log, shared by the pipeline and the delivery task.
pub type SharedLog = Arc<Mutex<EventLog>>;

fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, EventLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the Collector answers, shared by the pipeline and the delivery
/// task.
#[derive(Default)]
pub struct ExportState {
    pub falling_back: AtomicBool,
    /// New batches in the spool.
    pub spooled: Notify,
}

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

/// The agent's pipeline after enrichment: takes each [`Record`], counts
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
    local_dirty: std::cell::Cell<bool>,
    last_sweep: Instant,
    stats: Arc<Stats>,
}

impl Pipeline {
    pub fn new(
        resource: Resource,
        export: Option<Export>,
        local: SharedLog,
        local_always: bool,
        min_level: LogLevel,
        metrics: Option<Arc<Metrics>>,
        stats: Arc<Stats>,
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
            local_dirty: std::cell::Cell::new(false),
            last_sweep: Instant::now(),
            stats,
        }
    }

    pub fn push(&mut self, record: Record) {
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
        Stats::add(&self.stats.written, 1);
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
        if let Err(e) = lock(&self.local).flush() {
            let n = Stats::add(&self.stats.write_errors, 1);
            if n.is_power_of_two() {
                error!(failed = n, "cannot write the event log: {e}");
            }
        }
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
        if let Err(e) = lock(&self.local).flush() {
            error!("cannot write the event log: {e}");
        }
    }

    /// Nothing waits for [`Pipeline::tick`]: no open batch, no ended span,
    /// nothing unflushed in the local log.
    pub fn idle(&self) -> bool {
        self.batch_opened.is_none() && self.tracker.ended() == 0 && !self.local_dirty.get()
    }

    fn write_local(&self, records: &[LogRecord]) {
        self.local_dirty.set(true);
        let result = {
            let mut log = lock(&self.local);
            records.iter().try_for_each(|r| log.write(r))
        };
        if let Err(e) = result {
            let n = Stats::add(&self.stats.write_errors, 1);
            if n.is_power_of_two() {
                error!(failed = n, "cannot write the event log: {e}");
            }
        }
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
                        self.write_local_counted(&decode_logs(&payload));
                    }
                    for (batch, payload) in pushed.evicted {
                        warn!(
                            records = batch.records,
                            "spool is full ({} bytes): evicted its oldest {} batch",
                            export.spool.usage().bytes,
                            batch.signal.name()
                        );
                        if batch.signal == Signal::Logs && !batch.local {
                            let records = decode_logs(&payload);
                            self.write_local_counted(&records);
                        }
                    }
                    export.state.spooled.notify_one();
                }
                Err(e) => {
                    // Nothing may be lost: what cannot be spooled goes to
                    // the local log.
                    error!("{e}: the batch goes to the local event log only");
                    if signal == Signal::Logs && !self.local_always {
                        self.write_local_counted(&decode_logs(&payload));
                    }
                    if let Some(m) = &self.metrics {
                        m.export_failure(signal.name(), semconv::error_type::SPOOL);
                    }
                }
            }
        }
    }

    fn write_local_counted(&self, records: &[LogRecord]) {
        self.write_local(records);
        if let Some(m) = &self.metrics {
            m.fallback_records(records.len() as u64);
        }
    }
}

/// The `&'static str` among `names` equal to `value`: metric attributes
/// from fixed sets need no String per event.
fn interned(names: impl IntoIterator<Item = &'static str>, value: Option<&str>) -> &'static str {
    let value = value.unwrap_or("");
    names.into_iter().find(|n| *n == value).unwrap_or("")
}

fn count(m: &Metrics, r: &Record) {
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

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "safeguard".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

pub fn logs_request(resource: &Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The log records of a spooled batch; none, said once per batch, if it
/// was damaged on disk since it was written (batches a previous run left
/// are checked when the spool opens).
fn decode_logs(payload: &[u8]) -> Vec<LogRecord> {
    match ExportLogsServiceRequest::decode(payload) {
        Ok(r) => r
            .resource_logs
            .into_iter()
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .collect(),
        Err(e) => {
            error!(
                "a spooled log batch does not decode ({e}): its records cannot be written to the local event log"
            );
            Vec::new()
        }
    }
}

/// Retry delays while the Collector does not answer.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping agent keeps sending; what is left stays in the
/// spool for the next start.
const STOP_DRAIN: Duration = Duration::from_secs(10);

/// Delivers the spool's batches, oldest first, until `stop` and the spool
/// is empty (or the Collector does not answer, or [`STOP_DRAIN`] passed).
pub async fn deliver(
    transport: Arc<Transport>,
    spool: Arc<Spool>,
    state: Arc<ExportState>,
    local: SharedLog,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut stop_by: Option<Instant> = None;
    let falling_back = |e: &ExportError| {
        if !state.falling_back.swap(true, Ordering::SeqCst) {
            let location = lock(&local).location.clone();
            warn!(
                "cannot deliver to the OpenTelemetry Collector at {}: {e}; falling back: events are written to {location} and kept in {} until it answers",
                transport.endpoint(),
                spool.dir().display()
            );
            for batch in spool.set_failing(true) {
                to_local(&spool, &local, &metrics, &batch);
            }
        }
    };
    // Find out at once whether the Collector answers, so that an idle
    // agent says it is falling back too.
    if let Err(e) = transport.send(Signal::Logs, Vec::new()).await {
        metrics.export_failure(Signal::Logs.name(), &e.kind().name());
        falling_back(&e);
    }
    loop {
        if *stop.borrow() {
            let by = *stop_by.get_or_insert_with(|| Instant::now() + STOP_DRAIN);
            if spool.front().is_none()
                || state.falling_back.load(Ordering::SeqCst)
                || Instant::now() >= by
            {
                break;
            }
        }
        let Some(batch) = spool.front() else {
            if state.falling_back.load(Ordering::SeqCst) {
                // Nothing to send: probe, so the operator hears when it
                // answers again.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => continue,
                    _ = state.spooled.notified() => continue,
                }
                match transport.send(Signal::Logs, Vec::new()).await {
                    Ok(_) => recovered(&transport, &spool, &state),
                    Err(_) => backoff = (backoff * 2).min(BACKOFF_MAX),
                }
            } else {
                tokio::select! {
                    _ = state.spooled.notified() => {}
                    _ = stop.changed() => {}
                }
            }
            continue;
        };
        let Some(payload) = spool.read(&batch) else {
            // Evicted meanwhile: it is in the local files.
            continue;
        };
        match transport.send(batch.signal, payload).await {
            Ok(accepted) => {
                spool.remove(&batch);
                backoff = BACKOFF_MIN;
                if state.falling_back.load(Ordering::SeqCst) {
                    recovered(&transport, &spool, &state);
                }
                if accepted.rejected > 0 {
                    metrics.export_failure(batch.signal.name(), semconv::error_type::PARTIAL);
                    warn!(
                        rejected = accepted.rejected,
                        "the Collector accepted a {} batch only in part: {}",
                        batch.signal.name(),
                        accepted.message
                    );
                }
                let now = logs::unix_nanos(SystemTime::now());
                for t in batch.times.iter() {
                    metrics.latency(now.saturating_sub(*t) as f64 / 1e9);
                }
            }
            Err(e @ ExportError::Rejected { .. }) => {
                metrics.export_failure(batch.signal.name(), &e.kind().name());
                error!(
                    records = batch.records,
                    "the Collector refused a {} batch: {e}; it is dropped from the spool (log records are kept in the local event log)",
                    batch.signal.name()
                );
                to_local(&spool, &local, &metrics, &batch);
                spool.remove(&batch);
            }
            Err(e) => {
                metrics.export_failure(batch.signal.name(), &e.kind().name());
                // The Collector answered, but with an error: if the batch
                // itself no longer decodes (damaged on disk), no retry will
                // help, and every batch behind it would wait.
                if e.kind().collector_answered()
                    && let Some(payload) = spool.read(&batch)
                    && let Err(error) = spool::check(batch.signal, &payload)
                {
                    metrics.export_failure(batch.signal.name(), semconv::error_type::ENCODING);
                    if let Some(path) = spool.set_aside(&batch) {
                        error!(
                            records = batch.records,
                            "a spooled {} batch does not decode ({error}): moved to {}, not sent{}",
                            batch.signal.name(),
                            path.display(),
                            if batch.local {
                                " (its records are in the local event log)"
                            } else {
                                ""
                            }
                        );
                    }
                    continue;
                }
                falling_back(&e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    let usage = spool.usage();
    if usage.batches > 0 {
        info!(
            batches = usage.batches,
            records = usage.records,
            "undelivered batches stay in {} for the next start",
            spool.dir().display()
        );
    }
}

fn recovered(transport: &Transport, spool: &Spool, state: &ExportState) {
    state.falling_back.store(false, Ordering::SeqCst);
    spool.set_failing(false);
    info!(
        spooled_batches = spool.usage().batches,
        "the OpenTelemetry Collector at {} answers again; sending what was spooled",
        transport.endpoint()
    );
}

/// Writes a spooled log batch to the local event log, once.
fn to_local(spool: &Spool, local: &SharedLog, metrics: &Metrics, batch: &Batch) {
    if batch.local || batch.signal != Signal::Logs {
        return;
    }
    let Some(payload) = spool.read(batch) else {
        return;
    };
    let records = decode_logs(&payload);
    let result = {
        let mut log = lock(local);
        records
            .iter()
            .try_for_each(|r| log.write(r))
            .and_then(|()| log.flush())
    };
    match result {
        Ok(()) => {
            metrics.fallback_records(records.len() as u64);
            spool.mark_local(batch);
        }
        Err(e) => error!("cannot write the event log: {e}"),
    }
}

/// Sends the SDK's metrics collections; failures are counted, not retried
/// (the next collection carries the cumulative totals).
pub async fn forward_metrics(
    transport: Arc<Transport>,
    mut exports: tokio::sync::mpsc::Receiver<metrics::MetricsExport>,
    metrics: Arc<std::sync::OnceLock<Arc<Metrics>>>,
) {
    while let Some((payload, done)) = exports.recv().await {
        let result = transport.send(Signal::Metrics, payload).await;
        if let Err(e) = &result
            && let Some(m) = metrics.get()
        {
            m.export_failure(Signal::Metrics.name(), &e.kind().name());
        }
        let _ = done.send(result.map(|_| ()).map_err(|e| e.to_string()));
    }
}
