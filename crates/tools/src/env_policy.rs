//! Which environment variables a command sees: `[shell_environment_policy]`, as Codex defines it.
//!
//! The environment is built in this order:
//! 1. `inherit`: `all` of Quest's variables, the `core` ones (`HOME`, `PATH`, `USER`, ...), or
//!    `none`;
//! 2. unless `ignore_default_excludes`, drop every variable whose name matches `*KEY*`,
//!    `*SECRET*` or `*TOKEN*` (case-insensitive);
//! 3. always drop Quest's own secrets and state pointers: `QUEST_HOME`, `CODEX_HOME` and the
//!    model provider's `env_key` (a command must not find the API key or the goal database);
//! 4. drop the names matching an `exclude` pattern;
//! 5. add the `set` variables;
//! 6. when `include_only` is not empty, keep only the names matching one of its patterns.
//!
//! Patterns are case-insensitive globs with `*` (any run) and `?` (one character).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Variables kept by `inherit = "core"`.
const CORE_VARS: [&str; 9] = [
    "HOME", "LOGNAME", "PATH", "SHELL", "USER", "USERNAME", "TMPDIR", "TEMP", "TMP",
];

/// Patterns dropped unless `ignore_default_excludes` is set.
const DEFAULT_EXCLUDES: [&str; 3] = ["*KEY*", "*SECRET*", "*TOKEN*"];

/// Variables that always leave: they point at Quest's state or hold its credentials.
const ALWAYS_EXCLUDED: [&str; 2] = ["QUEST_HOME", "CODEX_HOME"];

/// `inherit`: where the environment starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inherit {
    /// Every variable of Quest's environment.
    #[default]
    All,
    /// Only `HOME`, `LOGNAME`, `PATH`, `SHELL`, `USER`, `USERNAME`, `TMPDIR`, `TEMP`, `TMP`.
    Core,
    /// Nothing.
    None,
}

/// The `[shell_environment_policy]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShellEnvironmentPolicy {
    /// Where the environment starts from.
    pub inherit: Inherit,
    /// Keep variables matching `*KEY*`, `*SECRET*`, `*TOKEN*`.
    pub ignore_default_excludes: bool,
    /// Patterns of names to drop.
    pub exclude: Vec<String>,
    /// Variables to set (after the excludes).
    pub set: BTreeMap<String, String>,
    /// When not empty, only names matching one of these patterns are kept.
    pub include_only: Vec<String>,
    /// Accepted for Codex compatibility; Quest always runs commands with `bash -lc`.
    pub experimental_use_profile: Option<bool>,
}

impl ShellEnvironmentPolicy {
    /// The environment of a command, from `vars` (normally `std::env::vars()`); `secret_vars`
    /// names further variables that always leave (the model provider's `env_key`).
    pub fn build(
        &self,
        vars: impl IntoIterator<Item = (String, String)>,
        secret_vars: &[&str],
    ) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| match self.inherit {
                Inherit::All => true,
                Inherit::Core => CORE_VARS.contains(&name.as_str()),
                Inherit::None => false,
            })
            .collect();
        env.retain(|name, _| {
            let default_excluded = !self.ignore_default_excludes
                && DEFAULT_EXCLUDES.iter().any(|p| glob_matches(p, name));
            let always =
                ALWAYS_EXCLUDED.contains(&name.as_str()) || secret_vars.contains(&name.as_str());
            let excluded = self.exclude.iter().any(|p| glob_matches(p, name));
            !(default_excluded || always || excluded)
        });
        for (name, value) in &self.set {
            env.insert(name.clone(), value.clone());
        }
        if !self.include_only.is_empty() {
            env.retain(|name, _| self.include_only.iter().any(|p| glob_matches(p, name)));
        }
        env.into_iter().collect()
    }
}

/// Case-insensitive glob match of `name` against `pattern` (`*` and `?`).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    // Every command's environment is filtered through these (variables × patterns): the usual
    // all-ASCII case compares bytes in place instead of building uppercased copies.
    if pattern.is_ascii() && name.is_ascii() {
        return wildcard(pattern.as_bytes(), name.as_bytes(), b'*', b'?', |p, n| {
            p.eq_ignore_ascii_case(&n)
        });
    }
    let p: Vec<char> = pattern.chars().flat_map(char::to_uppercase).collect();
    let n: Vec<char> = name.chars().flat_map(char::to_uppercase).collect();
    wildcard(&p, &n, '*', '?', |p, n| p == n)
}

/// `*` (any run) and `?` (any one) matching of `name` against `pattern`, iteratively, with
/// backtracking to the last `*`.
fn wildcard<T: Copy + PartialEq>(
    p: &[T],
    n: &[T],
    star_sym: T,
    any: T,
    same: impl Fn(T, T) -> bool,
) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == any || same(p[pi], n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == star_sym {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == star_sym)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("OPENAI_API_KEY", "sk-1"),
            ("GITHUB_TOKEN", "ghp"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("QUEST_HOME", "/home/u/.quest"),
            ("CODEX_HOME", "/home/u/.codex"),
            ("MY_PROVIDER_CRED", "c"),
            ("LANG", "C.UTF-8"),
            ("monkey", "banana"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn default_drops_secrets_and_quest_state() {
        let env = ShellEnvironmentPolicy::default().build(vars(), &["MY_PROVIDER_CRED"]);
        assert_eq!(names(&env), vec!["HOME", "LANG", "PATH"]);
    }

    #[test]
    fn ignore_default_excludes_keeps_key_like_names_but_not_quest_state() {
        let policy = ShellEnvironmentPolicy {
            ignore_default_excludes: true,
            ..Default::default()
        };
        let env = policy.build(vars(), &[]);
        assert_eq!(
            names(&env),
            vec![
                "AWS_SECRET_ACCESS_KEY",
                "GITHUB_TOKEN",
                "HOME",
                "LANG",
                "MY_PROVIDER_CRED",
                "OPENAI_API_KEY",
                "PATH",
                "monkey"
            ]
        );
    }

    #[test]
    fn core_exclude_set_and_include_only_apply_in_order() {
        let policy = ShellEnvironmentPolicy {
            inherit: Inherit::Core,
            exclude: vec!["ho?e".into()],
            set: BTreeMap::from([("CI".into(), "1".into()), ("EXTRA".into(), "2".into())]),
            include_only: vec!["P*".into(), "c?".into()],
            ..Default::default()
        };
        let env = policy.build(vars(), &[]);
        assert_eq!(
            env,
            vec![
                ("CI".to_string(), "1".to_string()),
                ("PATH".to_string(), "/usr/bin".to_string())
            ]
        );
        let none = ShellEnvironmentPolicy {
            inherit: Inherit::None,
            set: BTreeMap::from([("A".into(), "b".into())]),
            ..Default::default()
        };
        assert_eq!(names(&none.build(vars(), &[])), vec!["A"]);
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*KEY*", "openai_api_key"));
        assert!(glob_matches("*key*", "KEY"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
        assert!(glob_matches("?", "x"));
        assert!(!glob_matches("?", ""));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("PATH", "PATHX"));
        // Outside ASCII, case folds through `to_uppercase` (ß has no one-char uppercase).
        assert!(glob_matches("*é*", "CAFÉ_TOKEN"));
        assert!(glob_matches("STRASSE", "straße"));
    }

    proptest::proptest! {
        /// The in-place ASCII comparison agrees with matching uppercased copies.
        #[test]
        fn ascii_fast_path_matches_the_uppercasing_matcher(
            pattern in "[a-cA-C*?_]{0,8}",
            name in "[a-cA-C_?*]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().flat_map(char::to_uppercase).collect();
            let n: Vec<char> = name.chars().flat_map(char::to_uppercase).collect();
            proptest::prop_assert_eq!(
                glob_matches(&pattern, &name),
                wildcard(&p, &n, '*', '?', |p, n| p == n)
            );
        }
    }
}
