//! Bad configuration produces clear errors or warnings, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;

use quest_otel::OtelError;
use quest_otel::OtelExporter;
use quest_otel::OtelHttpProtocol;
use quest_otel::OtelProvider;
use quest_otel::OtelSettings;
use quest_otel::OtelTlsConfig;

fn settings() -> OtelSettings {
    OtelSettings::new("dev", "quest_test", "0.1.0", "/tmp/quest-home")
}

fn build_err(settings: &OtelSettings) -> OtelError {
    match OtelProvider::from(settings) {
        Ok(_) => panic!("expected an error"),
        Err(err) => err,
    }
}

#[test]
fn no_exporter_means_no_provider() {
    assert!(OtelProvider::from(&settings()).unwrap().is_none());
}

#[test]
fn unreadable_tls_files_are_reported_with_their_path() {
    let missing = PathBuf::from("/nonexistent/quest/ca.pem");
    for exporter in [
        OtelExporter::OtlpHttp {
            endpoint: "https://127.0.0.1:4318".into(),
            headers: HashMap::new(),
            protocol: OtelHttpProtocol::Binary,
            tls: Some(OtelTlsConfig {
                ca_certificate: Some(missing.clone()),
                ..Default::default()
            }),
        },
        OtelExporter::OtlpGrpc {
            endpoint: "https://127.0.0.1:4317".into(),
            headers: HashMap::new(),
            tls: Some(OtelTlsConfig {
                ca_certificate: Some(missing),
                ..Default::default()
            }),
        },
    ] {
        let mut s = settings();
        s.trace_exporter = exporter;
        let err = build_err(&s);
        assert!(matches!(err, OtelError::Tls { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("failed to read /nonexistent/quest/ca.pem: "),
            "{err}"
        );
    }
}

#[test]
fn half_configured_mtls_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, "not really a cert").unwrap();
    let mut s = settings();
    s.exporter = OtelExporter::OtlpGrpc {
        endpoint: "https://collector.example:4317".into(),
        headers: HashMap::new(),
        tls: Some(OtelTlsConfig {
            client_certificate: Some(cert),
            ..Default::default()
        }),
    };
    assert_eq!(
        build_err(&s).to_string(),
        "client_certificate and client_private_key must both be provided for mTLS"
    );
}

#[test]
fn grpc_endpoint_without_host_is_rejected() {
    let mut s = settings();
    s.metrics_exporter = OtelExporter::OtlpGrpc {
        endpoint: "/v1/metrics".into(),
        headers: HashMap::new(),
        tls: None,
    };
    let err = build_err(&s);
    assert_eq!(
        err.to_string(),
        "failed to build metrics exporter: OTLP gRPC endpoint /v1/metrics does not include a host"
    );
    let mut s = settings();
    s.trace_exporter = OtelExporter::OtlpGrpc {
        endpoint: "no host here".into(),
        headers: HashMap::new(),
        tls: None,
    };
    assert!(
        build_err(&s)
            .to_string()
            .contains("does not include a host")
    );
}

#[test]
fn tracestate_value_with_newline_fails_provider_construction() {
    let mut s = settings();
    s.trace_exporter = OtelExporter::OtlpHttp {
        endpoint: "http://127.0.0.1:1".into(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Binary,
        tls: None,
    };
    s.tracestate.insert(
        "example".into(),
        BTreeMap::from([("alpha".to_string(), "one\ntwo".to_string())]),
    );
    let err = build_err(&s);
    assert!(
        err.to_string().contains("configured tracestate value"),
        "{err}"
    );
    // Config-load filtering turns the same input into a warning and a working provider.
    let warnings = s.sanitize_trace_metadata();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("Ignoring invalid `otel.tracestate` config: "));
    assert!(OtelProvider::from(&s).unwrap().is_some());
}

#[test]
fn empty_span_attribute_key_fails_provider_with_traces() {
    let mut s = settings();
    s.trace_exporter = OtelExporter::OtlpHttp {
        endpoint: "http://127.0.0.1:1".into(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Json,
        tls: None,
    };
    s.span_attributes.insert(String::new(), "x".into());
    assert_eq!(
        build_err(&s).to_string(),
        "configured span attribute key must not be empty"
    );
}

#[test]
fn statsig_on_logs_is_ignored_with_a_warning() {
    let mut s = settings();
    s.exporter = OtelExporter::Statsig;
    // Logs exporter is the only one configured and Statsig is metrics-only: nothing to build.
    assert!(OtelProvider::from(&s).unwrap().is_none());
}
