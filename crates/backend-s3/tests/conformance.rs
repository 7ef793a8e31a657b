//! The storage conformance suite against a real S3 server (s3s-fs).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use offsite_backend::conformance::{id_of, run_all, stray_files_are_not_listed};
use offsite_backend::{ObjectKind, Storage};
use offsite_backend_s3::S3Storage;

#[test]
fn conformance_suite_passes_against_s3s_fs() {
    let Some(server) = common::start() else { return };
    let bucket = server.bucket("repos");
    let endpoint = server.endpoint();
    let n = AtomicUsize::new(0);
    let make = || -> Box<dyn Storage> {
        let url = format!("s3://{bucket}/run-{}/repo", n.fetch_add(1, Ordering::Relaxed));
        Box::new(S3Storage::new(&url, common::options(&endpoint, common::patient())).expect("storage"))
    };
    run_all(&make);

    let s = S3Storage::new(&format!("s3://{bucket}/stray"), common::options(&endpoint, common::patient()))
        .expect("storage");
    let base = server.root().join(&bucket).join("stray");
    stray_files_are_not_listed(&s, &|path, bytes| {
        let p = base.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("plant");
    });
}

#[test]
fn objects_above_the_multipart_threshold_round_trip() {
    let Some(server) = common::start() else { return };
    let bucket = server.bucket("big");
    let s =
        S3Storage::new(&format!("s3://{bucket}/r"), common::options(&server.endpoint(), common::patient()))
            .expect("storage");
    s.create().expect("create");
    // 16 MiB parts: two full parts and a short last one.
    let data: Vec<u8> =
        (0..(2 * 16 * 1024 * 1024 + 12345u32)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let id = id_of(&data);
    s.write(ObjectKind::Data, &id, &data).expect("multipart write");
    assert_eq!(s.stat(ObjectKind::Data, &id).expect("stat"), data.len() as u64);
    assert!(s.read(ObjectKind::Data, &id, None).expect("read") == data, "multipart object differs");
    let mid = 16 * 1024 * 1024 - 10;
    let part = s.read(ObjectKind::Data, &id, Some((mid as u64, 20))).expect("range across parts");
    assert_eq!(part, &data[mid..mid + 20]);
    let on_disk = server.root().join(&bucket).join("r/data").join(&id[..2]).join(&id);
    assert_eq!(std::fs::metadata(on_disk).expect("object file").len(), data.len() as u64);
}
