//! Ring-buffer bytes → typed events. The record layouts are
//! `collector_common`'s; anything that does not fit them is an error that
//! names what was wrong, never a guess.

use collector_common::{
    Decision, EventHeader, EventKind, FILE_OPEN_EVENT_SIZE, FileOpenEvent, Hook, PATH_RELATIVE,
    PATH_TRUNCATED, ProcessInfo,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("{kind} record of {len} bytes is shorter than its {need} fixed bytes")]
    Truncated {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown hook {0}")]
    UnknownHook(u8),
    #[error("unknown decision {0}")]
    UnknownDecision(u8),
    #[error("path length {path_len} exceeds the {available} bytes after the fixed fields")]
    PathLength { path_len: usize, available: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub boot_ns: u64,
    pub hook: Hook,
    pub decision: Decision,
    /// `MODE_MONITOR` or `MODE_BLOCK`.
    pub mode: u8,
    pub rule_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub tid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpen {
    pub header: Header,
    pub process: Process,
    pub open_flags: u32,
    pub fmode: u32,
    pub dfd: i32,
    pub path: String,
    /// The path is relative to `dfd` (fallback tier).
    pub relative: bool,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    FileOpen(FileOpen),
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    match EventKind::from_u8(bytes[0]) {
        Some(EventKind::FileOpen) => decode_file_open(bytes).map(Event::FileOpen),
        None => Err(DecodeError::UnknownKind(bytes[0])),
    }
}

fn decode_file_open(bytes: &[u8]) -> Result<FileOpen, DecodeError> {
    if bytes.len() < FILE_OPEN_EVENT_SIZE {
        return Err(DecodeError::Truncated {
            kind: "file open",
            len: bytes.len(),
            need: FILE_OPEN_EVENT_SIZE,
        });
    }
    // SAFETY: length checked above; `FileOpenEvent` is plain old data and
    // the read tolerates any alignment.
    let raw: FileOpenEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let tail = &bytes[FILE_OPEN_EVENT_SIZE..];
    let path_len = usize::from(raw.path_len);
    let path = tail.get(..path_len).ok_or(DecodeError::PathLength {
        path_len,
        available: tail.len(),
    })?;
    Ok(FileOpen {
        header: header(&raw.header)?,
        process: process(&raw.process),
        open_flags: raw.open_flags,
        fmode: raw.fmode,
        dfd: raw.dfd,
        path: String::from_utf8_lossy(path).into_owned(),
        relative: raw.path_flags & PATH_RELATIVE != 0,
        truncated: raw.path_flags & PATH_TRUNCATED != 0,
    })
}

fn header(h: &EventHeader) -> Result<Header, DecodeError> {
    Ok(Header {
        seq: h.seq,
        boot_ns: h.boot_ns,
        hook: Hook::from_u8(h.hook).ok_or(DecodeError::UnknownHook(h.hook))?,
        decision: Decision::from_u8(h.decision).ok_or(DecodeError::UnknownDecision(h.decision))?,
        mode: h.mode,
        rule_id: h.rule_id,
    })
}

fn process(p: &ProcessInfo) -> Process {
    let comm_len = p.comm.iter().position(|&b| b == 0).unwrap_or(p.comm.len());
    Process {
        tid: p.tid,
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        cgroup_id: p.cgroup_id,
        comm: String::from_utf8_lossy(&p.comm[..comm_len]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use collector_common::{COMM_LEN, MODE_BLOCK};

    use super::*;

    fn record(path: &[u8], path_len: u16) -> Vec<u8> {
        let mut comm = [0u8; COMM_LEN];
        comm[..3].copy_from_slice(b"cat");
        let ev = FileOpenEvent {
            header: EventHeader {
                kind: EventKind::FileOpen as u8,
                hook: Hook::LsmFileOpen as u8,
                decision: Decision::Blocked as u8,
                mode: MODE_BLOCK,
                rule_id: 3,
                seq: 42,
                boot_ns: 1_000,
            },
            process: ProcessInfo {
                tid: 11,
                pid: 10,
                ppid: 1,
                uid: 1000,
                gid: 100,
                _pad: 0,
                cgroup_id: 77,
                comm,
            },
            open_flags: 0o100,
            fmode: 0,
            dfd: -100,
            path_len,
            path_flags: 0,
            _pad: 0,
        };
        // SAFETY: viewing a plain old data struct as bytes.
        let fixed = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const FileOpenEvent).cast::<u8>(),
                FILE_OPEN_EVENT_SIZE,
            )
        };
        let mut bytes = fixed.to_vec();
        bytes.extend_from_slice(path);
        bytes
    }

    #[test]
    fn decodes_a_file_open_record() {
        let Event::FileOpen(ev) = decode(&record(b"/etc/secret/x", 13)).unwrap();
        assert_eq!(ev.path, "/etc/secret/x");
        assert_eq!(ev.header.seq, 42);
        assert_eq!(ev.header.decision, Decision::Blocked);
        assert_eq!(ev.header.rule_id, 3);
        assert_eq!(ev.process.comm, "cat");
        assert_eq!(
            (ev.process.pid, ev.process.tid, ev.process.ppid),
            (10, 11, 1)
        );
        assert_eq!((ev.process.uid, ev.process.gid), (1000, 100));
        assert!(!ev.relative);
    }

    #[test]
    fn rejects_malformed_records_with_a_reason() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
        let mut bad_kind = record(b"/x", 2);
        bad_kind[0] = 99;
        assert_eq!(decode(&bad_kind), Err(DecodeError::UnknownKind(99)));
        let full = record(b"/x", 2);
        assert!(matches!(
            decode(&full[..40]),
            Err(DecodeError::Truncated { len: 40, .. })
        ));
        assert_eq!(
            decode(&record(b"/x", 200)),
            Err(DecodeError::PathLength {
                path_len: 200,
                available: 2
            })
        );
        let mut bad_decision = record(b"/x", 2);
        bad_decision[2] = 9;
        assert_eq!(decode(&bad_decision), Err(DecodeError::UnknownDecision(9)));
    }
}
