//! Drains the kernel ring buffer. The reader only reads and decodes: events
//! go into a bounded queue; a full queue drops and counts, so the ring
//! buffer keeps draining.

use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};
use tracing::{info, warn};

use super::{
    decode::{Event, decode},
    recording::Recorder,
};
use crate::internal_events::{KernelRecordMalformed, KernelRecordReceived, QueueFull, Registry};

/// How long a record may wait in the ring buffer when the programs did not
/// wake the reader, while records come.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// The same when nothing came for a while: the interval doubles after each
/// empty drain up to this, so an idle agent wakes five times a second, not
/// twenty, and the first records after a quiet spell wait at most this.
pub const IDLE_DRAIN_INTERVAL: Duration = Duration::from_millis(200);

/// Reads until `shutdown`. Then, if `drain_at_stop`, reads what is left:
/// the programs are detached by then, so that is everything. Pinned
/// programs stay and go on writing; what is left waits in the pinned ring
/// buffer for the next agent instead.
pub async fn run(
    ring: RingBuf<MapData>,
    queue: mpsc::Sender<Event>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
    drain_at_stop: bool,
    mut recorder: Option<Recorder>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd that owns the ring buffer exists.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
    // The programs wake the reader only once much is waiting (see
    // `submit` in the eBPF crate); the rest is picked up on this tick.
    let mut interval = DRAIN_INTERVAL;
    let tick = tokio::time::sleep(interval);
    tokio::pin!(tick);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &queue, &registry, &mut recorder);
                guard.clear_ready();
                interval = DRAIN_INTERVAL;
            }
            () = &mut tick => {
                interval = if drain(fd.get_mut(), &queue, &registry, &mut recorder) == 0 {
                    (interval * 2).min(IDLE_DRAIN_INTERVAL)
                } else {
                    DRAIN_INTERVAL
                };
                flush(&mut recorder);
                tick.as_mut().reset(tokio::time::Instant::now() + interval);
            }
            _ = shutdown.changed() => {
                if drain_at_stop {
                    drain(fd.get_mut(), &queue, &registry, &mut recorder);
                }
                flush(&mut recorder);
                if let Some(r) = &recorder {
                    info!(records = r.records(), "recorded to {}", r.path().display());
                }
                return Ok(());
            }
        }
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    queue: &mpsc::Sender<Event>,
    registry: &Registry,
    recorder: &mut Option<Recorder>,
) -> usize {
    let mut drained = 0;
    while let Some(item) = ring.next() {
        drained += 1;
        registry.emit(KernelRecordReceived);
        if let Some(r) = recorder
            && let Err(e) = r.write(&item)
        {
            stop_recording(recorder, &e);
        }
        match decode(&item) {
            Ok(event) => {
                if queue.try_send(event).is_err() {
                    registry.emit(QueueFull);
                }
            }
            Err(error) => registry.emit(KernelRecordMalformed {
                bytes: item.len(),
                error: &error,
            }),
        }
    }
    drained
}

fn flush(recorder: &mut Option<Recorder>) {
    if let Some(r) = recorder
        && let Err(e) = r.flush()
    {
        stop_recording(recorder, &e);
    }
}

/// A recording that cannot be written ends; the agent goes on.
fn stop_recording(recorder: &mut Option<Recorder>, e: &std::io::Error) {
    if let Some(r) = recorder.take() {
        warn!(
            records = r.records(),
            "cannot write the recording {}: {e}; recording stopped",
            r.path().display()
        );
    }
}
