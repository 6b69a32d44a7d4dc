//! Shutdown, front to back, so that nothing the kernel reported is left
//! unwritten.

use tracing::{info, warn};

use super::{Agent, Programs};
use crate::stats::Stats;

/// Stops the agent in this order:
///
/// 1. The programs are detached: nothing new reaches the ring buffer
///    (pinned programs stay, and what they report waits in the pinned ring
///    buffer for the next agent).
/// 2. The reader drains what the ring buffer holds and ends.
/// 3. The queue is emptied through enrich and the pipeline, which then
///    ends the spans of processes still running and seals its last batch.
/// 4. Delivery sends the spool to the Collector until it is empty (or the
///    Collector is away: it stays on disk for the next start), then the
///    final metrics go out.
/// 5. The domain watch and the status socket go; the counters are said
///    once.
pub async fn shutdown<K: Programs>(mut agent: Agent<K>) {
    info!("stopping");
    agent.kernel.detach();
    let _ = agent.stop_reader.send(true);
    match (&mut agent.reader).await {
        Ok(Err(e)) => warn!("ring buffer reader: {e}"),
        Err(e) => warn!("ring buffer reader: {e}"),
        Ok(Ok(())) => {}
    }
    while let Some(event) = agent.queue.recv().await {
        if let Some(record) = agent.enricher.enrich(event) {
            agent.pipeline.push(record);
        }
    }
    agent.pipeline.finish();
    agent.read_kernel_drops();
    if let Some(exporter) = agent.exporter {
        exporter.stop().await;
    }
    agent.domains.stop();
    // The socket goes with the server.
    agent.status.abort();
    let _ = agent.status.await;
    summarize(&agent.kernel, &agent.stats);
}

/// One line with every counter, as the agent stops.
fn summarize(kernel: &impl Programs, stats: &Stats) {
    let kernel_drops: u64 = match kernel.kernel_drops() {
        Ok(d) => d.iter().map(|(_, _, n)| n).sum(),
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
