//! Styles. With `NO_COLOR` set every style keeps its modifiers (bold, dim, italics) but no colour.

use ratatui::style::{Color, Modifier, Style};

/// The styles the UI uses.
#[derive(Clone, Debug)]
pub struct Theme {
    /// Whether colours are used.
    pub color: bool,
    /// Secondary text.
    pub dim: Style,
    /// Reasoning summaries.
    pub reasoning: Style,
    /// Fenced code.
    pub code: Style,
    /// Inline code.
    pub inline_code: Style,
    /// Headings.
    pub heading: Style,
    /// Block quotes.
    pub quote: Style,
    /// List bullets and numbers.
    pub list_marker: Style,
    /// The user's messages.
    pub user: Style,
    /// Cell bullets.
    pub bullet: Style,
    /// Success marks and added lines.
    pub ok: Style,
    /// Failures and removed lines.
    pub err: Style,
    /// Warnings and notices.
    pub warn: Style,
    /// Accents (selected options, goal indicator).
    pub accent: Style,
    /// Commands in command cells.
    pub command: Style,
}

impl Theme {
    /// A theme with or without colours.
    pub fn new(color: bool) -> Theme {
        let c = |style: Style, fg: Color| if color { style.fg(fg) } else { style };
        let base = Style::default();
        Theme {
            color,
            dim: base.add_modifier(Modifier::DIM),
            reasoning: base.add_modifier(Modifier::DIM | Modifier::ITALIC),
            code: c(base, Color::Cyan),
            inline_code: c(base, Color::Cyan),
            heading: base.add_modifier(Modifier::BOLD),
            quote: c(base, Color::Green),
            list_marker: c(base, Color::Cyan),
            user: c(base, Color::Cyan),
            bullet: c(base, Color::Magenta),
            ok: c(base, Color::Green),
            err: c(base, Color::Red),
            warn: c(base, Color::Yellow),
            accent: c(base.add_modifier(Modifier::BOLD), Color::Cyan),
            command: base.add_modifier(Modifier::BOLD),
        }
    }

    /// `NO_COLOR` (any non-empty value) turns colours off.
    pub fn from_env() -> Theme {
        Theme::new(colors_wanted(std::env::var_os("NO_COLOR").as_deref()))
    }
}

/// Whether colours are used, given the value of `NO_COLOR` (set and non-empty = no colours).
pub fn colors_wanted(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_colours_off_but_keeps_modifiers() {
        assert!(colors_wanted(None));
        assert!(colors_wanted(Some(std::ffi::OsStr::new(""))));
        assert!(!colors_wanted(Some(std::ffi::OsStr::new("1"))));
        let plain = Theme::new(false);
        for style in [
            plain.ok,
            plain.err,
            plain.warn,
            plain.accent,
            plain.code,
            plain.user,
        ] {
            assert_eq!(style.fg, None);
        }
        assert!(plain.accent.add_modifier.contains(Modifier::BOLD));
        assert_eq!(Theme::new(true).err.fg, Some(Color::Red));
    }
}
