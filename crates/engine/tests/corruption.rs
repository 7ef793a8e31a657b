//! A flipped byte anywhere in the repository is detected by `check --read-data` (or by opening
//! the repository), and restore never writes wrong bytes under a final name.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::KdfParams;
use offsite_engine::{
    backup, check, restore, BackupOptions, CheckOptions, NullReporter, ReadData, RestoreOptions,
};
use offsite_format::ChunkerSizes;
use offsite_repo::{BlobReader, CacheSetting, Index, InitOptions, Repository, SnapshotFilter};

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Every regular file under `restored` that also exists under `src` has exactly its bytes.
fn no_wrong_bytes(src: &Path, restored: &Path) {
    let mut got = Vec::new();
    if restored.exists() {
        files_under(restored, &mut got);
    }
    for f in got {
        let rel = f.strip_prefix(restored).unwrap();
        let name = rel.file_name().unwrap().to_string_lossy();
        assert!(!name.starts_with(".offsite-tmp"), "temporary file left: {}", f.display());
        let orig = Path::new("/").join(rel);
        assert!(orig.starts_with(src), "restored outside the source tree: {}", f.display());
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(&orig).unwrap(),
            "wrong bytes in {}",
            f.display()
        );
    }
}

#[test]
fn every_flipped_byte_is_detected_and_never_restored() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..6u32 {
        let body: Vec<u8> = (0..20_000u32).flat_map(|j| (i * 7919 + j).to_le_bytes()).collect();
        std::fs::write(src.join(format!("f{i}")), &body).unwrap();
        std::fs::write(src.join("sub").join(format!("t{i}")), format!("text {i} ").repeat(300)).unwrap();
    }
    let repo_dir = dir.path().join("repo");
    let opts = InitOptions {
        kdf: KdfParams::for_tests(),
        chunker: ChunkerSizes { min: 4096, avg: 16384, max: 65536 },
        pack_size: 64 * 1024,
        ..Default::default()
    };
    let clean_storage = Arc::new(LocalStorage::new(&repo_dir));
    Repository::init(clean_storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
    let repo = Arc::new(Repository::open(clean_storage.clone(), b"pw", &CacheSetting::Disabled).unwrap());
    backup(repo.clone(), &BackupOptions { paths: vec![src.clone()], ..Default::default() }, &NullReporter)
        .unwrap();

    let full = CheckOptions { read_data: ReadData::All };
    assert!(check(repo, &full, &NullReporter).unwrap().problems.is_empty(), "no false alarm");

    let mut objects = Vec::new();
    files_under(&repo_dir, &mut objects);
    objects.sort();
    assert!(objects.len() >= 8, "{} objects", objects.len());
    let mut flips = 0;
    for (n, obj) in objects.iter().enumerate() {
        let original = std::fs::read(obj).unwrap();
        // A few positions per object: start, end, and spread through the middle.
        let len = original.len();
        let positions = [0, len / 3, len / 2, (len * 7) / 9, len - 1];
        for (k, &pos) in positions.iter().enumerate() {
            let mut bad = original.clone();
            bad[pos] ^= 1 << ((n + k) % 8);
            std::fs::write(obj, &bad).unwrap();
            flips += 1;
            let what = format!("{} byte {pos}", obj.strip_prefix(&repo_dir).unwrap().display());
            let storage = Arc::new(LocalStorage::new(&repo_dir));
            match Repository::open(storage, b"pw", &CacheSetting::Disabled) {
                // Damage to config or key files stops the open with an error: detected.
                Err(_) => {}
                Ok(r) => {
                    let r = Arc::new(r);
                    // A hard error is a detection too; a report must name a problem.
                    if let Ok(report) = check(r.clone(), &full, &NullReporter) {
                        assert!(!report.problems.is_empty(), "undetected flip: {what}");
                    }
                    // Restore must not write wrong bytes, whatever it manages to restore.
                    let target = dir.path().join(format!("restore-{n}-{k}"));
                    if let Ok(set) = r.snapshot_set() {
                        if let Ok(index) = Index::load(&**r.storage(), r.keys()) {
                            let reader = BlobReader::new(r.clone(), Arc::new(index)).unwrap();
                            let now = jiff::Zoned::now();
                            if let Ok((_, snap)) = offsite_repo::select(
                                &set.snapshots,
                                "latest",
                                &SnapshotFilter::default(),
                                &now,
                            ) {
                                let ro = RestoreOptions { target: target.clone(), ..Default::default() };
                                let _ = restore(&reader, snap, &ro, &NullReporter);
                            }
                        }
                    }
                    no_wrong_bytes(&src, &target);
                }
            }
        }
        std::fs::write(obj, &original).unwrap();
    }
    assert!(flips >= 40);
    // The repository is healthy again once the bytes are restored.
    let r = Arc::new(Repository::open(clean_storage, b"pw", &CacheSetting::Disabled).unwrap());
    assert!(check(r, &full, &NullReporter).unwrap().problems.is_empty());
}

#[test]
fn a_missing_object_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), vec![7u8; 50_000]).unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let opts = InitOptions { kdf: KdfParams::for_tests(), ..Default::default() };
    Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
    let repo = Arc::new(Repository::open(storage.clone(), b"pw", &CacheSetting::Disabled).unwrap());
    backup(repo.clone(), &BackupOptions { paths: vec![src], ..Default::default() }, &NullReporter).unwrap();
    for kind in [ObjectKind::Data, ObjectKind::Index] {
        let (id, _) = storage.list(kind).unwrap().remove(0);
        let bytes = storage.read(kind, &id, None).unwrap();
        storage.delete(kind, &id).unwrap();
        let report = check(repo.clone(), &CheckOptions::default(), &NullReporter).unwrap();
        assert!(!report.problems.is_empty(), "missing {kind:?} not reported");
        storage.write(kind, &id, &bytes).unwrap();
    }
}
