//! Snapshots: list, load, save, and the rollback check over the authenticated snapshot DAG.
//!
//! Each snapshot names every snapshot its writer saw listed (`seen`); `forget` leaves a
//! [`ForgetRecord`] naming what it removed. A snapshot that is named (by another snapshot, or by
//! this client's own record of what it saw last time) but neither listed nor forgotten means the
//! storage lost it or serves an older state: that is refused with [`RepoError::Rollback`].

use std::collections::{BTreeSet, HashSet};

use offsite_backend::{failpoint, ObjectKind};
use offsite_format::{
    open_record, peek, seal_record, storage_id, ForgetRecord, RecordType, Snapshot, SnapshotId,
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
}

enum Entry {
    Snap(SnapshotId, Option<Box<Snapshot>>),
    Forget(ForgetRecord),
}

impl Repository {
    /// List and decode `snapshots/`, then verify nothing seen before is missing (see module doc).
    /// Records the verified set as this client's new tips.
    pub fn snapshot_set(&self) -> RepoResult<SnapshotSet> {
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
                Entry::Forget(f) => set.forgotten.extend(f.removed),
            }
        }
        sort_snapshots(&mut set.snapshots);
        set.ids.sort();
        self.verify_no_rollback(&set)?;
        self.save_tips(&set.ids)?;
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
            return Ok(Entry::Forget(f));
        }
        if !full {
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

    fn tips_path(&self) -> Option<std::path::PathBuf> {
        self.cache_dir().map(|d| d.join("snapshots-seen"))
    }

    fn verify_no_rollback(&self, set: &SnapshotSet) -> RepoResult<()> {
        let listed: HashSet<_> = set.ids.iter().copied().collect();
        let gone = |id: &SnapshotId| !listed.contains(id) && !set.forgotten.contains(id);
        for (sid, s) in &set.snapshots {
            if let Some(m) = s.seen.iter().find(|id| gone(id)) {
                return Err(RepoError::Rollback {
                    snapshot: m.short(),
                    how: format!("named by snapshot {}", sid.short()),
                });
            }
        }
        if let Some(path) = self.tips_path() {
            if let Some(bytes) = read_optional(&path)? {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    if let Ok(id) = SnapshotId::from_hex(line.trim()) {
                        if gone(&id) {
                            return Err(RepoError::Rollback {
                                snapshot: id.short(),
                                how: format!("this client saw it earlier; record in {}", path.display()),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
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
            version: 1,
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
