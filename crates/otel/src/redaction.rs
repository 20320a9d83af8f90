//! Content capture and redaction: prompt redaction, bounded previews of tool arguments and
//! output, the GenAI content-capture switch, and secret scrubbing applied before any capture.

/// Replaces prompt text unless prompt logging is on.
pub const REDACTED: &str = "[REDACTED]";
/// Appended to a truncated preview.
pub const TRUNCATION_NOTICE: &str = "[... telemetry preview truncated ...]";
/// Default `[otel] tool_result.max_bytes`.
pub const DEFAULT_TOOL_RESULT_MAX_BYTES: usize = 2048;
/// Environment switch for GenAI content capture.
pub const CAPTURE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// Cuts `text` to at most `max_bytes` (on a char boundary) and appends [`TRUNCATION_NOTICE`];
/// returns the preview and whether it was truncated.
pub fn truncate_preview(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_string(), false);
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (format!("{}{TRUNCATION_NOTICE}", &text[..cut]), true)
}

/// True when GenAI content may be recorded: `[otel] capture_content = true` or the
/// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` environment variable.
pub fn capture_content_enabled(config_flag: bool) -> bool {
    config_flag
        || std::env::var(CAPTURE_CONTENT_ENV)
            .map(|value| value.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(false)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Scrubs secrets from `text`: API keys (`sk-…`) and well-known token formats (GitHub, GitLab,
/// Slack, AWS access keys), bearer tokens, `authorization` values, the value of any
/// `NAME=value` / `"name": "value"` whose name says key, secret, token or password, and each
/// string in `known_secrets` (e.g. the values of configured `env_key` variables).
pub fn redact_secrets(text: &str, known_secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in known_secrets.iter().filter(|secret| secret.len() >= 4) {
        out = out.replace(secret.as_str(), REDACTED);
    }
    out = redact_after_marker(&out, "bearer ", false);
    out = redact_after_marker(&out, "authorization", true);
    out = redact_named_values(&out);
    out = redact_api_keys(&out);
    redact_token_prefixes(&out)
}

/// Words that make a variable or field name secret-bearing.
const SECRET_NAME_WORDS: [&str; 5] = ["key", "secret", "token", "password", "passwd"];

/// Whether a name (`OPENAI_API_KEY`, `apiKey`, `db.password`) says it holds a secret: one of its
/// `_`/`-`/`.` separated parts is a secret word, or it ends with one (`accessToken`).
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .split(['_', '-', '.'])
        .any(|part| SECRET_NAME_WORDS.contains(&part))
        || SECRET_NAME_WORDS.iter().any(|w| lower.ends_with(w))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Replaces the value of `NAME=value`, `NAME: value`, `"name": "value"` when the name contains
/// one of [`SECRET_NAME_WORDS`] (case-insensitive). The value runs to the closing quote when
/// quoted, else to whitespace, `,`, `;`, `&` or a quote.
fn redact_named_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_name_byte(bytes[i]) || (i > 0 && is_name_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let name_start = i;
        while i < bytes.len() && is_name_byte(bytes[i]) {
            i += 1;
        }
        if !is_secret_name(&text[name_start..i]) {
            continue;
        }
        let mut j = i;
        if j < bytes.len() && matches!(bytes[j], b'"' | b'\'') {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || !matches!(bytes[j], b'=' | b':') {
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let quote = match bytes.get(j) {
            Some(q @ (b'"' | b'\'')) => {
                j += 1;
                Some(*q)
            }
            _ => None,
        };
        let value_start = j;
        let mut end = value_start;
        while end < bytes.len() {
            let b = bytes[end];
            let stop = match quote {
                Some(q) => b == q || b == b'\n',
                None => {
                    b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'&' | b'"' | b'\'' | b'}')
                }
            };
            if stop {
                break;
            }
            end += 1;
        }
        let value = &text[value_start..end];
        // Booleans, numbers and already-redacted values are not secrets.
        let harmless = value.is_empty()
            || value == REDACTED
            || value.eq_ignore_ascii_case("true")
            || value.eq_ignore_ascii_case("false")
            || value.eq_ignore_ascii_case("null")
            || value.bytes().all(|b| b.is_ascii_digit());
        if !harmless {
            out.push_str(&text[pos..value_start]);
            out.push_str(REDACTED);
            pos = end;
        }
        i = end.max(i);
    }
    out.push_str(&text[pos..]);
    out
}

/// Prefixes of token formats that are secret wherever they appear.
const TOKEN_PREFIXES: [&str; 10] = [
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "AKIA",
];

fn redact_token_prefixes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let prefix = boundary
            .then(|| {
                TOKEN_PREFIXES
                    .iter()
                    .find(|p| bytes[i..].starts_with(p.as_bytes()))
            })
            .flatten();
        if let Some(prefix) = prefix {
            let mut end = i + prefix.len();
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'-' | b'_'))
            {
                end += 1;
            }
            if end - i >= prefix.len() + 16 {
                out.push_str(&text[pos..i]);
                out.push_str(REDACTED);
                pos = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[pos..]);
    out
}

/// Replaces the value that follows `marker` (case-insensitive). With `separated`, a `:` or `=`
/// (optionally quoted / spaced) must follow the marker and the value runs to the end of the
/// quoted string or line.
fn redact_after_marker(text: &str, marker: &str, separated: bool) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(marker) {
        let start = pos + found + marker.len();
        let mut value_start = start;
        if separated {
            let mut i = start;
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ') {
                i += 1;
            }
            if i >= bytes.len() || !matches!(bytes[i], b':' | b'=') {
                out.push_str(&text[pos..start]);
                pos = start;
                continue;
            }
            i += 1;
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ') {
                i += 1;
            }
            value_start = i;
            let mut end = value_start;
            while end < bytes.len() && !matches!(bytes[end], b'"' | b'\'' | b'\n' | b'\r' | b',') {
                end += 1;
            }
            out.push_str(&text[pos..value_start]);
            if end > value_start {
                out.push_str(REDACTED);
            }
            pos = end;
        } else {
            let mut end = value_start;
            while end < bytes.len() && is_token_byte(bytes[end]) {
                end += 1;
            }
            out.push_str(&text[pos..value_start]);
            if end > value_start && &text[value_start..end] != REDACTED {
                out.push_str(REDACTED);
            } else {
                out.push_str(&text[value_start..end]);
            }
            pos = end;
        }
    }
    out.push_str(&text[pos..]);
    out
}

fn redact_api_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i + 3 <= bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary && &bytes[i..i + 3] == b"sk-" {
            let mut end = i + 3;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'-' | b'_'))
            {
                end += 1;
            }
            if end - i >= 20 {
                out.push_str(&text[pos..i]);
                out.push_str(REDACTED);
                pos = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[pos..]);
    out
}

/// Decides whether GenAI content is recorded and scrubs it first.
#[derive(Clone, Debug, Default)]
pub struct ContentCapture {
    enabled: bool,
    known_secrets: Vec<String>,
}

impl ContentCapture {
    /// Capture per [`capture_content_enabled`], scrubbing `known_secrets` too.
    pub fn new(config_flag: bool, known_secrets: Vec<String>) -> Self {
        Self {
            enabled: capture_content_enabled(config_flag),
            known_secrets,
        }
    }

    /// Whether content is captured.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The scrubbed content, or `None` when capture is off.
    pub fn capture(&self, content: &str) -> Option<String> {
        self.enabled
            .then(|| redact_secrets(content, &self.known_secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_preview("short", 10), ("short".to_string(), false));
        let (preview, cut) = truncate_preview("héllo", 2);
        assert!(cut);
        assert_eq!(preview, format!("h{TRUNCATION_NOTICE}"));
    }

    #[test]
    fn secrets_are_scrubbed() {
        let text = "curl -H 'Authorization: Bearer abc.def' key=sk-proj-ABCDEFGHIJKLMNOPQRSTUV token MYSECRETVALUE";
        let out = redact_secrets(text, &["MYSECRETVALUE".to_string()]);
        assert!(!out.contains("abc.def"), "{out}");
        assert!(!out.contains("sk-proj-ABCDEFGHIJKLMNOPQRSTUV"), "{out}");
        assert!(!out.contains("MYSECRETVALUE"), "{out}");
        assert!(
            out.starts_with("curl -H 'Authorization: [REDACTED]'"),
            "{out}"
        );
        let json = r#"{"authorization":"Basic xyz","other":"sk-short"}"#;
        assert_eq!(
            redact_secrets(json, &[]),
            r#"{"authorization":"[REDACTED]","other":"sk-short"}"#
        );
        assert_eq!(redact_secrets("Bearer tok123", &[]), "Bearer [REDACTED]");
    }

    #[test]
    fn named_values_and_token_formats_are_scrubbed() {
        let env = "PATH=/usr/bin\nOPENAI_API_KEY=abc123secret\nGITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ\nDEBUG=1\n";
        assert_eq!(
            redact_secrets(env, &[]),
            "PATH=/usr/bin\nOPENAI_API_KEY=[REDACTED]\nGITHUB_TOKEN=[REDACTED]\nDEBUG=1\n"
        );
        let json = r#"{"api_key": "hunter2", "max_tokens": 100, "use_token": true, "name": "x"}"#;
        assert_eq!(
            redact_secrets(json, &[]),
            r#"{"api_key": "[REDACTED]", "max_tokens": 100, "use_token": true, "name": "x"}"#
        );
        assert_eq!(
            redact_secrets("export DB_PASSWORD='p a s s'; echo ok", &[]),
            "export DB_PASSWORD='[REDACTED]'; echo ok"
        );
        assert_eq!(
            redact_secrets("id AKIAIOSFODNN7EXAMPLE and ghp_short", &[]),
            "id [REDACTED] and ghp_short"
        );
        // Words that only mention keys stay.
        assert_eq!(
            redact_secrets("the keyboard: fine", &[]),
            "the keyboard: fine"
        );
    }

    #[test]
    fn capture_off_returns_nothing() {
        let off = ContentCapture {
            enabled: false,
            known_secrets: vec![],
        };
        assert_eq!(off.capture("hello"), None);
        let on = ContentCapture::new(true, vec!["hunter22".into()]);
        assert_eq!(on.capture("pw hunter22").as_deref(), Some("pw [REDACTED]"));
    }
}
