//! Metric name and tag rules.

use super::MetricsError;

/// Checks a metric name: non-empty, ASCII letter first, `[A-Za-z0-9._-]`, at most 255 bytes.
pub fn validate_metric_name(name: &str) -> Result<(), MetricsError> {
    if name.is_empty() {
        return Err(MetricsError::EmptyMetricName);
    }
    let first_ok = name.as_bytes()[0].is_ascii_alphabetic();
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !first_ok || !chars_ok || name.len() > 255 {
        return Err(MetricsError::InvalidMetricName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn validate_component(label: &'static str, value: &str) -> Result<(), MetricsError> {
    if value.is_empty() {
        return Err(MetricsError::EmptyTagComponent { label });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Err(MetricsError::InvalidTagComponent {
            label,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Checks one tag: key and value non-empty, `[A-Za-z0-9._/-]`.
pub fn validate_tag(key: &str, value: &str) -> Result<(), MetricsError> {
    validate_component("tag key", key)?;
    validate_component("tag value", value)
}

/// Makes any string a legal tag value: disallowed characters become `_`, leading/trailing `_`
/// are trimmed, an empty or symbol-only result becomes `unspecified`, at most 256 bytes.
pub fn sanitize_metric_tag_value(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = replaced.trim_matches('_');
    if !trimmed.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return "unspecified".to_string();
    }
    let mut out = trimmed.to_string();
    out.truncate(256);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        assert!(validate_metric_name("codex.tool.call").is_ok());
        assert!(matches!(
            validate_metric_name(""),
            Err(MetricsError::EmptyMetricName)
        ));
        for bad in ["1bad", "-", "has space", "semi;colon"] {
            assert!(
                matches!(
                    validate_metric_name(bad),
                    Err(MetricsError::InvalidMetricName { .. })
                ),
                "{bad}"
            );
        }
        let long = format!("a{}", "b".repeat(255));
        assert!(validate_metric_name(&long).is_err());
        assert!(validate_metric_name(&long[..255]).is_ok());
    }

    #[test]
    fn tags() {
        assert!(validate_tag("tool", "exec_command").is_ok());
        assert!(matches!(
            validate_tag("", "x"),
            Err(MetricsError::EmptyTagComponent { label: "tag key" })
        ));
        assert!(matches!(
            validate_tag("k", ""),
            Err(MetricsError::EmptyTagComponent { label: "tag value" })
        ));
        let err = validate_tag("k", "a b").unwrap_err();
        assert_eq!(err.to_string(), "invalid tag value: a b");
    }

    #[test]
    fn sanitize() {
        assert_eq!(
            sanitize_metric_tag_value("0.136.0-alpha.1+frodex.1"),
            "0.136.0-alpha.1_frodex.1"
        );
        assert_eq!(sanitize_metric_tag_value("  "), "unspecified");
        assert_eq!(sanitize_metric_tag_value("--"), "unspecified");
        assert_eq!(sanitize_metric_tag_value(&"x".repeat(300)).len(), 256);
    }
}
