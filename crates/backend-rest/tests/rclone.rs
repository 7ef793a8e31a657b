//! RcloneStorage: a child `rclone serve restic` per storage.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use offsite_backend::conformance;
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_rest::RcloneStorage;

#[test]
fn conformance_suite_passes() {
    require_rclone!();
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let make = || -> Box<dyn Storage> {
        let remote = dir.path().join(format!("repo-{}", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(RcloneStorage::new(remote.to_str().unwrap(), RemoteOptions::default()).unwrap())
    };
    conformance::run_all(&make);
}

#[test]
fn stray_files_are_not_listed_and_location_names_the_remote() {
    require_rclone!();
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().to_str().unwrap().to_string();
    let s = RcloneStorage::new(&remote, RemoteOptions::default()).unwrap();
    assert_eq!(s.location(), format!("rclone:{remote}"));
    conformance::stray_files_are_not_listed(&s, &|rel, bytes| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    });
    let err = s.read(ObjectKind::Key, &conformance::id_of(b"nope"), None).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().starts_with(&format!("rclone:{remote}/keys/")), "{err}");
}

#[test]
fn an_unknown_remote_fails_with_rclones_reason() {
    require_rclone!();
    let err = RcloneStorage::new("no-such-remote-7f3a:backup", RemoteOptions::default()).unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("rclone exited without serving") && msg.contains("no-such-remote-7f3a"), "{msg}");
}
