//! Real-file tests for `quest_tools::apply_patch`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::fs;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use quest_protocol::exec_events::PatchChangeKind;
use quest_tools::apply_patch::{
    Hunk, PatchError, PatchFileChange, apply_patch, apply_patch_text, format_for_model, parse_patch,
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
        "Success. Updated the following files:\nA hello.txt\nM b.txt\nM sub/dir/new.txt\nD c.txt\n"
    );
    assert_eq!(
        report.changes[3],
        PatchFileChange {
            path: "old.txt".into(),
            kind: PatchChangeKind::Update,
            move_path: Some("sub/dir/new.txt".into()),
            diff: "@@ -1,2 +1,2 @@\n keep\n-change me\n+changed\n".into(),
        }
    );
    // Each file's diff as front-ends show it: an added file's content, a unified diff of an
    // update, a deleted file's content.
    assert_eq!(report.changes[0].diff, "hello\nworld\n");
    assert_eq!(
        report.changes[1].diff,
        "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    );
    assert_eq!(report.changes[2].diff, "bye\n");
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
    assert_eq!(chunks[0].old_lines(), ["a"]);
    assert_eq!(chunks[0].new_lines(), ["b"]);
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
fn an_updated_file_without_trailing_newline_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("n.txt"), "a\nb").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: n.txt\n a\n-b\n+c\n*** End of File\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "n.txt"), "a\nc\n");
    // A plain rename moves the bytes unchanged.
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: n.txt\n*** Move to: m.txt\n*** End Patch",
    )
    .unwrap();
    fs::write(d.join("raw.txt"), "no newline").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: raw.txt\n*** Move to: moved.txt\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "moved.txt"), "no newline");
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
    fs::write(d.join("adir/inside.txt"), "i\n").unwrap();
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
    // Add and Move replace a file, never a directory.
    assert_eq!(
        apply_err(d, "*** Begin Patch\n*** Add File: adir\n+x\n*** End Patch"),
        "cannot add adir: not a regular file"
    );
    assert_eq!(
        apply_err(
            d,
            "*** Begin Patch\n*** Update File: here.txt\n*** Move to: adir\n-x\n+y\n*** End Patch"
        ),
        "cannot move to adir: not a regular file"
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
fn add_and_move_replace_an_existing_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.txt"), "old a\n").unwrap();
    fs::write(d.join("run.sh"), "#!/bin/sh\necho one\n").unwrap();
    fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.join("target.sh"), "old target\n").unwrap();
    fs::set_permissions(d.join("target.sh"), fs::Permissions::from_mode(0o600)).unwrap();
    let report = apply_patch_text(
        d,
        "*** Begin Patch\n*** Add File: a.txt\n+new a\n*** Update File: run.sh\n\
         *** Move to: target.sh\n-echo one\n+echo two\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "a.txt"), "new a\n");
    assert_eq!(read(d, "target.sh"), "#!/bin/sh\necho two\n");
    assert!(!d.join("run.sh").exists());
    // The moved file keeps its own mode, not the mode of the file it replaced.
    let mode = fs::metadata(d.join("target.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        report.summary(),
        "Success. Updated the following files:\nA a.txt\nM target.sh\n"
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
    let patch =
        parse_patch("*** Begin Patch\n*** Add File: x\n+1\n*** Delete File: y\n*** End Patch")
            .unwrap();
    let predicted = patch.changes();
    let err = apply_patch(dir.path(), &patch).unwrap_err();
    assert!(matches!(err, PatchError::FileNotFound { .. }), "{err}");
    assert!(!dir.path().join("x").exists());
    fs::write(dir.path().join("y"), "y\n").unwrap();
    let report = apply_patch(dir.path(), &patch).unwrap();
    // The same files, now with what changed in each.
    let applied: Vec<_> = report
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind, c.diff.as_str()))
        .collect();
    let expected: Vec<_> = predicted
        .iter()
        .zip(["1\n", "y\n"])
        .map(|(c, diff)| (c.path.as_str(), c.kind, diff))
        .collect();
    assert_eq!(applied, expected);
}

#[test]
fn the_model_sees_a_command_result() {
    let dir = tempfile::tempdir().unwrap();
    let ok = apply_patch_text(
        dir.path(),
        "*** Begin Patch\n*** Add File: x\n+1\n*** End Patch",
    );
    assert_eq!(
        format_for_model(&ok, Duration::from_millis(240)),
        "Exit code: 0\nWall time: 0.2 seconds\nOutput:\nSuccess. Updated the following files:\nA x\n"
    );
    let failed = apply_patch_text(
        dir.path(),
        "*** Begin Patch\n*** Delete File: nope\n*** End Patch",
    );
    assert_eq!(
        format_for_model(&failed, Duration::from_millis(1500)),
        "Exit code: 1\nWall time: 1.5 seconds\nOutput:\ncannot delete nope: file does not exist\n"
    );
}

// ---- regressions: blank lines outside a chunk, mixed line endings ----

#[test]
fn a_blank_line_before_the_first_chunk_does_not_move_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The blank line once opened a chunk of one empty context line, which matched the file's
    // blank line and pushed the real chunk past it onto the second `x = 1`.
    fs::write(d.join("f.py"), "x = 1\n\nx = 1\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: f.py\n\n@@\n-x = 1\n+x = 2\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "f.py"), "x = 2\n\nx = 1\n");
    // Also before a first chunk without `@@`, and with whitespace-only lines.
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: f.py\n  \n\n-x = 1\n+x = 3\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "f.py"), "x = 2\n\nx = 3\n");
}

#[test]
fn blank_lines_after_end_of_file_and_between_file_sections_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.txt"), "one\ntwo\n").unwrap();
    fs::write(d.join("b.txt"), "three\nfour\n").unwrap();
    fs::write(d.join("c.txt"), "five\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n\
         *** Update File: a.txt\n@@\n-two\n+TWO\n*** End of File\n\n\n\
         *** Update File: b.txt\n@@\n-three\n+THREE\n\n\n\
         *** Update File: c.txt\n-five\n+FIVE\n\n\
         *** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "a.txt"), "one\nTWO\n");
    assert_eq!(read(d, "b.txt"), "THREE\nfour\n");
    assert_eq!(read(d, "c.txt"), "FIVE\n");
    let patch = parse_patch(
        "*** Begin Patch\n*** Update File: b.txt\n@@\n-x\n+y\n\n \n*** Delete File: c.txt\n*** End Patch",
    )
    .unwrap();
    let Hunk::Update { chunks, .. } = &patch.hunks[0] else {
        panic!("{patch:?}")
    };
    assert_eq!(chunks[0].old_lines(), ["x"]);
}

#[test]
fn a_blank_line_inside_a_chunk_is_context() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("f.txt"), "a\nb\n\nc\nb\nc\n").unwrap();
    // The empty context line picks the `b` followed by a blank line.
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: f.txt\n@@\n-b\n+B\n\n c\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "f.txt"), "a\nB\n\nc\nb\nc\n");
}

#[test]
fn a_file_with_mixed_line_endings_keeps_each_lines_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("m.txt"), "a\r\nb\nc\r\nd\ne\r\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: m.txt\n@@\n b\n-c\n+C\n+C2\n d\n@@\n e\n+f\n*** End Patch",
    )
    .unwrap();
    assert_eq!(
        fs::read(d.join("m.txt")).unwrap(),
        b"a\r\nb\nC\r\nC2\r\nd\ne\r\nf\r\n"
    );
}

#[test]
fn two_patches_in_a_row_to_one_file_keep_both_edits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("f.txt"), "alpha\nbeta\ngamma\n").unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: f.txt\n-alpha\n+ALPHA\n*** End Patch",
    )
    .unwrap();
    apply_patch_text(
        d,
        "*** Begin Patch\n*** Update File: f.txt\n-gamma\n+GAMMA\n*** End Patch",
    )
    .unwrap();
    assert_eq!(read(d, "f.txt"), "ALPHA\nbeta\nGAMMA\n");
}

// ---- property tests: patches generated from random edits ----

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

impl Op {
    /// The same change, undone.
    fn inverse(&self) -> Op {
        match self {
            Op::Keep(s) => Op::Keep(s.clone()),
            Op::Del(s) => Op::Ins(s.clone()),
            Op::Ins(s) => Op::Del(s.clone()),
        }
    }
}

/// The edit script turning `lines` into the edited lines (unique new texts).
fn ops_for(lines: &[String], edits: &[Edit], append: usize) -> Vec<Op> {
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
    ops
}

/// The lines an edit script produces (`new`) or starts from (`!new`).
fn side(ops: &[Op], new: bool) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Keep(s) => Some(s.clone()),
            Op::Ins(s) if new => Some(s.clone()),
            Op::Del(s) if !new => Some(s.clone()),
            Op::Ins(_) | Op::Del(_) => None,
        })
        .collect()
}

/// A patch for `ops`, with `context` unchanged lines around each change.
fn patch_for(ops: &[Op], context: usize) -> String {
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
    patch
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

/// Unique lines (so every hunk has exactly one place to go) and an edit script that changes them.
fn edited_file() -> impl Strategy<Value = (Vec<String>, Vec<Op>)> {
    (
        prop::collection::vec("[a-z ]{0,12}", 1..40),
        prop::collection::vec(edit(), 40),
        0usize..3,
    )
        .prop_map(|(words, edits, append)| {
            let lines: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| format!("{i}: {w}"))
                .collect();
            let ops = ops_for(&lines, &edits[..lines.len()], append);
            (lines, ops)
        })
        .prop_filter("the script changes something", |(_, ops)| {
            ops.iter().any(|op| !matches!(op, Op::Keep(_)))
        })
}

fn apply_in(dir: &Path, patch: &str) -> Result<String, TestCaseError> {
    apply_patch_text(dir, patch)
        .map_err(|e| TestCaseError::fail(format!("{e}\npatch:\n{patch}")))?;
    Ok(fs::read_to_string(dir.join("f.txt")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A generated patch gives the edited text, and the inverse patch gives back the original file
    /// byte for byte. (An updated file always ends with a line ending, so the original has one.)
    #[test]
    fn a_generated_patch_then_its_inverse_restores_the_file(
        (lines, ops) in edited_file(),
        context in 1usize..4,
        crlf in any::<bool>(),
    ) {
        let original = join(&lines, crlf, true);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f.txt"), &original).unwrap();

        let forward = patch_for(&ops, context);
        let edited = apply_in(dir.path(), &forward)?;
        prop_assert_eq!(&edited, &join(&side(&ops, true), crlf, true), "patch:\n{}", forward);

        let inverse_ops: Vec<Op> = ops.iter().map(Op::inverse).collect();
        prop_assert_eq!(&side(&inverse_ops, true), &lines);
        let inverse = patch_for(&inverse_ops, context);
        let restored = apply_in(dir.path(), &inverse)?;
        // A patch that deleted every line leaves an empty file, which has no line ending left to
        // copy: lines added back to it get LF.
        let original = if edited.is_empty() { join(&lines, false, true) } else { original };
        prop_assert_eq!(restored, original, "patch:\n{}\ninverse:\n{}", forward, inverse);
    }

    /// Whatever the file's mix of endings, every line the patch leaves alone keeps its own, the
    /// text is the edited text, and the result ends with a line ending.
    #[test]
    fn untouched_lines_keep_their_own_line_endings(
        (lines, ops) in edited_file(),
        endings in prop::collection::vec(any::<bool>(), 40),
        final_newline in any::<bool>(),
        context in 1usize..4,
    ) {
        let mut original = String::new();
        for (i, (line, crlf)) in lines.iter().zip(&endings).enumerate() {
            original.push_str(line);
            if i + 1 < lines.len() || final_newline {
                original.push_str(if *crlf { "\r\n" } else { "\n" });
            }
        }
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f.txt"), &original).unwrap();
        let patch = patch_for(&ops, context);
        let edited = apply_in(dir.path(), &patch)?;

        // Deleting every line leaves an empty file; anything else ends with a line ending.
        prop_assert!(edited.is_empty() || edited.ends_with('\n'), "{:?}", edited);
        let got: Vec<(&str, bool)> = edited
            .split_inclusive('\n')
            .map(|l| match l.strip_suffix("\r\n") {
                Some(text) => (text, true),
                None => (l.strip_suffix('\n').unwrap_or(l), false),
            })
            .collect();
        let texts: Vec<String> = got.iter().map(|(t, _)| (*t).to_owned()).collect();
        prop_assert_eq!(texts, side(&ops, true), "patch:\n{}", patch);
        let last = lines.len() - 1;
        for (i, (line, crlf)) in lines.iter().zip(&endings).enumerate() {
            if i == last && !final_newline {
                continue;
            }
            if let Some((_, got_crlf)) = got.iter().find(|(t, _)| *t == line.as_str()) {
                prop_assert_eq!(got_crlf, crlf, "line {:?}\npatch:\n{}", line, patch);
            }
        }
    }
}

#[test]
fn preview_shows_the_diffs_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("b.txt"), "one\ntwo\nthree\n").unwrap();
    let before = snapshot(d);
    let patch = quest_tools::apply_patch::parse_patch(
        "*** Begin Patch\n*** Add File: new.txt\n+fresh\n*** Update File: b.txt\n@@\n one\n-two\n+2\n*** End Patch\n",
    )
    .unwrap();
    let changes = quest_tools::apply_patch::preview_patch(d, &patch).unwrap();
    assert_eq!(snapshot(d), before, "a preview writes nothing");
    assert_eq!(changes[0].diff, "fresh\n");
    assert_eq!(changes[1].diff, "@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n");
    // A patch that would not apply is refused as applying it would be.
    let stale = quest_tools::apply_patch::parse_patch(
        "*** Begin Patch\n*** Update File: b.txt\n@@\n-missing line\n+x\n*** End Patch\n",
    )
    .unwrap();
    let err = quest_tools::apply_patch::preview_patch(d, &stale).unwrap_err();
    assert!(err.to_string().contains("b.txt"), "{err}");
}
