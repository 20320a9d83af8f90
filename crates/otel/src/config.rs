//! Telemetry settings (`[otel]` after config parsing), exporter kinds, endpoint and timeout
//! resolution, and validation of trace metadata (`span_attributes`, `tracestate`).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::trace::TraceState;

/// Default `[otel] environment`.
pub const DEFAULT_OTEL_ENVIRONMENT: &str = "dev";
/// Default OTLP export timeout when no `OTEL_EXPORTER_OTLP_*_TIMEOUT` variable is set.
pub const OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default bound on the whole exit flush (`[otel] shutdown_timeout_ms`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default Statsig OTLP base endpoint (`/v1/metrics` is appended unless already there).
pub const STATSIG_OTLP_HTTP_ENDPOINT: &str = "https://api.statsig.com/otlp";
/// Environment variable overriding [`STATSIG_OTLP_HTTP_ENDPOINT`].
pub const STATSIG_OTLP_HTTP_ENDPOINT_ENV: &str = "QUEST_STATSIG_OTLP_ENDPOINT";
/// Header carrying the Statsig key.
pub const STATSIG_API_KEY_HEADER: &str = "statsig-api-key";
/// Environment variable holding the Statsig server secret.
pub const STATSIG_SECRET_ENV: &str = "STATSIG_SERVER_SDK_SECRET";

/// Everything needed to build an [`crate::OtelProvider`].
#[derive(Clone, Debug)]
pub struct OtelSettings {
    /// Resource `env` and `deployment.environment.name`.
    pub environment: String,
    /// Resource `service.name` (the originator unless overridden).
    pub service_name: String,
    /// Resource `service.version`.
    pub service_version: String,
    /// Quest home directory (`$QUEST_HOME`).
    pub home: PathBuf,
    /// Logs exporter.
    pub exporter: OtelExporter,
    /// Traces exporter (never inherited from `exporter`).
    pub trace_exporter: OtelExporter,
    /// Metrics exporter.
    pub metrics_exporter: OtelExporter,
    /// String attributes set on every exported span.
    pub span_attributes: BTreeMap<String, String>,
    /// Tracestate members (outer key) made of `k:v` fields (inner table).
    pub tracestate: BTreeMap<String, BTreeMap<String, String>>,
    /// `[otel.resource_attributes]`: highest-precedence resource attributes.
    pub resource_attributes: BTreeMap<String, String>,
    /// Bound on the whole shutdown flush of all three signals.
    pub shutdown_timeout: Duration,
    /// Metric export interval; `None` keeps the SDK default (60 s or `OTEL_METRIC_EXPORT_INTERVAL`).
    pub metrics_export_interval: Option<Duration>,
}

impl OtelSettings {
    /// Settings with every exporter off and default limits.
    pub fn new(
        environment: impl Into<String>,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        home: impl Into<PathBuf>,
    ) -> Self {
        Self {
            environment: environment.into(),
            service_name: service_name.into(),
            service_version: service_version.into(),
            home: home.into(),
            exporter: OtelExporter::None,
            trace_exporter: OtelExporter::None,
            metrics_exporter: OtelExporter::None,
            span_attributes: BTreeMap::new(),
            tracestate: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            metrics_export_interval: None,
        }
    }

    /// Config-load filtering: drops invalid `span_attributes` entries and invalid tracestate
    /// fields/members (or all tracestate when the combined header is invalid). Returns one
    /// startup warning per drop; never fails.
    pub fn sanitize_trace_metadata(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        self.span_attributes.retain(|key, value| {
            let single = BTreeMap::from([(key.clone(), value.clone())]);
            match validate_span_attributes(&single) {
                Ok(()) => true,
                Err(err) => {
                    warnings.push(format!(
                        "Ignoring invalid `otel.span_attributes` config: {err}"
                    ));
                    false
                }
            }
        });
        let mut kept: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (member, fields) in &self.tracestate {
            let mut good = BTreeMap::new();
            for (field, value) in fields {
                match validate_tracestate_field(member, field, value) {
                    Ok(()) => {
                        good.insert(field.clone(), value.clone());
                    }
                    Err(err) => {
                        warnings.push(format!("Ignoring invalid `otel.tracestate` config: {err}"))
                    }
                }
            }
            if good.is_empty() {
                continue;
            }
            match validate_tracestate_member(member, &good) {
                Ok(()) => {
                    kept.insert(member.clone(), good);
                }
                Err(err) => {
                    warnings.push(format!("Ignoring invalid `otel.tracestate` config: {err}"))
                }
            }
        }
        if let Err(err) = validate_tracestate_entries(&kept) {
            warnings.push(format!("Ignoring invalid `otel.tracestate` config: {err}"));
            kept.clear();
        }
        self.tracestate = kept;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        warnings
    }
}

impl OtelSettings {
    /// Config-load check of the three exporters: one that cannot be built (unreadable or
    /// invalid TLS file, half-configured mTLS, gRPC endpoint without a host, `statsig` without
    /// its secret or on a signal other than metrics) is turned off with one warning naming its
    /// key. Telemetry problems never stop a run. No network I/O.
    pub fn check_exporters(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let slots: [(&str, &str, &mut OtelExporter); 3] = [
            ("exporter", "logs", &mut self.exporter),
            ("trace_exporter", "traces", &mut self.trace_exporter),
            ("metrics_exporter", "metrics", &mut self.metrics_exporter),
        ];
        for (key, signal, exporter) in slots {
            let problem = match exporter {
                OtelExporter::Statsig if signal != "metrics" => Some(format!(
                    "otel.{key}: the statsig exporter is metrics-only; {signal} are not exported"
                )),
                OtelExporter::Statsig => resolve_exporter(exporter).1,
                OtelExporter::None
                | OtelExporter::OtlpGrpc { .. }
                | OtelExporter::OtlpHttp { .. } => crate::otlp::check_exporter(exporter)
                    .err()
                    .map(|err| format!("otel.{key}: {err}; {signal} are not exported")),
            };
            if let Some(problem) = problem {
                *exporter = OtelExporter::None;
                tracing::warn!("{problem}");
                warnings.push(problem);
            }
        }
        warnings
    }
}

/// Where one signal is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtelExporter {
    /// Not exported.
    None,
    /// Metrics-only shorthand: OTLP/HTTP JSON to Statsig with the key from
    /// `STATSIG_SERVER_SDK_SECRET`.
    Statsig,
    /// OTLP over gRPC.
    OtlpGrpc {
        /// `http(s)://host:port`.
        endpoint: String,
        /// Extra metadata sent with every export.
        headers: HashMap<String, String>,
        /// TLS material.
        tls: Option<OtelTlsConfig>,
    },
    /// OTLP over HTTP.
    OtlpHttp {
        /// Bare endpoint (`http://host:4318`, `/v1/<signal>` appended) or a full URL with a
        /// path, used as given.
        endpoint: String,
        /// Extra headers sent with every export.
        headers: HashMap<String, String>,
        /// Body encoding.
        protocol: OtelHttpProtocol,
        /// TLS material.
        tls: Option<OtelTlsConfig>,
    },
}

/// OTLP/HTTP body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtelHttpProtocol {
    /// `application/x-protobuf`.
    Binary,
    /// `application/json`.
    Json,
}

impl From<OtelHttpProtocol> for opentelemetry_otlp::Protocol {
    fn from(value: OtelHttpProtocol) -> Self {
        match value {
            OtelHttpProtocol::Binary => opentelemetry_otlp::Protocol::HttpBinary,
            OtelHttpProtocol::Json => opentelemetry_otlp::Protocol::HttpJson,
        }
    }
}

/// TLS files for an OTLP exporter (PEM, absolute paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtelTlsConfig {
    /// CA bundle replacing the built-in roots.
    pub ca_certificate: Option<PathBuf>,
    /// Client certificate for mTLS (needs `client_private_key`).
    pub client_certificate: Option<PathBuf>,
    /// Client key for mTLS (needs `client_certificate`).
    pub client_private_key: Option<PathBuf>,
}

/// One OTLP signal, used for endpoint paths and timeout variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric points.
    Metrics,
}

impl Signal {
    /// The path segment after `/v1/`.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn timeout_var(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        }
    }
}

/// The URL an OTLP/HTTP exporter posts to. An endpoint with a path is used exactly as given
/// (as Codex does: HTTP endpoints name their `/v1/<signal>` path); only a bare
/// `scheme://host:port` (optionally with a trailing `/`) gets `/v1/<signal>` appended.
pub fn http_signal_endpoint(endpoint: &str, signal: Signal) -> String {
    let trimmed = endpoint.trim();
    let (without_query, query) = match trimmed.split_once('?') {
        Some((head, tail)) => (head, Some(tail)),
        None => (trimmed, None),
    };
    let after_scheme = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |idx| &after_scheme[idx..]);
    if !path.trim_matches('/').is_empty() {
        return trimmed.to_string();
    }
    let mut url = format!(
        "{}/v1/{}",
        without_query.trim_end_matches('/'),
        signal.path()
    );
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Export timeout for `signal`: `OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT`, then
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (integer milliseconds; negative or unparsable ignored), else 10 s.
pub fn resolve_otlp_timeout(signal: Signal) -> Duration {
    resolve_otlp_timeout_with(signal, |name| std::env::var(name).ok())
}

pub(crate) fn resolve_otlp_timeout_with(
    signal: Signal,
    lookup: impl Fn(&str) -> Option<String>,
) -> Duration {
    [signal.timeout_var(), "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .into_iter()
        .filter_map(&lookup)
        .find_map(|raw| raw.trim().parse::<u64>().ok())
        .map_or(OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT, Duration::from_millis)
}

/// Resolves `Statsig` to the concrete OTLP/HTTP JSON exporter (or `None` plus a warning when
/// the secret is missing); every other variant is returned unchanged.
pub fn resolve_exporter(exporter: &OtelExporter) -> (OtelExporter, Option<String>) {
    resolve_exporter_with(exporter, |name| std::env::var(name).ok())
}

pub(crate) fn resolve_exporter_with(
    exporter: &OtelExporter,
    lookup: impl Fn(&str) -> Option<String>,
) -> (OtelExporter, Option<String>) {
    match exporter {
        OtelExporter::Statsig => {
            let secret = lookup(STATSIG_SECRET_ENV).filter(|value| !value.trim().is_empty());
            let Some(secret) = secret else {
                return (
                    OtelExporter::None,
                    Some(format!(
                        "metrics_exporter = \"statsig\" needs {STATSIG_SECRET_ENV}; metrics are not exported"
                    )),
                );
            };
            let base = lookup(STATSIG_OTLP_HTTP_ENDPOINT_ENV)
                .filter(|value| !value.trim().is_empty())
                .unwrap_or_else(|| STATSIG_OTLP_HTTP_ENDPOINT.to_string());
            let base = base.trim().trim_end_matches('/');
            let endpoint = if base.ends_with("/v1/metrics") {
                base.to_string()
            } else {
                format!("{base}/v1/metrics")
            };
            (
                OtelExporter::OtlpHttp {
                    endpoint,
                    headers: HashMap::from([(STATSIG_API_KEY_HEADER.to_string(), secret)]),
                    protocol: OtelHttpProtocol::Json,
                    tls: None,
                },
                None,
            )
        }
        OtelExporter::None | OtelExporter::OtlpGrpc { .. } | OtelExporter::OtlpHttp { .. } => {
            (exporter.clone(), None)
        }
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Checks configured span attributes: the only rule is a non-empty key.
pub fn validate_span_attributes(attributes: &BTreeMap<String, String>) -> io::Result<()> {
    if attributes.keys().any(|key| key.is_empty()) {
        return Err(invalid_input(
            "configured span attribute key must not be empty".to_string(),
        ));
    }
    Ok(())
}

fn validate_tracestate_field(member: &str, field: &str, value: &str) -> io::Result<()> {
    let key_ok = !field.is_empty()
        && field
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b':' | b';' | b',' | b'='));
    if !key_ok {
        return Err(invalid_input(format!(
            "invalid configured tracestate field key {member}.{field}"
        )));
    }
    let value_ok = value
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && !matches!(b, b',' | b'=' | b';'));
    if !value_ok {
        return Err(invalid_input(format!(
            "invalid configured tracestate value for {member}.{field}"
        )));
    }
    Ok(())
}

/// Encodes one member's fields as `k:v;k:v` in sorted key order.
pub fn encode_tracestate_member(fields: &BTreeMap<String, String>) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("{key}:{value}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Validates one configured tracestate member (its fields, the joined value and the W3C key).
pub fn validate_tracestate_member(
    member: &str,
    fields: &BTreeMap<String, String>,
) -> io::Result<()> {
    for (field, value) in fields {
        validate_tracestate_field(member, field, value)?;
    }
    let joined = encode_tracestate_member(fields);
    let joined_ok = joined.is_empty()
        || (joined
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && !matches!(b, b',' | b'='))
            && !joined.ends_with(' '));
    if !joined_ok {
        return Err(invalid_input(format!(
            "invalid configured tracestate value for {member}"
        )));
    }
    TraceState::from_key_value([(member, joined.as_str())])
        .map_err(|err| invalid_input(format!("invalid configured tracestate: {err}")))?;
    Ok(())
}

/// Validates every member and the combined header.
pub fn validate_tracestate_entries(
    entries: &BTreeMap<String, BTreeMap<String, String>>,
) -> io::Result<()> {
    let mut pairs = Vec::with_capacity(entries.len());
    for (member, fields) in entries {
        validate_tracestate_member(member, fields)?;
        pairs.push((member.clone(), encode_tracestate_member(fields)));
    }
    TraceState::from_key_value(pairs)
        .map_err(|err| invalid_input(format!("invalid configured tracestate: {err}")))?;
    Ok(())
}

/// Reads a TLS file, failing with "failed to read {path}: {err}".
pub(crate) fn read_tls_file(path: &std::path::Path) -> Result<Vec<u8>, crate::OtelError> {
    std::fs::read(path).map_err(|err| crate::OtelError::Tls {
        message: format!("failed to read {}: {err}", path.display()),
    })
}

/// The host of a gRPC endpoint (for SNI), or the "does not include a host" error.
pub(crate) fn grpc_endpoint_host(endpoint: &str) -> Result<String, crate::OtelError> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| crate::OtelError::InvalidEndpoint {
            message: format!("OTLP gRPC endpoint {endpoint} does not include a host"),
        })?;
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(host.to_string()),
        _ => Err(crate::OtelError::InvalidEndpoint {
            message: format!("OTLP gRPC endpoint {endpoint} does not include a host"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_endpoint_gets_signal_path_and_any_path_is_kept() {
        assert_eq!(
            http_signal_endpoint("http://127.0.0.1:4318", Signal::Traces),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_signal_endpoint("http://h:4318/", Signal::Logs),
            "http://h:4318/v1/logs"
        );
        assert_eq!(
            http_signal_endpoint("http://h:4318?tenant=a", Signal::Logs),
            "http://h:4318/v1/logs?tenant=a"
        );
        // A path is the user's choice, as in Codex: never rewritten.
        assert_eq!(
            http_signal_endpoint("https://ab.example.com/otlp", Signal::Metrics),
            "https://ab.example.com/otlp"
        );
        assert_eq!(
            http_signal_endpoint("https://gw.example.com/ingest/traces", Signal::Traces),
            "https://gw.example.com/ingest/traces"
        );
        assert_eq!(
            http_signal_endpoint("http://h:4318/v1/metrics", Signal::Metrics),
            "http://h:4318/v1/metrics"
        );
        assert_eq!(
            http_signal_endpoint("http://h:4318/custom/v1/logs?x=1", Signal::Logs),
            "http://h:4318/custom/v1/logs?x=1"
        );
    }

    #[test]
    fn timeout_prefers_signal_variable_then_generic_then_default() {
        let env = |pairs: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            resolve_otlp_timeout_with(
                Signal::Logs,
                env(vec![
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "250"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "900")
                ])
            ),
            Duration::from_millis(250)
        );
        assert_eq!(
            resolve_otlp_timeout_with(
                Signal::Logs,
                env(vec![
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "-5"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "900")
                ])
            ),
            Duration::from_millis(900)
        );
        assert_eq!(
            resolve_otlp_timeout_with(
                Signal::Traces,
                env(vec![("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")])
            ),
            OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT
        );
    }

    #[test]
    fn statsig_needs_secret_and_is_json_http() {
        let (resolved, warning) = resolve_exporter_with(&OtelExporter::Statsig, |_| None);
        assert_eq!(resolved, OtelExporter::None);
        assert!(warning.unwrap().contains(STATSIG_SECRET_ENV));
        let (resolved, warning) = resolve_exporter_with(&OtelExporter::Statsig, |name| {
            (name == STATSIG_SECRET_ENV).then(|| "secret-1".to_string())
        });
        assert!(warning.is_none());
        match resolved {
            OtelExporter::OtlpHttp {
                endpoint,
                headers,
                protocol,
                tls,
            } => {
                assert_eq!(endpoint, format!("{STATSIG_OTLP_HTTP_ENDPOINT}/v1/metrics"));
                assert_eq!(headers.get(STATSIG_API_KEY_HEADER).unwrap(), "secret-1");
                assert_eq!(protocol, OtelHttpProtocol::Json);
                assert!(tls.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_span_attribute_key_is_rejected() {
        let err = validate_span_attributes(&BTreeMap::from([(String::new(), "v".to_string())]))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "configured span attribute key must not be empty"
        );
    }

    #[test]
    fn tracestate_rules() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(validate_tracestate_member("example", &fields(&[("alpha", "one")])).is_ok());
        let err = validate_tracestate_member("example", &fields(&[("al:pha", "one")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configured tracestate field key example.al:pha"
        );
        let err = validate_tracestate_member("example", &fields(&[("alpha", "a\nb")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configured tracestate value for example.alpha"
        );
        let err = validate_tracestate_member("example", &fields(&[("alpha", "x ")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configured tracestate value for example"
        );
        let err = validate_tracestate_member("Example", &fields(&[("alpha", "one")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configured tracestate: "),
            "{err}"
        );
        assert_eq!(
            encode_tracestate_member(&fields(&[("beta", "two"), ("alpha", "one")])),
            "alpha:one;beta:two"
        );
    }

    #[test]
    fn sanitize_drops_bad_entries_with_warnings() {
        let mut settings = OtelSettings::new("dev", "quest", "0.1.0", "/tmp/q");
        settings.span_attributes.insert(String::new(), "x".into());
        settings.span_attributes.insert("ok".into(), "y".into());
        settings.tracestate.insert(
            "example".into(),
            BTreeMap::from([
                ("alpha".to_string(), "one".to_string()),
                ("bad;key".to_string(), "v".to_string()),
            ]),
        );
        settings.tracestate.insert(
            "emptied".into(),
            BTreeMap::from([("k".to_string(), "a,b".to_string())]),
        );
        settings.tracestate.insert(
            "UPPER".into(),
            BTreeMap::from([("k".to_string(), "v".to_string())]),
        );
        let warnings = settings.sanitize_trace_metadata();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].starts_with("Ignoring invalid `otel.span_attributes` config: "));
        assert!(
            warnings[1..]
                .iter()
                .all(|w| w.starts_with("Ignoring invalid `otel.tracestate` config: "))
        );
        assert_eq!(settings.span_attributes.len(), 1);
        assert_eq!(settings.tracestate.len(), 1);
        assert_eq!(settings.tracestate["example"].len(), 1);
    }

    #[test]
    fn grpc_endpoint_without_host_is_an_error() {
        let err = grpc_endpoint_host("/just/a/path").unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTLP gRPC endpoint /just/a/path does not include a host"
        );
        assert_eq!(
            grpc_endpoint_host("http://collector:4317").unwrap(),
            "collector"
        );
    }
}
