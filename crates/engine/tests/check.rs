//! Check over hand-built repositories: healthy ones give no problems; each kind of damage is
//! found and named with the object and the affected snapshots and paths.
#![allow(clippy::unwrap_used)]

mod fixture_repo;

use std::sync::Arc;

use fixture_repo::{blobs_of, file, noise, raw_file, slice, tree_of, Fixture, Piece, Spec, CHUNK};
use offsite_backend::{ObjectKind, Storage};
use offsite_engine::{
    check, CheckOptions, CheckReport, CollectReporter, EngineError, Event, NullReporter, ReadData,
};
use offsite_format::{BlobType, NodeKind, PackBuilder, Snapshot, SnapshotId};
use offsite_repo::{CacheSetting, RepoError, Repository};

const STRUCTURE: CheckOptions = CheckOptions { read_data: ReadData::None };
const ALL: CheckOptions = CheckOptions { read_data: ReadData::All };

fn run(fx: &Fixture, opts: &CheckOptions) -> CheckReport {
    check(fx.repo.clone(), opts, &NullReporter).unwrap()
}

/// Two snapshots over nested directories; the second changes one file and adds one.
fn two_snapshots(fx: &Fixture) -> [(SnapshotId, Snapshot); 2] {
    let mut entries = vec![
        ("/home/u/docs/a.txt", file(&noise(1, 3 * CHUNK))),
        ("/home/u/docs/b.txt", file(b"bee")),
        ("/home/u/src/main.rs", file(&noise(2, CHUNK + 100))),
        ("/home/u/src/sub/deep.rs", file(b"deep")),
        (
            "/home/u/sparse",
            Spec::File {
                pieces: vec![Piece::Hole(1 << 20), Piece::Data(noise(3, 500))],
                mode: 0o600,
                mtime: 5,
            },
        ),
        ("/home/u/link", Spec::Symlink(b"docs".to_vec())),
        ("/home/u/empty", Spec::EmptyDir),
    ];
    let first = fx.snapshot("2026-01-01T00:00:00Z", &entries);
    entries[1].1 = file(b"bee, edited");
    entries.push(("/home/u/new.bin", file(&noise(4, 2 * CHUNK))));
    let second = fx.snapshot("2026-01-02T00:00:00Z", &entries);
    [first, second]
}

fn only_problem<'a>(r: &'a CheckReport, object: &str) -> &'a offsite_engine::Problem {
    let found: Vec<_> = r.problems.iter().filter(|p| p.object == object).collect();
    assert_eq!(found.len(), 1, "want one problem on {object}, got {:#?}", r.problems);
    found[0]
}

#[test]
fn healthy_repository_has_no_problems() {
    let fx = Fixture::new();
    let [(s1, _), (s2, _)] = two_snapshots(&fx);
    let index = fx.index();

    let rep = run(&fx, &STRUCTURE);
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    assert_eq!(rep.snapshots, 2);
    // root, home, u, docs, src, sub, empty in the first; root, home, u, docs are new in the
    // second (src, sub, empty are shared): 11 distinct trees.
    assert_eq!(rep.trees, 11);
    assert_eq!(rep.packs_read, 0);
    assert_eq!(rep.unreferenced_packs, 0);

    let events = CollectReporter::default();
    let rep = check(fx.repo.clone(), &ALL, &events).unwrap();
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    assert_eq!(rep.packs_read, index.packs().len() as u64);
    assert_eq!(rep.blobs_read, index.len() as u64);
    assert!(!events.0.lock().iter().any(|e| matches!(e, Event::Warning { .. } | Event::Error { .. })));
    assert_ne!(s1, s2);
}

#[test]
fn check_reports_progress_when_asked() {
    struct Wants(CollectReporter);
    impl offsite_engine::Reporter for Wants {
        fn report(&self, e: Event) {
            self.0.report(e);
        }
        fn wants_progress(&self) -> bool {
            true
        }
    }
    let fx = Fixture::new();
    two_snapshots(&fx);
    let r = Wants(CollectReporter::default());
    check(fx.repo.clone(), &ALL, &r).unwrap();
    let events = r.0 .0.lock();
    let packs = fx.index().packs().len() as u64;
    assert!(events.iter().any(|e| matches!(e,
        Event::Progress { phase: "check", items_done, items_total: Some(t), .. } if *items_done == packs && *t == packs)));
}

#[test]
fn damaged_data_blob_is_found_by_read_data_with_the_affected_paths() {
    let fx = Fixture::new();
    let [(s1, snap1), (s2, _)] = two_snapshots(&fx);
    let r = fx.reader();
    let blob = blobs_of(&r, &snap1, b"/home/u/docs/a.txt")[1];
    let (pack, entry) = fx.locate(&blob);
    fx.flip(ObjectKind::Data, &pack, i64::from(entry.offset) + 9);

    // Structure does not read data: it cannot see this.
    assert!(run(&fx, &STRUCTURE).problems.is_empty());

    let rep = run(&fx, &ALL);
    let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
    assert!(p.message.contains(&format!("data blob {}", blob.short())), "{}", p.message);
    assert!(p.message.contains("authentication failed"), "{}", p.message);
    assert!(p.message.contains("does not match its name"), "{}", p.message);
    // a.txt is unchanged, so both snapshots lose it.
    assert!(p.affects.contains(&format!("snapshot {}: /home/u/docs/a.txt", s1.short())), "{:?}", p.affects);
    assert!(p.affects.contains(&format!("snapshot {}: /home/u/docs/a.txt", s2.short())), "{:?}", p.affects);
    // Other blobs sharing the pack may be named too, but nothing else is a problem.
    assert_eq!(rep.problems.len(), 1, "{:#?}", rep.problems);
}

#[test]
fn damaged_tree_is_found_by_structure_check_with_the_directory() {
    let fx = Fixture::new();
    let [(s1, snap1), (s2, _)] = two_snapshots(&fx);
    let r = fx.reader();
    let tree = tree_of(&r, &snap1, b"/home/u/src");
    let (pack, entry) = fx.locate(&tree);
    assert_eq!(entry.ty, BlobType::Tree);
    fx.flip(ObjectKind::Data, &pack, i64::from(entry.offset) + 3);

    let rep = run(&fx, &STRUCTURE);
    let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
    assert!(p.message.contains(&format!("tree {}", tree.short())), "{}", p.message);
    for s in [s1, s2] {
        assert!(p.affects.contains(&format!("snapshot {}: /home/u/src", s.short())), "{:?}", p.affects);
    }
    // read-data on top reports the same pack once, not a second problem for the same tree.
    let rep = run(&fx, &ALL);
    let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
    assert_eq!(p.message.matches(&tree.short()).count(), 1, "{}", p.message);
}

#[test]
fn damaged_index_object_is_named_and_the_rest_still_used() {
    let fx = Fixture::new();
    two_snapshots(&fx);
    let indexes = fx.list(ObjectKind::Index);
    assert!(indexes.len() >= 2);
    let bad = &indexes[0];
    fx.flip(ObjectKind::Index, bad, 40);

    let rep = run(&fx, &STRUCTURE);
    let p = only_problem(&rep, &format!("index/{}", &bad[..8]));
    assert!(p.message.contains("does not match its name"), "{}", p.message);
    // The check went on: both snapshots were walked as far as the remaining index allows.
    assert_eq!(rep.snapshots, 2);
    assert!(rep.trees > 0);
}

#[test]
fn damaged_snapshot_object_is_named_and_the_others_checked() {
    let fx = Fixture::new();
    let [(s1, _), (s2, _)] = two_snapshots(&fx);
    fx.flip(ObjectKind::Snapshot, &s1.to_hex(), -5);

    let rep = run(&fx, &STRUCTURE);
    let p = only_problem(&rep, &format!("snapshots/{}", s1.short()));
    assert!(p.message.contains("does not match its name"), "{}", p.message);
    assert_eq!(rep.snapshots, 1);
    assert_eq!(rep.problems.len(), 1, "{:#?}", rep.problems);
    let _ = s2;
}

#[test]
fn lost_snapshot_named_by_a_later_one_is_a_problem() {
    let fx = Fixture::new();
    let [(s1, _), (s2, _)] = two_snapshots(&fx);
    std::fs::remove_file(fx.object_path(ObjectKind::Snapshot, &s1.to_hex())).unwrap();

    let rep = run(&fx, &STRUCTURE);
    let p = only_problem(&rep, &format!("snapshots/{}", s1.short()));
    assert!(p.message.contains(&format!("snapshot {} names it", s2.short())), "{}", p.message);
    assert_eq!(rep.snapshots, 1);
}

#[test]
fn damaged_pack_trailer_is_found_by_read_data() {
    let fx = Fixture::new();
    let [(_, snap1), _] = two_snapshots(&fx);
    let r = fx.reader();
    let blob = blobs_of(&r, &snap1, b"/home/u/src/main.rs")[0];
    let (pack, _) = fx.locate(&blob);
    // The trailer is ephemeral key (32) || header length (4) || magic (4): hit the key.
    fx.flip(ObjectKind::Data, &pack, -30);

    // Readers use the key recorded in the index, so structure and blobs are intact.
    assert!(run(&fx, &STRUCTURE).problems.is_empty());
    let rep = run(&fx, &ALL);
    let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
    assert!(p.message.contains("header does not decode"), "{}", p.message);
    assert!(p.message.contains("does not match its name"), "{}", p.message);
    assert!(p.affects.is_empty(), "blobs are intact: {:?}", p.affects);
    assert_eq!(rep.problems.len(), 1, "{:#?}", rep.problems);
}

#[test]
fn missing_pack_is_named_with_the_affected_paths() {
    let fx = Fixture::new();
    let [(s1, snap1), (s2, _)] = two_snapshots(&fx);
    let r = fx.reader();
    let blob = blobs_of(&r, &snap1, b"/home/u/src/main.rs")[0];
    let (pack, _) = fx.locate(&blob);
    std::fs::remove_file(fx.object_path(ObjectKind::Data, &pack)).unwrap();

    for opts in [STRUCTURE, ALL] {
        let rep = run(&fx, &opts);
        let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
        assert!(p.message.contains("missing"), "{}", p.message);
        for s in [s1, s2] {
            assert!(
                p.affects.contains(&format!("snapshot {}: /home/u/src/main.rs", s.short())),
                "{:?}",
                p.affects
            );
        }
        assert_eq!(rep.problems.len(), 1, "{:#?}", rep.problems);
    }
}

#[test]
fn blob_missing_from_the_index_is_a_problem() {
    let fx = Fixture::new();
    let (sid, _) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            ("/x/f", file(b"ok")),
            ("/x/g", {
                let mut n = fixture_repo::node(b"g", NodeKind::File);
                n.size = 5;
                n.content = Some(vec![offsite_format::ContentItem::Blob(offsite_format::BlobId([7; 32]))]);
                Spec::Raw(Box::new(n))
            }),
        ],
    );
    let rep = run(&fx, &STRUCTURE);
    let p = only_problem(&rep, &format!("blob {}", "07070707"));
    assert!(p.message.contains("missing from the index"), "{}", p.message);
    assert_eq!(p.affects, [format!("snapshot {}: /x/g", sid.short())]);
}

#[test]
fn unsafe_names_and_wrong_sizes_are_problems_of_their_tree() {
    let fx = Fixture::new();
    let mut dotdot = fixture_repo::node(b"..", NodeKind::File);
    dotdot.content = Some(vec![]);
    let mut short = fixture_repo::node(b"short", NodeKind::File);
    short.size = 99; // content is one 5-byte blob, stored below
    let (sid, snap) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            ("/d/ok", file(b"hello")),
            ("/d/evil", Spec::Raw(Box::new(dotdot))),
            ("/d/short", Spec::Raw(Box::new(short.clone()))),
        ],
    );
    // Give `short` the content of `ok` (5 bytes, not 99): rebuild that tree by hand.
    let r = fx.reader();
    let dtree = tree_of(&r, &snap, b"/d");
    let mut t = r.tree(&dtree, "test").unwrap();
    let ok_blob = t.nodes.iter().find(|n| n.name.0 == b"ok").unwrap().content.clone();
    for n in &mut t.nodes {
        if n.name.0 == b"short" {
            n.content = ok_blob.clone();
        }
    }
    let w = offsite_repo::BlobWriter::new(fx.repo.clone(), fx.index(), Default::default());
    let (d2, _) = w.add(BlobType::Tree, &serde_json::to_vec(&t).unwrap()).unwrap();
    let mut d_node = fixture_repo::node(b"d", NodeKind::Dir);
    d_node.subtree = Some(d2);
    let (root, _) = w
        .add(BlobType::Tree, &serde_json::to_vec(&offsite_format::Tree { nodes: vec![d_node] }).unwrap())
        .unwrap();
    w.finish().unwrap();
    let mut snap2 = snap.clone();
    snap2.tree = root;
    snap2.time = "2026-01-02T00:00:00Z".into();
    snap2.seen = vec![sid];
    let sid2 = fx.repo.save_snapshot(&snap2).unwrap();

    let rep = run(&fx, &STRUCTURE);
    let p1 = only_problem(&rep, &format!("tree {}", dtree.short()));
    assert!(p1.message.contains("unsafe name"), "{}", p1.message);
    assert_eq!(p1.affects, [format!("snapshot {}: /d", sid.short())]);
    let p2 = only_problem(&rep, &format!("tree {}", d2.short()));
    assert!(p2.message.contains("unsafe name"), "{}", p2.message);
    assert!(p2.message.contains("content adds up to 5 bytes, but its size is 99"), "{}", p2.message);
    assert_eq!(p2.affects, [format!("snapshot {}: /d", sid2.short())]);
    assert_eq!(rep.problems.len(), 2, "{:#?}", rep.problems);
}

#[test]
fn read_data_subset_reads_the_requested_share_of_packs() {
    let fx = Fixture::new();
    let files: Vec<(String, Spec)> =
        (0..16).map(|i| (format!("/data/f{i:02}"), file(&noise(100 + i, 2 * CHUNK + 1000)))).collect();
    fx.snapshot(
        "2026-01-01T00:00:00Z",
        &files.iter().map(|(p, s)| (p.as_str(), s.clone())).collect::<Vec<_>>(),
    );
    let packs = fx.index().packs().len() as u64;
    assert!(packs >= 12, "{packs} packs");

    let half = run(&fx, &CheckOptions { read_data: ReadData::Subset(50.0) });
    assert!(half.problems.is_empty());
    assert_eq!(half.packs_read, packs.div_ceil(2));
    let ten = run(&fx, &CheckOptions { read_data: ReadData::Subset(10.0) });
    assert_eq!(ten.packs_read, (packs as f64 * 0.1).ceil() as u64);
    let all = run(&fx, &CheckOptions { read_data: ReadData::Subset(100.0) });
    assert_eq!(all.packs_read, packs);
    for bad in [0.0, -5.0, 150.0, f64::NAN] {
        let e = check(fx.repo.clone(), &CheckOptions { read_data: ReadData::Subset(bad) }, &NullReporter);
        assert!(matches!(e, Err(EngineError::Usage(_))), "{bad}");
    }
}

#[test]
fn read_data_subset_damage_in_an_unread_pack_goes_unseen_but_in_a_read_one_is_found() {
    // With 50% of packs read over many runs, a damaged pack is found by some run; every run
    // that reads it reports it. This checks the subset really varies and really verifies.
    let fx = Fixture::new();
    let files: Vec<(String, Spec)> =
        (0..8).map(|i| (format!("/data/f{i}"), file(&noise(200 + i, 2 * CHUNK + 1000)))).collect();
    let (_, snap) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &files.iter().map(|(p, s)| (p.as_str(), s.clone())).collect::<Vec<_>>(),
    );
    let blob = blobs_of(&fx.reader(), &snap, b"/data/f3")[0];
    let (pack, entry) = fx.locate(&blob);
    fx.flip(ObjectKind::Data, &pack, i64::from(entry.offset) + 1);
    let (mut seen, mut missed) = (0, 0);
    for _ in 0..40 {
        let rep = run(&fx, &CheckOptions { read_data: ReadData::Subset(50.0) });
        if rep.problems.is_empty() {
            missed += 1;
        } else {
            seen += 1;
            assert_eq!(rep.problems[0].object, format!("data/{}", &pack[..8]));
        }
    }
    assert!(seen > 0 && missed > 0, "seen {seen}, missed {missed}");
}

#[test]
fn pack_in_no_index_is_a_warning_not_a_problem() {
    let fx = Fixture::new();
    two_snapshots(&fx);
    let mut b = PackBuilder::new(&fx.repo.keys().public_key());
    let data = b"left behind".to_vec();
    let id = offsite_format::BlobId(fx.repo.keys().blob_id(&data));
    b.add(BlobType::Data, id, offsite_format::compress_payload(&data, 0), data.len() as u32);
    let p = b.finish();
    fx.repo.storage().write(ObjectKind::Data, &p.id.to_hex(), &p.bytes).unwrap();

    let events = CollectReporter::default();
    let rep = check(fx.repo.clone(), &ALL, &events).unwrap();
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    assert_eq!(rep.unreferenced_packs, 1);
    let want = format!("data/{}", p.id.short());
    assert!(events.0.lock().iter().any(|e| matches!(e, Event::Warning { path, .. } if *path == want)));
}

#[test]
fn backup_only_key_cannot_check() {
    let fx = Fixture::new();
    two_snapshots(&fx);
    fx.repo.add_key(b"bo", true, &offsite_crypto::KdfParams::for_tests()).unwrap();
    let storage: Arc<dyn Storage> = fx.counting.clone();
    let bo = Arc::new(Repository::open(storage, b"bo", &CacheSetting::Disabled).unwrap());
    assert!(!bo.is_full());
    let e = check(bo, &STRUCTURE, &NullReporter).unwrap_err();
    assert!(matches!(e, EngineError::Repo(RepoError::BackupOnly)), "{e}");
}

#[test]
fn real_backup_checks_clean_and_browses() {
    use std::io::{Seek, SeekFrom, Write};
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("tree");
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("a/one.txt"), b"one").unwrap();
    std::fs::write(root.join("a/b/big.bin"), noise(9, 300 * 1024)).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    let mut sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.seek(SeekFrom::Start(3 << 20)).unwrap();
    sparse.write_all(b"after the hole").unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("a/one.txt", root.join("link")).unwrap();

    let fx = Fixture::new();
    let opts = offsite_engine::BackupOptions {
        paths: vec![root.clone()],
        host: Some("h".into()),
        ..Default::default()
    };
    let out = offsite_engine::backup(fx.repo.clone(), &opts, &NullReporter).unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    std::fs::write(root.join("a/one.txt"), b"one, changed").unwrap();
    let out2 = offsite_engine::backup(fx.repo.clone(), &opts, &NullReporter).unwrap();

    let rep = run(&fx, &ALL);
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    assert_eq!(rep.snapshots, 2);
    assert!(rep.blobs_read > 0);

    let r = fx.reader();
    let base = root.to_str().unwrap().to_string();
    let listed: Vec<String> = offsite_engine::ls(&r, &out.snapshot, Some(base.as_bytes()))
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.path).unwrap())
        .collect();
    let want: Vec<String> =
        ["a", "a/b", "a/b/big.bin", "a/b/c", "a/b/c/deep.txt", "a/one.txt", "empty", "link", "sparse"]
            .iter()
            .map(|p| format!("{base}/{p}"))
            .collect();
    assert_eq!(listed, want);
    let mut dumped = Vec::new();
    offsite_engine::dump(&r, &out.snapshot, format!("{base}/sparse").as_bytes(), &mut dumped).unwrap();
    assert_eq!(dumped, std::fs::read(root.join("sparse")).unwrap());
    let changes = offsite_engine::diff(&r, &out.snapshot, &out2.snapshot).unwrap();
    let changed: Vec<(&str, String)> =
        changes.iter().map(|d| (d.change, String::from_utf8(d.path.clone()).unwrap())).collect();
    assert_eq!(changed, [("M", format!("{base}/a/one.txt"))]);
}

/// Two snapshots of small files sliced from one bundle (`/s/c` only in the second).
fn bundled_snapshots(fx: &Fixture) -> (offsite_format::BlobId, [SnapshotId; 2]) {
    let bundle = fx.bundle(&noise(70, 3000));
    let mut entries = vec![
        ("/s/a", raw_file(b"a", 1000, vec![slice(bundle, 0, 1000)])),
        ("/s/b", raw_file(b"b", 1500, vec![slice(bundle, 1000, 1000), slice(bundle, 2500, 500)])),
        ("/s/plain", file(b"not bundled")),
    ];
    let (s1, _) = fx.snapshot("2026-01-01T00:00:00Z", &entries);
    entries.push(("/s/c", raw_file(b"c", 500, vec![slice(bundle, 2000, 500)])));
    let (s2, _) = fx.snapshot("2026-01-02T00:00:00Z", &entries);
    (bundle, [s1, s2])
}

#[test]
fn bundles_pass_structure_and_read_data_checks() {
    let fx = Fixture::new();
    bundled_snapshots(&fx);
    assert!(run(&fx, &STRUCTURE).problems.is_empty());
    let rep = run(&fx, &ALL);
    assert!(rep.problems.is_empty(), "{:#?}", rep.problems);
    // Every blob, the bundle included (its id is no hash), was read and verified.
    assert_eq!(rep.blobs_read, fx.index().len() as u64);
}

#[test]
fn damaged_bundle_is_found_by_read_data_with_every_file_sliced_from_it() {
    let fx = Fixture::new();
    let (bundle, [s1, s2]) = bundled_snapshots(&fx);
    let (pack, entry) = fx.locate(&bundle);
    assert_eq!(entry.ty, BlobType::Bundle);
    fx.flip(ObjectKind::Data, &pack, i64::from(entry.offset) + 7);

    assert!(run(&fx, &STRUCTURE).problems.is_empty());
    let rep = run(&fx, &ALL);
    let p = only_problem(&rep, &format!("data/{}", &pack[..8]));
    assert!(p.message.contains(&format!("bundle blob {}", bundle.short())), "{}", p.message);
    assert!(p.message.contains("authentication failed"), "{}", p.message);
    let mut want = Vec::new();
    for (s, files) in [(s1, &["a", "b"][..]), (s2, &["a", "b", "c"][..])] {
        for f in files {
            want.push(format!("snapshot {}: /s/{f}", s.short()));
        }
    }
    let mut got = p.affects.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(rep.problems.len(), 1, "{:#?}", rep.problems);
}

#[test]
fn slices_naming_the_wrong_blob_or_bytes_are_problems() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&noise(71, 1000));
    let (_, first) = fx.snapshot("2026-01-01T00:00:00Z", &[("/data", file(b"plain data"))]);
    let data = blobs_of(&fx.reader(), &first, b"/data")[0];
    let missing = offsite_format::BlobId([5; 32]);
    let (sid, snap) = fx.snapshot(
        "2026-01-02T00:00:00Z",
        &[
            ("/d/past_end", raw_file(b"past_end", 100, vec![slice(bundle, 950, 100)])),
            ("/e/slice_of_data", raw_file(b"slice_of_data", 5, vec![slice(data, 0, 5)])),
            (
                "/e/blob_of_bundle",
                raw_file(b"blob_of_bundle", 1000, vec![offsite_format::ContentItem::Blob(bundle)]),
            ),
            ("/e/missing", raw_file(b"missing", 4, vec![slice(missing, 0, 4)])),
            // Slice lengths count towards the size: 10 bytes of slices, a size of 11.
            ("/d/short", raw_file(b"short", 11, vec![slice(bundle, 0, 10)])),
            ("/d/ok", raw_file(b"ok", 10, vec![slice(bundle, 990, 10)])),
        ],
    );
    let rep = run(&fx, &STRUCTURE);
    let dtree = tree_of(&fx.reader(), &snap, b"/d");
    let p = only_problem(&rep, &format!("tree {}", dtree.short()));
    assert!(
        p.message.contains(&format!(
            "file \"past_end\": slice of 100 bytes at 950 runs past the end of bundle {} (1000 bytes)",
            bundle.short()
        )),
        "{}",
        p.message
    );
    assert!(
        p.message.contains("file \"short\": content adds up to 10 bytes, but its size is 11"),
        "{}",
        p.message
    );
    assert_eq!(p.affects, [format!("snapshot {}: /d", sid.short())]);

    let p = only_problem(&rep, &format!("blob {}", data.short()));
    assert!(p.message.contains("named as a bundle but indexed as a data blob"), "{}", p.message);
    assert!(p.affects.contains(&format!("snapshot {}: /e/slice_of_data", sid.short())), "{:?}", p.affects);
    let p = only_problem(&rep, &format!("blob {}", bundle.short()));
    assert!(p.message.contains("file content is indexed as a bundle blob"), "{}", p.message);
    // The bundle itself is fine, but this reference to it is wrong: every file naming it is listed.
    assert!(p.affects.contains(&format!("snapshot {}: /e/blob_of_bundle", sid.short())), "{:?}", p.affects);
    let p = only_problem(&rep, &format!("blob {}", missing.short()));
    assert!(p.message.contains("missing from the index"), "{}", p.message);
    assert_eq!(p.affects, [format!("snapshot {}: /e/missing", sid.short())]);
    assert_eq!(rep.problems.len(), 4, "{:#?}", rep.problems);
}
