//! Delivery: sends the spool's batches to the Collector, oldest first;
//! while the Collector does not answer, falls back (the spool's log
//! batches go to the local event log, and new ones too) and probes until
//! it answers again. Also forwards the metrics collections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{Notify, watch};
use tracing::info;

use super::{
    export::{ErrorType, ExportError, Signal, Transport},
    local_log::{self, SharedLog},
    logs,
    metrics::{Metrics, MetricsExport},
    spool::{self, Batch, Spool},
};
use crate::internal_events::{
    CollectorRecovered, CollectorUnavailable, ExportFailed, ExportPartial, ExportRejected,
    FallbackRecordsWritten, Registry, SpoolBatchDamaged,
};

/// Whether the Collector answers, shared by the pipeline and the delivery
/// task.
#[derive(Default)]
pub struct ExportState {
    pub falling_back: AtomicBool,
    /// New batches in the spool.
    pub spooled: Notify,
}

/// Retry delays while the Collector does not answer.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping agent keeps sending; what is left stays in the
/// spool for the next start.
const STOP_DRAIN: Duration = Duration::from_secs(10);

/// Delivers the spool's batches, oldest first, until `stop` and the spool
/// is empty (or the Collector does not answer, or `STOP_DRAIN` passed).
pub async fn deliver(
    transport: Arc<Transport>,
    spool: Arc<Spool>,
    state: Arc<ExportState>,
    local: SharedLog,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut stop_by: Option<Instant> = None;
    let falling_back = |e: &ExportError| {
        if !state.falling_back.swap(true, Ordering::SeqCst) {
            let event_log = local_log::lock(&local).location.clone();
            registry.emit(CollectorUnavailable {
                endpoint: transport.endpoint(),
                error: e,
                event_log: &event_log,
                spool_dir: spool.dir(),
            });
            for batch in spool.set_failing(true) {
                to_local(&spool, &local, &registry, &batch);
            }
        }
    };
    // Find out at once whether the Collector answers, so that an idle
    // agent says it is falling back too.
    if let Err(e) = transport.send(Signal::Logs, Vec::new()).await {
        registry.emit(ExportFailed {
            signal: Signal::Logs,
            error: e.kind(),
        });
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
                    Ok(_) => recovered(&transport, &spool, &state, &registry),
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
                    recovered(&transport, &spool, &state, &registry);
                }
                if accepted.rejected > 0 {
                    registry.emit(ExportPartial {
                        signal: batch.signal,
                        rejected: accepted.rejected,
                        message: &accepted.message,
                    });
                }
                let now = logs::unix_nanos(SystemTime::now());
                for t in batch.times.iter() {
                    metrics.latency(now.saturating_sub(*t) as f64 / 1e9);
                }
            }
            Err(e @ ExportError::Rejected { .. }) => {
                registry.emit(ExportRejected {
                    signal: batch.signal,
                    records: batch.records,
                    error: &e,
                });
                to_local(&spool, &local, &registry, &batch);
                spool.remove(&batch);
            }
            Err(e) => {
                registry.emit(ExportFailed {
                    signal: batch.signal,
                    error: e.kind(),
                });
                // The Collector answered, but with an error: if the batch
                // itself no longer decodes (damaged on disk), no retry will
                // help, and every batch behind it would wait.
                if e.kind().collector_answered()
                    && let Some(payload) = spool.read(&batch)
                    && let Err(error) = spool::check(batch.signal, &payload)
                {
                    match spool.set_aside(&batch) {
                        Some(path) => registry.emit(SpoolBatchDamaged {
                            signal: batch.signal,
                            records: batch.records,
                            error: &error,
                            path: &path,
                            in_local_log: batch.local,
                        }),
                        // Evicted meanwhile: nothing to move aside.
                        None => registry.emit(ExportFailed {
                            signal: batch.signal,
                            error: ErrorType::Encoding,
                        }),
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

fn recovered(transport: &Transport, spool: &Spool, state: &ExportState, registry: &Registry) {
    state.falling_back.store(false, Ordering::SeqCst);
    spool.set_failing(false);
    registry.emit(CollectorRecovered {
        endpoint: transport.endpoint(),
        spooled_batches: spool.usage().batches,
    });
}

/// Writes a spooled log batch to the local event log, once.
fn to_local(spool: &Spool, local: &SharedLog, registry: &Registry, batch: &Batch) {
    if batch.local || batch.signal != Signal::Logs {
        return;
    }
    let Some(payload) = spool.read(batch) else {
        return;
    };
    let records = local_log::log_records(&payload, registry);
    if local_log::write_flushed(local, &records, registry) {
        registry.emit(FallbackRecordsWritten {
            records: records.len() as u64,
        });
        spool.mark_local(batch);
    }
}

/// Sends the SDK's metrics collections; failures are counted, not retried
/// (the next collection carries the cumulative totals).
pub async fn forward_metrics(
    transport: Arc<Transport>,
    mut exports: tokio::sync::mpsc::Receiver<MetricsExport>,
    registry: Arc<Registry>,
) {
    while let Some((payload, done)) = exports.recv().await {
        let result = transport.send(Signal::Metrics, payload).await;
        if let Err(e) = &result {
            registry.emit(ExportFailed {
                signal: Signal::Metrics,
                error: e.kind(),
            });
        }
        let _ = done.send(result.map(|_| ()).map_err(|e| e.to_string()));
    }
}
