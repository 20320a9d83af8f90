//! Real-file tests for `quest_tools::apply_patch`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use quest_protocol::exec_events::PatchChangeKind;
use quest_tools::apply_patch::{
    FileChange, Hunk, PatchError, apply_patch, apply_patch_text, parse_patch,
};

/// Every regular file under `dir` with its content, sorted, for before/after comparisons.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((format!("{rel}@"), Vec::new()));
            } else if meta.is_dir() {
                out.push((
                    format!("{}/", path.strip_prefix(root).unwrap().display()),
                    Vec::new(),
                ));
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// Applies `patch` expecting failure; asserts nothing changed on disk and returns the message.
fn apply_err(dir: &Path, patch: &str) -> String {
    let before = snapshot(dir);
    let err = apply_patch_text(dir, patch).expect_err("patch should fail");
    assert_eq!(snapshot(dir), before, "a failed patch changed files: {err}");
    err.to_string()
}

#[test]
fn add_update_delete_and_move_in_one_patch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("b.txt"), "one\ntwo\nthree\n").unwrap();
    fs::write(d.join("c.txt"), "bye\n").unwrap();
    fs::write(d.join("old.txt"), "keep\nchange me\n").unwrap();
    let patch = "*** Begin Patch
*** Add File: hello.txt
+hello
+world
*** Update File: b.txt
@@
 one
-two
+TWO
 three
*** Delete File: c.txt
*** Update File: old.txt
*** Move to: sub/dir/new.txt
 keep
-change me
+changed
*** End Patch
";
    let report = apply_patch_text(d, patch).unwrap();
    assert_eq!(read(d, "hello.txt"), "hello\nworld\n");
    assert_eq!(read(d, "b.txt"), "one\nTWO\nthree\n");
    assert!(!d.join("c.txt").exists());
    assert!(!d.join("old.txt").exists());
    assert_eq!(read(d, "sub/dir/new.txt"), "keep\nchanged\n");
    assert_eq!(
        report.summary(),
        "Success. Updated the following files:\nA hello.txt\nM b.txt\nD c.txt\nM sub/dir/new.txt\n"
    );
    assert_eq!(
        report.changes[3],
        FileChange {
            path: "old.txt".into(),
            kind: PatchChangeKind::Update,
            move_path: Some("sub/dir/new.txt".into()),
        }
    );
    let wire = report.file_update_changes();
    assert_eq!(wire[0].kind, PatchChangeKind::Add);
    assert_eq!(wire[2].kind, PatchChangeKind::Delete);
    assert_eq!(wire[3].path, "old.txt");
    // No temporary files are left behind.
    let names: Vec<String> = snapshot(d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["b.txt", "hello.txt", "sub/", "sub/dir/", "sub/dir/new.txt"]
    );
}

#[test]
fn multiple_hunks_with_context_headers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("m.py"),
        "def foo():\n    return 1\n\ndef bar():\n    return 1\n\ndef baz():\n    return 1\n",
    )
    .unwrap();
    // Both `bar` and `baz` contain the same body line: the headers pick the right ones.
    let patch = "*** Begin Patch
*** Update File: m.py
@@ def bar():
-    return 1
+    return 2
@@ def baz():
-    return 1
+    return 3
*** End Patch";
    apply_patch_text(d, patch).unwrap();
    assert_eq!(
        read(d, "m.py"),
        "def foo():\n    return 1\n\ndef bar():\n    return 2\n\ndef baz():\n    return 3\n"
    );
}

#[test]
fn end_of_file_anchor_and_lenient_whitespace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("f.txt"), "x\n  end  \nmid\nx\n  end\n").unwrap();
    let patch = "*** Begin Patch
*** Update File: f.txt
@@
 x
-end
+END
*** End of File
*** End Patch";
    apply_patch_text(d, patch).unwrap();
    assert_eq!(read(d, "f.txt"), "x\n  end  \nmid\nx\nEND\n");
}

#[test]
fn multiple_files_and_heredoc_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.txt"), "a\n").unwrap();
    fs::write(d.join("b.txt"), "b\n").unwrap();
    let patch = "\n  apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: a.txt\n-a\n+A\n\
                 *** Update File: b.txt\n-b\n+B\n*** End Patch\nEOF\n\n";
    let report = apply_patch_text(d, patch).unwrap();
    assert_eq!(
        (read(d, "a.txt"), read(d, "b.txt")),
        ("A\n".into(), "B\n".into())
    );
    assert_eq!(report.changes.len(), 2);
}

#[test]
fn context_mismatch_leaves_every_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.txt"), "a\n").unwrap();
    fs::write(d.join("b.txt"), "one\ntwo\n").unwrap();
    fs::write(d.join("gone.txt"), "x\n").unwrap();
    let msg = apply_err(
        d,
        "*** Begin Patch
*** Add File: new.txt
+new
*** Update File: a.txt
-a
+A
*** Delete File: gone.txt
*** Update File: b.txt
 one
-three
+THREE
*** End Patch",
    );
    assert_eq!(msg, "Failed to find expected lines in b.txt:\none\nthree");
}

#[test]
fn missing_context_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), "a\n").unwrap();
    let msg = apply_err(
        dir.path(),
        "*** Begin Patch\n*** Update File: a.txt\n@@ fn nope()\n-a\n+b\n*** End Patch",
    );
    assert_eq!(msg, "Failed to find context 'fn nope()' in a.txt");
}

#[test]
fn malformed_patches_have_clear_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "*** Add File: a\n+x\n*** End Patch",
            "invalid patch: The first line of the patch must be '*** Begin Patch'",
        ),
        (
            "*** Begin Patch\n*** Add File: a\n+x\n",
            "invalid patch: The last line of the patch must be '*** End Patch'",
        ),
        (
            "",
            "invalid patch: The first line of the patch must be '*** Begin Patch'",
        ),
        (
            "*** Begin Patch\n*** End Patch",
            "invalid patch: the patch contains no file operations",
        ),
        (
            "*** Begin Patch\n*** Update File: a.txt\n-old\n+new\n?bad\n*** End Patch",
            "invalid patch hunk on line 5: Unexpected line found in update hunk for a.txt: \
             '?bad'. Every line should start with ' ' (context line), '+' (added line), or '-' \
             (removed line)",
        ),
        (
            "*** Begin Patch\n*** Update File: a.txt\n*** End Patch",
            "invalid patch hunk on line 2: Update file hunk for path 'a.txt' is empty",
        ),
        (
            "*** Begin Patch\n*** Frobnicate File: a.txt\n*** End Patch",
            "invalid patch hunk on line 2: '*** Frobnicate File: a.txt' is not a valid hunk \
             header. Valid hunk headers: '*** Add File: {path}', '*** Delete File: {path}', \
             '*** Update File: {path}'",
        ),
        (
            "*** Begin Patch\n*** Add File: a.txt\nno plus\n*** End Patch",
            "invalid patch hunk on line 3: Unexpected line in Add File hunk for a.txt: \
             'no plus'. Every line of an added file must start with '+'",
        ),
        (
            "*** Begin Patch\n*** Delete File: \n*** End Patch",
            "invalid patch hunk on line 2: missing file path after the hunk header",
        ),
        (
            "*** Begin Patch\n*** Update File: a.txt\n@@ ctx\n*** End Patch",
            "invalid patch hunk on line 3: Update chunk for a.txt has no lines",
        ),
    ];
    for (patch, expected) in cases {
        let err = parse_patch(patch).expect_err(patch);
        assert_eq!(&err.to_string(), expected, "patch: {patch:?}");
    }
}

#[test]
fn parser_is_lenient_about_whitespace_and_unified_headers() {
    let patch = parse_patch(
        "\n\n  *** Begin Patch  \r\n*** Update File:   a.txt  \r\n@@ -1,2 +1,2 @@\r\n-a\r\n+b\r\n *** End Patch \n\n",
    )
    .unwrap();
    let [Hunk::Update { path, chunks, .. }] = patch.hunks.as_slice() else {
        panic!("{patch:?}")
    };
    assert_eq!(path, "a.txt");
    assert_eq!(chunks[0].context, None);
    assert_eq!(chunks[0].old_lines, ["a"]);
    assert_eq!(chunks[0].new_lines, ["b"]);
}

#[test]
fn blank_lines_in_an_added_file() {
    let patch = parse_patch(
        "*** Begin Patch\n*** Add File: a.txt\n+one\n\n+three\n\n*** Add File: b.txt\n+b\n*** End Patch",
    )
    .unwrap();
    let Hunk::Add { contents, .. } = &patch.hunks[0] else {
        panic!("{patch:?}")
    };
    assert_eq!(contents, "one\n\nthree\n");
    assert_eq!(patch.hunks.len(), 2);
}

#[test]
fn crlf_files_keep_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("w.txt"), "first\r\nsecond\r\nthird\r\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: w.txt\n first\n-second\n+2nd\n+2nd bis\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "w.txt"), "first\r\n2nd\r\n2nd bis\r\nthird\r\n");
}

#[test]
fn file_without_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("n.txt"), "a\nb").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: n.txt\n a\n-b\n+c\n*** End of File\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "n.txt"), "a\nc");
}

#[test]
fn unicode_punctuation_in_the_file_matches_ascii_in_the_patch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("u.md"), "say \u{201C}hi\u{201D} \u{2014} now\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: u.md\n-say \"hi\" - now\n+say hello\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "u.md"), "say hello\n");
}

#[test]
fn permissions_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("run.sh"), "#!/bin/sh\necho a\n").unwrap();
    fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: run.sh\n-echo a\n+echo b\n*** End Patch",
    )
    .unwrap();
    let mode = fs::metadata(d.join("run.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn file_existence_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("here.txt"), "x\n").unwrap();
    fs::create_dir(d.join("adir")).unwrap();
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Add File: here.txt\n+y\n*** End Patch"
        ),
        "cannot add here.txt: file already exists (use '*** Update File: here.txt' to change \
         it, or delete it first)"
    );
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Update File: nope.txt\n-a\n+b\n*** End Patch"
        ),
        "cannot update nope.txt: file does not exist"
    );
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Delete File: nope.txt\n*** End Patch"
        ),
        "cannot delete nope.txt: file does not exist"
    );
    assert_eq!(
        apply_err(d, "*** Begin Patch\n*** Delete File: adir\n*** End Patch"),
        "cannot delete adir: not a regular file"
    );
    fs::write(d.join("other.txt"), "o\n").unwrap();
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Update File: here.txt\n*** Move to: other.txt\n-x\n+y\n*** End Patch"
        ),
        "cannot move to other.txt: file already exists (use '*** Update File: other.txt' to \
         change it, or delete it first)"
    );
    fs::write(d.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Update File: bin.dat\n-a\n+b\n*** End Patch"
        ),
        "cannot update bin.dat: file is not valid UTF-8 text"
    );
    // Delete then re-add, and add then update, in one patch are sequential.
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Delete File: here.txt\n*** Add File: here.txt\n+fresh\n\
         *** Add File: made.txt\n+one\n*** Update File: made.txt\n-one\n+two\n*** End Patch",
    )
    .unwrap();
    assert_eq!(
        (read(d, "here.txt"), read(d, "made.txt")),
        ("fresh\n".into(), "two\n".into())
    );
}

#[test]
fn paths_outside_the_working_directory_are_rejected() {
    let outer = tempfile::tempdir().unwrap();
    let d = outer.path().join("work");
    fs::create_dir(&d).unwrap();
    fs::write(outer.path().join("secret.txt"), "s\n").unwrap();
    std::os::unix::fs::symlink(outer.path(), d.join("escape")).unwrap();
    let cases = [
        (
            "/etc/passwd",
            "invalid path '/etc/passwd': absolute paths are not allowed; use a path relative to \
             the working directory",
        ),
        (
            "../secret.txt",
            "invalid path '../secret.txt': the path leaves the working directory",
        ),
        (
            "a/../../secret.txt",
            "invalid path 'a/../../secret.txt': the path leaves the working directory",
        ),
        (
            "escape/secret.txt",
            "invalid path 'escape/secret.txt': the path leads outside the working directory \
             through a symlink",
        ),
        (
            "escape/new/deep.txt",
            "invalid path 'escape/new/deep.txt': the path leads outside the working directory \
             through a symlink",
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(
            apply_err(
                &d,
                &format!("*** Begin Patch\n*** Delete File: {path}\n*** End Patch")
            ),
            expected
        );
        assert_eq!(
            apply_err(
                &d,
                &format!("*** Begin Patch\n*** Add File: {path}\n+x\n*** End Patch")
            ),
            expected
        );
    }
    assert_eq!(read(outer.path(), "secret.txt"), "s\n");
    // `..` that stays inside is fine.
    apply_patch_text(
        &d,
        "*** Begin Patch\n*** Add File: a/../inside.txt\n+ok\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(&d, "inside.txt"), "ok\n");
}

#[test]
fn a_write_failure_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.txt"), "a\n").unwrap();
    // A 240-byte name is valid, but the temporary file beside it is too long a name: the write
    // fails after the other files (sorted before it) were staged and `new/` was created.
    let long = "z".repeat(240);
    let msg = apply_err(
        d,
        &format!(
            "*** Begin Patch\n*** Update File: a.txt\n-a\n+A\n*** Add File: new/x.txt\n+x\n\
             *** Add File: {long}\n+y\n*** End Patch"
        ),
    );
    assert!(msg.starts_with("failed to write "), "{msg}");
    assert!(msg.contains(&long), "{msg}");
}

#[test]
fn parse_then_apply_reports_predicted_changes() {
    let dir = tempfile::tempdir().unwrap();
    let patch = parse_patch("*** Begin Patch\n*** Add File: x\n+1\n*** End Patch").unwrap();
    let predicted = patch.changes();
    let report = apply_patch(dir.path(), &patch).unwrap();
    assert_eq!(report.changes, predicted);
    let err = apply_patch(dir.path(), &patch).unwrap_err();
    assert!(matches!(err, PatchError::AlreadyExists { .. }));
}

// ---- property test: patches generated from random edits ----

#[derive(Clone, Debug)]
enum Edit {
    Keep,
    Delete,
    Replace(usize),
    InsertBefore(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => Just(Edit::Keep),
        1 => Just(Edit::Delete),
        1 => (1usize..4).prop_map(Edit::Replace),
        1 => (1usize..3).prop_map(Edit::InsertBefore),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Keep(String),
    Del(String),
    Ins(String),
}

/// Builds a patch (with `context` lines around each change) and the expected result lines.
fn build(lines: &[String], edits: &[Edit], append: usize, context: usize) -> (String, Vec<String>) {
    let mut ops = Vec::new();
    for (i, (line, edit)) in lines.iter().zip(edits).enumerate() {
        match edit {
            Edit::Keep => ops.push(Op::Keep(line.clone())),
            Edit::Delete => ops.push(Op::Del(line.clone())),
            Edit::Replace(n) => {
                ops.push(Op::Del(line.clone()));
                ops.extend((0..*n).map(|j| Op::Ins(format!("replaced {i}.{j}"))));
            }
            Edit::InsertBefore(n) => {
                ops.extend((0..*n).map(|j| Op::Ins(format!("inserted {i}.{j}"))));
                ops.push(Op::Keep(line.clone()));
            }
        }
    }
    ops.extend((0..append).map(|j| Op::Ins(format!("appended {j}"))));
    let expected = ops
        .iter()
        .filter_map(|op| match op {
            Op::Keep(s) | Op::Ins(s) => Some(s.clone()),
            Op::Del(_) => None,
        })
        .collect();
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Keep(_)))
        .map(|(i, _)| i)
        .collect();
    let mut included = vec![false; ops.len()];
    for &i in &changed {
        let lo = i.saturating_sub(context);
        let hi = (i + context).min(ops.len() - 1);
        included[lo..=hi].iter_mut().for_each(|b| *b = true);
    }
    let mut patch = String::from("*** Begin Patch\n*** Update File: f.txt\n");
    let mut in_hunk = false;
    for (op, inc) in ops.iter().zip(&included) {
        if !inc {
            in_hunk = false;
            continue;
        }
        if !in_hunk {
            patch.push_str("@@\n");
            in_hunk = true;
        }
        let (prefix, text) = match op {
            Op::Keep(s) => (' ', s),
            Op::Del(s) => ('-', s),
            Op::Ins(s) => ('+', s),
        };
        patch.push(prefix);
        patch.push_str(text);
        patch.push('\n');
    }
    patch.push_str("*** End Patch\n");
    (patch, expected)
}

fn join(lines: &[String], crlf: bool, final_newline: bool) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut s = lines.join(nl);
    if final_newline {
        s.push_str(nl);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn applying_a_generated_patch_gives_the_edited_text(
        words in prop::collection::vec("[a-z ]{0,12}", 1..40),
        edits in prop::collection::vec(edit(), 40),
        append in 0usize..3,
        context in 1usize..4,
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        // Unique lines, so every hunk has exactly one place to go.
        let lines: Vec<String> =
            words.iter().enumerate().map(|(i, w)| format!("{i}: {w}")).collect();
        let edits = &edits[..lines.len()];
        prop_assume!(append > 0 || edits.iter().any(|e| !matches!(e, Edit::Keep)));
        let (patch, expected) = build(&lines, edits, append, context);
        // A one-line file without a final newline has no line ending to copy; new lines in it
        // get "\n".
        let crlf = crlf && (lines.len() > 1 || final_newline);

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f.txt"), join(&lines, crlf, final_newline)).unwrap();
        let report = apply_patch_text(dir.path(), &patch)
            .map_err(|e| TestCaseError::fail(format!("{e}\npatch:\n{patch}")))?;
        prop_assert_eq!(report.changes.len(), 1);
        let got = fs::read_to_string(dir.path().join("f.txt")).unwrap();
        prop_assert_eq!(got, join(&expected, crlf, final_newline), "patch:\n{}", patch);
    }
}
