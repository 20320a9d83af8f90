//! Patch text → [`Patch`].

use quest_protocol::exec_events::PatchChangeKind;

use super::{ChunkLine, Hunk, Patch, PatchError, PatchFileChange, UpdateChunk};

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File:";
const DELETE: &str = "*** Delete File:";
const UPDATE: &str = "*** Update File:";
const MOVE_TO: &str = "*** Move to:";
const END_OF_FILE: &str = "*** End of File";

/// Parses a patch. Surrounding whitespace is ignored, and so is a heredoc wrapper such as
/// `apply_patch <<'EOF'` … `EOF`. Line numbers in errors are 1-based in `text`.
///
/// # Errors
/// [`PatchError::InvalidPatch`] when the patch lacks its `*** Begin Patch` / `*** End Patch`
/// lines or has no file operation; [`PatchError::InvalidHunk`] for a malformed line.
pub fn parse_patch(text: &str) -> Result<Patch, PatchError> {
    // (1-based line number, line without its trailing CR)
    let mut lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .collect();
    trim_blank_edges(&mut lines);
    strip_heredoc(&mut lines);

    match lines.first() {
        Some((_, first)) if first.trim() == BEGIN => {}
        _ => {
            return Err(PatchError::InvalidPatch(format!(
                "The first line of the patch must be '{BEGIN}'"
            )));
        }
    }
    match lines.last() {
        Some((_, last)) if lines.len() > 1 && last.trim() == END => {}
        _ => {
            return Err(PatchError::InvalidPatch(format!(
                "The last line of the patch must be '{END}'"
            )));
        }
    }
    let body = &lines[1..lines.len() - 1];
    let mut parser = Parser {
        lines: body,
        pos: 0,
    };
    let mut hunks = Vec::new();
    while let Some((number, line)) = parser.peek() {
        let header = line.trim();
        if header.is_empty() {
            parser.pos += 1;
            continue;
        }
        parser.pos += 1;
        if let Some(path) = header.strip_prefix(ADD) {
            hunks.push(parser.add(number, path.trim())?);
        } else if let Some(path) = header.strip_prefix(DELETE) {
            let path = non_empty_path(number, path.trim())?;
            hunks.push(Hunk::Delete { path });
        } else if let Some(path) = header.strip_prefix(UPDATE) {
            hunks.push(parser.update(number, path.trim())?);
        } else {
            return Err(PatchError::InvalidHunk {
                line: number,
                message: format!(
                    "'{header}' is not a valid hunk header. Valid hunk headers: \
                     '{ADD} {{path}}', '{DELETE} {{path}}', '{UPDATE} {{path}}'"
                ),
            });
        }
    }
    if hunks.is_empty() {
        return Err(PatchError::InvalidPatch(
            "the patch contains no file operations".to_owned(),
        ));
    }
    Ok(Patch { hunks })
}

/// The file operations `text` declares in its `*** Add File:`, `*** Delete File:` and
/// `*** Update File:` headers (with `*** Move to:`), found line by line without parsing the rest:
/// what a patch that does not parse was trying to change.
pub fn declared_changes(text: &str) -> Vec<PatchFileChange> {
    let mut changes: Vec<PatchFileChange> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let (kind, path) = if let Some(path) = line.strip_prefix(ADD) {
            (PatchChangeKind::Add, path)
        } else if let Some(path) = line.strip_prefix(DELETE) {
            (PatchChangeKind::Delete, path)
        } else if let Some(path) = line.strip_prefix(UPDATE) {
            (PatchChangeKind::Update, path)
        } else {
            if let Some(dest) = line.strip_prefix(MOVE_TO)
                && let Some(last) = changes.last_mut()
                && last.kind == PatchChangeKind::Update
                && last.move_path.is_none()
                && !dest.trim().is_empty()
            {
                last.move_path = Some(dest.trim().to_owned());
            }
            continue;
        };
        let path = path.trim();
        if !path.is_empty() {
            changes.push(PatchFileChange {
                path: path.to_owned(),
                kind,
                move_path: None,
                diff: String::new(),
            });
        }
    }
    changes
}

fn trim_blank_edges(lines: &mut Vec<(usize, &str)>) {
    while lines.last().is_some_and(|(_, l)| l.trim().is_empty()) {
        lines.pop();
    }
    let leading = lines
        .iter()
        .take_while(|(_, l)| l.trim().is_empty())
        .count();
    lines.drain(..leading);
}

/// Removes `… <<'EOF'` / `EOF` around the patch when present.
fn strip_heredoc(lines: &mut Vec<(usize, &str)>) {
    let (Some((_, first)), Some((_, last))) = (lines.first(), lines.last()) else {
        return;
    };
    if first.trim() == BEGIN || lines.len() < 2 {
        return;
    }
    let Some((_, marker)) = first.split_once("<<") else {
        return;
    };
    let delimiter = marker
        .trim()
        .trim_start_matches('-')
        .trim()
        .trim_matches(|c| c == '\'' || c == '"');
    if !delimiter.is_empty() && last.trim() == delimiter {
        lines.pop();
        lines.remove(0);
        trim_blank_edges(lines);
    }
}

fn non_empty_path(line: usize, path: &str) -> Result<String, PatchError> {
    if path.is_empty() {
        return Err(PatchError::InvalidHunk {
            line,
            message: "missing file path after the hunk header".to_owned(),
        });
    }
    Ok(path.to_owned())
}

/// Whether an `@@` header is a unified-diff range (`@@ -1,3 +1,4 @@`) rather than a context line.
fn is_range_header(context: &str) -> bool {
    let mut parts = context.split_whitespace();
    let is_range = |part: Option<&str>, sign: char| {
        part.and_then(|p| p.strip_prefix(sign))
            .is_some_and(|p| !p.is_empty() && p.split(',').all(|n| n.parse::<u64>().is_ok()))
    };
    is_range(parts.next(), '-') && is_range(parts.next(), '+') && parts.all(|p| p == "@@")
}

struct Parser<'a> {
    lines: &'a [(usize, &'a str)],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<(usize, &'a str)> {
        self.lines.get(self.pos).copied()
    }

    /// Whether the next line starts another hunk: a file header (possibly indented), or a stray
    /// `*** ` line ending this one. ` *** text` is a context line, not a boundary.
    fn at_hunk_boundary(&self) -> bool {
        self.peek().is_some_and(|(_, l)| {
            let t = l.trim();
            [ADD, DELETE, UPDATE].iter().any(|h| t.starts_with(h))
                || (l.starts_with("*** ") && t != END_OF_FILE)
        })
    }

    fn add(&mut self, header_line: usize, path: &str) -> Result<Hunk, PatchError> {
        let path = non_empty_path(header_line, path)?;
        let mut contents = String::new();
        // Blank lines without '+' count as empty lines when more '+' lines follow, and are
        // dropped at the end of the hunk (they separate it from the next header).
        let mut blanks = 0;
        while let Some((number, line)) = self.peek() {
            if self.at_hunk_boundary() {
                break;
            }
            match line.strip_prefix('+') {
                Some(text) => {
                    for _ in 0..blanks {
                        contents.push('\n');
                    }
                    blanks = 0;
                    contents.push_str(text);
                    contents.push('\n');
                }
                None if line.trim().is_empty() => blanks += 1,
                None => {
                    return Err(PatchError::InvalidHunk {
                        line: number,
                        message: format!(
                            "Unexpected line in Add File hunk for {path}: '{line}'. \
                             Every line of an added file must start with '+'"
                        ),
                    });
                }
            }
            self.pos += 1;
        }
        Ok(Hunk::Add { path, contents })
    }

    fn update(&mut self, header_line: usize, path: &str) -> Result<Hunk, PatchError> {
        let path = non_empty_path(header_line, path)?;
        let mut move_path = None;
        if let Some((number, line)) = self.peek()
            && let Some(dest) = line.trim().strip_prefix(MOVE_TO)
        {
            move_path = Some(non_empty_path(number, dest.trim())?);
            self.pos += 1;
        }

        let mut chunks: Vec<UpdateChunk> = Vec::new();
        // The chunk being filled, the line its header was on, and how many blank lines end it
        // (blank lines at the end of a file section are outside any chunk).
        let mut current: Option<(usize, UpdateChunk)> = None;
        let mut trailing_blanks = 0;
        while let Some((number, line)) = self.peek() {
            if self.at_hunk_boundary() {
                break;
            }
            self.pos += 1;
            if line.trim().is_empty() && current.is_none() {
                // Before the first `@@` or after `*** End of File`: not part of any chunk.
                continue;
            }
            if line.trim() == END_OF_FILE {
                let Some((start, mut chunk)) = current.take() else {
                    return Err(PatchError::InvalidHunk {
                        line: number,
                        message: format!("'{END_OF_FILE}' without a chunk before it in {path}"),
                    });
                };
                chunk.is_end_of_file = true;
                push_chunk(&mut chunks, start, chunk, &path)?;
                trailing_blanks = 0;
                continue;
            }
            if let Some(rest) = line.strip_prefix("@@") {
                if let Some((start, chunk)) = current.take() {
                    push_chunk(&mut chunks, start, chunk, &path)?;
                }
                let context = rest.trim();
                let context =
                    (!context.is_empty() && !is_range_header(context)).then(|| context.to_owned());
                current = Some((
                    number,
                    UpdateChunk {
                        context,
                        ..UpdateChunk::default()
                    },
                ));
                trailing_blanks = 0;
                continue;
            }
            let (_, chunk) = current.get_or_insert_with(|| (number, UpdateChunk::default()));
            if line.trim().is_empty() {
                trailing_blanks += 1;
            } else {
                trailing_blanks = 0;
            }
            if line.is_empty() {
                // An empty context line whose leading space was stripped.
                chunk.lines.push(ChunkLine::Context(String::new()));
                continue;
            }
            let mut chars = line.chars();
            let prefix = chars.next();
            let text = chars.as_str().to_owned();
            match prefix {
                Some(' ') => chunk.lines.push(ChunkLine::Context(text)),
                Some('-') => chunk.lines.push(ChunkLine::Remove(text)),
                Some('+') => chunk.lines.push(ChunkLine::Add(text)),
                _ => {
                    return Err(PatchError::InvalidHunk {
                        line: number,
                        message: format!(
                            "Unexpected line found in update hunk for {path}: '{line}'. Every \
                             line should start with ' ' (context line), '+' (added line), or '-' \
                             (removed line)"
                        ),
                    });
                }
            }
        }
        if let Some((start, mut chunk)) = current.take() {
            // Blank lines between this file section and the next one (or `*** End Patch`)
            // separate sections; they are not context.
            let kept = chunk.lines.len().saturating_sub(trailing_blanks);
            chunk.lines.truncate(kept);
            push_chunk(&mut chunks, start, chunk, &path)?;
        }
        if chunks.is_empty() && move_path.is_none() {
            return Err(PatchError::InvalidHunk {
                line: header_line,
                message: format!("Update file hunk for path '{path}' is empty"),
            });
        }
        Ok(Hunk::Update {
            path,
            move_path,
            chunks,
        })
    }
}

fn push_chunk(
    chunks: &mut Vec<UpdateChunk>,
    start: usize,
    chunk: UpdateChunk,
    path: &str,
) -> Result<(), PatchError> {
    if chunk.lines.is_empty() {
        return Err(PatchError::InvalidHunk {
            line: start,
            message: format!("Update chunk for {path} has no lines"),
        });
    }
    chunks.push(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_changes_of_a_patch_that_does_not_parse() {
        let text = "*** Begin Patch\n*** Update File: a.rs\n*** Move to: b.rs\n@@\n?bad line\n\
                    *** Add File: new.txt\n+x\n  *** Delete File: old.txt\n*** Delete File: \n";
        assert!(parse_patch(text).is_err());
        let changes = declared_changes(text);
        let summary: Vec<(&str, PatchChangeKind, Option<&str>)> = changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind, c.move_path.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a.rs", PatchChangeKind::Update, Some("b.rs")),
                ("new.txt", PatchChangeKind::Add, None),
                ("old.txt", PatchChangeKind::Delete, None),
            ]
        );
    }

    #[test]
    fn range_headers_are_recognised() {
        assert!(is_range_header("-1,3 +1,4 @@"));
        assert!(is_range_header("-12 +12"));
        assert!(!is_range_header("def foo():"));
        assert!(!is_range_header("-x +y"));
    }
}
