//! Drains the kernel ring buffer. The reader only reads and decodes: events
//! go into a bounded queue; a full queue drops and counts, so the ring
//! buffer keeps draining.

use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};
use tracing::warn;

use super::decode::{Event, decode};
use crate::stats::Stats;

/// Reads until `shutdown`. Then, if `drain_at_stop`, reads what is left:
/// the programs are detached by then, so that is everything. Pinned
/// programs stay and go on writing; what is left waits in the pinned ring
/// buffer for the next agent instead.
pub async fn run(
    ring: RingBuf<MapData>,
    queue: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
    drain_at_stop: bool,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd that owns the ring buffer exists.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &queue, &stats);
                guard.clear_ready();
            }
            _ = shutdown.changed() => {
                if drain_at_stop {
                    drain(fd.get_mut(), &queue, &stats);
                }
                return Ok(());
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, queue: &mpsc::Sender<Event>, stats: &Stats) {
    while let Some(item) = ring.next() {
        Stats::add(&stats.received, 1);
        match decode(&item) {
            Ok(event) => {
                if queue.try_send(event).is_err() {
                    let n = Stats::add(&stats.queue_drops, 1);
                    if n == 1 || n.is_power_of_two() {
                        warn!(dropped = n, "event queue full: events dropped");
                    }
                }
            }
            Err(err) => {
                let n = Stats::add(&stats.decode_errors, 1);
                if n <= 10 || n.is_power_of_two() {
                    warn!(
                        total = n,
                        "malformed kernel record ({} bytes): {err}",
                        item.len()
                    );
                }
            }
        }
    }
}
