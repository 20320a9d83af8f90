//! Codex's own apply-patch fixture suite, vendored in `tests/fixtures/codex-apply-patch-scenarios`
//! (see the README there): each scenario is an `input/` tree, a `patch.txt` and the `expected/`
//! tree after applying it. Quest must end in the expected state for every scenario except the
//! ones listed in [`DELIBERATE_DIFFERENCES`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use quest_tools::apply_patch::apply_patch_text;

/// Scenarios where Quest deliberately ends in another state than Codex, and why.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[(
    "015_failure_after_partial_success_leaves_changes",
    "all-or-nothing: Codex keeps the files written by the hunks before the failing one; \
     Quest applies every hunk or none, so the failed patch leaves the input untouched",
)];

/// How many scenarios the vendored suite holds; a lost directory fails the test.
const SCENARIO_COUNT: usize = 23;

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Dir,
}

/// Every file (with its bytes) and directory under `root`, by relative path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &path, out);
            } else {
                out.insert(rel, Entry::File(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.is_dir() {
        walk(root, root, &mut out);
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    if !from.is_dir() {
        return;
    }
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            fs::create_dir_all(&dest).unwrap();
            copy_tree(&path, &dest);
        } else {
            fs::copy(&path, &dest).unwrap();
        }
    }
}

fn render(state: &BTreeMap<PathBuf, Entry>) -> String {
    state
        .iter()
        .map(|(path, entry)| match entry {
            Entry::Dir => format!("{}/\n", path.display()),
            Entry::File(bytes) => {
                format!("{}: {:?}\n", path.display(), String::from_utf8_lossy(bytes))
            }
        })
        .collect()
}

/// What running one scenario produced: the final state and the result message.
struct Run {
    input: BTreeMap<PathBuf, Entry>,
    expected: BTreeMap<PathBuf, Entry>,
    actual: BTreeMap<PathBuf, Entry>,
    result: Result<String, String>,
}

fn run(dir: &Path) -> Run {
    let work = tempfile::tempdir().unwrap();
    copy_tree(&dir.join("input"), work.path());
    let patch = fs::read_to_string(dir.join("patch.txt")).unwrap();
    let result = apply_patch_text(work.path(), &patch)
        .map(|report| report.summary())
        .map_err(|err| err.to_string());
    Run {
        input: snapshot(&dir.join("input")),
        expected: snapshot(&dir.join("expected")),
        actual: snapshot(work.path()),
        result,
    }
}

#[test]
fn codex_apply_patch_scenarios() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/codex-apply-patch-scenarios");
    let mut scenarios: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    scenarios.sort();
    assert_eq!(
        scenarios.len(),
        SCENARIO_COUNT,
        "scenarios in {}",
        root.display()
    );

    let mut failures = Vec::new();
    let mut differences_seen = Vec::new();
    for dir in &scenarios {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let run = run(dir);
        let difference = DELIBERATE_DIFFERENCES.iter().find(|(n, _)| *n == name);
        let (wanted, label) = match difference {
            Some((_, why)) => {
                differences_seen.push(name.clone());
                // The listed difference must still be real, or the list is stale.
                assert_ne!(
                    run.expected, run.input,
                    "{name} no longer differs from Codex; remove it from DELIBERATE_DIFFERENCES"
                );
                (
                    &run.input,
                    format!("input state (deliberate difference: {why})"),
                )
            }
            None => (&run.expected, "expected state".to_owned()),
        };
        let mut problems = Vec::new();
        if &run.actual != wanted {
            problems.push(format!(
                "final state differs from the {label}\n--- wanted\n{}--- actual\n{}",
                render(wanted),
                render(&run.actual)
            ));
        }
        // A scenario that changes nothing is a rejected patch; every other one must succeed.
        let should_fail = wanted == &run.input;
        if run.result.is_ok() == should_fail {
            problems.push(format!(
                "the patch should have {}: {:?}",
                if should_fail { "failed" } else { "succeeded" },
                run.result
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}:\n{}", problems.join("\n")));
        }
    }
    let listed: Vec<String> = DELIBERATE_DIFFERENCES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(
        differences_seen, listed,
        "every listed difference has a scenario"
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
}
