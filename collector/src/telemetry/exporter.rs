//! The running OTLP export: the spool, the delivery task that sends it to
//! the Collector, and the metrics pipeline. Started before the kernel
//! programs, stopped after the pipeline has sealed its last batch.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use super::{
    Export, ExportState, SharedLog, deliver,
    export::Transport,
    forward_metrics,
    metrics::{Metrics, Observed},
    resource,
    spool::Spool,
};
use crate::{
    config::Config,
    internal_events::{Registry, SpoolBatchDamaged},
};

pub struct Exporter {
    pub resource: opentelemetry_sdk::Resource,
    pub spool: Arc<Spool>,
    pub state: Arc<ExportState>,
    pub metrics: Arc<Metrics>,
    deliver: JoinHandle<()>,
    stop_delivery: watch::Sender<bool>,
    forwarder: JoinHandle<()>,
}

impl Exporter {
    /// Opens the spool (saying what a previous run left there), and starts
    /// delivery and the metrics pipeline.
    pub fn start(
        config: &Config,
        registry: &Arc<Registry>,
        local: &SharedLog,
        observed: &Arc<Observed>,
    ) -> anyhow::Result<Self> {
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
        let resource = resource::resource();
        let (exports_tx, exports_rx) = mpsc::channel(4);
        let forwarder = tokio::spawn(forward_metrics(
            transport.clone(),
            exports_rx,
            registry.clone(),
        ));
        let metrics = Arc::new(Metrics::new(
            resource.clone(),
            None,
            otel.protocol,
            exports_tx,
            registry.clone(),
            Some(spool.clone()),
            observed.clone(),
        ));
        let state = Arc::new(ExportState::default());
        let (stop_delivery, stop) = watch::channel(false);
        let deliver = tokio::spawn(deliver(
            transport,
            spool.clone(),
            state.clone(),
            local.clone(),
            metrics.clone(),
            registry.clone(),
            stop,
        ));
        Ok(Self {
            resource,
            spool,
            state,
            metrics,
            deliver,
            stop_delivery,
            forwarder,
        })
    }

    /// What the pipeline needs to spool batches for this export.
    pub fn pipeline_export(&self, config: &Config) -> Export {
        Export {
            spool: self.spool.clone(),
            state: self.state.clone(),
            batch_size: config.otel.batch_size,
            batch_timeout: Duration::from_millis(config.otel.batch_timeout_ms),
        }
    }

    /// Call once everything is in the spool: delivery sends what it holds
    /// and stops (once it is empty, or the Collector is away); then the
    /// final metrics export, bounded, since the Collector may be away.
    pub async fn stop(self) {
        let _ = self.stop_delivery.send(true);
        if let Err(e) = self.deliver.await {
            warn!("delivery: {e}");
        }
        let metrics = self.metrics.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || metrics.shutdown()),
        )
        .await;
        self.forwarder.abort();
    }
}
