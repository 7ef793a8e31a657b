//! Progress events for the restore phase, at most ten a second (and a last one at the end).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Ctx;
use crate::events::Event;

const INTERVAL: Duration = Duration::from_millis(100);

/// Throttle and totals of the progress events.
pub(crate) struct Progress {
    enabled: bool,
    last: Mutex<Option<Instant>>,
    /// files the restore will handle
    pub items_total: AtomicU64,
    /// bytes of content the restore will handle (blobs, including those of zeros)
    pub bytes_total: AtomicU64,
    /// bytes of content handled so far (written, found to be zeros, or failed)
    pub bytes_done: AtomicU64,
}

impl Progress {
    /// Progress that reports only if `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: Mutex::new(None),
            items_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
        }
    }
}

impl Ctx<'_> {
    /// Emit a progress event if one is wanted and due (`force`: always, for the final one).
    pub(crate) fn progress_report(&self, force: bool) {
        let p = &self.progress;
        if !p.enabled {
            return;
        }
        {
            let Some(mut last) = p.last.try_lock() else { return };
            let now = Instant::now();
            if !force && last.is_some_and(|l| now.duration_since(l) < INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let c = &self.counters;
        self.reporter.report(Event::Progress {
            phase: "restore",
            items_done: c.files.load(Ordering::Relaxed) + c.files_skipped.load(Ordering::Relaxed),
            bytes_done: p.bytes_done.load(Ordering::Relaxed),
            items_total: Some(p.items_total.load(Ordering::Relaxed)),
            bytes_total: Some(p.bytes_total.load(Ordering::Relaxed)),
            current: None,
        });
    }
}
