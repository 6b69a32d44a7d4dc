//! A batch of log records as the protobuf bytes of an OTLP
//! `ExportLogsServiceRequest`, written straight from the records.
//!
//! Written by hand, on prost's wire-format helpers: opentelemetry-proto's
//! generated types own every key and every value as a `String`, so going
//! through them allocates some thirty times per event, while a [`Record`]
//! borrows most of its text. Field numbers are those of
//! opentelemetry/proto/logs/v1/logs.proto and common.proto; the tests check
//! that the bytes decode, with the generated types, to exactly what
//! [`super::logs::log_record`] builds.

use bytes::BufMut;
use opentelemetry_proto::tonic::{common::v1::InstrumentationScope, resource::v1::Resource};
use prost::{
    Message as _,
    encoding::{WireType, encode_varint, encoded_len_varint},
};

use super::{
    logs::{severity_number, unix_nanos},
    traces::SpanContext,
};
use crate::events::{
    Record,
    record::{Text, Value},
};

// LogRecord fields.
const TIME_UNIX_NANO: u32 = 1;
const SEVERITY_NUMBER: u32 = 2;
const SEVERITY_TEXT: u32 = 3;
const ATTRIBUTES: u32 = 6;
const FLAGS: u32 = 8;
const TRACE_ID: u32 = 9;
const SPAN_ID: u32 = 10;
const OBSERVED_TIME_UNIX_NANO: u32 = 11;
const EVENT_NAME: u32 = 12;
// KeyValue fields.
const KEY: u32 = 1;
const VALUE: u32 = 2;
// AnyValue fields (a oneof: always written, even when zero).
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;
const ARRAY_VALUE: u32 = 5;
// ArrayValue.values.
const VALUES: u32 = 1;
// ExportLogsServiceRequest.resource_logs, ResourceLogs.{resource,
// scope_logs}, ScopeLogs.{scope, log_records}.
const RESOURCE_LOGS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_LOGS: u32 = 2;
const SCOPE: u32 = 1;
const LOG_RECORDS: u32 = 2;

/// Log records encoded as they come, sealed into one request.
#[derive(Default)]
pub struct LogBatch {
    /// `log_records` fields of a ScopeLogs: key, length, record.
    records: Vec<u8>,
    /// The records' kernel times (Unix ns), for the latency metric.
    times: Vec<u64>,
}

impl LogBatch {
    pub fn push(&mut self, record: &Record, observed_unix_nano: u64, span: Option<SpanContext>) {
        let time = unix_nanos(record.time);
        let len = log_record_len(record, time, observed_unix_nano, span);
        self.records
            .reserve(key_len(LOG_RECORDS) + encoded_len_varint(len as u64) + len);
        length_delimited(&mut self.records, LOG_RECORDS, len);
        let start = self.records.len();
        log_record(&mut self.records, record, time, observed_unix_nano, span);
        debug_assert_eq!(self.records.len() - start, len, "log record length");
        self.times.push(time);
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Encoded bytes so far.
    pub fn bytes(&self) -> usize {
        self.records.len()
    }

    /// The request carrying every record pushed, and their times; the batch
    /// is empty afterwards.
    pub fn seal(
        &mut self,
        resource: &Resource,
        scope: &InstrumentationScope,
    ) -> (Vec<u8>, Vec<u64>) {
        let scope_logs_len = scope.encoded_len();
        let scope_logs_len = key_len(SCOPE)
            + encoded_len_varint(scope_logs_len as u64)
            + scope_logs_len
            + self.records.len();
        let resource_len = resource.encoded_len();
        let resource_logs_len = key_len(RESOURCE)
            + encoded_len_varint(resource_len as u64)
            + resource_len
            + key_len(SCOPE_LOGS)
            + encoded_len_varint(scope_logs_len as u64)
            + scope_logs_len;
        let mut out = Vec::with_capacity(
            key_len(RESOURCE_LOGS)
                + encoded_len_varint(resource_logs_len as u64)
                + resource_logs_len,
        );
        length_delimited(&mut out, RESOURCE_LOGS, resource_logs_len);
        prost::encoding::message::encode(RESOURCE, resource, &mut out);
        length_delimited(&mut out, SCOPE_LOGS, scope_logs_len);
        prost::encoding::message::encode(SCOPE, scope, &mut out);
        out.extend_from_slice(&self.records);
        self.records.clear();
        (out, std::mem::take(&mut self.times))
    }
}

/// The encoded length of what [`log_record`] writes.
fn log_record_len(record: &Record, time: u64, observed: u64, span: Option<SpanContext>) -> usize {
    let mut len = 0;
    if time != 0 {
        len += key_len(TIME_UNIX_NANO) + 8;
    }
    if observed != 0 {
        len += key_len(OBSERVED_TIME_UNIX_NANO) + 8;
    }
    len += key_len(SEVERITY_NUMBER) + encoded_len_varint(severity_number(record.severity) as u64);
    len += string_len(SEVERITY_TEXT, record.severity.name());
    for (key, value) in &record.attributes {
        let kv_len = key_value_len(key, value);
        len += key_len(ATTRIBUTES) + encoded_len_varint(kv_len as u64) + kv_len;
    }
    if let Some(span) = span {
        len += key_len(FLAGS) + 4;
        len += oneof_string_len_bytes(TRACE_ID, span.trace_id.len());
        len += oneof_string_len_bytes(SPAN_ID, span.span_id.len());
    }
    len + string_len(EVENT_NAME, record.name)
}

fn key_value_len(key: &str, value: &Value) -> usize {
    let value_len = any_value_len(value);
    string_len(KEY, key) + key_len(VALUE) + encoded_len_varint(value_len as u64) + value_len
}

fn log_record(
    out: &mut Vec<u8>,
    record: &Record,
    time: u64,
    observed: u64,
    span: Option<SpanContext>,
) {
    if time != 0 {
        key(TIME_UNIX_NANO, WireType::SixtyFourBit, out);
        out.put_u64_le(time);
    }
    if observed != 0 {
        key(OBSERVED_TIME_UNIX_NANO, WireType::SixtyFourBit, out);
        out.put_u64_le(observed);
    }
    key(SEVERITY_NUMBER, WireType::Varint, out);
    varint(out, severity_number(record.severity) as u64);
    string(out, SEVERITY_TEXT, record.severity.name());
    for (key, value) in &record.attributes {
        let value_len = any_value_len(value);
        let kv_len = string_len(KEY, key)
            + key_len(VALUE)
            + encoded_len_varint(value_len as u64)
            + value_len;
        length_delimited(out, ATTRIBUTES, kv_len);
        string(out, KEY, key);
        length_delimited(out, VALUE, value_len);
        any_value(out, value);
    }
    if let Some(span) = span {
        // Sampled: these records are never sampled away.
        key(FLAGS, WireType::ThirtyTwoBit, out);
        out.put_u32_le(1);
        bytes(out, TRACE_ID, &span.trace_id);
        bytes(out, SPAN_ID, &span.span_id);
    }
    string(out, EVENT_NAME, record.name);
}

fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => oneof_string(out, STRING_VALUE, s),
        Value::Int(i) => {
            key(INT_VALUE, WireType::Varint, out);
            varint(out, *i as u64);
        }
        Value::Bool(b) => {
            key(BOOL_VALUE, WireType::Varint, out);
            varint(out, u64::from(*b));
        }
        Value::List(items) => {
            length_delimited(out, ARRAY_VALUE, array_len(items));
            for item in items {
                length_delimited(out, VALUES, oneof_string_len(STRING_VALUE, item));
                oneof_string(out, STRING_VALUE, item);
            }
        }
    }
}

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Str(s) => oneof_string_len(STRING_VALUE, s),
        Value::Int(i) => key_len(INT_VALUE) + encoded_len_varint(*i as u64),
        Value::Bool(_) => key_len(BOOL_VALUE) + 1,
        Value::List(items) => {
            let len = array_len(items);
            key_len(ARRAY_VALUE) + encoded_len_varint(len as u64) + len
        }
    }
}

fn array_len(items: &[Text]) -> usize {
    items
        .iter()
        .map(|item| {
            let len = oneof_string_len(STRING_VALUE, item);
            key_len(VALUES) + encoded_len_varint(len as u64) + len
        })
        .sum()
}

fn key_len(tag: u32) -> usize {
    prost::encoding::key_len(tag)
}

fn length_delimited(out: &mut Vec<u8>, tag: u32, len: usize) {
    key(tag, WireType::LengthDelimited, out);
    varint(out, len as u64);
}

/// A field's key; every field number here is below 16, so one byte.
#[inline(always)]
fn key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    debug_assert!(tag < 16);
    out.push(((tag << 3) | wire_type as u32) as u8);
}

/// Most lengths and values here fit in one byte.
#[inline(always)]
fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

/// A proto3 string field: left out when empty.
fn string(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        oneof_string(out, tag, s);
    }
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        oneof_string_len(tag, s)
    }
}

/// A string in a oneof: written even when empty.
fn oneof_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    bytes_always(out, tag, s.as_bytes());
}

fn oneof_string_len(tag: u32, s: &str) -> usize {
    oneof_string_len_bytes(tag, s.len())
}

fn oneof_string_len_bytes(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        bytes_always(out, tag, b);
    }
}

fn bytes_always(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    length_delimited(out, tag, b.len());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest, common::v1::KeyValue,
    };
    use semconv::attr;

    use super::*;
    use crate::events::record::Severity;

    fn record(attributes: Vec<(&'static str, Value)>) -> Record {
        Record {
            name: semconv::event::FILE_OPEN,
            time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            severity: Severity::Warning,
            attributes,
        }
    }

    fn resource() -> Resource {
        Resource {
            attributes: vec![KeyValue {
                key: "host.name".into(),
                value: Some(super::super::logs::any_value(&Value::from("h"))),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn decodes_to_what_the_generated_types_hold() {
        let records = [
            record(vec![
                (attr::SEQUENCE, Value::Int(0)),
                (attr::PROCESS_PID, 4_000_000u32.into()),
                (attr::PROCESS_EXIT_CODE, Value::Int(-1)),
                (attr::DECISION, "would_block".into()),
                (attr::FILE_PATH, "/tmp/ü/".repeat(40).into()),
                (attr::HOST_NAME, Value::Str(Text::Shared("host".into()))),
                (attr::FILE_OPEN_MODE, vec!["read", "write"].into()),
                (attr::FILE_OPEN_MODE, Vec::<&'static str>::new().into()),
                (attr::PROCESS_IN_CONTAINER, false.into()),
                (attr::FILE_PATH_TRUNCATED, true.into()),
                (attr::FILE_PATH, "".into()),
            ]),
            record(Vec::new()),
        ];
        let span = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
        };
        let observed = SystemTime::now();
        let scope = InstrumentationScope {
            name: "safeguard".into(),
            version: "1.2.3".into(),
            ..Default::default()
        };

        let mut batch = LogBatch::default();
        batch.push(&records[0], unix_nanos(observed), Some(span));
        batch.push(&records[1], unix_nanos(observed), None);
        assert_eq!(batch.len(), 2);
        let (payload, times) = batch.seal(&resource(), &scope);
        assert!(batch.is_empty());
        assert_eq!(batch.bytes(), 0);
        assert_eq!(times, vec![1_700_000_000_123_456_789; 2]);

        let expected = {
            let mut request = super::super::logs_request(
                &resource(),
                vec![
                    super::super::logs::log_record(&records[0], observed, Some(span)),
                    super::super::logs::log_record(&records[1], observed, None),
                ],
            );
            request.resource_logs[0].scope_logs[0].scope = Some(scope.clone());
            request
        };
        let got = ExportLogsServiceRequest::decode(payload.as_slice()).unwrap();
        assert_eq!(got, expected);
        // Byte for byte, as prost writes it.
        assert_eq!(payload.len(), expected.encoded_len());
    }

    #[test]
    fn an_empty_batch_seals_to_a_request_without_records() {
        let (payload, times) =
            LogBatch::default().seal(&resource(), &InstrumentationScope::default());
        let got = ExportLogsServiceRequest::decode(payload.as_slice()).unwrap();
        assert!(times.is_empty());
        assert!(got.resource_logs[0].scope_logs[0].log_records.is_empty());
    }
}
