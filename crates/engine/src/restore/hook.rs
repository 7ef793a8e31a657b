//! A test hook at named steps of a restore, so a test can play another local user who changes
//! the target between two of restore's steps (`tests/restore_race.rs`, docs/RELIABILITY.md).
//!
//! | site | crossed |
//! | --- | --- |
//! | `restore.dir_open` | a directory of the target is about to be opened by name (the first time, or again after its descriptor was let go) |
//! | `restore.other_created` | a symlink, FIFO or device exists under its temporary name; its metadata is not set yet |
//! | `restore.tmp_reopen` | a file's temporary is about to be opened again by name to write more of it |
//!
//! Unset (always, outside tests) a crossing costs one relaxed atomic load: no lock, no
//! allocation, and the paths a step names are not even built.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// One crossing of a step.
#[derive(Debug)]
pub struct Step<'a> {
    /// the site (see the module doc)
    pub site: &'static str,
    /// the directory of the target the entry belongs in (full path)
    pub dir: &'a Path,
    /// its name: the final name, or the temporary name it has for now
    pub name: &'a [u8],
    /// where the entry is at this moment (full path; a temporary may be somewhere else than
    /// `dir/name`)
    pub at: &'a Path,
}

/// What a test runs at every step.
pub type Hook = Arc<dyn Fn(&Step<'_>) + Send + Sync>;

static SET: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Run `hook` at every step of every restore in this process from now on (`None`: no more).
/// For tests only.
#[doc(hidden)]
pub fn set_step_hook(hook: Option<Hook>) {
    let mut h = HOOK.write().unwrap_or_else(PoisonError::into_inner);
    SET.store(hook.is_some(), Ordering::SeqCst);
    *h = hook;
}

/// Cross `site`; `step` gives the entry's directory, name and present place, and is called only
/// when a hook is set.
pub(crate) fn cross(site: &'static str, step: impl FnOnce() -> (PathBuf, Vec<u8>, PathBuf)) {
    if !SET.load(Ordering::Relaxed) {
        return;
    }
    let hook = HOOK.read().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(h) = hook {
        let (dir, name, at) = step();
        h(&Step { site, dir: &dir, name: &name, at: &at });
    }
}
