//! A program running in a tmux pane, driven by keys and read from the screen: how the terminal UI
//! tests (Quest's and Codex's) see what a user would.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long any wait on the screen may take.
const TIMEOUT: Duration = Duration::from_secs(90);

/// A tmux session that is killed when dropped.
pub struct Tmux {
    name: String,
}

impl Tmux {
    /// Runs `command` in a new detached session of `size` (columns, rows) in `cwd`.
    pub fn start(name: &str, cwd: &Path, command: &str, size: (u16, u16)) -> Tmux {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x"])
            .arg(size.0.to_string())
            .arg("-y")
            .arg(size.1.to_string())
            .arg("-c")
            .arg(cwd)
            .arg(command)
            .status()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}); install it (as .ci/run does)"));
        assert!(status.success(), "tmux new-session failed");
        Tmux {
            name: name.to_string(),
        }
    }

    fn capture(&self, scrollback: bool) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["capture-pane", "-p", "-t", &self.name]);
        if scrollback {
            cmd.args(["-S", "-"]);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        self.capture(false)
    }

    /// The screen and everything scrolled off it.
    pub fn history(&self) -> String {
        self.capture(true)
    }

    fn poll(&self, what: &str, read: impl Fn() -> String, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = read();
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what}; screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen satisfies `ready` (described by `what`), polling the pane, the
    /// terminal's only output.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.poll(what, || self.screen(), ready)
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("{text:?}"), |screen| screen.contains(text))
    }

    /// Waits until `text` appears at least `times` times on the screen and in its scrollback.
    pub fn wait_for_count(&self, text: &str, times: usize) -> String {
        self.poll(
            &format!("{text:?} {times} times"),
            || self.history(),
            |history| history.matches(text).count() >= times,
        )
    }

    /// Sends `tmux send-keys` arguments (key names, or `-l` and literal text).
    pub fn keys(&self, args: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Presses one key (`Escape`, `Enter`, …).
    pub fn press(&self, key: &str) {
        self.keys(&[key]);
    }

    /// Types `text` and submits it with Enter.
    pub fn type_line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.wait_for(text);
        // Keys that arrive together read as a paste, and an Enter that follows a paste too
        // closely becomes a newline in it; a typist's pause makes it a submit.
        std::thread::sleep(Duration::from_millis(400));
        self.press("Enter");
    }

    /// Waits until the program in the pane has exited (the session closes with it).
    pub fn wait_exit(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let alive = Command::new("tmux")
                .args(["has-session", "-t", &self.name])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if !alive {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the program in the pane did not exit; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}
