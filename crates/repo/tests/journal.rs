//! The pack journal as a writer uses it: packs an interrupted writer journaled are adopted by
//! the next writer exactly when the storage holds them at their journaled size, once each, and
//! its index checkpoint names them (FORMAT.md §12.1). The crash suite (`cli/tests/crash.rs`)
//! covers the same with real kills; this test fixes each case by hand.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::KdfParams;
use offsite_format::{BlobType, IndexPack, PackId};
use offsite_repo::{
    BlobWriter, CacheSetting, Index, InitOptions, PackJournal, Repository, WriterOptions, JOURNAL_FILE,
};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    offsite_testkit::tree::pseudo_random(seed, len)
}

/// The index entries of every pack, as an index object (and the journal) hold them.
fn packs_of(index: &Index) -> Vec<IndexPack> {
    let mut by_pack: BTreeMap<u32, IndexPack> = BTreeMap::new();
    for (_, loc) in index.blobs() {
        let info = index.pack(loc.pack);
        by_pack
            .entry(loc.pack)
            .or_insert_with(|| IndexPack { id: info.id, eph: info.eph, size: info.size, blobs: Vec::new() })
            .blobs
            .push(loc.entry);
    }
    by_pack.into_values().collect()
}

#[test]
fn journaled_packs_the_storage_holds_are_adopted_once_and_named_by_the_next_index() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let opts = InitOptions { kdf: KdfParams::for_tests(), pack_size: 64 * 1024, ..Default::default() };
    let repo = Arc::new(Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap());

    // A writer stores four packs of incompressible blobs; then its index is lost, as when a
    // backup is killed before its checkpoint: the packs are stored, named by nothing.
    let writer = BlobWriter::new(repo.clone(), Arc::new(Index::default()), WriterOptions::default());
    let blobs: Vec<_> =
        (0..16).map(|i| writer.add(BlobType::Data, &noise(i, 16 * 1024)).unwrap().0).collect();
    writer.finish().unwrap();
    let index = Index::load(&*storage, repo.keys()).unwrap();
    let mut packs = packs_of(&index);
    assert!(packs.len() >= 4, "{} packs", packs.len());
    for (id, _) in storage.list(ObjectKind::Index).unwrap() {
        storage.delete(ObjectKind::Index, &id).unwrap();
    }

    // The journal lists them all, the first twice, and a pack whose upload never finished;
    // one listed pack has since disappeared from the storage.
    let path = dir.path().join("cache").join(JOURNAL_FILE);
    let (mut journal, listed) = PackJournal::open(&path).unwrap().unwrap();
    assert!(listed.is_empty());
    for p in packs.iter().chain([&packs[0]]) {
        journal.append(p).unwrap();
    }
    let mut unfinished = packs[1].clone();
    unfinished.id = PackId([0xee; 32]);
    journal.append(&unfinished).unwrap();
    drop(journal);
    let gone = packs.pop().unwrap();
    storage.delete(ObjectKind::Data, &gone.id.to_hex()).unwrap();

    let index = Arc::new(Index::load_present(&*storage, repo.keys()).unwrap().0);
    assert!(index.is_empty());
    let writer = BlobWriter::new(
        repo.clone(),
        index.clone(),
        WriterOptions { journal: Some(path.clone()), ..Default::default() },
    );
    let stats = writer.stats();
    assert_eq!(stats.adopted_packs.load(Ordering::Relaxed), packs.len() as u64);
    assert_eq!(stats.adopted_bytes.load(Ordering::Relaxed), packs.iter().map(|p| p.size).sum::<u64>());
    for p in &packs {
        assert!(index.has_pack(&p.id));
        assert!(p.blobs.iter().all(|b| index.contains(&b.id)));
    }
    assert!(!index.has_pack(&gone.id) && !index.has_pack(&unfinished.id));
    assert!(gone.blobs.iter().all(|b| !index.contains(&b.id)), "blobs of a missing pack are stored again");

    // The adopted blobs are not stored again; the lost pack's are.
    let before = storage.list(ObjectKind::Data).unwrap().len();
    for (i, id) in blobs.iter().enumerate() {
        let (again, new) = writer.add(BlobType::Data, &noise(i as u64, 16 * 1024)).unwrap();
        assert_eq!(again, *id);
        assert_eq!(new, gone.blobs.iter().any(|b| b.id == *id), "blob {i}");
    }
    writer.finish().unwrap();
    assert!(storage.list(ObjectKind::Data).unwrap().len() > before);

    // The checkpoint named every adopted pack once; the journal is empty again.
    let named = Index::load(&*storage, repo.keys()).unwrap();
    let mut ids: Vec<PackId> = packs_of(&named).into_iter().map(|p| p.id).collect();
    ids.sort();
    for p in &packs {
        assert_eq!(ids.iter().filter(|id| **id == p.id).count(), 1);
    }
    assert!(blobs.iter().all(|b| named.contains(b)));
    assert!(PackJournal::open(&path).unwrap().unwrap().1.is_empty());
}
