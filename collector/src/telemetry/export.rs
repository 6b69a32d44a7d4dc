//! Sends encoded OTLP requests to the Collector, over gRPC (tonic) or
//! HTTP/protobuf (reqwest), gzip-compressed, with the configured headers and
//! CA, and sorts failures into "try again later" and "this request will
//! never be accepted" (the OTLP specification's retryable codes).

use std::{borrow::Cow, fmt, io::Write as _, str::FromStr, time::Duration};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message as _;
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::config::{OtelConfig, OtlpProtocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    /// As `safeguard.export.signal` and spool file names spell it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => semconv::signal::LOGS,
            Signal::Traces => semconv::signal::TRACES,
            Signal::Metrics => semconv::signal::METRICS,
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The OTLP/gRPC method.
    fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

/// A gRPC codec for bytes that are already an encoded message: a batch is
/// encoded once, when it is spooled, and sent as it is, never decoded into
/// the generated types to be encoded again (that cost most of the agent's
/// time per event). The answer comes back as bytes too and is read like an
/// OTLP/HTTP answer. tonic's generated clients only take typed messages,
/// hence this codec.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut out = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}

/// The `otel.component.type` of the agent's exporter of `signal` over
/// `protocol`, as OpenTelemetry names its OTLP exporters.
pub fn component_type(protocol: OtlpProtocol, signal: Signal) -> &'static str {
    use semconv::component_type as c;
    match (protocol, signal) {
        (OtlpProtocol::Grpc, Signal::Logs) => c::OTLP_GRPC_LOG_EXPORTER,
        (OtlpProtocol::Grpc, Signal::Traces) => c::OTLP_GRPC_SPAN_EXPORTER,
        (OtlpProtocol::Grpc, Signal::Metrics) => c::OTLP_GRPC_METRIC_EXPORTER,
        (OtlpProtocol::HttpProtobuf, Signal::Logs) => c::OTLP_HTTP_LOG_EXPORTER,
        (OtlpProtocol::HttpProtobuf, Signal::Traces) => c::OTLP_HTTP_SPAN_EXPORTER,
        (OtlpProtocol::HttpProtobuf, Signal::Metrics) => c::OTLP_HTTP_METRIC_EXPORTER,
    }
}

/// Why an export request failed: the `error.type` of
/// `safeguard.export.request.failed`, and what delivery decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The Collector could not be reached, or said it is unavailable.
    Unavailable,
    /// The Collector did not answer in time.
    Timeout,
    /// The Collector answered with another gRPC status.
    Grpc(tonic::Code),
    /// The Collector answered with an HTTP error status.
    Http(u16),
    /// The Collector accepted a request only in part.
    Partial,
    /// A spooled batch no longer decodes.
    Encoding,
    /// A batch could not be written to the spool.
    Spool,
}

impl ErrorType {
    /// As the `error.type` attribute spells it: the `semconv::error_type`
    /// names, a gRPC code's canonical name (`INVALID_ARGUMENT`, as gRPC and
    /// OpenTelemetry spell it), an HTTP status's number (`400`).
    pub fn name(self) -> Cow<'static, str> {
        use semconv::error_type as e;
        match self {
            ErrorType::Unavailable => Cow::Borrowed(e::UNAVAILABLE),
            ErrorType::Timeout => Cow::Borrowed(e::TIMEOUT),
            ErrorType::Partial => Cow::Borrowed(e::REJECTED),
            ErrorType::Encoding => Cow::Borrowed(e::ENCODING),
            ErrorType::Spool => Cow::Borrowed(e::SPOOL),
            ErrorType::Grpc(code) => Cow::Borrowed(grpc_code_name(code)),
            ErrorType::Http(status) => Cow::Owned(status.to_string()),
        }
    }

    /// The Collector was reached and said why it did not take the request
    /// (it was not away or slow).
    pub fn collector_answered(self) -> bool {
        !matches!(self, ErrorType::Unavailable | ErrorType::Timeout)
    }
}

/// The canonical name of a gRPC status code (grpc/doc/statuscodes.md):
/// tonic names them only in Rust's own spelling.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Unreachable, slow, overloaded, or refusing for now: keep the batch
    /// and try again.
    #[error("{message}")]
    Retry { kind: ErrorType, message: String },
    /// The Collector says the request itself is bad: sending it again will
    /// not help.
    #[error("rejected: {message}")]
    Rejected { kind: ErrorType, message: String },
}

impl ExportError {
    pub fn kind(&self) -> ErrorType {
        match self {
            ExportError::Retry { kind, .. } | ExportError::Rejected { kind, .. } => *kind,
        }
    }
}

/// What the Collector accepted: all, except `rejected` items it said it
/// dropped (OTLP partial success).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

// One per agent: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        base: String,
    },
}

/// The agent's one OTLP client: sends already encoded requests of every
/// signal (log and trace batches from the spool, metrics collections) to
/// the configured endpoint, and sorts what goes wrong into an
/// [`ExportError`]. Built once at start and shared (`Arc`) by the delivery
/// and metrics tasks; it never retries on its own (delivery decides).
pub struct Transport {
    client: Client,
    gzip: bool,
    timeout: Duration,
    endpoint: String,
}

impl Transport {
    /// Builds the client; nothing is connected yet (the Collector may be
    /// down when the agent starts). Must run inside the tokio runtime.
    pub fn new(config: &OtelConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let ca = match &config.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("otel.ca_file: cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let client = match config.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
                    .with_context(|| {
                        format!("otel.endpoint: {:?} is not a valid URL", config.endpoint)
                    })?
                    .connect_timeout(timeout)
                    .timeout(timeout);
                if config.endpoint.starts_with("https://") {
                    let mut tls = ClientTlsConfig::new().with_native_roots();
                    if let Some(pem) = &ca {
                        tls = tls.ca_certificate(Certificate::from_pem(pem));
                    }
                    endpoint = endpoint
                        .tls_config(tls)
                        .context("otel: TLS configuration")?;
                }
                let channel = endpoint.connect_lazy();
                let mut metadata = MetadataMap::new();
                for (k, v) in &config.headers {
                    let key = MetadataKey::from_str(k).with_context(|| {
                        format!("otel.headers: {k:?} is not a valid header name")
                    })?;
                    let value = MetadataValue::try_from(v.as_str()).with_context(|| {
                        format!("otel.headers: the value of {k:?} is not a valid header value")
                    })?;
                    metadata.insert(key, value);
                }
                // The Collector answers in the encoding it was sent.
                let mut grpc =
                    tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
                if config.gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                Client::Grpc { grpc, metadata }
            }
            OtlpProtocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &config.headers {
                    let name = reqwest::header::HeaderName::from_str(k).with_context(|| {
                        format!("otel.headers: {k:?} is not a valid header name")
                    })?;
                    let value = reqwest::header::HeaderValue::from_str(v).with_context(|| {
                        format!("otel.headers: the value of {k:?} is not a valid header value")
                    })?;
                    headers.insert(name, value);
                }
                let mut builder = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .default_headers(headers);
                if let Some(pem) = &ca {
                    builder = builder.add_root_certificate(
                        reqwest::Certificate::from_pem(pem)
                            .context("otel.ca_file: not a PEM certificate")?,
                    );
                }
                Client::Http {
                    client: builder.build().context("otel: HTTP client")?,
                    base: config.endpoint.clone(),
                }
            }
        };
        Ok(Self {
            client,
            gzip: config.gzip,
            timeout,
            endpoint: config.endpoint.clone(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one encoded `Export*ServiceRequest` of `signal`.
    pub async fn send(&self, signal: Signal, payload: Vec<u8>) -> Result<Accepted, ExportError> {
        match &self.client {
            Client::Grpc { grpc, metadata } => {
                let mut grpc = grpc.clone();
                grpc.ready().await.map_err(|e| ExportError::Retry {
                    kind: ErrorType::Unavailable,
                    message: format!("not ready: {e}"),
                })?;
                let answer = grpc
                    .unary(
                        grpc_request(payload, metadata, self.timeout),
                        PathAndQuery::from_static(signal.grpc_path()),
                        EncodedCodec,
                    )
                    .await
                    .map_err(grpc_error)?;
                Ok(partial_success(signal, &answer.into_inner()))
            }
            Client::Http { client, base } => {
                let mut request = client
                    .post(format!("{base}{}", signal.http_path()))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                let body = if self.gzip {
                    request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                    gzip(&payload)
                } else {
                    payload
                };
                let response = request.body(body).send().await.map_err(http_error)?;
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(partial_success(signal, &bytes));
                }
                let message = format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                );
                let kind = ErrorType::Http(status.as_u16());
                // OTLP/HTTP: 400 means the request is bad; 429, 502, 503,
                // 504 are retryable. Anything else (401, 403, 404, 5xx) is a
                // problem of the deployment, not of the data: keep the data.
                if status == reqwest::StatusCode::BAD_REQUEST {
                    Err(ExportError::Rejected { kind, message })
                } else {
                    Err(ExportError::Retry { kind, message })
                }
            }
        }
    }
}

fn grpc_request<T>(message: T, metadata: &MetadataMap, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    *r.metadata_mut() = metadata.clone();
    r.set_timeout(timeout);
    r
}

fn gzip(payload: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(payload.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(payload);
    encoder.finish().unwrap_or_default()
}

/// The partial success in an OTLP answer (the same message over gRPC and
/// HTTP).
fn partial_success(signal: Signal, body: &[u8]) -> Accepted {
    let partial = match signal {
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
    };
    partial.map_or_else(Accepted::default, |(rejected, message)| Accepted {
        rejected,
        message,
    })
}

fn grpc_error(status: tonic::Status) -> ExportError {
    use tonic::Code;
    let kind = match status.code() {
        Code::Unavailable => ErrorType::Unavailable,
        Code::DeadlineExceeded => ErrorType::Timeout,
        other => ErrorType::Grpc(other),
    };
    // The transport error underneath says why (connection refused, TLS).
    let mut message = format!("{}: {}", kind, status.message());
    let mut source = std::error::Error::source(&status);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    match status.code() {
        Code::InvalidArgument => ExportError::Rejected { kind, message },
        _ => ExportError::Retry { kind, message },
    }
}

fn http_error(e: reqwest::Error) -> ExportError {
    let kind = if e.is_timeout() {
        ErrorType::Timeout
    } else {
        ErrorType::Unavailable
    };
    // The error's sources say why (connection refused, DNS, TLS).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    ExportError::Retry { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_sort_into_retry_and_rejected() {
        let e = grpc_error(tonic::Status::unavailable("down"));
        assert!(matches!(e, ExportError::Retry { .. }));
        assert_eq!(e.kind(), ErrorType::Unavailable);
        assert!(!e.kind().collector_answered());
        assert_eq!(e.to_string(), "unavailable: down");
        let e = grpc_error(tonic::Status::deadline_exceeded("slow"));
        assert_eq!(e.kind(), ErrorType::Timeout);
        assert!(!e.kind().collector_answered());
        let e = grpc_error(tonic::Status::invalid_argument("bad"));
        assert!(matches!(e, ExportError::Rejected { .. }));
        assert!(e.kind().collector_answered());
        assert_eq!(e.to_string(), "rejected: INVALID_ARGUMENT: bad");
        // Authentication trouble is the deployment's, not the data's: keep it.
        assert!(matches!(
            grpc_error(tonic::Status::unauthenticated("who?")),
            ExportError::Retry { .. }
        ));
    }

    /// The `error.type` values: ours, gRPC's canonical code names, HTTP
    /// statuses.
    #[test]
    fn error_types_are_spelled_as_upstream() {
        let names: Vec<String> = [
            ErrorType::Unavailable,
            ErrorType::Timeout,
            ErrorType::Partial,
            ErrorType::Encoding,
            ErrorType::Spool,
            ErrorType::Grpc(tonic::Code::InvalidArgument),
            ErrorType::Grpc(tonic::Code::Unauthenticated),
            ErrorType::Grpc(tonic::Code::ResourceExhausted),
            ErrorType::Http(400),
            ErrorType::Http(503),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            [
                "unavailable",
                "timeout",
                "rejected",
                "encoding",
                "spool",
                "INVALID_ARGUMENT",
                "UNAUTHENTICATED",
                "RESOURCE_EXHAUSTED",
                "400",
                "503"
            ]
        );
        for e in [
            semconv::error_type::UNAVAILABLE,
            semconv::error_type::TIMEOUT,
            semconv::error_type::REJECTED,
            semconv::error_type::ENCODING,
            semconv::error_type::SPOOL,
        ] {
            assert!(names.iter().any(|n| n == e), "{e}");
        }
    }

    #[test]
    fn gzip_round_trips() {
        let data = b"safeguard ".repeat(100);
        let packed = gzip(&data);
        assert!(packed.len() < data.len());
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(packed.as_slice()),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, data);
    }
}
