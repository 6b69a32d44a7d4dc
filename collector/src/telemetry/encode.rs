//! Batches of log records and of process spans as the protobuf bytes of
//! OTLP `ExportLogsServiceRequest`s and `ExportTraceServiceRequest`s,
//! written straight from the records.
//!
//! Written by hand, on prost's wire-format helpers: opentelemetry-proto's
//! generated types own every key and every value as a `String`, so going
//! through them allocates some thirty times per event, while an [`Enriched`]
//! borrows most of its text. Field numbers are those of
//! opentelemetry/proto/logs/v1/logs.proto, trace/v1/trace.proto and
//! common.proto; the tests check that the bytes decode, with the generated
//! types, to exactly what those types would hold.

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
use crate::events::{Enriched, enriched::Value};

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
// Span fields.
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START_TIME_UNIX_NANO: u32 = 7;
const SPAN_END_TIME_UNIX_NANO: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const SPAN_DROPPED_EVENTS_COUNT: u32 = 12;
const SPAN_STATUS: u32 = 15;
/// The one field number above 15: a two-byte key.
const SPAN_FLAGS: u32 = 16;
// Span.Event fields.
const EVENT_TIME_UNIX_NANO: u32 = 1;
const EVENT_EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
// Status fields.
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
/// `Span.SpanKind.SPAN_KIND_INTERNAL`, `Status.StatusCode.STATUS_CODE_ERROR`.
const KIND_INTERNAL: u64 = 1;
const STATUS_CODE_ERROR: u64 = 2;
// Both requests have the same shape and numbers:
// Export{Logs,Trace}ServiceRequest.resource_{logs,spans},
// Resource{Logs,Spans}.{resource, scope_{logs,spans}},
// Scope{Logs,Spans}.{scope, log_records / spans}.
const RESOURCE_ITEMS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_ITEMS: u32 = 2;
const SCOPE: u32 = 1;
const ITEMS: u32 = 2;

/// Log records encoded as they come, sealed into one request.
#[derive(Default)]
pub struct LogBatch {
    /// `log_records` fields of a ScopeLogs: key, length, record.
    records: Vec<u8>,
    /// The records' kernel times (Unix ns), for the latency metric.
    times: Vec<u64>,
}

impl LogBatch {
    pub fn push(&mut self, record: &Enriched, observed_unix_nano: u64, span: Option<SpanContext>) {
        let time = unix_nanos(record.time);
        // Most records take 128 to 16,383 bytes: a two-byte length.
        message(&mut self.records, ITEMS, 2, |out| {
            log_record(out, record, time, observed_unix_nano, span)
        });
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
        let request = request(resource, scope, &self.records);
        self.records.clear();
        (request, std::mem::take(&mut self.times))
    }
}

/// An export request for `items`, the encoded `log_records` or `spans`
/// fields of one scope.
fn request(resource: &Resource, scope: &InstrumentationScope, items: &[u8]) -> Vec<u8> {
    let scope_len = scope.encoded_len();
    let scope_items_len =
        key_len(SCOPE) + encoded_len_varint(scope_len as u64) + scope_len + items.len();
    let resource_len = resource.encoded_len();
    let resource_items_len = key_len(RESOURCE)
        + encoded_len_varint(resource_len as u64)
        + resource_len
        + key_len(SCOPE_ITEMS)
        + encoded_len_varint(scope_items_len as u64)
        + scope_items_len;
    let mut out = Vec::with_capacity(
        key_len(RESOURCE_ITEMS)
            + encoded_len_varint(resource_items_len as u64)
            + resource_items_len,
    );
    length_delimited(&mut out, RESOURCE_ITEMS, resource_items_len);
    prost::encoding::message::encode(RESOURCE, resource, &mut out);
    length_delimited(&mut out, SCOPE_ITEMS, scope_items_len);
    prost::encoding::message::encode(SCOPE, scope, &mut out);
    out.extend_from_slice(items);
    out
}

/// A process span, as [`SpanBatch::push`] writes it.
pub struct SpanFields<'a> {
    pub ctx: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: &'a str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: &'a [(&'static str, Value)],
    /// `Span.events` fields, as [`span_event`] wrote them.
    pub events: &'a [u8],
    pub dropped_events: u32,
    /// `Some(message)`: the span's status is ERROR.
    pub error: Option<&'a str>,
}

/// Ended process spans, encoded as they end, sealed into one request.
#[derive(Default)]
pub struct SpanBatch {
    /// `spans` fields of a ScopeSpans: key, length, span.
    spans: Vec<u8>,
    count: usize,
}

impl SpanBatch {
    pub fn push(&mut self, span: &SpanFields) {
        message(&mut self.spans, ITEMS, 2, |out| write_span(out, span));
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The request carrying every span pushed; the batch is empty
    /// afterwards.
    pub fn seal(&mut self, resource: &Resource, scope: &InstrumentationScope) -> Vec<u8> {
        let request = request(resource, scope, &self.spans);
        self.spans.clear();
        self.count = 0;
        request
    }
}

fn write_span(out: &mut Vec<u8>, s: &SpanFields) {
    bytes_always(out, SPAN_TRACE_ID, &s.ctx.trace_id);
    bytes_always(out, SPAN_SPAN_ID, &s.ctx.span_id);
    if let Some(parent) = &s.parent {
        bytes_always(out, SPAN_PARENT_SPAN_ID, parent);
    }
    string(out, SPAN_NAME, s.name);
    key(SPAN_KIND, WireType::Varint, out);
    varint(out, KIND_INTERNAL);
    fixed64(out, SPAN_START_TIME_UNIX_NANO, s.start_unix_nano);
    fixed64(out, SPAN_END_TIME_UNIX_NANO, s.end_unix_nano);
    attributes(out, SPAN_ATTRIBUTES, s.attributes.iter());
    out.extend_from_slice(s.events);
    if s.dropped_events != 0 {
        key(SPAN_DROPPED_EVENTS_COUNT, WireType::Varint, out);
        varint(out, s.dropped_events.into());
    }
    if let Some(text) = s.error {
        message(out, SPAN_STATUS, 1, |out| {
            string(out, STATUS_MESSAGE, text);
            key(STATUS_CODE, WireType::Varint, out);
            varint(out, STATUS_CODE_ERROR);
        });
    }
    // Sampled, and the parent's "is remote" bit known (not remote).
    prost::encoding::encode_key(SPAN_FLAGS, WireType::ThirtyTwoBit, out);
    out.put_u32_le(0x100 | 1);
}

/// Appends a `Span.events` field to `out`: an event at `time` called
/// `name` with `attributes`.
pub fn span_event<'a>(
    out: &mut Vec<u8>,
    time: u64,
    name: &str,
    attributes: impl Iterator<Item = &'a (&'static str, Value)>,
) {
    message(out, SPAN_EVENTS, 1, |out| {
        fixed64(out, EVENT_TIME_UNIX_NANO, time);
        string(out, EVENT_EVENT_NAME, name);
        self::attributes(out, EVENT_ATTRIBUTES, attributes);
    });
}

/// `attributes` as repeated `KeyValue` fields `tag`.
fn attributes<'a>(
    out: &mut Vec<u8>,
    tag: u32,
    attributes: impl Iterator<Item = &'a (&'static str, Value)>,
) {
    for (key, value) in attributes {
        message(out, tag, 1, |out| {
            string(out, KEY, key);
            message(out, VALUE, 1, |out| any_value(out, value));
        });
    }
}

fn log_record(
    out: &mut Vec<u8>,
    record: &Enriched,
    time: u64,
    observed: u64,
    span: Option<SpanContext>,
) {
    fixed64(out, TIME_UNIX_NANO, time);
    fixed64(out, OBSERVED_TIME_UNIX_NANO, observed);
    key(SEVERITY_NUMBER, WireType::Varint, out);
    varint(out, severity_number(record.severity) as u64);
    string(out, SEVERITY_TEXT, record.severity.name());
    attributes(out, ATTRIBUTES, record.attributes.iter());
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
        Value::List(items) => message(out, ARRAY_VALUE, 1, |out| {
            for item in items {
                message(out, VALUES, 1, |out| oneof_string(out, STRING_VALUE, item));
            }
        }),
    }
}

/// A length-delimited field `tag` holding what `write` appends: written
/// first, with `room` bytes left for its length, which is put in front
/// afterwards (the body is moved where the length needs more or less
/// room). Saves computing every nested length before writing.
#[inline(always)]
fn message(out: &mut Vec<u8>, tag: u32, room: usize, write: impl FnOnce(&mut Vec<u8>)) {
    key(tag, WireType::LengthDelimited, out);
    let at = out.len();
    out.resize(at + room, 0);
    write(out);
    let len = out.len() - at - room;
    let need = encoded_len_varint(len as u64);
    if need != room {
        let body = at + room..out.len();
        if need > room {
            out.resize(out.len() + need - room, 0);
        }
        out.copy_within(body, at + need);
        out.truncate(at + need + len);
    }
    if need == 1 {
        out[at] = len as u8;
    } else {
        encode_varint(len as u64, &mut &mut out[at..at + need]);
    }
}

fn key_len(tag: u32) -> usize {
    prost::encoding::key_len(tag)
}

fn length_delimited(out: &mut Vec<u8>, tag: u32, len: usize) {
    key(tag, WireType::LengthDelimited, out);
    varint(out, len as u64);
}

/// A field's key; every field number here but [`SPAN_FLAGS`] is below
/// 16, so one byte.
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

/// A proto3 fixed64 field: left out when zero.
fn fixed64(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        key(tag, WireType::SixtyFourBit, out);
        out.put_u64_le(v);
    }
}

/// A proto3 string field: left out when empty.
fn string(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        oneof_string(out, tag, s);
    }
}

/// A string in a oneof: written even when empty.
fn oneof_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    bytes_always(out, tag, s.as_bytes());
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
    use crate::events::enriched::{Severity, Text};

    fn record(attributes: Vec<(&'static str, Value)>) -> Enriched {
        Enriched {
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
    fn spans_decode_to_what_the_generated_types_hold() {
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest,
            trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status},
        };
        let kv = |k: &'static str, v: Value| KeyValue {
            key: k.into(),
            value: Some(super::super::logs::any_value(&v)),
            ..Default::default()
        };
        let attributes = vec![
            (attr::PROCESS_PID, Value::Int(300)),
            (attr::PROCESS_COMMAND_ARGS, vec!["cat", "/etc/ü"].into()),
            (attr::PROCESS_UNFINISHED, true.into()),
        ];
        let event_attributes = [
            (attr::SEQUENCE, Value::Int(1 << 40)),
            (
                attr::FILE_PATH,
                Value::Str(Text::Owned("/etc/shadow".into())),
            ),
        ];
        let mut events = Vec::new();
        span_event(
            &mut events,
            13,
            semconv::event::FILE_OPEN,
            event_attributes.iter(),
        );
        span_event(&mut events, 0, "", [].iter());
        let ctx = SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let mut batch = SpanBatch::default();
        batch.push(&SpanFields {
            ctx,
            parent: Some([3; 8]),
            name: "cat",
            start_unix_nano: 11,
            end_unix_nano: 14,
            attributes: &attributes,
            events: &events,
            dropped_events: 200,
            error: Some("1 operation(s) blocked"),
        });
        batch.push(&SpanFields {
            ctx,
            parent: None,
            name: "",
            start_unix_nano: 0,
            end_unix_nano: 0,
            attributes: &[],
            events: &[],
            dropped_events: 0,
            error: None,
        });
        assert_eq!(batch.len(), 2);
        let scope = InstrumentationScope {
            name: "safeguard".into(),
            ..Default::default()
        };
        let payload = batch.seal(&resource(), &scope);
        assert!(batch.is_empty());

        let full = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "cat".into(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: 11,
            end_time_unix_nano: 14,
            attributes: attributes.iter().map(|(k, v)| kv(k, v.clone())).collect(),
            events: vec![
                span::Event {
                    time_unix_nano: 13,
                    name: semconv::event::FILE_OPEN.into(),
                    attributes: event_attributes
                        .iter()
                        .map(|(k, v)| kv(k, v.clone()))
                        .collect(),
                    dropped_attributes_count: 0,
                },
                span::Event::default(),
            ],
            dropped_events_count: 200,
            status: Some(Status {
                message: "1 operation(s) blocked".into(),
                code: status::StatusCode::Error as i32,
            }),
            flags: 0x101,
            ..Default::default()
        };
        let bare = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            kind: span::SpanKind::Internal as i32,
            flags: 0x101,
            ..Default::default()
        };
        let expected = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope),
                    spans: vec![full, bare],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let got = ExportTraceServiceRequest::decode(payload.as_slice()).unwrap();
        assert_eq!(got, expected);
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
