//! The local event log: failures to write it, and records written there
//! because the Collector did not answer.

use tracing::error;

use super::{Counter, InternalEvent, Registry, Throttle};

/// A write or flush of the local event log failed (a full disk, a removed
/// directory). The same for every writer: counted, and said doubling.
#[derive(Debug)]
pub struct EventLogWriteFailed<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for EventLogWriteFailed<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(Counter::EventLogWriteErrors, 1);
        if Throttle::DOUBLING.allows(n) {
            error!(failed = n, "cannot write the event log: {}", self.error);
        }
    }
}

/// Log records written to the local event log because the Collector did
/// not answer (or could not be given them: a full spool, a refused batch).
#[derive(Debug)]
pub struct FallbackRecordsWritten {
    pub records: u64,
}

impl InternalEvent for FallbackRecordsWritten {
    fn emit(self, registry: &Registry) {
        registry.add(Counter::FallbackRecords, self.records);
    }
}

/// A spooled log batch that no longer decodes (damaged on disk since it
/// was written), so its records cannot go to the local event log. Said
/// once per batch.
#[derive(Debug)]
pub struct LogBatchUndecodable<'a> {
    pub error: &'a prost::DecodeError,
}

impl InternalEvent for LogBatchUndecodable<'_> {
    fn emit(self, _registry: &Registry) {
        error!(
            "a spooled log batch does not decode ({}): its records cannot be written to the local event log",
            self.error
        );
    }
}
