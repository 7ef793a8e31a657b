//! Browsing snapshots: find_node, ls, diff and dump over hand-built repositories.
#![allow(clippy::unwrap_used)]

mod fixture_repo;

use std::io::Write;

use fixture_repo::{file, noise, raw_file, slice, Fixture, Piece, Spec, CHUNK};
use offsite_engine::{diff, dump, find_node, ls, DiffItem, EngineError};
use offsite_format::NodeKind;

fn paths(entries: &[offsite_engine::LsEntry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.path.clone()).unwrap()).collect()
}

fn sample(fx: &Fixture) -> (offsite_format::SnapshotId, offsite_format::Snapshot) {
    fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            ("/home/u/docs/b.txt", file(b"bee")),
            ("/home/u/docs/a.txt", file(&noise(1, 3 * CHUNK + 17))),
            ("/home/u/src/sub/deep.rs", file(b"fn main() {}")),
            ("/home/u/src/main.rs", file(b"// main")),
            ("/home/u/link", Spec::Symlink(b"docs/a.txt".to_vec())),
            ("/home/u/empty", Spec::EmptyDir),
            ("/etc/hosts", file(b"127.0.0.1 localhost\n")),
        ],
    )
}

#[test]
fn find_node_walks_components_and_names_missing_paths() {
    let fx = Fixture::new();
    let (_, snap) = sample(&fx);
    let r = fx.reader();

    let root = find_node(&r, &snap, b"/").unwrap();
    assert_eq!(root.kind, NodeKind::Dir);
    assert_eq!(root.name.0, b"/");
    assert_eq!(root.subtree, Some(snap.tree));

    let a = find_node(&r, &snap, b"/home/u/docs/a.txt").unwrap();
    assert_eq!(a.kind, NodeKind::File);
    assert_eq!(a.size, (3 * CHUNK + 17) as u64);
    // Empty components and a trailing slash are ignored.
    let docs = find_node(&r, &snap, b"//home/u//docs/").unwrap();
    assert_eq!(docs.kind, NodeKind::Dir);
    assert_eq!(docs.name.0, b"docs");

    for missing in [&b"/home/u/nope"[..], b"/home/u/docs/a.txt/x", b"/nope/a"] {
        match find_node(&r, &snap, missing) {
            Err(EngineError::NotInSnapshot(p)) => assert_eq!(p.as_bytes(), missing),
            other => panic!("{missing:?}: {other:?}"),
        }
    }
    assert!(matches!(find_node(&r, &snap, b"/home/u/../u"), Err(EngineError::Usage(_))));
}

#[test]
fn ls_lists_pre_order_sorted_absolute_paths() {
    let fx = Fixture::new();
    let (_, snap) = sample(&fx);
    let r = fx.reader();
    let all = ls(&r, &snap, None).unwrap();
    assert_eq!(
        paths(&all),
        [
            "/etc",
            "/etc/hosts",
            "/home",
            "/home/u",
            "/home/u/docs",
            "/home/u/docs/a.txt",
            "/home/u/docs/b.txt",
            "/home/u/empty",
            "/home/u/link",
            "/home/u/src",
            "/home/u/src/main.rs",
            "/home/u/src/sub",
            "/home/u/src/sub/deep.rs",
        ]
    );
    assert_eq!(all[8].node.kind, NodeKind::Symlink);
    assert_eq!(all[8].node.target.as_ref().unwrap().0, b"docs/a.txt");

    let src = ls(&r, &snap, Some(b"/home/u/src/")).unwrap();
    assert_eq!(paths(&src), ["/home/u/src/main.rs", "/home/u/src/sub", "/home/u/src/sub/deep.rs"]);
    let one = ls(&r, &snap, Some(b"/home/u/docs/b.txt")).unwrap();
    assert_eq!(paths(&one), ["/home/u/docs/b.txt"]);
    assert_eq!(one[0].node.size, 3);
    assert!(ls(&r, &snap, Some(b"/home/u/empty")).unwrap().is_empty());
    assert!(matches!(ls(&r, &snap, Some(b"/home/x")), Err(EngineError::NotInSnapshot(_))));
}

fn item(change: &'static str, path: &str, size: u64) -> DiffItem {
    DiffItem { change, path: path.as_bytes().to_vec(), size }
}

#[test]
fn diff_itemizes_added_removed_and_changed_entries() {
    let fx = Fixture::new();
    let mut old: Vec<(&str, Spec)> = vec![
        ("/d/keep.txt", file(b"same")),
        ("/d/content.txt", file(b"old content")),
        ("/d/mode.txt", file(b"m")),
        ("/d/mtime.txt", file(b"t")),
        ("/d/gone.txt", file(b"bye")),
        ("/d/kind", file(b"was a file")),
        ("/d/olddir/x", file(b"x")),
        ("/d/olddir/y/z", file(b"zz")),
        ("/d/link", Spec::Symlink(b"a".to_vec())),
    ];
    let (_, s1) = fx.snapshot("2026-01-01T00:00:00Z", &old);
    old.retain(|(p, _)| !matches!(*p, "/d/gone.txt" | "/d/kind" | "/d/olddir/x" | "/d/olddir/y/z"));
    for (p, s) in &mut old {
        match *p {
            "/d/content.txt" => *s = file(b"new content!"),
            "/d/mode.txt" => {
                *s =
                    Spec::File { pieces: vec![Piece::Data(b"m".to_vec())], mode: 0o600, mtime: 1_700_000_000 }
            }
            "/d/mtime.txt" => {
                *s =
                    Spec::File { pieces: vec![Piece::Data(b"t".to_vec())], mode: 0o644, mtime: 1_800_000_000 }
            }
            "/d/link" => *s = Spec::Symlink(b"b".to_vec()),
            _ => {}
        }
    }
    old.push(("/d/kind/inner", file(b"now a dir")));
    old.push(("/d/new.txt", file(b"hello")));
    old.push(("/e/fresh/f", file(b"ff")));
    let (_, s2) = fx.snapshot("2026-01-02T00:00:00Z", &old);

    let r = fx.reader();
    let got = diff(&r, &s1, &s2).unwrap();
    assert_eq!(
        got,
        [
            item("M", "/d/content.txt", 12),
            item("-", "/d/gone.txt", 3),
            item("-", "/d/kind", 10),
            item("+", "/d/kind", 0),
            item("+", "/d/kind/inner", 9),
            item("M", "/d/link", 0),
            item("M", "/d/mode.txt", 1),
            item("M", "/d/mtime.txt", 1),
            item("+", "/d/new.txt", 5),
            item("-", "/d/olddir", 0),
            item("-", "/d/olddir/x", 1),
            item("-", "/d/olddir/y", 0),
            item("-", "/d/olddir/y/z", 2),
            item("+", "/e", 0),
            item("+", "/e/fresh", 0),
            item("+", "/e/fresh/f", 2),
        ]
    );
    // Reversed, additions become removals and the other way round.
    let back = diff(&r, &s2, &s1).unwrap();
    assert_eq!(back.len(), got.len());
    assert!(back.contains(&item("+", "/d/gone.txt", 3)));
    assert!(back.contains(&item("-", "/e/fresh/f", 2)));
    assert!(diff(&r, &s1, &s1).unwrap().is_empty());
}

#[test]
fn diff_skips_unchanged_subtrees_without_reading_them() {
    let fx = Fixture::new();
    let mut entries: Vec<(String, Spec)> = Vec::new();
    for i in 0..20 {
        entries.push((format!("/big/dir{i:02}/sub/file"), file(format!("{i}").as_bytes())));
    }
    entries.push(("/home/u/docs/a.txt".into(), file(b"one")));
    fn refs(e: &[(String, Spec)]) -> Vec<(&str, Spec)> {
        e.iter().map(|(p, s)| (p.as_str(), s.clone())).collect()
    }
    let (_, s1) = fx.snapshot("2026-01-01T00:00:00Z", &refs(&entries));
    entries.last_mut().unwrap().1 = file(b"two");
    let (_, s2) = fx.snapshot("2026-01-02T00:00:00Z", &refs(&entries));

    let r = fx.reader();
    let got = diff(&r, &s1, &s2).unwrap();
    assert_eq!(got, [item("M", "/home/u/docs/a.txt", 3)]);
    // root, home, u, docs in each snapshot: 8 trees decoded, none of the 60 trees under /big.
    assert_eq!(r.trees_read(), 8);
}

/// A writer that counts bytes and remembers the largest single write.
struct BoundedSink {
    total: u64,
    largest: usize,
}
impl Write for BoundedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.largest = self.largest.max(buf.len());
        self.total += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn dump_reproduces_content_with_holes_and_refuses_directories() {
    let fx = Fixture::new();
    let head = noise(7, 2 * CHUNK + 5);
    let tail = b"tail bytes".to_vec();
    let big_hole = 4u64 << 30; // 4 GiB: must stream, not allocate
    let (_, snap) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            (
                "/v/sparse",
                Spec::File {
                    pieces: vec![Piece::Data(head.clone()), Piece::Hole(1000), Piece::Data(tail.clone())],
                    mode: 0o644,
                    mtime: 1,
                },
            ),
            (
                "/v/huge",
                Spec::File {
                    pieces: vec![Piece::Hole(big_hole), Piece::Data(b"end".to_vec())],
                    mode: 0o644,
                    mtime: 1,
                },
            ),
            ("/v/empty", file(b"")),
            ("/v/link", Spec::Symlink(b"sparse".to_vec())),
        ],
    );
    let r = fx.reader();

    let mut out = Vec::new();
    let n = dump(&r, &snap, b"/v/sparse", &mut out).unwrap();
    let mut want = head;
    want.extend(std::iter::repeat_n(0u8, 1000));
    want.extend(&tail);
    assert_eq!(n, want.len() as u64);
    assert_eq!(out, want);

    let mut sink = BoundedSink { total: 0, largest: 0 };
    assert_eq!(dump(&r, &snap, b"/v/huge", &mut sink).unwrap(), big_hole + 3);
    assert_eq!(sink.total, big_hole + 3);
    assert!(sink.largest <= 1 << 20, "largest write {}", sink.largest);

    let mut out = Vec::new();
    assert_eq!(dump(&r, &snap, b"/v/empty", &mut out).unwrap(), 0);
    assert!(out.is_empty());

    match dump(&r, &snap, b"/v/", &mut Vec::new()) {
        Err(e) => assert_eq!(e.to_string(), "/v is a directory"),
        Ok(_) => panic!("dumped a directory"),
    }
    assert!(matches!(dump(&r, &snap, b"/v/link", &mut Vec::new()), Err(EngineError::Usage(_))));
    assert!(matches!(dump(&r, &snap, b"/v/none", &mut Vec::new()), Err(EngineError::NotInSnapshot(_))));
}

#[test]
fn dump_fails_on_a_damaged_blob_instead_of_writing_it() {
    let fx = Fixture::new();
    let (_, snap) = sample(&fx);
    let r = fx.reader();
    let blobs = fixture_repo::blobs_of(&r, &snap, b"/home/u/docs/a.txt");
    let (pack, entry) = fx.locate(&blobs[1]);
    fx.flip(offsite_backend::ObjectKind::Data, &pack, i64::from(entry.offset) + 20);
    let mut out = Vec::new();
    let err = dump(&r, &snap, b"/home/u/docs/a.txt", &mut out).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    // Only the first (good) blob was written.
    assert_eq!(out.len(), CHUNK);
}

#[test]
fn dump_writes_exactly_a_files_slices_reading_their_bundle_once() {
    let fx = Fixture::new();
    let bundle_bytes = noise(60, 5000);
    let bundle = fx.bundle(&bundle_bytes);
    let (_, snap) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            ("/s/one", raw_file(b"one", 300, vec![slice(bundle, 100, 300)])),
            (
                "/s/two",
                raw_file(
                    b"two",
                    4000 + 10 + 50,
                    vec![
                        slice(bundle, 1000, 4000),
                        offsite_format::ContentItem::Hole { hole: 10 },
                        slice(bundle, 0, 50),
                    ],
                ),
            ),
            ("/s/empty", raw_file(b"empty", 0, vec![slice(bundle, 5000, 0)])),
        ],
    );
    let r = fx.reader();
    let mut out = Vec::new();
    assert_eq!(dump(&r, &snap, b"/s/one", &mut out).unwrap(), 300);
    assert_eq!(out, &bundle_bytes[100..400]);

    fx.counting.reset();
    let mut out = Vec::new();
    assert_eq!(dump(&r, &snap, b"/s/two", &mut out).unwrap(), 4060);
    let mut want = bundle_bytes[1000..].to_vec();
    want.extend([0u8; 10]);
    want.extend(&bundle_bytes[..50]);
    assert_eq!(out, want);
    // Two slices of one bundle: one data read (trees come from the reader's tree-pack cache).
    assert_eq!(fx.counting.stats().reads, 1);

    let mut out = Vec::new();
    assert_eq!(dump(&r, &snap, b"/s/empty", &mut out).unwrap(), 0);
    assert!(out.is_empty());
}

#[test]
fn dump_refuses_slices_and_blobs_naming_the_wrong_blob_or_bytes() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&noise(61, 1000));
    let (_, first) = fx.snapshot("2026-01-01T00:00:00Z", &[("/data", file(b"plain data"))]);
    let data = fixture_repo::blobs_of(&fx.reader(), &first, b"/data")[0];
    let (_, snap) = fx.snapshot(
        "2026-01-02T00:00:00Z",
        &[
            // A good slice first: nothing may be written before the bad one is refused.
            ("/past_end", raw_file(b"past_end", 110, vec![slice(bundle, 0, 10), slice(bundle, 950, 100)])),
            ("/slice_of_data", raw_file(b"slice_of_data", 5, vec![slice(data, 0, 5)])),
            (
                "/blob_of_bundle",
                raw_file(b"blob_of_bundle", 1000, vec![offsite_format::ContentItem::Blob(bundle)]),
            ),
        ],
    );
    let r = fx.reader();
    for (path, named, says) in [
        ("/past_end", bundle, "runs past the end of bundle"),
        ("/slice_of_data", data, "as a bundle blob is indexed as a data blob"),
        ("/blob_of_bundle", bundle, "as a data blob is indexed as a bundle blob"),
    ] {
        let mut out = Vec::new();
        let err = dump(&r, &snap, path.as_bytes(), &mut out).unwrap_err().to_string();
        assert!(err.contains(&named.short()) && err.contains(says), "{path}: {err}");
        assert!(err.contains(path) && !err.contains('\n'), "{path}: {err}");
        assert!(out.is_empty(), "{path}: wrote {} bytes", out.len());
    }
}

#[test]
fn diff_compares_slices_by_their_bytes_not_their_bundle() {
    let fx = Fixture::new();
    let b1 = fx.bundle(b"hello world");
    let b2 = fx.bundle(b"...hello WORLD");
    let (_, s1) = fx.snapshot(
        "2026-01-01T00:00:00Z",
        &[
            ("/same", raw_file(b"same", 5, vec![slice(b1, 0, 5)])),
            ("/edited", raw_file(b"edited", 5, vec![slice(b1, 6, 5)])),
        ],
    );
    // The same bytes stored again in another bundle, and an edit of the same size.
    let (_, s2) = fx.snapshot(
        "2026-01-02T00:00:00Z",
        &[
            ("/same", raw_file(b"same", 5, vec![slice(b2, 3, 5)])),
            ("/edited", raw_file(b"edited", 5, vec![slice(b2, 9, 5)])),
        ],
    );
    let r = fx.reader();
    assert_eq!(diff(&r, &s1, &s2).unwrap(), [item("M", "/edited", 5)]);
}
