//! The local event log: one line per record, JSON or text (safeguard's
//! formats), on stdout or in a file rotated by size and pruned by age, with
//! the configured labels on every line. It is fed OTLP log records, so a
//! line says exactly what the Collector would have received.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use file_rotate::{
    ContentLimit, FileRotate,
    compression::Compression,
    suffix::{AppendTimestamp, FileLimit},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, any_value},
    logs::v1::LogRecord,
};
use serde_json::{Map, Value as Json};

use crate::config::{LogConfig, LogFormat, Output};

/// Keys of the line envelope (the attributes use `semconv` keys).
const TIME: &str = "time";
const EVENT_NAME: &str = semconv::event::NAME_KEY;
const SEVERITY: &str = "severity";
const SEVERITY_NUMBER: &str = "severity_number";
const TRACE_ID: &str = "trace_id";
const SPAN_ID: &str = "span_id";

#[derive(Debug, thiserror::Error)]
#[error("cannot open the event log {path}: {source}")]
pub struct OpenError {
    path: String,
    #[source]
    source: io::Error,
}

enum Sink {
    Stdout(io::Stdout),
    File(BufWriter<FileRotate<AppendTimestamp>>),
}

pub struct EventLog {
    sink: Sink,
    format: LogFormat,
    labels: BTreeMap<String, String>,
    /// What the operator is told: `stdout` or the file's path.
    pub location: String,
    line: Vec<u8>,
}

impl EventLog {
    pub fn open(config: &LogConfig, output: &Output) -> Result<Self, OpenError> {
        let (sink, location) = match output {
            Output::Stdout => (Sink::Stdout(io::stdout()), "stdout".to_string()),
            Output::File(path) => (
                Sink::File(BufWriter::with_capacity(
                    64 * 1024,
                    open_rotating(path, config.max_size_mb, config.max_age_days)?,
                )),
                path.display().to_string(),
            ),
        };
        Ok(Self {
            sink,
            format: config.format,
            labels: config.labels.clone(),
            location,
            line: Vec::with_capacity(1024),
        })
    }

    /// Writes one record as one line.
    pub fn write(&mut self, record: &LogRecord) -> io::Result<()> {
        self.line.clear();
        match self.format {
            LogFormat::Json => {
                serde_json::to_writer(&mut self.line, &json(record, &self.labels))?;
            }
            LogFormat::Text => self
                .line
                .extend_from_slice(text(record, &self.labels).as_bytes()),
        }
        self.line.push(b'\n');
        // One write per line: the rotating file only rotates between writes,
        // so a line is never split across two files.
        match &mut self.sink {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(&self.line)?;
                out.flush()
            }
            Sink::File(file) => file.write_all(&self.line),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(out) => out.flush(),
            Sink::File(file) => file.flush(),
        }
    }
}

/// `path` rotated to `path.<timestamp>` once it passes `max_size_mb`;
/// rotated files older than `max_age_days` are deleted.
fn open_rotating(
    path: &Path,
    max_size_mb: u64,
    max_age_days: u64,
) -> Result<FileRotate<AppendTimestamp>, OpenError> {
    let err = |source| OpenError {
        path: path.display().to_string(),
        source,
    };
    // file-rotate panics where it cannot create the directory or the file:
    // find out first, and say so.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let max_age =
        chrono::Duration::days(i64::try_from(max_age_days).unwrap_or(i64::MAX / 86_400_000));
    let mut options = OpenOptions::new();
    options.read(true).create(true).append(true);
    Ok(FileRotate::new(
        path,
        AppendTimestamp::default(FileLimit::Age(max_age)),
        ContentLimit::BytesSurpassed(
            usize::try_from(max_size_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
        ),
        Compression::None,
        Some(options),
    ))
}

fn rfc3339(unix_nanos: u64) -> String {
    humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nanos))
        .to_string()
}

/// safeguard's level number (DEBUG 10 … CRITICAL 50) for an OTLP severity.
fn safeguard_level(severity_number: i32) -> u8 {
    match severity_number {
        1..=8 => 10,
        9..=12 => 20,
        13..=16 => 30,
        17..=20 => 40,
        21.. => 50,
        _ => 0,
    }
}

fn any_to_json(v: &AnyValue) -> Json {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Json::String(s.clone()),
        Some(any_value::Value::IntValue(i)) => Json::from(*i),
        Some(any_value::Value::BoolValue(b)) => Json::Bool(*b),
        Some(any_value::Value::DoubleValue(d)) => Json::from(*d),
        Some(any_value::Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Json::Null, any_to_json),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Json::String(hex(b)),
        // Indexes into a dictionary that plain requests do not use.
        Some(any_value::Value::StringValueStrindex(_)) | None => Json::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn json(record: &LogRecord, labels: &BTreeMap<String, String>) -> Json {
    let mut m = Map::with_capacity(record.attributes.len() + labels.len() + 6);
    m.insert(TIME.into(), Json::String(rfc3339(record.time_unix_nano)));
    m.insert(EVENT_NAME.into(), Json::String(record.event_name.clone()));
    m.insert(SEVERITY.into(), Json::String(record.severity_text.clone()));
    m.insert(
        SEVERITY_NUMBER.into(),
        Json::from(safeguard_level(record.severity_number)),
    );
    if !record.trace_id.is_empty() {
        m.insert(TRACE_ID.into(), Json::String(hex(&record.trace_id)));
        m.insert(SPAN_ID.into(), Json::String(hex(&record.span_id)));
    }
    for kv in &record.attributes {
        m.insert(
            kv.key.clone(),
            kv.value.as_ref().map_or(Json::Null, any_to_json),
        );
    }
    for (k, v) in labels {
        m.entry(k.clone())
            .or_insert_with(|| Json::String(v.clone()));
    }
    Json::Object(m)
}

fn text(record: &LogRecord, labels: &BTreeMap<String, String>) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{} {} {}",
        rfc3339(record.time_unix_nano),
        record.severity_text,
        record.event_name
    );
    for kv in &record.attributes {
        let _ = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => write!(line, " {}={s:?}", kv.key),
            Some(any_value::Value::ArrayValue(a)) => {
                let items: Vec<String> = a
                    .values
                    .iter()
                    .map(|v| match any_to_json(v) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect();
                write!(line, " {}={:?}", kv.key, items.join(" "))
            }
            _ => write!(
                line,
                " {}={}",
                kv.key,
                kv.value.as_ref().map_or(Json::Null, any_to_json)
            ),
        };
    }
    if !record.trace_id.is_empty() {
        let _ = write!(
            line,
            " {TRACE_ID}={} {SPAN_ID}={}",
            hex(&record.trace_id),
            hex(&record.span_id)
        );
    }
    for (k, v) in labels {
        let _ = write!(line, " {k}={v:?}");
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::{LocalLog, LogLevel},
        events::enriched::{Enriched, Severity},
        telemetry::logs::log_record,
    };

    fn record() -> LogRecord {
        let r = Enriched {
            name: semconv::event::FILE_OPEN,
            time: SystemTime::UNIX_EPOCH + Duration::new(1_795_600_000, 5),
            severity: Severity::Warning,
            attributes: vec![
                (semconv::attr::FILE_PATH, "/etc/secret/x".into()),
                (semconv::attr::PROCESS_PID, 42u32.into()),
                (semconv::attr::FILE_OPEN_MODE, vec!["read"].into()),
            ],
        };
        log_record(&r, SystemTime::UNIX_EPOCH, None)
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-22T00:00:00Z
        assert_eq!(
            rfc3339(1_795_305_600 * 1_000_000_000),
            "2026-11-22T00:00:00.000000000Z"
        );
        // 2000-02-29
        assert_eq!(
            rfc3339(951_782_400 * 1_000_000_000 + 7),
            "2000-02-29T00:00:00.000000007Z"
        );
    }

    #[test]
    fn json_lines_carry_semconv_keys_and_labels() {
        let labels = BTreeMap::from([("team".to_string(), "infra".to_string())]);
        let j = json(&record(), &labels);
        assert_eq!(j["otel.event.name"], "safeguard.file.open");
        assert!(j.get("event_name").is_none());
        assert_eq!(j[SEVERITY], "WARNING");
        assert_eq!(j[SEVERITY_NUMBER], 30);
        assert_eq!(j["file.path"], "/etc/secret/x");
        assert_eq!(j["process.pid"], 42);
        assert_eq!(j["safeguard.file.open_mode"][0], "read");
        assert_eq!(j["team"], "infra");
        assert!(j.get(TRACE_ID).is_none());
    }

    #[test]
    fn text_lines_are_key_value() {
        let line = text(&record(), &BTreeMap::new());
        assert!(line.contains(" WARNING safeguard.file.open "), "{line}");
        assert!(line.contains("file.path=\"/etc/secret/x\""), "{line}");
        assert!(line.contains("process.pid=42"), "{line}");
        assert!(line.contains("safeguard.file.open_mode=\"read\""), "{line}");
    }

    #[test]
    fn files_rotate_by_size_and_keep_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.log");
        let config = LogConfig {
            mode: LocalLog::Always,
            level: LogLevel::Info,
            format: LogFormat::Json,
            output: Output::File(path.clone()),
            max_size_mb: 1,
            max_age_days: 365,
            labels: BTreeMap::new(),
        };
        let mut log = EventLog::open(&config, &config.output).unwrap();
        let rec = record();
        // About 3 MiB of lines: at least two rotations.
        let lines = 3 * 1024 * 1024 / json(&rec, &BTreeMap::new()).to_string().len();
        for _ in 0..lines {
            log.write(&rec).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let mut files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "expected rotated files: {files:?}");
        let mut total = 0;
        for f in &files {
            let content = std::fs::read_to_string(f).unwrap();
            for line in content.lines() {
                let j: Json = serde_json::from_str(line).expect("a whole JSON line");
                assert_eq!(j[EVENT_NAME], "safeguard.file.open");
                total += 1;
            }
            let size = std::fs::metadata(f).unwrap().len();
            assert!(size < 2 * 1024 * 1024, "{} is {size} bytes", f.display());
        }
        assert_eq!(total, lines);
    }

    #[test]
    fn unwritable_location_is_a_clear_error() {
        let config = LogConfig {
            mode: LocalLog::Always,
            level: LogLevel::Info,
            format: LogFormat::Json,
            output: Output::File("/proc/safeguard/events.log".into()),
            max_size_mb: 1,
            max_age_days: 1,
            labels: BTreeMap::new(),
        };
        let err = EventLog::open(&config, &config.output)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/proc/safeguard/events.log"), "{err}");
    }
}
