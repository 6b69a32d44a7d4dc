use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use collector_common::{DropReason, Hook};

use super::*;
use crate::telemetry::export::{ErrorType, ExportError, Signal};

/// The lines `f` logs, as the agent prints them (level, message, fields;
/// no time).
fn said(f: impl FnOnce()) -> Vec<String> {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    out.lines().map(|l| l.trim_start().to_owned()).collect()
}

#[test]
fn each_happening_counts_in_its_counter() {
    let r = Registry::default();
    for _ in 0..3 {
        r.emit(KernelRecordReceived);
    }
    r.emit(EventReported);
    r.emit(PathUnresolved);
    r.emit(FallbackRecordsWritten { records: 40 });
    r.emit(FallbackRecordsWritten { records: 2 });
    r.emit(ReloadApplied { rules: 3 });
    assert_eq!(r.get(Counter::Received), 3);
    assert_eq!(r.get(Counter::Reported), 1);
    assert_eq!(r.get(Counter::UnresolvedPaths), 1);
    assert_eq!(r.get(Counter::FallbackRecords), 42);
    assert_eq!(r.get(Counter::Reloads), 1);
    assert_eq!(r.get(Counter::QueueDrops), 0);
    assert_eq!(r.get(Counter::ReloadFailures), 0);
}

#[test]
fn a_flood_is_counted_whole_and_said_doubling_with_its_total() {
    let r = Registry::default();
    let lines = said(|| {
        for _ in 0..100 {
            r.emit(QueueFull);
        }
    });
    assert_eq!(r.get(Counter::QueueDrops), 100);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert_eq!(lines[0], "WARN event queue full: events dropped dropped=1");
    assert_eq!(lines[6], "WARN event queue full: events dropped dropped=64");
}

#[test]
fn every_event_log_failure_is_counted_and_said_one_way() {
    let r = Registry::default();
    let error = std::io::Error::from_raw_os_error(libc::ENOSPC);
    let lines = said(|| {
        for _ in 0..5 {
            r.emit(EventLogWriteFailed { error: &error });
        }
    });
    assert_eq!(r.get(Counter::EventLogWriteErrors), 5);
    assert_eq!(lines.len(), 3, "1st, 2nd, 4th: {lines:#?}");
    assert!(
        lines[0].starts_with("ERROR cannot write the event log: No space left on device"),
        "{}",
        lines[0]
    );
    assert!(lines[2].ends_with("failed=4"), "{}", lines[2]);
}

#[test]
fn the_first_ten_malformed_records_are_each_said() {
    let r = Registry::default();
    let error = crate::events::decode::decode(&[]).err().unwrap();
    let lines = said(|| {
        for _ in 0..20 {
            r.emit(KernelRecordMalformed {
                bytes: 0,
                error: &error,
            });
        }
    });
    assert_eq!(r.get(Counter::DecodeErrors), 20);
    assert_eq!(lines.len(), 11, "1 to 10, then 16: {lines:#?}");
    assert!(lines[10].ends_with("total=16"), "{}", lines[10]);
}

#[test]
fn export_failures_are_counted_per_signal_and_error_type() {
    let r = Registry::default();
    let refused = ExportError::Rejected {
        kind: ErrorType::Http(400),
        message: "bad".into(),
    };
    r.emit(ExportFailed {
        signal: Signal::Logs,
        error: ErrorType::Unavailable,
    });
    r.emit(ExportFailed {
        signal: Signal::Logs,
        error: ErrorType::Unavailable,
    });
    r.emit(ExportFailed {
        signal: Signal::Metrics,
        error: ErrorType::Unavailable,
    });
    let lines = said(|| {
        r.emit(ExportRejected {
            signal: Signal::Traces,
            records: 7,
            error: &refused,
        });
        r.emit(SpoolBatchDamaged {
            signal: Signal::Logs,
            records: 2,
            error: &"truncated",
            path: Path::new("/spool/1.logs.2.l.damaged"),
            in_local_log: true,
        });
    });
    let counted: Vec<(Signal, String, u64)> = r
        .export_failures()
        .iter()
        .map(|f| (f.signal, f.error.to_string(), f.requests))
        .collect();
    assert_eq!(
        counted,
        [
            (Signal::Logs, "unavailable".into(), 2),
            (Signal::Metrics, "unavailable".into(), 1),
            (Signal::Traces, "400".into(), 1),
            (Signal::Logs, "encoding".into(), 1),
        ]
    );
    assert!(
        lines[0].starts_with("ERROR the Collector refused a traces batch: rejected: bad;"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "ERROR a spooled logs batch does not decode (truncated): moved to /spool/1.logs.2.l.damaged, not sent (its records are in the local event log) records=2"
    );
}

/// `otel.sdk.exporter.*.exported`: items counted once, at their final
/// outcome; a failed try that will be retried is not one.
#[test]
fn exported_items_are_counted_at_their_final_outcome() {
    let r = Registry::default();
    let refused = ExportError::Rejected {
        kind: ErrorType::Http(400),
        message: "bad".into(),
    };
    let _ = said(|| {
        // A try that fails: the batch stays in the spool.
        r.emit(ExportFailed {
            signal: Signal::Logs,
            error: ErrorType::Unavailable,
        });
        // Delivered later: 10 records, of which the Collector dropped 3.
        r.emit(ItemsExported {
            signal: Signal::Logs,
            items: 7,
            error: None,
        });
        r.emit(ExportPartial {
            signal: Signal::Logs,
            rejected: 3,
            message: "3 dropped",
        });
        r.emit(ItemsExported {
            signal: Signal::Logs,
            items: 5,
            error: None,
        });
        r.emit(ExportRejected {
            signal: Signal::Traces,
            records: 4,
            error: &refused,
        });
        r.emit(SpoolBatchEvicted {
            signal: Signal::Logs,
            records: 6,
            spool_bytes: 100,
        });
        r.emit(SpoolBatchDamaged {
            signal: Signal::Traces,
            records: 2,
            error: &"truncated",
            path: Path::new("/spool/1.traces.2.r.damaged"),
            in_local_log: false,
        });
        r.emit(ItemsExported {
            signal: Signal::Metrics,
            items: 0,
            error: Some(ErrorType::Timeout),
        });
    });
    let counted: Vec<(Signal, Option<String>, u64)> = r
        .exported()
        .iter()
        .map(|e| (e.signal, e.error.map(|k| k.name().into_owned()), e.items))
        .collect();
    assert_eq!(
        counted,
        [
            (Signal::Logs, None, 12),
            (Signal::Logs, Some("rejected".into()), 3),
            (Signal::Traces, Some("400".into()), 4),
            (Signal::Logs, Some("spool".into()), 6),
            (Signal::Traces, Some("encoding".into()), 2),
        ]
    );
}

#[test]
fn kernel_drops_are_replaced_by_each_read_and_kept_when_unreadable() {
    let r = Registry::default();
    r.emit(KernelDropsRead {
        drops: vec![
            (Hook::LsmFileOpen, DropReason::RingFull, 4),
            (Hook::TpOpenat, DropReason::Sampled, 1),
        ],
    });
    r.emit(KernelDropsRead {
        drops: vec![
            (Hook::LsmFileOpen, DropReason::RingFull, 6),
            (Hook::TpOpenat, DropReason::Sampled, 1),
        ],
    });
    let lines = said(|| r.emit(KernelDropsUnreadable { error: &"gone" }));
    assert_eq!(lines, ["WARN cannot read kernel drop counters: gone"]);
    assert_eq!(r.kernel_drops_total(), 7);
    assert_eq!(
        r.kernel_drops()[1],
        KernelDrops {
            hook: "tracepoint/syscalls/sys_enter_openat",
            reason: "sampled",
            records: 1
        }
    );
}

/// Tests and operators read the stop summary's fields.
#[test]
fn the_stop_summary_reads_the_registry() {
    let r = Registry::default();
    r.emit(KernelRecordReceived);
    r.emit(KernelRecordReceived);
    r.emit(EventReported);
    r.emit(QueueFull);
    r.emit(KernelDropsRead {
        drops: vec![(Hook::LsmFileOpen, DropReason::RingFull, 5)],
    });
    let lines = said(|| {
        r.emit(AgentStopped);
    });
    let stop = lines.last().unwrap();
    assert_eq!(
        stop,
        "INFO stopped received=2 written=1 kernel_drops=5 queue_drops=1 decode_errors=0 unresolved_paths=0 write_errors=0"
    );
}

const README: &str = include_str!("../../../README.md");

/// The README quotes what the agent says when the Collector goes away and
/// comes back.
#[test]
fn readme_quotes_the_fall_back_messages_as_the_agent_prints_them() {
    let r = Registry::default();
    let error = ExportError::Retry {
        kind: ErrorType::Unavailable,
        message:
            "unavailable: tcp connect error: transport error: Connection refused (os error 111)"
                .into(),
    };
    let lines = said(|| {
        r.emit(CollectorUnavailable {
            endpoint: "http://localhost:4317",
            error: &error,
            event_log: "/var/log/safeguard/events.log",
            spool_dir: Path::new("/var/lib/safeguard/spool"),
        });
        r.emit(CollectorRecovered {
            endpoint: "http://localhost:4317",
            spooled_batches: 3,
        });
    });
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for line in &lines {
        // The README leaves out the fields after the message.
        let quoted = README
            .lines()
            .find(|l| (l.starts_with("WARN ") || l.starts_with("INFO ")) && line.starts_with(*l));
        assert!(quoted.is_some(), "README.md does not quote:\n{line}");
    }
}

/// The README quotes what the agent says when `safeguard stop` asks it to
/// stop, and when someone other than root asks.
#[test]
fn readme_quotes_the_stop_request_messages() {
    use crate::status::{Peer, refusal};

    let r = Registry::default();
    let root = Peer {
        pid: Some(4242),
        uid: 0,
    };
    let nobody = Peer {
        pid: Some(4243),
        uid: 65534,
    };
    let lines = said(|| {
        r.emit(StopRequested { by: &root });
        for _ in 0..3 {
            r.emit(StopRefused {
                why: &refusal(Some(nobody)),
            });
        }
    });
    assert_eq!(r.get(Counter::StopsRefused), 3);
    assert_eq!(lines.len(), 3, "the 3rd refusal is not said: {lines:#?}");
    assert_eq!(
        lines[0],
        "INFO stop requested over the status socket by pid 4242 uid 0"
    );
    for line in &lines {
        let quoted = README
            .lines()
            .find(|l| (l.starts_with("WARN ") || l.starts_with("INFO ")) && line.starts_with(*l));
        assert!(quoted.is_some(), "README.md does not quote:\n{line}");
    }
}
