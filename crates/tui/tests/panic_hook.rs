//! A panic while the UI owns the terminal leaves a usable terminal and a readable message: the
//! test runs itself again as a child in a tmux pane (a real pseudo-terminal), where the child
//! takes the terminal over exactly as `quest` does ([`TerminalGuard::enter`]), draws the UI, and
//! panics on a key press. After it exits, the pane must be back on the normal screen, in cooked
//! mode with echo, with the panic message on screen in whole lines.
//!
//! Needs tmux (installed by `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quest_tui::TerminalGuard;
use quest_tui::app::{App, AppOptions};
use quest_tui::render::Renderer;
use quest_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};

/// Set in the child: take over the terminal and panic.
const CHILD_ENV: &str = "QUEST_TUI_PANIC_HOOK_CHILD";
const MESSAGE: &str = "deliberate panic while the UI owns the terminal";
const TIMEOUT: Duration = Duration::from_secs(60);

fn child() -> ! {
    let _guard = TerminalGuard::enter().unwrap();
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout())).unwrap();
    let app = App::new(AppOptions::default(), 0);
    let mut renderer = Renderer::default();
    terminal
        .draw(|f| renderer.draw(f, &app, &Theme::new(false)))
        .unwrap();
    // The parent looks at the UI first, then presses a key.
    loop {
        if let Event::Key(_) = event::read().unwrap() {
            break;
        }
    }
    panic!("{MESSAGE}");
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

struct Pane {
    name: String,
}

impl Pane {
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}); install it (as .ci/run does)"));
        assert!(out.status.success(), "tmux {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// Whether the pane shows its alternate screen.
    fn alternate_on(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", &self.name, "#{alternate_on}"])
            .trim()
            == "1"
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn a_panic_restores_the_terminal_before_its_message_is_printed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    }
    let dir = tempfile::tempdir().unwrap();
    let stty = dir.path().join("stty.txt");
    let script = dir.path().join("run.sh");
    // The shell runs the child, then records the terminal modes it left behind and waits (the
    // session is killed at the end of the test).
    std::fs::write(
        &script,
        format!(
            "{CHILD_ENV}=1 RUST_BACKTRACE=0 {} --exact a_panic_restores_the_terminal_before_its_message_is_printed --nocapture --test-threads 1\n\
             echo \"child exit=$?\"\nstty -a > {}\necho MODES-RECORDED\nread -r _\n",
            quote(&std::env::current_exe().unwrap()),
            quote(&stty),
        ),
    )
    .unwrap();
    let pane = Pane {
        name: format!("quest-panic-hook-{}", std::process::id()),
    };
    pane.tmux(&[
        "new-session",
        "-d",
        "-s",
        &pane.name,
        "-x",
        "100",
        "-y",
        "30",
        &format!("bash {}", quote(&script)),
    ]);
    // The UI is up, on the alternate screen.
    pane.wait_for("/goal <objective>");
    assert!(pane.alternate_on(), "the UI draws on the alternate screen");

    pane.tmux(&["send-keys", "-t", &pane.name, "x"]);
    let screen = pane.wait_for("MODES-RECORDED");
    assert!(
        !pane.alternate_on(),
        "left on the alternate screen:\n{screen}"
    );
    assert!(screen.contains("child exit=101"), "{screen}");
    // The message is on the normal screen, in whole lines: the line after it starts at the
    // left edge (in raw mode a newline does not return the carriage, and the lines stair-step).
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(MESSAGE))
        .unwrap_or_else(|| panic!("the panic message is not on the screen:\n{screen}"));
    assert!(
        lines[at].starts_with(MESSAGE),
        "the message starts its own line:\n{screen}"
    );
    assert!(
        lines[at + 1].starts_with("note: run with `RUST_BACKTRACE=1`"),
        "the note after the message starts at the left edge:\n{screen}"
    );
    // Cooked mode with echo, as the shell had it.
    let modes = std::fs::read_to_string(&stty).unwrap();
    let flags: Vec<&str> = modes.split_whitespace().collect();
    for flag in ["icanon", "echo", "opost", "icrnl"] {
        assert!(
            flags.contains(&flag),
            "terminal mode {flag} not restored: {modes}"
        );
    }
}
