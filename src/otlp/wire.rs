//! The protobuf encoding of an OTLP `ExportTraceServiceRequest`, written
//! straight from the gateway's [`SpanRecord`]s. Building the generated
//! message types first (the `opentelemetry-proto` crate) cost 475 ns a span
//! on top of this (benches/MICRO.md, `features/trace`): a `String` for every
//! attribute's key, a `Vec` for every id, then one more pass over the built
//! messages. Those types stay the reference: the tests decode what this
//! writes with them and compare it with what they encode themselves.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto` (OTLP 1.x, stable). Every field
//! used has a number below 16, so each key is one byte.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Attr, SpanRecord};

/// Wire type of a varint field.
const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit field.
const FIXED64: u8 = 1;
/// Wire type of a length-delimited field (bytes, strings, messages).
const LEN: u8 = 2;

/// The one-byte key (tag) of field `number` (< 16) with wire type `wire`.
const fn tag(number: u8, wire: u8) -> u8 {
    (number << 3) | wire
}

/// An `ExportTraceServiceRequest` of `spans` from service `service`: one
/// `ResourceSpans` with `service.name`, one `ScopeSpans` of scope
/// `gatehouse` and this version.
pub fn encode(service: &str, spans: impl Iterator<Item = SpanRecord>) -> Vec<u8> {
    let mut body = Vec::new();
    for span in spans {
        put_span(&span, &mut body);
    }
    let name = Attr::Str(service.to_string());
    let resource = key_value_len("service.name", &name);
    let resource_len = field_len(resource);
    let scope = field_len("gatehouse".len()) + field_len(env!("CARGO_PKG_VERSION").len());
    let scope_spans = field_len(scope) + body.len();
    let resource_spans = field_len(resource_len) + field_len(scope_spans);
    let mut out = Vec::with_capacity(field_len(resource_spans));
    // ExportTraceServiceRequest.resource_spans = 1
    put_header(1, resource_spans, &mut out);
    // ResourceSpans.resource = 1; Resource.attributes = 1
    put_header(1, resource_len, &mut out);
    put_key_value(1, "service.name", &name, &mut out);
    // ResourceSpans.scope_spans = 2; ScopeSpans.scope = 1
    put_header(2, scope_spans, &mut out);
    put_header(1, scope, &mut out);
    // InstrumentationScope.name = 1, .version = 2
    put_bytes(1, b"gatehouse", &mut out);
    put_bytes(2, env!("CARGO_PKG_VERSION").as_bytes(), &mut out);
    // ScopeSpans.spans = 2, each written by put_span
    out.extend_from_slice(&body);
    out
}

/// Appends `span` as field 2 of a `ScopeSpans`.
fn put_span(span: &SpanRecord, out: &mut Vec<u8>) {
    let start = nanos(span.start);
    let end = nanos(span.end);
    let status = status_len(span.error);
    let len = field_len(16)
        + field_len(8)
        + span.parent_id.map_or(0, |_| field_len(8))
        + optional_len(span.name.len())
        + 2
        + fixed64_len(start)
        + fixed64_len(end)
        + span
            .attrs
            .iter()
            .map(|(k, v)| field_len(key_value_len(k, v)))
            .sum::<usize>()
        + field_len(status);
    put_header(2, len, out);
    // Span.trace_id = 1, .span_id = 2, .parent_span_id = 4, .name = 5
    put_bytes(1, &span.trace_id, out);
    put_bytes(2, &span.span_id, out);
    if let Some(parent) = &span.parent_id {
        put_bytes(4, parent, out);
    }
    if !span.name.is_empty() {
        put_bytes(5, span.name.as_bytes(), out);
    }
    // Span.kind = 6: SPAN_KIND_SERVER 2, SPAN_KIND_CLIENT 3
    out.extend_from_slice(&[tag(6, VARINT), if span.server { 2 } else { 3 }]);
    // Span.start_time_unix_nano = 7, .end_time_unix_nano = 8
    put_fixed64(7, start, out);
    put_fixed64(8, end, out);
    // Span.attributes = 9
    for (k, v) in &span.attrs {
        put_key_value(9, k, v, out);
    }
    // Span.status = 15; Status.code = 3: STATUS_CODE_ERROR 2 (UNSET 0 is
    // the default, so not written)
    put_header(15, status, out);
    if span.error {
        out.extend_from_slice(&[tag(3, VARINT), 2]);
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Length of a `Status` with code ERROR or UNSET.
fn status_len(error: bool) -> usize {
    if error {
        2
    } else {
        0
    }
}

/// Length of a `KeyValue` message of `key` and `value`.
fn key_value_len(key: &str, value: &Attr) -> usize {
    field_len(key.len()) + field_len(any_value_len(value))
}

/// Length of an `AnyValue` message holding `value`.
fn any_value_len(value: &Attr) -> usize {
    match value {
        Attr::Str(s) => field_len(s.len()),
        Attr::Int(i) => 1 + varint_len(*i as u64),
    }
}

/// Appends a `KeyValue` as field `number`.
fn put_key_value(number: u8, key: &str, value: &Attr, out: &mut Vec<u8>) {
    put_header(number, key_value_len(key, value), out);
    // KeyValue.key = 1, .value = 2
    put_bytes(1, key.as_bytes(), out);
    put_header(2, any_value_len(value), out);
    match value {
        // AnyValue.string_value = 1, .int_value = 3: members of a oneof,
        // written even when empty or zero
        Attr::Str(s) => put_bytes(1, s.as_bytes(), out),
        Attr::Int(i) => {
            out.push(tag(3, VARINT));
            put_varint(*i as u64, out);
        }
    }
}

/// Length of a length-delimited field of `len` bytes, its key included.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// [`field_len`], or 0 for an empty string (proto3 leaves defaults out).
fn optional_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        field_len(len)
    }
}

/// Length of a fixed64 field holding `value` (0 is left out).
fn fixed64_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        9
    }
}

/// Appends fixed64 field `number` unless `value` is 0.
fn put_fixed64(number: u8, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        out.push(tag(number, FIXED64));
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends the key and length of length-delimited field `number`.
fn put_header(number: u8, len: usize, out: &mut Vec<u8>) {
    out.push(tag(number, LEN));
    put_varint(len as u64, out);
}

/// Appends `bytes` as length-delimited field `number`.
fn put_bytes(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
    put_header(number, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// Bytes of `value` as a varint.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `value` as a varint: seven bits a byte, low first.
fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use prost::Message;

    use super::*;

    /// The request the `opentelemetry-proto` types build from `spans`.
    fn reference(service: &str, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
        let kv = |key: &str, value: &Attr| KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(match value {
                    Attr::Str(s) => any_value::Value::StringValue(s.clone()),
                    Attr::Int(i) => any_value::Value::IntValue(*i),
                }),
            }),
            ..Default::default()
        };
        let span = |s: &SpanRecord| Span {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: if s.server {
                SpanKind::Server
            } else {
                SpanKind::Client
            } as i32,
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.end),
            attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            status: Some(Status {
                code: if s.error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                } as i32,
                message: String::new(),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &Attr::Str(service.into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gatehouse".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: spans.iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn spans() -> Vec<SpanRecord> {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_780_000_000_000 + ms);
        let server = SpanRecord {
            trace_id: *b"0123456789abcdef",
            span_id: *b"spanid01",
            parent_id: Some(*b"parent01"),
            name: "GET /kline".into(),
            server: true,
            start: at(0),
            end: at(3),
            attrs: vec![
                ("http.request.method", Attr::Str("GET".into())),
                (
                    "url.path",
                    Attr::Str("/kline/".to_string() + &"x".repeat(300)),
                ),
                ("http.response.status_code", Attr::Int(200)),
                ("http.request.resend_count", Attr::Int(0)),
                ("gatehouse.test", Attr::Int(-7)),
                ("empty", Attr::Str(String::new())),
            ],
            error: false,
        };
        let client = SpanRecord {
            span_id: *b"spanid02",
            parent_id: None,
            name: String::new(),
            server: false,
            start: UNIX_EPOCH,
            attrs: Vec::new(),
            error: true,
            ..server.clone()
        };
        vec![server, client]
    }

    #[test]
    fn the_request_is_what_the_opentelemetry_types_encode() {
        let many: Vec<SpanRecord> = spans().into_iter().cycle().take(400).collect();
        for batch in [spans(), Vec::new(), many] {
            let written = encode("gate house", batch.clone().into_iter());
            let expected = reference("gate house", &batch);
            let decoded = ExportTraceServiceRequest::decode(written.as_slice()).unwrap();
            assert_eq!(decoded, expected);
            assert_eq!(written, expected.encode_to_vec());
        }
    }

    #[test]
    fn varints_take_seven_bits_a_byte() {
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            put_varint(value, &mut out);
            assert_eq!((out.len(), varint_len(value)), (len, len), "{value}");
            assert_eq!(
                prost::decode_length_delimiter(out.as_slice()).ok(),
                usize::try_from(value).ok()
            );
        }
    }
}
