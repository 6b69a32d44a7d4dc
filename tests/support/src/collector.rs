//! A real OpenTelemetry Collector for end-to-end tests: the binary built
//! from `deploy/collector/` (see `scripts/collector.sh`) with
//! `deploy/collector/test-config.yaml`, listening on 127.0.0.1 ports picked
//! here and writing what it receives, as OTLP JSON, to files this module
//! reads back.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

pub struct Collector {
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    ports: [u16; 3],
    child: Option<Child>,
    /// Output files of earlier runs, moved aside at each restart.
    generations: usize,
}

/// The collector binary: `SAFEGUARD_OTELCOL`, else built (once, cached) by
/// `scripts/collector.sh path`.
fn binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("SAFEGUARD_OTELCOL") {
        return Ok(path.into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/collector.sh");
    let out = Command::new(&script)
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "no collector: set SAFEGUARD_OTELCOL or fix {} path ({})",
            script.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().into())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Collector {
    /// Starts the collector, working in `dir` (created, emptied first), and
    /// waits until its health check says it runs.
    pub fn start(dir: &Path) -> Result<Self, String> {
        Self::start_with(dir, None)
    }

    /// Like [`Collector::start`], with TLS on both OTLP receivers: the
    /// server certificate and key (PEM).
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Result<Self, String> {
        Self::start_with(dir, Some((cert, key)))
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Result<Self, String> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir.join("out")).map_err(|e| e.to_string())?;
        let mut config =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/collector/test-config.yaml");
        if let Some((cert, key)) = tls {
            // The same configuration, with a tls block under each receiver.
            let text = fs::read_to_string(&config).map_err(|e| e.to_string())?;
            let mut out = String::new();
            for line in text.lines() {
                out.push_str(line);
                out.push('\n');
                if line
                    .trim_start()
                    .starts_with("endpoint: 127.0.0.1:${env:OTLP_")
                {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    out.push_str(&format!(
                        "{indent}tls:\n{indent}  cert_file: {}\n{indent}  key_file: {}\n",
                        cert.display(),
                        key.display()
                    ));
                }
            }
            config = dir.join("config-tls.yaml");
            fs::write(&config, out).map_err(|e| e.to_string())?;
        }
        let mut c = Collector {
            binary: binary()?,
            config,
            dir: dir.to_path_buf(),
            ports: [free_port()?, free_port()?, free_port()?],
            child: None,
            generations: 0,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("otelcol.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("OTLP_GRPC_PORT", self.ports[0].to_string())
            .env("OTLP_HTTP_PORT", self.ports[1].to_string())
            .env("HEALTH_PORT", self.ports[2].to_string())
            .env("OUTPUT_DIR", self.dir.join("out"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self.healthy() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("collector exited ({status}): {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("collector not healthy after 60 s: {}", self.log()))
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.ports[2])) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("otelcol.log")).unwrap_or_default()
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[1])
    }

    /// Stops it with SIGTERM (its files are flushed).
    pub fn stop(&mut self) {
        self.end(libc::SIGTERM);
    }

    /// Kills it with SIGKILL, mid-whatever.
    pub fn kill(&mut self) {
        self.end(libc::SIGKILL);
    }

    fn end(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports. What it received so far is kept
    /// (its files are truncated at start, so they are moved aside first).
    pub fn restart(&mut self) -> Result<(), String> {
        self.end(libc::SIGTERM);
        self.generations += 1;
        for name in ["logs.json", "traces.json", "metrics.json"] {
            let from = self.dir.join("out").join(name);
            if from.exists() {
                let to = self
                    .dir
                    .join("out")
                    .join(format!("{name}.{}", self.generations));
                fs::rename(&from, &to).map_err(|e| e.to_string())?;
            }
        }
        self.spawn()
    }

    /// Every JSON request the collector wrote for `signal` (`logs`,
    /// `traces`, `metrics`), oldest first. A line cut short by a kill is
    /// skipped.
    fn requests(&self, signal: &str) -> Vec<Value> {
        let mut files: Vec<PathBuf> = (1..=self.generations)
            .map(|g| self.dir.join("out").join(format!("{signal}.json.{g}")))
            .collect();
        files.push(self.dir.join("out").join(format!("{signal}.json")));
        files
            .iter()
            .flat_map(|f| {
                fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    pub fn log_records(&self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for request in self.requests("logs") {
            for rl in items(&request, "resourceLogs") {
                let resource = attributes(&rl["resource"]);
                for sl in items(rl, "scopeLogs") {
                    for r in items(sl, "logRecords") {
                        out.push(LogRecord {
                            resource: resource.clone(),
                            event_name: str_of(&r["eventName"]),
                            severity_number: r["severityNumber"].as_i64().unwrap_or(0),
                            severity_text: str_of(&r["severityText"]),
                            time_unix_nano: num(&r["timeUnixNano"]),
                            observed_time_unix_nano: num(&r["observedTimeUnixNano"]),
                            trace_id: str_of(&r["traceId"]),
                            span_id: str_of(&r["spanId"]),
                            attributes: attributes(r),
                        });
                    }
                }
            }
        }
        out
    }

    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for request in self.requests("traces") {
            for rs in items(&request, "resourceSpans") {
                let resource = attributes(&rs["resource"]);
                for ss in items(rs, "scopeSpans") {
                    for s in items(ss, "spans") {
                        out.push(Span {
                            resource: resource.clone(),
                            trace_id: str_of(&s["traceId"]),
                            span_id: str_of(&s["spanId"]),
                            parent_span_id: str_of(&s["parentSpanId"]),
                            name: str_of(&s["name"]),
                            start_time_unix_nano: num(&s["startTimeUnixNano"]),
                            end_time_unix_nano: num(&s["endTimeUnixNano"]),
                            attributes: attributes(s),
                            events: items(s, "events")
                                .map(|e| SpanEvent {
                                    name: str_of(&e["name"]),
                                    time_unix_nano: num(&e["timeUnixNano"]),
                                    attributes: attributes(e),
                                })
                                .collect(),
                            status_code: s["status"]["code"].as_i64().unwrap_or(0),
                            status_message: str_of(&s["status"]["message"]),
                        });
                    }
                }
            }
        }
        out
    }

    /// Data points of metric `name`, from every export, oldest first.
    pub fn metric_points(&self, name: &str) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        for request in self.requests("metrics") {
            for rm in items(&request, "resourceMetrics") {
                let resource = attributes(&rm["resource"]);
                for sm in items(rm, "scopeMetrics") {
                    for m in items(sm, "metrics").filter(|m| m["name"] == name) {
                        for (kind, data) in [
                            ("sum", &m["sum"]),
                            ("gauge", &m["gauge"]),
                            ("histogram", &m["histogram"]),
                        ] {
                            for p in items(data, "dataPoints") {
                                let value = match kind {
                                    "histogram" => num(&p["count"]) as f64,
                                    _ => p["asDouble"]
                                        .as_f64()
                                        .unwrap_or_else(|| num(&p["asInt"]) as f64),
                                };
                                out.push(MetricPoint {
                                    resource: resource.clone(),
                                    name: name.to_string(),
                                    unit: str_of(&m["unit"]),
                                    kind,
                                    attributes: attributes(p),
                                    value,
                                    time_unix_nano: num(&p["timeUnixNano"]),
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Polls `done` every 100 ms for up to `timeout`.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Collector) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.end(libc::SIGKILL);
    }
}

#[derive(Debug, Clone)]
pub struct LogRecord {
    pub resource: BTreeMap<String, Value>,
    pub event_name: String,
    pub severity_number: i64,
    pub severity_text: String,
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    /// Hex, empty when absent.
    pub trace_id: String,
    pub span_id: String,
    pub attributes: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Span {
    pub resource: BTreeMap<String, Value>,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
    pub events: Vec<SpanEvent>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    pub status_message: String,
}

#[derive(Debug, Clone)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
pub struct MetricPoint {
    pub resource: BTreeMap<String, Value>,
    pub name: String,
    pub unit: String,
    /// `sum`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub attributes: BTreeMap<String, Value>,
    /// The value; for a histogram, its count.
    pub value: f64,
    pub time_unix_nano: u64,
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// OTLP JSON writes 64-bit integers as strings.
fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// An OTLP JSON `attributes` list as plain JSON values.
fn attributes(owner: &Value) -> BTreeMap<String, Value> {
    items(owner, "attributes")
        .map(|kv| (str_of(&kv["key"]), any_value(&kv["value"])))
        .collect()
}

fn any_value(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return Value::Null;
    };
    if let Some(s) = obj.get("stringValue") {
        s.clone()
    } else if let Some(i) = obj.get("intValue") {
        Value::from(
            i.as_i64()
                .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0),
        )
    } else if let Some(b) = obj.get("boolValue") {
        b.clone()
    } else if let Some(d) = obj.get("doubleValue") {
        d.clone()
    } else if let Some(a) = obj.get("arrayValue") {
        Value::Array(items(a, "values").map(any_value).collect())
    } else if let Some(kv) = obj.get("kvlistValue") {
        Value::Object(
            items(kv, "values")
                .map(|kv| (str_of(&kv["key"]), any_value(&kv["value"])))
                .collect::<Map<String, Value>>(),
        )
    } else {
        Value::Null
    }
}
