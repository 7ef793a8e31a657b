//! The archiver: walks directories in parallel (rayon), reuses unchanged files from the files
//! cache, chunks and stores the rest, and stores one tree per directory, bottom-up.
//!
//! Small files (under [`BUNDLE_FILE_MAX`]) are not chunked: their contents are appended to an
//! open bundle, and the file's content is a slice of it. A bundle gets a random id when it is
//! opened, so a file can name it at once, before the bundle is full and stored, and the tree
//! holding the file never waits. Compressed together, 50,000 small text files take 38% less
//! space than one by one (docs/PERFORMANCE.md); the price is that two equal small files read
//! by different backups are stored twice (docs/FORMAT.md §8.2).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use offsite_chunker::Chunker;
use offsite_format::{BlobId, BlobType, ContentItem, Node, NodeKind, RawBytes, Tree, Xattr};
use offsite_repo::{BlobWriter, Index};
use parking_lot::Mutex;
use rayon::prelude::*;

use super::bundlelog::{BundleLog, Logged, Member};
use super::excludes::Excludes;
use super::filecache::{CacheEntry, FilesCache};
use super::source::{kind_of, node_from, Owners, Stat};
use crate::error::{EngineError, EngineResult};
use crate::events::{display_path, Event, Reporter};

/// Bytes read from a file per step; chunks of one step are stored in parallel.
const SEGMENT: usize = 4 * 1024 * 1024;
/// Files smaller than this (and not sparse) go into bundles instead of blobs of their own.
pub const BUNDLE_FILE_MAX: u64 = 64 * 1024;
/// A bundle is stored once it holds at least this many bytes (4 MiB bundles of the
/// benchmark's small files compress 2.7% better than 2 MiB ones; restoring one small file
/// reads its whole bundle).
const BUNDLE_TARGET: usize = 4 * 1024 * 1024;

/// A bundle being filled: its (random) id, the contents appended so far, and per file its
/// keyed content id, offset and length (for the bundle log).
struct OpenBundle {
    id: BlobId,
    data: Vec<u8>,
    members: Vec<Member>,
}

/// Open bundles, one per thread filling one at a time (a thread takes one out of the pool,
/// appends a file, and puts it back unless it is full).
#[derive(Default)]
pub struct Bundles(Mutex<Vec<OpenBundle>>);

/// Live counters of a backup.
#[derive(Debug, Default)]
pub struct Counters {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub dirs: AtomicU64,
    pub others: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// Everything the walk needs, shared by all worker threads.
pub struct Archiver<'a, 'c> {
    pub writer: &'a BlobWriter,
    pub index: &'a Index,
    pub chunker: Chunker,
    pub cache: &'c FilesCache,
    /// entries of files read by this backup (new or changed)
    pub new_cache: Mutex<HashMap<Vec<u8>, CacheEntry>>,
    /// paths of the files cache hits (keys of `cache`, borrowed: an unchanged file costs no
    /// copy of its entry)
    pub hits: Mutex<Vec<&'c [u8]>>,
    pub excludes: &'a Excludes,
    pub owners: Owners,
    pub one_file_system: bool,
    pub force: bool,
    pub itemize: bool,
    pub reporter: &'a dyn Reporter,
    pub counters: Counters,
    pub errors: Mutex<Vec<(String, String)>>,
    /// bundles being filled with small files
    pub bundles: Bundles,
    /// slices an interrupted backup stored, by content id (from the bundle log)
    pub logged: Logged,
    /// where this backup logs its bundles (none: not logged)
    pub bundle_log: Mutex<Option<BundleLog>>,
}

/// The backed-up paths as a trie from `/`: intermediate directories are included with their own
/// metadata but only the selected children.
#[derive(Debug, Default)]
pub struct Roots {
    children: BTreeMap<Vec<u8>, Roots>,
    selected: bool,
}

impl Roots {
    /// Build from absolute, normalized paths.
    pub fn new(paths: &[PathBuf]) -> Roots {
        let mut root = Roots::default();
        for p in paths {
            let mut node = &mut root;
            for c in p.components().skip(1) {
                node = node.children.entry(c.as_os_str().as_bytes().to_vec()).or_default();
            }
            node.selected = true;
        }
        root
    }
}

impl<'c> Archiver<'_, 'c> {
    fn error(&self, path: &Path, message: String) {
        let p = display_path(path.as_os_str().as_bytes());
        self.reporter.report(Event::Error { path: p.clone(), message: message.clone() });
        self.errors.lock().push((p, message));
    }

    fn store_tree(&self, mut nodes: Vec<Node>) -> EngineResult<BlobId> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let json = serde_json::to_vec(&Tree { nodes }).map_err(|e| EngineError::Other(e.to_string()))?;
        Ok(self.writer.add(BlobType::Tree, &json)?.0)
    }

    /// Store the root tree (`/`) for the selected paths, then every bundle still open (the
    /// trees name them; the snapshot must not be written before they are stored).
    pub fn root(&self, roots: &Roots) -> EngineResult<BlobId> {
        let tree = self.partial_dir(Path::new("/"), roots);
        let open = std::mem::take(&mut *self.bundles.0.lock());
        for b in open.into_iter().filter(|b| !b.data.is_empty()) {
            self.store_bundle(&b)?;
        }
        tree
    }

    /// Log a full bundle (see [`BundleLog`]), then store it.
    fn store_bundle(&self, b: &OpenBundle) -> offsite_repo::RepoResult<()> {
        let mut log = self.bundle_log.lock();
        if log.as_mut().is_some_and(|l| l.append(&b.id, &b.members).is_err()) {
            *log = None; // a rerun stores these files again; the backup itself goes on
        }
        drop(log);
        self.writer.add_bundle(b.id, &b.data)
    }

    /// Append a small file's content to an open bundle; returns the slice naming it. Content
    /// an interrupted backup already stored (the bundle log) is not stored again.
    fn bundle(&self, data: &[u8]) -> Result<ContentItem, ReadFail> {
        let length =
            u32::try_from(data.len()).map_err(|_| ReadFail::Source(std::io::Error::other("too large")))?;
        let content_id = self.writer.blob_id(data).0;
        if let Some(item @ ContentItem::Slice { length: l, .. }) = self.logged.get(&content_id) {
            if *l == length {
                return Ok(item.clone());
            }
        }
        let mut b = self.bundles.0.lock().pop().unwrap_or_else(|| OpenBundle {
            id: BlobId(offsite_crypto::random_bytes()),
            data: Vec::new(),
            members: Vec::new(),
        });
        let offset = u32::try_from(b.data.len()).expect("a bundle is stored before it reaches 4 GiB");
        b.data.extend_from_slice(data);
        b.members.push((content_id, offset, length));
        let item = ContentItem::Slice { bundle: b.id, offset, length, id: BlobId(content_id) };
        if b.data.len() >= BUNDLE_TARGET {
            self.store_bundle(&b).map_err(|e| ReadFail::Repo(e.into()))?;
        } else {
            self.bundles.0.lock().push(b);
        }
        Ok(item)
    }

    /// Read a small file whole (at most `len` bytes) and bundle it. Returns content and size.
    fn read_small(&self, r: &mut dyn Read, len: u64) -> Result<(Vec<ContentItem>, u64), ReadFail> {
        let mut data = Vec::with_capacity(len as usize);
        r.take(len).read_to_end(&mut data).map_err(ReadFail::Source)?;
        self.counters.bytes_read.fetch_add(data.len() as u64, Ordering::Relaxed);
        if data.is_empty() {
            return Ok((Vec::new(), 0));
        }
        Ok((vec![self.bundle(&data)?], data.len() as u64))
    }

    fn partial_dir(&self, dir: &Path, roots: &Roots) -> EngineResult<BlobId> {
        let nodes: Vec<Option<Node>> = roots
            .children
            .iter()
            .map(|(name, child)| {
                let path = dir.join(std::ffi::OsStr::from_bytes(name));
                if child.selected {
                    return self.entry(&path, &path, name, None, None, true);
                }
                let meta = match std::fs::symlink_metadata(&path).map(|m| Stat::from_meta(&m)) {
                    Ok(m) if m.is_dir() => m,
                    Ok(_) => {
                        self.error(&path, "not a directory".into());
                        return Ok(None);
                    }
                    Err(e) => {
                        self.error(&path, e.to_string());
                        return Ok(None);
                    }
                };
                let mut node = node_from(&path, name, &meta, NodeKind::Dir, &self.owners, None)
                    .map_err(|e| EngineError::io(&path, e))?;
                node.subtree = Some(self.partial_dir(&path, child)?);
                Ok(Some(node))
            })
            .collect::<EngineResult<_>>()?;
        self.store_tree(nodes.into_iter().flatten().collect())
    }

    /// Archive a directory's entries in parallel; returns its tree id. The directory is opened
    /// without following a symlink and must be the one `lstat` saw (`meta`); its entries are
    /// then reached through that descriptor (`/proc/self/fd/N/name`), so a directory swapped
    /// for a symlink during the backup never leads outside the source, and no path grows
    /// longer than PATH_MAX however deep the tree. `access` reaches the directory; `dir` is
    /// its path as shown and stored.
    fn dir(&self, dir: &Path, access: &Path, meta: &Stat) -> EngineResult<BlobId> {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(access)
            .and_then(|f| match f.metadata()? {
                m if (m.dev(), m.ino()) == (meta.dev(), meta.ino()) => Ok(f),
                _ => Err(std::io::Error::other("replaced by another directory during backup")),
            });
        let fd = match opened {
            Ok(f) => f,
            Err(e) => {
                self.error(dir, format!("cannot read directory: {e}"));
                return self.store_tree(Vec::new());
            }
        };
        let base = through_fd(&fd, access);
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(&base) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name().as_bytes().to_vec()).collect(),
            Err(e) => {
                self.error(dir, format!("cannot read directory: {e}"));
                Vec::new()
            }
        };
        names.sort_unstable();
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|name| {
                let os = std::ffi::OsStr::from_bytes(name);
                self.entry(&dir.join(os), &base.join(os), name, Some(&fd), Some(meta.dev()), false)
            })
            .collect::<EngineResult<_>>()?;
        drop(fd);
        self.store_tree(nodes.into_iter().flatten().collect())
    }

    /// One directory entry: its node, or None when excluded or unreadable (reported).
    /// `parent` is the open directory holding the entry (none for the selected paths, which
    /// are `lstat`ed by path).
    fn entry(
        &self,
        path: &Path,
        access: &Path,
        name: &[u8],
        parent: Option<&File>,
        parent_dev: Option<u64>,
        is_root: bool,
    ) -> EngineResult<Option<Node>> {
        // lstat relative to the open directory: one name resolved per entry, never the whole
        // path (path lookups were most of an unchanged backup's system time, and resolving
        // `/proc/self/fd/N/name` costs a procfs walk), and nothing a swapped parent directory
        // could redirect. What it describes is only trusted after checks against descriptors:
        // a file is read through `access` and must have this inode; a directory is opened
        // through `access` and must be this one.
        let stat = match parent {
            Some(dir) => Stat::at(dir, name),
            None => std::fs::symlink_metadata(path).map(|m| Stat::from_meta(&m)),
        };
        let meta = match stat {
            Ok(m) => m,
            Err(e) => {
                self.error(path, e.to_string());
                return Ok(None);
            }
        };
        let Some(kind) = kind_of(&meta) else { return Ok(None) };
        if !is_root && self.excludes.excluded(path, kind == NodeKind::Dir) {
            return Ok(None);
        }
        // An unchanged file (files cache hit) keeps its cached xattrs: setting one changes the
        // ctime, which the hit compared.
        let cached = (kind == NodeKind::File && !self.force)
            .then(|| self.cache.lookup(path.as_os_str().as_bytes(), &meta, self.index))
            .flatten();
        let mut node =
            match node_from(access, name, &meta, kind, &self.owners, cached.map(|(_, e)| e.xattrs.clone())) {
                Ok(n) => n,
                Err(e) => {
                    self.error(path, e.to_string());
                    return Ok(None);
                }
            };
        match kind {
            NodeKind::Dir => {
                if self.excludes.is_cache_dir(access) && !is_root {
                    return Ok(None);
                }
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
                let crosses = self.one_file_system && parent_dev.is_some_and(|d| d != meta.dev());
                node.subtree =
                    Some(if crosses { self.store_tree(Vec::new())? } else { self.dir(path, access, &meta)? });
            }
            NodeKind::File => {
                if self.excludes.larger_than.is_some_and(|l| meta.len() > l) {
                    return Ok(None);
                }
                match self.file(path, access, &meta, cached, &node.xattrs)? {
                    Some((content, size)) => {
                        node.size = size;
                        node.content = Some(content);
                    }
                    None => return Ok(None),
                }
            }
            _ => {
                self.counters.others.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Some(node))
    }

    /// A regular file's content (from the files cache entry `cached` when unchanged) and its
    /// size as read. `xattrs` were read after `meta` was taken.
    fn file(
        &self,
        path: &Path,
        access: &Path,
        meta: &Stat,
        cached: Option<(&'c [u8], &'c CacheEntry)>,
        xattrs: &[Xattr],
    ) -> EngineResult<Option<(Vec<ContentItem>, u64)>> {
        let key = path.as_os_str().as_bytes();
        self.counters.bytes_total.fetch_add(meta.len(), Ordering::Relaxed);
        if let Some((cached_key, e)) = cached {
            self.counters.files_unchanged.fetch_add(1, Ordering::Relaxed);
            self.hits.lock().push(cached_key);
            return Ok(Some((e.content.clone(), meta.len())));
        }
        let changed = self.cache.had(key);
        // O_NOFOLLOW: if the file was swapped for a symlink since lstat, refuse rather than
        // read outside the source.
        let mut f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(access) {
            Ok(f) => f,
            Err(e) => {
                self.error(path, format!("cannot read: {e}"));
                return Ok(None);
            }
        };
        let before = match f.metadata() {
            Ok(m) if m.is_file() && m.ino() == meta.ino() => m,
            Ok(_) => {
                self.error(path, "replaced by another file during backup".into());
                return Ok(None);
            }
            Err(e) => {
                self.error(path, e.to_string());
                return Ok(None);
            }
        };
        let read = if before.blocks() * 512 < before.len() {
            self.read_sparse(&mut f, before.len())
        } else if before.len() < BUNDLE_FILE_MAX {
            self.read_small(&mut f, before.len())
        } else {
            // At most the size it had when opened: a file growing faster than it is read
            // would otherwise keep the backup reading (the growth is reported below).
            self.read_stream(&mut f.by_ref().take(before.len()), before.len())
        };
        let (content, size) = match read {
            Ok(r) => r,
            Err(ReadFail::Source(e)) => {
                self.error(path, format!("read failed: {e}"));
                return Ok(None);
            }
            Err(ReadFail::Repo(e)) => return Err(e),
        };
        let after = f.metadata().map_err(|e| EngineError::io(path, e))?;
        let stable = after.len() == before.len()
            && after.mtime() == before.mtime()
            && after.mtime_nsec() == before.mtime_nsec()
            && after.ctime_nsec() == before.ctime_nsec()
            && size == before.len();
        // The xattrs were read after `meta`: they are the file's as of `before` only if the
        // ctime did not move in between.
        let xattrs_current = (meta.ctime(), meta.ctime_nsec()) == (before.ctime(), before.ctime_nsec());
        if stable {
            // Xattrs changed since they were read: keep the file out of the cache so the next
            // backup reads them again.
            if xattrs_current {
                self.new_cache.lock().insert(
                    key.to_vec(),
                    CacheEntry::new(&Stat::from_meta(&before), content.clone(), xattrs.to_vec()),
                );
            }
        } else {
            // Keep what was read (a consistent prefix of what the file held); never cache it,
            // so the next backup reads it again.
            self.reporter.report(Event::Warning {
                path: display_path(key),
                message: "file changed while being read; stored as read".into(),
            });
        }
        let counter = if changed { &self.counters.files_changed } else { &self.counters.files_new };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.itemize {
            self.reporter.report(Event::Change {
                change: if changed { "M" } else { "+" },
                path: display_path(key),
                size,
            });
        }
        Ok(Some((content, size)))
    }

    /// Chunk a stream, storing the chunks of each segment in parallel. Returns content and size.
    fn read_stream(&self, r: &mut dyn Read, size_hint: u64) -> Result<(Vec<ContentItem>, u64), ReadFail> {
        let max = self.chunker.params().max_size;
        let mut buf: Vec<u8> = Vec::new();
        let mut content = Vec::new();
        let mut total = 0u64;
        let mut eof = false;
        while !eof || !buf.is_empty() {
            // Fill to at least one max chunk past what is buffered (or to EOF).
            // Fill to at least one max chunk past what is buffered (or to EOF). read_to_end
            // never re-zeroes the buffer, and the size hint keeps small files' buffers small.
            let want = (buf.len() + SEGMENT).max(max);
            if !eof {
                let need = want - buf.len();
                let hint = usize::try_from(size_hint.saturating_sub(total)).unwrap_or(usize::MAX);
                buf.reserve(need.min(hint.saturating_add(1)));
                let n = (&mut *r).take(need as u64).read_to_end(&mut buf).map_err(ReadFail::Source)?;
                eof = n < need;
            }
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < buf.len() {
                match self.chunker.next_cut(&buf[at..], eof) {
                    Some(n) => {
                        cuts.push((at, n));
                        at += n;
                    }
                    None => break,
                }
            }
            let ids: Vec<BlobId> = cuts
                .par_iter()
                .map(|&(s, n)| self.writer.add(BlobType::Data, &buf[s..s + n]).map(|(id, _)| id))
                .collect::<Result<_, _>>()
                .map_err(|e| ReadFail::Repo(e.into()))?;
            content.extend(ids.into_iter().map(ContentItem::Blob));
            total += at as u64;
            self.counters.bytes_read.fetch_add(at as u64, Ordering::Relaxed);
            buf.drain(..at);
            if eof && buf.is_empty() {
                break;
            }
        }
        Ok((content, total))
    }

    /// Sparse file: store data extents (found with SEEK_DATA/SEEK_HOLE) and record holes.
    fn read_sparse(&self, f: &mut File, len: u64) -> Result<(Vec<ContentItem>, u64), ReadFail> {
        use nix::unistd::{lseek, Whence};
        let fd = f.as_raw_fd();
        let mut content = Vec::new();
        let mut pos = 0u64;
        let to_off = |v: u64| {
            i64::try_from(v).map_err(|_| ReadFail::Source(std::io::Error::other("offset too large")))
        };
        while pos < len {
            let data = match lseek(fd, to_off(pos)?, Whence::SeekData) {
                Ok(d) => (d as u64).min(len),
                Err(nix::errno::Errno::ENXIO) => len, // only a hole remains
                Err(e) => return Err(ReadFail::Source(e.into())),
            };
            if data > pos {
                content.push(ContentItem::Hole { hole: data - pos });
                pos = data;
            }
            if pos >= len {
                break;
            }
            let hole = match lseek(fd, to_off(pos)?, Whence::SeekHole) {
                Ok(h) => (h as u64).min(len),
                Err(e) => return Err(ReadFail::Source(e.into())),
            };
            f.seek(SeekFrom::Start(pos)).map_err(ReadFail::Source)?;
            let want = hole - pos;
            let (items, n) = self.read_stream(&mut f.by_ref().take(want), want)?;
            content.extend(items);
            pos += n;
            if n < want {
                break; // the file shrank while being read
            }
        }
        Ok((content, pos))
    }
}

/// Why reading a file stopped: the source (skip the file) or the repository (stop the backup).
enum ReadFail {
    Source(std::io::Error),
    Repo(EngineError),
}

/// A path reaching what the descriptor holds open: `/proc/self/fd/N`, or `fallback` without
/// `/proc`.
fn through_fd(fd: &File, fallback: &Path) -> PathBuf {
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    } else {
        fallback.to_path_buf()
    }
}

/// Paths as stored: raw bytes.
pub fn path_bytes(p: &Path) -> RawBytes {
    RawBytes(p.as_os_str().as_bytes().to_vec())
}
