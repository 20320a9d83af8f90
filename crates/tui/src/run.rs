//! The terminal side: raw mode and the alternate screen (restored on exit and on panic), keyboard
//! input on its own thread, and the loop that feeds the reducer and draws at most once per frame
//! interval, coalescing everything that arrived in between (a long stream of deltas costs one
//! frame per interval, not one per delta).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quest_app_server::{Server, ServerOptions};
use quest_core::ConfigOverrides;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableBracketedPaste, EnableBracketedPaste, Event};
use ratatui::crossterm::terminal::{
    self, BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use tokio::sync::mpsc;

use crate::app::{App, AppOptions, Startup};
use crate::render::Renderer;
use crate::theme::Theme;
use crate::transport::{self, Incoming, Transport};

/// Shortest time between two frames (about 60 per second).
const FRAME_INTERVAL: Duration = Duration::from_millis(16);

/// How `quest` (no subcommand) and `quest resume` start the UI.
#[derive(Clone, Debug, Default)]
pub struct TuiOptions {
    /// Attach to this app-server (`ws://HOST:PORT`) instead of running one in-process.
    pub remote: Option<String>,
    /// Bearer token for the remote server.
    pub remote_token: Option<String>,
    /// Configuration for the in-process server (`-c`, `-C`, …).
    pub config: ConfigOverrides,
    /// Model for new threads.
    pub model: Option<String>,
    /// Working directory for new threads (sent to the server).
    pub cwd: Option<String>,
    /// What to open.
    pub startup: Option<Startup>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn utc_offset_seconds() -> i32 {
    chrono::Local::now().offset().local_minus_utc()
}

/// Whether the UI has the terminal (raw mode, alternate screen) and has not given it back yet.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the terminal back, once: after a panic the hook restores it and then the guard's drop
/// runs during unwinding. Leaving the alternate screen a second time would move the cursor back
/// to where it was saved on entering, so the shell prompt (or anything else) would be written
/// over the panic message.
fn restore_terminal() {
    if !TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

/// The terminal while the UI owns it: raw mode, the alternate screen and bracketed paste. It is
/// put back when this is dropped, and — through the panic hook [`TerminalGuard::enter`]
/// installs — before a panic's message is printed, so the message lands readable on the normal
/// screen instead of in raw mode on the alternate screen (which leaving it would erase).
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Takes over the terminal on stdout (what `quest` does before its first frame).
    pub fn enter() -> std::io::Result<TerminalGuard> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = TerminalGuard { _private: () };
        execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableBracketedPaste
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

/// Runs the UI until the user quits. Returns the exit code.
pub async fn run(options: TuiOptions) -> i32 {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "Error: the Quest terminal UI needs a terminal; for scripts use `quest exec` or `quest app-server`"
        );
        return 2;
    }
    let mut server: Option<Arc<Server>> = None;
    let (transport, label) = match &options.remote {
        Some(url) => match transport::connect_ws(url, options.remote_token.as_deref()).await {
            Ok(t) => (t, url.clone()),
            Err(message) => {
                eprintln!("Error: {message}");
                return 1;
            }
        },
        None => {
            let created = match Server::new(ServerOptions {
                config: options.config.clone(),
                ..ServerOptions::default()
            }) {
                Ok(s) => s,
                Err(err) => {
                    eprintln!("Error: {err}");
                    return 2;
                }
            };
            server = Some(created.clone());
            (transport::in_process(created), "in-process".to_string())
        }
    };
    let app = App::new(
        AppOptions {
            startup: options.startup.clone().unwrap_or(Startup::New),
            cwd: options.cwd.clone(),
            model: options.model.clone(),
            utc_offset_seconds: utc_offset_seconds(),
            server_label: label,
        },
        now_ms(),
    );
    let code = match drive(app, transport).await {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("Error: terminal: {err}");
            1
        }
    };
    if let Some(server) = server {
        // Active goals are paused (reason process_exit) and leases released.
        server.shutdown().await;
    }
    code
}

/// Keyboard and resize events, read on a thread (crossterm's reader blocks).
fn spawn_input(stop: Arc<AtomicBool>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

async fn drive(mut app: App, mut transport: Transport) -> std::io::Result<()> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    let theme = Theme::from_env();
    let mut renderer = Renderer::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut input = spawn_input(stop.clone());
    let result = event_loop(&mut app, &mut transport, &mut input, |app| {
        draw(&mut terminal, &mut renderer, app, &theme)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    result
}

/// The UI's loop, from `initialize` until the user quits: feeds server messages and terminal
/// events to `app` and calls `draw` at most once per frame interval (about 60 per second) when
/// something changed, coalescing everything that arrived in between — a long stream of deltas
/// costs one frame per interval, not one per delta. `quest` runs it on the real terminal;
/// benchmarks and tests run it with their own `draw` (e.g. into ratatui's `TestBackend`).
///
/// A closed connection shows "Disconnected" and the loop waits for the user to quit (it never
/// spins on the closed channel); closed input (the terminal is gone) ends the loop.
pub async fn event_loop(
    app: &mut App,
    transport: &mut Transport,
    input: &mut mpsc::UnboundedReceiver<Event>,
    mut draw: impl FnMut(&App) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    app.connected();
    let mut drawn_revision = u64::MAX;
    let mut last_frame = Instant::now() - FRAME_INTERVAL;
    let mut force = true;
    // A closed channel is ready forever; polling it again would spin the loop.
    let mut server_open = true;
    loop {
        for message in app.take_outgoing() {
            let _ = transport.outgoing.send(message);
        }
        if app.should_quit {
            break;
        }
        let dirty = force || app.revision != drawn_revision;
        let since = last_frame.elapsed();
        if dirty && since >= FRAME_INTERVAL {
            draw(app)?;
            drawn_revision = app.revision;
            last_frame = Instant::now();
            force = false;
            continue;
        }
        let wait = if dirty {
            FRAME_INTERVAL - since
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            message = transport.incoming.recv(), if server_open => {
                match message {
                    Some(Incoming::Message(value)) => app.on_message(value),
                    Some(Incoming::Closed(why)) => {
                        server_open = false;
                        app.disconnected(&why);
                    }
                    None => {
                        server_open = false;
                        app.disconnected("the connection closed");
                    }
                }
                // Take everything else already waiting before the next frame.
                while server_open && let Ok(more) = transport.incoming.try_recv() {
                    match more {
                        Incoming::Message(value) => app.on_message(value),
                        Incoming::Closed(why) => {
                            server_open = false;
                            app.disconnected(&why);
                        }
                    }
                }
            }
            ev = input.recv() => {
                match ev {
                    Some(ev) => {
                        force |= handle_event(app, ev);
                        while let Ok(more) = input.try_recv() {
                            force |= handle_event(app, more);
                        }
                    }
                    // Nobody can type any more (the terminal is gone): leave, so the server
                    // side shuts down cleanly.
                    None => break,
                }
            }
            _ = ticker.tick() => app.tick(now_ms()),
            () = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}

/// Applies one terminal event; true when the screen must be redrawn regardless of the state.
fn handle_event(app: &mut App, ev: Event) -> bool {
    match ev {
        Event::Key(key) => {
            app.on_key(key);
            false
        }
        Event::Paste(text) => {
            app.on_paste(&text);
            false
        }
        Event::Resize(_, _) => true,
        _ => false,
    }
}

fn draw(
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    renderer: &mut Renderer,
    app: &App,
    theme: &Theme,
) -> std::io::Result<()> {
    // One synchronized update per frame: the terminal shows whole frames only (no flicker).
    execute!(terminal.backend_mut(), BeginSynchronizedUpdate)?;
    let result = terminal
        .draw(|frame| renderer.draw(frame, app, theme))
        .map(|_| ());
    execute!(terminal.backend_mut(), EndSynchronizedUpdate)?;
    result
}
