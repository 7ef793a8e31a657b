//! Backup: walk (sorted) -> files cache -> read -> chunk -> id -> dedup -> compress -> encrypt ->
//! pack -> upload; trees built bottom-up; the snapshot written last.

mod archiver;
mod bundlelog;
pub mod excludes;
mod filecache;
mod source;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use offsite_chunker::{Chunker, ChunkerParams};
use offsite_format::{Snapshot, SnapshotId, Summary};
use offsite_repo::{BlobWriter, Index, Repository, WriterOptions};
use parking_lot::Mutex;

use crate::error::{EngineError, EngineResult};
use crate::events::{display_path, Event, Reporter};
use archiver::{path_bytes, Archiver, Counters, Roots};
use excludes::Excludes;
use filecache::FilesCache;

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// source paths (made absolute)
    pub paths: Vec<PathBuf>,
    /// gitignore-style exclude patterns
    pub excludes: Vec<String>,
    /// files of exclude patterns, one per line (`#` comments)
    pub exclude_files: Vec<PathBuf>,
    /// skip directories holding a valid CACHEDIR.TAG
    pub exclude_caches: bool,
    /// do not cross filesystem boundaries
    pub one_file_system: bool,
    /// skip files larger than this
    pub exclude_larger_than: Option<u64>,
    /// tags for the snapshot
    pub tags: Vec<String>,
    /// host name to record (default: this machine's)
    pub host: Option<String>,
    /// user name to record (default: the user running the backup)
    pub user: Option<String>,
    /// report itemized changes, store nothing
    pub dry_run: bool,
    /// worker threads (0 = number of cores)
    pub threads: usize,
    /// ignore the files cache (read every file)
    pub force: bool,
    /// report every new and changed file as a `Change` event (implied by `dry_run`)
    pub itemize: bool,
}

/// Result of a backup.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    /// the snapshot written (None for a dry run)
    pub id: Option<SnapshotId>,
    /// the snapshot record (summary inside)
    pub snapshot: Snapshot,
    /// paths that could not be read, with the reason
    pub errors: Vec<(String, String)>,
    /// the repository state digest once the snapshot is stored (docs/FORMAT.md §10)
    pub state: Option<String>,
}

/// Run a backup. Unreadable entries are reported and listed in the outcome, the backup goes on.
///
/// Commit order: packs, then the index naming them, then the snapshot, then the local files
/// cache. An interrupted backup leaves packs (and index checkpoints) but no snapshot.
pub fn backup(
    repo: Arc<Repository>,
    opts: &BackupOptions,
    reporter: &dyn Reporter,
) -> EngineResult<BackupOutcome> {
    let started = Instant::now();
    let time = jiff::Timestamp::now();
    let paths = normalize_paths(&opts.paths)?;
    // The files cache is local and needs no key: decode it while the snapshots and the index
    // come from storage.
    let (cache, set, index) = std::thread::scope(|scope| {
        let cache = scope.spawn(|| {
            let c = FilesCache::load(repo.cache_dir());
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: files cache decoded");
            c
        });
        let set = repo.snapshot_set();
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: snapshots loaded");
        let index = Index::load_present(&**repo.storage(), repo.keys());
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: index loaded");
        (cache.join().unwrap_or_default(), set, index)
    });
    let (set, (index, lost)) = (set?, index?);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        snapshots = set.ids.len(),
        blobs = index.len(),
        cached_files = cache.len(),
        "backup: snapshots, index and files cache loaded"
    );
    // Never deduplicate against a pack that is gone: its blobs are stored again.
    for pack in lost {
        reporter.report(Event::Warning {
            path: format!("data/{}", pack.short()),
            message: "pack named by the index is missing from the storage (lost or deleted); what it held is stored again".into(),
        });
    }
    let index = Arc::new(index);
    let excludes =
        Excludes::new(&opts.excludes, &opts.exclude_files, opts.exclude_caches, opts.exclude_larger_than)?;
    let cfg = repo.config().chunker;
    let params =
        ChunkerParams { min_size: cfg.min as usize, avg_size: cfg.avg as usize, max_size: cfg.max as usize };
    params
        .validate()
        .map_err(|e| EngineError::Other(format!("repository config has invalid chunker sizes: {e}")))?;
    let writer = BlobWriter::new(
        repo.clone(),
        index.clone(),
        WriterOptions {
            dry_run: opts.dry_run,
            journal: repo.cache_dir().map(|d| d.join(offsite_repo::JOURNAL_FILE)),
            ..Default::default()
        },
    );
    // After the writer adopted the journaled packs: their bundles count as stored.
    let (bundle_log, logged) = repo
        .cache_dir()
        .filter(|_| !opts.dry_run)
        .and_then(|dir| bundlelog::BundleLog::open(dir, &index))
        .map_or_else(Default::default, |(log, logged)| (Some(log), logged));
    let archiver = Archiver {
        writer: &writer,
        index: &index,
        chunker: Chunker::new(repo.keys().chunker_key().as_bytes(), params),
        cache: &cache,
        new_cache: Mutex::new(HashMap::new()),
        hits: Mutex::new(Vec::new()),
        excludes: &excludes,
        owners: Default::default(),
        one_file_system: opts.one_file_system,
        force: opts.force,
        itemize: opts.itemize || opts.dry_run,
        reporter,
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
        bundles: Default::default(),
        logged,
        bundle_log: Mutex::new(bundle_log),
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| EngineError::Other(format!("cannot start worker threads: {e}")))?;
    let roots = Roots::new(&paths);
    let done = std::sync::atomic::AtomicBool::new(false);
    let tree = std::thread::scope(|scope| {
        if reporter.wants_progress() {
            scope.spawn(|| progress_loop(&archiver.counters, reporter, &done));
        }
        let r = pool.install(|| archiver.root(&roots));
        done.store(true, Ordering::Relaxed);
        r
    });
    let Archiver { new_cache, hits, errors, counters: c, itemize, bundle_log, .. } = archiver;
    let tree = match tree {
        Ok(t) => t,
        Err(e) => {
            // Store what was packed so a rerun does not upload it again.
            let _ = writer.finish();
            return Err(e);
        }
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: source walked");
    let stats = writer.finish()?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        adopted_packs = stats.adopted_packs.load(Ordering::Relaxed),
        "backup: packs and index stored"
    );
    let root_bytes: Vec<Vec<u8>> = paths.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect();
    let (new_cache, hits) = (new_cache.into_inner(), hits.into_inner());
    if itemize {
        for (p, size) in cache.removed(&root_bytes, &new_cache, &hits) {
            reporter.report(Event::Change { change: "-", path: display_path(p), size });
        }
    }
    let errors = errors.into_inner();
    let parent = cache.parent.filter(|p| cache.same_paths(&root_bytes) && set.ids.contains(p));
    let snapshot = Snapshot {
        version: offsite_format::FORMAT_VERSION,
        repository: repo.config().id,
        time: time.to_string(),
        host: opts.host.clone().unwrap_or_else(hostname),
        user: opts.user.clone().unwrap_or_else(username),
        paths: paths.iter().map(|p| path_bytes(p)).collect(),
        tags: opts.tags.clone(),
        tree,
        parent,
        seen: set.ids.clone(),
        summary: Summary {
            files_new: c.files_new.load(Ordering::Relaxed),
            files_changed: c.files_changed.load(Ordering::Relaxed),
            files_unchanged: c.files_unchanged.load(Ordering::Relaxed),
            dirs: c.dirs.load(Ordering::Relaxed),
            others: c.others.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_total: c.bytes_total.load(Ordering::Relaxed),
            bytes_added: stats.stored_bytes.load(Ordering::Relaxed),
            data_blobs: stats.data_blobs.load(Ordering::Relaxed),
            tree_blobs: stats.tree_blobs.load(Ordering::Relaxed),
            errors: errors.len() as u64,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        program: format!("offsite {}", env!("CARGO_PKG_VERSION")),
    };
    if opts.dry_run {
        return Ok(BackupOutcome { id: None, snapshot, errors, state: None });
    }
    let id = repo.save_snapshot(&snapshot)?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: snapshot stored");
    cache.save(new_cache, &hits, &root_bytes, Some(id))?;
    // The files cache names the logged slices now (a log left full only costs a lookup).
    if let Some(mut log) = bundle_log.into_inner() {
        let _ = log.clear();
    }
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "backup: files cache saved");
    let state = Some(set.state_digest_with(id));
    Ok(BackupOutcome { id: Some(id), snapshot, errors, state })
}

fn progress_loop(c: &Counters, reporter: &dyn Reporter, done: &std::sync::atomic::AtomicBool) {
    while !done.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(100));
        let files = c.files_new.load(Ordering::Relaxed)
            + c.files_changed.load(Ordering::Relaxed)
            + c.files_unchanged.load(Ordering::Relaxed);
        reporter.report(Event::Progress {
            phase: "backup",
            items_done: files,
            bytes_done: c.bytes_read.load(Ordering::Relaxed),
            items_total: None,
            bytes_total: None,
            current: None,
        });
    }
}

/// Make paths absolute and lexically normal (no `.`/`..`, no trailing slash), drop duplicates
/// and paths inside other given paths. Symlinks are not resolved: a symlink given as a path is
/// stored as a symlink.
pub fn normalize_paths(paths: &[PathBuf]) -> EngineResult<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(EngineError::Usage("nothing to back up: give at least one path".into()));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| EngineError::io(p, e))?;
        let mut n = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(x) => n.push(x),
                Component::ParentDir => {
                    n.pop();
                }
                _ => {}
            }
        }
        out.push(n);
    }
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}
