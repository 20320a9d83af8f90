//! Store calls (SQLite reads and `synchronous = FULL` commits) leave the async workers: inside a
//! tokio runtime they run on its blocking pool, so one thread waiting for its disk never holds up
//! another thread's streaming, tools or events.
//!
//! [`on_async_worker`] tells whether the current code runs inside a runtime without having come
//! through [`run`]; tests install it as `quest_state::set_call_check` to fail any store call made
//! from async code.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static IN_BLOCKING: Cell<bool> = const { Cell::new(false) };
}

struct Marked(bool);

impl Marked {
    fn enter() -> Self {
        Marked(IN_BLOCKING.with(|flag| flag.replace(true)))
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        IN_BLOCKING.with(|flag| flag.set(self.0));
    }
}

/// Runs `f` on the runtime's blocking pool and waits for it without holding a worker; outside a
/// runtime, runs it here. A panic in `f` resumes in the caller.
pub async fn run<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if IN_BLOCKING.with(Cell::get) {
        return f();
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return f();
    };
    HANDOFFS.fetch_add(1, Ordering::Relaxed);
    match handle
        .spawn_blocking(move || {
            let _marked = Marked::enter();
            f()
        })
        .await
    {
        Ok(value) => value,
        Err(err) => match err.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            // Only a runtime shutting down cancels a blocking task before it starts.
            Err(err) => panic!("a store call was cancelled by the runtime shutting down: {err}"),
        },
    }
}

static HANDOFFS: AtomicU64 = AtomicU64::new(0);

/// Calls [`run`] handed to the blocking pool by this process so far (each costs a thread wake-up
/// there and another one back). Tests use it to count a turn's hand-offs.
pub fn handoffs() -> u64 {
    HANDOFFS.load(Ordering::Relaxed)
}

/// True when the calling code runs inside a tokio runtime (on a worker, or in `block_on`) and
/// not inside [`run`]: blocking here would stall async tasks.
pub fn on_async_worker() -> bool {
    !IN_BLOCKING.with(Cell::get) && tokio::runtime::Handle::try_current().is_ok()
}
