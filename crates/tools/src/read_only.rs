//! Recognising commands that only read.
//!
//! A turn may run the tool calls of one model response at the same time only when none of them
//! changes anything. [`is_read_only`] says yes for a short list of well-known commands (`ls`,
//! `cat`, `rg`, `git status`, `sed -n 1,20p`, ...) with no option that writes or runs another
//! program, alone or joined by `|`, `&&`, `||` or `;`, with no redirection, substitution or
//! variable. Anything it does not recognise is treated as a command that may write: a wrong "no"
//! only costs parallelism, a wrong "yes" could race two edits.

use crate::shell::CommandLine;

/// Whether `command` is known to change nothing on disk (and start no other program).
pub fn is_read_only(command: &CommandLine) -> bool {
    match command {
        CommandLine::Shell(script) => script_is_read_only(script),
        CommandLine::Argv(argv) => match argv.as_slice() {
            [shell, flag, script] if is_shell(shell) && matches!(flag.as_str(), "-c" | "-lc") => {
                script_is_read_only(script)
            }
            words => !words.is_empty() && words_are_read_only(words),
        },
    }
}

fn is_shell(program: &str) -> bool {
    matches!(
        program,
        "bash" | "sh" | "zsh" | "/bin/bash" | "/bin/sh" | "/bin/zsh" | "/usr/bin/bash"
    )
}

/// A script of simple commands joined by `|`, `&&`, `||`, `;` or newlines, each read-only.
fn script_is_read_only(script: &str) -> bool {
    match split_script(script) {
        Some(commands) => {
            !commands.is_empty() && commands.iter().all(|words| words_are_read_only(words))
        }
        None => false,
    }
}

/// Splits a script into its simple commands (as words, quotes removed). `None` when the script
/// uses anything beyond words, quotes and the separators: redirection, `$`, backquotes,
/// subshells, braces, backslashes, comments, background jobs.
fn split_script(script: &str) -> Option<Vec<Vec<String>>> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars().peekable();
    let end_word = |word: &mut Option<String>, words: &mut Vec<String>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut word, &mut words),
            '\n' | ';' | '|' | '&' => {
                if c == '&' && chars.next_if_eq(&'&').is_none() {
                    return None; // a background job
                }
                if c == '|' {
                    chars.next_if_eq(&'|');
                }
                end_word(&mut word, &mut words);
                if words.is_empty() {
                    // `a | | b`, a leading separator: only blank lines may be empty.
                    if c != '\n' {
                        return None;
                    }
                    continue;
                }
                commands.push(std::mem::take(&mut words));
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        inner => w.push(inner),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' | '!' => return None,
                        inner => w.push(inner),
                    }
                }
            }
            '<' | '>' | '$' | '`' | '(' | ')' | '{' | '}' | '\\' | '#' | '!' => return None,
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    end_word(&mut word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    Some(commands)
}

/// Commands that read and print, whatever their arguments (no option of theirs writes a file or
/// runs a program).
const ALWAYS_READ_ONLY: &[&str] = &[
    "basename", "cat", "cd", "cmp", "column", "cut", "df", "diff", "dirname", "du", "echo",
    "egrep", "false", "fgrep", "file", "grep", "head", "id", "jq", "ls", "nl", "printf", "pwd",
    "readlink", "realpath", "stat", "tail", "tr", "true", "uname", "wc", "which", "whoami",
];

/// `git` subcommands that only read the repository.
const GIT_READ_ONLY: &[&str] = &[
    "blame",
    "cat-file",
    "describe",
    "diff",
    "grep",
    "log",
    "ls-files",
    "ls-tree",
    "merge-base",
    "rev-parse",
    "shortlog",
    "show",
    "status",
];

fn words_are_read_only(words: &[String]) -> bool {
    let Some((program, args)) = words.split_first() else {
        return false;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match program.as_str() {
        p if ALWAYS_READ_ONLY.contains(&p) => true,
        "rg" => !args.iter().any(|a| a.starts_with("--pre")),
        "find" => !args.iter().any(|a| {
            matches!(
                *a,
                "-exec"
                    | "-execdir"
                    | "-ok"
                    | "-okdir"
                    | "-delete"
                    | "-fls"
                    | "-fprint"
                    | "-fprint0"
                    | "-fprintf"
            )
        }),
        // `-o FILE` (also inside a cluster such as `-ro`) and `--output` write.
        "sort" => !args.iter().any(|a| {
            a.starts_with("--output")
                || (a.starts_with('-') && !a.starts_with("--") && a.contains('o'))
        }),
        "uniq" => args.iter().filter(|a| !a.starts_with('-')).count() <= 1,
        "sed" => sed_is_read_only(&args),
        "git" => git_is_read_only(&args),
        _ => false,
    }
}

/// `sed -n <print script> [files]`, where the script only prints line ranges (`10,20p`, `$p`).
fn sed_is_read_only(args: &[&str]) -> bool {
    let mut quiet = false;
    let mut script = None;
    for arg in args {
        match *arg {
            "-n" | "--quiet" | "--silent" => quiet = true,
            "-E" | "-r" | "-u" | "-s" | "-z" => {}
            flag if flag.starts_with('-') => return false,
            text if script.is_none() => script = Some(text),
            _ => {}
        }
    }
    quiet
        && script.is_some_and(|s| {
            s.split(';').all(|part| {
                part.strip_suffix('p').is_some_and(|range| {
                    range
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == '$')
                })
            })
        })
}

fn git_is_read_only(args: &[&str]) -> bool {
    let Some((subcommand, rest)) = args.split_first() else {
        return false;
    };
    let harmless = |a: &&str| {
        !(a.starts_with("--output")
            || a.starts_with("--ext-diff")
            || a.starts_with("--open-files-in-pager")
            || a.starts_with("-O"))
    };
    match *subcommand {
        "branch" => rest.iter().all(|a| {
            matches!(
                *a,
                "--show-current" | "-a" | "--all" | "-r" | "--remotes" | "-v" | "-vv" | "--list"
            )
        }),
        sub if GIT_READ_ONLY.contains(&sub) => rest.iter().all(harmless),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> bool {
        is_read_only(&CommandLine::Shell(script.to_owned()))
    }

    fn argv(words: &[&str]) -> bool {
        is_read_only(&CommandLine::Argv(
            words.iter().map(|w| (*w).to_owned()).collect(),
        ))
    }

    #[test]
    fn read_only_commands() {
        for script in [
            "ls -la",
            "cat src/main.rs",
            "rg -n 'fn main' src | head -20",
            "git status && git diff --stat",
            "git log --oneline -5; git show HEAD",
            "sed -n '1,40p' README.md",
            "sed -n 10p a.txt",
            "find . -name '*.rs' -type f",
            "grep -rn \"TODO\" crates",
            "cd crates/core && ls",
            "wc -l *.rs",
            "git branch --show-current",
            "sort names.txt | uniq -c",
            "\n  ls\n\n  pwd\n",
        ] {
            assert!(shell(script), "{script:?} should be read-only");
        }
        assert!(argv(&["ls", "-la"]));
        assert!(argv(&["bash", "-lc", "cat a.txt | wc -l"]));
    }

    #[test]
    fn commands_that_may_write_or_run_programs() {
        for script in [
            "",
            "echo hi > out.txt",
            "cat < in.txt",
            "ls; rm -rf build",
            "touch a",
            "cargo test",
            "python3 script.py",
            "./run.sh",
            "sed -i 's/a/b/' f.txt",
            "sed 's/a/b/' f.txt",
            "sed -n 'w out' f.txt",
            "find . -name '*.tmp' -delete",
            "find . -exec rm {} ;",
            "rg --pre ./decode pattern",
            "sort -o out.txt in.txt",
            "sort -ro out.txt in.txt",
            "uniq in.txt out.txt",
            "git checkout main",
            "git diff --output=patch.txt",
            "git grep -Oevil pattern",
            "git -C other status",
            "git branch new-branch",
            "echo $(rm -rf /)",
            "echo `rm x`",
            "cat \"$HOME/x\"",
            "ls &",
            "ls && (rm a)",
            "FOO=1 ls",
            "cat 'unterminated",
            "ls | | wc",
            "xargs rm < list",
            "echo hi # comment",
            "env rm a",
        ] {
            assert!(!shell(script), "{script:?} should not be read-only");
        }
        assert!(!argv(&[]));
        assert!(!argv(&["rm", "-rf", "x"]));
        assert!(!argv(&["bash", "-lc", "ls > out"]));
    }
}
