//! Reading blobs back: locate, fetch a range, authenticate, decrypt, decompress, verify the id.

use std::collections::HashMap;
use std::sync::Arc;

use offsite_backend::ObjectKind;
use offsite_format::{BlobId, BlobOpener, Tree};
use parking_lot::Mutex;

use crate::error::{RepoError, RepoResult};
use crate::index::{BlobLocation, Index};
use crate::repository::Repository;

/// Range reads are widened to this alignment so no request length equals one blob's length.
pub const READ_ALIGN: u64 = 4096;

/// Reads and verifies blobs (full keys only).
pub struct BlobReader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    openers: Mutex<HashMap<u32, Arc<BlobOpener>>>,
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
        Ok(BlobReader { repo, index, openers: Mutex::new(HashMap::new()) })
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

    /// Read one blob (a single aligned range request).
    pub fn read(&self, id: &BlobId, by: &str) -> RepoResult<Vec<u8>> {
        let loc = self.locate(id, by)?;
        let info = self.index.pack(loc.pack);
        let (off, len) = (u64::from(loc.entry.offset), u64::from(loc.entry.length));
        let start = off - off % READ_ALIGN;
        let end = (off + len).div_ceil(READ_ALIGN).saturating_mul(READ_ALIGN).min(info.size).max(off + len);
        let bytes =
            self.repo.storage().read(ObjectKind::Data, &info.id.to_hex(), Some((start, end - start)))?;
        let from = (off - start) as usize;
        let ct = bytes
            .get(from..from + len as usize)
            .ok_or_else(|| RepoError::Other(format!("data/{}: short read", info.id.short())))?;
        self.open(&loc, ct)
    }

    /// Read and parse a tree blob.
    pub fn tree(&self, id: &BlobId, by: &str) -> RepoResult<Tree> {
        if self.locate(id, by)?.entry.ty != offsite_format::BlobType::Tree {
            return Err(RepoError::Other(format!(
                "blob {} named as a tree by {by} is a data blob",
                id.short()
            )));
        }
        let bytes = self.read(id, by)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            RepoError::corrupt(
                format!("tree {}", id.short()),
                offsite_format::FormatError::Json(e.to_string()),
            )
        })
    }
}
