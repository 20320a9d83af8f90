//! The function names the model sees for MCP tools.
//!
//! A tool `search` of server `github` is offered as `mcp__github__search` (Codex's spelling). The
//! Responses API accepts function names of at most 64 characters from `[A-Za-z0-9_-]`, while MCP
//! tool names may be longer or contain other characters (`files/read`, `get.issue`). Such names
//! are made valid by replacing each other character with `_` and, when anything had to change
//! (or the name is too long), ending the name with `_` and 8 hex digits of a SHA-256 of the
//! original server and tool names. So a name depends only on its own server and tool — it is
//! stable across restarts and whatever other tools exist — and two different tools never share
//! one (`a.b` and `a_b` stay apart).

use sha2::{Digest, Sha256};

/// Prefix and separator of qualified names.
pub const PREFIX: &str = "mcp";
/// Separator between prefix, server and tool.
pub const DELIMITER: &str = "__";
/// The longest function name the Responses API accepts.
pub const MAX_NAME_LEN: usize = 64;
const HASH_LEN: usize = 8;

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// True when `name` is a valid Responses API function name.
pub fn is_valid_function_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(valid_char)
}

/// The model-facing name of `tool` on `server`.
pub fn qualified_tool_name(server: &str, tool: &str) -> String {
    let plain = format!("{PREFIX}{DELIMITER}{server}{DELIMITER}{tool}");
    if is_valid_function_name(&plain) {
        return plain;
    }
    hashed(&plain, server, tool)
}

/// The hashed form of a name, used for every name that needs changing and, by the manager, for
/// both tools of a clash between valid names (`a__b`/`c` and `a`/`b__c`).
pub fn hashed_tool_name(server: &str, tool: &str) -> String {
    let plain = format!("{PREFIX}{DELIMITER}{server}{DELIMITER}{tool}");
    hashed(&plain, server, tool)
}

fn hashed(plain: &str, server: &str, tool: &str) -> String {
    let sanitized: String = plain
        .chars()
        .map(|c| if valid_char(c) { c } else { '_' })
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(server.as_bytes());
    hasher.update([0]);
    hasher.update(tool.as_bytes());
    let digest = hasher.finalize();
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Sanitised characters are ASCII, so byte truncation is on a character boundary.
    let keep = MAX_NAME_LEN - HASH_LEN - 1;
    let head = &sanitized[..sanitized.len().min(keep)];
    format!("{head}_{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_codex_spelling() {
        assert_eq!(
            qualified_tool_name("everything", "echo"),
            "mcp__everything__echo"
        );
        assert_eq!(
            qualified_tool_name("gh", "get-issue_2"),
            "mcp__gh__get-issue_2"
        );
    }

    #[test]
    fn invalid_characters_are_replaced_and_hashed_apart() {
        let dotted = qualified_tool_name("s", "a.b");
        let underscored = qualified_tool_name("s", "a_b");
        assert_eq!(underscored, "mcp__s__a_b");
        assert!(dotted.starts_with("mcp__s__a_b_"), "{dotted}");
        assert_ne!(dotted, underscored);
        assert!(is_valid_function_name(&dotted));
        let unicode = qualified_tool_name("s", "résumé/读");
        assert!(is_valid_function_name(&unicode), "{unicode}");
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = qualified_tool_name("server", &format!("{}a", "x".repeat(80)));
        let b = qualified_tool_name("server", &format!("{}b", "x".repeat(80)));
        assert_eq!(a.len(), MAX_NAME_LEN);
        assert!(is_valid_function_name(&a) && is_valid_function_name(&b));
        assert_ne!(a, b);
        // Stable: the same input always gives the same name.
        assert_eq!(
            a,
            qualified_tool_name("server", &format!("{}a", "x".repeat(80)))
        );
    }

    #[test]
    fn server_and_tool_boundary_is_part_of_the_hash() {
        // Same concatenation, different split.
        let one = qualified_tool_name("a.b", "c");
        let two = qualified_tool_name("a", "b.c");
        assert_ne!(one, two);
    }
}
