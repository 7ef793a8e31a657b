//! RcloneStorage: a child `rclone serve restic` per storage.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use offsite_backend::conformance;
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_rest::RcloneStorage;
use offsite_testkit::freeze::{
    assert_gave_up_within, child_process, freeze_under_load, frozen_options, object, Paused,
};

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

/// Hardening item 7 on rclone: the child `rclone serve restic` freezes (SIGSTOP: its
/// connections stay open, nothing is answered; a proxy cannot sit between this storage and the
/// child it starts) while eight threads upload; every call, and three more after they all
/// failed, ends within give-up-after + connect-timeout + idle-timeout of the freeze.
#[test]
fn a_frozen_rclone_ends_every_thread_within_the_give_up_bound() {
    require_rclone!();
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("frozen");
    let remote = remote.to_str().unwrap();
    let opts = frozen_options();
    let s = RcloneStorage::new(remote, opts.clone()).unwrap();
    s.create().unwrap();
    let pid = child_process("rclone", remote).expect("the storage's rclone child");
    let mut paused = None;
    let run = freeze_under_load(
        8,
        16,
        |thread, n| {
            let data = object(thread, n);
            s.write(ObjectKind::Data, &conformance::id_of(&data), &data)
        },
        || paused = Some(Paused::stop(pid)),
    );
    assert!(paused.is_some());
    assert_gave_up_within("rclone", &run, &opts, &format!("{}/", s.location()));
}
