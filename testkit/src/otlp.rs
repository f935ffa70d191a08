//! An in-process OTLP/HTTP receiver: what a collector on `:4318` would get, decoded with the
//! `opentelemetry-proto` types, for the tests to read and the benchmark to export to.
//!
//! A small HTTP/1.1 server (keep-alive, `Content-Length` or chunked bodies, no TLS, no gzip) on
//! `127.0.0.1:0`, on a thread and tokio runtime of its own, so it serves whichever runtime the
//! caller runs (or none) and outlives none of them. It accepts `POST /v1/traces` and
//! `POST /v1/metrics` with `application/x-protobuf` (`http/protobuf`) or `application/json`
//! (`http/json`) bodies and answers 200 with an empty response message; any other path is 404,
//! a body that does not decode is 400 (and counted in [`OtlpReceiver::rejected`]).
//!
//! Two modes:
//!
//! - [`OtlpReceiver::start`] keeps every request, decoded: [`spans`](OtlpReceiver::spans)
//!   flattens them with their resource and scope, [`metrics`](OtlpReceiver::metrics) likewise,
//!   and [`wait_for`](OtlpReceiver::wait_for) polls until a condition over them holds.
//! - [`OtlpReceiver::start_discarding`] (for the benchmark's "exporting" row) decodes nothing
//!   and keeps nothing: it reads each body, answers 200 and counts
//!   [`requests`](OtlpReceiver::requests) and [`bytes`](OtlpReceiver::bytes), so a long run
//!   costs no memory and the receiver's own work stays small beside the server's.
//!
//! ```no_run
//! # async fn demo() {
//! use dbservice_testkit::otlp::OtlpReceiver;
//! let receiver = OtlpReceiver::start();
//! // Point the server at it: OTEL_EXPORTER_OTLP_ENDPOINT=<receiver.endpoint()>
//! let got = receiver
//!     .wait_for(|r| r.spans().iter().any(|s| s.name() == "transaction"), std::time::Duration::from_secs(10))
//!     .await;
//! assert!(got);
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Whether the receiver keeps what it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Keep,
    Discard,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    requests: AtomicU64,
    bytes: AtomicU64,
    rejected: AtomicU64,
}

/// A running OTLP/HTTP receiver; stops when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Starts a receiver that keeps every decoded request.
    ///
    /// # Panics
    /// If the loopback listener or the receiver's thread cannot be created (a test set-up
    /// failure).
    pub fn start() -> Self {
        Self::start_in(Mode::Keep)
    }

    /// Starts a receiver that decodes and keeps nothing and only counts requests and body bytes
    /// ([`requests`](Self::requests), [`bytes`](Self::bytes)): for benchmarks, where an export
    /// destination must answer quickly for as long as the run lasts.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_discarding() -> Self {
        Self::start_in(Mode::Discard)
    }

    fn start_in(mode: Mode) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("local address");
        let state = Arc::new(State {
            mode,
            traces: Mutex::new(Vec::new()),
            metrics: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let state = served.clone();
                            tokio::spawn(async move {
                                let _ = serve(stream, &state).await;
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("receiver thread");
        Self {
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:<port>` (the exporter
    /// appends `/v1/traces` and `/v1/metrics`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Export requests answered so far (both signals, both modes; rejected ones not counted).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Body bytes of the requests answered so far.
    pub fn bytes(&self) -> u64 {
        self.state.bytes.load(Ordering::Relaxed)
    }

    /// Requests refused: unknown path or method, or a body that did not decode.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// The trace export requests kept so far, as received.
    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.state.traces.lock().expect("traces lock").clone()
    }

    /// The metric export requests kept so far, as received.
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.state.metrics.lock().expect("metrics lock").clone()
    }

    /// Every span received so far, each with its resource and scope, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let traces = self.state.traces.lock().expect("traces lock");
        let mut out = Vec::new();
        for req in traces.iter() {
            for rs in &req.resource_spans {
                let resource = attributes(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes));
                for ss in &rs.scope_spans {
                    let scope = ss
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    for span in &ss.spans {
                        out.push(ReceivedSpan {
                            resource: resource.clone(),
                            scope: scope.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metric received so far (one entry per metric per export), each with its resource
    /// and scope, in arrival order: a later entry of the same name is a later reading.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        let metrics = self.state.metrics.lock().expect("metrics lock");
        let mut out = Vec::new();
        for req in metrics.iter() {
            for rm in &req.resource_metrics {
                let resource = attributes(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
                for sm in &rm.scope_metrics {
                    let scope = sm
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    for metric in &sm.metrics {
                        out.push(ReceivedMetric {
                            resource: resource.clone(),
                            scope: scope.clone(),
                            metric: metric.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Forgets everything received and resets the counters.
    pub fn clear(&self) {
        self.state.traces.lock().expect("traces lock").clear();
        self.state.metrics.lock().expect("metrics lock").clear();
        self.state.requests.store(0, Ordering::Relaxed);
        self.state.bytes.store(0, Ordering::Relaxed);
        self.state.rejected.store(0, Ordering::Relaxed);
    }

    /// Polls `check` every 25 ms until it holds (true) or `timeout` passes (false).
    pub async fn wait_for(&self, check: impl Fn(&Self) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One received span with the resource and instrumentation scope it was exported under.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's attributes (`service.name`, ...), values as text.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The span as decoded.
    pub span: Span,
}

impl ReceivedSpan {
    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent's span id (16 hex digits), or "" for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The span kind as the protocol names it: `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, ...
    pub fn kind(&self) -> &'static str {
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(self.span.kind)
            .map_or("SPAN_KIND_UNKNOWN", |k| k.as_str_name())
    }

    /// The status code as the protocol names it: `STATUS_CODE_UNSET`, `STATUS_CODE_ERROR`, ...
    pub fn status(&self) -> &'static str {
        let code = self.span.status.as_ref().map_or(0, |s| s.code);
        opentelemetry_proto::tonic::trace::v1::status::StatusCode::try_from(code)
            .map_or("STATUS_CODE_UNKNOWN", |c| c.as_str_name())
    }

    /// The span's attributes, values as text.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        attributes(&self.span.attributes)
    }

    /// One attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| value_text(kv.value.as_ref()))
    }

    /// The names of the span's events.
    pub fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }
}

/// One received metric with the resource and instrumentation scope it was exported under.
#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    /// The resource's attributes, values as text.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The metric as decoded.
    pub metric: Metric,
}

/// One data point of a gauge or sum: its attributes and value.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberPoint {
    /// The point's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The value (integers converted).
    pub value: f64,
}

/// One data point of a histogram: its attributes, count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    /// The point's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// Recorded measurements.
    pub count: u64,
    /// Their sum (0 when the exporter left it out).
    pub sum: f64,
}

impl ReceivedMetric {
    /// The metric's name.
    pub fn name(&self) -> &str {
        &self.metric.name
    }

    /// The metric's unit (`s`, `{connection}`, ...).
    pub fn unit(&self) -> &str {
        &self.metric.unit
    }

    /// The points of a gauge or sum (none for other kinds).
    pub fn number_points(&self) -> Vec<NumberPoint> {
        let points = match &self.metric.data {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            Some(metric::Data::Sum(s)) => &s.data_points,
            _ => return Vec::new(),
        };
        points
            .iter()
            .map(|p| NumberPoint {
                attributes: attributes(&p.attributes),
                value: match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    #[allow(clippy::cast_precision_loss)]
                    Some(number_data_point::Value::AsInt(v)) => v as f64,
                    None => f64::NAN,
                },
            })
            .collect()
    }

    /// The points of a histogram (none for other kinds).
    pub fn histogram_points(&self) -> Vec<HistogramPoint> {
        match &self.metric.data {
            Some(metric::Data::Histogram(h)) => h
                .data_points
                .iter()
                .map(|p| HistogramPoint {
                    attributes: attributes(&p.attributes),
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Attributes as a sorted map of text values.
fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

/// A value as text: strings as they are, numbers and booleans formatted, arrays and maps as
/// their debug form.
fn value_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The longest body accepted (the SDK's batches are far smaller).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Serves one connection: requests until the client closes it or asks to.
async fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut chunked = false;
        let mut json = false;
        let mut close = false;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "content-type" => json = value.starts_with("application/json"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(&mut stream).await?
        } else {
            if length > MAX_BODY {
                return Err(std::io::Error::other("body too large"));
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await?;
            body
        };
        let status = if method != "POST" {
            "405 Method Not Allowed"
        } else {
            match accept(state, &path, &body, json) {
                Ok(()) => "200 OK",
                Err(status) => status,
            }
        };
        let (content_type, answer) = if json {
            ("application/json", "{}")
        } else {
            ("application/x-protobuf", "")
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        stream.get_mut().write_all(head.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// Decodes and stores one export request, or tells the status to answer.
fn accept(state: &State, path: &str, body: &[u8], json: bool) -> Result<(), &'static str> {
    const BAD: &str = "400 Bad Request";
    let reject = |status| {
        state.rejected.fetch_add(1, Ordering::Relaxed);
        Err(status)
    };
    let path = path.split('?').next().unwrap_or_default();
    if !matches!(path, "/v1/traces" | "/v1/metrics") {
        return reject("404 Not Found");
    }
    if state.mode == Mode::Keep {
        if path == "/v1/traces" {
            let decoded = if json {
                serde_json::from_slice::<ExportTraceServiceRequest>(body).map_err(|_| ())
            } else {
                ExportTraceServiceRequest::decode(body).map_err(|_| ())
            };
            match decoded {
                Ok(req) => state.traces.lock().expect("traces lock").push(req),
                Err(()) => return reject(BAD),
            }
        } else {
            let decoded = if json {
                serde_json::from_slice::<ExportMetricsServiceRequest>(body).map_err(|_| ())
            } else {
                ExportMetricsServiceRequest::decode(body).map_err(|_| ())
            };
            match decoded {
                Ok(req) => state.metrics.lock().expect("metrics lock").push(req),
                Err(()) => return reject(BAD),
            }
        }
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    state.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Reads a `Transfer-Encoding: chunked` body.
async fn read_chunked(stream: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        stream.read_line(&mut size).await?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(std::io::Error::other("body too large"));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await?;
        let mut crlf = [0; 2];
        stream.read_exact(&mut crlf).await?;
    }
}
