//! The bundle log: which small files' contents went into which bundle, kept in the local cache
//! (`bundle-log`, never uploaded) until the backup's snapshot is written.
//!
//! A bundle's id is random (docs/FORMAT.md §8.2), so a backup rerun after an interruption
//! cannot find the small files the interrupted run stored by their content, as it finds
//! chunks: without this log it would read and store every one of them again. Each bundle is
//! logged before it is handed to the writer (so before its pack is journaled and uploaded):
//! its id and, per file, the keyed hash of the file's content with its offset and length. The
//! next backup reuses a logged slice for a small file whose content hashes the same, if the
//! bundle is indexed (its pack was indexed, or adopted from the pack journal); otherwise the
//! entry is dropped. A successful backup empties the log (its files cache now names those
//! slices).
//!
//! Layout (docs/FORMAT.md §12.2): the header line `offsite bundle log 1\n`, then [`offsite_repo::RecordLog`] records
//! whose body is `bundle id (32) ‖ n × (content id (32) ‖ u32le offset ‖ u32le length)`. A torn
//! or damaged record ends the list (those files are stored again). One process uses the log at
//! a time (it is locked); a concurrent backup through the same cache runs without one.

use std::collections::HashMap;
use std::path::Path;

use offsite_format::{BlobId, ContentItem};
use offsite_repo::{Index, RecordLog};

/// The log's file name in the repository's cache directory.
pub const BUNDLE_LOG_FILE: &str = "bundle-log";
const HEADER: &[u8] = b"offsite bundle log 1\n";
const MEMBER: usize = 32 + 4 + 4;

/// One file's content in a bundle: its keyed content id, offset and length.
pub type Member = ([u8; 32], u32, u32);

/// An open, locked bundle log.
#[derive(Debug)]
pub struct BundleLog(RecordLog);

/// What an interrupted backup logged: content id -> the slice holding that content.
pub type Logged = HashMap<[u8; 32], ContentItem>;

impl BundleLog {
    /// Open the log in `dir` and keep the entries whose bundle `index` holds (the rest are
    /// dropped from the file too). `None` if the log cannot be opened or another process
    /// holds it: the backup then runs without one.
    pub fn open(dir: &Path, index: &Index) -> Option<(BundleLog, Logged)> {
        let (mut log, bodies) = RecordLog::open(&dir.join(BUNDLE_LOG_FILE), HEADER).ok().flatten()?;
        let mut logged = Logged::new();
        let mut keep = Vec::new();
        for body in &bodies {
            let Some((bundle, members)) = body.split_first_chunk::<32>() else { continue };
            let bundle = BlobId(*bundle);
            if members.len() % MEMBER != 0 || !index.contains(&bundle) {
                continue;
            }
            for m in members.chunks_exact(MEMBER) {
                let (id, rest) = m.split_first_chunk::<32>()?;
                let (offset, length) = rest.split_at(4);
                let offset = u32::from_le_bytes(offset.try_into().ok()?);
                let length = u32::from_le_bytes(length.try_into().ok()?);
                logged.insert(*id, ContentItem::Slice { bundle, offset, length, id: BlobId(*id) });
            }
            keep.push(body.as_slice());
        }
        log.rewrite(keep).ok()?;
        Some((BundleLog(log), logged))
    }

    /// Log a bundle about to be stored. A failure is returned for the caller to drop the log
    /// (the backup goes on; a rerun would store those files again).
    pub fn append(&mut self, bundle: &BlobId, members: &[Member]) -> offsite_repo::RepoResult<()> {
        let mut body = Vec::with_capacity(32 + members.len() * MEMBER);
        body.extend_from_slice(&bundle.0);
        for (id, offset, length) in members {
            body.extend_from_slice(id);
            body.extend_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(&length.to_le_bytes());
        }
        self.0.append(&body)
    }

    /// Forget everything (the backup's snapshot and files cache are written).
    pub fn clear(&mut self) -> offsite_repo::RepoResult<()> {
        self.0.rewrite([])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use offsite_format::{BlobType, PackEntry, PackId};
    use offsite_repo::PackInfo;

    fn index_with(bundles: &[BlobId]) -> Index {
        let index = Index::default();
        let entries: Vec<PackEntry> = bundles
            .iter()
            .map(|id| PackEntry {
                ty: BlobType::Bundle,
                id: *id,
                offset: 0,
                length: 100,
                raw_length: 90,
                nonce: 0,
            })
            .collect();
        index.add_pack(PackInfo { id: PackId([9; 32]), eph: [1; 32], size: 1000 }, &entries);
        index
    }

    #[test]
    fn logged_slices_of_indexed_bundles_come_back_and_the_others_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (stored, lost) = (BlobId([1; 32]), BlobId([2; 32]));
        let (mut log, logged) = BundleLog::open(dir.path(), &Index::default()).unwrap();
        assert!(logged.is_empty());
        log.append(&stored, &[([10; 32], 0, 5), ([11; 32], 5, 7)]).unwrap();
        log.append(&lost, &[([12; 32], 0, 3)]).unwrap();
        drop(log);

        // Only `stored` reached the index: its files come back, `lost`'s are dropped for good.
        let (log, logged) = BundleLog::open(dir.path(), &index_with(&[stored])).unwrap();
        assert_eq!(logged.len(), 2);
        assert_eq!(
            logged[&[11; 32]],
            ContentItem::Slice { bundle: stored, offset: 5, length: 7, id: BlobId([11; 32]) }
        );
        assert!(!logged.contains_key(&[12; 32]));
        drop(log);
        let (mut log, logged) = BundleLog::open(dir.path(), &index_with(&[stored, lost])).unwrap();
        assert_eq!(logged.len(), 2, "the lost bundle's entry was removed from the file");

        // Held by one process: a second open gets nothing. Cleared: nothing comes back.
        assert!(BundleLog::open(dir.path(), &Index::default()).is_none());
        log.clear().unwrap();
        drop(log);
        assert!(BundleLog::open(dir.path(), &index_with(&[stored])).unwrap().1.is_empty());
    }
}
