//! Reading blobs back: locate, fetch a range, authenticate, decrypt, decompress, verify the id.

use std::collections::HashMap;
use std::sync::Arc;

use offsite_backend::ObjectKind;
use offsite_format::{BlobId, BlobOpener, Tree};
use parking_lot::Mutex;

use crate::error::{RepoError, RepoResult};
use crate::index::{BlobLocation, Index};
use crate::repository::Repository;

/// Range reads are widened to this alignment so no request length equals one blob's length,
/// and a read of a small blob (a bundle of one changed file, a tree) shows nothing of its
/// length: every pack is at least [`offsite_format::MIN_PACK_LEN`] (64 KiB) long.
pub const READ_ALIGN: u64 = 64 * 1024;

/// The range `(from, to)` to request for bytes `[start, end)` of a pack of `size` bytes:
/// widened to [`READ_ALIGN`] boundaries (never past the pack's end), and never `[start, end)`
/// itself. A blob whose offset and length are both multiples of the alignment (the first blob
/// of a pack is at offset 0) would otherwise be read exactly, its length plain to the storage;
/// then one more block is read. Blobs never reach a pack's end (the header follows them).
pub fn read_range(start: u64, end: u64, size: u64) -> (u64, u64) {
    let mut from = start - start % READ_ALIGN;
    let mut to = end.div_ceil(READ_ALIGN).saturating_mul(READ_ALIGN).min(size).max(end);
    if from == start && to == end {
        if to < size {
            to = to.saturating_add(READ_ALIGN).min(size);
        } else {
            from = from.saturating_sub(READ_ALIGN);
        }
    }
    (from, to)
}

/// Tree packs at most this large are fetched whole and kept (see [`BlobReader::tree`]).
pub const TREE_PACK_CACHE_MAX: u64 = 16 * 1024 * 1024;
/// Bytes of tree packs kept in memory at most; the cache is emptied when it would exceed this.
const TREE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Whole tree packs by pack position, and their total size.
type TreePackCache = (HashMap<u32, Arc<Vec<u8>>>, u64);

/// Reads and verifies blobs (full keys only).
pub struct BlobReader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    openers: Mutex<HashMap<u32, Arc<BlobOpener>>>,
    tree_packs: Mutex<TreePackCache>,
    trees_read: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader").finish_non_exhaustive()
    }
}

impl BlobReader {
    /// A reader over a repository and its index. Errors for a backup-only key.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>) -> RepoResult<BlobReader> {
        repo.require_full()?;
        Ok(BlobReader {
            repo,
            index,
            openers: Mutex::new(HashMap::new()),
            tree_packs: Mutex::new((HashMap::new(), 0)),
            trees_read: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The repository.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Where a blob is, or `MissingBlob` naming `by`.
    pub fn locate(&self, id: &BlobId, by: &str) -> RepoResult<BlobLocation> {
        self.index.get(id).ok_or_else(|| RepoError::MissingBlob { blob: id.short(), by: by.to_string() })
    }

    /// The key-derived opener of a pack (cached; one X25519 per pack).
    pub fn opener(&self, pack: u32) -> RepoResult<Arc<BlobOpener>> {
        if let Some(o) = self.openers.lock().get(&pack) {
            return Ok(o.clone());
        }
        let info = self.index.pack(pack);
        let o = Arc::new(
            BlobOpener::new(self.repo.keys(), &info.eph)
                .map_err(|e| RepoError::corrupt(format!("data/{}", info.id.short()), e))?,
        );
        let mut m = self.openers.lock();
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(pack, o.clone());
        Ok(o)
    }

    /// Decrypt and verify a blob whose ciphertext was already fetched.
    pub fn open(&self, loc: &BlobLocation, ciphertext: &[u8]) -> RepoResult<Vec<u8>> {
        let info = self.index.pack(loc.pack);
        self.opener(loc.pack)?.open(self.repo.keys(), &loc.entry, ciphertext).map_err(|e| {
            RepoError::corrupt(format!("data/{} (blob {})", info.id.short(), loc.entry.id.short()), e)
        })
    }

    /// Read one copy of a blob (a single aligned range request), authenticated and verified.
    pub fn read_at(&self, loc: &BlobLocation) -> RepoResult<Vec<u8>> {
        let info = self.index.pack(loc.pack);
        let (off, len) = (u64::from(loc.entry.offset), u64::from(loc.entry.length));
        let (start, end) = read_range(off, off + len, info.size);
        let bytes =
            self.repo.storage().read(ObjectKind::Data, &info.id.to_hex(), Some((start, end - start)))?;
        let from = (off - start) as usize;
        let ct = bytes
            .get(from..from + len as usize)
            .ok_or_else(|| RepoError::Other(format!("data/{}: short read", info.id.short())))?;
        self.open(loc, ct)
    }

    /// Read one blob. A copy that fails authentication or verification is skipped for the
    /// next indexed copy (a blob stored twice, or a forged index entry listed first); the
    /// first copy's error is returned when none is sound.
    pub fn read(&self, id: &BlobId, by: &str) -> RepoResult<Vec<u8>> {
        self.read_accepting(id, by, None, &|_| true)
    }

    /// Like [`BlobReader::read`], but a copy counts as sound only if `accept` takes its
    /// plaintext (a bundle's id is random, so its readers check the keyed ids of the slices
    /// they use), and the copy at `skip` (one that already failed) is not read again.
    pub fn read_accepting(
        &self,
        id: &BlobId,
        by: &str,
        skip: Option<&BlobLocation>,
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> RepoResult<Vec<u8>> {
        let copies = self.index.copies(id);
        if copies.is_empty() {
            return Err(RepoError::MissingBlob { blob: id.short(), by: by.to_string() });
        }
        let mut first_err = None;
        for loc in copies.iter().filter(|l| skip.is_none_or(|s| s.pack != l.pack)) {
            match self.read_at(loc) {
                Ok(plain) if accept(&plain) => return Ok(plain),
                Ok(_) => {
                    first_err.get_or_insert_with(|| {
                        RepoError::Other(format!(
                            "data/{} (blob {}) does not hold the bytes {by} names: forged or damaged",
                            self.index.pack(loc.pack).id.short(),
                            id.short()
                        ))
                    });
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| {
            RepoError::Other(format!("blob {} has no other copy to read (needed by {by})", id.short()))
        }))
    }

    /// A tree blob's plaintext. Small tree packs are fetched whole once and kept: walking a
    /// snapshot reads thousands of trees from a few packs, and one request per tree costs a
    /// round trip each on remote storage.
    fn read_tree_blob(&self, loc: &BlobLocation) -> RepoResult<Vec<u8>> {
        let info = self.index.pack(loc.pack);
        if info.size > TREE_PACK_CACHE_MAX {
            return self.read_at(loc);
        }
        let cached = self.tree_packs.lock().0.get(&loc.pack).cloned();
        let pack = match cached {
            Some(p) => p,
            None => {
                let bytes = Arc::new(self.repo.storage().read(ObjectKind::Data, &info.id.to_hex(), None)?);
                let mut c = self.tree_packs.lock();
                if c.1 + info.size > TREE_CACHE_BYTES {
                    c.0.clear();
                    c.1 = 0;
                }
                c.1 += info.size;
                c.0.insert(loc.pack, bytes.clone());
                bytes
            }
        };
        let (off, len) = (loc.entry.offset as usize, loc.entry.length as usize);
        let ct = pack.get(off..off.saturating_add(len)).ok_or_else(|| {
            RepoError::Other(format!("data/{}: shorter than the index says", info.id.short()))
        })?;
        self.open(loc, ct)
    }

    /// How many trees [`BlobReader::tree`] has decoded (lets tests prove a walk skipped subtrees).
    pub fn trees_read(&self) -> u64 {
        self.trees_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Read and parse a tree blob.
    pub fn tree(&self, id: &BlobId, by: &str) -> RepoResult<Tree> {
        let loc = self.locate(id, by)?;
        // A forged entry listed first may give the id another type: prefer a copy indexed as a
        // tree.
        let loc = self
            .index
            .copies(id)
            .into_iter()
            .find(|l| l.entry.ty == offsite_format::BlobType::Tree)
            .unwrap_or(loc);
        if loc.entry.ty != offsite_format::BlobType::Tree {
            return Err(RepoError::Other(format!(
                "blob {} named as a tree by {by} is a {} blob",
                id.short(),
                loc.entry.ty
            )));
        }
        let bytes = match self.read_tree_blob(&loc) {
            Ok(b) => b,
            // Another copy of the tree, if one is indexed, may be sound.
            Err(e) => match self.index.copies(id).iter().skip(1).find_map(|l| self.read_at(l).ok()) {
                Some(b) => b,
                None => return Err(e),
            },
        };
        self.trees_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        serde_json::from_slice(&bytes).map_err(|e| {
            RepoError::corrupt(
                format!("tree {}", id.short()),
                offsite_format::FormatError::Json(e.to_string()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_aligned_and_never_exactly_the_bytes_asked_for() {
        const A: u64 = READ_ALIGN;
        // Unaligned: widened to the boundaries around it.
        assert_eq!(read_range(100, 5000, 1 << 24), (0, A));
        assert_eq!(read_range(A + 100, A + 5000, 1 << 24), (A, 2 * A));
        // Clipped at the pack's end.
        assert_eq!(read_range(A + 4, 2 * A - 100, 2 * A - 10), (A, 2 * A - 10));
        // Already aligned (a first blob of one block): one more block, so not exactly the blob.
        assert_eq!(read_range(0, A, 1 << 24), (0, 2 * A));
        assert_eq!(read_range(A, 2 * A, 2 * A + 1), (A, 2 * A + 1));
        // Aligned and reaching the end (not a blob): one block earlier instead.
        assert_eq!(read_range(2 * A, 3 * A, 3 * A), (A, 3 * A));
        for (start, end, size) in [(0, 17, 20_000), (A, 2 * A, 2 * A + 1), (123, A, A + 1), (0, A, A)] {
            let (from, to) = read_range(start, end, size);
            assert!(from <= start && to >= end && to <= size, "{start}..{end} of {size}");
            assert!((from, to) != (start, end) || (start, end) == (0, size), "{start}..{end} of {size}");
        }
    }
}
