//! Answers to the methods a client (Codex's TUI among them) calls at start-up, taken from Quest's
//! own state: its configured model and provider, and empty lists for what Quest does not have
//! (accounts, hooks, skills, plugins).

use quest_core::Config;
use serde_json::{Value, json};

/// `account/read`: Quest authenticates with API keys from the provider config, not accounts.
pub(crate) fn account_read() -> Value {
    json!({
        "account": null,
        "userId": null,
        "requiresOpenaiAuth": false,
        "workspaceRouting": null,
    })
}

/// `account/rateLimits/read`: Quest learns rate limits only from model responses; none yet.
pub(crate) fn rate_limits() -> Value {
    json!({
        "rateLimits": {
            "limitId": null,
            "limitName": null,
            "normalModelSlug": null,
            "primary": null,
            "secondary": null,
            "credits": null,
            "individualLimit": null,
            "spendControlReached": null,
            "planType": null,
            "rateLimitReachedType": null,
        },
        "rateLimitsByLimitId": null,
    })
}

/// `model/list`: the configured model (Quest does not query the provider's catalogue).
pub(crate) fn model_list(config: &Config) -> Value {
    let efforts = ["low", "medium", "high"];
    let default_effort = config
        .reasoning_effort
        .clone()
        .unwrap_or_else(|| "medium".to_string());
    json!({
        "data": [{
            "id": config.model,
            "model": config.model,
            "upgrade": null,
            "upgradeInfo": null,
            "availabilityNux": null,
            "displayName": config.model,
            "description": format!("{} via {}", config.model, config.model_provider_id),
            "modelSpecialty": null,
            "hidden": false,
            "supportedReasoningEfforts": efforts
                .iter()
                .map(|e| json!({"reasoningEffort": e, "description": ""}))
                .collect::<Vec<_>>(),
            "defaultReasoningEffort": default_effort,
            "inputModalities": ["text"],
            "supportsPersonality": false,
            "multiAgentVersion": null,
            "additionalSpeedTiers": [],
            "serviceTiers": [],
            "defaultServiceTier": null,
            "availableAccessPrograms": null,
            "isDefault": true,
        }],
        "nextCursor": null,
    })
}

/// `config/read`: the effective values Quest uses, in Codex's key names.
pub(crate) fn config_read(config: &Config) -> Value {
    json!({
        "config": {
            "model": config.model,
            "model_provider": config.model_provider_id,
            "model_reasoning_effort": config.reasoning_effort,
            "model_reasoning_summary": config.reasoning_summary,
            "sandbox_mode": sandbox_mode(config.sandbox_mode.as_str()),
            "approval_policy": config.approval_policy.app_server_name(),
            "notify": config.notify,
        },
        "origins": {},
        "layers": null,
    })
}

fn sandbox_mode(mode: &str) -> Value {
    match mode {
        "read-only" | "workspace-write" | "danger-full-access" => json!(mode),
        _ => Value::Null,
    }
}

/// `configRequirements/read`: Quest has no managed requirements.
pub(crate) fn config_requirements() -> Value {
    json!({"requirements": null, "supportsIndependentSpeedModes": false})
}

/// `collaborationMode/list`: Quest has one mode.
pub(crate) fn collaboration_modes() -> Value {
    json!({"data": [{"name": "Default", "mode": "default", "model": null, "reasoning_effort": null}]})
}

fn cwds(config: &Config, params: Option<&Value>) -> Vec<String> {
    let listed: Vec<String> = params
        .and_then(|p| p.get("cwds"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        vec![config.cwd.display().to_string()]
    } else {
        listed
    }
}

/// `hooks/list`: Quest has no hooks; one empty entry per directory asked about.
pub(crate) fn hooks_list(config: &Config, params: Option<&Value>) -> Value {
    let data: Vec<Value> = cwds(config, params)
        .into_iter()
        .map(|cwd| json!({"cwd": cwd, "hooks": [], "warnings": [], "errors": []}))
        .collect();
    json!({ "data": data })
}

/// `skills/list`: Quest has no skills; one empty entry per directory asked about.
pub(crate) fn skills_list(config: &Config, params: Option<&Value>) -> Value {
    let data: Vec<Value> = cwds(config, params)
        .into_iter()
        .map(|cwd| json!({"cwd": cwd, "skills": [], "errors": []}))
        .collect();
    json!({ "data": data })
}

/// `plugin/installed`: Quest has no plugins.
pub(crate) fn plugins_installed() -> Value {
    json!({"marketplaces": [], "marketplaceLoadErrors": []})
}
