//! The in-memory index: blob id -> pack and position. Loaded from every `index/` object.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use offsite_backend::{ObjectKind, Storage};
use offsite_crypto::KeySet;
use offsite_format::{open_record, BlobId, IndexFile, IndexPack, PackEntry, PackId, RecordType};
use parking_lot::RwLock;
use rayon::prelude::*;

use crate::error::{RepoError, RepoResult};
use crate::repository::read_verified;

/// Every pack named by an index object, split into those the storage lists and those it does
/// not (in index listing order).
fn load_split(storage: &dyn Storage, keys: &KeySet) -> RepoResult<(Vec<IndexPack>, Vec<IndexPack>)> {
    let ids = storage.list(ObjectKind::Index)?;
    let files: Vec<IndexFile> = ids
        .par_iter()
        .map(|(id, _)| {
            let bytes = read_verified(storage, ObjectKind::Index, id)?;
            let object = format!("index/{}", &id[..8]);
            open_record(RecordType::Index, keys, &bytes).map_err(|e| RepoError::corrupt(&object, e))
        })
        .collect::<RepoResult<_>>()?;
    // Listed after the index objects were read: a pack is stored before any index names it,
    // so a pack named above and not listed now is gone, not still on its way.
    let stored: HashSet<String> = storage.list(ObjectKind::Data)?.into_iter().map(|(id, _)| id).collect();
    Ok(files.into_iter().flat_map(|f| f.packs).partition(|p| stored.contains(&p.id.to_hex())))
}

/// Blob ids are keyed hashes, already uniform: their first 8 bytes are the hash.
#[derive(Default)]
pub struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (i * 8);
        }
    }
}
type IdMap<V> = HashMap<BlobId, V, BuildHasherDefault<IdHasher>>;

/// Where a blob is: its pack (an index into the pack table) and its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// index into [`Index::packs`]
    pub pack: u32,
    /// the pack header entry
    pub entry: PackEntry,
}

/// One pack known to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackInfo {
    /// storage name
    pub id: PackId,
    /// ephemeral public key (derives the pack key)
    pub eph: [u8; 32],
    /// stored size
    pub size: u64,
}

#[derive(Default)]
struct Inner {
    blobs: IdMap<(u32, PackEntry)>,
    /// further copies of blobs listed in more than one pack (rare: concurrent writers, reruns,
    /// or a forgery): a reader falls back to them when the first copy fails verification
    others: IdMap<Vec<(u32, PackEntry)>>,
    packs: Vec<PackInfo>,
    pack_pos: HashMap<PackId, u32>,
}

/// Thread-safe index of every blob in the repository.
#[derive(Default)]
pub struct Index {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.read();
        f.debug_struct("Index").field("blobs", &i.blobs.len()).field("packs", &i.packs.len()).finish()
    }
}

impl Index {
    /// Read and merge every index object (in parallel). A blob stored in several packs is
    /// located in one the storage lists, if any: a copy in a pack that was lost or deleted is
    /// used only when there is no other, so reading it names the missing pack.
    pub fn load(storage: &dyn Storage, keys: &KeySet) -> RepoResult<Index> {
        let (present, missing) = load_split(storage, keys)?;
        let index = Index::default();
        for p in present.iter().chain(&missing) {
            index.add_pack(PackInfo { id: p.id, eph: p.eph, size: p.size }, &p.blobs);
        }
        Ok(index)
    }

    /// Like [`Index::load`], but leaves out every pack the storage does not list, and returns
    /// those packs (sorted). A writer uses it so that a pack that was lost (a write the storage
    /// acknowledged and dropped) or deleted is stored again instead of deduplicated against;
    /// the files cache then reads the files it held again, as their blobs are not indexed.
    pub fn load_present(storage: &dyn Storage, keys: &KeySet) -> RepoResult<(Index, Vec<PackId>)> {
        let (present, missing) = load_split(storage, keys)?;
        let index = Index::default();
        for p in &present {
            index.add_pack(PackInfo { id: p.id, eph: p.eph, size: p.size }, &p.blobs);
        }
        let missing: BTreeSet<PackId> = missing.iter().map(|p| p.id).collect();
        Ok((index, missing.into_iter().collect()))
    }

    /// Add a pack and its blobs (a blob already known keeps its first location).
    pub fn add_pack(&self, info: PackInfo, entries: &[PackEntry]) {
        let mut i = self.inner.write();
        let pos = match i.pack_pos.get(&info.id) {
            Some(p) => *p,
            None => {
                let p = u32::try_from(i.packs.len()).expect("fewer than 2^32 packs");
                i.pack_pos.insert(info.id, p);
                i.packs.push(info);
                p
            }
        };
        i.blobs.reserve(entries.len());
        let mut again = Vec::new();
        for e in entries {
            match i.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((pos, *e));
                }
                std::collections::hash_map::Entry::Occupied(o) if o.get().0 != pos => again.push(*e),
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
        }
        for e in again {
            let copies = i.others.entry(e.id).or_default();
            if !copies.iter().any(|(p, _)| *p == pos) {
                copies.push((pos, e));
            }
        }
    }

    /// Every indexed copy of a blob, the one [`Index::get`] returns first.
    pub fn copies(&self, id: &BlobId) -> Vec<BlobLocation> {
        let i = self.inner.read();
        let first = i.blobs.get(id).map(|(pack, entry)| BlobLocation { pack: *pack, entry: *entry });
        let others = i.others.get(id).into_iter().flatten();
        first
            .into_iter()
            .chain(others.map(|(pack, entry)| BlobLocation { pack: *pack, entry: *entry }))
            .collect()
    }

    /// Blobs indexed in more than one pack, with every copy (for check).
    pub fn duplicated(&self) -> Vec<(BlobId, Vec<BlobLocation>)> {
        let ids: Vec<BlobId> = self.inner.read().others.keys().copied().collect();
        ids.into_iter().map(|id| (id, self.copies(&id))).collect()
    }

    /// Whether an index object (or this writer) already names the pack.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.inner.read().pack_pos.contains_key(id)
    }

    /// Whether the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.inner.read().blobs.contains_key(id)
    }

    /// Location of a blob.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.inner.read().blobs.get(id).map(|(pack, entry)| BlobLocation { pack: *pack, entry: *entry })
    }

    /// Pack info by table position.
    pub fn pack(&self, pos: u32) -> PackInfo {
        self.inner.read().packs[pos as usize].clone()
    }

    /// Every pack.
    pub fn packs(&self) -> Vec<PackInfo> {
        self.inner.read().packs.clone()
    }

    /// Every blob with its location (for check).
    pub fn blobs(&self) -> Vec<(BlobId, BlobLocation)> {
        self.inner
            .read()
            .blobs
            .iter()
            .map(|(id, (p, e))| (*id, BlobLocation { pack: *p, entry: *e }))
            .collect()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.inner.read().blobs.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
