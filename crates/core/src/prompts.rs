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

/// What the model is told about the sandbox its commands run in.
#[derive(Clone, Debug)]
pub struct SandboxContext {
    /// `read-only`, `workspace-write`, `danger-full-access`.
    pub mode: String,
    /// How the mode is enforced here (`landlock-abi-7+seccomp`, `none`, `unavailable`).
    pub enforcement: String,
    /// `never`, `on-request`, ...
    pub approval_policy: String,
    /// Whether commands may use the network.
    pub network_access: bool,
    /// Where commands may write.
    pub writable_roots: Vec<String>,
}

/// The `<environment_context>` user message.
pub fn environment_context(cwd: &Path, date: &str, sandbox: &SandboxContext) -> String {
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "bash".to_string());
    let cwd = cwd.display().to_string();
    let roots = sandbox
        .writable_roots
        .iter()
        .map(|root| format!("\n    <root>{root}</root>"))
        .collect::<String>();
    let roots = if roots.is_empty() {
        roots
    } else {
        format!("{roots}\n  ")
    };
    render(
        ENVIRONMENT_CONTEXT,
        &[
            ("cwd", &cwd),
            ("shell", &shell),
            ("date", date),
            ("approval_policy", &sandbox.approval_policy),
            ("sandbox_mode", &sandbox.mode),
            ("sandbox_enforcement", &sandbox.enforcement),
            (
                "network_access",
                if sandbox.network_access {
                    "enabled"
                } else {
                    "restricted"
                },
            ),
            ("writable_roots", &roots),
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
        let sandbox = SandboxContext {
            mode: "workspace-write".into(),
            enforcement: "landlock-abi-7+seccomp".into(),
            approval_policy: "on-request".into(),
            network_access: false,
            writable_roots: vec!["/w".into(), "/tmp".into()],
        };
        let env = environment_context(Path::new("/w"), "2026-11-25", &sandbox);
        assert!(!env.contains("{{"), "{env}");
        assert!(env.contains("<cwd>/w</cwd>"));
        assert!(
            env.contains("<sandbox_mode>workspace-write</sandbox_mode>"),
            "{env}"
        );
        assert!(
            env.contains("<network_access>restricted</network_access>"),
            "{env}"
        );
        assert!(
            env.contains(
                "<writable_roots>\n    <root>/w</root>\n    <root>/tmp</root>\n  </writable_roots>"
            ),
            "{env}"
        );
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
