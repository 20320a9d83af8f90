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
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme::new(!no_color)
    }
}
