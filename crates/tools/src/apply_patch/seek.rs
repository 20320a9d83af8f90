//! Finding a chunk's lines in a file, from strict to lenient comparisons.

/// How two lines are compared, from strictest to most lenient.
#[derive(Clone, Copy, Debug)]
enum Compare {
    Exact,
    TrimEnd,
    Trim,
    Normalised,
}

const PASSES: [Compare; 4] = [
    Compare::Exact,
    Compare::TrimEnd,
    Compare::Trim,
    Compare::Normalised,
];

impl Compare {
    fn eq(self, file_line: &str, patch_line: &str) -> bool {
        match self {
            Compare::Exact => file_line == patch_line,
            Compare::TrimEnd => file_line.trim_end() == patch_line.trim_end(),
            Compare::Trim => file_line.trim() == patch_line.trim(),
            Compare::Normalised => file_line
                .trim()
                .chars()
                .map(fold_punctuation)
                .eq(patch_line.trim().chars().map(fold_punctuation)),
        }
    }
}

/// Maps typographic dashes, quotes and spaces to their ASCII counterparts.
fn fold_punctuation(c: char) -> char {
    match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => '"',
        '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        other => other,
    }
}

/// Index of the first occurrence of `pattern` in `lines` at or after `start`, trying each
/// comparison in turn (all positions with the strict one before any lenient one). With
/// `at_end`, the position that ends the file is tried first.
pub(super) fn seek<S: AsRef<str>>(
    lines: &[&str],
    pattern: &[S],
    start: usize,
    at_end: bool,
) -> Option<usize> {
    if pattern.is_empty() {
        return Some(start.min(lines.len()));
    }
    if pattern.len() > lines.len() {
        return None;
    }
    let last_start = lines.len() - pattern.len();
    let matches_at = |i: usize, cmp: Compare| {
        lines[i..i + pattern.len()]
            .iter()
            .zip(pattern)
            .all(|(l, p)| cmp.eq(l, p.as_ref()))
    };
    if at_end && last_start >= start && PASSES.iter().any(|cmp| matches_at(last_start, *cmp)) {
        return Some(last_start);
    }
    if start > last_start {
        return None;
    }
    PASSES
        .iter()
        .find_map(|cmp| (start..=last_start).find(|i| matches_at(*i, *cmp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_match_wins_over_earlier_lenient_match() {
        let lines = ["foo  ", "bar", "foo", "bar"];
        assert_eq!(seek(&lines, &["foo", "bar"], 0, false), Some(2));
        assert_eq!(seek(&lines, &["foo", "bar"], 3, false), None);
    }

    #[test]
    fn lenient_passes() {
        let lines = ["  let x = 1;  ", "say(\u{201C}hi\u{201D}) \u{2014} ok"];
        assert_eq!(seek(&lines, &["let x = 1;"], 0, false), Some(0));
        assert_eq!(seek(&lines, &["say(\"hi\") - ok"], 0, false), Some(1));
    }

    #[test]
    fn end_of_file_anchor_prefers_last_position() {
        let lines = ["a", "b", "a", "b"];
        assert_eq!(seek(&lines, &["a", "b"], 0, true), Some(2));
        assert_eq!(seek(&lines, &["a", "b"], 0, false), Some(0));
    }
}
