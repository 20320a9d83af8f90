//! Shortening of over-long JSON string literals while an event's `data` streams in.
//!
//! A hostile or broken server can send a message, a tool call's arguments or any other string
//! of tens of megabytes in one event. [`StringLimiter`] sits between the SSE line reader and the
//! frame's `data`: it copies the JSON text through unchanged except that a string literal longer
//! than the limit keeps only its first and last part around a notice saying how much was left
//! out. It never holds more than about the limit per string, so memory stays bounded however
//! large the event is, and it cuts only between whole characters and whole escape sequences
//! (a surrogate pair counts as one), so the result is still valid JSON when the input was.
//!
//! The JSON is not validated here: bytes outside string literals are copied as they come, and
//! malformed input yields malformed output (which the event decoder then reports), never a panic.

use std::fmt::Write as _;

/// Where the limiter is inside the JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not inside an escape sequence.
    None,
    /// Just after a backslash.
    Backslash,
    /// Inside `\uXXXX`, with this many hex digits still to come.
    Hex(u8),
}

/// Copies JSON text into `out`, shortening string literals longer than `max_string` bytes, and
/// stops copying once `out` reaches `max_total` bytes (then [`StringLimiter::overflowed`]).
#[derive(Debug)]
pub(crate) struct StringLimiter {
    max_string: usize,
    max_total: usize,
    out: Vec<u8>,
    overflowed: bool,
    in_string: bool,
    escape: Escape,
    /// Code unit of the `\u` escape being read.
    hex: u32,
    /// Bytes of the current literal copied to `out` (its head).
    head_len: usize,
    /// Set once the head is full: further bytes of the literal go to `tail`.
    in_tail: bool,
    /// The last bytes of the literal, starting at a unit boundary.
    tail: Vec<u8>,
    /// Decoded bytes dropped from the front of `tail` so far.
    omitted: u64,
}

impl StringLimiter {
    /// A limiter keeping literals of up to `max_string` bytes whole and at most `max_total`
    /// bytes of output.
    pub(crate) fn new(max_string: usize, max_total: usize) -> Self {
        StringLimiter {
            max_string: max_string.max(16),
            max_total,
            out: Vec::new(),
            overflowed: false,
            in_string: false,
            escape: Escape::None,
            hex: 0,
            head_len: 0,
            in_tail: false,
            tail: Vec::new(),
            omitted: 0,
        }
    }

    /// The text so far (an unterminated literal is closed with its head only), and resets.
    pub(crate) fn take(&mut self) -> (Vec<u8>, bool) {
        let out = std::mem::take(&mut self.out);
        let overflowed = self.overflowed;
        *self = StringLimiter::new(self.max_string, self.max_total);
        (out, overflowed)
    }

    /// Feeds the next bytes of the text.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if !self.in_string {
                match memchr::memchr(b'"', bytes) {
                    None => {
                        self.emit(bytes);
                        return;
                    }
                    Some(quote) => {
                        self.emit(&bytes[..=quote]);
                        self.start_string();
                        bytes = &bytes[quote + 1..];
                    }
                }
                continue;
            }
            if self.escape != Escape::None {
                self.escape_byte(bytes[0]);
                bytes = &bytes[1..];
                continue;
            }
            let special = memchr::memchr2(b'"', b'\\', bytes).unwrap_or(bytes.len());
            self.plain(&bytes[..special]);
            bytes = &bytes[special..];
            match bytes.first() {
                None => {}
                Some(b'"') => {
                    self.end_string();
                    bytes = &bytes[1..];
                }
                Some(_) => {
                    self.string_bytes(b"\\");
                    self.escape = Escape::Backslash;
                    bytes = &bytes[1..];
                }
            }
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        let room = self.max_total.saturating_sub(self.out.len());
        if bytes.len() > room {
            self.out.extend_from_slice(&bytes[..room]);
            self.overflowed = true;
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    fn start_string(&mut self) {
        self.in_string = true;
        self.escape = Escape::None;
        self.head_len = 0;
        self.in_tail = false;
        self.tail.clear();
        self.omitted = 0;
    }

    fn head_limit(&self) -> usize {
        self.max_string / 2
    }

    /// Bytes of the literal that are not part of an escape sequence: whole UTF-8 characters,
    /// except that a chunk may end inside one.
    fn plain(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.in_tail {
            self.push_tail(bytes);
            return;
        }
        let room = self.head_limit().saturating_sub(self.head_len);
        if bytes.len() <= room {
            self.head(bytes);
            return;
        }
        // The head ends at the first character boundary at or after the limit (which may lie
        // in a later chunk when this one ends inside a character).
        let mut cut = room;
        while cut < bytes.len() && is_continuation(bytes[cut]) {
            cut += 1;
        }
        self.head(&bytes[..cut]);
        if cut < bytes.len() {
            self.in_tail = true;
            self.push_tail(&bytes[cut..]);
        }
    }

    /// Bytes of an escape sequence (or its backslash).
    fn string_bytes(&mut self, bytes: &[u8]) {
        if self.in_tail {
            self.push_tail(bytes);
        } else {
            self.head(bytes);
        }
    }

    fn head(&mut self, bytes: &[u8]) {
        self.head_len += bytes.len();
        self.emit(bytes);
    }

    fn escape_byte(&mut self, byte: u8) {
        self.string_bytes(&[byte]);
        match self.escape {
            Escape::None => {}
            Escape::Backslash if byte == b'u' => {
                self.escape = Escape::Hex(4);
                self.hex = 0;
            }
            Escape::Backslash => self.unit_done(false),
            Escape::Hex(left) => {
                self.hex = (self.hex << 4) | u32::from(hex_value(byte));
                if left > 1 {
                    self.escape = Escape::Hex(left - 1);
                } else {
                    let high = (0xD800..0xDC00).contains(&self.hex);
                    self.unit_done(high);
                }
            }
        }
    }

    /// An escape sequence is complete; the head may end after it unless it is the high half of
    /// a surrogate pair.
    fn unit_done(&mut self, high_surrogate: bool) {
        self.escape = Escape::None;
        if !self.in_tail && !high_surrogate && self.head_len >= self.head_limit() {
            self.in_tail = true;
        }
    }

    fn push_tail(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        // Trimming waits until the tail has doubled (so each byte is moved about once) and
        // keeps enough that the unit at the cut is complete.
        let keep = self.max_string.saturating_sub(self.head_len).max(32);
        if self.tail.len() >= keep.saturating_mul(2) {
            self.trim_tail(keep);
        }
    }

    /// Drops whole units from the front of `tail` until at most `keep` bytes (plus the rest of
    /// a unit) remain.
    fn trim_tail(&mut self, keep: usize) {
        let tail = &self.tail;
        let excess = tail.len().saturating_sub(keep);
        let mut pos = 0;
        while pos < excess {
            // Runs of plain characters are skipped whole; escapes are stepped over one by one.
            let escape = memchr::memchr(b'\\', &tail[pos..]).map_or(tail.len(), |i| pos + i);
            if escape >= excess {
                let mut cut = excess;
                while cut < escape && is_continuation(tail[cut]) {
                    cut += 1;
                }
                self.omitted += (cut - pos) as u64;
                pos = cut;
                break;
            }
            self.omitted += (escape - pos) as u64;
            let (raw, decoded) = unit_at(&tail[escape..]);
            pos = escape + raw;
            self.omitted += decoded as u64;
        }
        let pos = pos.min(self.tail.len());
        self.tail.drain(..pos);
    }

    fn end_string(&mut self) {
        self.in_string = false;
        self.escape = Escape::None;
        if self.in_tail {
            let keep = self.max_string.saturating_sub(self.head_len);
            if self.tail.len() > keep {
                self.trim_tail(keep);
            }
            if self.omitted > 0 {
                let notice = omitted_notice(self.omitted);
                self.emit(notice.as_bytes());
            }
            let tail = std::mem::take(&mut self.tail);
            self.emit(&tail);
            self.tail = tail;
            self.tail.clear();
        }
        self.in_tail = false;
        self.emit(b"\"");
    }
}

/// The notice put where a literal's middle was left out, as JSON string content.
pub(crate) fn omitted_notice(omitted: u64) -> String {
    let mut notice = String::from("\\n\\n[");
    let _ = write!(
        notice,
        "{omitted} bytes omitted by Quest from the middle of this text"
    );
    notice.push_str("]\\n\\n");
    notice
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

fn hex_value(byte: u8) -> u8 {
    match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        b'A'..=b'F' => byte - b'A' + 10,
        _ => 0,
    }
}

/// Raw and decoded length of the unit (character or escape sequence) at the start of `bytes`;
/// never 0 raw bytes for non-empty input.
fn unit_at(bytes: &[u8]) -> (usize, usize) {
    let Some(&first) = bytes.first() else {
        return (1, 0);
    };
    if first == b'\\' {
        if bytes.get(1) != Some(&b'u') {
            return (2.min(bytes.len()), 1);
        }
        let unit = |at: usize| -> Option<u32> {
            let hex = bytes.get(at..at + 4)?;
            Some(
                hex.iter()
                    .fold(0u32, |acc, &b| (acc << 4) | u32::from(hex_value(b))),
            )
        };
        let Some(code) = unit(2) else {
            return (bytes.len(), 1);
        };
        if (0xD800..0xDC00).contains(&code)
            && bytes.get(6..8) == Some(b"\\u")
            && unit(8).is_some_and(|low| (0xDC00..0xE000).contains(&low))
        {
            return (12, 4);
        }
        let decoded = match code {
            0..0x80 => 1,
            0x80..0x800 => 2,
            _ => 3,
        };
        return (6, decoded);
    }
    let len = match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    let mut raw = 1;
    while raw < len && bytes.get(raw).is_some_and(|&b| is_continuation(b)) {
        raw += 1;
    }
    (raw, raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(text: &[u8], max_string: usize, chunk: usize) -> (Vec<u8>, bool) {
        let mut limiter = StringLimiter::new(max_string, usize::MAX);
        for piece in text.chunks(chunk.max(1)) {
            limiter.push(piece);
        }
        limiter.take()
    }

    fn text_of(json: &[u8]) -> String {
        let value: serde_json::Value = serde_json::from_slice(json).unwrap();
        value["s"].as_str().unwrap().to_string()
    }

    #[test]
    fn short_strings_and_structure_pass_unchanged() {
        let json = br#"{"type":"x","s":"a \"quoted\" \\ \u00e9 text","n":[1,2.5,null]}"#;
        for chunk in [1, 3, 1000] {
            assert_eq!(limit(json, 64, chunk).0, json.to_vec());
        }
        // Exactly at the limit: whole.
        let exact = format!(r#"{{"s":"{}"}}"#, "x".repeat(64));
        assert_eq!(limit(exact.as_bytes(), 64, 7).0, exact.as_bytes());
    }

    #[test]
    fn long_string_keeps_head_and_tail_around_a_notice() {
        let body: String = (0..10_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let json = format!(r#"{{"s":"{body}","after":"kept"}}"#);
        for chunk in [1, 100, 4096, 1 << 20] {
            let (out, overflowed) = limit(json.as_bytes(), 1000, chunk);
            assert!(!overflowed);
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(value["after"], "kept");
            let text = value["s"].as_str().unwrap();
            let notice = "\n\n[9000 bytes omitted by Quest from the middle of this text]\n\n";
            assert_eq!(
                text,
                format!("{}{notice}{}", &body[..500], &body[body.len() - 500..]),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn cuts_fall_between_characters_and_escapes() {
        // Multi-byte characters, simple escapes, \u escapes and surrogate pairs all around the
        // cut points, fed in every chunk size up to 13.
        let unit = "é€😀\\n\\u00e9\\ud83d\\ude00\\\"x";
        let body = unit.repeat(200);
        let json = format!(r#"{{"s":"{body}"}}"#);
        let original = text_of(json.as_bytes());
        for max in [40, 41, 42, 43, 47, 50, 64, 99] {
            for chunk in 1..14 {
                let (out, _) = limit(json.as_bytes(), max, chunk);
                let text = text_of(&out);
                let (head, rest) = text.split_once("\n\n[").unwrap();
                let (notice, tail) = rest.split_once("]\n\n").unwrap();
                assert!(original.starts_with(head), "max {max} chunk {chunk}");
                assert!(original.ends_with(tail), "max {max} chunk {chunk}");
                let omitted: usize = notice.split(' ').next().unwrap().parse().unwrap();
                assert_eq!(head.len() + omitted + tail.len(), original.len());
            }
        }
    }

    #[test]
    fn output_beyond_the_total_limit_is_dropped() {
        let mut limiter = StringLimiter::new(1000, 100);
        limiter.push(&[b' '; 150]);
        let (out, overflowed) = limiter.take();
        assert_eq!(out.len(), 100);
        assert!(overflowed);
        assert_eq!(limiter.take(), (Vec::new(), false));
    }

    proptest! {
        #[test]
        fn never_panics_and_is_split_independent(
            bytes in prop::collection::vec(prop_oneof![
                Just(b'"'), Just(b'\\'), Just(b'u'), Just(b'd'), Just(b'8'), Just(0xC3), Just(0xA9),
                any::<u8>()
            ], 0..400),
            max in 16usize..64,
            chunk in 1usize..50,
        ) {
            let whole = limit(&bytes, max, usize::MAX);
            let pieces = limit(&bytes, max, chunk);
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn valid_json_stays_valid(text in "[a-zé€😀\\\\\"\n\t]{0,300}", max in 16usize..80, chunk in 1usize..40) {
            let json = serde_json::json!({"s": text}).to_string();
            let (out, _) = limit(json.as_bytes(), max, chunk);
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let shortened = value["s"].as_str().unwrap();
            if json.len() <= max {
                prop_assert_eq!(shortened, text.as_str());
            }
        }
    }
}
