//! Servers the terminal-UI tests attach to: `quest app-server` or Codex's own, each a child
//! process on a WebSocket port, and the pinned Codex CLI that provides Codex's side.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use quest_mock_model::MockModel;

/// A server process listening on `url`, killed when dropped together with every process it
/// started (Codex's `codex.js` runs its native binary as a child, which outlived the wrapper).
pub struct ListeningServer {
    child: Child,
    pub url: String,
}

impl ListeningServer {
    /// Spawns `command` with stderr piped and waits for the stderr line `<prefix><url>`; the rest
    /// of stderr is drained so the server never blocks on it.
    pub fn spawn(command: &mut Command, prefix: &str) -> ListeningServer {
        let mut child = command
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{command:?} exited before listening"))
                .unwrap();
            if let Some(url) = line.trim().strip_prefix(prefix) {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ListeningServer { child, url }
    }
}

impl Drop for ListeningServer {
    fn drop(&mut self) {
        // The server leads its own process group: the group goes, children included.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What `quest app-server --listen ws://…` prints before the URL it listens on.
pub const QUEST_LISTENING: &str = "quest app-server listening on ";

/// Codex's CLI (`@openai/codex`, pinned in `tests/codex-tui`); fails the test, saying how to
/// install it, when it is missing.
pub fn codex_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/codex-tui");
    let bin = dir.join("node_modules/@openai/codex/bin/codex.js");
    assert!(
        bin.is_file(),
        "{} is missing: run `npm ci --prefix {}` (as .ci/run does)",
        bin.display(),
        dir.display()
    );
    bin
}

/// Requests for the thread's own turns. Codex's TUI and server also ask the model, on threads of
/// their own, for a short title after a user message; those come and go on their own schedule.
pub fn work_requests(mock: &MockModel) -> usize {
    mock.requests()
        .iter()
        .filter(|r| {
            !r.input().iter().any(|item| {
                item.to_string()
                    .contains("Generate a concise, single-line task title")
            })
        })
        .count()
}
