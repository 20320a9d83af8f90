//! Builds OTLP exporters (HTTP protobuf/JSON or gRPC, optional TLS) for one signal, with
//! retries disabled so an unreachable collector costs one bounded attempt.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use opentelemetry_otlp::RetryPolicy;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_otlp::WithTonicConfig;
use tonic::metadata::MetadataKey;
use tonic::metadata::MetadataMap;
use tonic::metadata::MetadataValue;
use tonic::transport::Certificate;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;

use crate::OtelError;
use crate::config::OtelExporter;
use crate::config::OtelTlsConfig;
use crate::config::Signal;
use crate::config::grpc_endpoint_host;
use crate::config::http_signal_endpoint;
use crate::config::read_tls_file;

/// Header entries whose name and value are valid HTTP; others are skipped.
fn valid_headers(headers: &HashMap<String, String>) -> HashMap<String, String> {
    headers
        .iter()
        .filter(|(name, value)| {
            http::HeaderName::from_str(name).is_ok() && http::HeaderValue::from_str(value).is_ok()
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn metadata(headers: &HashMap<String, String>) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (name, value) in headers {
        let key = MetadataKey::from_str(&name.to_ascii_lowercase());
        let value = MetadataValue::try_from(value.as_str());
        if let (Ok(key), Ok(value)) = (key, value) {
            map.insert(key, value);
        }
    }
    map
}

/// PEM bytes of a client certificate and its key.
type IdentityPem = (Vec<u8>, Vec<u8>);

fn identity_files(tls: &OtelTlsConfig) -> Result<Option<IdentityPem>, OtelError> {
    match (&tls.client_certificate, &tls.client_private_key) {
        (Some(cert), Some(key)) => Ok(Some((read_tls_file(cert)?, read_tls_file(key)?))),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(OtelError::Tls {
            message: "client_certificate and client_private_key must both be provided for mTLS"
                .to_string(),
        }),
    }
}

/// A reqwest client carrying the configured CA and client identity.
pub(crate) fn http_client_with_tls(
    tls: &OtelTlsConfig,
    timeout: Duration,
) -> Result<reqwest::Client, OtelError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(ca) = &tls.ca_certificate {
        let pem = read_tls_file(ca)?;
        let certificate = reqwest::Certificate::from_pem(&pem).map_err(|err| OtelError::Tls {
            message: format!("invalid CA certificate {}: {err}", ca.display()),
        })?;
        builder = builder.tls_certs_only([certificate]);
    }
    if let Some((mut cert, key)) = identity_files(tls)? {
        cert.push(b'\n');
        cert.extend_from_slice(&key);
        let identity = reqwest::Identity::from_pem(&cert).map_err(|err| OtelError::Tls {
            message: format!("invalid client certificate or key: {err}"),
        })?;
        builder = builder.identity(identity).https_only(true);
    }
    builder.build().map_err(|err| OtelError::Tls {
        message: format!("failed to build the OTLP HTTP client: {err}"),
    })
}

/// Tonic TLS settings: SNI from the endpoint host, CA and optional client identity.
pub(crate) fn grpc_tls_config(
    endpoint: &str,
    tls: &OtelTlsConfig,
) -> Result<ClientTlsConfig, OtelError> {
    let host = grpc_endpoint_host(endpoint)?;
    let mut config = ClientTlsConfig::new()
        .with_native_roots()
        .assume_http2(true)
        .domain_name(host);
    if let Some(ca) = &tls.ca_certificate {
        config = config.ca_certificate(Certificate::from_pem(read_tls_file(ca)?));
    }
    if let Some((cert, key)) = identity_files(tls)? {
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

macro_rules! build_exporter {
    ($builder:expr, $exporter:expr, $signal:expr, $timeout:expr) => {{
        match $exporter {
            OtelExporter::OtlpHttp {
                endpoint,
                headers,
                protocol,
                tls,
            } => {
                let mut builder = $builder
                    .with_http()
                    .with_endpoint(http_signal_endpoint(endpoint, $signal))
                    .with_protocol((*protocol).into())
                    .with_timeout($timeout)
                    .with_headers(valid_headers(headers))
                    .with_retry_policy(RetryPolicy::disabled());
                if let Some(tls) = tls {
                    builder = builder.with_http_client(http_client_with_tls(tls, $timeout)?);
                }
                builder.build().map_err(OtelError::from).map(Some)
            }
            OtelExporter::OtlpGrpc {
                endpoint,
                headers,
                tls,
            } => {
                grpc_endpoint_host(endpoint)?;
                let mut builder = $builder
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout($timeout)
                    .with_metadata(metadata(headers))
                    .with_retry_policy(RetryPolicy::disabled());
                if let Some(tls) = tls {
                    builder = builder.with_tls_config(grpc_tls_config(endpoint, tls)?);
                }
                builder.build().map_err(OtelError::from).map(Some)
            }
            OtelExporter::None | OtelExporter::Statsig => Ok(None),
        }
    }};
}

pub(crate) fn span_exporter(
    exporter: &OtelExporter,
    timeout: Duration,
) -> Result<Option<opentelemetry_otlp::SpanExporter>, OtelError> {
    build_exporter!(
        opentelemetry_otlp::SpanExporter::builder(),
        exporter,
        Signal::Traces,
        timeout
    )
}

pub(crate) fn log_exporter(
    exporter: &OtelExporter,
    timeout: Duration,
) -> Result<Option<opentelemetry_otlp::LogExporter>, OtelError> {
    build_exporter!(
        opentelemetry_otlp::LogExporter::builder(),
        exporter,
        Signal::Logs,
        timeout
    )
}

pub(crate) fn metric_exporter(
    exporter: &OtelExporter,
    timeout: Duration,
    temporality: opentelemetry_sdk::metrics::Temporality,
) -> Result<Option<opentelemetry_otlp::MetricExporter>, OtelError> {
    build_exporter!(
        opentelemetry_otlp::MetricExporter::builder().with_temporality(temporality),
        exporter,
        Signal::Metrics,
        timeout
    )
}

/// Whether `exporter` can be built (TLS files readable and valid, mTLS complete, gRPC endpoint
/// with a host), without any network I/O.
pub(crate) fn check_exporter(exporter: &OtelExporter) -> Result<(), OtelError> {
    match exporter {
        OtelExporter::OtlpHttp { tls, .. } => {
            if let Some(tls) = tls {
                http_client_with_tls(tls, Duration::from_secs(1))?;
            }
            Ok(())
        }
        OtelExporter::OtlpGrpc { endpoint, tls, .. } => {
            grpc_endpoint_host(endpoint)?;
            if let Some(tls) = tls {
                grpc_tls_config(endpoint, tls)?;
            }
            Ok(())
        }
        OtelExporter::None | OtelExporter::Statsig => Ok(()),
    }
}
