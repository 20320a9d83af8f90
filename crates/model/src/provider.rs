//! Provider configuration: the `[model_providers.<id>]` tables of `config.toml`, Codex-compatible.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::ModelError;

/// Base URL used when a provider does not set `base_url`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default for [`ModelProviderInfo::request_max_retries`].
pub const DEFAULT_REQUEST_MAX_RETRIES: u64 = 4;
/// Default for [`ModelProviderInfo::stream_max_retries`].
pub const DEFAULT_STREAM_MAX_RETRIES: u64 = 5;
/// Default for [`ModelProviderInfo::stream_idle_timeout_ms`].
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Upper bound applied to both retry budgets, whatever the configuration says.
pub const MAX_RETRIES_CAP: u64 = 100;

/// Which wire protocol a provider speaks. Only the Responses API is supported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WireApi {
    /// `POST {base_url}/responses` with SSE streaming.
    #[default]
    Responses,
}

impl<'de> Deserialize<'de> for WireApi {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        match value.as_str() {
            "responses" => Ok(WireApi::Responses),
            "chat" => Err(serde::de::Error::custom(
                "wire_api = \"chat\" is not supported; Quest only speaks the Responses API, set wire_api = \"responses\"",
            )),
            other => Err(serde::de::Error::custom(format!(
                "unknown wire_api `{other}`; the only supported value is \"responses\""
            ))),
        }
    }
}

/// One model provider, deserialized from a `[model_providers.<id>]` table. Unknown keys are
/// ignored here (newer Codex keys must not stop a run); the configuration loader reports each one
/// as a warning naming it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ModelProviderInfo {
    /// Display name.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8080/v1`; requests go to `{base_url}/responses`.
    /// Defaults to [`OPENAI_BASE_URL`].
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API key (sent as `Authorization: Bearer …`). When unset
    /// in the configuration, no authorization header is sent.
    #[serde(default)]
    pub env_key: Option<String>,
    /// Wire protocol; only `"responses"`.
    #[serde(default)]
    pub wire_api: WireApi,
    /// Extra headers sent verbatim on every request.
    #[serde(default)]
    pub http_headers: BTreeMap<String, String>,
    /// Header name → environment variable; the header is sent when the variable is set and
    /// not empty.
    #[serde(default)]
    pub env_http_headers: BTreeMap<String, String>,
    /// Query parameters appended to the request URL.
    #[serde(default)]
    pub query_params: BTreeMap<String, String>,
    /// Extra HTTP attempts per model call for 5xx and connection errors (default 4, cap 100).
    #[serde(default)]
    pub request_max_retries: Option<u64>,
    /// Visible stream-level retries per model call (default 5, cap 100).
    #[serde(default)]
    pub stream_max_retries: Option<u64>,
    /// Longest silence tolerated between SSE chunks, in ms (default 300000).
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Accepted for Codex compatibility; Quest always uses HTTP + SSE.
    #[serde(default)]
    pub supports_websockets: bool,
}

impl ModelProviderInfo {
    /// The configured base URL or [`OPENAI_BASE_URL`], without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(OPENAI_BASE_URL)
            .trim_end_matches('/')
    }

    /// Extra HTTP attempts for 5xx and connection errors, default applied, capped at 100.
    pub fn request_max_retries(&self) -> u64 {
        self.request_max_retries
            .unwrap_or(DEFAULT_REQUEST_MAX_RETRIES)
            .min(MAX_RETRIES_CAP)
    }

    /// Stream-level retries, default applied, capped at 100.
    pub fn stream_max_retries(&self) -> u64 {
        self.stream_max_retries
            .unwrap_or(DEFAULT_STREAM_MAX_RETRIES)
            .min(MAX_RETRIES_CAP)
    }

    /// Idle timeout between SSE chunks, default applied.
    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_millis(
            self.stream_idle_timeout_ms
                .unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT_MS),
        )
    }

    /// The API key: `override_key` when given, else the value of `env_key`. `Ok(None)` when the
    /// provider needs no key. An unset or empty variable is [`ModelError::MissingEnvVar`].
    pub fn api_key(&self, override_key: Option<&str>) -> Result<Option<String>, ModelError> {
        if let Some(key) = override_key.filter(|k| !k.is_empty()) {
            return Ok(Some(key.to_string()));
        }
        let Some(var) = &self.env_key else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(value)),
            _ => Err(ModelError::MissingEnvVar { var: var.clone() }),
        }
    }
}

/// Providers available without configuration: `openai` (base URL [`OPENAI_BASE_URL`], key from
/// `OPENAI_API_KEY`).
pub fn built_in_model_providers() -> BTreeMap<String, ModelProviderInfo> {
    let openai = ModelProviderInfo {
        name: "OpenAI".to_string(),
        base_url: Some(OPENAI_BASE_URL.to_string()),
        env_key: Some("OPENAI_API_KEY".to_string()),
        ..ModelProviderInfo::default()
    };
    BTreeMap::from([("openai".to_string(), openai)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        model_providers: BTreeMap<String, ModelProviderInfo>,
    }

    #[test]
    fn codex_provider_table_parses_with_defaults() {
        let cfg: Config = toml::from_str(
            r#"
            [model_providers.test]
            name = "test"
            base_url = "http://127.0.0.1:9/v1/"
            wire_api = "responses"
            env_key = "TEST_API_KEY"
            http_headers = { "x-a" = "1" }
            env_http_headers = { "x-b" = "SOME_VAR" }
            query_params = { "api-version" = "2025-01-01" }
            stream_idle_timeout_ms = 1500
            request_max_retries = 1000
            supports_websockets = false
            "#,
        )
        .unwrap();
        let p = &cfg.model_providers["test"];
        assert_eq!(p.base_url(), "http://127.0.0.1:9/v1");
        assert_eq!(p.request_max_retries(), 100);
        assert_eq!(p.stream_max_retries(), 5);
        assert_eq!(p.stream_idle_timeout(), Duration::from_millis(1500));
        assert_eq!(p.http_headers["x-a"], "1");
        assert_eq!(p.query_params["api-version"], "2025-01-01");
    }

    #[test]
    fn defaults_match_spec() {
        let p = ModelProviderInfo::default();
        assert_eq!(p.request_max_retries(), 4);
        assert_eq!(p.stream_max_retries(), 5);
        assert_eq!(p.stream_idle_timeout(), Duration::from_millis(300_000));
        assert_eq!(p.base_url(), "https://api.openai.com/v1");
    }

    #[test]
    fn chat_wire_api_is_rejected_clearly() {
        let err = toml::from_str::<ModelProviderInfo>("name = \"x\"\nwire_api = \"chat\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wire_api = \"chat\" is not supported"),
            "{err}"
        );
    }

    /// Newer Codex keys (`requires_openai_auth`, …) must not stop a run; the loader warns.
    #[test]
    fn unknown_keys_are_ignored() {
        let p = toml::from_str::<ModelProviderInfo>(
            "name = \"x\"\nbase_url = \"http://x\"\nrequires_openai_auth = false",
        )
        .unwrap();
        assert_eq!(p.base_url(), "http://x");
    }

    #[test]
    fn built_in_openai_provider() {
        let providers = built_in_model_providers();
        let openai = &providers["openai"];
        assert_eq!(openai.base_url(), "https://api.openai.com/v1");
        assert_eq!(openai.env_key.as_deref(), Some("OPENAI_API_KEY"));
    }

    #[test]
    fn missing_key_names_the_variable() {
        let p = ModelProviderInfo {
            env_key: Some("QUEST_TEST_SURELY_UNSET_KEY".to_string()),
            ..ModelProviderInfo::default()
        };
        let err = p.api_key(None).unwrap_err();
        assert_eq!(
            err.user_message(),
            "Missing environment variable: `QUEST_TEST_SURELY_UNSET_KEY`."
        );
        assert_eq!(p.api_key(Some("sk-x")).unwrap().as_deref(), Some("sk-x"));
    }
}
