//! Drawing the state: the history, the working line, the bottom pane (composer, slash popup or a
//! dialog), the goal panel and the footer. Reads [`App`]; never changes it.

use quest_protocol::goal::GoalStatus;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::app::{App, Cell, InfoKind, Modal, PatchFile, RunState, reason_text};
use crate::format;
use crate::theme::Theme;
use crate::wrap::{markdown, width, wrap_spans, wrap_text};

/// Lines of command output shown under a command.
const OUTPUT_TAIL: usize = 5;
/// Diff lines shown per file of a patch.
const DIFF_LINES: usize = 12;

/// Remembers the rendered lines of each cell so unchanged cells are not laid out again.
#[derive(Default)]
pub struct Renderer {
    cache: Vec<Option<(Cell, usize, Vec<Line<'static>>)>>,
    stream: Option<StreamCache>,
}

/// The rendered settled part of a growing assistant message: a streamed answer is laid out
/// once per block, not once per frame in full.
struct StreamCache {
    index: usize,
    width: usize,
    prefix: String,
    lines: Vec<Line<'static>>,
}

impl Renderer {
    fn cell_lines(
        &mut self,
        index: usize,
        cell: &Cell,
        width: usize,
        theme: &Theme,
    ) -> &[Line<'static>] {
        if self.cache.len() <= index {
            self.cache.resize_with(index + 1, || None);
        }
        let fresh = match &self.cache[index] {
            Some((cached, w, _)) => *w != width || cached != cell,
            None => true,
        };
        if fresh {
            let lines = match cell {
                Cell::Assistant { text, .. } => self.assistant_lines(index, text, width, theme),
                _ => render_cell(cell, width, theme),
            };
            self.cache[index] = Some((cell.clone(), width, lines));
        }
        match &self.cache[index] {
            Some((_, _, lines)) => lines,
            None => &[],
        }
    }

    /// An assistant message, re-using the layout of its settled blocks from the last frame.
    pub fn assistant_lines(
        &mut self,
        index: usize,
        text: &str,
        width: usize,
        theme: &Theme,
    ) -> Vec<Line<'static>> {
        let bullet = [Span::styled("• ", theme.bullet)];
        let indent = [Span::raw("  ")];
        let mut cache = match self.stream.take() {
            Some(c) if c.index == index && c.width == width && text.starts_with(&c.prefix) => c,
            _ => StreamCache {
                index,
                width,
                prefix: String::new(),
                lines: Vec::new(),
            },
        };
        let start = cache.prefix.len();
        if let Some(end) = crate::wrap::stable_prefix_end(&text[start..]) {
            // The block ends with a newline; what follows it starts a new line.
            let block = &text[start..start + end - 1];
            let first: &[Span<'static>] = if start == 0 { &bullet } else { &indent };
            cache.lines.extend(crate::wrap::markdown_untrimmed(
                block, width, theme, first, &indent,
            ));
            cache.prefix.push_str(&text[start..start + end]);
        }
        let tail = &text[cache.prefix.len()..];
        let mut lines = cache.lines.clone();
        if !tail.is_empty() || lines.is_empty() {
            let first: &[Span<'static>] = if lines.is_empty() { &bullet } else { &indent };
            lines.extend(crate::wrap::markdown_untrimmed(
                tail, width, theme, first, &indent,
            ));
        }
        crate::wrap::trim_trailing_blank(&mut lines);
        self.stream = Some(cache);
        lines
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame<'_>, app: &App, theme: &Theme) {
        let area = frame.area();
        if self.cache.len() > app.cells.len() {
            self.cache.truncate(app.cells.len());
        }
        let width = area.width as usize;
        let bottom = bottom_pane(app, theme, width);
        let bottom_height = (bottom.lines.len() as u16).min(area.height.saturating_sub(2));
        let status = status_line(app, theme, width);
        let panel = if app.show_goal_panel {
            goal_panel(app, theme, width)
        } else {
            Vec::new()
        };
        let panel_height = (panel.len() as u16).min(area.height / 2);
        let [
            history_area,
            panel_area,
            status_area,
            bottom_area,
            footer_area,
        ] = Layout::vertical([
            Constraint::Min(0),
            Constraint::Length(panel_height),
            Constraint::Length(u16::from(status.is_some())),
            Constraint::Length(bottom_height),
            Constraint::Length(1),
        ])
        .areas(area);

        self.draw_history(frame, app, theme, history_area);
        if panel_height > 0 {
            frame.render_widget(Clear, panel_area);
            frame.render_widget(Paragraph::new(panel), panel_area);
        }
        if let Some(status) = status {
            frame.render_widget(Paragraph::new(status), status_area);
        }
        frame.render_widget(Paragraph::new(bottom.lines), bottom_area);
        if let Some((x, y)) = bottom.cursor
            && y < bottom_area.height
        {
            frame.set_cursor_position(Position::new(
                bottom_area.x + x.min(bottom_area.width.saturating_sub(1)),
                bottom_area.y + y,
            ));
        }
        frame.render_widget(Paragraph::new(footer(app, theme, width)), footer_area);
    }

    fn draw_history(&mut self, frame: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
        let height = area.height as usize;
        let width = (area.width as usize).max(1);
        let want = height + app.scroll;
        // Collect from the newest cell backwards until the screen (plus the scroll) is filled.
        let mut chunks: Vec<Vec<Line<'static>>> = Vec::new();
        let mut have = 0;
        for (index, cell) in app.cells.iter().enumerate().rev() {
            let lines = self.cell_lines(index, cell, width, theme).to_vec();
            have += lines.len() + 1;
            chunks.push(lines);
            if have >= want {
                break;
            }
        }
        let mut lines: Vec<Line<'static>> = Vec::with_capacity(have);
        for chunk in chunks.into_iter().rev() {
            lines.extend(chunk);
            lines.push(Line::default());
        }
        if app.cells.is_empty() {
            lines = welcome(app, theme);
        }
        let scroll = app.scroll.min(lines.len().saturating_sub(height));
        let end = lines.len().saturating_sub(scroll);
        let start = end.saturating_sub(height);
        let visible: Vec<Line<'static>> = lines[start..end].to_vec();
        frame.render_widget(Paragraph::new(visible), area);
    }
}

fn welcome(app: &App, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        Span::styled(">_ ", theme.dim),
        Span::styled("Quest", theme.heading),
        Span::styled(format!(" (v{})", env!("CARGO_PKG_VERSION")), theme.dim),
    ])];
    match (&app.thread_id, &app.model) {
        (Some(_), model) => {
            lines.push(Line::from(vec![
                Span::styled("model: ", theme.dim),
                Span::raw(model.clone().unwrap_or_default()),
            ]));
            if let Some(cwd) = &app.cwd {
                lines.push(Line::from(vec![
                    Span::styled("directory: ", theme.dim),
                    Span::raw(cwd.clone()),
                ]));
            }
            lines.push(Line::default());
            lines.push(Line::from(Span::styled(
                "Type a message, or /goal <objective> to set a goal. / for commands.",
                theme.dim,
            )));
        }
        (None, _) => lines.push(Line::from(Span::styled("Connecting…", theme.dim))),
    }
    lines
}

fn render_cell(cell: &Cell, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let indent = [Span::raw("  ")];
    match cell {
        Cell::User { text, .. } => wrap_text(
            text,
            theme.user,
            width,
            &[Span::styled("› ", theme.user.add_modifier(Modifier::BOLD))],
            &indent,
        ),
        Cell::Assistant { text, .. } => markdown(
            text,
            width,
            theme,
            &[Span::styled("• ", theme.bullet)],
            &indent,
        ),
        Cell::Reasoning { text, .. } => wrap_text(
            text.trim(),
            theme.reasoning,
            width,
            &[Span::styled("• ", theme.dim)],
            &indent,
        ),
        Cell::Command {
            command,
            output,
            exit_code,
            duration_ms,
            state,
            ..
        } => command_lines(
            command,
            output,
            *exit_code,
            *duration_ms,
            *state,
            width,
            theme,
        ),
        Cell::Patch { files, state, .. } => patch_lines(files, *state, width, theme),
        Cell::Info { kind, title, lines } => {
            let (mark, style) = match kind {
                InfoKind::Plain => ("• ", theme.heading),
                InfoKind::Notice => ("• ", theme.warn),
                InfoKind::Error => ("■ ", theme.err),
            };
            let mut out = wrap_text(title, style, width, &[Span::styled(mark, style)], &indent);
            for line in lines {
                out.extend(wrap_text(line, Style::default(), width, &indent, &indent));
            }
            out
        }
        Cell::Table {
            title,
            header,
            rows,
        } => table_lines(title, header, rows, width, theme),
    }
}

#[allow(clippy::too_many_arguments)]
fn command_lines(
    command: &str,
    output: &str,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
    state: RunState,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let (verb, mark_style) = match state {
        RunState::Running => ("Running", theme.bullet),
        RunState::Done => ("Ran", theme.ok),
        RunState::Failed => ("Ran", theme.err),
        RunState::Declined => ("Declined", theme.err),
    };
    let mut lines = wrap_spans(
        &[Span::styled(command.to_string(), theme.command)],
        width,
        &[
            Span::styled("• ", mark_style),
            Span::styled(format!("{verb} "), theme.heading),
        ],
        &[Span::raw("    ")],
    );
    let all: Vec<&str> = output.trim_end_matches('\n').lines().collect();
    if !all.is_empty() {
        let skipped = all.len().saturating_sub(OUTPUT_TAIL);
        if skipped > 0 {
            lines.push(Line::from(vec![
                Span::styled("  └ ", theme.dim),
                Span::styled(format!("… {skipped} earlier lines"), theme.dim),
            ]));
        }
        for (i, line) in all[skipped..].iter().enumerate() {
            let lead = if i == 0 && skipped == 0 {
                "  └ "
            } else {
                "    "
            };
            let shown: String = line.chars().take(width.saturating_sub(4).max(1)).collect();
            lines.push(Line::from(vec![
                Span::styled(lead, theme.dim),
                Span::styled(shown, theme.dim),
            ]));
        }
    }
    if state != RunState::Running {
        let mut parts = Vec::new();
        match exit_code {
            Some(0) => parts.push(Span::styled("✓ exit 0", theme.ok)),
            Some(code) => parts.push(Span::styled(format!("✗ exit {code}"), theme.err)),
            None if state == RunState::Declined => {
                parts.push(Span::styled("✗ declined", theme.err))
            }
            None if state == RunState::Failed => parts.push(Span::styled("✗ failed", theme.err)),
            None => {}
        }
        if let Some(ms) = duration_ms {
            parts.push(Span::styled(format!(" • {}", duration(ms)), theme.dim));
        }
        if !parts.is_empty() {
            let mut line = vec![Span::raw("    ")];
            line.extend(parts);
            lines.push(Line::from(line));
        }
    }
    lines
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format::elapsed(ms / 1000)
    }
}

fn patch_lines(
    files: &[PatchFile],
    state: RunState,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let added: usize = files.iter().map(|f| f.added).sum();
    let removed: usize = files.iter().map(|f| f.removed).sum();
    let verb = match state {
        RunState::Running => "Editing",
        RunState::Done => "Edited",
        RunState::Failed => "Failed to edit",
        RunState::Declined => "Declined edit of",
    };
    let mark = match state {
        RunState::Done => theme.ok,
        RunState::Running => theme.bullet,
        _ => theme.err,
    };
    let noun = if files.len() == 1 { "file" } else { "files" };
    let mut lines = vec![Line::from(vec![
        Span::styled("• ", mark),
        Span::styled(format!("{verb} {} {noun} ", files.len()), theme.heading),
        Span::styled("(", theme.dim),
        Span::styled(format!("+{added}"), theme.ok),
        Span::styled(" ", theme.dim),
        Span::styled(format!("−{removed}"), theme.err),
        Span::styled(")", theme.dim),
    ])];
    for file in files {
        let kind = match file.kind.as_str() {
            "add" => " (new)",
            "delete" => " (deleted)",
            _ => "",
        };
        lines.extend(wrap_spans(
            &[
                Span::raw(format!("{}{kind} ", file.path)),
                Span::styled(format!("+{}", file.added), theme.ok),
                Span::raw(" "),
                Span::styled(format!("−{}", file.removed), theme.err),
            ],
            width,
            &[Span::styled("  └ ", theme.dim)],
            &[Span::raw("    ")],
        ));
        let diff: Vec<&str> = file
            .diff
            .lines()
            .filter(|l| !l.starts_with("+++") && !l.starts_with("---") && !l.starts_with("diff "))
            .collect();
        for line in diff.iter().take(DIFF_LINES) {
            let style = if line.starts_with('+') {
                theme.ok
            } else if line.starts_with('-') {
                theme.err
            } else if line.starts_with("@@") {
                theme.dim
            } else {
                Style::default()
            };
            let shown: String = line.chars().take(width.saturating_sub(4).max(1)).collect();
            lines.push(Line::from(vec![
                Span::raw("    "),
                Span::styled(shown, style),
            ]));
        }
        if diff.len() > DIFF_LINES {
            lines.push(Line::from(Span::styled(
                format!("    … {} more lines", diff.len() - DIFF_LINES),
                theme.dim,
            )));
        }
    }
    lines
}

fn table_lines(
    title: &str,
    header: &[String],
    rows: &[Vec<String>],
    width: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| self::width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(self::width(cell));
        }
    }
    let fit = |text: &str, w: usize| -> String {
        let mut out: String = text.chars().take(w).collect();
        let pad = w.saturating_sub(self::width(&out));
        out.push_str(&" ".repeat(pad));
        out
    };
    let row_line = |cells: &[String], style: Style| -> Line<'static> {
        let mut text = String::from("  ");
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            text.push_str(&fit(cell, *w));
            if i + 1 < widths.len() {
                text.push_str("  ");
            }
        }
        let text: String = text.trim_end().chars().take(width).collect();
        Line::from(Span::styled(text, style))
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("• ", theme.bullet),
        Span::styled(title.to_string(), theme.heading),
    ])];
    lines.push(row_line(header, theme.dim));
    for row in rows {
        lines.push(row_line(row, Style::default()));
    }
    lines
}

fn status_line(app: &App, theme: &Theme, width: usize) -> Option<Line<'static>> {
    if let Some(hint) = &app.hint
        && app.turn.is_none()
    {
        return Some(Line::from(Span::styled(format!("  {hint}"), theme.dim)));
    }
    let turn = app.turn.as_ref()?;
    let seconds = (app.now_ms - turn.started_ms).max(0) / 1000;
    let goal_active = app
        .goal
        .as_ref()
        .is_some_and(|g| g.status == GoalStatus::Active);
    let what = if goal_active {
        "Working on the goal"
    } else {
        "Working"
    };
    let esc = match (goal_active, width >= 64) {
        (_, false) => "esc",
        (true, true) => "esc to pause the goal and interrupt",
        (false, true) => "esc to interrupt",
    };
    Some(Line::from(vec![
        Span::styled("• ", theme.bullet),
        Span::styled(what.to_string(), theme.heading),
        Span::styled(
            format!(" ({} • {esc})", format::elapsed(seconds)),
            theme.dim,
        ),
    ]))
}

/// What the bottom pane shows and where the cursor goes (relative to the pane).
struct Bottom {
    lines: Vec<Line<'static>>,
    cursor: Option<(u16, u16)>,
}

fn bottom_pane(app: &App, theme: &Theme, width: usize) -> Bottom {
    match &app.modal {
        Some(modal) => modal_lines(app, modal, theme, width),
        None => composer_lines(app, theme, width),
    }
}

fn rule(width: usize, theme: &Theme) -> Line<'static> {
    Line::from(Span::styled("─".repeat(width), theme.dim))
}

/// Lays out editable text: wrapped lines and the cursor's (column, row).
fn layout_text(text: &str, cursor: usize, width: usize) -> (Vec<String>, (usize, usize)) {
    let width = width.max(1);
    let mut rows: Vec<String> = vec![String::new()];
    let mut col = 0;
    let mut at = (0, 0);
    for (i, ch) in text.char_indices() {
        if i == cursor {
            at = (col, rows.len() - 1);
        }
        if ch == '\n' {
            rows.push(String::new());
            col = 0;
            continue;
        }
        let w = unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
        if col + w > width {
            rows.push(String::new());
            col = 0;
        }
        if let Some(last) = rows.last_mut() {
            last.push(ch);
        }
        col += w;
    }
    if cursor >= text.len() {
        if col >= width {
            rows.push(String::new());
            col = 0;
        }
        at = (col, rows.len() - 1);
    }
    (rows, at)
}

fn composer_lines(app: &App, theme: &Theme, width: usize) -> Bottom {
    let mut lines = Vec::new();
    let popup = app.popup_matches();
    if !popup.is_empty() {
        let selected = app.popup_selected.min(popup.len() - 1);
        let name_width = popup.iter().map(|c| c.name.len() + 1).max().unwrap_or(0);
        for (i, cmd) in popup.iter().enumerate() {
            let style = if i == selected {
                theme.accent
            } else {
                Style::default()
            };
            let text = format!("  {:<name_width$}  ", format!("/{}", cmd.name));
            let mut line = vec![Span::styled(text, style)];
            let room = width.saturating_sub(name_width + 4);
            line.push(Span::styled(
                cmd.description.chars().take(room).collect::<String>(),
                theme.dim,
            ));
            lines.push(Line::from(line));
        }
    }
    lines.push(rule(width, theme));
    let inner = width.saturating_sub(2).max(1);
    let text = app.composer.text();
    let top = lines.len();
    let cursor = if text.is_empty() {
        let placeholder = if app.disconnected {
            "Disconnected — /quit to exit"
        } else {
            "Ask Quest to do anything, or /goal <objective>"
        };
        lines.push(Line::from(vec![
            Span::styled("› ", theme.accent),
            Span::styled(placeholder.to_string(), theme.dim),
        ]));
        Some((2, top as u16))
    } else {
        let (rows, (col, row)) = layout_text(text, app.composer.cursor(), inner);
        // Long drafts show the part around the cursor (at most 8 rows).
        let max_rows = 8;
        let first = row
            .saturating_sub(max_rows - 1)
            .min(rows.len().saturating_sub(1));
        for (i, r) in rows.iter().enumerate().skip(first).take(max_rows) {
            let lead = if i == 0 { "› " } else { "  " };
            lines.push(Line::from(vec![
                Span::styled(lead, theme.accent),
                Span::raw(r.clone()),
            ]));
        }
        Some(((col + 2) as u16, (top + row - first) as u16))
    };
    lines.push(rule(width, theme));
    Bottom { lines, cursor }
}

fn options_lines(options: &[&str], selected: usize, theme: &Theme) -> Vec<Line<'static>> {
    options
        .iter()
        .enumerate()
        .map(|(i, text)| {
            if i == selected {
                Line::from(Span::styled(format!("› {}. {text}", i + 1), theme.accent))
            } else {
                Line::from(Span::raw(format!("  {}. {text}", i + 1)))
            }
        })
        .collect()
}

fn modal_lines(app: &App, modal: &Modal, theme: &Theme, width: usize) -> Bottom {
    let indent = [Span::raw("  ")];
    let mut lines = vec![rule(width, theme)];
    let mut cursor = None;
    let title = |text: &str| Line::from(Span::styled(text.to_string(), theme.heading));
    match modal {
        Modal::ReplaceGoal {
            objective,
            selected,
        } => {
            lines.push(title("Replace goal?"));
            if let Some(goal) = &app.goal {
                lines.extend(wrap_text(
                    &format!(
                        "Current ({}): {}",
                        format::status_label(goal.status),
                        goal.objective
                    ),
                    theme.dim,
                    width,
                    &indent,
                    &indent,
                ));
            }
            lines.extend(wrap_text(
                &format!("New: {objective}"),
                Style::default(),
                width,
                &indent,
                &indent,
            ));
            lines.push(Line::default());
            lines.extend(options_lines(&modal.options(), *selected, theme));
        }
        Modal::ResumeGoal { selected } => {
            let (status, reason, objective) = match &app.goal {
                Some(goal) => (
                    format::status_label(goal.status),
                    goal.last_transition.as_ref().map(|t| t.reason),
                    goal.objective.clone(),
                ),
                None => ("paused", None, String::new()),
            };
            lines.push(title(&format!("Resume {status} goal?")));
            lines.extend(wrap_text(
                &format!("Goal: {objective}"),
                Style::default(),
                width,
                &indent,
                &indent,
            ));
            if let Some(reason) = reason {
                lines.extend(wrap_text(
                    &format!("Stopped: {}", reason_text(reason)),
                    theme.dim,
                    width,
                    &indent,
                    &indent,
                ));
            }
            if let Some(goal) = &app.goal
                && goal.status == GoalStatus::UsageLimited
                && let Some(at) = goal.usage_limit_resets_at
            {
                lines.push(Line::from(Span::styled(
                    format!(
                        "  Usage limit resets at {}",
                        format::clock(at, app.options.utc_offset_seconds)
                    ),
                    theme.dim,
                )));
            }
            lines.push(Line::default());
            let leave = format!("Leave {status}");
            let options = ["Resume goal", leave.as_str()];
            lines.extend(options_lines(&options, *selected, theme));
        }
        Modal::EditGoal { editor } => {
            lines.push(title("Edit goal"));
            lines.push(Line::from(Span::styled(
                "  Type a goal objective and press Enter (Esc to cancel)",
                theme.dim,
            )));
            let top = lines.len();
            let (rows, (col, row)) = layout_text(
                editor.text(),
                editor.cursor(),
                width.saturating_sub(2).max(1),
            );
            let first = row.saturating_sub(5);
            for (i, r) in rows.iter().enumerate().skip(first).take(6) {
                let lead = if i == 0 { "› " } else { "  " };
                lines.push(Line::from(vec![
                    Span::styled(lead, theme.accent),
                    Span::raw(r.clone()),
                ]));
            }
            cursor = Some(((col + 2) as u16, (top + row - first) as u16));
        }
        Modal::Approval { approval, selected } => {
            if let Some(server) = &approval.mcp_server {
                lines.push(title(&format!("Allow this {server} tool call?")));
            } else if approval.patch {
                lines.push(title("Apply these changes?"));
                for file in &approval.files {
                    lines.extend(wrap_spans(
                        &[
                            Span::raw(format!("{} ", file.path)),
                            Span::styled(format!("+{}", file.added), theme.ok),
                            Span::raw(" "),
                            Span::styled(format!("−{}", file.removed), theme.err),
                        ],
                        width,
                        &indent,
                        &indent,
                    ));
                }
            } else {
                lines.push(title("Run this command?"));
                lines.extend(wrap_spans(
                    &[Span::styled(
                        approval.command.clone().unwrap_or_default(),
                        theme.command,
                    )],
                    width,
                    &[Span::styled("  $ ", theme.dim)],
                    &[Span::raw("    ")],
                ));
                if let Some(cwd) = &approval.cwd {
                    lines.extend(wrap_text(
                        &format!("in {cwd}"),
                        theme.dim,
                        width,
                        &indent,
                        &indent,
                    ));
                }
            }
            if let Some(reason) = &approval.reason {
                lines.extend(wrap_text(
                    &format!("Reason: {reason}"),
                    Style::default(),
                    width,
                    &indent,
                    &indent,
                ));
            }
            lines.push(Line::default());
            lines.extend(options_lines(&modal.options(), *selected, theme));
        }
        Modal::ThreadPicker { threads, selected } => {
            lines.push(title("Resume a thread"));
            let start = selected.saturating_sub(7);
            for (i, thread) in threads.iter().enumerate().skip(start).take(8) {
                let when = date_time(thread.updated_at, app.options.utc_offset_seconds);
                let preview = if thread.preview.is_empty() {
                    "(no messages)".to_string()
                } else {
                    crate::app::one_line(&thread.preview, width.saturating_sub(22).max(8))
                };
                let marker = if i == *selected { "› " } else { "  " };
                let style = if i == *selected {
                    theme.accent
                } else {
                    Style::default()
                };
                lines.push(Line::from(vec![
                    Span::styled(marker.to_string(), style),
                    Span::styled(format!("{when}  "), theme.dim),
                    Span::styled(preview, style),
                ]));
            }
            lines.push(Line::from(Span::styled(
                "  ↑/↓ choose • Enter resume • Esc new thread",
                theme.dim,
            )));
        }
    }
    lines.push(rule(width, theme));
    Bottom { lines, cursor }
}

fn date_time(unix_seconds: i64, offset: i32) -> String {
    chrono::DateTime::from_timestamp(unix_seconds + i64::from(offset), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn bar(used: i64, budget: i64, cells: usize) -> String {
    let ratio = if budget > 0 {
        (used as f64 / budget as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (ratio * cells as f64).round() as usize;
    format!(
        "{}{} {:>3}%",
        "█".repeat(filled),
        "░".repeat(cells - filled),
        (ratio * 100.0).round() as i64
    )
}

fn goal_panel(app: &App, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        Span::styled("── Goal ", theme.heading),
        Span::styled("─".repeat(width.saturating_sub(8).min(200)), theme.dim),
    ])];
    let indent = [Span::raw("  ")];
    let Some(goal) = &app.goal else {
        lines.push(Line::from(Span::styled(
            "  No goal is currently set. /goal <objective> sets one.",
            theme.dim,
        )));
        return lines;
    };
    lines.extend(
        wrap_text(&goal.objective, Style::default(), width, &indent, &indent)
            .into_iter()
            .take(3),
    );
    lines.push(Line::from(vec![
        Span::styled("  Status: ", theme.dim),
        Span::styled(
            format::goal_indicator(goal, app.options.utc_offset_seconds),
            indicator_style(goal.status, theme),
        ),
    ]));
    let cells = width.saturating_sub(40).clamp(5, 30);
    let label = |name: &str| Span::styled(format!("  {name:<7}"), theme.dim);
    match goal.token_budget {
        Some(budget) => lines.push(Line::from(vec![
            label("tokens"),
            Span::raw(format!(
                "{} {} / {}",
                bar(goal.tokens_used, budget, cells),
                format::tokens(goal.tokens_used),
                format::tokens(budget)
            )),
        ])),
        None => lines.push(Line::from(vec![
            label("tokens"),
            Span::raw(format!("{} (no budget)", format::tokens(goal.tokens_used))),
        ])),
    }
    match goal.time_budget_seconds {
        Some(budget) => lines.push(Line::from(vec![
            label("time"),
            Span::raw(format!(
                "{} {} / {}",
                bar(goal.time_used_seconds, budget, cells),
                format::elapsed(goal.time_used_seconds),
                format::elapsed(budget)
            )),
        ])),
        None => lines.push(Line::from(vec![
            label("time"),
            Span::raw(format!(
                "{} (no budget)",
                format::elapsed(goal.time_used_seconds)
            )),
        ])),
    }
    if let Some(budget) = goal.turn_budget {
        lines.push(Line::from(vec![
            label("turns"),
            Span::raw(format!(
                "{} {} / {budget}",
                bar(goal.turns_used, budget, cells),
                goal.turns_used
            )),
        ]));
    }
    if !app.goal_log.is_empty() {
        lines.push(Line::from(Span::styled("  Last transitions:", theme.dim)));
        let start = app.goal_log.len().saturating_sub(4);
        for event in &app.goal_log[start..] {
            let s = |k: &str| {
                event
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_string()
            };
            let at = event
                .get("atMs")
                .and_then(|v| v.as_i64())
                .unwrap_or_default()
                / 1000;
            let text = format!(
                "  {} {:<6} {} → {} ({})",
                format::clock(at, app.options.utc_offset_seconds),
                s("actor"),
                s("fromStatus"),
                s("toStatus"),
                s("reason")
            );
            lines.push(Line::from(Span::raw(
                text.chars().take(width).collect::<String>(),
            )));
        }
    }
    lines.push(Line::from(Span::styled(
        "  Ctrl-G or Esc closes this panel",
        theme.dim,
    )));
    lines
}

fn indicator_style(status: GoalStatus, theme: &Theme) -> Style {
    match status {
        GoalStatus::Active => theme.accent,
        GoalStatus::Paused => theme.warn,
        GoalStatus::Complete => theme.ok,
        GoalStatus::Blocked | GoalStatus::UsageLimited | GoalStatus::BudgetLimited => theme.err,
    }
}

fn footer(app: &App, theme: &Theme, width: usize) -> Line<'static> {
    let mut left = vec![app.model.clone().unwrap_or_else(|| "…".to_string())];
    if app.tokens_total > 0 {
        left.push(format!("{} tokens", format::tokens(app.tokens_total)));
    }
    if let Some(window) = app.context_window
        && window > 0
    {
        let left_pct = 100 - (app.context_used * 100 / window).clamp(0, 100);
        left.push(format!("{left_pct}% context left"));
    }
    let left = format!(" {}", left.join(" · "));
    let right = app
        .goal
        .as_ref()
        .map(|g| format::goal_indicator(g, app.options.utc_offset_seconds));
    let right_width = right.as_deref().map_or(0, |r| width_of(r) + 1);
    let room = width.saturating_sub(right_width);
    let left: String = if width_of(&left) > room {
        left.chars().take(room).collect()
    } else {
        left
    };
    let pad = width.saturating_sub(width_of(&left) + right_width);
    let mut spans = vec![Span::styled(left, theme.dim), Span::raw(" ".repeat(pad))];
    if let (Some(right), Some(goal)) = (right, &app.goal) {
        let shown: String = right.chars().take(width.saturating_sub(1)).collect();
        spans.push(Span::styled(shown, indicator_style(goal.status, theme)));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

fn width_of(text: &str) -> usize {
    width(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_markdown_renders_as_the_whole_text_does() {
        let theme = Theme::new(true);
        let text = "# Plan\n\nFirst **step** with `code`.\n\n\n- item one\n- item two that wraps around the narrow width\n  - nested\n\n```rust\nfn main() {\n\n    println!(\"hi\");\n}\n```\n\n> quoted\n\n1. one\n2. two\n\ntrailing paragraph";
        for width in [20, 40, 80] {
            for step in [1, 3, 7, 50] {
                let mut renderer = Renderer::default();
                let mut end = 0;
                while end < text.len() {
                    end = (end + step).min(text.len());
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    let part = &text[..end];
                    let incremental = renderer.assistant_lines(0, part, width, &theme);
                    let whole = render_cell(
                        &Cell::Assistant {
                            id: "m".into(),
                            text: part.to_string(),
                            streaming: true,
                        },
                        width,
                        &theme,
                    );
                    assert_eq!(incremental, whole, "width {width}, step {step}, at {end}");
                }
            }
        }
    }
}
