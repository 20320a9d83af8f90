//! Word wrapping of styled text and a small Markdown renderer (paragraphs, headings, lists,
//! quotes, fenced code blocks, inline code, bold and italics) for assistant messages.

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

use crate::theme::Theme;

/// Display width of a string.
pub fn width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Wraps styled spans to `width` columns. The first line starts with `first`, the others with
/// `rest` (hanging indent). Words longer than a line are split.
pub fn wrap_spans(
    spans: &[Span<'static>],
    width: usize,
    first: &[Span<'static>],
    rest: &[Span<'static>],
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut current: Vec<Span<'static>> = first.to_vec();
    let mut used: usize = first.iter().map(|s| self::width(&s.content)).sum();
    let rest_width: usize = rest.iter().map(|s| self::width(&s.content)).sum();
    let avail = |prefix: usize| width.saturating_sub(prefix).max(1);
    let mut line_has_text = false;
    let prefix_first: usize = used;
    let mut prefix_now = prefix_first;

    // Pieces: maximal runs of spaces or of non-spaces, each with its style.
    let mut pieces: Vec<(String, Style)> = Vec::new();
    for span in spans {
        let mut buf = String::new();
        let mut in_space: Option<bool> = None;
        for ch in span.content.chars() {
            let space = ch == ' ';
            if in_space.is_some_and(|s| s != space) {
                pieces.push((std::mem::take(&mut buf), span.style));
            }
            in_space = Some(space);
            buf.push(ch);
        }
        if !buf.is_empty() {
            pieces.push((buf, span.style));
        }
    }

    let push_line = |lines: &mut Vec<Line<'static>>, current: &mut Vec<Span<'static>>| {
        // Trailing spaces are not shown.
        loop {
            let len = current.len();
            let Some(last) = current.last_mut() else {
                break;
            };
            let trimmed = last.content.trim_end_matches(' ').to_string();
            if trimmed.is_empty() && len > 1 {
                current.pop();
                continue;
            }
            last.content = trimmed.into();
            break;
        }
        lines.push(Line::from(std::mem::take(current)));
    };

    for (text, style) in pieces {
        let w = self::width(&text);
        let is_space = text.starts_with(' ');
        if is_space {
            if !line_has_text && prefix_now > 0 && used == prefix_now {
                // Leading spaces of a wrapped line are dropped; of the first line kept.
                if !lines.is_empty() {
                    continue;
                }
            }
            if used + w <= prefix_now + avail(prefix_now) {
                current.push(Span::styled(text, style));
                used += w;
            } else {
                push_line(&mut lines, &mut current);
                current = rest.to_vec();
                used = rest_width;
                prefix_now = rest_width;
                line_has_text = false;
            }
            continue;
        }
        if used + w <= prefix_now + avail(prefix_now) {
            current.push(Span::styled(text, style));
            used += w;
            line_has_text = true;
            continue;
        }
        if line_has_text {
            push_line(&mut lines, &mut current);
            current = rest.to_vec();
            used = rest_width;
            prefix_now = rest_width;
            line_has_text = false;
        }
        // Split a word that does not fit a whole line.
        let mut chunk = String::new();
        for ch in text.chars() {
            let cw = ch.width().unwrap_or(0);
            if used + cw > prefix_now + avail(prefix_now) && (line_has_text || !chunk.is_empty()) {
                current.push(Span::styled(std::mem::take(&mut chunk), style));
                push_line(&mut lines, &mut current);
                current = rest.to_vec();
                used = rest_width;
                prefix_now = rest_width;
                line_has_text = false;
            }
            chunk.push(ch);
            used += cw;
        }
        if !chunk.is_empty() {
            current.push(Span::styled(chunk, style));
            line_has_text = true;
        }
    }
    if !current.is_empty() || lines.is_empty() {
        push_line(&mut lines, &mut current);
    }
    lines
}

/// Wraps plain text (which may hold newlines) in one style.
pub fn wrap_text(
    text: &str,
    style: Style,
    width: usize,
    first: &[Span<'static>],
    rest: &[Span<'static>],
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let prefix = if i == 0 { first } else { rest };
        lines.extend(wrap_spans(
            &[Span::styled(raw.to_string(), style)],
            width,
            prefix,
            rest,
        ));
    }
    lines
}

/// Parses inline Markdown (`code`, **bold**, *italic*, _italic_) into spans over `base`.
pub fn inline(text: &str, base: Style, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut buf = String::new();
    let mut bold = false;
    let mut italic = false;
    let chars: Vec<char> = text.chars().collect();
    let style_of = |bold: bool, italic: bool| {
        let mut s = base;
        if bold {
            s = s.add_modifier(Modifier::BOLD);
        }
        if italic {
            s = s.add_modifier(Modifier::ITALIC);
        }
        s
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`'
            && let Some(end) = chars[i + 1..].iter().position(|&x| x == '`')
        {
            if !buf.is_empty() {
                spans.push(Span::styled(
                    std::mem::take(&mut buf),
                    style_of(bold, italic),
                ));
            }
            let code: String = chars[i + 1..i + 1 + end].iter().collect();
            spans.push(Span::styled(code, theme.inline_code));
            i += end + 2;
            continue;
        }
        if c == '*' && chars.get(i + 1) == Some(&'*') {
            let closes = bold || chars[i + 2..].windows(2).any(|w| w == ['*', '*']);
            if closes {
                if !buf.is_empty() {
                    spans.push(Span::styled(
                        std::mem::take(&mut buf),
                        style_of(bold, italic),
                    ));
                }
                bold = !bold;
                i += 2;
                continue;
            }
        }
        if (c == '*' || c == '_')
            && !(c == '_'
                && i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()))
        {
            let opening = !italic
                && chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
                && chars[i + 1..].contains(&c);
            let closing = italic && i > 0 && !chars[i - 1].is_whitespace();
            if opening || closing {
                if !buf.is_empty() {
                    spans.push(Span::styled(
                        std::mem::take(&mut buf),
                        style_of(bold, italic),
                    ));
                }
                italic = !italic;
                i += 1;
                continue;
            }
        }
        buf.push(c);
        i += 1;
    }
    if !buf.is_empty() {
        spans.push(Span::styled(buf, style_of(bold, italic)));
    }
    spans
}

fn list_marker(line: &str) -> Option<(usize, String, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let body = &line[indent..];
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = body.strip_prefix(bullet) {
            return Some((indent, "• ".to_string(), rest));
        }
    }
    let digits = body.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits < 10 {
        let after = &body[digits..];
        if let Some(rest) = after
            .strip_prefix(". ")
            .or_else(|| after.strip_prefix(") "))
        {
            return Some((indent, format!("{}. ", &body[..digits]), rest));
        }
    }
    None
}

/// Renders Markdown into wrapped lines, every line starting with `prefix` (the first with `first`).
pub fn markdown(
    text: &str,
    width: usize,
    theme: &Theme,
    first: &[Span<'static>],
    rest: &[Span<'static>],
) -> Vec<Line<'static>> {
    let mut out = markdown_untrimmed(text, width, theme, first, rest);
    trim_trailing_blank(&mut out);
    out
}

/// Drops trailing blank lines (keeping at least one line).
pub fn trim_trailing_blank(out: &mut Vec<Line<'static>>) {
    while out.len() > 1
        && out
            .last()
            .is_some_and(|l| l.spans.iter().all(|s| s.content.trim().is_empty()))
    {
        out.pop();
    }
}

/// The end of the longest prefix of `text` that ends right after a blank line outside a code
/// block: Markdown before it renders the same whatever follows, so it can be rendered once.
pub fn stable_prefix_end(text: &str) -> Option<usize> {
    let mut in_code = false;
    let mut best = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        let content = line.trim_end_matches('\n');
        if content.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        pos += line.len();
        if !in_code && content.trim().is_empty() && pos > line.len() {
            best = Some(pos);
        }
    }
    best
}

/// [`markdown`] without dropping trailing blank lines.
pub fn markdown_untrimmed(
    text: &str,
    width: usize,
    theme: &Theme,
    first: &[Span<'static>],
    rest: &[Span<'static>],
) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut in_code = false;
    let prefix = |out: &Vec<Line<'static>>| if out.is_empty() { first } else { rest };
    for raw in text.split('\n') {
        let trimmed = raw.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            if in_code {
                let lang = trimmed.trim_start_matches('`').trim();
                if !lang.is_empty() {
                    let mut p = prefix(&out).to_vec();
                    p.push(Span::styled(lang.to_string(), theme.dim));
                    out.push(Line::from(p));
                }
            }
            continue;
        }
        if in_code {
            let mut head = prefix(&out).to_vec();
            head.push(Span::raw("  "));
            let mut tail = rest.to_vec();
            tail.push(Span::raw("  "));
            out.extend(wrap_spans(
                &[Span::styled(raw.replace('\t', "    "), theme.code)],
                width,
                &head,
                &tail,
            ));
            continue;
        }
        if trimmed.is_empty() {
            let p = prefix(&out).to_vec();
            out.push(Line::from(p));
            continue;
        }
        if let Some(level) = trimmed
            .strip_prefix('#')
            .map(|_| trimmed.chars().take_while(|c| *c == '#').count())
            && level <= 6
            && trimmed[level..].starts_with(' ')
        {
            let body = trimmed[level..].trim();
            let style = theme.heading;
            let spans = inline(body, style, theme);
            let p = prefix(&out).to_vec();
            out.extend(wrap_spans(&spans, width, &p, rest));
            continue;
        }
        if trimmed.chars().all(|c| c == '-' || c == '*' || c == '_')
            && trimmed.chars().filter(|c| !c.is_whitespace()).count() >= 3
        {
            let mut p = prefix(&out).to_vec();
            let used: usize = p.iter().map(|s| self::width(&s.content)).sum();
            p.push(Span::styled(
                "─".repeat(width.saturating_sub(used).min(40)),
                theme.dim,
            ));
            out.push(Line::from(p));
            continue;
        }
        if let Some(body) = trimmed.strip_prefix('>') {
            let mut head = prefix(&out).to_vec();
            head.push(Span::styled("▌ ", theme.dim));
            let mut tail = rest.to_vec();
            tail.push(Span::styled("▌ ", theme.dim));
            let spans = inline(body.trim_start(), theme.quote, theme);
            out.extend(wrap_spans(&spans, width, &head, &tail));
            continue;
        }
        if let Some((indent, marker, body)) = list_marker(raw) {
            let depth = indent / 2;
            let pad = "  ".repeat(depth);
            let mut head = prefix(&out).to_vec();
            head.push(Span::raw(pad.clone()));
            head.push(Span::styled(marker.clone(), theme.list_marker));
            let mut tail = rest.to_vec();
            tail.push(Span::raw(format!(
                "{pad}{}",
                " ".repeat(self::width(&marker))
            )));
            let spans = inline(body, Style::default(), theme);
            out.extend(wrap_spans(&spans, width, &head, &tail));
            continue;
        }
        let spans = inline(raw.trim_end(), Style::default(), theme);
        let p = prefix(&out).to_vec();
        out.extend(wrap_spans(&spans, width, &p, rest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'static>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn wraps_words_with_hanging_indent() {
        let lines = wrap_text(
            "the quick brown fox jumps over",
            Style::default(),
            12,
            &[Span::raw("• ")],
            &[Span::raw("  ")],
        );
        assert_eq!(
            plain(&lines),
            ["• the quick", "  brown fox", "  jumps over"]
        );
        let long = wrap_text("abcdefghijkl", Style::default(), 5, &[], &[]);
        assert_eq!(plain(&long), ["abcde", "fghij", "kl"]);
    }

    #[test]
    fn markdown_lists_code_and_inline() {
        let theme = Theme::new(false);
        let md = "# Title\nSome `code` and **bold**.\n\n- one\n  - nested\n1. first\n```rust\nfn main() {}\n```\n";
        let lines = markdown(md, 40, &theme, &[], &[]);
        assert_eq!(
            plain(&lines),
            [
                "Title",
                "Some code and bold.",
                "",
                "• one",
                "  • nested",
                "1. first",
                "rust",
                "  fn main() {}",
            ]
        );
        let spans = inline("a **b** `c` *d*", Style::default(), &theme);
        assert!(spans[1].style.add_modifier.contains(Modifier::BOLD));
        assert!(
            spans
                .last()
                .unwrap()
                .style
                .add_modifier
                .contains(Modifier::ITALIC)
        );
        // Snake case words are not italics.
        let spans = inline("snake_case_name", Style::default(), &theme);
        assert_eq!(spans.len(), 1);
    }
}
