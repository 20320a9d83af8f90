//! The one resource shared by logs, spans and metrics (precedence, lowest first: SDK
//! defaults, Quest defaults, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`,
//! `[otel.resource_attributes]`).

use std::collections::BTreeMap;

use opentelemetry::Key;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::resource::ResourceDetector;

use crate::metrics::sanitize_metric_tag_value;

/// Inputs to [`build_resource`].
#[derive(Clone, Debug, Default)]
pub struct ResourceSettings {
    /// `service.name` default (the originator).
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `env` and `deployment.environment.name`.
    pub environment: String,
    /// `[otel.resource_attributes]`, applied last.
    pub resource_attributes: BTreeMap<String, String>,
}

/// Quest's default attributes, before environment overrides.
fn quest_defaults(settings: &ResourceSettings) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("service.name", settings.service_name.clone()),
        KeyValue::new("service.version", settings.service_version.clone()),
        KeyValue::new("env", settings.environment.clone()),
        KeyValue::new("deployment.environment.name", settings.environment.clone()),
    ];
    if let Some(host) = hostname() {
        attrs.push(KeyValue::new("host.name", host));
    }
    let os = sanitize_metric_tag_value(std::env::consts::OS);
    if os != "unspecified" {
        attrs.push(KeyValue::new("os", os));
    }
    if let Some(version) = os_version() {
        let version = sanitize_metric_tag_value(&version);
        if version != "unspecified" {
            attrs.push(KeyValue::new("os_version", version));
        }
    }
    attrs
}

fn hostname() -> Option<String> {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())?;
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn os_version() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Builds the resource with Quest's precedence rules.
pub fn build_resource(settings: &ResourceSettings) -> Resource {
    let env_resource = EnvResourceDetector::new().detect();
    let service_name_env = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let defaults = quest_defaults(settings).into_iter().filter(|kv| {
        let overridden_by_env = env_resource.get(&kv.key).is_some();
        let overridden_service =
            kv.key == Key::from_static_str("service.name") && service_name_env.is_some();
        !overridden_by_env && !overridden_service
    });
    Resource::builder()
        .with_attributes(defaults)
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .build()
}
