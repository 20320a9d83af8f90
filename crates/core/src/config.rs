//! Configuration: `$QUEST_HOME/config.toml`, `-c key=value` overrides and command-line flags,
//! resolved into one [`Config`].
//!
//! Unknown keys, at any depth, are collected as warnings naming the dotted key: a typo must not
//! stop a run, and a Codex `config.toml` with keys this version does not know still loads. A value
//! of the wrong type, or one that makes no sense (a zero timeout), fails with the key and the
//! reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quest_model::{ModelProviderInfo, built_in_model_providers};
use quest_protocol::sandbox::{AskForApproval, SandboxMode, SandboxPolicy, SandboxWorkspaceWrite};
use quest_tools::env_policy::ShellEnvironmentPolicy;
use serde::Deserialize;

/// Model used when neither the config nor the command line names one.
pub const DEFAULT_MODEL: &str = "gpt-5.5";
/// Provider used when the config names none.
pub const DEFAULT_PROVIDER: &str = "openai";

/// Errors while loading configuration. Never retried; front-ends print them and exit with 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.toml` exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `config.toml` is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A `-c key=value` override is malformed.
    #[error("invalid override `{raw}`: {reason}")]
    Override {
        /// The override as given.
        raw: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key holds a value of the wrong type or out of range.
    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue {
        /// Dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `model_provider` names a provider that is not defined.
    #[error(
        "model provider `{0}` is not defined; add a [model_providers.{0}] table or use one of the built-in providers"
    )]
    UnknownProvider(String),
}

/// The `[goals]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct GoalsConfig {
    /// Consecutive goal turns without progress before the breaker blocks the goal.
    pub max_no_progress_turns: u32,
    /// Consecutive goal turns reporting the same blocker before the goal is blocked.
    pub max_repeated_blocker_turns: u32,
    /// Keep a goal `active` when its thread is resumed after the process died.
    pub auto_continue_on_resume: bool,
    /// Resume `usageLimited` goals automatically at the reported reset time.
    pub auto_resume_after_usage_limit: bool,
    /// Ceiling and default for goal token budgets.
    pub max_goal_token_budget: Option<i64>,
    /// Default time budget for new goals (`"2h"`, `"90m"`, `"3600s"` or seconds).
    pub default_time_budget: Option<DurationValue>,
    /// Default turn budget for new goals.
    pub default_turn_budget: Option<i64>,
    /// Pause before a continuation that follows a progress turn.
    pub continuation_min_interval_ms: u64,
    /// Waits after consecutive no-progress turns, last one repeated.
    pub no_progress_backoff: Vec<DurationValue>,
    /// Which goal events notify: `attention`, `all`, `none`.
    pub notify: String,
    /// Shortest random delay added to a usage-limit reset before resuming.
    pub auto_resume_jitter_min_ms: u64,
    /// Longest random delay added to a usage-limit reset before resuming.
    pub auto_resume_jitter_max_ms: u64,
    /// Wait before the one deferred retry of a goal turn that failed with "model at capacity".
    pub server_overloaded_retry_delay: DurationValue,
    /// How often a process renews its thread leases, flushes active goal time and looks for goal
    /// changes made by other processes. Must stay well under the 60 s after which a silent
    /// lease counts as dead.
    pub heartbeat_interval: DurationValue,
}

impl Default for GoalsConfig {
    fn default() -> Self {
        GoalsConfig {
            max_no_progress_turns: 3,
            max_repeated_blocker_turns: 3,
            auto_continue_on_resume: false,
            auto_resume_after_usage_limit: false,
            max_goal_token_budget: None,
            default_time_budget: None,
            default_turn_budget: None,
            continuation_min_interval_ms: 0,
            no_progress_backoff: [5, 15, 45, 135, 300]
                .into_iter()
                .map(|s| DurationValue(Duration::from_secs(s)))
                .collect(),
            notify: "attention".to_string(),
            auto_resume_jitter_min_ms: 30_000,
            auto_resume_jitter_max_ms: 90_000,
            server_overloaded_retry_delay: DurationValue(Duration::from_secs(300)),
            heartbeat_interval: DurationValue(Duration::from_secs(15)),
        }
    }
}

impl GoalsConfig {
    /// Wait before the continuation that follows `streak` consecutive no-progress turns.
    pub fn backoff_after(&self, streak: u32) -> Duration {
        if streak == 0 {
            return Duration::from_millis(self.continuation_min_interval_ms);
        }
        let index = (streak as usize - 1).min(self.no_progress_backoff.len().saturating_sub(1));
        self.no_progress_backoff
            .get(index)
            .map(|d| d.0)
            .unwrap_or_default()
    }
}

/// A duration written as `"2h"`, `"30m"`, `"45s"`, `"250ms"`, `"1h30m"` or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => Ok(DurationValue(Duration::from_secs(s))),
            Raw::Text(text) => parse_duration(&text)
                .map(DurationValue)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"2h"`, `"1h30m"`, `"45s"`, `"250ms"`, `"3d"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number like 90s, 30m, 2h or 1h30m"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" | "sec" | "secs" => Duration::from_secs(value),
            "m" | "min" | "mins" => Duration::from_secs(value.saturating_mul(60)),
            "h" | "hr" | "hrs" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// The `[tools]` table (Quest).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct ToolsConfig {
    /// Default timeout of a shell command.
    pub shell_timeout_ms: u64,
    /// Longest timeout a model may ask for with `timeout_ms`; longer requests are cut to it.
    pub max_shell_timeout_ms: u64,
    /// Output kept per command (head and tail).
    pub max_output_bytes: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            shell_timeout_ms: 120_000,
            max_shell_timeout_ms: 600_000,
            max_output_bytes: 64 * 1024,
        }
    }
}

/// The `[model_client]` table (Quest). The spec calls it `[model]`, but `model` is already the
/// model slug string in every Codex config, so the table gets its own name.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelTuning {
    /// Longest wait before a retry; longer server hints are clamped to it.
    pub max_retry_delay_s: u64,
    /// Base of the exponential retry backoff.
    pub retry_backoff_base_ms: u64,
    /// How long the provider's model list (`GET {base_url}/models`) may take to answer when
    /// the model's context window is neither known nor configured; 0 never asks.
    pub model_list_timeout_ms: u64,
}

impl Default for ModelTuning {
    fn default() -> Self {
        ModelTuning {
            max_retry_delay_s: 120,
            retry_backoff_base_ms: 200,
            model_list_timeout_ms: 5_000,
        }
    }
}

/// `config.toml` as written by the user. Keys Codex users already have are accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigToml {
    model: Option<String>,
    model_provider: Option<String>,
    openai_base_url: Option<String>,
    model_reasoning_effort: Option<String>,
    model_reasoning_summary: Option<String>,
    model_context_window: Option<i64>,
    model_auto_compact_token_limit: Option<i64>,
    approval_policy: Option<AskForApproval>,
    sandbox_mode: Option<SandboxMode>,
    model_providers: BTreeMap<String, ModelProviderInfo>,
    goals: GoalsConfig,
    tools: ToolsConfig,
    model_client: ModelTuning,
    otel: Option<toml::Value>,
    features: BTreeMap<String, bool>,
    analytics: Option<toml::Value>,
    project_doc_max_bytes: Option<usize>,
    instructions_file: Option<PathBuf>,
    web_search: Option<String>,
    notify: Option<Vec<String>>,
    sandbox_workspace_write: SandboxWorkspaceWrite,
    shell_environment_policy: ShellEnvironmentPolicy,
    mcp_servers: quest_mcp::McpServers,
}

/// The resolved configuration of one Quest process.
#[derive(Clone, Debug)]
pub struct Config {
    /// `$QUEST_HOME`.
    pub home: PathBuf,
    /// Working directory of new threads.
    pub cwd: PathBuf,
    /// Model slug.
    pub model: String,
    /// Id of the provider (`openai`, or a `[model_providers]` key).
    pub model_provider_id: String,
    /// The provider, with `openai_base_url` applied to the built-in one.
    pub model_provider: ModelProviderInfo,
    /// `model_reasoning_effort`.
    pub reasoning_effort: Option<String>,
    /// `model_reasoning_summary`.
    pub reasoning_summary: Option<String>,
    /// `sandbox_mode` / `--sandbox`: how commands are confined (default `workspace-write`).
    pub sandbox_mode: SandboxMode,
    /// The sandbox of the mode with its `[sandbox_workspace_write]` settings.
    pub sandbox_policy: SandboxPolicy,
    /// `approval_policy` / `--ask-for-approval` (default `never`).
    pub approval_policy: AskForApproval,
    /// `[shell_environment_policy]`: the environment commands see.
    pub shell_environment_policy: ShellEnvironmentPolicy,
    /// `[goals]`.
    pub goals: GoalsConfig,
    /// `[tools]`.
    pub tools: ToolsConfig,
    /// `[model_client]`.
    pub model_tuning: ModelTuning,
    /// Raw `[otel]` table, parsed by the telemetry layer.
    pub otel: Option<toml::Value>,
    /// Replacement for the built-in base instructions.
    pub instructions_file: Option<PathBuf>,
    /// Maximum bytes of `AGENTS.md` included.
    pub project_doc_max_bytes: usize,
    /// `notify`: a program (and arguments) run with a JSON payload as its last argument when a
    /// goal needs attention.
    pub notify: Option<Vec<String>>,
    /// `[mcp_servers.<name>]`: Model Context Protocol servers whose tools the model may use.
    pub mcp_servers: quest_mcp::McpServers,
    /// `model_context_window` / `model_auto_compact_token_limit`, resolved for the model.
    pub compaction: crate::compact::CompactionSettings,
}

/// Command-line inputs that take part in configuration.
#[derive(Clone, Debug, Default)]
pub struct ConfigOverrides {
    /// `$QUEST_HOME` (else `~/.quest`).
    pub home: Option<PathBuf>,
    /// `--cd`.
    pub cwd: Option<PathBuf>,
    /// `--model`.
    pub model: Option<String>,
    /// `--sandbox`.
    pub sandbox_mode: Option<String>,
    /// `--ask-for-approval`.
    pub approval_policy: Option<String>,
    /// `--add-dir`: writable roots added to `[sandbox_workspace_write]`.
    pub add_dirs: Vec<PathBuf>,
    /// `-c key=value`, in order.
    pub raw_overrides: Vec<String>,
}

/// Result of loading: the config and the warnings to show in every front-end.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// Unknown keys and other non-fatal findings.
    pub warnings: Vec<String>,
}

/// Default home: `$QUEST_HOME`, else `~/.quest`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("QUEST_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".quest")
}

/// Splits `key=value` and parses the value as TOML, falling back to a plain string.
pub fn parse_override(raw: &str) -> Result<(Vec<String>, toml::Value), ConfigError> {
    let err = |reason: &str| ConfigError::Override {
        raw: raw.to_string(),
        reason: reason.to_string(),
    };
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| err("expected key=value"))?;
    let path = split_key(key.trim()).map_err(|reason| err(&reason))?;
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((path, parsed))
}

/// Splits a dotted key; segments may be double-quoted (`"a.b".c`).
fn split_key(key: &str) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Err("empty key".to_string());
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '.' if !quoted => {
                if current.is_empty() {
                    return Err(format!("empty segment in key `{key}`"));
                }
                parts.push(std::mem::take(&mut current));
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in key `{key}`"));
    }
    if current.is_empty() {
        return Err(format!("empty segment in key `{key}`"));
    }
    parts.push(current);
    Ok(parts)
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".to_string());
    };
    let mut current = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!("`{}` is not a table", parents[..=i].join(".")));
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// Loads `config.toml` from the home directory (missing file = defaults) and applies overrides.
pub fn load_config(overrides: ConfigOverrides) -> Result<LoadedConfig, ConfigError> {
    let home = overrides.home.clone().unwrap_or_else(default_home);
    let path = home.join("config.toml");
    let mut table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    for raw in &overrides.raw_overrides {
        let (key, value) = parse_override(raw)?;
        set_path(&mut table, &key, value).map_err(|reason| ConfigError::Override {
            raw: raw.clone(),
            reason,
        })?;
    }
    resolve(home, table, overrides)
}

fn resolve(
    home: PathBuf,
    table: toml::Table,
    overrides: ConfigOverrides,
) -> Result<LoadedConfig, ConfigError> {
    let mut warnings = Vec::new();
    let value = toml::Value::Table(table);
    let mut on_ignored = |path: serde_ignored::Path<'_>| {
        warnings.push(format!("unknown config key `{path}` ignored"));
    };
    let ignored = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let parsed: ConfigToml = serde_path_to_error::deserialize(ignored).map_err(|err| {
        let key = err.path().to_string();
        ConfigError::InvalidValue {
            key: if key == "." {
                "(root)".to_string()
            } else {
                key
            },
            reason: err.into_inner().to_string(),
        }
    })?;

    let provider_id = parsed
        .model_provider
        .clone()
        .unwrap_or_else(|| DEFAULT_PROVIDER.to_string());
    let mut providers = built_in_model_providers();
    for (id, info) in parsed.model_providers {
        check_provider(&id, &info)?;
        providers.insert(id, info);
    }
    check_tools(&parsed.tools)?;
    check_model_tuning(&parsed.model_client)?;
    let mut model_provider = providers
        .remove(&provider_id)
        .ok_or_else(|| ConfigError::UnknownProvider(provider_id.clone()))?;
    if provider_id == DEFAULT_PROVIDER {
        let env_base = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|v| !v.is_empty());
        if let Some(url) = parsed.openai_base_url.clone().or(env_base) {
            model_provider.base_url = Some(url);
        }
    }
    if parsed.goals.max_no_progress_turns == 0 {
        return Err(ConfigError::InvalidValue {
            key: "goals.max_no_progress_turns".into(),
            reason: "must be at least 1".into(),
        });
    }
    if parsed.goals.max_repeated_blocker_turns == 0 {
        return Err(ConfigError::InvalidValue {
            key: "goals.max_repeated_blocker_turns".into(),
            reason: "must be at least 1".into(),
        });
    }
    if let Some(max) = parsed.goals.max_goal_token_budget
        && max <= 0
    {
        return Err(ConfigError::InvalidValue {
            key: "goals.max_goal_token_budget".into(),
            reason: "must be positive".into(),
        });
    }
    if parsed.goals.no_progress_backoff.is_empty() {
        return Err(ConfigError::InvalidValue {
            key: "goals.no_progress_backoff".into(),
            reason: "must list at least one duration".into(),
        });
    }
    if parsed.goals.auto_resume_jitter_min_ms > parsed.goals.auto_resume_jitter_max_ms {
        return Err(ConfigError::InvalidValue {
            key: "goals.auto_resume_jitter_min_ms".into(),
            reason: "must not exceed goals.auto_resume_jitter_max_ms".into(),
        });
    }
    let heartbeat = parsed.goals.heartbeat_interval.0;
    if heartbeat.is_zero() || heartbeat.as_millis() >= quest_state::LEASE_STALE_AFTER_MS as u128 / 2
    {
        return Err(ConfigError::InvalidValue {
            key: "goals.heartbeat_interval".into(),
            reason: "must be more than 0 and under 30s".into(),
        });
    }
    if !matches!(parsed.goals.notify.as_str(), "attention" | "all" | "none") {
        return Err(ConfigError::InvalidValue {
            key: "goals.notify".into(),
            reason: format!(
                "expected \"attention\", \"all\" or \"none\", got {:?}",
                parsed.goals.notify
            ),
        });
    }
    let sandbox_mode = match overrides.sandbox_mode.as_deref() {
        Some(flag) => parse_flag::<SandboxMode>("--sandbox", flag)?,
        None => parsed.sandbox_mode.unwrap_or_default(),
    };
    let approval_policy = match overrides.approval_policy.as_deref() {
        Some(flag) => parse_flag::<AskForApproval>("--ask-for-approval", flag)?,
        None => parsed.approval_policy.unwrap_or_default(),
    };
    let mut workspace_write = parsed.sandbox_workspace_write;
    for (i, root) in workspace_write.writable_roots.iter().enumerate() {
        if !root.is_absolute() {
            return Err(ConfigError::InvalidValue {
                key: format!("sandbox_workspace_write.writable_roots[{i}]"),
                reason: format!("{} is not an absolute path", root.display()),
            });
        }
    }
    for (key, value) in [
        ("model_context_window", parsed.model_context_window),
        (
            "model_auto_compact_token_limit",
            parsed.model_auto_compact_token_limit,
        ),
    ] {
        if value.is_some_and(|v| v <= 0) {
            return Err(ConfigError::InvalidValue {
                key: key.into(),
                reason: "must be a positive number of tokens".into(),
            });
        }
    }
    if let (Some(limit), Some(window)) = (
        parsed.model_auto_compact_token_limit,
        parsed.model_context_window,
    ) && limit > window
    {
        warnings.push(format!(
            "model_auto_compact_token_limit ({limit}) exceeds model_context_window ({window}); using {window}"
        ));
    }
    let model = overrides
        .model
        .or(parsed.model)
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let compaction = crate::compact::CompactionSettings::resolve(
        &model,
        parsed.model_context_window,
        parsed.model_auto_compact_token_limit,
    );
    workspace_write
        .writable_roots
        .extend(overrides.add_dirs.iter().map(|dir| absolute(dir)));
    let sandbox_policy = SandboxPolicy::new(sandbox_mode, workspace_write);
    let cwd = match overrides.cwd {
        Some(dir) => absolute(&dir),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let config = Config {
        home,
        cwd,
        model,
        model_provider_id: provider_id,
        model_provider,
        reasoning_effort: parsed.model_reasoning_effort,
        reasoning_summary: parsed.model_reasoning_summary,
        sandbox_mode,
        sandbox_policy,
        approval_policy,
        shell_environment_policy: parsed.shell_environment_policy,
        goals: parsed.goals,
        tools: parsed.tools,
        model_tuning: parsed.model_client,
        otel: parsed.otel,
        instructions_file: parsed.instructions_file,
        project_doc_max_bytes: parsed.project_doc_max_bytes.unwrap_or(32 * 1024),
        notify: parsed.notify.filter(|argv| !argv.is_empty()),
        mcp_servers: parsed.mcp_servers,
        compaction,
    };
    Ok(LoadedConfig { config, warnings })
}

/// Parses a command-line value with the same spelling as its config key.
fn parse_flag<T: serde::de::DeserializeOwned>(flag: &str, value: &str) -> Result<T, ConfigError> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|err| ConfigError::InvalidValue {
            key: flag.to_string(),
            reason: err.to_string(),
        })
}

/// Longest `[model_client] max_retry_delay_s` accepted (a day).
pub const MAX_RETRY_DELAY_LIMIT_S: u64 = 86_400;

fn check_tools(tools: &ToolsConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::InvalidValue {
        key: format!("tools.{key}"),
        reason,
    };
    if tools.shell_timeout_ms == 0 {
        return Err(invalid(
            "shell_timeout_ms",
            "must be at least 1 (milliseconds); a command cannot finish in no time".into(),
        ));
    }
    if tools.max_shell_timeout_ms < tools.shell_timeout_ms {
        return Err(invalid(
            "max_shell_timeout_ms",
            format!(
                "must not be below tools.shell_timeout_ms ({})",
                tools.shell_timeout_ms
            ),
        ));
    }
    if tools.max_output_bytes == 0 {
        return Err(invalid(
            "max_output_bytes",
            "must be at least 1; the model needs to see some output".into(),
        ));
    }
    Ok(())
}

fn check_model_tuning(tuning: &ModelTuning) -> Result<(), ConfigError> {
    if tuning.max_retry_delay_s > MAX_RETRY_DELAY_LIMIT_S {
        return Err(ConfigError::InvalidValue {
            key: "model_client.max_retry_delay_s".into(),
            reason: format!("must be at most {MAX_RETRY_DELAY_LIMIT_S} (a day)"),
        });
    }
    if tuning.retry_backoff_base_ms == 0 || tuning.retry_backoff_base_ms > 60_000 {
        return Err(ConfigError::InvalidValue {
            key: "model_client.retry_backoff_base_ms".into(),
            reason: "must be between 1 and 60000 (milliseconds)".into(),
        });
    }
    if tuning.model_list_timeout_ms > 60_000 {
        return Err(ConfigError::InvalidValue {
            key: "model_client.model_list_timeout_ms".into(),
            reason: "must be at most 60000 (milliseconds; 0 turns the lookup off)".into(),
        });
    }
    Ok(())
}

fn check_provider(id: &str, info: &ModelProviderInfo) -> Result<(), ConfigError> {
    if info.stream_idle_timeout_ms == Some(0) {
        return Err(ConfigError::InvalidValue {
            key: format!("model_providers.{id}.stream_idle_timeout_ms"),
            reason: "must be at least 1 (milliseconds); every stream would time out at once".into(),
        });
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(home: &Path, raw: &[&str]) -> Result<LoadedConfig, ConfigError> {
        load_config(ConfigOverrides {
            home: Some(home.to_path_buf()),
            cwd: Some(home.to_path_buf()),
            raw_overrides: raw.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn mcp_servers_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[mcp_servers.docs]\ncommand = \"npx\"\nargs = [\"-y\", \"pkg\"]\n",
        )
        .unwrap();
        let loaded = load(
            dir.path(),
            &["mcp_servers.web.url=\"http://127.0.0.1:9/mcp\""],
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let servers = &loaded.config.mcp_servers;
        assert_eq!(servers.len(), 2);
        assert_eq!(servers.get("docs").unwrap().transport.kind(), "stdio");
        assert_eq!(
            servers.get("web").unwrap().transport.kind(),
            "streamable_http"
        );

        let err = load(dir.path(), &["mcp_servers.bad.args=[\"x\"]"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mcp_servers.bad"), "{text}");
        assert!(text.contains("missing `command`"), "{text}");
        let unknown = load(dir.path(), &["mcp_servers.docs.colour=\"red\""]).unwrap();
        assert_eq!(
            unknown.warnings,
            ["unknown config key `mcp_servers.docs.colour` ignored"]
        );
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(dir.path(), &[]).unwrap();
        assert_eq!(loaded.config.model, DEFAULT_MODEL);
        assert_eq!(loaded.config.model_provider_id, "openai");
        assert_eq!(loaded.config.goals.max_no_progress_turns, 3);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn context_window_keys_resolve_per_model_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(dir.path(), &[]).unwrap().config.compaction;
        assert_eq!(c.context_window, Some(258_400));
        assert_eq!(c.auto_compact_limit, Some(232_560));
        let c = load(
            dir.path(),
            &["model=local-llm", "model_context_window=32000"],
        )
        .unwrap()
        .config
        .compaction;
        assert_eq!(
            (c.context_window, c.auto_compact_limit),
            (Some(32_000), Some(28_800))
        );
        let loaded = load(
            dir.path(),
            &[
                "model_context_window=1000",
                "model_auto_compact_token_limit=5000",
            ],
        )
        .unwrap();
        assert_eq!(loaded.config.compaction.auto_compact_limit, Some(1000));
        assert!(
            loaded.warnings[0].contains("exceeds model_context_window"),
            "{:?}",
            loaded.warnings
        );
        let err = load(dir.path(), &["model_auto_compact_token_limit=0"]).unwrap_err();
        assert!(
            err.to_string().contains("`model_auto_compact_token_limit`"),
            "{err}"
        );
        let err = load(dir.path(), &["model_context_window=\"big\""]).unwrap_err();
        assert!(err.to_string().contains("model_context_window"), "{err}");
    }

    #[test]
    fn overrides_define_a_provider_inline() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(
            dir.path(),
            &[
                "model_provider=test",
                r#"model_providers.test={name="test", base_url="http://127.0.0.1:9/v1", wire_api="responses", env_key="TEST_API_KEY"}"#,
                "model=gpt-test",
                "goals.max_no_progress_turns=5",
            ],
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.model, "gpt-test");
        assert_eq!(c.model_provider_id, "test");
        assert_eq!(
            c.model_provider.base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(c.goals.max_no_progress_turns, 5);
    }

    #[test]
    fn unknown_keys_warn_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "modle = \"x\"\n[goals]\nmax_no_progress_turns = 4\n",
        )
        .unwrap();
        let loaded = load(dir.path(), &[]).unwrap();
        assert_eq!(loaded.warnings, vec!["unknown config key `modle` ignored"]);

        let err = load(dir.path(), &["goals.max_no_progress_turns=\"three\""]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("goals.max_no_progress_turns"),
            "error names the key: {text}"
        );
    }

    /// Issue 17: a Codex `config.toml` with keys this version does not know still loads; each
    /// unknown key, at any depth, is a warning naming it.
    #[test]
    fn unknown_keys_in_every_section_are_warnings_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            r#"
model_provider = "local"
model_verbosity = "low"
[goals]
max_no_progress_turns = 4
pause_on_weekends = true
[tools]
shell_timeout_ms = 1000
view_image = true
[model_client]
max_retry_delay_s = 30
http2 = true
[model_providers.local]
name = "local"
base_url = "http://127.0.0.1:9/v1"
requires_openai_auth = false
[otel]
environment = "dev"
[profiles.fast]
model = "gpt-5.5-mini"
"#,
        )
        .unwrap();
        let loaded = load(dir.path(), &[]).unwrap();
        let mut warnings = loaded.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "unknown config key `goals.pause_on_weekends` ignored",
                "unknown config key `model_client.http2` ignored",
                "unknown config key `model_providers.local.requires_openai_auth` ignored",
                "unknown config key `model_verbosity` ignored",
                "unknown config key `profiles` ignored",
                "unknown config key `tools.view_image` ignored",
            ]
        );
        let c = loaded.config;
        assert_eq!(c.goals.max_no_progress_turns, 4);
        assert_eq!(c.tools.shell_timeout_ms, 1000);
        assert_eq!(c.model_tuning.max_retry_delay_s, 30);
        assert_eq!(c.model_provider.base_url(), "http://127.0.0.1:9/v1");
    }

    #[test]
    fn nonsensical_values_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (raw, key) in [
            ("tools.shell_timeout_ms=0", "tools.shell_timeout_ms"),
            ("tools.max_output_bytes=0", "tools.max_output_bytes"),
            (
                "tools.max_shell_timeout_ms=10",
                "tools.max_shell_timeout_ms",
            ),
            (
                "model_client.max_retry_delay_s=100000",
                "model_client.max_retry_delay_s",
            ),
            (
                "model_client.retry_backoff_base_ms=0",
                "model_client.retry_backoff_base_ms",
            ),
            (
                "model_client.model_list_timeout_ms=600000",
                "model_client.model_list_timeout_ms",
            ),
            (
                r#"model_providers.x={name="x", stream_idle_timeout_ms=0}"#,
                "model_providers.x.stream_idle_timeout_ms",
            ),
            ("tools.shell_timeout_ms=-5", "tools.shell_timeout_ms"),
        ] {
            let err = load(dir.path(), &[raw]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{raw}: {err}");
        }
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "model = \n").unwrap();
        let err = load(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn override_values_fall_back_to_strings() {
        let (key, value) = parse_override("model=gpt-5.5").unwrap();
        assert_eq!(key, vec!["model"]);
        assert_eq!(value, toml::Value::String("gpt-5.5".into()));
        let (_, value) = parse_override("goals.default_turn_budget=50").unwrap();
        assert_eq!(value, toml::Value::Integer(50));
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("a..b=1").is_err());
        let (key, _) = parse_override(r#"otel."span.attr"=1"#).unwrap();
        assert_eq!(key, vec!["otel", "span.attr"]);
    }

    #[test]
    fn unknown_provider_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), &["model_provider=nope"]).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownProvider(ref p) if p == "nope"));
    }

    #[test]
    fn sandbox_approval_and_env_policy_keys() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(dir.path(), &[]).unwrap();
        assert_eq!(loaded.config.sandbox_mode, SandboxMode::WorkspaceWrite);
        assert_eq!(loaded.config.approval_policy, AskForApproval::Never);
        std::fs::write(
            dir.path().join("config.toml"),
            "sandbox_mode = \"read-only\"\napproval_policy = \"on-request\"\n\
             [sandbox_workspace_write]\nwritable_roots = [\"/srv/data\"]\nnetwork_access = true\n\
             [shell_environment_policy]\ninherit = \"core\"\nexclude = [\"AWS_*\"]\nset = { CI = \"1\" }\n",
        )
        .unwrap();
        let c = load(dir.path(), &["sandbox_mode=\"workspace-write\""])
            .unwrap()
            .config;
        assert!(c.sandbox_policy.has_network());
        assert_eq!(c.approval_policy, AskForApproval::OnRequest);
        assert_eq!(
            c.sandbox_policy,
            SandboxPolicy::WorkspaceWrite(SandboxWorkspaceWrite {
                writable_roots: vec![PathBuf::from("/srv/data")],
                network_access: true,
                ..Default::default()
            })
        );
        assert_eq!(c.shell_environment_policy.exclude, vec!["AWS_*"]);

        let err = load(dir.path(), &["approval_policy=\"sometimes\""])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("approval_policy") && err.contains("on-request"),
            "{err}"
        );
        let err = load(
            dir.path(),
            &["sandbox_workspace_write.writable_roots=[\"rel\"]"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("writable_roots[0]"), "{err}");
        let err = load_config(ConfigOverrides {
            home: Some(dir.path().to_path_buf()),
            approval_policy: Some("always".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--ask-for-approval"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let goals = GoalsConfig::default();
        assert_eq!(goals.backoff_after(0), Duration::ZERO);
        assert_eq!(goals.backoff_after(1), Duration::from_secs(5));
        assert_eq!(goals.backoff_after(2), Duration::from_secs(15));
        assert_eq!(goals.backoff_after(9), Duration::from_secs(300));
    }
}
