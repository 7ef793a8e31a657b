//! The files cache: for every file of the last backup, its size, mtime, ctime and inode and
//! the content it had. A file whose stat matches is not read again. Kept on the client (a
//! backup-only key cannot read the previous snapshot), per repository, in the cache directory.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use offsite_format::{ContentItem, RawBytes, SnapshotId};
use offsite_repo::{read_optional, write_atomic, Index};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};

const FILE_NAME: &str = "files-cache.zst";

/// What is remembered of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// size in bytes
    pub size: u64,
    /// mtime (s, ns)
    pub mtime: (i64, i64),
    /// ctime (s, ns)
    pub ctime: (i64, i64),
    /// inode number
    pub inode: u64,
    /// content as stored
    pub content: Vec<ContentItem>,
}

impl CacheEntry {
    /// Entry for a file just read.
    pub fn new(meta: &Metadata, content: Vec<ContentItem>) -> Self {
        CacheEntry {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            content,
        }
    }

    /// Whether `meta` shows the same file, unchanged.
    pub fn matches(&self, meta: &Metadata) -> bool {
        self.size == meta.len()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
            && self.inode == meta.ino()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    /// snapshot this cache was written with (the parent of the next backup)
    snapshot: Option<SnapshotId>,
    paths: Vec<RawBytes>,
    entries: Vec<(RawBytes, CacheEntry)>,
}

/// The loaded cache of the previous backup, and the one being built.
#[derive(Debug, Default)]
pub struct FilesCache {
    old: HashMap<Vec<u8>, CacheEntry>,
    /// snapshot the old cache belongs to
    pub parent: Option<SnapshotId>,
    old_paths: Vec<Vec<u8>>,
    path: Option<PathBuf>,
}

impl FilesCache {
    /// Load from the repository's cache directory (empty when absent, unreadable or disabled).
    pub fn load(dir: Option<&Path>) -> FilesCache {
        let Some(dir) = dir else { return FilesCache::default() };
        let path = dir.join(FILE_NAME);
        let stored = read_optional(&path)
            .ok()
            .flatten()
            .and_then(|b| zstd::bulk::decompress(&b, 1 << 30).ok())
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
            .filter(|s| s.version == 1);
        let mut cache = FilesCache { path: Some(path), ..Default::default() };
        if let Some(s) = stored {
            cache.parent = s.snapshot;
            cache.old_paths = s.paths.into_iter().map(|p| p.0).collect();
            cache.old = s.entries.into_iter().map(|(p, e)| (p.0, e)).collect();
        }
        cache
    }

    /// Whether the previous backup covered exactly these paths.
    pub fn same_paths(&self, paths: &[Vec<u8>]) -> bool {
        self.old_paths == paths
    }

    /// The remembered entry for `path`, if its stat matches and all its blobs are still indexed.
    pub fn lookup(&self, path: &[u8], meta: &Metadata, index: &Index) -> Option<&CacheEntry> {
        let e = self.old.get(path)?;
        let all_present = e.content.iter().all(|c| {
            matches!(c, ContentItem::Hole { .. }) || matches!(c, ContentItem::Blob(id) if index.contains(id))
        });
        (e.matches(meta) && all_present).then_some(e)
    }

    /// Whether the previous backup had this path.
    pub fn had(&self, path: &[u8]) -> bool {
        self.old.contains_key(path)
    }

    /// Paths of the previous backup under one of `roots` that are not in `seen` (removed files).
    pub fn removed<'a>(
        &'a self,
        roots: &[Vec<u8>],
        seen: &'a HashMap<Vec<u8>, CacheEntry>,
    ) -> Vec<(&'a [u8], u64)> {
        let mut out: Vec<(&[u8], u64)> = self
            .old
            .iter()
            .filter(|(p, _)| !seen.contains_key(*p) && roots.iter().any(|r| is_under(p, r)))
            .map(|(p, e)| (p.as_slice(), e.size))
            .collect();
        out.sort();
        out
    }

    /// Save the new cache: this backup's entries plus old entries outside its paths.
    pub fn save(
        self,
        new: HashMap<Vec<u8>, CacheEntry>,
        roots: &[Vec<u8>],
        snapshot: Option<SnapshotId>,
    ) -> EngineResult<()> {
        let Some(path) = self.path else { return Ok(()) };
        let mut entries: Vec<(RawBytes, CacheEntry)> =
            new.into_iter().map(|(p, e)| (RawBytes(p), e)).collect();
        entries.extend(
            self.old
                .into_iter()
                .filter(|(p, _)| !roots.iter().any(|r| is_under(p, r)))
                .map(|(p, e)| (RawBytes(p), e)),
        );
        let stored = Stored {
            version: 1,
            snapshot,
            paths: roots.iter().map(|r| RawBytes(r.clone())).collect(),
            entries,
        };
        let json = serde_json::to_vec(&stored).map_err(|e| EngineError::Other(e.to_string()))?;
        let packed = zstd::bulk::compress(&json, 1).map_err(|e| EngineError::io(&path, e))?;
        write_atomic(&path, &packed)?;
        Ok(())
    }
}

/// Whether `p` is `root` or below it.
pub fn is_under(p: &[u8], root: &[u8]) -> bool {
    p == root || (p.starts_with(root) && (root.ends_with(b"/") || p.get(root.len()) == Some(&b'/')))
}
