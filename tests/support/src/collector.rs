//! A real OpenTelemetry Collector for end-to-end tests: the binary built
//! from `deploy/collector/` (by `scripts/collector.sh path`, named by
//! `SAFEGUARD_OTELCOL`) with `deploy/collector/test-config.yaml`, listening
//! on 127.0.0.1 ports picked here and writing what it receives, as OTLP JSON,
//! to files this module reads back.
//!
//! ```no_run
//! # use std::{path::Path, time::Duration};
//! # use safeguard_test_support::collector::Collector;
//! let collector = Collector::start(Path::new("/tmp/e2e/collector")).unwrap();
//! // ... export to collector.grpc_endpoint() ...
//! assert!(collector.wait_until(Duration::from_secs(10), |c| !c.log_records().is_empty()));
//! ```

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

/// The collector binary (`scripts/collector.sh path` prints it).
pub const BINARY_VAR: &str = "SAFEGUARD_OTELCOL";
/// Another collector configuration than `deploy/collector/test-config.yaml`.
pub const CONFIG_VAR: &str = "SAFEGUARD_OTELCOL_CONFIG";
/// `1`: a test that needs the collector fails without [`BINARY_VAR`]
/// instead of skipping (`make test-host` sets it).
pub const REQUIRE_VAR: &str = "SAFEGUARD_REQUIRE_OTELCOL";

const READY_WITHIN: Duration = Duration::from_secs(60);
const STOP_WITHIN: Duration = Duration::from_secs(30);
const SIGNALS: [&str; 3] = ["logs", "traces", "metrics"];

/// Whether a test that needs the collector should run: `Ok(true)` with
/// [`BINARY_VAR`] set, `Ok(false)` (skip, and say why) without it, an error
/// without it when [`REQUIRE_VAR`] is `1`.
pub fn enabled() -> Result<bool, String> {
    if std::env::var_os(BINARY_VAR).is_some() {
        Ok(true)
    } else if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
        Err(format!("{REQUIRE_VAR}=1 but {}", missing_binary()))
    } else {
        Ok(false)
    }
}

fn missing_binary() -> String {
    format!(
        "{BINARY_VAR} is not set: run `make test-host`, or set it to what \
         `scripts/collector.sh path` prints"
    )
}

/// The collector binary, from [`BINARY_VAR`].
fn binary() -> Result<PathBuf, String> {
    let path = PathBuf::from(std::env::var_os(BINARY_VAR).ok_or_else(missing_binary)?);
    if !path.is_file() {
        return Err(format!(
            "{BINARY_VAR}={} is not a file: run `make test-host`, or set it to what \
             `scripts/collector.sh path` prints",
            path.display()
        ));
    }
    Ok(path)
}

fn config() -> PathBuf {
    std::env::var_os(CONFIG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("deploy/collector/test-config.yaml"))
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    grpc: u16,
    http: u16,
    health: u16,
}

impl Ports {
    /// Three free loopback ports, all bound at once (so that they differ)
    /// and released for the collector to take. They are below the kernel's
    /// ephemeral range: an agent that keeps reconnecting to a Collector
    /// that is down could otherwise be given the Collector's own port as
    /// its source port and connect to itself (TCP self-connect), and the
    /// Collector, restarted, would find its port taken.
    fn pick() -> Result<Self, String> {
        let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32_768);
        let (low, high) = (10_000u16, ephemeral_low.max(10_100));
        // A different start per process and call; no need for a crate.
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        let mut listeners = Vec::new();
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let port = low + ((x >> 33) % u64::from(high - low)) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(l);
                if listeners.len() == 3 {
                    break;
                }
            }
        }
        let port = |i: usize| -> Result<u16, String> {
            Ok(listeners
                .get(i)
                .ok_or_else(|| format!("no free port from {low} to {high}"))?
                .local_addr()
                .map_err(|e| e.to_string())?
                .port())
        };
        Ok(Ports {
            grpc: port(0)?,
            http: port(1)?,
            health: port(2)?,
        })
    }
}

pub struct Collector {
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    ports: Ports,
    child: Option<Child>,
    /// Restarts so far: output of run `g` (from 1) was moved to
    /// `<signal>.json.<g>`.
    generations: usize,
}

impl Collector {
    /// Starts the collector, working in `dir` (created, emptied first:
    /// output in `dir/out`, its stderr in `dir/otelcol.log`), and waits until
    /// its health check says it runs.
    pub fn start(dir: &Path) -> Result<Self, String> {
        Self::start_with(dir, None)
    }

    /// Like [`Collector::start`], with TLS on both OTLP receivers: the
    /// server certificate and key (PEM).
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Result<Self, String> {
        Self::start_with(dir, Some((cert, key)))
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Result<Self, String> {
        let binary = binary()?;
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir.join("out")).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let mut config = config();
        if let Some((cert, key)) = tls {
            let text = fs::read_to_string(&config)
                .map_err(|e| format!("read {}: {e}", config.display()))?;
            config = dir.join("config-tls.yaml");
            fs::write(&config, with_tls(&text, cert, key)).map_err(|e| e.to_string())?;
        }
        let mut c = Collector {
            binary,
            config,
            dir: dir.to_path_buf(),
            ports: Ports::pick()?,
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
            .env("OTLP_GRPC_PORT", self.ports.grpc.to_string())
            .env("OTLP_HTTP_PORT", self.ports.http.to_string())
            .env("HEALTH_PORT", self.ports.health.to_string())
            .env("OUTPUT_DIR", self.output_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.healthy() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "collector exited ({status}) before it was ready; its log ends:\n{}",
                    self.log_tail()
                ));
            }
            if start.elapsed() > READY_WITHIN {
                self.end(libc::SIGKILL);
                return Err(format!(
                    "collector not ready (health check on port {}) after {READY_WITHIN:?}; \
                     its log ends:\n{}",
                    self.ports.health,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running collector's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// GET / on the health check port answers 200.
    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.ports.health)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        let mut status_line = answer.lines().next().unwrap_or("").split_whitespace();
        status_line.next().is_some_and(|v| v.starts_with("HTTP/"))
            && status_line.next() == Some("200")
    }

    /// What the collector wrote to stderr, over all its runs.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("otelcol.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `http://127.0.0.1:PORT` of the OTLP/gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc)
    }

    /// `http://127.0.0.1:PORT` of the OTLP/HTTP receiver (`/v1/logs` and so
    /// on below it).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// Where `logs.json`, `traces.json` and `metrics.json` are written.
    pub fn output_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Stops it with SIGTERM and waits for it (its files are flushed);
    /// SIGKILL if it takes longer than 30 s.
    pub fn stop(&mut self) {
        self.end(libc::SIGTERM);
    }

    /// Kills it with SIGKILL, mid-whatever, and waits for it.
    pub fn kill(&mut self) {
        self.end(libc::SIGKILL);
    }

    fn end(&mut self, signal: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if start.elapsed() > STOP_WITHIN {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Stops it (SIGTERM) if it runs and starts it again on the same ports.
    /// What it received so far is kept: its files are truncated at start, so
    /// they are first moved aside to `<signal>.json.<n>`, n = 1, 2, ...
    pub fn restart(&mut self) -> Result<(), String> {
        self.end(libc::SIGTERM);
        self.generations += 1;
        for signal in SIGNALS {
            let from = self.output_file(signal, 0);
            if from.exists() {
                let to = self.output_file(signal, self.generations);
                fs::rename(&from, &to)
                    .map_err(|e| format!("mv {} {}: {e}", from.display(), to.display()))?;
            }
        }
        self.spawn()
    }

    /// `<signal>.json` of run `generation` (0: the current one).
    fn output_file(&self, signal: &str, generation: usize) -> PathBuf {
        match generation {
            0 => self.output_dir().join(format!("{signal}.json")),
            g => self.output_dir().join(format!("{signal}.json.{g}")),
        }
    }

    /// Every request the collector wrote for `signal` (`logs`, `traces`,
    /// `metrics`), oldest first, and how many lines were not JSON.
    fn requests(&self, signal: &str) -> (Vec<Value>, usize) {
        let mut requests = Vec::new();
        let mut partial = 0;
        for g in (1..=self.generations).chain([0]) {
            let text = fs::read_to_string(self.output_file(signal, g)).unwrap_or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str(line) {
                    Ok(v) => requests.push(v),
                    Err(_) => partial += 1,
                }
            }
        }
        (requests, partial)
    }

    /// Lines of the output files that are not JSON, over all signals: one
    /// cut short when the collector was killed mid-write (or, while it runs,
    /// one it is writing). The readers skip them.
    pub fn partial_lines(&self) -> usize {
        SIGNALS.iter().map(|s| self.requests(s).1).sum()
    }

    /// Every log record received, over all runs, oldest first.
    pub fn log_records(&self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for request in self.requests("logs").0 {
            push_log_records(&request, &mut out);
        }
        out
    }

    /// Every span received, over all runs, oldest first.
    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for request in self.requests("traces").0 {
            push_spans(&request, &mut out);
        }
        out
    }

    /// Data points of metric `name`, from every export, oldest first.
    pub fn metric_points(&self, name: &str) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        for request in self.requests("metrics").0 {
            push_metric_points(&request, name, &mut out);
        }
        out
    }

    /// Polls `done` every 100 ms for up to `timeout`; whether it held.
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

/// The configuration with a `tls` block under each OTLP receiver endpoint.
fn with_tls(config: &str, cert: &Path, key: &Path) -> String {
    let mut out = String::new();
    for line in config.lines() {
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
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub resource: BTreeMap<String, Value>,
    pub event_name: String,
    pub severity_number: i64,
    pub severity_text: String,
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    /// Hex, empty when absent.
    pub trace_id: String,
    /// Hex, empty when absent.
    pub span_id: String,
    pub attributes: BTreeMap<String, Value>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
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

/// The log records of one `ExportLogsServiceRequest` (OTLP JSON).
fn push_log_records(request: &Value, out: &mut Vec<LogRecord>) {
    for rl in items(request, "resourceLogs") {
        let resource = attributes(&rl["resource"]);
        for r in items(rl, "scopeLogs").flat_map(|sl| items(sl, "logRecords")) {
            out.push(LogRecord {
                resource: resource.clone(),
                event_name: str_of(&r["eventName"]),
                severity_number: int(&r["severityNumber"]),
                severity_text: str_of(&r["severityText"]),
                time_unix_nano: uint(&r["timeUnixNano"]),
                observed_time_unix_nano: uint(&r["observedTimeUnixNano"]),
                trace_id: str_of(&r["traceId"]),
                span_id: str_of(&r["spanId"]),
                attributes: attributes(r),
                body: r.get("body").map(any_value),
            });
        }
    }
}

/// The spans of one `ExportTraceServiceRequest` (OTLP JSON).
fn push_spans(request: &Value, out: &mut Vec<Span>) {
    for rs in items(request, "resourceSpans") {
        let resource = attributes(&rs["resource"]);
        for s in items(rs, "scopeSpans").flat_map(|ss| items(ss, "spans")) {
            out.push(Span {
                resource: resource.clone(),
                trace_id: str_of(&s["traceId"]),
                span_id: str_of(&s["spanId"]),
                parent_span_id: str_of(&s["parentSpanId"]),
                name: str_of(&s["name"]),
                start_time_unix_nano: uint(&s["startTimeUnixNano"]),
                end_time_unix_nano: uint(&s["endTimeUnixNano"]),
                attributes: attributes(s),
                events: items(s, "events")
                    .map(|e| SpanEvent {
                        name: str_of(&e["name"]),
                        time_unix_nano: uint(&e["timeUnixNano"]),
                        attributes: attributes(e),
                    })
                    .collect(),
                status_code: int(&s["status"]["code"]),
                status_message: str_of(&s["status"]["message"]),
            });
        }
    }
}

/// The data points of metric `name` in one `ExportMetricsServiceRequest`
/// (OTLP JSON).
fn push_metric_points(request: &Value, name: &str, out: &mut Vec<MetricPoint>) {
    for rm in items(request, "resourceMetrics") {
        let resource = attributes(&rm["resource"]);
        for m in items(rm, "scopeMetrics")
            .flat_map(|sm| items(sm, "metrics"))
            .filter(|m| m["name"] == name)
        {
            for kind in ["sum", "gauge", "histogram"] {
                for p in items(&m[kind], "dataPoints") {
                    let value = match kind {
                        "histogram" => uint(&p["count"]) as f64,
                        _ => p["asDouble"]
                            .as_f64()
                            .unwrap_or_else(|| int(&p["asInt"]) as f64),
                    };
                    out.push(MetricPoint {
                        resource: resource.clone(),
                        name: name.to_string(),
                        unit: str_of(&m["unit"]),
                        kind,
                        attributes: attributes(p),
                        value,
                        time_unix_nano: uint(&p["timeUnixNano"]),
                    });
                }
            }
        }
    }
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// OTLP JSON writes 64-bit integers as strings; 0 when absent.
fn uint(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// An OTLP JSON `attributes` list as plain JSON values.
fn attributes(owner: &Value) -> BTreeMap<String, Value> {
    items(owner, "attributes")
        .map(|kv| (str_of(&kv["key"]), any_value(&kv["value"])))
        .collect()
}

/// An OTLP JSON `AnyValue` as a plain JSON value; `bytesValue` stays
/// base64, an empty value is null.
fn any_value(v: &Value) -> Value {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "stringValue" | "boolValue" | "doubleValue" | "bytesValue" => inner.clone(),
        "intValue" => Value::from(int(inner)),
        "arrayValue" => Value::Array(items(inner, "values").map(any_value).collect()),
        "kvlistValue" => Value::Object(
            items(inner, "values")
                .map(|kv| (str_of(&kv["key"]), any_value(&kv["value"])))
                .collect::<Map<String, Value>>(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn any_values_become_plain_json() {
        let v = json!({"kvlistValue": {"values": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "i", "value": {"intValue": "-42"}},
            {"key": "b", "value": {"boolValue": true}},
            {"key": "d", "value": {"doubleValue": 1.5}},
            {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "y"}]}}},
            {"key": "e", "value": {}},
        ]}});
        assert_eq!(
            any_value(&v),
            json!({"s": "x", "i": -42, "b": true, "d": 1.5, "a": [1, "y"], "e": null})
        );
    }

    #[test]
    fn a_log_record_with_everything() {
        let request = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]},
            "scopeLogs": [{"logRecords": [{
                "timeUnixNano": "1700000000000000001",
                "observedTimeUnixNano": "1700000000000000002",
                "severityNumber": 13,
                "severityText": "WARN",
                "eventName": "file.open",
                "body": {"stringValue": "hi"},
                "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174"
            }, {}]}]
        }]});
        let mut out = Vec::new();
        push_log_records(&request, &mut out);
        assert_eq!(out.len(), 2);
        let r = &out[0];
        assert_eq!(r.resource["service.name"], "t");
        assert_eq!(r.event_name, "file.open");
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(r.observed_time_unix_nano, 1_700_000_000_000_000_002);
        assert_eq!(r.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(r.span_id, "eee19b7ec3c1b174");
        assert_eq!(r.attributes["n"], 7);
        assert_eq!(r.body, Some(json!("hi")));
        let empty = &out[1];
        assert_eq!((empty.trace_id.as_str(), empty.body.as_ref()), ("", None));
    }

    #[test]
    fn metric_points_of_each_kind() {
        let request = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "a", "unit": "1", "sum": {"dataPoints": [{"asInt": "-3", "timeUnixNano": "5"}]}},
            {"name": "a", "gauge": {"dataPoints": [{"asDouble": 0.25}]}},
            {"name": "a", "histogram": {"dataPoints": [{"count": "4", "attributes": [
                {"key": "k", "value": {"stringValue": "v"}}]}]}},
            {"name": "b", "sum": {"dataPoints": [{"asInt": "9"}]}},
        ]}]}]});
        let mut out = Vec::new();
        push_metric_points(&request, "a", &mut out);
        let got: Vec<_> = out.iter().map(|p| (p.kind, p.value)).collect();
        assert_eq!(got, [("sum", -3.0), ("gauge", 0.25), ("histogram", 4.0)]);
        assert_eq!((out[0].unit.as_str(), out[0].time_unix_nano), ("1", 5));
        assert_eq!(out[2].attributes["k"], "v");
    }
}
