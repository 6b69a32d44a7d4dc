//! The durable queue between the pipeline and the Collector: every batch
//! is written here first, one file per batch, and deleted only once the
//! Collector has acknowledged it. Batches go out oldest first, so a
//! Collector that comes back gets them in order; the files survive an agent
//! restart. Past the size cap the oldest batches are evicted, handed back
//! to the caller (which writes them to the local files) and counted.
//!
//! A file's name says all that the agent needs without reading it:
//! `<sequence>.<signal>.<records>.<r|l>`, `l` when its records are already
//! in the local files. Its contents are a frame, so that a file a crash or
//! a failing disk left torn or zero-filled is told apart from a whole one:
//!
//! | bytes  | what                                                       |
//! |--------|------------------------------------------------------------|
//! | 0..4   | magic, `7f 53 47 42` (`\x7fSGB`)                           |
//! | 4      | format version, 1                                          |
//! | 5..13  | payload length, u64 little-endian                          |
//! | 13..17 | CRC-32 (IEEE, as zlib's) of the payload, u32 little-endian |
//! | 17..   | payload: the encoded export request                        |
//!
//! A batch is written to `*.tmp`, synced, renamed and its directory synced
//! before the push returns, so a crash leaves either the whole batch or
//! nothing, and a batch the pipeline was told is spooled (and so did not
//! write to the local files) is on disk. Taking a batch out (removing,
//! setting aside, renaming to `l`) is not synced: a crash that undoes it
//! makes a batch be sent or written to the local files again, never lost.
//!
//! Files of the format before the frame, the bare export request, are
//! still taken over, so that an agent upgraded with batches in its spool
//! loses none of them. The first byte tells the formats apart without
//! doubt: a frame's, 0x7f, read as protobuf is a key of wire type 7, which
//! does not exist, so no export request starts with it. An empty file is
//! damaged in either format: as a bare request it holds no records, and as
//! a frame it is what a crash leaves of an unsynced write.
//!
//! A batch a previous run left is checked before it is taken over: one that
//! is torn, zero-filled or no longer decodes (a damaged disk, a hand-edited
//! file) would be refused by the Collector at every try and hold back every
//! batch behind it, so it is moved aside as `<name>.damaged` and reported.
//! Delivery does the same with a batch the Collector answers with an error
//! ([`Spool::set_aside`]).

use std::{
    collections::VecDeque,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;

pub use super::export::Signal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub signal: Signal,
    pub records: u64,
    /// The payload's length (the file has a header too).
    pub bytes: u64,
    /// Its records are already in the local files.
    pub local: bool,
    /// The kernel times (Unix ns) of its log records, for the latency
    /// metric, so that delivery need not decode the batch; empty for a
    /// batch a previous run left.
    pub times: std::sync::Arc<[u64]>,
    /// Its file is a bare payload, written before batches were framed.
    bare: bool,
}

impl Batch {
    fn file_name(&self) -> String {
        format!(
            "{:020}.{}.{}.{}",
            self.seq,
            self.signal.name(),
            self.records,
            if self.local { 'l' } else { 'r' }
        )
    }

    /// The batch a file name stands for; its size and format are not
    /// known until the file is read.
    fn parse(name: &str) -> Option<Batch> {
        let mut parts = name.split('.');
        let seq = parts.next()?.parse().ok()?;
        let signal = match parts.next()? {
            "logs" => Signal::Logs,
            "traces" => Signal::Traces,
            "metrics" => Signal::Metrics,
            _ => return None,
        };
        let records = parts.next()?.parse().ok()?;
        let local = match parts.next()? {
            "l" => true,
            "r" => false,
            _ => return None,
        };
        parts.next().is_none().then(|| Batch {
            seq,
            signal,
            records,
            bytes: 0,
            local,
            times: Default::default(),
            bare: false,
        })
    }
}

/// The first bytes of every batch file. The first, 0x7f, is what tells a
/// frame from a bare export request (see the module's comment).
const MAGIC: [u8; 4] = *b"\x7fSGB";
const VERSION: u8 = 1;
/// Magic, version, payload length (u64), CRC-32 of the payload (u32).
const HEADER_LEN: usize = MAGIC.len() + 1 + 8 + 4;

/// What [`Spool::read`] gives for a framed batch whose file no longer
/// verifies (damaged on disk since the spool took it over): bytes that no
/// export request decodes from, so that what is left of the file is never
/// taken as whole. Delivery asks [`Spool::payload`], which says why, and
/// sets such a batch aside without sending it.
const UNREADABLE: [u8; 4] = MAGIC;

fn header(payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5..13].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[13..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// How a batch file holds its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// After a header that verified.
    Framed,
    /// As the whole file: the format before the frame.
    Bare,
}

/// Why a batch file is not a whole batch.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Damage {
    #[error("empty file")]
    Empty,
    #[error("all {0} bytes are zero")]
    Zeroed(usize),
    #[error("cut short in its header: {0} of {HEADER_LEN} bytes")]
    ShortHeader(usize),
    #[error("not a spool frame: its magic is wrong")]
    Magic,
    #[error("spool format version {0}, which this agent does not read")]
    Version(u8),
    #[error("length mismatch: its header says {expected} bytes of payload, {actual} are there")]
    Length { expected: u64, actual: u64 },
    #[error(
        "checksum mismatch: the payload's CRC-32 is {actual:08x}, its header says {expected:08x}"
    )]
    Checksum { expected: u32, actual: u32 },
}

/// The payload in a batch file's bytes, and how it was stored; or why the
/// file is damaged.
fn unframe(bytes: &[u8]) -> Result<(Format, &[u8]), Damage> {
    if bytes.is_empty() {
        return Err(Damage::Empty);
    }
    // Checked in either format: a bare zero-filled file would not decode
    // either, but this names what happened (blocks the disk never wrote).
    if bytes.iter().all(|&b| b == 0) {
        return Err(Damage::Zeroed(bytes.len()));
    }
    if bytes[0] != MAGIC[0] {
        return Ok((Format::Bare, bytes));
    }
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(Damage::ShortHeader(bytes.len()));
    };
    if header[..4] != MAGIC {
        return Err(Damage::Magic);
    }
    if header[4] != VERSION {
        return Err(Damage::Version(header[4]));
    }
    let expected = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
    let actual = payload.len() as u64;
    if expected != actual {
        return Err(Damage::Length { expected, actual });
    }
    let expected = u32::from_le_bytes(header[13..].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(payload);
    if expected != actual {
        return Err(Damage::Checksum { expected, actual });
    }
    Ok((Format::Framed, payload))
}

/// Writes `payload`, framed, as `path` in `dir`, so that once it returns
/// the batch survives a crash, and a crash before leaves no file or the
/// whole one under `path` (never a torn one).
fn write_batch(dir: &Path, path: &Path, payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    if let Err(e) = write_synced(&tmp, payload).and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory is: until then a crash
    // can lose the batch, which the caller, told it is spooled, did not
    // write anywhere else.
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        // The caller will write the records elsewhere: a batch left behind
        // by a failed removal would be sent twice, not lost.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Writes the frame to `tmp` and syncs it. Synced before the rename: the
/// file system may otherwise write the rename before the data, and a crash
/// in between leaves the batch's name on an empty, short or zero-filled
/// file (ext4's delayed allocation does).
fn write_synced(tmp: &Path, payload: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(tmp)?;
    file.write_all(&header(payload))?;
    file.write_all(payload)?;
    file.sync_all()
}

/// A batch a previous run left that is torn, zero-filled or does not
/// decode, moved aside.
#[derive(Debug)]
pub struct Damaged {
    /// Where it is now (`<name>.damaged`, or where it was if it could not
    /// be moved).
    pub path: PathBuf,
    pub signal: Signal,
    pub records: u64,
    /// Its records are in the local files.
    pub local: bool,
    /// What is wrong with it.
    pub error: String,
}

/// Whether `payload` decodes as the export request of `signal`.
pub fn check(signal: Signal, payload: &[u8]) -> Result<(), prost::DecodeError> {
    match signal {
        Signal::Logs => ExportLogsServiceRequest::decode(payload).map(drop),
        Signal::Traces => ExportTraceServiceRequest::decode(payload).map(drop),
        Signal::Metrics => ExportMetricsServiceRequest::decode(payload).map(drop),
    }
}

/// What the spool holds, for metrics and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Records evicted by the size cap since the agent started.
    pub evicted_records: u64,
}

struct State {
    batches: VecDeque<Batch>,
    next_seq: u64,
    usage: Usage,
    /// The Collector is not answering: new batches must go to the local
    /// files as well (see [`Spool::set_failing`]).
    failing: bool,
}

/// What [`Spool::push_timed`] did.
#[derive(Debug)]
pub struct Pushed {
    /// The caller must write this batch's records to the local files now
    /// (the Collector is not answering), if they are not there already.
    pub to_local: bool,
    /// Batches evicted to stay under the cap, with their payloads, oldest
    /// first.
    pub evicted: Vec<(Batch, Vec<u8>)>,
}

/// The spool: one per agent while OpenTelemetry export is on, opened at
/// start (taking over what a previous run left) and shared (`Arc`) by the
/// pipeline, which pushes sealed batches, and the delivery task, which
/// sends the oldest and removes it once acknowledged; `status` and the
/// metrics read its [`Usage`]. Invariants: batches leave in the order they
/// came (by sequence number, also across restarts); a batch's file exists
/// whole or not at all; [`Usage`] always matches the batches held; the
/// newest batch is never evicted, so the cap can be passed by one batch.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    damaged: Vec<Damaged>,
}

#[derive(Debug, thiserror::Error)]
#[error("spool {dir}: {source}")]
pub struct SpoolError {
    dir: String,
    #[source]
    source: io::Error,
}

impl Spool {
    /// Opens (creating) the spool in `dir` and takes over the batches a
    /// previous run left there; those that are torn, zero-filled or do not
    /// decode are moved aside ([`Spool::damaged`]). Files it does not
    /// recognise are left alone.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let err = |source| SpoolError {
            dir: dir.display().to_string(),
            source,
        };
        // The spool holds audit records: only root reads it.
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(err)?;
        let mut batches = Vec::new();
        let mut damaged = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A batch whose write did not finish: never acknowledged
                // to anyone, never sent.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(batch) = Batch::parse(name) else {
                continue;
            };
            let checked = fs::read(entry.path())
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    let (format, payload) = unframe(&bytes).map_err(|e| e.to_string())?;
                    check(batch.signal, payload).map_err(|e| e.to_string())?;
                    Ok((format, payload.len() as u64))
                });
            match checked {
                Ok((format, bytes)) => batches.push(Batch {
                    bytes,
                    bare: format == Format::Bare,
                    ..batch
                }),
                Err(error) => {
                    let aside = dir.join(format!("{name}.damaged"));
                    let path = match fs::rename(entry.path(), &aside) {
                        Ok(()) => aside,
                        Err(_) => entry.path(),
                    };
                    damaged.push(Damaged {
                        path,
                        signal: batch.signal,
                        records: batch.records,
                        local: batch.local,
                        error,
                    });
                }
            }
        }
        batches.sort_by_key(|b| b.seq);
        let usage = Usage {
            batches: batches.len() as u64,
            records: batches.iter().map(|b| b.records).sum(),
            bytes: batches.iter().map(|b| b.bytes).sum(),
            evicted_records: 0,
        };
        let next_seq = batches.last().map_or(1, |b| b.seq + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                batches: batches.into(),
                next_seq,
                usage,
                failing: false,
            }),
            damaged,
        })
    }

    /// The batches a previous run left that were torn, zero-filled or did
    /// not decode.
    pub fn damaged(&self) -> &[Damaged] {
        &self.damaged
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent state:
        // every mutation below is complete before it can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch (`local`: its records are in the local files
    /// already). The one just added is never evicted.
    #[cfg(test)]
    pub fn push(
        &self,
        signal: Signal,
        payload: &[u8],
        records: u64,
        local: bool,
    ) -> Result<Pushed, SpoolError> {
        self.push_timed(signal, payload, records, local, Vec::new())
    }

    /// Appends a batch (`local`: its records are in the local files
    /// already), with the kernel times of its log records. The one just
    /// added is never evicted.
    pub fn push_timed(
        &self,
        signal: Signal,
        payload: &[u8],
        records: u64,
        local: bool,
        times: Vec<u64>,
    ) -> Result<Pushed, SpoolError> {
        let err = |source| SpoolError {
            dir: self.dir.display().to_string(),
            source,
        };
        let mut state = self.state();
        let to_local = !local && state.failing && signal == Signal::Logs;
        let batch = Batch {
            seq: state.next_seq,
            signal,
            records,
            bytes: payload.len() as u64,
            local: local || to_local,
            times: times.into(),
            bare: false,
        };
        write_batch(&self.dir, &self.dir.join(batch.file_name()), payload).map_err(err)?;
        state.next_seq += 1;
        state.usage.batches += 1;
        state.usage.records += records;
        state.usage.bytes += batch.bytes;
        state.batches.push_back(batch);

        let mut evicted = Vec::new();
        while state.usage.bytes > self.max_bytes && state.batches.len() > 1 {
            let old = state.batches.pop_front().expect("more than one batch");
            let payload = self.read(&old).unwrap_or_default();
            let _ = fs::remove_file(self.dir.join(old.file_name()));
            forget(&mut state.usage, &old);
            state.usage.evicted_records += old.records;
            evicted.push((old, payload));
        }
        Ok(Pushed { to_local, evicted })
    }

    /// Says whether the Collector answers. When it stops answering, the
    /// log batches waiting here that are not in the local files yet are
    /// returned, for the caller to write there (then [`Spool::mark_local`]);
    /// batches pushed from now on are flagged for the local files at once.
    pub fn set_failing(&self, failing: bool) -> Vec<Batch> {
        let mut state = self.state();
        state.failing = failing;
        if !failing {
            return Vec::new();
        }
        state
            .batches
            .iter()
            .filter(|b| !b.local && b.signal == Signal::Logs)
            .cloned()
            .collect()
    }

    /// The oldest batch, if any.
    pub fn front(&self) -> Option<Batch> {
        self.state().batches.front().cloned()
    }

    /// The batch's payload; `None` if it was evicted meanwhile. A batch
    /// damaged on disk since it was written reads as `UNREADABLE`; a
    /// bare one (see the module's comment) as its file, which delivery
    /// checks as it always did.
    pub fn read(&self, batch: &Batch) -> Option<Vec<u8>> {
        self.payload(batch)
            .map(|read| read.unwrap_or_else(|_| UNREADABLE.to_vec()))
    }

    /// The batch's payload, or why its file no longer holds a whole one
    /// (damaged on disk since it was written); `None` if it was evicted
    /// meanwhile. Delivery asks this before sending, so a damaged batch
    /// is set aside and never sent.
    pub fn payload(&self, batch: &Batch) -> Option<Result<Vec<u8>, String>> {
        let mut bytes = fs::read(self.dir.join(batch.file_name())).ok()?;
        if batch.bare {
            return Some(Ok(bytes));
        }
        Some(match unframe(&bytes) {
            Ok((Format::Framed, _)) => {
                bytes.drain(..HEADER_LEN);
                Ok(bytes)
            }
            // A framed batch's file that no longer starts like a frame is
            // damaged, whatever it now decodes as.
            Ok((Format::Bare, _)) => Err(Damage::Magic.to_string()),
            Err(damage) => Err(damage.to_string()),
        })
    }

    /// Removes an acknowledged batch. False if it was evicted meanwhile.
    pub fn remove(&self, batch: &Batch) -> bool {
        let mut state = self.state();
        let Some(i) = state.batches.iter().position(|b| b.seq == batch.seq) else {
            return false;
        };
        let old = state.batches.remove(i).expect("found above");
        let _ = fs::remove_file(self.dir.join(old.file_name()));
        forget(&mut state.usage, &old);
        true
    }

    /// Takes `batch`, which no longer decodes, out of the spool and moves
    /// its file aside as `<name>.damaged`; where the file is now, if the
    /// batch was still spooled.
    pub fn set_aside(&self, batch: &Batch) -> Option<PathBuf> {
        let mut state = self.state();
        let i = state.batches.iter().position(|b| b.seq == batch.seq)?;
        let old = state.batches.remove(i).expect("found above");
        forget(&mut state.usage, &old);
        let from = self.dir.join(old.file_name());
        let aside = self.dir.join(format!("{}.damaged", old.file_name()));
        Some(match fs::rename(&from, &aside) {
            Ok(()) => aside,
            Err(_) => from,
        })
    }

    /// Records that a batch's records are now in the local files too.
    pub fn mark_local(&self, batch: &Batch) {
        let mut state = self.state();
        if let Some(b) = state.batches.iter_mut().find(|b| b.seq == batch.seq) {
            let from = self.dir.join(b.file_name());
            b.local = true;
            let _ = fs::rename(from, self.dir.join(b.file_name()));
        }
    }

    pub fn usage(&self) -> Usage {
        self.state().usage
    }
}

fn forget(usage: &mut Usage, batch: &Batch) {
    usage.batches -= 1;
    usage.records -= batch.records;
    usage.bytes -= batch.bytes;
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::ResourceLogs;

    use super::*;

    /// A log batch that decodes, told apart by `n`.
    fn logs(n: u8) -> Vec<u8> {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                schema_url: n.to_string(),
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn batches_come_back_in_order_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5u8 {
                spool.push(Signal::Logs, &logs(i), 3, false).unwrap();
            }
            // An empty request: no spans.
            spool.push(Signal::Traces, b"", 1, false).unwrap();
            let first = spool.front().unwrap();
            assert!(spool.remove(&first));
            // A write that never finished.
            fs::write(dir.path().join("00000000000000000099.logs.1.r.tmp"), b"x").unwrap();
            fs::write(dir.path().join("notes.txt"), b"not a batch").unwrap();
        }
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let usage = spool.usage();
        assert_eq!(
            (usage.batches, usage.records, usage.bytes),
            (5, 13, 4 * logs(1).len() as u64)
        );
        let mut seen = Vec::new();
        while let Some(b) = spool.front() {
            seen.push((b.signal, spool.read(&b).unwrap()));
            assert!(spool.remove(&b));
        }
        assert_eq!(seen.len(), 5);
        for (i, (signal, payload)) in seen.iter().take(4).enumerate() {
            assert_eq!(*signal, Signal::Logs);
            assert_eq!(payload, &logs(i as u8 + 1));
        }
        assert_eq!(seen[4], (Signal::Traces, Vec::new()));
        assert!(
            !dir.path()
                .join("00000000000000000099.logs.1.r.tmp")
                .exists()
        );
        assert!(dir.path().join("notes.txt").exists());
        // Numbering goes on after the restart.
        spool.push(Signal::Logs, b"later", 1, false).unwrap();
        assert_eq!(spool.front().unwrap().seq, 7);
    }

    #[test]
    fn the_cap_evicts_oldest_first_and_counts_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 25).unwrap();
        assert!(
            spool
                .push(Signal::Logs, &[1; 10], 4, false)
                .unwrap()
                .evicted
                .is_empty()
        );
        assert!(
            spool
                .push(Signal::Logs, &[2; 10], 4, true)
                .unwrap()
                .evicted
                .is_empty()
        );
        let evicted = spool
            .push(Signal::Logs, &[3; 10], 4, false)
            .unwrap()
            .evicted;
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0.seq, 1);
        assert_eq!(
            evicted[0].1,
            vec![1; 10],
            "the payload comes back for the local files"
        );
        let usage = spool.usage();
        assert_eq!(
            (usage.batches, usage.bytes, usage.evicted_records),
            (2, 20, 4)
        );
        assert_eq!(spool.front().unwrap().seq, 2);
        assert!(spool.front().unwrap().local);
        // A batch bigger than the cap on its own is kept (the newest always is).
        let evicted = spool
            .push(Signal::Logs, &[4; 40], 1, false)
            .unwrap()
            .evicted;
        assert_eq!(evicted.len(), 2);
        assert_eq!(spool.usage().batches, 1);
    }

    #[test]
    fn a_batch_evicted_while_being_sent_is_not_removed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 15).unwrap();
        spool.push(Signal::Logs, &[1; 10], 1, false).unwrap();
        let sending = spool.front().unwrap();
        spool.push(Signal::Logs, &[2; 10], 1, false).unwrap();
        assert_eq!(spool.read(&sending), None);
        assert!(!spool.remove(&sending));
        assert_eq!(spool.usage().batches, 1);
    }

    #[test]
    fn while_failing_new_log_batches_go_to_the_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1000).unwrap();
        spool.push(Signal::Logs, b"a", 1, false).unwrap();
        spool.push(Signal::Logs, b"b", 1, true).unwrap();
        spool.push(Signal::Traces, b"c", 1, false).unwrap();
        let behind = spool.set_failing(true);
        assert_eq!(behind.len(), 1, "only the log batch not yet local");
        assert_eq!(behind[0].seq, 1);
        assert!(spool.push(Signal::Logs, b"d", 1, false).unwrap().to_local);
        assert!(!spool.push(Signal::Logs, b"e", 1, true).unwrap().to_local);
        assert!(spool.set_failing(false).is_empty());
        assert!(!spool.push(Signal::Logs, b"f", 1, false).unwrap().to_local);
    }

    #[test]
    fn mark_local_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 100).unwrap();
            spool.push(Signal::Logs, &logs(7), 1, false).unwrap();
            spool.mark_local(&spool.front().unwrap());
        }
        let spool = Spool::open(dir.path(), 100).unwrap();
        let b = spool.front().unwrap();
        assert!(b.local);
        assert_eq!(spool.read(&b).unwrap(), logs(7));
    }

    /// A damaged batch would be refused by the Collector at every try and
    /// hold back everything behind it: it is moved aside and named.
    #[test]
    fn a_batch_that_does_not_decode_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.push(Signal::Logs, &logs(1), 2, false).unwrap();
            spool.push(Signal::Logs, &logs(2), 3, false).unwrap();
            spool.push(Signal::Traces, b"", 1, false).unwrap();
        }
        let first = dir.path().join("00000000000000000001.logs.2.r");
        // Cut short: its outer length promises more than is there.
        let mut bytes = fs::read(&first).unwrap();
        bytes.truncate(bytes.len() - 1);
        fs::write(&first, bytes).unwrap();
        fs::write(
            dir.path().join("00000000000000000003.traces.1.r"),
            [0xff; 9],
        )
        .unwrap();

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let damaged = spool.damaged();
        assert_eq!(damaged.len(), 2, "{damaged:?}");
        let mut names: Vec<_> = damaged
            .iter()
            .map(|d| d.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000001.logs.2.r.damaged",
                "00000000000000000003.traces.1.r.damaged"
            ]
        );
        assert!(
            damaged
                .iter()
                .all(|d| d.path.exists() && !d.error.is_empty())
        );
        let logs_damaged = damaged.iter().find(|d| d.signal == Signal::Logs).unwrap();
        assert_eq!(logs_damaged.records, 2);
        // The good batch is the next to go, and the only one left.
        let usage = spool.usage();
        assert_eq!((usage.batches, usage.records), (1, 3));
        assert_eq!(spool.read(&spool.front().unwrap()).unwrap(), logs(2));
        // Damaged while spooled: taken out the same way.
        let good = spool.front().unwrap();
        let aside = spool.set_aside(&good).unwrap();
        assert!(aside.ends_with("00000000000000000002.logs.3.r.damaged"));
        assert!(aside.exists());
        assert_eq!(spool.usage().batches, 0);
        assert_eq!(spool.set_aside(&good), None, "only once");
        spool.push(Signal::Logs, &logs(4), 1, false).unwrap();
        // Moved aside for good: the next start does not see them again.
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.damaged().is_empty());
        assert_eq!(spool.usage().batches, 1);
        assert_eq!(spool.read(&spool.front().unwrap()).unwrap(), logs(4));
    }

    /// The name of a batch file, as the spool writes it.
    fn name(seq: u64, signal: &str, records: u64) -> String {
        format!("{seq:020}.{signal}.{records}.r")
    }

    /// The on-disk format is a contract with the next agent version (and
    /// with whoever inspects a spool): spelled out byte by byte.
    #[test]
    fn a_batch_file_is_a_header_then_the_payload() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(Signal::Logs, b"123456789", 1, false).unwrap();
        let file = fs::read(dir.path().join(name(1, "logs", 1))).unwrap();
        let mut expected = b"\x7fSGB\x01".to_vec();
        expected.extend(9u64.to_le_bytes());
        // The CRC-32 check value: of "123456789".
        expected.extend(0xcbf4_3926u32.to_le_bytes());
        expected.extend(b"123456789");
        assert_eq!(file, expected);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            1,
            "nothing left at a temporary name: {names:?}"
        );
    }

    /// What a crash (or a disk that lost writes) can leave: the batch's
    /// file cut at any length, or zero-filled. Each is told from a whole
    /// batch, moved aside and reported; the good batch behind them goes
    /// out intact.
    #[test]
    fn torn_and_zeroed_batches_are_set_aside_and_the_next_one_delivered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.push(Signal::Logs, &logs(1), 2, false).unwrap();
            spool.push(Signal::Logs, &logs(2), 3, false).unwrap();
        }
        let whole = fs::read(dir.path().join(name(1, "logs", 2))).unwrap();
        let good = fs::read(dir.path().join(name(2, "logs", 3))).unwrap();
        fs::remove_file(dir.path().join(name(1, "logs", 2))).unwrap();
        fs::remove_file(dir.path().join(name(2, "logs", 3))).unwrap();
        // Sequence numbers 1..=len: cut to 0..len bytes; then the zeroed
        // one; then the good one, last in line.
        let len = whole.len() as u64;
        for cut in 0..len {
            fs::write(
                dir.path().join(name(cut + 1, "logs", 2)),
                &whole[..cut as usize],
            )
            .unwrap();
        }
        let zeroed = name(len + 1, "logs", 2);
        fs::write(dir.path().join(&zeroed), vec![0; whole.len()]).unwrap();
        let good_seq = len + 2;
        fs::write(dir.path().join(name(good_seq, "logs", 3)), &good).unwrap();

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let damaged = spool.damaged();
        assert_eq!(damaged.len() as u64, len + 1, "{damaged:?}");
        assert!(damaged.iter().all(|d| d.records == 2 && !d.local));
        for seq in 1..=len + 1 {
            let name = name(seq, "logs", 2);
            let aside = dir.path().join(format!("{name}.damaged"));
            let d = damaged
                .iter()
                .find(|d| d.path == aside)
                .unwrap_or_else(|| panic!("{name} not reported: {damaged:?}"));
            assert!(!dir.path().join(&name).exists(), "{name}");
            // Left as it was, for whoever looks into it.
            let expected = if seq <= len {
                whole[..seq as usize - 1].to_vec()
            } else {
                vec![0; whole.len()]
            };
            assert_eq!(fs::read(&aside).unwrap(), expected, "{name}");
            assert!(!d.error.is_empty(), "{name}");
        }
        let error = |seq| {
            let aside = dir.path().join(format!("{}.damaged", name(seq, "logs", 2)));
            &damaged.iter().find(|d| d.path == aside).unwrap().error
        };
        assert_eq!(error(1), "empty file");
        assert_eq!(error(len + 1), &format!("all {len} bytes are zero"));
        assert_eq!(
            error(2),
            &format!("cut short in its header: 1 of {HEADER_LEN} bytes")
        );
        assert!(error(len).starts_with("length mismatch"), "{}", error(len));

        let usage = spool.usage();
        assert_eq!((usage.batches, usage.records), (1, 3));
        assert_eq!(usage.bytes, logs(2).len() as u64);
        let next = spool.front().unwrap();
        assert_eq!(next.seq, good_seq);
        assert_eq!(spool.read(&next).unwrap(), logs(2));
        assert!(spool.remove(&next));
        // Numbering goes on after the good one.
        spool.push(Signal::Logs, &logs(3), 1, false).unwrap();
        assert_eq!(spool.front().unwrap().seq, good_seq + 1);
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.damaged().is_empty());
        assert_eq!(spool.read(&spool.front().unwrap()).unwrap(), logs(3));
    }

    /// A batch whose file a bad checksum gives away: the length is right,
    /// a byte of the payload is not.
    #[test]
    fn a_batch_with_a_flipped_byte_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.push(Signal::Logs, &logs(1), 2, false).unwrap();
        }
        let path = dir.path().join(name(1, "logs", 2));
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, bytes).unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.damaged().len(), 1);
        assert!(
            spool.damaged()[0].error.starts_with("checksum mismatch"),
            "{:?}",
            spool.damaged()
        );
        assert_eq!(spool.usage().batches, 0);
    }

    /// Damaged while the agent runs: what is left is never handed out as
    /// the batch, but as bytes that do not decode, which delivery sets
    /// aside (`Delivery::set_aside_if_damaged`).
    #[test]
    fn a_batch_torn_while_spooled_reads_as_one_that_does_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(Signal::Logs, &logs(1), 2, false).unwrap();
        let batch = spool.front().unwrap();
        let path = dir.path().join(name(1, "logs", 2));
        let whole = fs::read(&path).unwrap();
        let zeroed = vec![0; whole.len()];
        for damaged in (0..whole.len())
            .map(|cut| &whole[..cut])
            .chain([&zeroed[..]])
        {
            fs::write(&path, damaged).unwrap();
            // Delivery is told it is damaged, and why, and sends nothing.
            let why = spool.payload(&batch).unwrap().unwrap_err();
            assert!(!why.is_empty());
            let payload = spool.read(&batch).unwrap();
            assert!(
                check(Signal::Logs, &payload).is_err(),
                "{} bytes of {} read as {payload:?}",
                damaged.len(),
                whole.len()
            );
        }
        fs::write(&path, &whole).unwrap();
        assert_eq!(spool.read(&batch).unwrap(), logs(1));
    }

    /// An agent upgraded with batches in its spool: those written before
    /// batches were framed are still sent, in order, with what their
    /// names say; new ones go after them.
    #[test]
    fn batches_of_the_previous_format_are_still_delivered() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name(1, "logs", 2)), logs(1)).unwrap();
        fs::write(dir.path().join("00000000000000000002.traces.1.l"), logs(2)).unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.damaged().is_empty(), "{:?}", spool.damaged());
        let usage = spool.usage();
        assert_eq!(
            (usage.batches, usage.records, usage.bytes),
            (2, 3, (logs(1).len() + logs(2).len()) as u64)
        );
        spool.push(Signal::Logs, &logs(3), 4, false).unwrap();
        let mut seen = Vec::new();
        while let Some(b) = spool.front() {
            seen.push((b.seq, b.signal, b.local, spool.read(&b).unwrap()));
            assert!(spool.remove(&b));
        }
        assert_eq!(
            seen,
            [
                (1, Signal::Logs, false, logs(1)),
                (2, Signal::Traces, true, logs(2)),
                (3, Signal::Logs, false, logs(3)),
            ]
        );
    }

    /// What lets a file of the previous format be told from a frame by its
    /// first byte: no export request starts with it, so the whole frame,
    /// read as a bare request, never decodes.
    #[test]
    fn no_export_request_starts_like_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(Signal::Logs, &logs(1), 1, false).unwrap();
        let frame = fs::read(dir.path().join(name(1, "logs", 1))).unwrap();
        for signal in [Signal::Logs, Signal::Traces, Signal::Metrics] {
            assert!(check(signal, &frame).is_err(), "{signal:?}");
            assert!(check(signal, &frame[..1]).is_err(), "{signal:?}");
        }
    }

    #[test]
    fn an_unusable_directory_is_a_clear_error() {
        let e = Spool::open(Path::new("/proc/safeguard-spool"), 100)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/proc/safeguard-spool"), "{e}");
    }
}
