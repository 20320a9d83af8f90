//! The composer: multi-line text with a cursor, and the history of submitted messages.

/// Editable text with a cursor (a byte offset on a char boundary) and submission history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Composer {
    text: String,
    cursor: usize,
    history: Vec<String>,
    /// Index into `history` while browsing it.
    browsing: Option<usize>,
    /// What was typed before browsing started.
    draft: String,
}

impl Composer {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor as a byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Replaces the text and puts the cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.len();
        self.browsing = None;
    }

    /// Empties the composer.
    pub fn clear(&mut self) {
        self.set("");
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Inserts a character at the cursor.
    pub fn insert(&mut self, ch: char) {
        self.text.insert(self.cursor, ch);
        self.cursor += ch.len_utf8();
        self.browsing = None;
    }

    /// Inserts pasted text (line endings normalised, tabs kept).
    pub fn paste(&mut self, text: &str) {
        let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
        self.text.insert_str(self.cursor, &normalised);
        self.cursor += normalised.len();
        self.browsing = None;
    }

    fn prev_boundary(&self) -> Option<usize> {
        self.text[..self.cursor]
            .char_indices()
            .last()
            .map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..]
            .chars()
            .next()
            .map(|c| self.cursor + c.len_utf8())
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(prev) = self.prev_boundary() {
            self.text.replace_range(prev..self.cursor, "");
            self.cursor = prev;
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if let Some(next) = self.next_boundary() {
            self.text.replace_range(self.cursor..next, "");
        }
    }

    /// Deletes the word before the cursor.
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the start of the line to the cursor.
    pub fn delete_to_line_start(&mut self) {
        let start = self.line_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Moves left one character.
    pub fn left(&mut self) {
        if let Some(prev) = self.prev_boundary() {
            self.cursor = prev;
        }
    }

    /// Moves right one character.
    pub fn right(&mut self) {
        if let Some(next) = self.next_boundary() {
            self.cursor = next;
        }
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    /// Moves to the start of the line.
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    /// Moves to the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// True when the cursor is on the first line.
    pub fn on_first_line(&self) -> bool {
        !self.text[..self.cursor].contains('\n')
    }

    /// True when the cursor is on the last line.
    pub fn on_last_line(&self) -> bool {
        !self.text[self.cursor..].contains('\n')
    }

    fn column(&self) -> usize {
        self.text[self.line_start()..self.cursor].chars().count()
    }

    fn to_column(&self, line_start: usize, column: usize) -> usize {
        let line = &self.text[line_start..];
        let line = line.split('\n').next().unwrap_or("");
        line.char_indices()
            .nth(column)
            .map_or(line_start + line.len(), |(i, _)| line_start + i)
    }

    /// Up: the previous line, or the previous history entry from the first line.
    pub fn up(&mut self) {
        if !self.on_first_line() {
            let column = self.column();
            let start = self.line_start();
            let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
            self.cursor = self.to_column(prev_start, column);
            return;
        }
        if self.history.is_empty() {
            return;
        }
        // Browse only from an empty composer or while already browsing.
        let index = match self.browsing {
            Some(0) => return,
            Some(i) => i - 1,
            None if self.text.is_empty() => {
                self.draft.clear();
                self.history.len() - 1
            }
            None => return,
        };
        self.text = self.history[index].clone();
        self.cursor = self.text.len();
        self.browsing = Some(index);
    }

    /// Down: the next line, or the next history entry from the last line.
    pub fn down(&mut self) {
        if !self.on_last_line() {
            let column = self.column();
            let next_start = self.line_end() + 1;
            self.cursor = self.to_column(next_start, column);
            return;
        }
        let Some(index) = self.browsing else {
            return;
        };
        if index + 1 < self.history.len() {
            self.text = self.history[index + 1].clone();
            self.browsing = Some(index + 1);
        } else {
            self.text = std::mem::take(&mut self.draft);
            self.browsing = None;
        }
        self.cursor = self.text.len();
    }

    /// Takes the text for submission and records it in the history.
    pub fn submit(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        text
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[String] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_lines_and_history() {
        let mut c = Composer::default();
        for ch in "héllo".chars() {
            c.insert(ch);
        }
        c.backspace();
        c.left();
        c.insert('X');
        assert_eq!(c.text(), "hélXl");
        c.end();
        c.paste("\r\nsecond line");
        assert_eq!(c.text(), "hélXl\nsecond line");
        c.up();
        assert!(c.on_first_line());
        c.down();
        assert!(c.on_last_line());
        assert_eq!(c.submit(), "hélXl\nsecond line");
        c.insert('a');
        c.submit();
        c.up();
        assert_eq!(c.text(), "a");
        c.up();
        assert_eq!(c.text(), "hélXl\nsecond line");
        c.down();
        assert_eq!(c.text(), "a");
        c.down();
        assert_eq!(c.text(), "");
        c.paste("one two  three");
        c.delete_word();
        assert_eq!(c.text(), "one two  ");
    }
}
