//! Prompt files and the one function that renders them.

use std::path::Path;

const BASE_INSTRUCTIONS: &str = include_str!("../prompts/base_instructions.md");
const ENVIRONMENT_CONTEXT: &str = include_str!("../prompts/environment_context.md");

/// Replaces `{{name}}` placeholders. Unknown placeholders are left as they are, so a typo shows up
/// in tests instead of silently vanishing.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// The base instructions: the configured file when given, else the built-in template.
pub fn base_instructions(custom: Option<&str>, cwd: &Path, sandbox_mode: &str) -> String {
    let cwd = cwd.display().to_string();
    render(
        custom.unwrap_or(BASE_INSTRUCTIONS),
        &[("cwd", &cwd), ("sandbox_mode", sandbox_mode)],
    )
}

/// The `<environment_context>` user message.
pub fn environment_context(cwd: &Path, sandbox_mode: &str, date: &str) -> String {
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "bash".to_string());
    let cwd = cwd.display().to_string();
    render(
        ENVIRONMENT_CONTEXT,
        &[
            ("cwd", &cwd),
            ("shell", &shell),
            ("date", date),
            ("sandbox_mode", sandbox_mode),
        ],
    )
}

/// `AGENTS.md` of the working directory, capped, wrapped for the model.
pub fn project_doc(cwd: &Path, max_bytes: usize) -> Option<String> {
    let text = std::fs::read_to_string(cwd.join("AGENTS.md")).ok()?;
    let text = text.trim();
    if text.is_empty() || max_bytes == 0 {
        return None;
    }
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!(
        "# AGENTS.md instructions for {}\n\n<INSTRUCTIONS>\n{}\n</INSTRUCTIONS>",
        cwd.display(),
        &text[..end]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_no_unrendered_placeholders() {
        let base = base_instructions(None, Path::new("/w"), "workspace-write");
        assert!(!base.contains("{{"), "{base}");
        assert!(base.contains("/w"));
        let env = environment_context(Path::new("/w"), "read-only", "2026-11-25");
        assert!(!env.contains("{{"), "{env}");
        assert!(env.contains("<cwd>/w</cwd>"));
    }

    #[test]
    fn agents_md_is_capped_on_a_char_boundary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("AGENTS.md"), "é".repeat(100)).unwrap();
        let doc = project_doc(dir.path(), 5).unwrap();
        assert!(doc.contains("<INSTRUCTIONS>\néé\n</INSTRUCTIONS>"), "{doc}");
        assert!(project_doc(&dir.path().join("missing"), 100).is_none());
    }
}
