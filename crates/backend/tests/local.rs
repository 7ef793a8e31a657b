//! The local backend against the shared conformance suite.

use std::sync::atomic::{AtomicUsize, Ordering};

use offsite_backend::layers::{CountingStorage, FaultStorage, RetryStorage};
use offsite_backend::{conformance, LocalStorage, Storage};

/// Fresh storages in numbered subdirectories of one temp dir, not yet created.
fn maker(dir: &tempfile::TempDir) -> impl Fn() -> Box<dyn Storage> + '_ {
    let n = AtomicUsize::new(0);
    move || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        Box::new(LocalStorage::new(dir.path().join(format!("repo-{i}"))))
    }
}

#[test]
fn local_storage_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::run_all(&maker(&dir));
}

#[test]
fn layered_local_storage_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = maker(&dir);
    conformance::run_all(&|| Box::new(RetryStorage::new(CountingStorage::new(FaultStorage::new(inner())))));
}

#[test]
fn local_storage_does_not_list_stray_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LocalStorage::new(dir.path());
    conformance::stray_files_are_not_listed(&s, &|path, bytes| {
        std::fs::write(dir.path().join(path), bytes).expect("plant stray file");
    });
}
