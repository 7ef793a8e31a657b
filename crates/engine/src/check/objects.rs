//! The objects themselves: snapshots (and the DAG over them), index objects, and the pack
//! listing against the index. Each object is loaded on its own, so one damaged object is
//! reported and the rest still used.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use offsite_backend::ObjectKind;
use offsite_format::{
    open_record, parse_keyfile, peek, storage_id, ForgetRecord, IndexFile, IndexPack, PackId, RecordType,
    RepoId, Snapshot, SnapshotId,
};
use offsite_repo::{Index, PackInfo, RepoError, Repository};
use rayon::prelude::*;

use super::Findings;
use crate::error::EngineResult;
use crate::events::{Event, Reporter};

/// The index as loaded from its undamaged objects, plus each pack's own entry list.
pub(crate) struct LoadedIndex {
    /// blob -> location, for reading
    pub index: Arc<Index>,
    /// every pack named by some index object, with all its entries (the merged [`Index`] keeps
    /// only the first location of a blob stored twice)
    pub packs: HashMap<PackId, IndexPack>,
    /// every stored pack (id, size), as listed after the index objects were read
    pub stored: HashMap<String, u64>,
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

enum Listed {
    Snap(SnapshotId, Box<Snapshot>),
    Forget(Vec<SnapshotId>),
    Damaged(String),
}

/// Decoded snapshots sorted by time. Uses [`Repository::snapshot_set`] (which also checks
/// for rollback against this client's record); when that fails, reads every object on its
/// own, reports the damaged ones and checks the snapshot DAG itself.
pub(crate) fn load_snapshots(
    repo: &Repository,
    found: &mut Findings,
) -> EngineResult<Vec<(SnapshotId, Snapshot)>> {
    let first = match repo.snapshot_set() {
        Ok(set) => return Ok(set.snapshots),
        Err(e) => e,
    };
    let mut listed: Vec<String> = repo
        .storage()
        .list(ObjectKind::Snapshot)
        .map_err(RepoError::from)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    listed.sort();
    let loaded: Vec<(String, Listed)> =
        listed.par_iter().map(|id| (id.clone(), load_snapshot_object(repo, id))).collect();
    let mut present: HashSet<SnapshotId> = HashSet::new();
    let mut forgotten: HashSet<SnapshotId> = HashSet::new();
    let mut snaps = Vec::new();
    for (id, entry) in loaded {
        if let Ok(sid) = SnapshotId::from_hex(&id) {
            present.insert(sid);
        }
        match entry {
            Listed::Snap(sid, s) => snaps.push((sid, *s)),
            Listed::Forget(removed) => forgotten.extend(removed),
            Listed::Damaged(msg) => {
                found.problems.add(format!("snapshots/{}", short(&id)), msg);
            }
        }
    }
    let mut lost = 0;
    let mut reported: HashSet<SnapshotId> = HashSet::new();
    for (sid, s) in &snaps {
        for m in &s.seen {
            if !present.contains(m) && !forgotten.contains(m) && reported.insert(*m) {
                lost += 1;
                found.problems.add(
                    format!("snapshots/{}", m.short()),
                    format!(
                        "missing, but snapshot {} names it: the storage lost it or serves an older state of the repository",
                        sid.short()
                    ),
                );
            }
        }
    }
    if lost == 0 {
        if let RepoError::Rollback { .. } = first {
            // Known missing only from this client's own record of what it saw.
            found.problems.add("snapshots/".to_string(), first.to_string());
        }
    }
    offsite_repo::sort_snapshots(&mut snaps);
    Ok(snaps)
}

fn load_snapshot_object(repo: &Repository, id: &str) -> Listed {
    let result = (|| -> Result<Listed, String> {
        let sid = SnapshotId::from_hex(id).map_err(|e| e.to_string())?;
        let bytes = repo.storage().read(ObjectKind::Snapshot, id, None).map_err(|e| e.to_string())?;
        if hex::encode(storage_id(&bytes)) != id {
            return Err("its content does not match its name".into());
        }
        let (_, ty) = peek(&bytes).map_err(|e| e.to_string())?;
        if ty == Some(RecordType::ForgetRecord) {
            let f: ForgetRecord =
                open_record(RecordType::ForgetRecord, repo.keys(), &bytes).map_err(|e| e.to_string())?;
            same_repo(repo, &f.repository)?;
            return Ok(Listed::Forget(f.removed));
        }
        let s: Snapshot =
            open_record(RecordType::Snapshot, repo.keys(), &bytes).map_err(|e| e.to_string())?;
        same_repo(repo, &s.repository)?;
        if offsite_repo::snapshot_time(&s).is_none() {
            return Err(format!("its time {:?} is not an RFC 3339 time: damaged or forged", s.time));
        }
        Ok(Listed::Snap(sid, Box::new(s)))
    })();
    result.unwrap_or_else(Listed::Damaged)
}

fn same_repo(repo: &Repository, id: &RepoId) -> Result<(), String> {
    if *id == repo.config().id {
        Ok(())
    } else {
        Err(format!("belongs to repository {}, not to this one ({})", id.short(), repo.config().id.short()))
    }
}

/// Every key file: its bytes hash to its name, it parses as a key file, and it belongs to this
/// repository. (Only the passphrase that wraps a key can unlock it; a damaged key file is still
/// found here, before its passphrase stops opening the repository.)
pub(crate) fn check_keys(repo: &Repository, found: &mut Findings) -> EngineResult<()> {
    let mut listed: Vec<String> = repo
        .storage()
        .list(ObjectKind::Key)
        .map_err(RepoError::from)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    listed.sort();
    for id in listed {
        let result = (|| -> Result<(), String> {
            let bytes = repo.storage().read(ObjectKind::Key, &id, None).map_err(|e| e.to_string())?;
            if hex::encode(storage_id(&bytes)) != id {
                return Err("its content does not match its name".into());
            }
            let kf = parse_keyfile(&bytes).map_err(|e| format!("does not decode as a key file: {e}"))?;
            same_repo(repo, &kf.repository)
        })();
        if let Err(msg) = result {
            found.problems.add(format!("keys/{}", short(&id)), msg);
        }
    }
    Ok(())
}

/// Every index object, read one by one: damaged ones become problems, the rest are merged.
pub(crate) fn load_index(repo: &Repository, found: &mut Findings) -> EngineResult<LoadedIndex> {
    let mut listed: Vec<String> = repo
        .storage()
        .list(ObjectKind::Index)
        .map_err(RepoError::from)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    listed.sort();
    let files: Vec<(String, Result<IndexFile, String>)> = listed
        .par_iter()
        .map(|id| {
            let r = repo.storage().read(ObjectKind::Index, id, None).map_err(|e| e.to_string()).and_then(
                |bytes| {
                    if hex::encode(storage_id(&bytes)) != *id {
                        return Err("its content does not match its name".to_string());
                    }
                    open_record::<IndexFile>(RecordType::Index, repo.keys(), &bytes)
                        .map_err(|e| e.to_string())
                },
            );
            (id.clone(), r)
        })
        .collect();
    let mut packs: HashMap<PackId, IndexPack> = HashMap::new();
    let mut order: Vec<IndexPack> = Vec::new();
    for (id, file) in files {
        match file {
            Ok(f) => {
                for p in f.packs {
                    packs.entry(p.id).or_insert_with(|| p.clone());
                    order.push(p);
                }
            }
            Err(msg) => {
                found.problems.add(format!("index/{}", short(&id)), msg);
            }
        }
    }
    // Listed after the index objects were read (packs are stored before an index names them).
    // A blob stored twice is located in a pack that is there with its recorded size, if any,
    // as readers do: a copy stored again after a pack was lost is not reported as lost.
    let stored: HashMap<String, u64> =
        repo.storage().list(ObjectKind::Data).map_err(RepoError::from)?.into_iter().collect();
    let sound = |p: &IndexPack| stored.get(&p.id.to_hex()) == Some(&p.size);
    let index = Index::default();
    for p in order.iter().filter(|p| sound(p)).chain(order.iter().filter(|p| !sound(p))) {
        index.add_pack(PackInfo { id: p.id, eph: p.eph, size: p.size }, &p.blobs);
    }
    Ok(LoadedIndex { index: Arc::new(index), packs, stored })
}

/// Packs agree with the index: each indexed pack exists with its recorded size (else a
/// problem, its blobs marked bad, the pack not read again). Stored packs no index names are
/// counted and reported as warnings. Returns that count.
pub(crate) fn check_packs(
    loaded: &LoadedIndex,
    found: &mut Findings,
    reporter: &dyn Reporter,
) -> EngineResult<u64> {
    let stored = &loaded.stored;
    let mut packs: Vec<&IndexPack> = loaded.packs.values().collect();
    packs.sort_by_key(|p| p.id);
    for p in packs {
        let message = match stored.get(&p.id.to_hex()) {
            None => "missing (the index names it)".to_string(),
            Some(&size) if size != p.size => format!("is {size} bytes, but the index says {}", p.size),
            Some(_) => continue,
        };
        let idx = found.problems.add(format!("data/{}", p.id.short()), message);
        found.unusable.insert(p.id);
        for e in &p.blobs {
            // Readers use a copy in a sound pack when there is one: that blob is not lost.
            if loaded.index.get(&e.id).is_none_or(|l| loaded.index.pack(l.pack).id == p.id) {
                found.mark(e.id, idx);
            }
        }
    }
    let mut extra: Vec<&String> = stored
        .keys()
        .filter(|id| PackId::from_hex(id).map_or(true, |p| !loaded.packs.contains_key(&p)))
        .collect();
    extra.sort();
    for id in &extra {
        reporter.report(Event::Warning {
            path: format!("data/{}", short(id)),
            message: "pack is in no index (left by an interrupted backup; prune removes it)".into(),
        });
    }
    Ok(extra.len() as u64)
}
