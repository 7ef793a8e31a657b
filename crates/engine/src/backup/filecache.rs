//! The files cache: for every file of the last backup, its size, mtime, ctime and inode, its
//! extended attributes and the content it had. A file whose stat matches is neither read nor
//! has its xattrs listed again (setting an xattr changes the ctime). Kept on the client (a
//! backup-only key cannot read the previous snapshot), per repository, in the cache directory.
//!
//! The file is binary: an 8-byte magic, the parent snapshot (a flag byte and 32 bytes), then a
//! zstd frame holding the backed-up paths and the entries (little-endian integers,
//! length-prefixed byte strings). JSON cost a fifth of an unchanged re-backup's CPU time
//! (docs/PERFORMANCE.md). When a backup changed nothing, the compressed frame of the old file
//! is written back as it was, behind the new parent id: no encoding, no compression. A cache
//! that does not parse is ignored (every file is read again), never trusted in part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::source::Stat;
use offsite_format::{BlobId, ContentItem, RawBytes, SnapshotId, Xattr};
use offsite_repo::{read_optional, write_unsynced, Index};

use crate::error::{EngineError, EngineResult};

const FILE_NAME: &str = "files-cache.bin";
/// The JSON cache of earlier versions, removed when the binary one is written.
const OLD_FILE_NAME: &str = "files-cache.zst";
const MAGIC: &[u8; 8] = b"OFSFC\x00\x03\x00";
/// Bytes before the zstd frame: magic, parent flag, parent id.
const HEADER: usize = 8 + 1 + 32;
/// Largest decompressed body accepted (a corrupt length must not allocate without bound).
const MAX_BODY: usize = 1 << 30;

/// What is remembered of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// extended attributes as stored (valid while the ctime matches)
    pub xattrs: Vec<Xattr>,
}

impl CacheEntry {
    /// Entry for a file just read, whose xattrs were read before `meta` was taken.
    pub fn new(meta: &Stat, content: Vec<ContentItem>, xattrs: Vec<Xattr>) -> Self {
        CacheEntry {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            content,
            xattrs,
        }
    }

    /// Whether `meta` shows the same file, unchanged.
    pub fn matches(&self, meta: &Stat) -> bool {
        self.size == meta.len()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
            && self.inode == meta.ino()
    }
}

/// The loaded cache of the previous backup, and the one being built.
#[derive(Debug, Default)]
pub struct FilesCache {
    old: HashMap<Vec<u8>, CacheEntry>,
    /// snapshot the old cache belongs to
    pub parent: Option<SnapshotId>,
    old_paths: Vec<Vec<u8>>,
    /// the old file's compressed body, reused when nothing changed
    old_body: Vec<u8>,
    path: Option<PathBuf>,
}

impl FilesCache {
    /// Number of files the loaded cache holds.
    pub fn len(&self) -> usize {
        self.old.len()
    }

    /// Load from the repository's cache directory (empty when absent, unreadable, damaged or
    /// disabled).
    pub fn load(dir: Option<&Path>) -> FilesCache {
        let Some(dir) = dir else { return FilesCache::default() };
        let path = dir.join(FILE_NAME);
        let mut cache = FilesCache { path: Some(path.clone()), ..Default::default() };
        let Some(bytes) = read_optional(&path).ok().flatten() else { return cache };
        if let Some((parent, paths, entries)) = decode(&bytes) {
            cache.parent = parent;
            cache.old_paths = paths;
            cache.old = entries;
            cache.old_body = bytes[HEADER..].to_vec();
        }
        cache
    }

    /// Whether the previous backup covered exactly these paths.
    pub fn same_paths(&self, paths: &[Vec<u8>]) -> bool {
        self.old_paths == paths
    }

    /// The remembered entry for `path`, if its stat matches and all its blobs are still indexed.
    pub fn lookup(&self, path: &[u8], meta: &Stat, index: &Index) -> Option<(&[u8], &CacheEntry)> {
        let (key, e) = self.old.get_key_value(path)?;
        let all_present = e.content.iter().all(|c| match c {
            ContentItem::Hole { .. } => true,
            ContentItem::Blob(id) | ContentItem::Slice { bundle: id, .. } => index.contains(id),
        });
        (e.matches(meta) && all_present).then_some((key.as_slice(), e))
    }

    /// Whether the previous backup had this path.
    pub fn had(&self, path: &[u8]) -> bool {
        self.old.contains_key(path)
    }

    /// Paths of the previous backup under one of `roots` that this backup neither read (`read`)
    /// nor found unchanged (`hits`): removed files.
    pub fn removed<'a>(
        &'a self,
        roots: &[Vec<u8>],
        read: &'a HashMap<Vec<u8>, CacheEntry>,
        hits: &[&[u8]],
    ) -> Vec<(&'a [u8], u64)> {
        let hits: std::collections::HashSet<&[u8]> = hits.iter().copied().collect();
        let mut out: Vec<(&[u8], u64)> = self
            .old
            .iter()
            .filter(|(p, _)| {
                !read.contains_key(*p) && !hits.contains(p.as_slice()) && roots.iter().any(|r| is_under(p, r))
            })
            .map(|(p, e)| (p.as_slice(), e.size))
            .collect();
        out.sort();
        out
    }

    /// Save the new cache, once the backup's snapshot is stored: the entries of the files this
    /// backup read (`read`) and the old entries of its unchanged files (`hits`, keys of this
    /// cache, each once). Nothing else: entries of paths this backup did not cover are dropped,
    /// so plaintext names of files no longer backed up do not stay on the client for ever (a
    /// later backup of those paths reads their files again). When no file was read and every
    /// old entry was a hit, the result equals the old cache: only the parent id changes and
    /// the old body is reused.
    pub fn save(
        &self,
        read: HashMap<Vec<u8>, CacheEntry>,
        hits: &[&[u8]],
        roots: &[Vec<u8>],
        snapshot: Option<SnapshotId>,
    ) -> EngineResult<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let unchanged = !self.old_body.is_empty()
            && self.old_paths == roots
            && read.is_empty()
            && hits.len() == self.old.len();
        let compressed;
        let body: &[u8] = if unchanged {
            &self.old_body
        } else {
            let mut entries: Vec<(&[u8], &CacheEntry)> =
                read.iter().map(|(p, e)| (p.as_slice(), e)).collect();
            entries.extend(
                hits.iter().filter_map(|p| self.old.get_key_value(*p)).map(|(p, e)| (p.as_slice(), e)),
            );
            let raw = encode_body(roots, &entries);
            // The frame carries a checksum: a cache damaged on disk is dropped, not misread.
            let mut z = zstd::bulk::Compressor::new(1).map_err(|e| EngineError::io(path, e))?;
            z.include_checksum(true).map_err(|e| EngineError::io(path, e))?;
            compressed = z.compress(&raw).map_err(|e| EngineError::io(path, e))?;
            &compressed
        };
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        match snapshot {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.0);
            }
            None => out.extend_from_slice(&[0u8; 33]),
        }
        out.extend_from_slice(body);
        // No fsync: the header is checked and the body is a checksummed zstd frame, so a file
        // torn by a power cut is dropped (the next backup reads every file once), never misread.
        write_unsynced(path, &out)?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_file(dir.join(OLD_FILE_NAME));
        }
        Ok(())
    }
}

/// Whether `p` is `root` or below it.
pub fn is_under(p: &[u8], root: &[u8]) -> bool {
    p == root || (p.starts_with(root) && (root.ends_with(b"/") || p.get(root.len()) == Some(&b'/')))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_body(roots: &[Vec<u8>], entries: &[(&[u8], &CacheEntry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 128);
    out.extend_from_slice(&(roots.len() as u64).to_le_bytes());
    for r in roots {
        put_bytes(&mut out, r);
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (p, e) in entries {
        put_bytes(&mut out, p);
        for v in [e.size as i64, e.mtime.0, e.mtime.1, e.ctime.0, e.ctime.1, e.inode as i64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(e.content.len() as u64).to_le_bytes());
        for c in &e.content {
            match c {
                ContentItem::Blob(id) => {
                    out.push(0);
                    out.extend_from_slice(&id.0);
                }
                ContentItem::Hole { hole } => {
                    out.push(1);
                    out.extend_from_slice(&hole.to_le_bytes());
                }
                ContentItem::Slice { bundle, offset, length, id } => {
                    out.push(2);
                    out.extend_from_slice(&bundle.0);
                    out.extend_from_slice(&offset.to_le_bytes());
                    out.extend_from_slice(&length.to_le_bytes());
                    out.extend_from_slice(&id.0);
                }
            }
        }
        out.extend_from_slice(&(e.xattrs.len() as u64).to_le_bytes());
        for x in &e.xattrs {
            put_bytes(&mut out, &x.name.0);
            put_bytes(&mut out, &x.value.0);
        }
    }
    out
}

/// A cursor over untrusted bytes: every read is bounds-checked and fails with `None`.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.u64()?).ok()?;
        Some(self.take(n)?.to_vec())
    }
    /// A count of items each at least `min` bytes long: never more than the bytes left allow.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n <= self.0.len() / min.max(1)).then_some(n)
    }
    fn id32(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

type Decoded = (Option<SnapshotId>, Vec<Vec<u8>>, HashMap<Vec<u8>, CacheEntry>);

/// Parse a whole cache file; `None` for anything not written by [`FilesCache::save`].
fn decode(file: &[u8]) -> Option<Decoded> {
    let mut head = Cursor(file);
    if head.take(8)? != MAGIC {
        return None;
    }
    let parent = match head.u8()? {
        0 => {
            head.take(32)?;
            None
        }
        1 => Some(SnapshotId(head.id32()?)),
        _ => return None,
    };
    let body = zstd::bulk::decompress(head.0, MAX_BODY).ok()?;
    let mut c = Cursor(&body);
    let n_roots = c.count(8)?;
    let roots = (0..n_roots).map(|_| c.bytes()).collect::<Option<Vec<_>>>()?;
    let n = c.count(8 * 9)?;
    let mut entries = HashMap::with_capacity(n);
    for _ in 0..n {
        let path = c.bytes()?;
        let size = c.u64()?;
        let mtime = (c.i64()?, c.i64()?);
        let ctime = (c.i64()?, c.i64()?);
        let inode = c.u64()?;
        let n_content = c.count(9)?;
        let mut content = Vec::with_capacity(n_content);
        for _ in 0..n_content {
            content.push(match c.u8()? {
                0 => ContentItem::Blob(BlobId(c.id32()?)),
                1 => ContentItem::Hole { hole: c.u64()? },
                2 => ContentItem::Slice {
                    bundle: BlobId(c.id32()?),
                    offset: c.u32()?,
                    length: c.u32()?,
                    id: BlobId(c.id32()?),
                },
                _ => return None,
            });
        }
        let n_x = c.count(16)?;
        let mut xattrs = Vec::with_capacity(n_x);
        for _ in 0..n_x {
            xattrs.push(Xattr { name: RawBytes(c.bytes()?), value: RawBytes(c.bytes()?) });
        }
        entries.insert(path, CacheEntry { size, mtime, ctime, inode, content, xattrs });
    }
    c.0.is_empty().then_some((parent, roots, entries))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(i: u8) -> CacheEntry {
        CacheEntry {
            size: 1000 + u64::from(i),
            mtime: (1_700_000_000, 5),
            ctime: (-3, 999_999_999),
            inode: 77 + u64::from(i),
            content: vec![
                ContentItem::Blob(BlobId([i; 32])),
                ContentItem::Hole { hole: 1 << 40 },
                ContentItem::Slice {
                    bundle: BlobId([!i; 32]),
                    offset: u32::MAX - u32::from(i),
                    length: 7,
                    id: BlobId([i ^ 0x55; 32]),
                },
            ],
            xattrs: vec![Xattr { name: RawBytes(b"user.a".to_vec()), value: RawBytes(vec![0, 255, i]) }],
        }
    }

    #[test]
    fn round_trips_and_reuses_the_body_when_nothing_changed() {
        let t = tempfile::tempdir().unwrap();
        let roots = vec![b"/src".to_vec()];
        let new: HashMap<_, _> = (0..50u8).map(|i| (format!("/src/f{i}").into_bytes(), entry(i))).collect();
        let mut outside = FilesCache::load(Some(t.path()));
        outside.old.insert(b"/other/x".to_vec(), entry(200));
        outside.save(new, &[], &roots, Some(SnapshotId([1; 32]))).unwrap();

        let loaded = FilesCache::load(Some(t.path()));
        assert_eq!(loaded.parent, Some(SnapshotId([1; 32])));
        assert!(loaded.same_paths(&roots));
        assert_eq!(loaded.old.len(), 50, "entries outside the backed-up paths are dropped");
        assert!(!loaded.had(b"/other/x"));
        assert_eq!(loaded.old.get(b"/src/f7".as_slice()), Some(&entry(7)));
        let body = loaded.old_body.clone();
        // Unchanged (every file under the paths a hit, none read): the body is written back
        // byte for byte, behind the new parent.
        let all: Vec<&[u8]> =
            loaded.old.keys().filter(|p| p.starts_with(b"/src/")).map(|p| p.as_slice()).collect();
        assert_eq!(all.len(), 50);
        loaded.save(HashMap::new(), &all, &roots, Some(SnapshotId([2; 32]))).unwrap();
        let file = std::fs::read(t.path().join(FILE_NAME)).unwrap();
        assert_eq!(&file[HEADER..], body.as_slice());
        assert_eq!(FilesCache::load(Some(t.path())).parent, Some(SnapshotId([2; 32])));
        // Changed: one file read again, one gone, the rest hits: the body is rebuilt and holds
        // the change and the hits' old entries, not the gone one.
        let loaded = FilesCache::load(Some(t.path()));
        let hits: Vec<&[u8]> = loaded
            .old
            .keys()
            .filter(|p| p.starts_with(b"/src/") && !matches!(p.as_slice(), b"/src/f3" | b"/src/f4"))
            .map(|p| p.as_slice())
            .collect();
        let read = HashMap::from([(b"/src/f3".to_vec(), entry(99))]);
        loaded.save(read, &hits, &roots, None).unwrap();
        let again = FilesCache::load(Some(t.path()));
        assert_eq!(again.parent, None);
        assert_eq!(again.old.get(b"/src/f3".as_slice()), Some(&entry(99)));
        assert_eq!(again.old.get(b"/src/f7".as_slice()), Some(&entry(7)));
        assert_eq!(again.old.get(b"/src/f4".as_slice()), None);
        assert_eq!(again.old.len(), 49);
        // A cache of the same paths that still names a path outside them (written before they
        // were dropped) is not reused verbatim even when every file under the paths hit.
        let outside = entry(201);
        let mut entries: Vec<(&[u8], &CacheEntry)> =
            again.old.iter().map(|(p, e)| (p.as_slice(), e)).collect();
        entries.push((b"/other/y", &outside));
        let mut file = std::fs::read(t.path().join(FILE_NAME)).unwrap()[..HEADER].to_vec();
        file.extend(zstd::bulk::compress(&encode_body(&roots, &entries), 1).unwrap());
        std::fs::write(t.path().join(FILE_NAME), &file).unwrap();
        let older = FilesCache::load(Some(t.path()));
        assert!(older.had(b"/other/y") && older.same_paths(&roots));
        let hits: Vec<&[u8]> =
            older.old.keys().filter(|p| p.starts_with(b"/src/")).map(|p| p.as_slice()).collect();
        older.save(HashMap::new(), &hits, &roots, None).unwrap();
        let again = FilesCache::load(Some(t.path()));
        assert!(!again.had(b"/other/y"));
        assert_eq!(again.old.len(), 49);
    }

    #[test]
    fn damaged_files_are_ignored_whole() {
        let t = tempfile::tempdir().unwrap();
        let new: HashMap<_, _> = (0..20u8).map(|i| (vec![b'/', b'a' + i], entry(i))).collect();
        FilesCache::load(Some(t.path())).save(new, &[], &[b"/".to_vec()], None).unwrap();
        let good = std::fs::read(t.path().join(FILE_NAME)).unwrap();
        assert_eq!(FilesCache::load(Some(t.path())).old.len(), 20);
        let body = zstd::bulk::decompress(&good[HEADER..], MAX_BODY).unwrap();
        // Every truncation of the body, and garbage counts, parse to nothing, never panic.
        for cut in (0..body.len()).step_by(7) {
            let mut file = good[..HEADER].to_vec();
            file.extend(zstd::bulk::compress(&body[..cut], 1).unwrap());
            assert!(decode(&file).is_none(), "truncated at {cut}");
        }
        for pos in (0..body.len()).step_by(13) {
            let mut bad = body.clone();
            bad[pos] = 0xff;
            let mut file = good[..HEADER].to_vec();
            file.extend(zstd::bulk::compress(&bad, 1).unwrap());
            let _ = decode(&file);
        }
        let mut file = good.clone();
        file[0] ^= 1;
        assert!(decode(&file).is_none(), "wrong magic");
    }
}
