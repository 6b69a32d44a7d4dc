//! The collector harness against the real Collector: what is posted over
//! OTLP/HTTP (JSON) is read back with its fields, and survives a restart
//! and a kill. Skipped without `SAFEGUARD_OTELCOL`, unless
//! `SAFEGUARD_REQUIRE_OTELCOL=1` (as `make test-host` sets).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::PathBuf,
    time::Duration,
};

use safeguard_test_support::collector::{self, Collector};
use serde_json::{Value, json};

const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_ID: &str = "eee19b7ec3c1b174";
const PARENT_ID: &str = "0102030405060708";

/// POSTs `body` as JSON to `path` of the collector's OTLP/HTTP receiver;
/// panics unless it answers 200.
fn post(collector: &Collector, path: &str, body: &Value) {
    let endpoint = collector.http_endpoint();
    let addr = endpoint.trim_start_matches("http://");
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "POST {path}: {answer}\n{}",
        collector.log()
    );
}

fn log_request(event_name: &str, n: i64) -> Value {
    json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "selftest"}}]},
        "scopeLogs": [{"scope": {"name": "selftest"}, "logRecords": [{
            "timeUnixNano": "1700000000000000001",
            "observedTimeUnixNano": "1700000000000000002",
            "severityNumber": 9,
            "severityText": "INFO",
            "eventName": event_name,
            "body": {"stringValue": "hello"},
            "attributes": [
                {"key": "n", "value": {"intValue": n.to_string()}},
                {"key": "list", "value": {"arrayValue": {"values": [{"boolValue": true}]}}}
            ],
            "traceId": TRACE_ID,
            "spanId": SPAN_ID
        }]}]
    }]})
}

fn span_request() -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "selftest"}}]},
        "scopeSpans": [{"scope": {"name": "selftest"}, "spans": [{
            "traceId": TRACE_ID,
            "spanId": SPAN_ID,
            "parentSpanId": PARENT_ID,
            "name": "process",
            "kind": 1,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000001000000000",
            "attributes": [{"key": "process.pid", "value": {"intValue": "4242"}}],
            "events": [{"name": "exec", "timeUnixNano": "1700000000500000000",
                        "attributes": [{"key": "k", "value": {"stringValue": "v"}}]}],
            "status": {"code": 2, "message": "denied"}
        }]}]
    }]})
}

fn metric_request() -> Value {
    json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "selftest"}}]},
        "scopeMetrics": [{"scope": {"name": "selftest"}, "metrics": [{
            "name": "selftest.count", "unit": "{event}",
            "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [{
                "asInt": "7", "timeUnixNano": "1700000000000000000",
                "attributes": [{"key": "k", "value": {"stringValue": "v"}}]
            }]}
        }]}]
    }]})
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn what_is_posted_is_read_back_across_restart_and_kill() {
    match collector::enabled() {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "skipped: {} is not set (make test-host sets it)",
                collector::BINARY_VAR
            );
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("sg-otelcol-{}", std::process::id())));
    let mut c = Collector::start(&scratch.0).unwrap();
    let within = Duration::from_secs(10);

    // A log record, with every field.
    post(&c, "/v1/logs", &log_request("selftest.first", 42));
    assert!(
        c.wait_until(within, |c| c.log_records().len() == 1),
        "{}",
        c.log()
    );
    let r = &c.log_records()[0];
    assert_eq!(r.resource["service.name"], "selftest");
    assert_eq!(r.event_name, "selftest.first");
    assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
    assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(r.observed_time_unix_nano, 1_700_000_000_000_000_002);
    assert_eq!(
        (r.trace_id.as_str(), r.span_id.as_str()),
        (TRACE_ID, SPAN_ID)
    );
    assert_eq!(r.attributes["n"], 42);
    assert_eq!(r.attributes["list"], json!([true]));
    assert_eq!(r.body, Some(json!("hello")));

    // A restart truncates the collector's files: what it received before
    // is still read back, on the same endpoint.
    let endpoint = c.http_endpoint();
    c.restart().unwrap();
    assert_eq!(c.http_endpoint(), endpoint);
    post(&c, "/v1/logs", &log_request("selftest.second", 43));
    assert!(
        c.wait_until(within, |c| c.log_records().len() == 2),
        "{:?}",
        c.log_records()
    );
    let names: Vec<_> = c.log_records().into_iter().map(|r| r.event_name).collect();
    assert_eq!(names, ["selftest.first", "selftest.second"]);

    // A span and a metric, then a kill: flushed before it, they are kept.
    post(&c, "/v1/traces", &span_request());
    post(&c, "/v1/metrics", &metric_request());
    assert!(
        c.wait_until(within, |c| c.spans().len() == 1
            && c.metric_points("selftest.count").len() == 1),
        "{}",
        c.log()
    );
    c.kill();
    c.restart().unwrap();
    let spans = c.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_eq!(s.resource["service.name"], "selftest");
    assert_eq!(
        (s.trace_id.as_str(), s.span_id.as_str()),
        (TRACE_ID, SPAN_ID)
    );
    assert_eq!(s.parent_span_id, PARENT_ID);
    assert_eq!(s.name, "process");
    assert_eq!(
        (s.start_time_unix_nano, s.end_time_unix_nano),
        (1_700_000_000_000_000_000, 1_700_000_001_000_000_000)
    );
    assert_eq!(s.attributes["process.pid"], 4242);
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].name, "exec");
    assert_eq!(s.events[0].time_unix_nano, 1_700_000_000_500_000_000);
    assert_eq!(s.events[0].attributes["k"], "v");
    assert_eq!((s.status_code, s.status_message.as_str()), (2, "denied"));
    let p = &c.metric_points("selftest.count")[0];
    assert_eq!((p.kind, p.value, p.unit.as_str()), ("sum", 7.0, "{event}"));
    assert_eq!(p.attributes["k"], "v");
    assert_eq!(c.log_records().len(), 2);

    // A line cut short (as by a kill mid-write) is skipped and counted.
    c.stop();
    assert_eq!(c.partial_lines(), 0);
    let logs = c.output_dir().join("logs.json");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logs)
        .unwrap();
    file.write_all(br#"{"resourceLogs":[{"scopeLo"#).unwrap();
    assert_eq!(c.partial_lines(), 1);
    assert_eq!(c.log_records().len(), 2);
}
