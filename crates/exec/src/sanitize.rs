//! Making untrusted text safe for a terminal: command output and model text must not reach the
//! terminal as control sequences (an OSC 52 clipboard write, a title change, a screen clear, a
//! cursor move that paints over earlier lines). Only Quest's own styling is sent.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
const BEL: char = '\u{07}';

/// Removes every terminal control sequence and control character from `text`, keeping newlines
/// and tabs: `ESC [ … final` (CSI), `ESC ] … BEL|ST` (OSC), `ESC P|X|^|_ … ST` (DCS, SOS, PM,
/// APC), two-character `ESC x` sequences, the 8-bit C1 forms of all of these, and lone C0
/// controls such as `\r`, backspace and bell (a `\r` before `\n` is dropped too, so CRLF
/// becomes LF).
pub fn strip_terminal_escapes(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_c1(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            ESC => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // `ESC (` and friends take one more byte (charset designation).
                Some('(' | ')' | '*' | '+' | '-' | '.' | '/' | '#' | '%' | ' ') => {
                    chars.next();
                }
                Some(_) | None => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() || is_c1(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// Skips the parameters and the final byte of a CSI sequence.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            return;
        }
        // A newline ends a malformed sequence without being swallowed by it.
        if c == '\n' {
            return;
        }
    }
}

/// Skips an OSC/DCS-style string up to BEL, `ESC \` or the 8-bit ST.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | '\u{9c}' => return,
            ESC => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            strip_terminal_escapes("hello\n\tworld"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn hostile_sequences_are_removed() {
        let cases = [
            // OSC 52 clipboard write, BEL- and ST-terminated.
            ("a\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}b", "ab"),
            ("a\u{1b}]52;c;ZWNobw==\u{1b}\\b", "ab"),
            // Window title.
            ("\u{1b}]0;owned\u{7}title", "title"),
            // Clear screen, cursor home, colours.
            ("\u{1b}[2J\u{1b}[H\u{1b}[31mred\u{1b}[0m", "red"),
            // Full reset and charset switch.
            ("\u{1b}cx\u{1b}(0y", "xy"),
            // 8-bit CSI and OSC.
            ("\u{9b}2Jz\u{9d}0;t\u{9c}w", "zw"),
            // Carriage return overwrite, backspaces, bell.
            ("safe\rEVIL\u{8}\u{8}\u{7}\r\n", "safeEVIL\n"),
            // DCS and APC strings.
            ("\u{1b}Pq#0;2;0;0;0\u{1b}\\ok\u{1b}_apc\u{1b}\\", "ok"),
            // Unterminated sequences end the text.
            ("tail\u{1b}]52;c;AAAA", "tail"),
        ];
        for (input, expected) in cases {
            assert_eq!(strip_terminal_escapes(input), expected, "{input:?}");
        }
    }

    #[test]
    fn unicode_text_survives() {
        assert_eq!(
            strip_terminal_escapes("héllo ✓ 日本\u{1b}[1m!"),
            "héllo ✓ 日本!"
        );
    }
}
