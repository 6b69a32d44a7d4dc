//! An [`Enriched`] event as an OTLP LogRecord: `EventName` set, severity by
//! decision, the kernel time as the timestamp, semconv attributes, and the
//! trace and span of the process it happened in.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value},
    logs::v1::LogRecord,
};

use super::traces::SpanContext;
use crate::events::{
    Enriched,
    enriched::{Severity, Value},
};

/// OTLP severity numbers (the data model's INFO, WARN, ERROR).
pub(crate) fn severity_number(s: Severity) -> i32 {
    match s {
        Severity::Info => 9,
        Severity::Warning => 13,
        Severity::Error => 17,
    }
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn any_value(v: &Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::List(l) => any_value::Value::ArrayValue(ArrayValue {
            values: l
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.to_string())),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

pub fn key_value(key: &str, v: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any_value(v)),
        ..Default::default()
    }
}

pub fn log_record(record: &Enriched, observed: SystemTime, span: Option<SpanContext>) -> LogRecord {
    let (trace_id, span_id) = match span {
        Some(s) => (s.trace_id.to_vec(), s.span_id.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    LogRecord {
        time_unix_nano: unix_nanos(record.time),
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: severity_number(record.severity),
        severity_text: record.severity.name().to_string(),
        event_name: record.name.to_string(),
        attributes: record
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        trace_id,
        span_id,
        // Sampled: these records are never sampled away.
        flags: if span.is_some() { 1 } else { 0 },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_record_becomes_a_log_record_with_its_event_name_and_time() {
        let r = Enriched {
            name: semconv::event::NETWORK_CONNECT,
            time: UNIX_EPOCH + Duration::new(1_795_600_000, 42),
            severity: Severity::Error,
            attributes: vec![
                (semconv::attr::NETWORK_PEER_PORT, 443u32.into()),
                (semconv::attr::DECISION, semconv::decision::BLOCKED.into()),
                (semconv::attr::PROCESS_COMMAND_ARGS, vec!["nc", "-z"].into()),
            ],
        };
        let span = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
        };
        let l = log_record(
            &r,
            UNIX_EPOCH + Duration::from_secs(1_795_600_001),
            Some(span),
        );
        assert_eq!(l.event_name, "safeguard.network.connect");
        assert_eq!(l.time_unix_nano, 1_795_600_000_000_000_042);
        assert_eq!(l.observed_time_unix_nano, 1_795_600_001_000_000_000);
        assert_eq!(l.severity_number, 17);
        assert_eq!(l.severity_text, "ERROR");
        assert_eq!(l.trace_id, vec![7; 16]);
        assert_eq!(l.span_id, vec![9; 8]);
        assert!(
            !l.attributes.iter().any(|kv| kv.key == "event.name"),
            "EventName is a field, not the deprecated attribute"
        );
        let port = l
            .attributes
            .iter()
            .find(|kv| kv.key == "network.peer.port")
            .unwrap();
        assert_eq!(
            port.value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(443))
        );
        let args = l
            .attributes
            .iter()
            .find(|kv| kv.key == "process.command_args")
            .unwrap();
        let Some(any_value::Value::ArrayValue(a)) = &args.value.as_ref().unwrap().value else {
            panic!("command args are an array: {args:?}");
        };
        assert_eq!(a.values.len(), 2);
    }

    #[test]
    fn blocked_is_more_severe_than_would_block_than_allowed() {
        assert!(severity_number(Severity::Error) > severity_number(Severity::Warning));
        assert!(severity_number(Severity::Warning) > severity_number(Severity::Info));
    }
}
