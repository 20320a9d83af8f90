//! A real OTLP receiver for tests: OTLP/HTTP (protobuf and JSON) and OTLP/gRPC on
//! `127.0.0.1:0`, decoding into the official `opentelemetry-proto` types. It runs on its own
//! runtime thread, so it can be used from plain threads and from any Tokio runtime flavour.
//! A [`ReceiverMode`] delays or stalls responses to test bounded shutdown.
//! [`OtlpReceiver::start_tls`] serves both listeners over TLS (optionally requiring a client
//! certificate), with certificates from a [`TestCa`] generated in the test.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// The official OTLP protobuf types the receiver decodes into.
pub use opentelemetry_proto as proto;

/// A certificate authority generated for one test, issuing server and client certificates
/// for `localhost` / `127.0.0.1`.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn rcgen_error(err: rcgen::Error) -> io::Error {
    io::Error::other(format!("test certificate: {err}"))
}

impl TestCa {
    /// A fresh self-signed CA.
    pub fn new() -> io::Result<Self> {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Quest test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate (PEM), to trust on the other side.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn issue(&self, name: &str, usage: rcgen::ExtendedKeyUsagePurpose) -> io::Result<IssuedCert> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(rcgen_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> io::Result<IssuedCert> {
        self.issue(
            "Quest test server",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for mTLS.
    pub fn client_cert(&self) -> io::Result<IssuedCert> {
        self.issue(
            "Quest test client",
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// TLS settings of a receiver.
#[derive(Clone, Debug)]
pub struct ReceiverTls {
    /// The server certificate and key.
    pub server: IssuedCert,
    /// When set, clients must present a certificate issued by this CA (PEM): mutual TLS.
    pub client_ca_pem: Option<String>,
}

fn tls_acceptor(tls: &ReceiverTls, alpn: &[&[u8]]) -> io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |what: &str, err: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {err}"))
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = CertificateDer::pem_slice_iter(tls.server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid("server certificate", &err))?;
    let key = PrivateKeyDer::from_pem_slice(tls.server.key_pem.as_bytes())
        .map_err(|err| invalid("server key", &err))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid("TLS versions", &err))?;
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                let cert = cert.map_err(|err| invalid("client CA", &err))?;
                roots.add(cert).map_err(|err| invalid("client CA", &err))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|err| invalid("client verifier", &err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|err| invalid("server certificate", &err))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections, completes TLS handshakes concurrently and hands out the
/// established streams; failed handshakes are counted.
fn spawn_tls_accept_loop(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) -> tokio::sync::mpsc::Receiver<TlsConnection> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    runtime.spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let client_certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|certs| !certs.is_empty());
                        shared.record_handshake(true, client_certificate);
                        let _ = tx.send(TlsConnection { stream, peer }).await;
                    }
                    Err(_) => shared.record_handshake(false, false),
                }
            });
        }
    });
    rx
}

/// One established TLS connection.
struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
}

struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// An axum listener over established TLS connections.
struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<TlsConnection>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => (TlsIo(connection.stream), connection.peer),
            // The accept loop never ends while the runtime runs.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// TLS handshakes the receiver saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Completed handshakes.
    pub succeeded: u64,
    /// Completed handshakes in which the client presented a certificate.
    pub with_client_certificate: u64,
    /// Failed handshakes (untrusted server certificate, missing client certificate, …).
    pub failed: u64,
}

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReceiverMode {
    /// Record and answer at once.
    #[default]
    Normal,
    /// Record, then wait this long before answering.
    Delay(Duration),
    /// Record, then never answer (until the mode changes back).
    Stall,
}

/// Transport a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP with `application/x-protobuf`.
    HttpProtobuf,
    /// OTLP/HTTP with `application/json`.
    HttpJson,
    /// OTLP/gRPC.
    Grpc,
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// `traces`, `logs` or `metrics`.
    pub signal: &'static str,
    /// How it arrived.
    pub transport: Transport,
    /// HTTP path (`/v1/traces`, or the gRPC method path).
    pub path: String,
    /// Headers / gRPC metadata (lower-case names; binary metadata skipped).
    pub headers: BTreeMap<String, String>,
}

/// Everything received so far, as decoded protobuf messages.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Every request in arrival order.
    pub requests: Vec<RequestInfo>,
    /// Trace export requests.
    pub traces: Vec<ExportTraceServiceRequest>,
    /// Log export requests.
    pub logs: Vec<ExportLogsServiceRequest>,
    /// Metric export requests.
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// TLS handshakes (all zero for a plain-text receiver).
    pub handshakes: Handshakes,
}

/// A flattened span.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Span kind (proto enum value).
    pub kind: i32,
    /// Attributes rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes.
    pub resource: BTreeMap<String, String>,
    /// Span events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Span links: (trace id, span id), hex.
    pub links: Vec<(String, String)>,
    /// Parent span id (hex, empty for a root).
    pub parent_span_id: String,
    /// W3C tracestate.
    pub trace_state: String,
}

/// A flattened log record.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLog {
    /// Event name field of the record (may be empty).
    pub event_name: String,
    /// Body rendered as a string.
    pub body: String,
    /// Attributes rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes.
    pub resource: BTreeMap<String, String>,
}

/// A flattened metric data point.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// Metric name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// `sum`, `gauge`, `histogram`, `exponential_histogram` or `summary`.
    pub kind: &'static str,
    /// Point attributes rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes.
    pub resource: BTreeMap<String, String>,
    /// Value for sums/gauges; sum for histograms.
    pub value: f64,
    /// Count for histograms (1 for sums and gauges).
    pub count: u64,
    /// Explicit histogram bucket boundaries.
    pub bounds: Vec<f64>,
    /// Aggregation temporality (proto enum value; 1 = delta, 2 = cumulative; 0 for gauges).
    pub temporality: i32,
}

/// Renders an OTLP value as a string (arrays and maps in a debug-ish form).
pub fn any_value_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

/// Attributes as a string map.
pub fn attribute_map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value_string(kv.value.as_ref())))
        .collect()
}

fn resource_map(resource: Option<&Resource>) -> BTreeMap<String, String> {
    resource
        .map(|r| attribute_map(&r.attributes))
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Received {
    /// Resource attributes of every resource seen, per signal (`traces`, `logs`, `metrics`).
    pub fn resources(&self) -> Vec<(&'static str, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        for request in &self.traces {
            for rs in &request.resource_spans {
                out.push(("traces", resource_map(rs.resource.as_ref())));
            }
        }
        for request in &self.logs {
            for rl in &request.resource_logs {
                out.push(("logs", resource_map(rl.resource.as_ref())));
            }
        }
        for request in &self.metrics {
            for rm in &request.resource_metrics {
                out.push(("metrics", resource_map(rm.resource.as_ref())));
            }
        }
        out
    }

    /// Every span received.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for request in &self.traces {
            for rs in &request.resource_spans {
                let resource = resource_map(rs.resource.as_ref());
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(ReceivedSpan {
                            name: span.name.clone(),
                            kind: span.kind,
                            attributes: attribute_map(&span.attributes),
                            resource: resource.clone(),
                            events: span
                                .events
                                .iter()
                                .map(|event| (event.name.clone(), attribute_map(&event.attributes)))
                                .collect(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            links: span
                                .links
                                .iter()
                                .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                                .collect(),
                            parent_span_id: hex(&span.parent_span_id),
                            trace_state: span.trace_state.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every log record received.
    pub fn log_records(&self) -> Vec<ReceivedLog> {
        let mut out = Vec::new();
        for request in &self.logs {
            for rl in &request.resource_logs {
                let resource = resource_map(rl.resource.as_ref());
                for sl in &rl.scope_logs {
                    for record in &sl.log_records {
                        out.push(ReceivedLog {
                            event_name: record.event_name.clone(),
                            body: any_value_string(record.body.as_ref()),
                            attributes: attribute_map(&record.attributes),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metric data point received.
    pub fn metric_points(&self) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        for request in &self.metrics {
            for rm in &request.resource_metrics {
                let resource = resource_map(rm.resource.as_ref());
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        let point = |kind,
                                     attributes: &[KeyValue],
                                     value,
                                     count,
                                     bounds: Vec<f64>,
                                     temporality| MetricPoint {
                            name: metric.name.clone(),
                            unit: metric.unit.clone(),
                            kind,
                            attributes: attribute_map(attributes),
                            resource: resource.clone(),
                            value,
                            count,
                            bounds,
                            temporality,
                        };
                        let number = |value: Option<&number_data_point::Value>| match value {
                            Some(number_data_point::Value::AsDouble(v)) => *v,
                            Some(number_data_point::Value::AsInt(v)) => *v as f64,
                            None => 0.0,
                        };
                        match &metric.data {
                            Some(metric::Data::Sum(sum)) => {
                                for dp in &sum.data_points {
                                    out.push(point(
                                        "sum",
                                        &dp.attributes,
                                        number(dp.value.as_ref()),
                                        1,
                                        Vec::new(),
                                        sum.aggregation_temporality,
                                    ));
                                }
                            }
                            Some(metric::Data::Gauge(gauge)) => {
                                for dp in &gauge.data_points {
                                    out.push(point(
                                        "gauge",
                                        &dp.attributes,
                                        number(dp.value.as_ref()),
                                        1,
                                        Vec::new(),
                                        0,
                                    ));
                                }
                            }
                            Some(metric::Data::Histogram(histogram)) => {
                                for dp in &histogram.data_points {
                                    out.push(point(
                                        "histogram",
                                        &dp.attributes,
                                        dp.sum.unwrap_or_default(),
                                        dp.count,
                                        dp.explicit_bounds.clone(),
                                        histogram.aggregation_temporality,
                                    ));
                                }
                            }
                            Some(metric::Data::ExponentialHistogram(histogram)) => {
                                for dp in &histogram.data_points {
                                    out.push(point(
                                        "exponential_histogram",
                                        &dp.attributes,
                                        dp.sum.unwrap_or_default(),
                                        dp.count,
                                        Vec::new(),
                                        histogram.aggregation_temporality,
                                    ));
                                }
                            }
                            Some(metric::Data::Summary(summary)) => {
                                for dp in &summary.data_points {
                                    out.push(point(
                                        "summary",
                                        &dp.attributes,
                                        dp.sum,
                                        dp.count,
                                        Vec::new(),
                                        0,
                                    ));
                                }
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        out
    }
}

struct Shared {
    received: Mutex<Received>,
    changed: Condvar,
    mode: Mutex<ReceiverMode>,
    mode_changed: tokio::sync::watch::Sender<ReceiverMode>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Received> {
        match self.received.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn record(&self, info: RequestInfo, push: impl FnOnce(&mut Received)) {
        let mut received = self.lock();
        received.requests.push(info);
        push(&mut received);
        drop(received);
        self.changed.notify_all();
    }

    fn record_handshake(&self, succeeded: bool, client_certificate: bool) {
        let mut received = self.lock();
        if succeeded {
            received.handshakes.succeeded += 1;
            if client_certificate {
                received.handshakes.with_client_certificate += 1;
            }
        } else {
            received.handshakes.failed += 1;
        }
        drop(received);
        self.changed.notify_all();
    }

    fn mode(&self) -> ReceiverMode {
        match self.mode.lock() {
            Ok(mode) => *mode,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Applies the configured delay or stall before answering.
    async fn hold(&self) {
        match self.mode() {
            ReceiverMode::Normal => {}
            ReceiverMode::Delay(delay) => tokio::time::sleep(delay).await,
            ReceiverMode::Stall => {
                let mut rx = self.mode_changed.subscribe();
                while *rx.borrow_and_update() == ReceiverMode::Stall {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("http", &self.http_addr)
            .field("grpc", &self.grpc_addr)
            .finish()
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    json: bool,
    body: &[u8],
) -> Result<T, String> {
    if json {
        serde_json::from_slice(body).map_err(|err| format!("invalid OTLP JSON: {err}"))
    } else {
        T::decode(body).map_err(|err| format!("invalid OTLP protobuf: {err}"))
    }
}

fn respond<T: Message + serde::Serialize>(json: bool, message: T) -> Response {
    if json {
        let body = serde_json::to_vec(&message).unwrap_or_else(|_| b"{}".to_vec());
        ([(CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (
            [(CONTENT_TYPE, "application/x-protobuf")],
            message.encode_to_vec(),
        )
            .into_response()
    }
}

async fn http_traces(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = is_json(&headers);
    let request: ExportTraceServiceRequest = match decode(json, &body) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    shared.record(http_info("traces", "/v1/traces", json, &headers), |r| {
        r.traces.push(request)
    });
    shared.hold().await;
    respond(json, ExportTraceServiceResponse::default())
}

async fn http_logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = is_json(&headers);
    let request: ExportLogsServiceRequest = match decode(json, &body) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    shared.record(http_info("logs", "/v1/logs", json, &headers), |r| {
        r.logs.push(request)
    });
    shared.hold().await;
    respond(json, ExportLogsServiceResponse::default())
}

async fn http_metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = is_json(&headers);
    let request: ExportMetricsServiceRequest = match decode(json, &body) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    shared.record(http_info("metrics", "/v1/metrics", json, &headers), |r| {
        r.metrics.push(request)
    });
    shared.hold().await;
    respond(json, ExportMetricsServiceResponse::default())
}

fn http_info(signal: &'static str, path: &str, json: bool, headers: &HeaderMap) -> RequestInfo {
    RequestInfo {
        signal,
        transport: if json {
            Transport::HttpJson
        } else {
            Transport::HttpProtobuf
        },
        path: path.to_string(),
        headers: header_map(headers),
    }
}

fn grpc_info(
    signal: &'static str,
    path: &str,
    metadata: &tonic::metadata::MetadataMap,
) -> RequestInfo {
    RequestInfo {
        signal,
        transport: Transport::Grpc,
        path: path.to_string(),
        headers: header_map(&metadata.clone().into_headers()),
    }
}

#[derive(Clone)]
struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let info = grpc_info(
            "traces",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request.metadata(),
        );
        let message = request.into_inner();
        self.0.record(info, |r| r.traces.push(message));
        self.0.hold().await;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let info = grpc_info(
            "logs",
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request.metadata(),
        );
        let message = request.into_inner();
        self.0.record(info, |r| r.logs.push(message));
        self.0.hold().await;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let info = grpc_info(
            "metrics",
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            request.metadata(),
        );
        let message = request.into_inner();
        self.0.record(info, |r| r.metrics.push(message));
        self.0.hold().await;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl OtlpReceiver {
    /// Starts HTTP and gRPC listeners on `127.0.0.1:0` on a dedicated runtime thread.
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// [`OtlpReceiver::start`] with both listeners behind TLS (mutual TLS when
    /// `tls.client_ca_pem` is set). Endpoints are then `https://127.0.0.1:<port>`.
    pub fn start_tls(tls: ReceiverTls) -> io::Result<Self> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<ReceiverTls>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()?;
        let (mode_changed, _) = tokio::sync::watch::channel(ReceiverMode::Normal);
        let shared = Arc::new(Shared {
            received: Mutex::new(Received::default()),
            changed: Condvar::new(),
            mode: Mutex::new(ReceiverMode::Normal),
            mode_changed,
        });
        // Bound with std so `start` never blocks on a runtime (callers may be inside one).
        let bind = || -> io::Result<tokio::net::TcpListener> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
        };
        let (http_listener, grpc_listener) = (bind()?, bind()?);
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let app = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/logs", post(http_logs))
            .route("/v1/metrics", post(http_metrics))
            .with_state(Arc::clone(&shared));
        let grpc = Grpc(Arc::clone(&shared));
        let grpc_router = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(grpc.clone()))
            .add_service(LogsServiceServer::new(grpc.clone()))
            .add_service(MetricsServiceServer::new(grpc));
        match &tls {
            None => {
                runtime.spawn(async move {
                    let _ = axum::serve(http_listener, app).await;
                });
                runtime.spawn(async move {
                    let incoming = tokio_stream_from(grpc_listener);
                    let _ = grpc_router.serve_with_incoming(incoming).await;
                });
            }
            Some(tls) => {
                let http_connections = spawn_tls_accept_loop(
                    &runtime,
                    http_listener,
                    tls_acceptor(tls, &[b"http/1.1"])?,
                    Arc::clone(&shared),
                );
                let grpc_connections = spawn_tls_accept_loop(
                    &runtime,
                    grpc_listener,
                    tls_acceptor(tls, &[b"h2"])?,
                    Arc::clone(&shared),
                );
                let listener = TlsListener {
                    connections: http_connections,
                    local: http_addr,
                };
                runtime.spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                runtime.spawn(async move {
                    let incoming = tls_stream(grpc_connections);
                    let _ = grpc_router.serve_with_incoming(incoming).await;
                });
            }
        }
        Ok(Self {
            http_addr,
            grpc_addr,
            scheme: if tls.is_some() { "https" } else { "http" },
            shared,
            runtime: Some(runtime),
        })
    }

    /// Base OTLP/HTTP endpoint, e.g. `http://127.0.0.1:43123`.
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.http_addr)
    }

    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:43124`.
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.grpc_addr)
    }

    /// Changes how later (and currently stalled) requests are answered.
    pub fn set_mode(&self, mode: ReceiverMode) {
        match self.shared.mode.lock() {
            Ok(mut slot) => *slot = mode,
            Err(poisoned) => *poisoned.into_inner() = mode,
        }
        self.shared.mode_changed.send_replace(mode);
    }

    /// A copy of everything received so far.
    pub fn received(&self) -> Received {
        self.shared.lock().clone()
    }

    /// Blocks until `done` holds for what was received, or `timeout` passes; returns the final
    /// snapshot either way (`Err` on timeout, carrying the snapshot for diagnostics).
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Received) -> bool,
    ) -> Result<Received, Box<Received>> {
        let deadline = Instant::now() + timeout;
        let mut received = self.shared.lock();
        loop {
            if done(&received) {
                return Ok(received.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Box::new(received.clone()));
            }
            received = match self.shared.changed.wait_timeout(received, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn tls_stream(
    connections: tokio::sync::mpsc::Receiver<TlsConnection>,
) -> impl tokio_stream_shim::Stream<Item = io::Result<TlsIo>> {
    tokio_stream_shim::TlsConnections(connections)
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream_shim::Stream<Item = io::Result<tokio::net::TcpStream>> {
    tokio_stream_shim::listener_stream(listener)
}

/// A minimal `Stream` over accepted connections (tonic wants a stream of I/O objects).
mod tokio_stream_shim {
    use std::io;
    use std::pin::Pin;
    use std::task::Context;
    use std::task::Poll;

    pub(super) use tonic::codegen::tokio_stream::Stream;

    pub(super) struct Listener(tokio::net::TcpListener);

    impl Stream for Listener {
        type Item = io::Result<tokio::net::TcpStream>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.0.poll_accept(cx) {
                Poll::Ready(Ok((stream, _))) => Poll::Ready(Some(Ok(stream))),
                Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    pub(super) struct TlsConnections(pub(super) tokio::sync::mpsc::Receiver<super::TlsConnection>);

    impl Stream for TlsConnections {
        type Item = io::Result<super::TlsIo>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.0.poll_recv(cx) {
                Poll::Ready(Some(connection)) => {
                    Poll::Ready(Some(Ok(super::TlsIo(connection.stream))))
                }
                Poll::Ready(None) => Poll::Pending,
                Poll::Pending => Poll::Pending,
            }
        }
    }

    pub(super) fn listener_stream(listener: tokio::net::TcpListener) -> Listener {
        Listener(listener)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.set_mode(ReceiverMode::Normal);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
