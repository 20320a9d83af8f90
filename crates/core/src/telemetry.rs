//! Telemetry wiring: `[otel]` in `config.toml` → [`OtelSettings`], the process-wide provider
//! install with a bounded exit flush, and the per-thread [`SessionTelemetry`].
//!
//! Spans follow the OpenTelemetry GenAI conventions: one `invoke_agent quest` root per turn,
//! `chat {model}` per model request and `execute_tool {tool}` per tool call (see `turn.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quest_otel::{
    MetricsClient, OtelExporter, OtelHttpProtocol, OtelProvider, OtelSettings, OtelTlsConfig,
    SessionTelemetry, ShutdownReport,
};
use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{Config, ConfigError};

/// The `[otel]` table. Unknown keys are warnings naming the key (a newer Codex key must not stop a
/// run); exporter tables are checked strictly by [`exporter`].
#[derive(Debug, Deserialize)]
#[serde(default)]
struct OtelToml {
    environment: String,
    exporter: Option<toml::Value>,
    trace_exporter: Option<toml::Value>,
    metrics_exporter: Option<toml::Value>,
    log_user_prompt: bool,
    span_attributes: BTreeMap<String, String>,
    tracestate: BTreeMap<String, BTreeMap<String, String>>,
    resource_attributes: BTreeMap<String, String>,
    tool_result: ToolResultToml,
    shutdown_timeout_ms: u64,
    metrics_export_interval_ms: Option<u64>,
    propagate_model_requests: bool,
    capture_content: bool,
    log_agent_responses: bool,
    log_guardian_assessments: bool,
}

impl Default for OtelToml {
    fn default() -> Self {
        OtelToml {
            environment: quest_otel::DEFAULT_OTEL_ENVIRONMENT.to_string(),
            exporter: None,
            trace_exporter: None,
            metrics_exporter: None,
            log_user_prompt: false,
            span_attributes: BTreeMap::new(),
            tracestate: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            tool_result: ToolResultToml::default(),
            shutdown_timeout_ms: 2000,
            metrics_export_interval_ms: None,
            propagate_model_requests: true,
            capture_content: false,
            log_agent_responses: false,
            log_guardian_assessments: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct ToolResultToml {
    max_bytes: usize,
}

impl Default for ToolResultToml {
    fn default() -> Self {
        ToolResultToml { max_bytes: 2048 }
    }
}

/// Resolved telemetry configuration of one process.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Settings for the provider.
    pub settings: OtelSettings,
    /// Put prompt text into `quest.user_prompt` events.
    pub log_user_prompt: bool,
    /// Send `traceparent`/`tracestate` on model requests.
    pub propagate_model_requests: bool,
    /// Preview cap of tool output and arguments in `quest.tool_result`.
    pub tool_result_max_bytes: usize,
    /// Invalid entries dropped at load, to show in every front-end.
    pub warnings: Vec<String>,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Parses `[otel]` of `config`. `service_name` is the originator (`quest_exec`, …).
pub fn telemetry_config(
    config: &Config,
    service_name: &str,
) -> Result<TelemetryConfig, ConfigError> {
    let mut unknown = Vec::new();
    let parsed: OtelToml = match &config.otel {
        None => OtelToml::default(),
        Some(value) => serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
            value.clone(),
            &mut |path: serde_ignored::Path<'_>| {
                unknown.push(format!("unknown config key `otel.{path}` ignored"));
            },
        ))
        .map_err(|err| {
            let path = err.path().to_string();
            let key = if path == "." {
                "otel".to_string()
            } else {
                format!("otel.{path}")
            };
            invalid(&key, err.into_inner().to_string())
        })?,
    };
    let mut settings = OtelSettings::new(
        parsed.environment.clone(),
        service_name,
        env!("CARGO_PKG_VERSION"),
        config.home.clone(),
    );
    settings.exporter = exporter("otel.exporter", parsed.exporter.as_ref(), &mut unknown)?;
    settings.trace_exporter = exporter(
        "otel.trace_exporter",
        parsed.trace_exporter.as_ref(),
        &mut unknown,
    )?;
    settings.metrics_exporter = exporter(
        "otel.metrics_exporter",
        parsed.metrics_exporter.as_ref(),
        &mut unknown,
    )?;
    if matches!(settings.exporter, OtelExporter::Statsig) {
        return Err(invalid(
            "otel.exporter",
            "statsig only carries metrics; use it for otel.metrics_exporter",
        ));
    }
    if matches!(settings.trace_exporter, OtelExporter::Statsig) {
        return Err(invalid(
            "otel.trace_exporter",
            "statsig only carries metrics; use it for otel.metrics_exporter",
        ));
    }
    settings.span_attributes = parsed.span_attributes;
    settings.tracestate = parsed.tracestate;
    settings.resource_attributes = parsed.resource_attributes;
    settings.shutdown_timeout = Duration::from_millis(parsed.shutdown_timeout_ms);
    settings.metrics_export_interval = parsed.metrics_export_interval_ms.map(Duration::from_millis);
    let mut warnings = std::mem::take(&mut unknown);
    warnings.extend(settings.sanitize_trace_metadata());
    // Telemetry is never fatal: an exporter that cannot be built is switched off with a warning.
    warnings.extend(settings.check_exporters());
    for (key, set) in [
        ("otel.capture_content", parsed.capture_content),
        ("otel.log_agent_responses", parsed.log_agent_responses),
        (
            "otel.log_guardian_assessments",
            parsed.log_guardian_assessments,
        ),
    ] {
        if set {
            warnings.push(format!(
                "`{key}` is not supported by this version of Quest and is ignored"
            ));
        }
    }
    Ok(TelemetryConfig {
        settings,
        log_user_prompt: parsed.log_user_prompt,
        propagate_model_requests: parsed.propagate_model_requests,
        tool_result_max_bytes: parsed.tool_result.max_bytes,
        warnings,
    })
}

/// One exporter value: `"none"`, `"statsig"`, `{ otlp-http = {…} }` or `{ otlp-grpc = {…} }`.
/// Parses one exporter setting; unknown keys in its table are added to `warnings`.
fn exporter(
    key: &str,
    value: Option<&toml::Value>,
    warnings: &mut Vec<String>,
) -> Result<OtelExporter, ConfigError> {
    let Some(value) = value else {
        return Ok(OtelExporter::None);
    };
    match value {
        toml::Value::String(kind) => match kind.as_str() {
            "none" => Ok(OtelExporter::None),
            "statsig" => Ok(OtelExporter::Statsig),
            "otlp-http" | "otlp-grpc" => Err(invalid(
                key,
                format!(
                    "`{kind}` needs a table, e.g. {{ {kind} = {{ endpoint = \"http://localhost:4318\" }} }}"
                ),
            )),
            other => Err(invalid(
                key,
                format!(
                    "unknown exporter `{other}`; expected \"none\", \"statsig\", otlp-http or otlp-grpc"
                ),
            )),
        },
        toml::Value::Table(table) => {
            if table.len() != 1 {
                return Err(invalid(
                    key,
                    "expected exactly one of otlp-http or otlp-grpc",
                ));
            }
            let Some((kind, body)) = table.iter().next() else {
                return Err(invalid(key, "empty exporter table"));
            };
            let body = body
                .as_table()
                .ok_or_else(|| invalid(&format!("{key}.{kind}"), "expected a table"))?;
            let key = format!("{key}.{kind}");
            let mut endpoint = None;
            let mut headers = HashMap::new();
            let mut protocol = None;
            let mut tls = None;
            for (field, value) in body {
                let field_key = format!("{key}.{field}");
                match field.as_str() {
                    "endpoint" => {
                        endpoint = Some(
                            value
                                .as_str()
                                .ok_or_else(|| invalid(&field_key, "expected a string"))?
                                .to_string(),
                        )
                    }
                    "headers" => {
                        let table = value
                            .as_table()
                            .ok_or_else(|| invalid(&field_key, "expected a table of strings"))?;
                        for (name, value) in table {
                            let value = value.as_str().ok_or_else(|| {
                                invalid(&format!("{field_key}.{name}"), "expected a string")
                            })?;
                            headers.insert(name.clone(), value.to_string());
                        }
                    }
                    "protocol" if kind == "otlp-http" => {
                        protocol = Some(match value.as_str() {
                            Some("binary") => OtelHttpProtocol::Binary,
                            Some("json") => OtelHttpProtocol::Json,
                            _ => {
                                return Err(invalid(&field_key, "expected \"binary\" or \"json\""));
                            }
                        })
                    }
                    "tls" => tls = Some(tls_config(&field_key, value, warnings)?),
                    _ => warnings.push(format!("unknown config key `{field_key}` ignored")),
                }
            }
            let endpoint = endpoint.ok_or_else(|| invalid(&key, "missing `endpoint`"))?;
            match kind.as_str() {
                "otlp-http" => Ok(OtelExporter::OtlpHttp {
                    endpoint,
                    headers,
                    protocol: protocol.ok_or_else(|| {
                        invalid(&key, "missing `protocol` (\"binary\" or \"json\")")
                    })?,
                    tls,
                }),
                "otlp-grpc" => Ok(OtelExporter::OtlpGrpc {
                    endpoint,
                    headers,
                    tls,
                }),
                other => Err(invalid(
                    &key,
                    format!("unknown exporter `{other}`; expected otlp-http or otlp-grpc"),
                )),
            }
        }
        _ => Err(invalid(key, "expected a string or a table")),
    }
}

fn tls_config(
    key: &str,
    value: &toml::Value,
    warnings: &mut Vec<String>,
) -> Result<OtelTlsConfig, ConfigError> {
    let table = value
        .as_table()
        .ok_or_else(|| invalid(key, "expected a table"))?;
    let mut tls = OtelTlsConfig::default();
    for (field, value) in table {
        if !matches!(
            field.as_str(),
            "ca-certificate" | "client-certificate" | "client-private-key"
        ) {
            warnings.push(format!("unknown config key `{key}.{field}` ignored"));
            continue;
        }
        let path = value
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| invalid(&format!("{key}.{field}"), "expected a path string"))?;
        if !path.is_absolute() {
            return Err(invalid(
                &format!("{key}.{field}"),
                "must be an absolute path",
            ));
        }
        match field.as_str() {
            "ca-certificate" => tls.ca_certificate = Some(path),
            "client-certificate" => tls.client_certificate = Some(path),
            // Only `client-private-key` is left after the check above.
            _ => tls.client_private_key = Some(path),
        }
    }
    Ok(tls)
}

/// The installed provider; [`Telemetry::shutdown`] flushes within the configured timeout.
pub struct Telemetry {
    provider: OtelProvider,
    config: TelemetryConfig,
}

impl Telemetry {
    /// Builds the provider and installs the process-wide tracing subscriber. `Ok(None)` when no
    /// exporter is configured (then spans and events cost next to nothing).
    pub fn install(config: &TelemetryConfig) -> Result<Option<Telemetry>, String> {
        let provider = match OtelProvider::from(&config.settings) {
            Ok(Some(provider)) => provider,
            Ok(None) => return Ok(None),
            Err(err) => return Err(format!("telemetry setup failed: {err}")),
        };
        let subscriber = tracing_subscriber::registry()
            .with(provider.logger_layer())
            .with(provider.tracing_layer());
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            return Err("telemetry setup failed: a tracing subscriber is already installed".into());
        }
        Ok(Some(Telemetry {
            provider,
            config: config.clone(),
        }))
    }

    /// Warnings the provider found while building exporters.
    pub fn warnings(&self) -> Vec<String> {
        self.provider.warnings().to_vec()
    }

    /// The metrics client, when a metrics exporter is configured.
    pub fn metrics(&self) -> Option<MetricsClient> {
        self.provider.metrics().cloned()
    }

    /// Options for threads started in this process.
    pub fn thread_options(&self, originator: &str) -> ThreadTelemetry {
        ThreadTelemetry {
            metrics: self.metrics(),
            log_user_prompt: self.config.log_user_prompt,
            tool_result_max_bytes: self.config.tool_result_max_bytes,
            originator: originator.to_string(),
        }
    }

    /// Flushes traces, metrics and logs concurrently within the configured timeout.
    pub fn shutdown(&self) -> ShutdownReport {
        self.provider.shutdown()
    }
}

/// Values scrubbed from exported tool results wherever they appear: the provider's API key.
fn known_secrets(config: &Config) -> Vec<String> {
    config
        .model_provider
        .env_key
        .as_deref()
        .and_then(|name| std::env::var(name).ok())
        .filter(|value| !value.trim().is_empty())
        .into_iter()
        .collect()
}

/// What a thread needs to build its [`SessionTelemetry`].
#[derive(Clone, Debug, Default)]
pub struct ThreadTelemetry {
    /// Metrics client.
    pub metrics: Option<MetricsClient>,
    /// Log prompt text.
    pub log_user_prompt: bool,
    /// Tool result preview cap.
    pub tool_result_max_bytes: usize,
    /// Originator / service name.
    pub originator: String,
}

impl ThreadTelemetry {
    /// The session telemetry of one thread.
    pub fn session(&self, thread_id: &str, config: &Config) -> Arc<SessionTelemetry> {
        let terminal = std::env::var("TERM").unwrap_or_else(|_| "unknown".to_string());
        let mut session = SessionTelemetry::new(
            thread_id,
            &config.model,
            &config.model,
            None,
            None,
            None,
            self.originator.clone(),
            self.log_user_prompt,
            terminal,
            "exec".to_string(),
        )
        .with_tool_result_max_bytes(self.tool_result_max_bytes)
        .with_known_secrets(known_secrets(config));
        if let Some(metrics) = &self.metrics {
            session = session.with_metrics(metrics.clone());
        }
        Arc::new(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigOverrides, load_config};

    fn with(raw: &[&str]) -> Result<TelemetryConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_config(ConfigOverrides {
            home: Some(dir.path().to_path_buf()),
            cwd: Some(dir.path().to_path_buf()),
            raw_overrides: raw.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })?;
        telemetry_config(&loaded.config, "quest_exec")
    }

    #[test]
    fn defaults_export_nothing() {
        let c = with(&[]).unwrap();
        assert_eq!(c.settings.exporter, OtelExporter::None);
        assert_eq!(c.settings.trace_exporter, OtelExporter::None);
        assert_eq!(c.settings.metrics_exporter, OtelExporter::None);
        assert!(c.propagate_model_requests);
        assert!(!c.log_user_prompt);
        assert_eq!(c.tool_result_max_bytes, 2048);
    }

    #[test]
    fn exporter_tables_parse() {
        let c = with(&[
            r#"otel.trace_exporter={otlp-http={endpoint="http://127.0.0.1:4318", protocol="json", headers={"x-token"="t"}}}"#,
            r#"otel.metrics_exporter={otlp-grpc={endpoint="http://127.0.0.1:4317"}}"#,
            "otel.environment=\"staging\"",
        ])
        .unwrap();
        assert_eq!(
            c.settings.trace_exporter,
            OtelExporter::OtlpHttp {
                endpoint: "http://127.0.0.1:4318".into(),
                headers: HashMap::from([("x-token".to_string(), "t".to_string())]),
                protocol: OtelHttpProtocol::Json,
                tls: None,
            }
        );
        assert!(matches!(
            c.settings.metrics_exporter,
            OtelExporter::OtlpGrpc { .. }
        ));
        assert_eq!(c.settings.environment, "staging");
    }

    #[test]
    fn bad_exporters_name_the_key() {
        for (raw, key) in [
            ("otel.exporter=\"otlp-http\"", "otel.exporter"),
            ("otel.exporter=\"kafka\"", "otel.exporter"),
            (
                r#"otel.exporter={otlp-http={endpoint="http://x"}}"#,
                "otel.exporter.otlp-http",
            ),
            (
                r#"otel.trace_exporter={otlp-grpc={endpoint="http://x", tls={ca-certificate="rel.pem"}}}"#,
                "otel.trace_exporter.otlp-grpc.tls.ca-certificate",
            ),
            ("otel.trace_exporter=\"statsig\"", "otel.trace_exporter"),
            (
                "otel.shutdown_timeout_ms=\"soon\"",
                "otel.shutdown_timeout_ms",
            ),
        ] {
            let err = with(&[raw]).unwrap_err().to_string();
            assert!(err.contains(key), "{raw}: {err}");
        }
    }

    /// Issue 17: a Codex `[otel]` table with keys this version does not know still loads.
    #[test]
    fn unknown_otel_keys_are_warnings_naming_the_key() {
        let c = with(&[
            "otel.enabled=true",
            "otel.tool_result.preview=3",
            r#"otel.trace_exporter={otlp-http={endpoint="http://127.0.0.1:4318", protocol="json", compression="gzip", tls={verify=false}}}"#,
        ])
        .unwrap();
        let mut warnings = c.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "unknown config key `otel.enabled` ignored",
                "unknown config key `otel.tool_result.preview` ignored",
                "unknown config key `otel.trace_exporter.otlp-http.compression` ignored",
                "unknown config key `otel.trace_exporter.otlp-http.tls.verify` ignored",
            ]
        );
        assert!(matches!(
            c.settings.trace_exporter,
            OtelExporter::OtlpHttp { .. }
        ));
    }

    #[test]
    fn invalid_trace_metadata_becomes_warnings() {
        let c = with(&[
            r#"otel.span_attributes={""="x", "team"="core"}"#,
            r#"otel.tracestate={"Bad Key"={a="1"}, quest={tier="gold"}}"#,
        ])
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert_eq!(c.settings.span_attributes.len(), 1);
        assert_eq!(c.settings.tracestate.len(), 1);
    }

    #[test]
    fn broken_tls_and_inert_keys_are_warnings_not_errors() {
        let c = with(&[
            r#"otel.trace_exporter={otlp-grpc={endpoint="https://127.0.0.1:4317", tls={client-certificate="/nonexistent/client.pem"}}}"#,
            r#"otel.exporter={otlp-http={endpoint="https://127.0.0.1:4318", protocol="binary", tls={ca-certificate="/nonexistent/ca.pem"}}}"#,
            "otel.capture_content=true",
            "otel.log_agent_responses=true",
        ])
        .unwrap();
        assert_eq!(c.settings.trace_exporter, OtelExporter::None);
        assert_eq!(c.settings.exporter, OtelExporter::None);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("otel.exporter: failed to read /nonexistent/ca.pem"));
        assert_eq!(
            c.warnings[1],
            "otel.trace_exporter: client_certificate and client_private_key must both be provided for mTLS; traces are not exported"
        );
        assert!(c.warnings[2].contains("`otel.capture_content` is not supported"));
        assert!(c.warnings[3].contains("`otel.log_agent_responses` is not supported"));
    }
}
