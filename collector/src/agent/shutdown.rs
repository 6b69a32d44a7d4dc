//! Shutdown, front to back, so that nothing the kernel reported is left
//! unwritten.

use tracing::{info, warn};

use super::{Agent, Programs};
use crate::internal_events::AgentStopped;

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
///    once, with the kernel's drops read last.
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
    if let Some(exporter) = agent.exporter.take() {
        exporter.stop().await;
    }
    agent.domains.stop();
    // The socket goes with the server.
    agent.status.abort();
    let _ = (&mut agent.status).await;
    agent.read_kernel_drops();
    agent.registry.emit(AgentStopped);
}
