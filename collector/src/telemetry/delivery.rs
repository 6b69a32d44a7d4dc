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
    FallbackRecordsWritten, ItemsExported, Registry, SpoolBatchDamaged,
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
    let mut delivery = Delivery {
        transport,
        spool,
        state,
        local,
        metrics,
        registry,
        backoff: BACKOFF_MIN,
    };
    // Find out at once whether the Collector answers, so that an idle
    // agent says it is falling back too.
    if let Err(e) = delivery.transport.send(Signal::Logs, Vec::new()).await {
        delivery.registry.emit(ExportFailed {
            signal: Signal::Logs,
            error: e.kind(),
        });
        delivery.fall_back(&e);
    }
    let mut stop_by: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            let by = *stop_by.get_or_insert_with(|| Instant::now() + STOP_DRAIN);
            if delivery.spool.front().is_none() || delivery.falling_back() || Instant::now() >= by {
                break;
            }
        }
        match delivery.spool.front() {
            Some(batch) => delivery.send(&batch, &mut stop).await,
            None => delivery.wait(&mut stop).await,
        }
    }
    let usage = delivery.spool.usage();
    if usage.batches > 0 {
        info!(
            batches = usage.batches,
            records = usage.records,
            "undelivered batches stay in {} for the next start",
            delivery.spool.dir().display()
        );
    }
}

/// The delivery task's state: where batches come from and go, and how
/// long to wait before the next try.
struct Delivery {
    transport: Arc<Transport>,
    spool: Arc<Spool>,
    state: Arc<ExportState>,
    local: SharedLog,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    backoff: Duration,
}

impl Delivery {
    fn falling_back(&self) -> bool {
        self.state.falling_back.load(Ordering::SeqCst)
    }

    /// Nothing to send: wait for a batch, or, while falling back, probe so
    /// that the operator hears when the Collector answers again.
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) {
        if !self.falling_back() {
            tokio::select! {
                _ = self.state.spooled.notified() => {}
                _ = stop.changed() => {}
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = stop.changed() => return,
            _ = self.state.spooled.notified() => return,
        }
        match self.transport.send(Signal::Logs, Vec::new()).await {
            Ok(_) => self.recovered(),
            Err(_) => self.backoff = (self.backoff * 2).min(BACKOFF_MAX),
        }
    }

    /// Sends the oldest batch; removes it once the Collector has it (or has
    /// refused it for good, and it is in the local event log).
    async fn send(&mut self, batch: &Batch, stop: &mut watch::Receiver<bool>) {
        let payload = match self.spool.payload(batch) {
            Some(Ok(payload)) => payload,
            // Damaged on disk since it was spooled: no Collector could take
            // it, and every batch behind it would wait.
            Some(Err(damage)) => {
                self.set_aside(batch, &damage);
                return;
            }
            // Evicted meanwhile: it is in the local files.
            None => return,
        };
        match self.transport.send(batch.signal, payload).await {
            Ok(accepted) => {
                self.spool.remove(batch);
                let rejected = u64::try_from(accepted.rejected).unwrap_or(0);
                self.registry.emit(ItemsExported {
                    signal: batch.signal,
                    items: batch.records.saturating_sub(rejected),
                    error: None,
                });
                self.backoff = BACKOFF_MIN;
                if self.falling_back() {
                    self.recovered();
                }
                if accepted.rejected > 0 {
                    self.registry.emit(ExportPartial {
                        signal: batch.signal,
                        rejected: accepted.rejected,
                        message: &accepted.message,
                    });
                }
                let now = logs::unix_nanos(SystemTime::now());
                for t in batch.times.iter() {
                    self.metrics.latency(now.saturating_sub(*t) as f64 / 1e9);
                }
            }
            Err(e @ ExportError::Rejected { .. }) => {
                self.registry.emit(ExportRejected {
                    signal: batch.signal,
                    records: batch.records,
                    error: &e,
                });
                to_local(&self.spool, &self.local, &self.registry, batch);
                self.spool.remove(batch);
            }
            Err(e) => {
                self.registry.emit(ExportFailed {
                    signal: batch.signal,
                    error: e.kind(),
                });
                if e.kind().collector_answered() && self.set_aside_if_damaged(batch) {
                    return;
                }
                self.fall_back(&e);
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff) => {}
                    _ = stop.changed() => {}
                }
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// The Collector answered with an error: if the batch itself no longer
    /// decodes (damaged on disk), no retry will help, and every batch
    /// behind it would wait, so it is moved aside. True if it was damaged.
    fn set_aside_if_damaged(&self, batch: &Batch) -> bool {
        let Some(payload) = self.spool.read(batch) else {
            return false;
        };
        let Err(error) = spool::check(batch.signal, &payload) else {
            return false;
        };
        self.set_aside(batch, &error);
        true
    }

    /// Moves `batch`, which no longer decodes (`error`), out of the spool.
    fn set_aside(&self, batch: &Batch, error: &dyn std::fmt::Display) {
        match self.spool.set_aside(batch) {
            Some(path) => self.registry.emit(SpoolBatchDamaged {
                signal: batch.signal,
                records: batch.records,
                error,
                path: &path,
                in_local_log: batch.local,
            }),
            // Evicted meanwhile: nothing to move aside.
            None => self.registry.emit(ExportFailed {
                signal: batch.signal,
                error: ErrorType::Encoding,
            }),
        }
    }

    /// The Collector does not answer: said once, and from now on log
    /// batches also go to the local event log, those in the spool first.
    fn fall_back(&self, e: &ExportError) {
        if self.state.falling_back.swap(true, Ordering::SeqCst) {
            return;
        }
        let event_log = local_log::lock(&self.local).location.clone();
        self.registry.emit(CollectorUnavailable {
            endpoint: self.transport.endpoint(),
            error: e,
            event_log: &event_log,
            spool_dir: self.spool.dir(),
        });
        for batch in self.spool.set_failing(true) {
            to_local(&self.spool, &self.local, &self.registry, &batch);
        }
    }

    fn recovered(&self) {
        self.state.falling_back.store(false, Ordering::SeqCst);
        self.spool.set_failing(false);
        self.registry.emit(CollectorRecovered {
            endpoint: self.transport.endpoint(),
            spooled_batches: self.spool.usage().batches,
        });
    }
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
    while let Some((payload, points, done)) = exports.recv().await {
        let result = transport.send(Signal::Metrics, payload).await;
        if let Err(e) = &result {
            registry.emit(ExportFailed {
                signal: Signal::Metrics,
                error: e.kind(),
            });
        }
        registry.emit(ItemsExported {
            signal: Signal::Metrics,
            items: points,
            error: result.as_ref().err().map(ExportError::kind),
        });
        let _ = done.send(result.map(|_| ()).map_err(|e| e.to_string()));
    }
}
