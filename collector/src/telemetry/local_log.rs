//! The local event log as the pipeline and the delivery task share it:
//! every write and flush goes through here, so a failure is counted and
//! said one way ([`EventLogWriteFailed`]) wherever it happens.

use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, logs::v1::LogRecord,
};
use prost::Message as _;

use crate::{
    internal_events::{EventLogWriteFailed, LogBatchUndecodable, Registry},
    output::EventLog,
};

/// The local event log, shared by the pipeline and the delivery task.
pub type SharedLog = Arc<Mutex<EventLog>>;

pub(crate) fn lock(log: &SharedLog) -> MutexGuard<'_, EventLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `records`, one line each; false (counted and said) if the log
/// cannot be written.
pub(crate) fn write(log: &SharedLog, records: &[LogRecord], registry: &Registry) -> bool {
    let result = {
        let mut log = lock(log);
        records.iter().try_for_each(|r| log.write(r))
    };
    said(result, registry)
}

/// Writes `records` and flushes, so they are on disk before the caller
/// counts on it; false (counted and said) if the log cannot be written.
pub(crate) fn write_flushed(log: &SharedLog, records: &[LogRecord], registry: &Registry) -> bool {
    let result = {
        let mut log = lock(log);
        records
            .iter()
            .try_for_each(|r| log.write(r))
            .and_then(|()| log.flush())
    };
    said(result, registry)
}

/// Flushes what was written; false (counted and said) if that fails.
pub(crate) fn flush(log: &SharedLog, registry: &Registry) -> bool {
    let result = lock(log).flush();
    said(result, registry)
}

fn said(result: std::io::Result<()>, registry: &Registry) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            registry.emit(EventLogWriteFailed { error: &error });
            false
        }
    }
}

/// The log records of a spooled batch; none, said once per batch, if it
/// was damaged on disk since it was written (batches a previous run left
/// are checked when the spool opens).
pub(crate) fn log_records(payload: &[u8], registry: &Registry) -> Vec<LogRecord> {
    match ExportLogsServiceRequest::decode(payload) {
        Ok(r) => r
            .resource_logs
            .into_iter()
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .collect(),
        Err(error) => {
            registry.emit(LogBatchUndecodable { error: &error });
            Vec::new()
        }
    }
}
