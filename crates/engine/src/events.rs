//! Events the engine emits while it works; the CLI renders them as progress bars, text or JSON
//! lines (`--json`). Paths are shown lossily as UTF-8 (invalid bytes as U+FFFD).

use serde::Serialize;

/// One thing that happened. Serialized with a `type` field for `--json`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Periodic progress of the running operation.
    Progress {
        /// e.g. "backup", "restore", "check"
        phase: &'static str,
        /// items finished
        items_done: u64,
        /// bytes finished
        bytes_done: u64,
        /// items expected, when known
        items_total: Option<u64>,
        /// bytes expected, when known
        bytes_total: Option<u64>,
        /// the path being worked on, if any
        current: Option<String>,
    },
    /// An itemized change (backup --dry-run, diff, verbose backup): `+` new, `M` changed,
    /// `-` removed.
    Change {
        /// "+", "M" or "-"
        change: &'static str,
        /// plaintext path
        path: String,
        /// size in bytes (files)
        size: u64,
    },
    /// A path that could not be processed; the operation went on.
    Error {
        /// the path
        path: String,
        /// what went wrong
        message: String,
    },
    /// Something the user should know that is not a failure (e.g. a file changed while read).
    Warning {
        /// the path
        path: String,
        /// what happened
        message: String,
    },
}

/// Receives events; must be cheap, called from worker threads.
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn report(&self, event: Event);
    /// Whether `Progress` events are wanted (skips building them when not).
    fn wants_progress(&self) -> bool {
        false
    }
}

/// A reporter that drops everything.
#[derive(Debug, Default)]
pub struct NullReporter;
impl Reporter for NullReporter {
    fn report(&self, _: Event) {}
}

/// A reporter that keeps every event (tests).
#[derive(Debug, Default)]
pub struct CollectReporter(pub parking_lot::Mutex<Vec<Event>>);
impl Reporter for CollectReporter {
    fn report(&self, event: Event) {
        self.0.lock().push(event);
    }
}

/// Show a raw path for humans and JSON.
pub fn display_path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}
