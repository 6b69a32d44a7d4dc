//! Raw kernel records saved to a file (`safeguard run --record FILE`) and
//! read back: the pipeline benchmark replays real events through the
//! stages, and a bug report can carry the records that caused it.
//!
//! The format is the line [`MAGIC`], then per record its length (4 bytes,
//! little-endian) and its bytes as the ring buffer held them. Written by
//! hand: the records are bytes already, a length prefix is all they need.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// First line of a recording; the number is the format's version.
pub const MAGIC: &[u8] = b"safeguard-records 1\n";

pub struct Recorder {
    out: BufWriter<File>,
    path: PathBuf,
    records: u64,
}

impl Recorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("cannot create the recording {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)
            .with_context(|| format!("cannot write the recording {}", path.display()))?;
        Ok(Self {
            out,
            path: path.to_owned(),
            records: 0,
        })
    }

    pub fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(record)?;
        self.records += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn records(&self) -> u64 {
        self.records
    }
}

/// Every record in the recording at `path`.
pub fn read(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a usable recording", path.display()))
}

pub fn parse(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        bail!(
            "it does not start with {:?} (written by `safeguard run --record`)",
            String::from_utf8_lossy(MAGIC).trim_end()
        );
    };
    let mut records = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            bail!("it ends inside the length of record {}", records.len() + 1);
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            bail!(
                "record {} says {len} bytes but only {} are left",
                records.len() + 1,
                tail.len()
            );
        }
        let (record, tail) = tail.split_at(len);
        records.push(record.to_vec());
        rest = tail;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let mut rec = Recorder::create(&path).unwrap();
        rec.write(b"first").unwrap();
        rec.write(b"").unwrap();
        rec.write(&[7u8; 300]).unwrap();
        rec.flush().unwrap();
        assert_eq!(rec.records(), 3);
        assert_eq!(
            read(&path).unwrap(),
            vec![b"first".to_vec(), Vec::new(), vec![7u8; 300]]
        );
    }

    /// The pipeline benchmark's recording still fits the ABI: re-record it
    /// (see benches/pipeline.rs) when this fails.
    #[test]
    fn the_benchmark_recording_decodes() {
        use std::io::Read as _;

        use crate::events::{Event, decode::decode};

        let path = safeguard_test_support::workspace_root()
            .join("collector/benches/data/host-audit.rec.gz");
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        let records = parse(&bytes).unwrap();
        assert_eq!(records.len(), 7_984);
        let mut kinds = [0usize; 4];
        let mut relative_with_base = 0;
        for (i, record) in records.iter().enumerate() {
            match decode(record).unwrap_or_else(|e| panic!("record {i}: {e}")) {
                Event::File(f) => {
                    kinds[0] += 1;
                    relative_with_base += usize::from(f.relative && f.base.is_some());
                }
                Event::Fork(_) => kinds[1] += 1,
                Event::Exec(_) => kinds[2] += 1,
                Event::Exit(_) => kinds[3] += 1,
                other => panic!("record {i}: not from this recording's workload: {other:?}"),
            }
        }
        assert!(
            kinds.iter().all(|&n| n > 100),
            "file, fork, exec, exit: {kinds:?}"
        );
        // A quarter of Python's 4,000 opens, with the directory the kernel
        // saw.
        assert_eq!(relative_with_base, 1_000);
    }

    #[test]
    fn damage_is_named() {
        let err = parse(b"something else").unwrap_err().to_string();
        assert!(err.contains("does not start with"), "{err}");
        let mut cut = MAGIC.to_vec();
        cut.extend_from_slice(&10u32.to_le_bytes());
        cut.extend_from_slice(b"abc");
        let err = parse(&cut).unwrap_err().to_string();
        assert_eq!(err, "record 1 says 10 bytes but only 3 are left");
        let mut cut = MAGIC.to_vec();
        cut.extend_from_slice(&[1, 0]);
        let err = parse(&cut).unwrap_err().to_string();
        assert_eq!(err, "it ends inside the length of record 1");
    }
}
