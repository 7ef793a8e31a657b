//! Restore: plan by pack, read each pack once, write files at offsets in parallel, metadata last.
//!
//! The snapshot's root tree is `/`; everything is restored under the target, so `/a/b/f` in the
//! snapshot becomes `TARGET/a/b/f`. The phases:
//! 1. `target`: create the target and prove it writable, before any work;
//! 2. `plan`: walk the trees, refuse unsafe names (before anything is written), apply
//!    include/exclude, pair hard links;
//! 3. directories are created (0700 for now), never through a symlink;
//! 4. `content`: decide per file (write, or skip when identical / overwrite never), group the
//!    needed blobs by pack and offset, read each pack's needed ranges once, verify every blob
//!    and write it at each of its places into temporary files, which are renamed into place
//!    (metadata set first) as soon as they are complete;
//! 5. `others`: hard links, symlinks, FIFOs, devices;
//! 6. `metadata`: directories' metadata, children before parents.

mod content;
mod filter;
#[doc(hidden)]
pub mod hook;
mod metadata;
mod others;
mod plan;
mod progress;
mod target;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use offsite_format::Snapshot;
use offsite_repo::BlobReader;
use parking_lot::Mutex;

use crate::error::{EngineError, EngineResult};
use crate::events::{display_path, Event, Reporter};

pub use target::TMP_PREFIX;

/// What to do with a file that already exists in the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// always write it
    Always,
    /// write it unless size, mtime and content already match (resume)
    #[default]
    IfChanged,
    /// never touch an existing file
    Never,
}

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// directory to restore into (created if missing)
    pub target: PathBuf,
    /// only these paths (gitignore-style patterns over absolute snapshot paths)
    pub include: Vec<String>,
    /// not these paths
    pub exclude: Vec<String>,
    /// existing files
    pub overwrite: Overwrite,
    /// worker threads (0 = twice the cores, at least 4: workers also wait on storage)
    pub threads: usize,
}

/// What a restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreSummary {
    /// files written
    pub files: u64,
    /// files left as they were (already identical, or overwrite never)
    pub files_skipped: u64,
    /// directories
    pub dirs: u64,
    /// symlinks, devices, fifos
    pub others: u64,
    /// bytes of content written
    pub bytes_written: u64,
    /// per-path failures
    pub errors: Vec<(String, String)>,
}

/// Counters shared by the workers.
#[derive(Default)]
pub(crate) struct Counters {
    files: AtomicU64,
    files_skipped: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    bytes_written: AtomicU64,
}

/// Everything the phases share.
pub(crate) struct Ctx<'a> {
    reader: &'a BlobReader,
    opts: &'a RestoreOptions,
    reporter: &'a dyn Reporter,
    plan: &'a plan::Plan,
    target: target::Target<'a>,
    counters: Counters,
    errors: Mutex<Vec<(String, String)>>,
    /// set on a fatal error (a full disk): workers stop taking work
    stop: AtomicBool,
    fatal: Mutex<Option<EngineError>>,
    is_root: bool,
    xattr_warned: AtomicBool,
    progress: progress::Progress,
}

impl Ctx<'_> {
    /// Report a failed path (the restore goes on).
    pub(crate) fn error(&self, path: &[u8], message: String) {
        let path = display_path(path);
        self.reporter.report(Event::Error { path: path.clone(), message: message.clone() });
        self.errors.lock().push((path, message));
    }

    /// Report something worth knowing that is not a failure.
    pub(crate) fn warn(&self, path: &[u8], message: String) {
        self.reporter.report(Event::Warning { path: display_path(path), message });
    }

    /// Whether a fatal error stopped the restore.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Classify an I/O failure on `path` (a target path for the error): a full disk or quota
    /// stops the whole restore (retrying every other file on a full disk helps nobody).
    /// Returns whether it was fatal.
    pub(crate) fn check_fatal(&self, target_path: &std::path::Path, e: &std::io::Error) -> bool {
        let fatal = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS));
        if fatal {
            self.stop.store(true, Ordering::Relaxed);
            let mut f = self.fatal.lock();
            if f.is_none() {
                let copy = match e.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(e.kind(), e.to_string()),
                };
                *f = Some(EngineError::io(target_path, copy));
            }
        }
        fatal
    }
}

/// Restore a snapshot under `opts.target`.
///
/// Returns `Ok` with per-path failures in [`RestoreSummary::errors`] (a corrupt blob fails its
/// file, which is then not put in place; the rest is restored). Returns an error, before
/// anything is written, for an unusable target, bad patterns or a tree entry that would
/// leave the target ([`EngineError::UnsafeEntry`]); and stops with an error naming the file
/// when the target is full.
pub fn restore(
    reader: &BlobReader,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    reporter: &dyn Reporter,
) -> EngineResult<RestoreSummary> {
    let filter = filter::Filter::new(&opts.include, &opts.exclude)?;
    let root = target::prepare_root(&opts.target)?;
    // Workers wait on storage as much as they compute: on remote storage one per core left the
    // link idle (docs/PERFORMANCE.md), so the default is twice the cores, at least 4, and at
    // least as many as the storage's parallel transfers (`--connections`).
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map_or(4, |n| (n.get() * 2).max(4))
            .max(reader.repo().storage().transfers())
    } else {
        opts.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("offsite-restore-{i}"))
        .build()
        .map_err(|e| EngineError::Other(format!("cannot start restore threads: {e}")))?;
    pool.install(|| {
        let plan = plan::build(reader, &snapshot.tree, &filter)?;
        let ctx = Ctx {
            reader,
            opts,
            reporter,
            plan: &plan,
            target: target::Target::new(opts.target.clone(), root, &plan),
            counters: Counters::default(),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            is_root: nix::unistd::geteuid().is_root(),
            xattr_warned: AtomicBool::new(false),
            progress: progress::Progress::new(reporter.wants_progress()),
        };
        run(&ctx)
    })
}

fn run(ctx: &Ctx<'_>) -> EngineResult<RestoreSummary> {
    for (path, message) in &ctx.plan.errors {
        ctx.error(path, message.clone());
    }
    let dir_ok = ctx.create_dirs();
    let files = ctx.restore_files(&dir_ok);
    if !ctx.stopped() {
        ctx.restore_links(&dir_ok, &files);
        ctx.restore_others(&dir_ok);
        ctx.apply_dirs(&dir_ok);
    }
    ctx.progress_report(true);
    if let Some(e) = ctx.fatal.lock().take() {
        return Err(e);
    }
    let c = &ctx.counters;
    Ok(RestoreSummary {
        files: c.files.load(Ordering::Relaxed),
        files_skipped: c.files_skipped.load(Ordering::Relaxed),
        dirs: c.dirs.load(Ordering::Relaxed),
        others: c.others.load(Ordering::Relaxed),
        bytes_written: c.bytes_written.load(Ordering::Relaxed),
        errors: std::mem::take(&mut *ctx.errors.lock()),
    })
}

impl Ctx<'_> {
    /// Create every planned directory, parents first. Returns which ones exist (a directory
    /// that failed makes its whole subtree fail, reported once).
    fn create_dirs(&self) -> Vec<bool> {
        let dirs = &self.plan.dirs;
        let mut ok = vec![true; dirs.len()];
        // Temporary files of an interrupted restore go first (the target, then every
        // directory that already existed).
        let _ = self.target.remove_stale_tmp(0);
        for (i, d) in dirs.iter().enumerate().skip(1) {
            if !ok[d.parent] {
                ok[i] = false;
                continue;
            }
            match self.target.ensure_dir(i, self.opts.overwrite != Overwrite::Never) {
                Ok(created) => {
                    self.counters.dirs.fetch_add(1, Ordering::Relaxed);
                    if !created {
                        let _ = self.target.remove_stale_tmp(i);
                        if !self.is_root {
                            self.make_writable(i);
                        }
                    }
                }
                Err(e) => {
                    ok[i] = false;
                    let fatal = self.check_fatal(&self.target.dir_path(i), &e);
                    self.error(&d.path, format!("cannot create directory: {e}"));
                    if fatal {
                        break;
                    }
                }
            }
        }
        ok
    }

    /// An existing directory we cannot write into (left read-only by an earlier restore) is
    /// opened up for the owner; its own metadata is set again at the end.
    fn make_writable(&self, dir: usize) {
        use std::os::fd::AsRawFd;
        let Ok(f) = self.target.open_dir(dir) else { return };
        if let Ok(st) = nix::sys::stat::fstat(f.as_raw_fd()) {
            if st.st_mode & 0o300 != 0o300 {
                let mode = nix::sys::stat::Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700);
                let _ = nix::sys::stat::fchmod(f.as_raw_fd(), mode);
            }
        }
    }
}
