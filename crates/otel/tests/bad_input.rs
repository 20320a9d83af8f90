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

/// Builds, expecting success; returns the warnings and whether a provider resulted.
fn build_warnings(settings: &OtelSettings) -> (bool, Vec<String>) {
    let built = OtelProvider::build(settings).expect("telemetry problems are warnings");
    (built.provider.is_some(), built.warnings)
}

#[test]
fn unreadable_tls_files_are_a_warning_naming_the_key_and_path() {
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
        let (provider, warnings) = build_warnings(&s);
        assert!(!provider, "nothing else was configured");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("otel.trace_exporter: failed to read /nonexistent/quest/ca.pem: ")
                && warnings[0].ends_with("; traces are not exported"),
            "{warnings:?}"
        );
    }
}

#[test]
fn half_configured_mtls_drops_only_that_exporter() {
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
    s.trace_exporter = OtelExporter::OtlpHttp {
        endpoint: "http://127.0.0.1:1".into(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Binary,
        tls: None,
    };
    let built = OtelProvider::build(&s).unwrap();
    assert_eq!(
        built.warnings,
        [
            "otel.exporter: client_certificate and client_private_key must both be provided for mTLS; logs are not exported"
        ]
    );
    let provider = built.provider.expect("traces still exported");
    assert!(provider.logger.is_none());
    assert!(provider.tracer_provider.is_some());
    assert_eq!(provider.warnings(), built.warnings.as_slice());
}

#[test]
fn grpc_endpoint_without_host_is_a_warning() {
    let mut s = settings();
    s.metrics_exporter = OtelExporter::OtlpGrpc {
        endpoint: "/v1/metrics".into(),
        headers: HashMap::new(),
        tls: None,
    };
    let (provider, warnings) = build_warnings(&s);
    assert!(!provider);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("otel.metrics_exporter: ")
            && warnings[0].contains("OTLP gRPC endpoint /v1/metrics does not include a host"),
        "{warnings:?}"
    );
    let mut s = settings();
    s.trace_exporter = OtelExporter::OtlpGrpc {
        endpoint: "no host here".into(),
        headers: HashMap::new(),
        tls: None,
    };
    let (_, warnings) = build_warnings(&s);
    assert!(
        warnings[0].contains("does not include a host"),
        "{warnings:?}"
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
    // Logs exporter is the only one configured and Statsig is metrics-only: nothing to build,
    // but the warning still reaches the caller.
    let (provider, warnings) = build_warnings(&s);
    assert!(!provider);
    assert_eq!(
        warnings,
        ["the statsig exporter is metrics-only; logs are not exported"]
    );
}

#[test]
fn statsig_without_secret_warns_even_when_nothing_else_is_exported() {
    // SAFETY of the env read: the variable is never set by this test binary.
    assert!(std::env::var_os("STATSIG_SERVER_SDK_SECRET").is_none());
    let mut s = settings();
    s.metrics_exporter = OtelExporter::Statsig;
    let (provider, warnings) = build_warnings(&s);
    assert!(!provider);
    assert_eq!(
        warnings,
        [
            "metrics_exporter = \"statsig\" needs STATSIG_SERVER_SDK_SECRET; metrics are not exported"
        ]
    );
}

/// Config-load check: a broken exporter is switched off with a warning naming its key, the
/// others stay, and building the provider afterwards succeeds without repeating the warning.
#[test]
fn check_exporters_turns_off_only_the_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, "not really a cert").unwrap();
    let mut s = settings();
    s.exporter = OtelExporter::OtlpHttp {
        endpoint: "https://127.0.0.1:4318".into(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Binary,
        tls: Some(OtelTlsConfig {
            client_private_key: Some(cert),
            ..Default::default()
        }),
    };
    s.trace_exporter = OtelExporter::OtlpGrpc {
        endpoint: "https://127.0.0.1:4317".into(),
        headers: HashMap::new(),
        tls: Some(OtelTlsConfig {
            ca_certificate: Some(PathBuf::from("/nonexistent/quest/ca.pem")),
            ..Default::default()
        }),
    };
    let good = OtelExporter::OtlpHttp {
        endpoint: "http://127.0.0.1:1".into(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Json,
        tls: None,
    };
    s.metrics_exporter = good.clone();
    let warnings = s.check_exporters();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0],
        "otel.exporter: client_certificate and client_private_key must both be provided for mTLS; logs are not exported"
    );
    assert!(
        warnings[1].starts_with("otel.trace_exporter: failed to read /nonexistent/quest/ca.pem")
            && warnings[1].ends_with("; traces are not exported"),
        "{warnings:?}"
    );
    assert_eq!(s.exporter, OtelExporter::None);
    assert_eq!(s.trace_exporter, OtelExporter::None);
    assert_eq!(s.metrics_exporter, good);
    let built = OtelProvider::build(&s).unwrap();
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    assert!(built.provider.unwrap().metrics.is_some());
}
