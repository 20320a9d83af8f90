//! The context window of a model Quest has no figure for, read once per process from the
//! provider's model list (`GET {base_url}/models`).
//!
//! Only a model that is neither known ([`crate::compact::default_context_window`]) nor given a
//! `model_context_window` is looked up. The lookup starts when the first thread of the process
//! starts and runs beside it; it is bounded by `[model_client] model_list_timeout_ms`. A thread's
//! first compaction decision never waits for it (the first request is not delayed), nor does the
//! decision at the end of a turn; a decision before any later request waits for its answer. When the list gives no window the thread compacts only when
//! the provider answers `context_length_exceeded`, as before; a failed lookup is reported once
//! as a warning that says so.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quest_model::{ListedWindow, ModelClient};

use crate::compact::CompactionSettings;

/// The lookups of one process, by model-list URL and model slug.
pub type WindowLookups = Arc<Mutex<std::collections::HashMap<(String, String), Arc<WindowLookup>>>>;

/// One process's lookup of the configured model's window.
pub struct WindowLookup {
    model: String,
    timeout: Duration,
    client: ModelClient,
    window: tokio::sync::OnceCell<Option<i64>>,
    /// A failure not yet reported to any thread.
    warning: Mutex<Option<String>>,
}

impl std::fmt::Debug for WindowLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowLookup")
            .field("model", &self.model)
            .field("window", &self.window.get())
            .finish_non_exhaustive()
    }
}

impl WindowLookup {
    /// A lookup for `model` through `client`, or `None` when none is needed: the window is
    /// known or configured, or `timeout` is zero (lookups turned off).
    pub fn new(
        settings: &CompactionSettings,
        model: &str,
        client: &ModelClient,
        timeout: Duration,
    ) -> Option<Arc<Self>> {
        if settings.context_window.is_some() || timeout.is_zero() {
            return None;
        }
        Some(Arc::new(WindowLookup {
            model: model.to_string(),
            timeout,
            client: client.clone(),
            window: tokio::sync::OnceCell::new(),
            warning: Mutex::new(None),
        }))
    }

    /// Starts the lookup in the background (when a tokio runtime is running).
    pub fn start(self: &Arc<Self>) {
        if self.window.initialized() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lookup = Arc::clone(self);
            runtime.spawn(async move {
                lookup.window().await;
            });
        }
    }

    /// The window the list gave (`None`: no window), waiting for the lookup to finish.
    pub async fn window(&self) -> Option<i64> {
        *self.window.get_or_init(|| self.fetch()).await
    }

    /// The answer, if the lookup finished.
    pub fn peek(&self) -> Option<Option<i64>> {
        self.window.get().copied()
    }

    /// A failure to report, once per process.
    pub fn take_warning(&self) -> Option<String> {
        match self.warning.lock() {
            Ok(mut warning) => warning.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    async fn fetch(&self) -> Option<i64> {
        let url = self.client.model_list_url();
        let model = &self.model;
        match self.client.listed_context_window(model, self.timeout).await {
            Ok(ListedWindow::Window(window)) => {
                tracing::info!(model, window, %url, "context window from the provider's model list");
                Some(window)
            }
            Ok(ListedWindow::NoWindow) => {
                tracing::info!(model, %url, "the provider's model list gives no context window");
                None
            }
            Ok(ListedWindow::NotListed) => {
                tracing::info!(model, %url, "the provider's model list does not include the model");
                None
            }
            Err(err) => {
                let message = format!(
                    "could not read the context window of `{model}` from the provider's model \
                     list (GET {url}: {err}); the thread compacts only when the provider reports \
                     context_length_exceeded (set model_context_window to compact ahead of time)"
                );
                tracing::warn!("{message}");
                if let Ok(mut warning) = self.warning.lock() {
                    *warning = Some(message);
                }
                None
            }
        }
    }
}

/// A thread's view of its context window: the configured or known one, else the process's
/// lookup.
#[derive(Debug, Default)]
pub struct ThreadWindow {
    lookup: Option<Arc<WindowLookup>>,
    /// Set once the thread made its first decision before a request (which never waits).
    decided: AtomicBool,
}

impl ThreadWindow {
    /// A view over `lookup` (`None`: the configuration's figures are final).
    pub fn new(lookup: Option<Arc<WindowLookup>>) -> Self {
        ThreadWindow {
            lookup,
            decided: AtomicBool::new(false),
        }
    }

    /// The settings to decide with, and a warning to show (once per process). With `wait`
    /// (a decision before a request) the lookup is awaited, except by the thread's first such
    /// decision, which takes what is known now so the first request is never held up; without
    /// it (the decision at the end of a turn) nothing waits.
    pub async fn settings(
        &self,
        configured: CompactionSettings,
        wait: bool,
    ) -> (CompactionSettings, Option<String>) {
        let Some(lookup) = &self.lookup else {
            return (configured, None);
        };
        let window = match lookup.peek() {
            Some(window) => window,
            None if wait && self.decided.swap(true, Ordering::AcqRel) => lookup.window().await,
            None => None,
        };
        let settings = match window {
            Some(window) => configured.with_provider_window(window),
            None => configured,
        };
        (settings, lookup.take_warning())
    }

    /// The settings from what is known now, without waiting.
    pub fn settings_now(&self, configured: CompactionSettings) -> CompactionSettings {
        match self
            .lookup
            .as_ref()
            .and_then(|lookup| lookup.peek())
            .flatten()
        {
            Some(window) => configured.with_provider_window(window),
            None => configured,
        }
    }
}
