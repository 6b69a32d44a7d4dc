//! Where audit records go until the OTLP exporter lands: one line per event,
//! JSON or text, on stdout or appended to a file, with the configured labels
//! on every line.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::PathBuf,
    time::SystemTime,
};

use serde_json::{Map, Value as Json};

use crate::{
    config::{LogConfig, LogFormat, LogLevel, Output},
    events::{Record, record::Value},
};

/// Keys of the line envelope (the attributes use `semconv` keys).
const TIME: &str = "time";
const EVENT_NAME: &str = "event_name";
const SEVERITY: &str = "severity";
const SEVERITY_NUMBER: &str = "severity_number";

#[derive(Debug, thiserror::Error)]
#[error("cannot open the event output {path}: {source}")]
pub struct OpenError {
    path: String,
    #[source]
    source: io::Error,
}

pub struct EventWriter {
    sink: BufWriter<Box<dyn Write + Send>>,
    format: LogFormat,
    min_level: LogLevel,
    labels: BTreeMap<String, String>,
    /// Flush after each line (stdout, so a reader sees events at once).
    line_buffered: bool,
}

impl EventWriter {
    pub fn open(config: &LogConfig, output: &Output) -> Result<Self, OpenError> {
        let (sink, line_buffered): (Box<dyn Write + Send>, bool) = match output {
            Output::Stdout => (Box::new(io::stdout()), true),
            Output::File(path) => (Box::new(open_append(path)?), false),
        };
        Ok(Self {
            sink: BufWriter::new(sink),
            format: config.format,
            min_level: config.level,
            labels: config.labels.clone(),
            line_buffered,
        })
    }

    /// Writes one record, unless its severity is below the configured level.
    pub fn write(&mut self, record: &Record) -> io::Result<bool> {
        if (record.severity as u8) < (self.min_level as u8) {
            return Ok(false);
        }
        match self.format {
            LogFormat::Json => {
                serde_json::to_writer(&mut self.sink, &json(record, &self.labels))?;
                self.sink.write_all(b"\n")?;
            }
            LogFormat::Text => writeln!(self.sink, "{}", text(record, &self.labels))?,
        }
        if self.line_buffered {
            self.sink.flush()?;
        }
        Ok(true)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

fn open_append(path: &PathBuf) -> Result<File, OpenError> {
    let err = |source| OpenError {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn json(record: &Record, labels: &BTreeMap<String, String>) -> Json {
    let mut m = Map::with_capacity(record.attributes.len() + labels.len() + 4);
    m.insert(TIME.into(), Json::String(rfc3339(record.time)));
    m.insert(EVENT_NAME.into(), Json::String(record.name.into()));
    m.insert(SEVERITY.into(), Json::String(record.severity.name().into()));
    m.insert(SEVERITY_NUMBER.into(), Json::from(record.severity as u8));
    for (k, v) in &record.attributes {
        let v = match v {
            Value::Str(s) => Json::String(s.clone()),
            Value::Int(i) => Json::from(*i),
            Value::Bool(b) => Json::Bool(*b),
            Value::List(l) => Json::Array(l.iter().map(|s| Json::String(s.clone())).collect()),
        };
        m.insert((*k).into(), v);
    }
    for (k, v) in labels {
        m.entry(k.clone())
            .or_insert_with(|| Json::String(v.clone()));
    }
    Json::Object(m)
}

fn text(record: &Record, labels: &BTreeMap<String, String>) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{} {} {}",
        rfc3339(record.time),
        record.severity.name(),
        record.name
    );
    for (k, v) in &record.attributes {
        let _ = match v {
            Value::Str(s) => write!(line, " {k}={s:?}"),
            Value::Int(i) => write!(line, " {k}={i}"),
            Value::Bool(b) => write!(line, " {k}={b}"),
            Value::List(l) => write!(line, " {k}={:?}", l.join(" ")),
        };
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
    use crate::events::record::Severity;

    fn record() -> Record {
        Record {
            name: semconv::event::FILE_OPEN,
            time: SystemTime::UNIX_EPOCH + Duration::new(1_795_600_000, 5),
            severity: Severity::Warning,
            attributes: vec![
                (semconv::attr::FILE_PATH, "/etc/secret/x".into()),
                (semconv::attr::PROCESS_PID, 42u32.into()),
                (semconv::attr::FILE_OPEN_MODE, vec!["read"].into()),
            ],
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        // 2026-11-22T00:00:00Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_305_600);
        assert_eq!(rfc3339(t), "2026-11-22T00:00:00.000000000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn json_lines_carry_semconv_keys_and_labels() {
        let labels = BTreeMap::from([("team".to_string(), "infra".to_string())]);
        let j = json(&record(), &labels);
        assert_eq!(j[EVENT_NAME], "safeguard.file.open");
        assert_eq!(j[SEVERITY], "WARNING");
        assert_eq!(j[SEVERITY_NUMBER], 30);
        assert_eq!(j["file.path"], "/etc/secret/x");
        assert_eq!(j["process.pid"], 42);
        assert_eq!(j["safeguard.file.open_mode"][0], "read");
        assert_eq!(j["team"], "infra");
    }

    #[test]
    fn text_lines_are_key_value() {
        let line = text(&record(), &BTreeMap::new());
        assert!(line.contains(" WARNING safeguard.file.open "), "{line}");
        assert!(line.contains("file.path=\"/etc/secret/x\""), "{line}");
        assert!(line.contains("process.pid=42"), "{line}");
    }
}
