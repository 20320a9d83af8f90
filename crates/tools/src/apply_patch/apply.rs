//! Applying a [`Patch`]: plan everything in memory, then write with rollback.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::seek::seek;
use super::{ApplyReport, Hunk, Patch, PatchError, UpdateChunk};

/// Applies `patch` to files under `cwd`: all hunks or none (see the module docs for the rules).
///
/// # Errors
/// [`PatchError`] naming the file and what failed; no file is changed when an error is returned,
/// except for [`PatchError::RollbackFailed`].
pub fn apply_patch(cwd: &Path, patch: &Patch) -> Result<ApplyReport, PatchError> {
    let root = cwd.canonicalize().map_err(|source| PatchError::Io {
        action: "open working directory",
        path: cwd.to_path_buf(),
        source,
    })?;
    let mut staging = Staging::default();
    for hunk in &patch.hunks {
        match hunk {
            Hunk::Add { path, contents } => {
                let target = resolve(&root, path)?;
                let entry = staging.entry(&target)?;
                if entry.exists() {
                    return Err(PatchError::AlreadyExists {
                        action: "add",
                        path: path.clone(),
                    });
                }
                entry.current = Some(contents.clone().into_bytes());
            }
            Hunk::Delete { path } => {
                let target = resolve(&root, path)?;
                let entry = staging.entry(&target)?;
                entry.require_file("delete", path)?;
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
                let old = std::str::from_utf8(old)
                    .map_err(|_| PatchError::NotUtf8 { path: path.clone() })?;
                let new = apply_chunks(path, old, chunks)?.into_bytes();
                match move_path {
                    Some(dest_path) => {
                        let dest = resolve(&root, dest_path)?;
                        if dest == target {
                            entry.current = Some(new);
                        } else {
                            entry.current = None;
                            let dest_entry = staging.entry(&dest)?;
                            if dest_entry.exists() {
                                return Err(PatchError::AlreadyExists {
                                    action: "move to",
                                    path: dest_path.clone(),
                                });
                            }
                            dest_entry.current = Some(new);
                        }
                    }
                    None => entry.current = Some(new),
                }
            }
        }
    }
    staging.commit()?;
    Ok(ApplyReport {
        changes: patch.changes(),
    })
}

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
}

impl Entry {
    fn exists(&self) -> bool {
        self.current.is_some() || matches!(self.original, Original::Other)
    }

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

    fn changed(&self) -> bool {
        match (&self.original, &self.current) {
            (Original::Missing, None) | (Original::Other, _) => false,
            (Original::Missing, Some(_)) | (Original::File { .. }, None) => true,
            (Original::File { bytes, .. }, Some(new)) => bytes != new,
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
            self.entries
                .insert(target.to_path_buf(), Entry { original, current });
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
            let permissions = match &entry.original {
                Original::File { permissions, .. } => Some(permissions),
                Original::Missing | Original::Other => None,
            };
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

/// Applies the chunks of one Update hunk to `old` and returns the new text.
pub(super) fn apply_chunks(
    path: &str,
    old: &str,
    chunks: &[UpdateChunk],
) -> Result<String, PatchError> {
    let crlf = old
        .find('\n')
        .is_some_and(|i| i > 0 && old.as_bytes()[i - 1] == b'\r');
    let ends_with_newline = old.ends_with('\n');
    let mut lines: Vec<&str> = if old.is_empty() {
        Vec::new()
    } else {
        old.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect()
    };
    if ends_with_newline {
        lines.pop();
    }

    // (start, removed line count, inserted lines)
    let mut replacements: Vec<(usize, usize, &[String])> = Vec::new();
    let mut cursor = 0;
    for chunk in chunks {
        if let Some(context) = &chunk.context {
            let found =
                seek(&lines, std::slice::from_ref(context), cursor, false).ok_or_else(|| {
                    PatchError::ContextNotFound {
                        path: path.to_owned(),
                        context: context.clone(),
                    }
                })?;
            cursor = found + 1;
        }
        if chunk.old_lines.is_empty() {
            let at = if chunk.context.is_some() && !chunk.is_end_of_file {
                cursor
            } else {
                lines.len()
            };
            replacements.push((at, 0, &chunk.new_lines));
            continue;
        }
        let mut old_lines = &chunk.old_lines[..];
        let mut new_lines = &chunk.new_lines[..];
        let mut found = seek(&lines, old_lines, cursor, chunk.is_end_of_file);
        if found.is_none() && old_lines.last().is_some_and(String::is_empty) {
            // A trailing blank line is often a separator the model added, not file content.
            old_lines = &old_lines[..old_lines.len() - 1];
            if new_lines.last().is_some_and(String::is_empty) {
                new_lines = &new_lines[..new_lines.len() - 1];
            }
            found = seek(&lines, old_lines, cursor, chunk.is_end_of_file);
        }
        let Some(start) = found.filter(|_| !old_lines.is_empty()) else {
            return Err(PatchError::LinesNotFound {
                path: path.to_owned(),
                lines: chunk.old_lines.join("\n"),
            });
        };
        replacements.push((start, old_lines.len(), new_lines));
        cursor = start + old_lines.len();
    }

    replacements.sort_by_key(|(start, _, _)| *start);
    let mut result: Vec<&str> = Vec::with_capacity(lines.len());
    let mut next = 0;
    for (start, removed, inserted) in replacements {
        // Insertions at the end may sort after a later chunk's start; never go backwards.
        let start = start.max(next);
        result.extend_from_slice(&lines[next..start]);
        result.extend(inserted.iter().map(String::as_str));
        next = (start + removed).min(lines.len()).max(next);
    }
    result.extend_from_slice(&lines[next.min(lines.len())..]);

    if result.is_empty() {
        return Ok(String::new());
    }
    let newline = if crlf { "\r\n" } else { "\n" };
    let mut text = result.join(newline);
    if ends_with_newline || old.is_empty() {
        text.push_str(newline);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(old: &[&str], new: &[&str]) -> UpdateChunk {
        UpdateChunk {
            context: None,
            old_lines: old.iter().map(|s| (*s).to_owned()).collect(),
            new_lines: new.iter().map(|s| (*s).to_owned()).collect(),
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
            },
        );
        // Planned as a new file, but a directory appeared there: the rename fails after
        // `a.txt` was already replaced.
        staging.entries.insert(
            root.join("z"),
            Entry {
                original: Original::Missing,
                current: Some(b"z\n".to_vec()),
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
    fn keeps_missing_final_newline() {
        let out = apply_chunks("f", "a\nb", &[chunk(&["b"], &["c"])]).unwrap();
        assert_eq!(out, "a\nc");
    }

    #[test]
    fn keeps_crlf() {
        let out = apply_chunks("f", "a\r\nb\r\n", &[chunk(&["a"], &["x", "y"])]).unwrap();
        assert_eq!(out, "x\r\ny\r\nb\r\n");
    }

    #[test]
    fn pure_insertion_goes_after_context_header_or_at_end() {
        let mut with_header = chunk(&[], &["inserted"]);
        with_header.context = Some("fn a() {".into());
        let text = "fn a() {\n}\nfn b() {\n}\n";
        assert_eq!(
            apply_chunks("f", text, &[with_header]).unwrap(),
            "fn a() {\ninserted\n}\nfn b() {\n}\n"
        );
        assert_eq!(
            apply_chunks("f", text, &[chunk(&[], &["last"])]).unwrap(),
            "fn a() {\n}\nfn b() {\n}\nlast\n"
        );
    }

    #[test]
    fn deleting_every_line_gives_an_empty_file() {
        assert_eq!(
            apply_chunks("f", "a\nb\n", &[chunk(&["a", "b"], &[])]).unwrap(),
            ""
        );
    }

    #[test]
    fn trailing_blank_context_is_retried_without_it() {
        let out = apply_chunks("f", "a\nb\n", &[chunk(&["b", ""], &["c", ""])]).unwrap();
        assert_eq!(out, "a\nc\n");
    }
}
