//! Applying a [`Patch`]: plan everything in memory, then write with rollback.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::seek::seek;
use super::{ApplyReport, ChunkLine, Hunk, Patch, PatchError, PatchFileChange, UpdateChunk};

/// Applies `patch` to files under `cwd`: all hunks or none (see the module docs for the rules).
///
/// # Errors
/// [`PatchError`] naming the file and what failed; no file is changed when an error is returned,
/// except for [`PatchError::RollbackFailed`].
pub fn apply_patch(cwd: &Path, patch: &Patch) -> Result<ApplyReport, PatchError> {
    let (staging, changes) = plan(cwd, patch)?;
    staging.commit()?;
    Ok(ApplyReport { changes })
}

/// What applying `patch` under `cwd` would change, each file with its diff, without writing
/// anything: what a person is shown before approving the patch.
///
/// # Errors
/// The [`PatchError`] applying it would fail with (short of a failing write).
pub fn preview_patch(cwd: &Path, patch: &Patch) -> Result<Vec<PatchFileChange>, PatchError> {
    plan(cwd, patch).map(|(_, changes)| changes)
}

/// Computes every file's new content in memory, and each hunk's change with its diff.
fn plan(cwd: &Path, patch: &Patch) -> Result<(Staging, Vec<PatchFileChange>), PatchError> {
    let root = cwd.canonicalize().map_err(|source| PatchError::Io {
        action: "open working directory",
        path: cwd.to_path_buf(),
        source,
    })?;
    let mut staging = Staging::default();
    let mut changes = patch.changes();
    for (hunk, change) in patch.hunks.iter().zip(changes.iter_mut()) {
        match hunk {
            Hunk::Add { path, contents } => {
                let target = resolve(&root, path)?;
                let entry = staging.entry(&target)?;
                entry.require_replaceable("add", path)?;
                change.diff = contents.clone();
                entry.current = Some(contents.clone().into_bytes());
            }
            Hunk::Delete { path } => {
                let target = resolve(&root, path)?;
                let entry = staging.entry(&target)?;
                entry.require_file("delete", path)?;
                change.diff = String::from_utf8_lossy(entry.current.as_deref().unwrap_or_default())
                    .into_owned();
                entry.current = None;
            }
            Hunk::Update {
                path,
                move_path,
                chunks,
            } => {
                let target = resolve(&root, path)?;
                let entry = staging.entry(&target)?;
                entry.require_file("update", path)?;
                let old = entry.current.as_deref().unwrap_or_default();
                let new = if chunks.is_empty() {
                    // A plain rename: the bytes move unchanged.
                    old.to_vec()
                } else {
                    let old = std::str::from_utf8(old)
                        .map_err(|_| PatchError::NotUtf8 { path: path.clone() })?;
                    let new = apply_chunks(path, old, chunks)?;
                    change.diff = unified_diff(old, &new);
                    new.into_bytes()
                };
                match move_path {
                    Some(dest_path) => {
                        let dest = resolve(&root, dest_path)?;
                        if dest == target {
                            entry.current = Some(new);
                        } else {
                            entry.current = None;
                            let permissions = entry.permissions().cloned();
                            let dest_entry = staging.entry(&dest)?;
                            dest_entry.require_replaceable("move to", dest_path)?;
                            dest_entry.current = Some(new);
                            dest_entry.permissions = permissions;
                        }
                    }
                    None => entry.current = Some(new),
                }
            }
        }
    }
    Ok((staging, changes))
}

/// A unified diff of `old` to `new` with three lines of context and no file header, as front-ends
/// render an updated file (`@@ -12,7 +12,8 @@` hunks). Diffing is quadratic in the worst case (a
/// large file rewritten throughout); past the deadline the diff is coarser, never slower.
fn unified_diff(old: &str, new: &str) -> String {
    similar::TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .to_string()
}

/// How long computing one file's diff for display may take.
const DIFF_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Resolves a patch path against the (canonical) working directory, refusing anything that
/// leaves it. The result has a canonical parent, so two spellings of one file map to one key.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, PatchError> {
    let invalid = |reason| PatchError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(invalid(
                    "absolute paths are not allowed; use a path relative to the working directory",
                ));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(invalid("the path leaves the working directory"));
                }
            }
            Component::Normal(part) => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(invalid("the path does not name a file"));
    }
    let lexical: PathBuf = parts.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    // Follow symlinks in the directories: the nearest existing ancestor must stay inside.
    let mut existing = lexical.parent().unwrap_or(root).to_path_buf();
    let mut rest = Vec::new();
    if let Some(name) = lexical.file_name() {
        rest.push(name.to_owned());
    }
    loop {
        match existing.canonicalize() {
            Ok(canonical) => {
                if !canonical.starts_with(root) {
                    return Err(invalid(
                        "the path leads outside the working directory through a symlink",
                    ));
                }
                return Ok(rest.iter().rev().fold(canonical, |p, c| p.join(c)));
            }
            Err(_) => {
                let Some(name) = existing.file_name() else {
                    return Err(invalid("the path does not name a file"));
                };
                rest.push(name.to_owned());
                if !existing.pop() {
                    return Err(invalid("the path does not name a file"));
                }
            }
        }
    }
}

/// What was on disk at a path before the patch.
#[derive(Debug)]
enum Original {
    Missing,
    File {
        bytes: Vec<u8>,
        permissions: Permissions,
    },
    /// A directory, symlink, device, …: never touched.
    Other,
}

#[derive(Debug)]
struct Entry {
    original: Original,
    /// Planned content; `None` means absent.
    current: Option<Vec<u8>>,
    /// Planned permissions when they differ from the original's (a file moved here).
    permissions: Option<Permissions>,
}

impl Entry {
    fn require_file(&self, action: &'static str, path: &str) -> Result<(), PatchError> {
        match (&self.original, &self.current) {
            (Original::Other, _) => Err(PatchError::NotAFile {
                action,
                path: path.to_owned(),
            }),
            (_, None) => Err(PatchError::FileNotFound {
                action,
                path: path.to_owned(),
            }),
            (_, Some(_)) => Ok(()),
        }
    }

    /// An Add or a Move may replace a file, never a directory or anything else.
    fn require_replaceable(&self, action: &'static str, path: &str) -> Result<(), PatchError> {
        match self.original {
            Original::Other => Err(PatchError::NotAFile {
                action,
                path: path.to_owned(),
            }),
            Original::Missing | Original::File { .. } => Ok(()),
        }
    }

    /// The permissions the file will have once written, if known.
    fn permissions(&self) -> Option<&Permissions> {
        self.permissions.as_ref().or(match &self.original {
            Original::File { permissions, .. } => Some(permissions),
            Original::Missing | Original::Other => None,
        })
    }

    fn changed(&self) -> bool {
        match (&self.original, &self.current) {
            (Original::Missing, None) | (Original::Other, _) => false,
            (Original::Missing, Some(_)) | (Original::File { .. }, None) => true,
            (Original::File { bytes, permissions }, Some(new)) => {
                bytes != new
                    || self
                        .permissions
                        .as_ref()
                        .is_some_and(|planned| planned != permissions)
            }
        }
    }
}

/// Planned state of every file the patch touches.
#[derive(Debug, Default)]
struct Staging {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Staging {
    fn entry(&mut self, target: &Path) -> Result<&mut Entry, PatchError> {
        if !self.entries.contains_key(target) {
            let original = read_original(target)?;
            let current = match &original {
                Original::File { bytes, .. } => Some(bytes.clone()),
                Original::Missing | Original::Other => None,
            };
            self.entries.insert(
                target.to_path_buf(),
                Entry {
                    original,
                    current,
                    permissions: None,
                },
            );
        }
        self.entries.get_mut(target).ok_or_else(|| PatchError::Io {
            action: "read",
            path: target.to_path_buf(),
            source: io::Error::other("staging entry vanished"),
        })
    }

    /// Writes the planned state: temp files first, then renames and deletes, rolling back on
    /// any failure.
    fn commit(self) -> Result<(), PatchError> {
        let mut created_dirs: Vec<PathBuf> = Vec::new();
        let mut staged: Vec<(PathBuf, &Path, &Original)> = Vec::new();
        let mut deletes: Vec<(&Path, &Original)> = Vec::new();

        for (target, entry) in self.entries.iter().filter(|(_, e)| e.changed()) {
            let Some(content) = &entry.current else {
                deletes.push((target, &entry.original));
                continue;
            };
            let permissions = entry.permissions();
            let written = create_parents(target, &mut created_dirs)
                .and_then(|()| write_temp(target, content, permissions));
            match written {
                Ok(temp) => staged.push((temp, target, &entry.original)),
                Err(err) => {
                    for (temp, _, _) in &staged {
                        let _ = fs::remove_file(temp);
                    }
                    remove_dirs(&created_dirs);
                    return Err(err);
                }
            }
        }

        let mut done: Vec<(&Path, &Original)> = Vec::new();
        let mut failure = None;
        let mut remaining = staged.iter();
        for (temp, target, original) in remaining.by_ref() {
            match fs::rename(temp, target) {
                Ok(()) => done.push((target, original)),
                Err(source) => {
                    let _ = fs::remove_file(temp);
                    failure = Some(PatchError::Io {
                        action: "rename",
                        path: target.to_path_buf(),
                        source,
                    });
                    break;
                }
            }
        }
        if failure.is_none() {
            for (target, original) in &deletes {
                match fs::remove_file(target) {
                    Ok(()) => done.push((target, original)),
                    Err(source) => {
                        failure = Some(PatchError::Io {
                            action: "delete",
                            path: target.to_path_buf(),
                            source,
                        });
                        break;
                    }
                }
            }
        }
        let Some(cause) = failure else {
            return Ok(());
        };
        for (temp, _, _) in remaining {
            let _ = fs::remove_file(temp);
        }
        let unrestored = rollback(&done);
        remove_dirs(&created_dirs);
        if unrestored.is_empty() {
            Err(cause)
        } else {
            Err(PatchError::RollbackFailed {
                cause: Box::new(cause),
                unrestored,
            })
        }
    }
}

fn read_original(target: &Path) -> Result<Original, PatchError> {
    let io_err = |source| PatchError::Io {
        action: "read",
        path: target.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Original::Missing),
        Err(err) => return Err(io_err(err)),
    };
    if !meta.is_file() {
        return Ok(Original::Other);
    }
    let bytes = fs::read(target).map_err(io_err)?;
    Ok(Original::File {
        bytes,
        permissions: meta.permissions(),
    })
}

/// Restores each changed path to its original state, newest change first; returns the paths
/// that could not be restored.
fn rollback(done: &[(&Path, &Original)]) -> Vec<String> {
    let mut unrestored = Vec::new();
    for (target, original) in done.iter().rev() {
        let restored = match original {
            Original::Missing => fs::remove_file(target).map_err(|_| ()),
            Original::File { bytes, permissions } => write_temp(target, bytes, Some(permissions))
                .map_err(|_| ())
                .and_then(|temp| {
                    fs::rename(&temp, target).map_err(|_| {
                        let _ = fs::remove_file(&temp);
                    })
                }),
            Original::Other => Ok(()),
        };
        if restored.is_err() {
            unrestored.push(target.display().to_string());
        }
    }
    unrestored
}

/// Creates the missing parent directories of `target`, recording each one created.
fn create_parents(target: &Path, created: &mut Vec<PathBuf>) -> Result<(), PatchError> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.exists() {
        missing.push(dir.to_path_buf());
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    // Create from the outermost down so each one is recorded only if we made it.
    for dir in missing.into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(PatchError::Io {
                    action: "create directory for",
                    path: target.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn remove_dirs(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}

/// Writes `content` to a new temporary file beside `target` and returns its path.
fn write_temp(
    target: &Path,
    content: &[u8],
    permissions: Option<&Permissions>,
) -> Result<PathBuf, PatchError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| PatchError::Io {
        action: "write",
        path: target.to_path_buf(),
        source,
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = target.with_file_name(format!(
        ".{name}.{}.{}.quest-patch",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(content)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions.clone())?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(source) => {
            let _ = fs::remove_file(&temp);
            Err(io_err(source))
        }
    }
}

/// A line ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eol {
    Lf,
    CrLf,
}

impl Eol {
    fn as_str(self) -> &'static str {
        match self {
            Eol::Lf => "\n",
            Eol::CrLf => "\r\n",
        }
    }
}

/// One line of a file being updated. `ending` is `None` for a last line without a line ending
/// and, in a planned result, for a new line whose ending comes from its neighbours.
#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    text: &'a str,
    ending: Option<Eol>,
}

/// Splits `text` into lines with their own endings.
fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('\n') {
        let piece = &rest[..i];
        lines.push(match piece.strip_suffix('\r') {
            Some(text) => Line {
                text,
                ending: Some(Eol::CrLf),
            },
            None => Line {
                text: piece,
                ending: Some(Eol::Lf),
            },
        });
        rest = &rest[i + 1..];
    }
    if !rest.is_empty() {
        lines.push(Line {
            text: rest,
            ending: None,
        });
    }
    lines
}

/// `lines` without the blank context or removed lines that end it.
fn without_trailing_blanks(lines: &[ChunkLine]) -> &[ChunkLine] {
    let kept = lines.len()
        - lines
            .iter()
            .rev()
            .take_while(|line| {
                matches!(line, ChunkLine::Context(t) | ChunkLine::Remove(t) if t.trim().is_empty())
            })
            .count();
    &lines[..kept]
}

fn old_side(lines: &[ChunkLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| match line {
            ChunkLine::Context(text) | ChunkLine::Remove(text) => Some(text.as_str()),
            ChunkLine::Add(_) => None,
        })
        .collect()
}

/// The lines that replace `matched` (the file lines a chunk's context and removed lines matched):
/// context lines stay exactly as they are in the file; an added line takes the ending of the
/// removed line at the same position in its run of changes (the last one when it has more added
/// than removed lines), or none when its run removes nothing.
fn plan_chunk<'a>(matched: &[Line<'a>], lines: &'a [ChunkLine]) -> Vec<Line<'a>> {
    let mut out = Vec::with_capacity(lines.len());
    let mut file = matched.iter();
    let mut rest = lines;
    while let Some(first) = rest.first() {
        if let ChunkLine::Context(_) = first {
            if let Some(line) = file.next() {
                out.push(*line);
            }
            rest = &rest[1..];
            continue;
        }
        let run_len = rest
            .iter()
            .position(|line| matches!(line, ChunkLine::Context(_)))
            .unwrap_or(rest.len());
        let (run, after) = rest.split_at(run_len);
        let removed: Vec<Option<Eol>> = run
            .iter()
            .filter(|line| matches!(line, ChunkLine::Remove(_)))
            .filter_map(|_| file.next().map(|line| line.ending))
            .collect();
        let added = run.iter().filter_map(|line| match line {
            ChunkLine::Add(text) => Some(text.as_str()),
            ChunkLine::Context(_) | ChunkLine::Remove(_) => None,
        });
        for (nth, text) in added.enumerate() {
            let ending = removed.get(nth).or(removed.last()).copied().flatten();
            out.push(Line { text, ending });
        }
        rest = after;
    }
    out
}

/// Applies the chunks of one Update hunk to `old` and returns the new text.
pub(super) fn apply_chunks(
    path: &str,
    old: &str,
    chunks: &[UpdateChunk],
) -> Result<String, PatchError> {
    let lines = split_lines(old);
    let preferred = lines.iter().find_map(|l| l.ending).unwrap_or(Eol::Lf);
    let texts: Vec<&str> = lines.iter().map(|l| l.text).collect();

    // (start, removed line count, replacement lines)
    let mut replacements: Vec<(usize, usize, Vec<Line<'_>>)> = Vec::new();
    let mut cursor = 0;
    for chunk in chunks {
        if let Some(context) = &chunk.context {
            let found =
                seek(&texts, std::slice::from_ref(context), cursor, false).ok_or_else(|| {
                    PatchError::ContextNotFound {
                        path: path.to_owned(),
                        context: context.clone(),
                    }
                })?;
            cursor = found + 1;
        }
        let mut chunk_lines = &chunk.lines[..];
        let mut pattern = old_side(chunk_lines);
        if pattern.is_empty() {
            let at = if chunk.context.is_some() && !chunk.is_end_of_file {
                cursor
            } else {
                lines.len()
            };
            replacements.push((at, 0, plan_chunk(&[], chunk_lines)));
            continue;
        }
        let mut found = seek(&texts, &pattern, cursor, chunk.is_end_of_file);
        if found.is_none() {
            // Blank lines ending a chunk are often a separator the model added, not file content.
            let trimmed = without_trailing_blanks(chunk_lines);
            if trimmed.len() < chunk_lines.len() {
                chunk_lines = trimmed;
                pattern = old_side(chunk_lines);
                found = if pattern.is_empty() {
                    Some(cursor.min(lines.len()))
                } else {
                    seek(&texts, &pattern, cursor, chunk.is_end_of_file)
                };
            }
        }
        let Some(start) = found else {
            return Err(PatchError::LinesNotFound {
                path: path.to_owned(),
                lines: chunk.old_lines().join("\n"),
            });
        };
        let end = start + pattern.len();
        replacements.push((
            start,
            pattern.len(),
            plan_chunk(&lines[start..end], chunk_lines),
        ));
        cursor = end;
    }

    replacements.sort_by_key(|(start, _, _)| *start);
    let mut result: Vec<Line<'_>> = Vec::with_capacity(lines.len());
    let mut next = 0;
    for (start, removed, inserted) in replacements {
        // Insertions at the end may sort after a later chunk's start; never go backwards.
        let start = start.max(next);
        result.extend_from_slice(&lines[next..start]);
        result.extend(inserted);
        next = (start + removed).min(lines.len()).max(next);
    }
    result.extend_from_slice(&lines[next.min(lines.len())..]);

    // Every line ends with a line ending; one without takes the ending of the line before it (of
    // the line after it at the top of the file).
    let mut text = String::with_capacity(old.len() + 64);
    let mut previous: Option<Eol> = None;
    for (i, line) in result.iter().enumerate() {
        let ending = line
            .ending
            .or(previous)
            .or_else(|| result[i + 1..].iter().find_map(|l| l.ending))
            .unwrap_or(preferred);
        text.push_str(line.text);
        text.push_str(ending.as_str());
        previous = Some(ending);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk from diff lines (` ` context, `-` removed, `+` added).
    fn chunk(body: &[&str]) -> UpdateChunk {
        let lines = body
            .iter()
            .map(|l| match l.split_at(1) {
                (" ", t) => ChunkLine::Context(t.to_owned()),
                ("-", t) => ChunkLine::Remove(t.to_owned()),
                ("+", t) => ChunkLine::Add(t.to_owned()),
                _ => panic!("bad test line {l:?}"),
            })
            .collect();
        UpdateChunk {
            context: None,
            lines,
            is_end_of_file: false,
        }
    }

    #[test]
    fn a_failed_rename_rolls_back_earlier_renames() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("a.txt"), "a\n").unwrap();
        fs::create_dir(root.join("z")).unwrap();
        fs::write(root.join("z/inside"), "").unwrap();
        let permissions = fs::metadata(root.join("a.txt")).unwrap().permissions();
        let mut staging = Staging::default();
        staging.entries.insert(
            root.join("a.txt"),
            Entry {
                original: Original::File {
                    bytes: b"a\n".to_vec(),
                    permissions,
                },
                current: Some(b"A\n".to_vec()),
                permissions: None,
            },
        );
        // Planned as a new file, but a directory appeared there: the rename fails after
        // `a.txt` was already replaced.
        staging.entries.insert(
            root.join("z"),
            Entry {
                original: Original::Missing,
                current: Some(b"z\n".to_vec()),
                permissions: None,
            },
        );
        let err = staging.commit().unwrap_err();
        assert!(err.to_string().starts_with("failed to rename "), "{err}");
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "a\n");
        let mut names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "z"]);
    }

    #[test]
    fn an_updated_file_ends_with_a_newline() {
        let out = apply_chunks("f", "a\nb", &[chunk(&["-b", "+c"])]).unwrap();
        assert_eq!(out, "a\nc\n");
        let out = apply_chunks("f", "a\r\nb", &[chunk(&[" a", "+x"])]).unwrap();
        assert_eq!(out, "a\r\nx\r\nb\r\n");
    }

    #[test]
    fn keeps_crlf() {
        let out = apply_chunks("f", "a\r\nb\r\n", &[chunk(&["-a", "+x", "+y"])]).unwrap();
        assert_eq!(out, "x\r\ny\r\nb\r\n");
    }

    #[test]
    fn mixed_endings_untouched_lines_keep_theirs_new_lines_take_their_neighbours() {
        let text = "a\r\nb\nc\r\nd\n";
        // Replaced lines: the added lines take the endings of the removed ones, by position.
        let out = apply_chunks("f", text, &[chunk(&[" a", "-b", "-c", "+x", "+y", "+z"])]);
        assert_eq!(out.unwrap(), "a\r\nx\ny\r\nz\r\nd\n");
        // Pure insertion: the line before decides; at the top of the file, the line after.
        let out = apply_chunks("f", text, &[chunk(&[" b", "+new"])]).unwrap();
        assert_eq!(out, "a\r\nb\nnew\nc\r\nd\n");
        let out = apply_chunks("f", text, &[chunk(&["+top", " a"])]).unwrap();
        assert_eq!(out, "top\r\na\r\nb\nc\r\nd\n");
        // Appending after a last line without an ending: it gets the ending of the line before.
        let out = apply_chunks("f", "a\r\nb\nc", &[chunk(&[" c", "+d"])]).unwrap();
        assert_eq!(out, "a\r\nb\nc\nd\n");
    }

    #[test]
    fn context_lines_are_left_as_they_are_in_the_file() {
        let out = apply_chunks("f", "  a  \nb\n", &[chunk(&[" a", "-b", "+B"])]).unwrap();
        assert_eq!(out, "  a  \nB\n");
    }

    #[test]
    fn pure_insertion_goes_after_context_header_or_at_end() {
        let mut with_header = chunk(&["+inserted"]);
        with_header.context = Some("fn a() {".into());
        let text = "fn a() {\n}\nfn b() {\n}\n";
        assert_eq!(
            apply_chunks("f", text, &[with_header]).unwrap(),
            "fn a() {\ninserted\n}\nfn b() {\n}\n"
        );
        assert_eq!(
            apply_chunks("f", text, &[chunk(&["+last"])]).unwrap(),
            "fn a() {\n}\nfn b() {\n}\nlast\n"
        );
    }

    #[test]
    fn pure_addition_then_replacement_sorts_by_position() {
        let out = apply_chunks(
            "f",
            "line1\nline2\nline3\n",
            &[
                chunk(&["+after-context", "+second-line"]),
                chunk(&[" line1", "-line2", "-line3", "+line2-replacement"]),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "line1\nline2-replacement\nafter-context\nsecond-line\n"
        );
    }

    #[test]
    fn deleting_every_line_gives_an_empty_file() {
        assert_eq!(
            apply_chunks("f", "a\nb\n", &[chunk(&["-a", "-b"])]).unwrap(),
            ""
        );
    }

    #[test]
    fn trailing_blank_context_is_retried_without_it() {
        let out = apply_chunks("f", "a\nb\n", &[chunk(&["-b", "+c", " ", " "])]).unwrap();
        assert_eq!(out, "a\nc\n");
        // When the blank line is there, it is part of the match.
        let out = apply_chunks("f", "b\nx\nb\n\n", &[chunk(&["-b", "+c", " "])]).unwrap();
        assert_eq!(out, "b\nx\nc\n\n");
    }
}
