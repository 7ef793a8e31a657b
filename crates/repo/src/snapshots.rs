//! Snapshots: list, load, save, and the rollback check over the authenticated snapshot DAG.
//!
//! Each snapshot names every snapshot its writer saw listed (`seen`); `forget` leaves a
//! [`ForgetRecord`] naming what it removed. A snapshot that is named (by another snapshot, or by
//! this client's own record of what it saw last time) but neither listed nor forgotten means the
//! storage lost it or serves an older state: that is refused with [`RepoError::Rollback`].

use std::collections::{BTreeSet, HashSet};

use offsite_backend::{failpoint, ObjectKind};
use offsite_format::{
    open_record, peek, seal_record, storage_id, verify_sealed_record, ForgetRecord, RecordType, Snapshot,
    SnapshotId, FORMAT_VERSION,
};
use rayon::prelude::*;

use crate::cache::{read_optional, write_atomic_if_changed};
use crate::error::{RepoError, RepoResult};
use crate::repository::{read_verified, Repository};
use crate::select::{snapshot_time, sort_snapshots};

/// What the `snapshots/` directory holds, decrypted as far as the key allows.
#[derive(Debug, Default)]
pub struct SnapshotSet {
    /// every listed snapshot id (not forget records)
    pub ids: Vec<SnapshotId>,
    /// decoded snapshots, oldest first by time value, ties by id (full keys only; empty for
    /// backup-only keys)
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
    /// snapshots removed by forget
    pub forgotten: HashSet<SnapshotId>,
    /// ids of the forget records listed
    pub forget_records: Vec<SnapshotId>,
    /// whether this client had no record of the repository's snapshots (a new machine, a lost
    /// cache, `--no-cache`): rollback detection had nothing of its own to compare with
    pub first_open: bool,
}

impl SnapshotSet {
    /// The repository state digest: 16 hex characters naming exactly the set of objects listed
    /// in `snapshots/` (snapshots and forget records). Two clients that print the same digest
    /// see the same snapshots; a user carries trust to a new machine by comparing it (or with
    /// `--expect-latest`). See docs/FORMAT.md §10.
    pub fn state_digest(&self) -> String {
        state_digest(self.ids.iter().chain(&self.forget_records))
    }

    /// The digest after adding `id` (what a backup prints once its snapshot is stored).
    pub fn state_digest_with(&self, id: SnapshotId) -> String {
        state_digest(self.ids.iter().chain(&self.forget_records).chain(std::iter::once(&id)))
    }
}

/// `blake3::derive_key("offsite 2026-12 repository state", sorted ids)`, first 8 bytes, hex.
fn state_digest<'a>(ids: impl Iterator<Item = &'a SnapshotId>) -> String {
    let mut sorted: Vec<&SnapshotId> = ids.collect();
    sorted.sort();
    sorted.dedup();
    let material: Vec<u8> = sorted.iter().flat_map(|id| id.0).collect();
    hex::encode(&blake3::derive_key("offsite 2026-12 repository state", &material)[..8])
}

/// A snapshot named as existing (by a listed snapshot's `seen`, or by this client's record of
/// what it saw) that is neither listed nor removed by a forget record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSnapshot {
    /// the missing snapshot
    pub id: SnapshotId,
    /// how it is known to have existed, e.g. "named by snapshot ab12cd34"
    pub how: String,
}

enum Entry {
    Snap(SnapshotId, Option<Box<Snapshot>>),
    Forget(SnapshotId, ForgetRecord),
}

impl Repository {
    /// List and decode `snapshots/`, then verify nothing seen before is missing (see module doc).
    /// Records the verified set as this client's new tips.
    pub fn snapshot_set(&self) -> RepoResult<SnapshotSet> {
        let set = self.load_snapshot_set()?;
        if let Some(m) = self.missing_in(&set)?.into_iter().next() {
            return Err(RepoError::Rollback { snapshot: m.id.short(), how: m.how });
        }
        if let Some(want) = self.expected_latest() {
            let known = |id: &SnapshotId| id.to_hex().starts_with(want);
            if !set.ids.iter().chain(set.forgotten.iter()).any(known) {
                return Err(RepoError::Other(format!(
                    "snapshot {want} (--expect-latest) is not in repository {}: the storage serves an older \
                     state of it, or the id is mistyped; `offsite snapshots` on a machine you trust shows the newest",
                    self.location()
                )));
            }
        }
        self.save_tips(&set.ids)?;
        Ok(set)
    }

    /// Every snapshot known to have existed that is gone without a forget record (see
    /// [`MissingSnapshot`]), without failing on them: what `forget --missing` shows the owner
    /// before it acknowledges them.
    pub fn missing_snapshots(&self) -> RepoResult<Vec<MissingSnapshot>> {
        let set = self.load_snapshot_set()?;
        self.missing_in(&set)
    }

    /// Acknowledge snapshots as gone: a forget record names them (docs/FORMAT.md §10), so
    /// neither this client nor any other reports them as missing again. Full key only: the
    /// owner decides, after seeing what was lost. Refuses an id that is still listed.
    pub fn acknowledge_missing(&self, ids: Vec<SnapshotId>) -> RepoResult<SnapshotId> {
        self.require_full()?;
        let listed: HashSet<SnapshotId> = self
            .storage()
            .list(ObjectKind::Snapshot)?
            .into_iter()
            .filter_map(|(id, _)| SnapshotId::from_hex(&id).ok())
            .collect();
        if let Some(id) = ids.iter().find(|id| listed.contains(id)) {
            return Err(RepoError::Other(format!(
                "snapshot {} is not missing: it is still listed; forget it instead",
                id.short()
            )));
        }
        self.save_forget_record(ids)
    }

    fn load_snapshot_set(&self) -> RepoResult<SnapshotSet> {
        let listed = self.storage().list(ObjectKind::Snapshot)?;
        let full = self.is_full();
        let entries: Vec<Entry> =
            listed.par_iter().map(|(id, _)| self.load_entry(id, full)).collect::<RepoResult<_>>()?;
        let mut set = SnapshotSet::default();
        for e in entries {
            match e {
                Entry::Snap(id, snap) => {
                    set.ids.push(id);
                    if let Some(s) = snap {
                        set.snapshots.push((id, *s));
                    }
                }
                Entry::Forget(id, f) => {
                    set.forget_records.push(id);
                    set.forgotten.extend(f.removed);
                }
            }
        }
        sort_snapshots(&mut set.snapshots);
        set.ids.sort();
        set.forget_records.sort();
        set.first_open = match self.tips_path() {
            Some(p) => read_optional(&p)?.is_none(),
            None => true,
        };
        Ok(set)
    }

    fn load_entry(&self, id: &str, full: bool) -> RepoResult<Entry> {
        let object = format!("snapshots/{}", &id[..8]);
        let sid = SnapshotId::from_hex(id).map_err(|e| RepoError::corrupt(&object, e))?;
        let bytes = read_verified(&**self.storage(), ObjectKind::Snapshot, id)?;
        let (_, ty) = peek(&bytes).map_err(|e| RepoError::corrupt(&object, e))?;
        if ty == Some(RecordType::ForgetRecord) {
            let f: ForgetRecord = open_record(RecordType::ForgetRecord, self.keys(), &bytes)
                .map_err(|e| RepoError::corrupt(&object, e))?;
            self.check_repo(&object, &f.repository)?;
            return Ok(Entry::Forget(sid, f));
        }
        if !full {
            // A backup-only key cannot open a snapshot, but checks that a key holder wrote it
            // (its MAC), so the storage cannot plant one that later counts as seen.
            verify_sealed_record(RecordType::Snapshot, self.keys(), &bytes)
                .map_err(|e| RepoError::corrupt(&object, e))?;
            return Ok(Entry::Snap(sid, None));
        }
        let s: Snapshot = open_record(RecordType::Snapshot, self.keys(), &bytes)
            .map_err(|e| RepoError::corrupt(&object, e))?;
        self.check_repo(&object, &s.repository)?;
        if snapshot_time(&s).is_none() {
            return Err(RepoError::Other(format!(
                "{object} is refused: its time {:?} is not an RFC 3339 time (offsite never writes one; the snapshot is damaged or forged)",
                s.time
            )));
        }
        Ok(Entry::Snap(sid, Some(Box::new(s))))
    }

    fn check_repo(&self, object: &str, repo: &offsite_format::RepoId) -> RepoResult<()> {
        if *repo != self.config().id {
            return Err(RepoError::Other(format!(
                "{object} belongs to repository {}, not to this one ({}): the storage mixed repositories",
                repo.short(),
                self.config().id.short()
            )));
        }
        Ok(())
    }

    /// Whether this client keeps a record of the snapshots it saw in this repository (its
    /// cache holds one): without it, rollback detection has only the snapshots' own `seen`
    /// lists (docs/FORMAT.md §10).
    pub fn has_local_record(&self) -> bool {
        self.tips_path().is_some_and(|p| p.exists())
    }

    fn tips_path(&self) -> Option<std::path::PathBuf> {
        self.cache_dir().map(|d| d.join("snapshots-seen"))
    }

    fn missing_in(&self, set: &SnapshotSet) -> RepoResult<Vec<MissingSnapshot>> {
        let listed: HashSet<_> = set.ids.iter().copied().collect();
        let gone = |id: &SnapshotId| !listed.contains(id) && !set.forgotten.contains(id);
        let mut out: Vec<MissingSnapshot> = Vec::new();
        let mut push = |id: SnapshotId, how: String| {
            if !out.iter().any(|m| m.id == id) {
                out.push(MissingSnapshot { id, how });
            }
        };
        for (sid, s) in &set.snapshots {
            for m in s.seen.iter().filter(|id| gone(id)) {
                push(*m, format!("named by snapshot {}", sid.short()));
            }
        }
        if let Some(path) = self.tips_path() {
            if let Some(bytes) = read_optional(&path)? {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    if let Ok(id) = SnapshotId::from_hex(line.trim()) {
                        if gone(&id) {
                            push(id, format!("this client saw it earlier; record in {}", path.display()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn save_tips(&self, ids: &[SnapshotId]) -> RepoResult<()> {
        if let Some(path) = self.tips_path() {
            let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
            write_atomic_if_changed(&path, text.as_bytes())?;
        }
        Ok(())
    }

    /// Store a snapshot (the commit point of a backup) and add it to this client's tips.
    pub fn save_snapshot(&self, snap: &Snapshot) -> RepoResult<SnapshotId> {
        let bytes = seal_record(RecordType::Snapshot, self.keys(), snap);
        let id = SnapshotId(storage_id(&bytes));
        self.storage().write(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        failpoint::hit("snapshot.written");
        if let Some(path) = self.tips_path() {
            let mut ids: BTreeSet<SnapshotId> = BTreeSet::new();
            if let Some(b) = read_optional(&path)? {
                ids.extend(
                    String::from_utf8_lossy(&b).lines().filter_map(|l| SnapshotId::from_hex(l.trim()).ok()),
                );
            }
            ids.insert(id);
            self.save_tips(&ids.into_iter().collect::<Vec<_>>())?;
        }
        Ok(id)
    }

    /// Record that snapshots were removed on purpose (written before they are deleted).
    pub fn save_forget_record(&self, removed: Vec<SnapshotId>) -> RepoResult<SnapshotId> {
        let rec = ForgetRecord {
            version: FORMAT_VERSION,
            repository: self.config().id,
            time: crate::repository::now_rfc3339(),
            removed,
        };
        let bytes = seal_record(RecordType::ForgetRecord, self.keys(), &rec);
        let id = SnapshotId(storage_id(&bytes));
        self.storage().write(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }
}
