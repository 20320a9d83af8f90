//! The `apply_patch` tool: parse the patch format OpenAI models emit and apply it to files under a
//! working directory, atomically.
//!
//! ```text
//! *** Begin Patch
//! *** Add File: hello.txt
//! +hello
//! *** Update File: src/lib.rs
//! *** Move to: src/main.rs
//! @@ fn main() {
//!      let x = 1;
//! -    println!("{x}");
//! +    println!("x = {x}");
//! *** End of File
//! *** Delete File: old.txt
//! *** End Patch
//! ```
//!
//! Rules this module settles (the same as Codex's `apply_patch` unless stated otherwise; the
//! upstream fixture suite runs against it in `tests/apply_patch_scenarios.rs`):
//! - **Paths** are relative to the working directory. Absolute paths, `..` that climbs out of it
//!   and symlinks that lead out of it are rejected before anything is read.
//! - **Add** writes the file, replacing one that exists, and **Move to** replaces an existing
//!   destination. A directory (or anything but a regular file) is never replaced. **Update** and
//!   **Delete** need an existing regular file. An Update with a Move and no chunks is a plain
//!   rename. A moved file keeps its permissions.
//! - **Blank lines outside a chunk** (before the first `@@`, after `*** End of File`, between file
//!   sections) are skipped. Inside a chunk an empty line is an empty context line.
//! - **Context** is matched exactly, then ignoring trailing whitespace, then ignoring surrounding
//!   whitespace, then also folding typographic dashes, quotes and spaces to ASCII. Chunks are
//!   matched in order, each after the previous one. An `@@ text` header first finds the line
//!   `text`; the chunk is matched after it. `*** End of File` anchors a chunk at the end of the
//!   file. When a chunk ending in blank lines is not found, it is retried without them. A chunk
//!   with no context and no removed lines inserts after its `@@` header line when it has one
//!   (Codex appends it at the end of the file even then), else at the end of the file. Unified-diff range headers (`@@ -1,3 +1,4 @@`) are accepted and
//!   ignored. Context lines are left exactly as they are in the file.
//! - **Line endings**: every line the patch does not touch keeps its own ending (a file may mix
//!   CRLF and LF). An added line takes the ending of the line it replaces, or, when it replaces
//!   none, of the line before it (the line after it at the top of a file). An updated file ends
//!   with a line ending, as with Codex. Added files use LF.
//! - **Atomicity** (Quest's one deliberate difference from Codex, which keeps the hunks applied
//!   before a failing one): every new content is computed in memory and every check is made before
//!   the first write. Files are then written to temporary files beside their targets and renamed
//!   into place; if any write, rename or delete fails, everything already changed is restored from
//!   the originals kept in memory. A patch applies all of its hunks or none.

mod apply;
mod parse;
mod seek;

use std::path::PathBuf;
use std::time::Duration;

pub use quest_protocol::exec_events::PatchFileChange;
use quest_protocol::exec_events::{FileUpdateChange, PatchChangeKind};

pub use apply::{apply_patch, preview_patch};
pub use parse::{declared_changes, parse_patch};

/// A parsed patch: its file operations in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// File operations, in the order they appear.
    pub hunks: Vec<Hunk>,
}

/// One file operation of a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hunk {
    /// `*** Add File: path` followed by `+` lines.
    Add {
        /// Path as written in the patch.
        path: String,
        /// Full content of the new file (each `+` line plus a newline).
        contents: String,
    },
    /// `*** Delete File: path`.
    Delete {
        /// Path as written in the patch.
        path: String,
    },
    /// `*** Update File: path`, optionally `*** Move to: new_path`, then chunks.
    Update {
        /// Path as written in the patch.
        path: String,
        /// Destination of a rename, as written in the patch.
        move_path: Option<String>,
        /// Edits, in file order.
        chunks: Vec<UpdateChunk>,
    },
}

impl Hunk {
    /// The path the hunk operates on, as written.
    pub fn path(&self) -> &str {
        match self {
            Hunk::Add { path, .. } | Hunk::Delete { path } | Hunk::Update { path, .. } => path,
        }
    }
}

/// One `@@` section of an Update hunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateChunk {
    /// Text after `@@` locating the chunk (e.g. `def foo():`), if any.
    pub context: Option<String>,
    /// The chunk's lines in patch order.
    pub lines: Vec<ChunkLine>,
    /// `*** End of File` followed the chunk: it must match at the end of the file.
    pub is_end_of_file: bool,
}

impl UpdateChunk {
    /// Lines that must be present in the file: context and removed lines, in order.
    pub fn old_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                ChunkLine::Context(text) | ChunkLine::Remove(text) => Some(text.as_str()),
                ChunkLine::Add(_) => None,
            })
            .collect()
    }

    /// Lines that replace them: context and added lines, in order.
    pub fn new_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                ChunkLine::Context(text) | ChunkLine::Add(text) => Some(text.as_str()),
                ChunkLine::Remove(_) => None,
            })
            .collect()
    }
}

/// One line of an update chunk, without its one-character prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkLine {
    /// ` text` (or an empty line): must be present, stays as it is.
    Context(String),
    /// `-text`: must be present, is removed.
    Remove(String),
    /// `+text`: is inserted.
    Add(String),
}

impl Patch {
    /// The changes this patch makes, one per hunk, without their diffs (for `file_change` items
    /// of a patch that fails; [`preview_patch`] computes the diffs).
    pub fn changes(&self) -> Vec<PatchFileChange> {
        self.hunks
            .iter()
            .map(|hunk| match hunk {
                Hunk::Add { path, .. } => PatchFileChange {
                    path: path.clone(),
                    kind: PatchChangeKind::Add,
                    move_path: None,
                    diff: String::new(),
                },
                Hunk::Delete { path } => PatchFileChange {
                    path: path.clone(),
                    kind: PatchChangeKind::Delete,
                    move_path: None,
                    diff: String::new(),
                },
                Hunk::Update {
                    path, move_path, ..
                } => PatchFileChange {
                    path: path.clone(),
                    kind: PatchChangeKind::Update,
                    move_path: move_path.clone(),
                    diff: String::new(),
                },
            })
            .collect()
    }
}

/// What [`apply_patch`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// One entry per hunk, in patch order.
    pub changes: Vec<PatchFileChange>,
}

impl ApplyReport {
    /// The success text shown to the model, as Codex prints it: added files, then modified ones
    /// (a moved file under its new path), then deleted ones, each group in patch order, e.g.
    /// `"Success. Updated the following files:\nA hello.txt\nM b.txt\nD c.txt\n"`.
    pub fn summary(&self) -> String {
        let mut text = String::from("Success. Updated the following files:\n");
        for (kind, letter) in [
            (PatchChangeKind::Add, 'A'),
            (PatchChangeKind::Update, 'M'),
            (PatchChangeKind::Delete, 'D'),
        ] {
            for change in self.changes.iter().filter(|c| c.kind == kind) {
                let path = change.move_path.as_deref().unwrap_or(&change.path);
                text.push(letter);
                text.push(' ');
                text.push_str(path);
                text.push('\n');
            }
        }
        text
    }

    /// The changes as exec JSONL `file_change` entries (a moved file under its source path, with
    /// kind `update`).
    pub fn file_update_changes(&self) -> Vec<FileUpdateChange> {
        self.changes.iter().map(FileUpdateChange::from).collect()
    }
}

/// Parses and applies `text` in one step.
///
/// # Errors
/// Any [`PatchError`] of [`parse_patch`] or [`apply_patch`].
pub fn apply_patch_text(cwd: &std::path::Path, text: &str) -> Result<ApplyReport, PatchError> {
    let patch = parse_patch(text)?;
    apply_patch(cwd, &patch)
}

/// The tool output text for the model, in the shape of a command result:
/// `"Exit code: 0\nWall time: 0.0 seconds\nOutput:\nSuccess. ..."` on success, exit code 1 and
/// the error message on failure.
pub fn format_for_model(result: &Result<ApplyReport, PatchError>, wall_time: Duration) -> String {
    let (code, body) = match result {
        Ok(report) => (0, report.summary()),
        Err(err) => (1, format!("{err}\n")),
    };
    format!(
        "Exit code: {code}\nWall time: {:.1} seconds\nOutput:\n{body}",
        wall_time.as_secs_f64()
    )
}

/// Why a patch could not be parsed or applied. When [`apply_patch`] returns any of these, no file
/// was changed (except [`PatchError::RollbackFailed`]). Never retried by the tool itself: the
/// message goes back to the model, which fixes its patch.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// Returned by [`parse_patch`] when the patch as a whole is malformed (missing
    /// `*** Begin Patch` / `*** End Patch`, no operations).
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// Returned by [`parse_patch`] for a malformed line; `line` is 1-based in the text given.
    #[error("invalid patch hunk on line {line}: {message}")]
    InvalidHunk {
        /// 1-based line number in the text passed to [`parse_patch`].
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Returned by [`apply_patch`] for an absolute path, a path leaving the working directory or
    /// an empty path.
    #[error("invalid path '{path}': {reason}")]
    InvalidPath {
        /// Path as written in the patch.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Returned by [`apply_patch`] when an Update or Delete names a file that does not exist.
    #[error("cannot {action} {path}: file does not exist")]
    FileNotFound {
        /// `update` or `delete`.
        action: &'static str,
        /// Path as written in the patch.
        path: String,
    },
    /// Returned by [`apply_patch`] when an Update or Delete names something that is not a regular
    /// file, or an Add or Move would replace one (a directory, a socket, ...).
    #[error("cannot {action} {path}: not a regular file")]
    NotAFile {
        /// `update`, `delete`, `add` or `move to`.
        action: &'static str,
        /// Path as written in the patch.
        path: String,
    },
    /// Returned by [`apply_patch`] when a file to update is not UTF-8 text.
    #[error("cannot update {path}: file is not valid UTF-8 text")]
    NotUtf8 {
        /// Path as written in the patch.
        path: String,
    },
    /// Returned by [`apply_patch`] when an `@@ context` header line is not found.
    #[error("Failed to find context '{context}' in {path}")]
    ContextNotFound {
        /// Path as written in the patch.
        path: String,
        /// The header text.
        context: String,
    },
    /// Returned by [`apply_patch`] when a chunk's context and removed lines are not found.
    #[error("Failed to find expected lines in {path}:\n{lines}")]
    LinesNotFound {
        /// Path as written in the patch.
        path: String,
        /// The lines that did not match, joined with newlines.
        lines: String,
    },
    /// Returned by [`apply_patch`] when reading, writing, renaming or deleting fails; every change
    /// already made was rolled back.
    #[error("failed to {action} {}: {source}", .path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename`, `delete`, `create directory for`).
        action: &'static str,
        /// Absolute path concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Returned by [`apply_patch`] when a write failed and restoring the original files failed
    /// too: the listed paths may be left changed.
    #[error("{cause}; rolling back also failed, these files may be left modified: {}", .unrestored.join(", "))]
    RollbackFailed {
        /// The error that triggered the rollback.
        cause: Box<PatchError>,
        /// Paths (absolute) whose original state could not be restored.
        unrestored: Vec<String>,
    },
}
