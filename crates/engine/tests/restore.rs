//! Restore onto real files in temporary directories, from repositories built blob by blob (and,
//! in the round trip, by the archiver): content, holes, metadata, links, hostile trees, planted
//! symlinks, corruption, overwrite modes and resume, include/exclude, full disk.
#![allow(clippy::unwrap_used)]

mod slice_ids;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use offsite_backend::LocalStorage;
use offsite_engine::{
    restore, CollectReporter, EngineError, Event, NullReporter, Overwrite, RestoreOptions, RestoreSummary,
};
use offsite_format::{BlobId, BlobType, ContentItem, Node, NodeKind, RawBytes, Snapshot, Tree, Xattr};
use offsite_repo::{BlobReader, BlobWriter, CacheSetting, Index, InitOptions, Repository, WriterOptions};
use slice_ids::{register, slice_id};
use tempfile::TempDir;

const MTIME: (i64, u32) = (1_600_000_000, 123_456_789);
const DIR_MTIME: (i64, u32) = (1_500_000_000, 987_654_321);

/// A repository being filled by hand.
struct Fx {
    dir: TempDir,
    repo: Arc<Repository>,
    writer: Option<BlobWriter>,
}

/// A finished repository to restore from.
struct Repo {
    dir: TempDir,
    reader: BlobReader,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let opts = InitOptions { kdf: offsite_crypto::KdfParams::for_tests(), ..Default::default() };
        let repo = Arc::new(Repository::init(storage, b"pw", &opts, &CacheSetting::Disabled).unwrap());
        let writer = BlobWriter::new(repo.clone(), Arc::new(Index::default()), WriterOptions::default());
        Fx { dir, repo, writer: Some(writer) }
    }

    fn w(&self) -> &BlobWriter {
        self.writer.as_ref().unwrap()
    }

    fn data(&self, bytes: &[u8]) -> BlobId {
        let id = self.w().add(BlobType::Data, bytes).unwrap().0;
        register(id, self.repo.keys(), bytes);
        id
    }

    /// Store `bytes` as a bundle under a fresh random id.
    fn bundle(&self, bytes: &[u8]) -> BlobId {
        let id = BlobId(offsite_crypto::random_bytes::<32>());
        self.w().add_bundle(id, bytes).unwrap();
        register(id, self.repo.keys(), bytes);
        id
    }

    fn tree(&self, mut nodes: Vec<Node>) -> BlobId {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.w().add(BlobType::Tree, &serde_json::to_vec(&Tree { nodes }).unwrap()).unwrap().0
    }

    /// A file whose content is stored in blobs of at most 1000 bytes.
    fn file(&self, name: &[u8], content: &[u8]) -> Node {
        let items = content.chunks(1000).map(|c| ContentItem::Blob(self.data(c))).collect();
        Node { size: content.len() as u64, content: Some(items), ..node(name, NodeKind::File) }
    }

    fn dir(&self, name: &[u8], nodes: Vec<Node>) -> Node {
        Node { mode: 0o755, mtime: DIR_MTIME, subtree: Some(self.tree(nodes)), ..node(name, NodeKind::Dir) }
    }

    /// Store the root tree and return a snapshot of it.
    fn snapshot(&self, root: Vec<Node>) -> Snapshot {
        let tree = self.tree(root);
        Snapshot {
            version: 1,
            repository: self.repo.config().id,
            time: "2026-01-01T00:00:00Z".into(),
            host: "host".into(),
            user: "user".into(),
            paths: vec![RawBytes(b"/".to_vec())],
            tags: vec![],
            tree,
            parent: None,
            seen: vec![],
            summary: Default::default(),
            program: "test".into(),
        }
    }

    fn finish(mut self, snaps: &[&Snapshot]) -> Repo {
        self.writer.take().unwrap().finish().unwrap();
        for s in snaps {
            self.repo.save_snapshot(s).unwrap();
        }
        let index = Arc::new(Index::load(&**self.repo.storage(), self.repo.keys()).unwrap());
        Repo { dir: self.dir, reader: BlobReader::new(self.repo, index).unwrap() }
    }
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: RawBytes(name.to_vec()),
        kind,
        mode: 0o644,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: None,
        group: None,
        mtime: MTIME,
        size: 0,
        inode: 0,
        dev: 0,
        links: 0,
        rdev: None,
        target: None,
        xattrs: vec![],
        content: None,
        subtree: None,
    }
}

/// Deterministic bytes that do not compress to nothing.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn opts(target: &Path) -> RestoreOptions {
    RestoreOptions { target: target.to_path_buf(), threads: 2, ..Default::default() }
}

fn run(repo: &Repo, snap: &Snapshot, o: &RestoreOptions) -> RestoreSummary {
    run_with(&repo.reader, snap, o)
}

fn run_with(reader: &BlobReader, snap: &Snapshot, o: &RestoreOptions) -> RestoreSummary {
    let s = restore(reader, snap, o, &NullReporter).unwrap();
    assert!(s.errors.is_empty(), "unexpected errors: {:?}", s.errors);
    s
}

fn mtime_of(p: &Path) -> (i64, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec() as u32)
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every name under `dir`, recursively, relative.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn no_temp_files(dir: &Path) {
    for p in listing(dir) {
        let name = p.file_name().unwrap().as_bytes();
        assert!(!name.starts_with(b".offsite-tmp-"), "temporary file left: {}", p.display());
    }
}

/// Whether the filesystem of `dir` takes `user.*` extended attributes.
fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    ok
}

#[test]
fn restores_files_dirs_and_metadata() {
    let fx = Fx::new();
    let big = noise(1, 3500);
    let mut setuid = fx.file(b"setuid", b"#!/bin/sh\n");
    setuid.mode = 0o4755;
    let mut private = fx.file(b"private", b"secret");
    private.mode = 0o600;
    private.mtime = (1_234_567_890, 1);
    let empty = Node { content: Some(vec![]), ..node(b"empty", NodeKind::File) };
    let mb = 1u64 << 20;
    let sparse = Node {
        size: 2 * mb + 4,
        content: Some(vec![
            ContentItem::Hole { hole: mb },
            ContentItem::Blob(fx.data(b"tail")),
            ContentItem::Hole { hole: mb },
        ]),
        ..node(b"sparse", NodeKind::File)
    };
    let zeros = Node {
        size: 256 * 1024,
        content: Some(vec![ContentItem::Blob(fx.data(&vec![0u8; 256 * 1024]))]),
        ..node(b"zeros", NodeKind::File)
    };
    let link = Node { target: Some(RawBytes(b"a.txt".to_vec())), ..node(b"link", NodeKind::Symlink) };
    let dangling = Node {
        target: Some(RawBytes(b"/nonexistent/\xff".to_vec())),
        ..node(b"dangling", NodeKind::Symlink)
    };
    let fifo = Node { mode: 0o640, ..node(b"fifo", NodeKind::Fifo) };
    let socket = node(b"socket", NodeKind::Socket);
    let mut xa = fx.file(b"xa", b"with xattrs");
    xa.xattrs =
        vec![Xattr { name: RawBytes(b"user.comment".to_vec()), value: RawBytes(b"\x00binary\xff".to_vec()) }];
    let latin1 = fx.file(b"caf\xe9.txt", b"not utf-8 name");
    let mut setgid = fx.dir(b"setgid", vec![fx.file(b"deep.txt", b"deep")]);
    setgid.mode = 0o2750;
    let mut sticky = fx.dir(b"sticky", vec![]);
    sticky.mode = 0o1777;
    sticky.mtime = (1_400_000_000, 5);
    let u = fx.dir(
        b"u",
        vec![
            fx.file(b"a.txt", &big),
            setuid,
            private,
            empty,
            sparse,
            zeros,
            link,
            dangling,
            fifo,
            socket,
            xa,
            latin1,
            setgid,
            sticky,
        ],
    );
    let snap = fx.snapshot(vec![fx.dir(b"home", vec![u])]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("restored");
    let s = run(&repo, &snap, &opts(&target));
    let u = target.join("home/u");

    assert_eq!(fs::read(u.join("a.txt")).unwrap(), big);
    assert_eq!(fs::read(u.join("setuid")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(mode_of(&u.join("setuid")), 0o4755);
    assert_eq!(mode_of(&u.join("private")), 0o600);
    assert_eq!(mtime_of(&u.join("private")), (1_234_567_890, 1));
    assert_eq!(mtime_of(&u.join("a.txt")), MTIME);
    assert_eq!(fs::read(u.join("empty")).unwrap(), b"");

    let sp = fs::read(u.join("sparse")).unwrap();
    assert_eq!(sp.len() as u64, 2 * mb + 4);
    assert!(sp[..mb as usize].iter().all(|b| *b == 0));
    assert_eq!(&sp[mb as usize..mb as usize + 4], b"tail");
    assert!(sp[mb as usize + 4..].iter().all(|b| *b == 0));
    let blocks = fs::metadata(u.join("sparse")).unwrap().blocks() * 512;
    assert!(blocks < mb, "holes were written: {blocks} bytes allocated");
    // A blob of zeros becomes a hole too.
    let z = fs::metadata(u.join("zeros")).unwrap();
    assert_eq!(z.len(), 256 * 1024);
    assert!(z.blocks() * 512 < 256 * 1024, "zero blob was written");
    assert!(fs::read(u.join("zeros")).unwrap().iter().all(|b| *b == 0));

    assert_eq!(fs::read_link(u.join("link")).unwrap(), Path::new("a.txt"));
    assert_eq!(mtime_of(&u.join("link")), MTIME);
    assert_eq!(fs::read_link(u.join("dangling")).unwrap().as_os_str().as_bytes(), b"/nonexistent/\xff");
    let fm = fs::symlink_metadata(u.join("fifo")).unwrap();
    assert!(fm.file_type().is_fifo());
    assert_eq!(fm.permissions().mode() & 0o7777, 0o640);
    assert!(fs::symlink_metadata(u.join("socket")).is_err(), "sockets are not restored");
    assert_eq!(fs::read(u.join(OsStr::from_bytes(b"caf\xe9.txt"))).unwrap(), b"not utf-8 name");

    assert_eq!(fs::read(u.join("setgid/deep.txt")).unwrap(), b"deep");
    assert_eq!(mode_of(&u.join("setgid")), 0o2750);
    assert_eq!(mode_of(&u.join("sticky")), 0o1777);
    assert_eq!(mtime_of(&u.join("sticky")), (1_400_000_000, 5));
    assert_eq!(mtime_of(&u.join("setgid")), DIR_MTIME, "directory times are set after their children");
    assert_eq!(mtime_of(&u), DIR_MTIME);
    assert_eq!(mtime_of(&target.join("home")), DIR_MTIME);
    assert_eq!(mode_of(&u), 0o755);

    if user_xattrs_supported(t.path()) {
        assert_eq!(xattr::get(u.join("xa"), "user.comment").unwrap().unwrap(), b"\x00binary\xff");
    } else {
        println!("note: the temporary filesystem has no user xattrs; xattr restore not checked");
    }
    assert_eq!(s.files, 9);
    assert_eq!(s.dirs, 4);
    assert_eq!(s.others, 3);
    assert_eq!(s.files_skipped, 0);
    assert_eq!(s.bytes_written, (3500 + 10 + 6 + 4 + 11 + 14 + 4) as u64);
    no_temp_files(&target);
}

#[test]
fn hard_links_are_restored_as_links() {
    let fx = Fx::new();
    let body = noise(7, 2500);
    let linked = |name: &[u8]| Node { links: 2, inode: 4242, dev: 9, ..fx.file(name, &body) };
    let other = Node { links: 2, inode: 4243, dev: 9, ..fx.file(b"other", b"other") };
    let snap =
        fx.snapshot(vec![fx.dir(b"d", vec![linked(b"first"), other]), fx.dir(b"e", vec![linked(b"second")])]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let s = run(&repo, &snap, &opts(t.path()));
    let a = fs::metadata(t.path().join("d/first")).unwrap();
    let b = fs::metadata(t.path().join("e/second")).unwrap();
    assert_eq!(a.ino(), b.ino(), "not linked");
    assert_eq!(a.nlink(), 2);
    assert_eq!(fs::read(t.path().join("e/second")).unwrap(), body);
    assert_eq!(fs::metadata(t.path().join("d/other")).unwrap().nlink(), 1);
    assert_eq!(s.files, 3);
    assert_eq!(s.bytes_written, 2500 + 5, "the linked content is written once");

    // A rerun leaves the link alone.
    let s = run(&repo, &snap, &opts(t.path()));
    assert_eq!((s.files, s.files_skipped, s.bytes_written), (0, 3, 0));
    assert_eq!(fs::metadata(t.path().join("e/second")).unwrap().ino(), a.ino());
}

#[test]
fn deep_path_over_4000_bytes() {
    let fx = Fx::new();
    let name = vec![b'd'; 200];
    let levels = 25; // 25 * 201 bytes: over 5000 bytes, beyond PATH_MAX with the target
    let mut n = fx.file(b"leaf", b"at the bottom");
    for _ in 0..levels {
        n = fx.dir(&name, vec![n]);
    }
    let snap = fx.snapshot(vec![n]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let s = run(&repo, &snap, &opts(t.path()));
    assert_eq!(s.files, 1);
    assert_eq!(s.dirs, levels);
    // Walk down through descriptors: the full path is too long for one open.
    let mut dir = fs::File::open(t.path()).unwrap();
    let name_os = OsStr::from_bytes(&name);
    for _ in 0..levels {
        dir = fs::File::open(
            Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join(name_os),
        )
        .unwrap();
        let m = dir.metadata().unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec() as u32), DIR_MTIME);
    }
    let leaf = Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join("leaf");
    assert_eq!(fs::read(leaf).unwrap(), b"at the bottom");
}

#[test]
fn unsafe_entries_are_refused_before_anything_is_written() {
    let fx = Fx::new();
    let mut snaps = Vec::new();
    for bad in [&b".."[..], b".", b"", b"a/b", b"nul\0", b"/etc"] {
        let evil =
            Node { subtree: Some(fx.tree(vec![fx.file(b"passwd", b"owned")])), ..node(bad, NodeKind::Dir) };
        // The bad entry sits deep, after good content that would otherwise be written first.
        let deep = fx.dir(b"x", vec![fx.file(b"fine", b"fine"), fx.dir(b"y", vec![evil])]);
        snaps.push(fx.snapshot(vec![fx.file(b"a", b"good"), deep]));
    }
    let dup = fx.snapshot(vec![fx.file(b"same", b"1"), fx.dir(b"same", vec![])]);
    let repo = fx.finish(&[]);
    for snap in snaps.iter().chain([&dup]) {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("t");
        let err = restore(&repo.reader, snap, &opts(&target), &NullReporter).unwrap_err();
        assert!(matches!(err, EngineError::UnsafeEntry { .. }), "{err}");
        assert_eq!(listing(&target), Vec::<PathBuf>::new(), "something was written");
        assert_eq!(listing(t.path()), vec![PathBuf::from("t")]);
    }
}

#[test]
fn planted_symlinks_are_not_followed() {
    let fx = Fx::new();
    let snap = fx.snapshot(vec![
        fx.dir(b"a", vec![fx.file(b"f", b"restored"), fx.dir(b"sub", vec![fx.file(b"g", b"g")])])
    ]);
    let repo = fx.finish(&[&snap]);
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim"), b"precious").unwrap();

    // A directory of the snapshot planted as a symlink to a directory outside.
    let t = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), t.path().join("a")).unwrap();
    run(&repo, &snap, &opts(t.path()));
    assert_eq!(listing(outside.path()), vec![PathBuf::from("victim")]);
    assert!(fs::symlink_metadata(t.path().join("a")).unwrap().is_dir());
    assert_eq!(fs::read(t.path().join("a/f")).unwrap(), b"restored");
    assert_eq!(fs::read(t.path().join("a/sub/g")).unwrap(), b"g");

    // A file of the snapshot planted as a symlink to a file outside, and a deeper directory.
    for o in [Overwrite::IfChanged, Overwrite::Always] {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("a")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), t.path().join("a/f")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/sub")).unwrap();
        run(&repo, &snap, &RestoreOptions { overwrite: o, ..opts(t.path()) });
        assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"precious");
        assert_eq!(listing(outside.path()), vec![PathBuf::from("victim")]);
        assert!(fs::symlink_metadata(t.path().join("a/f")).unwrap().is_file());
        assert_eq!(fs::read(t.path().join("a/f")).unwrap(), b"restored");
        assert_eq!(fs::read(t.path().join("a/sub/g")).unwrap(), b"g");
    }

    // With overwrite never, a planted directory symlink is an error, still not followed.
    let t = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), t.path().join("a")).unwrap();
    let s = restore(
        &repo.reader,
        &snap,
        &RestoreOptions { overwrite: Overwrite::Never, ..opts(t.path()) },
        &NullReporter,
    )
    .unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].0, "/a");
    assert_eq!(listing(outside.path()), vec![PathBuf::from("victim")]);
}

/// Flip one byte in the middle of a blob's ciphertext in its pack file.
fn corrupt_blob(repo: &Repo, id: &BlobId) {
    let loc = repo.reader.index().get(id).unwrap();
    let pack = repo.reader.index().pack(loc.pack).id.to_hex();
    let path = repo.dir.path().join("repo/data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(loc.entry.offset + loc.entry.length / 2) as usize] ^= 0x40;
    let mut perm = fs::metadata(&path).unwrap().permissions();
    perm.set_mode(0o644);
    fs::set_permissions(&path, perm).unwrap();
    fs::write(&path, bytes).unwrap();
}

#[test]
fn corrupt_blob_fails_only_its_file() {
    let fx = Fx::new();
    let bad_part = noise(3, 1000);
    let bad_id = fx.data(&bad_part);
    let mut bad_content = noise(4, 1000);
    bad_content.extend_from_slice(&bad_part);
    let bad = fx.file(b"bad", &bad_content);
    let good = noise(5, 4000);
    let snap = fx.snapshot(vec![fx.dir(
        b"d",
        vec![fx.file(b"good1", &good), bad, fx.file(b"good2", b"also good"), fx.file(b"empty", b"")],
    )]);
    let repo = fx.finish(&[&snap]);
    corrupt_blob(&repo, &bad_id);
    let t = tempfile::tempdir().unwrap();
    let events = CollectReporter::default();
    let s = restore(&repo.reader, &snap, &opts(t.path()), &events).unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].0, "/d/bad");
    assert_eq!(s.files, 3);
    let reported: Vec<_> = events
        .0
        .lock()
        .iter()
        .filter_map(|e| if let Event::Error { path, .. } = e { Some(path.clone()) } else { None })
        .collect();
    assert_eq!(reported, vec!["/d/bad".to_string()]);
    assert!(fs::symlink_metadata(t.path().join("d/bad")).is_err(), "a corrupt file was put in place");
    assert_eq!(fs::read(t.path().join("d/good1")).unwrap(), good);
    assert_eq!(fs::read(t.path().join("d/good2")).unwrap(), b"also good");
    no_temp_files(t.path());
}

#[test]
fn content_that_disagrees_with_size_is_an_error_for_that_file() {
    let fx = Fx::new();
    let blob = fx.data(b"0123456789");
    let short =
        Node { size: 20, content: Some(vec![ContentItem::Blob(blob)]), ..node(b"short", NodeKind::File) };
    let overflow = Node {
        size: 5,
        content: Some(vec![ContentItem::Hole { hole: u64::MAX }, ContentItem::Blob(blob)]),
        ..node(b"overflow", NodeKind::File)
    };
    let huge = Node {
        size: u64::MAX,
        content: Some(vec![ContentItem::Hole { hole: u64::MAX - 10 }, ContentItem::Blob(blob)]),
        ..node(b"huge", NodeKind::File)
    };
    let missing = Node {
        size: 3,
        content: Some(vec![ContentItem::Blob(BlobId([7; 32]))]),
        ..node(b"missing", NodeKind::File)
    };
    let nocontent = Node { size: 3, ..node(b"nocontent", NodeKind::File) };
    let snap = fx.snapshot(vec![short, overflow, huge, missing, nocontent, fx.file(b"ok", b"fine")]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let s = restore(&repo.reader, &snap, &opts(t.path()), &NullReporter).unwrap();
    let mut failed: Vec<_> = s.errors.iter().map(|e| e.0.as_str()).collect();
    failed.sort();
    assert_eq!(failed, vec!["/huge", "/missing", "/nocontent", "/overflow", "/short"], "{:?}", s.errors);
    assert_eq!(listing(t.path()), vec![PathBuf::from("ok")]);
}

#[test]
fn overwrite_modes_and_resume() {
    let fx = Fx::new();
    let a = noise(10, 5000);
    let b = noise(11, 3000);
    let snap = fx.snapshot(vec![fx.dir(
        b"d",
        vec![
            fx.file(b"a", &a),
            fx.file(b"b", &b),
            fx.file(b"c", b"cee"),
            Node { target: Some(RawBytes(b"a".to_vec())), ..node(b"l", NodeKind::Symlink) },
        ],
    )]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    let total = (5000 + 3000 + 3) as u64;
    let first = run(&repo, &snap, &opts(t.path()));
    assert_eq!((first.files, first.bytes_written), (3, total));

    // Rerun: everything is identical, nothing is written.
    let again = run(&repo, &snap, &opts(t.path()));
    assert_eq!((again.files, again.files_skipped, again.bytes_written), (0, 3, 0));

    // Same size and mtime but different content: rewritten.
    let mut changed = a.clone();
    changed[100] ^= 1;
    fs::write(d.join("a"), &changed).unwrap();
    filetime::set_file_mtime(d.join("a"), filetime::FileTime::from_unix_time(MTIME.0, MTIME.1)).unwrap();
    // Interrupted restore: a file missing, a stale temporary file, a wrong mode.
    fs::remove_file(d.join("b")).unwrap();
    fs::write(d.join(".offsite-tmp-0123456789abcdef"), b"half").unwrap();
    fs::set_permissions(d.join("c"), fs::Permissions::from_mode(0o600)).unwrap();
    let resumed = run(&repo, &snap, &opts(t.path()));
    assert_eq!((resumed.files, resumed.files_skipped, resumed.bytes_written), (2, 1, 8000));
    assert_eq!(fs::read(d.join("a")).unwrap(), a);
    assert_eq!(fs::read(d.join("b")).unwrap(), b);
    assert_eq!(mode_of(&d.join("c")), 0o644, "metadata of an identical file is refreshed");
    no_temp_files(t.path());

    // Never: existing files stay as they are, missing ones are restored.
    fs::write(d.join("a"), b"mine").unwrap();
    fs::remove_file(d.join("c")).unwrap();
    let never = run(&repo, &snap, &RestoreOptions { overwrite: Overwrite::Never, ..opts(t.path()) });
    assert_eq!((never.files, never.files_skipped), (1, 2));
    assert_eq!(fs::read(d.join("a")).unwrap(), b"mine");
    assert_eq!(fs::read(d.join("c")).unwrap(), b"cee");

    // Always: everything is written again.
    let always = run(&repo, &snap, &RestoreOptions { overwrite: Overwrite::Always, ..opts(t.path()) });
    assert_eq!((always.files, always.files_skipped, always.bytes_written), (3, 0, total));
    assert_eq!(fs::read(d.join("a")).unwrap(), a);
    assert_eq!(fs::read_link(d.join("l")).unwrap(), Path::new("a"));
}

#[test]
fn include_and_exclude() {
    let fx = Fx::new();
    let mut docs = fx.dir(b"docs", vec![fx.file(b"a.txt", b"a"), fx.file(b"b.md", b"b")]);
    docs.mode = 0o750;
    let src = fx
        .dir(b"src", vec![fx.file(b"main.rs", b"fn main"), fx.dir(b"target", vec![fx.file(b"x.o", b"obj")])]);
    let mut u = fx.dir(b"u", vec![docs, src, fx.file(b"notes.txt", b"n"), fx.dir(b"emptydir", vec![])]);
    u.mode = 0o701;
    let snap = fx.snapshot(vec![fx.dir(b"home", vec![u])]);
    let repo = fx.finish(&[&snap]);
    let paths = |l: Vec<PathBuf>| l.into_iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>();

    let t = tempfile::tempdir().unwrap();
    run(&repo, &snap, &RestoreOptions { include: vec!["/home/u/docs".into()], ..opts(t.path()) });
    assert_eq!(
        paths(listing(t.path())),
        ["home", "home/u", "home/u/docs", "home/u/docs/a.txt", "home/u/docs/b.md"]
    );
    assert_eq!(mode_of(&t.path().join("home/u")), 0o701, "parents of included paths get their metadata");
    assert_eq!(mtime_of(&t.path().join("home/u")), DIR_MTIME);

    let t = tempfile::tempdir().unwrap();
    run(
        &repo,
        &snap,
        &RestoreOptions { exclude: vec!["*.md".into(), "/home/u/src/target".into()], ..opts(t.path()) },
    );
    assert_eq!(
        paths(listing(t.path())),
        [
            "home",
            "home/u",
            "home/u/docs",
            "home/u/docs/a.txt",
            "home/u/emptydir",
            "home/u/notes.txt",
            "home/u/src",
            "home/u/src/main.rs"
        ]
    );

    let t = tempfile::tempdir().unwrap();
    run(
        &repo,
        &snap,
        &RestoreOptions {
            include: vec!["*.rs".into(), "*.o".into()],
            exclude: vec!["target/".into()],
            ..opts(t.path())
        },
    );
    assert_eq!(paths(listing(t.path())), ["home", "home/u", "home/u/src", "home/u/src/main.rs"]);

    let err = restore(
        &repo.reader,
        &snap,
        &RestoreOptions { include: vec!["a{b".into()], ..opts(t.path()) },
        &NullReporter,
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Usage(_)), "{err}");
}

#[test]
fn unusable_target_is_an_error_naming_it() {
    let fx = Fx::new();
    let snap = fx.snapshot(vec![fx.file(b"f", b"x")]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("file"), b"").unwrap();
    let target = t.path().join("file/sub");
    let err = restore(&repo.reader, &snap, &opts(&target), &NullReporter).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&target.display().to_string()), "{err}");
}

#[test]
fn progress_is_reported() {
    struct Progress(CollectReporter);
    impl offsite_engine::Reporter for Progress {
        fn report(&self, e: Event) {
            self.0.report(e);
        }
        fn wants_progress(&self) -> bool {
            true
        }
    }
    let fx = Fx::new();
    let snap = fx.snapshot(vec![fx.file(b"a", &noise(1, 3000)), fx.file(b"b", b"bb")]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let r = Progress(CollectReporter::default());
    restore(&repo.reader, &snap, &opts(t.path()), &r).unwrap();
    let events = r.0 .0.lock();
    let last = events
        .iter()
        .rev()
        .filter_map(|e| match e {
            Event::Progress { phase, items_done, bytes_done, items_total, bytes_total, .. } => {
                Some((*phase, *items_done, *bytes_done, *items_total, *bytes_total))
            }
            _ => None,
        })
        .next()
        .unwrap();
    assert_eq!(last, ("restore", 2, 3002, Some(2), Some(3002)));
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(TempDir);
impl SmallFs {
    fn mount(bytes: u64) -> Option<SmallFs> {
        let d = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(d.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs(d))
    }
}
impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_disk_stops_with_an_error_naming_the_file() {
    let Some(fs_) = SmallFs::mount(1 << 20) else {
        offsite_testkit::prereq::missing(
            "cannot mount a tmpfs here (not root?): full-disk restore not checked",
        );
        return;
    };
    let fx = Fx::new();
    let files: Vec<Node> =
        (0..6).map(|i| fx.file(format!("f{i}").as_bytes(), &noise(i + 100, 400 * 1024))).collect();
    let snap = fx.snapshot(vec![fx.dir(b"d", files)]);
    let repo = fx.finish(&[&snap]);
    let target = fs_.0.path().join("t");
    let err = restore(&repo.reader, &snap, &RestoreOptions { threads: 1, ..opts(&target) }, &NullReporter)
        .unwrap_err();
    match &err {
        EngineError::Io { path, source } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            assert!(path.contains("/t/d/f"), "{err}");
        }
        e => panic!("want a full-disk error, got {e}"),
    }
    no_temp_files(&target);
    // Files in place are complete.
    for e in fs::read_dir(target.join("d")).unwrap() {
        assert_eq!(fs::metadata(e.unwrap().path()).unwrap().len(), 400 * 1024);
    }
}

/// Build a source tree with every kind of entry and metadata the archiver records.
fn make_source(src: &Path) {
    use std::os::unix::fs::symlink;
    let set_mtime = |p: &Path, s: i64, ns: u32| {
        filetime::set_symlink_file_times(
            p,
            filetime::FileTime::from_unix_time(s, ns),
            filetime::FileTime::from_unix_time(s, ns),
        )
        .unwrap()
    };
    fs::create_dir_all(src.join("docs/deeper/deepest")).unwrap();
    fs::create_dir_all(src.join("shared")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("docs/small.txt"), b"hello").unwrap();
    fs::write(src.join("docs/empty.txt"), b"").unwrap();
    fs::write(src.join("docs/big.bin"), noise(42, 700_000)).unwrap();
    fs::write(src.join("docs/deeper/deepest/leaf"), noise(43, 70_000)).unwrap();
    let mut dup = noise(44, 100_000);
    dup.extend(noise(44, 100_000)); // repeated content: deduplicated blobs, two places each
    fs::write(src.join("docs/repeated.bin"), &dup).unwrap();
    fs::write(src.join(OsStr::from_bytes(b"na\xefve-\xff.txt")), b"latin-1 name").unwrap();
    // A sparse file: a hole, some data, a trailing hole.
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &noise(45, 5000), 1 << 20).unwrap();
    drop(sparse);
    // Hard links, across directories.
    fs::write(src.join("shared/original"), noise(46, 30_000)).unwrap();
    fs::hard_link(src.join("shared/original"), src.join("docs/link-to-original")).unwrap();
    symlink("docs/small.txt", src.join("rel-link")).unwrap();
    symlink(OsStr::from_bytes(b"/nowhere/\xfe"), src.join("dangling")).unwrap();
    nix::unistd::mkfifo(&src.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o620)).unwrap();
    for (p, m) in [
        ("docs/small.txt", 0o640),
        ("docs/big.bin", 0o4755),
        ("shared/original", 0o600),
        ("docs/deeper", 0o2770),
        ("empty", 0o1777),
        ("docs", 0o750),
    ] {
        fs::set_permissions(src.join(p), fs::Permissions::from_mode(m)).unwrap();
    }
    let xattrs = user_xattrs_supported(src);
    if xattrs {
        xattr::set(src.join("docs/small.txt"), "user.note", b"\x01\x02 value").unwrap();
        xattr::set(src.join("docs"), "user.dir", b"on a directory").unwrap();
    }
    // Times last, deepest first, so creating children does not disturb them.
    let mut all = listing(src);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(&src.join(p), 1_700_000_000 + i as i64, 100_000_007 * (i as u32 % 9) + 1);
    }
    set_mtime(src, 1_650_000_000, 999_999_999);
}

/// Compare every entry of `a` and `b`: type, content, mode, owner, mtime (ns), symlink
/// target, user xattrs; and that hard-linked names in `a` are hard-linked in `b`.
fn assert_same_tree(a: &Path, b: &Path) {
    let names = listing(a);
    assert_eq!(names, listing(b), "different entries");
    let mut links: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for rel in std::iter::once(PathBuf::new()).chain(names) {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (fs::symlink_metadata(&pa).unwrap(), fs::symlink_metadata(&pb).unwrap());
        let what = rel.display();
        assert_eq!(ma.file_type(), mb.file_type(), "{what}: type");
        assert_eq!(ma.mode(), mb.mode(), "{what}: mode");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{what}: owner");
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "{what}: mtime");
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "{what}: size");
            assert!(fs::read(&pa).unwrap() == fs::read(&pb).unwrap(), "{what}: content");
            assert!(mb.blocks() <= ma.blocks() + 8, "{what}: holes were filled");
            if ma.nlink() > 1 {
                assert_eq!(ma.nlink(), mb.nlink(), "{what}: link count");
                let first = *links.entry(ma.ino()).or_insert(mb.ino());
                assert_eq!(first, mb.ino(), "{what}: not linked to its other name");
            }
        }
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap(), "{what}: target");
        } else {
            let list = |p: &Path| {
                let mut v: Vec<_> = xattr::list(p)
                    .unwrap()
                    .filter(|n| n.as_bytes().starts_with(b"user."))
                    .map(|n| (n.clone(), xattr::get(p, &n).unwrap()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(list(&pa), list(&pb), "{what}: xattrs");
        }
    }
}

#[test]
fn round_trip_through_backup() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src);
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let init = InitOptions {
        kdf: offsite_crypto::KdfParams::for_tests(),
        chunker: offsite_format::ChunkerSizes { min: 4096, avg: 16384, max: 65536 },
        pack_size: 256 * 1024,
        ..Default::default()
    };
    let repo = Arc::new(Repository::init(storage, b"pw", &init, &CacheSetting::Disabled).unwrap());
    let out = offsite_engine::backup(
        repo.clone(),
        &offsite_engine::BackupOptions { paths: vec![src.clone()], ..Default::default() },
        &NullReporter,
    )
    .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let index = Arc::new(Index::load(&**repo.storage(), repo.keys()).unwrap());
    assert!(index.packs().len() > 2, "want several packs");
    let reader = BlobReader::new(repo, index).unwrap();
    let target = dir.path().join("target");
    let restored = target.join(src.strip_prefix("/").unwrap());

    let s = restore(&reader, &out.snapshot, &RestoreOptions { threads: 4, ..opts(&target) }, &NullReporter)
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_same_tree(&src, &restored);
    assert_eq!(s.files, 9);
    assert_eq!(s.others, 3);
    no_temp_files(&target);

    // Restoring again over it writes nothing and changes nothing.
    let again = restore(&reader, &out.snapshot, &opts(&target), &NullReporter).unwrap();
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!((again.files, again.files_skipped, again.bytes_written), (0, 9, 0));
    assert_same_tree(&src, &restored);

    // Only part of it.
    let part = dir.path().join("part");
    let inc = format!("{}/docs/deeper", src.display());
    run_with(&reader, &out.snapshot, &RestoreOptions { include: vec![inc], ..opts(&part) });
    let prest = part.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        listing(&prest),
        [
            PathBuf::from("docs"),
            "docs/deeper".into(),
            "docs/deeper/deepest".into(),
            "docs/deeper/deepest/leaf".into()
        ]
    );
    assert_eq!(mode_of(&prest.join("docs")), 0o750);
    assert_eq!(mtime_of(&prest.join("docs")), mtime_of(&src.join("docs")));
}

#[test]
fn devices_need_root() {
    let fx = Fx::new();
    let null =
        Node { rdev: Some(nix::sys::stat::makedev(1, 3)), mode: 0o666, ..node(b"null", NodeKind::Chardev) };
    let snap = fx.snapshot(vec![null, fx.file(b"f", b"x")]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let s = restore(&repo.reader, &snap, &opts(t.path()), &NullReporter).unwrap();
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"x");
    if nix::unistd::geteuid().is_root() {
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let m = fs::symlink_metadata(t.path().join("null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(m.mode() & 0o7777, 0o666);
        assert_eq!(s.others, 1);
    } else {
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert_eq!(s.errors[0].0, "/null");
    }
}

/// A data read: pack id and range.
type Read = (String, Option<(u64, u64)>);

/// Storage that records every data read.
#[derive(Debug)]
struct Counting {
    inner: LocalStorage,
    reads: parking_lot::Mutex<Vec<Read>>,
}

impl offsite_backend::Storage for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> offsite_backend::StorageResult<()> {
        self.inner.create()
    }
    fn list(&self, kind: offsite_backend::ObjectKind) -> offsite_backend::StorageResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn read(
        &self,
        kind: offsite_backend::ObjectKind,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> offsite_backend::StorageResult<Vec<u8>> {
        if kind == offsite_backend::ObjectKind::Data {
            self.reads.lock().push((id.to_string(), range));
        }
        self.inner.read(kind, id, range)
    }
    fn write(
        &self,
        kind: offsite_backend::ObjectKind,
        id: &str,
        data: &[u8],
    ) -> offsite_backend::StorageResult<()> {
        self.inner.write(kind, id, data)
    }
    fn delete(&self, kind: offsite_backend::ObjectKind, id: &str) -> offsite_backend::StorageResult<()> {
        self.inner.delete(kind, id)
    }
    fn stat(&self, kind: offsite_backend::ObjectKind, id: &str) -> offsite_backend::StorageResult<u64> {
        self.inner.stat(kind, id)
    }
}

/// Reopen a finished repository through a read-recording storage.
fn counting_reader(repo: &Repo) -> (BlobReader, Arc<Counting>) {
    let storage = Arc::new(Counting {
        inner: LocalStorage::new(repo.dir.path().join("repo")),
        reads: parking_lot::Mutex::new(Vec::new()),
    });
    let r = Arc::new(Repository::open(storage.clone(), b"pw", &CacheSetting::Disabled).unwrap());
    let index = Arc::new(Index::load(&**r.storage(), r.keys()).unwrap());
    (BlobReader::new(r, index).unwrap(), storage)
}

#[test]
fn each_pack_is_read_once_and_only_where_needed() {
    let fx = Fx::new();
    // Shared blobs at several places in several files.
    let a = noise(20, 1000);
    let b = noise(21, 1000);
    let mut one = a.clone();
    one.extend(&b);
    one.extend(&a);
    let mut two = b.clone();
    two.extend(&a);
    let files: Vec<Node> =
        (0..20).map(|i| fx.file(format!("f{i}").as_bytes(), &noise(30 + i, 3000 + i as usize))).collect();
    // Lots of data no file of this snapshot needs, in the same pack as `lonely`.
    for i in 0..1500 {
        fx.data(&noise(1000 + i, 1000));
    }
    let lonely = fx.data(b"only this blob is needed");
    let all = fx.snapshot(vec![fx.dir(b"d", files), fx.file(b"one", &one), fx.file(b"two", &two)]);
    let small = fx.snapshot(vec![Node {
        size: 24,
        content: Some(vec![ContentItem::Blob(lonely)]),
        ..node(b"lonely", NodeKind::File)
    }]);
    let repo = fx.finish(&[]);
    let (reader, storage) = counting_reader(&repo);
    let data_packs: std::collections::HashSet<String> = reader
        .index()
        .blobs()
        .into_iter()
        .filter(|(_, l)| l.entry.ty == BlobType::Data)
        .map(|(_, l)| reader.index().pack(l.pack).id.to_hex())
        .collect();
    assert_eq!(data_packs.len(), 1, "the test wants one data pack");
    let pack = data_packs.into_iter().next().unwrap();
    let pack_size = reader.index().packs().iter().find(|p| p.id.to_hex() == pack).unwrap().size;

    let t = tempfile::tempdir().unwrap();
    run_with(&reader, &all, &opts(t.path()));
    assert_eq!(fs::read(t.path().join("one")).unwrap(), one);
    assert_eq!(fs::read(t.path().join("two")).unwrap(), two);
    let reads: Vec<_> = storage.reads.lock().drain(..).filter(|(id, _)| *id == pack).collect();
    // The needed blobs are spread over the pack with small gaps: one read, of a range.
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(reads[0].1.is_some(), "read the whole object instead of a range");

    let t = tempfile::tempdir().unwrap();
    run_with(&reader, &small, &opts(t.path()));
    let reads: Vec<_> = storage.reads.lock().drain(..).filter(|(id, _)| *id == pack).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    let (off, len) = reads[0].1.unwrap();
    let align = offsite_repo::READ_ALIGN;
    assert!(
        len <= 2 * align && len < pack_size / 10,
        "read {len} bytes of a {pack_size}-byte pack for one blob"
    );
    assert!(
        off % align == 0 && (len % align == 0 || off + len == pack_size),
        "reads are aligned so their length does not reveal the blob's: {off}+{len}"
    );
}

/// A file of `size` bytes with exactly this content list.
fn raw_file(name: &[u8], size: usize, content: Vec<ContentItem>) -> Node {
    Node { size: size as u64, content: Some(content), ..node(name, NodeKind::File) }
}

fn slice(bundle: BlobId, offset: usize, length: usize) -> ContentItem {
    ContentItem::Slice {
        bundle,
        offset: offset as u32,
        length: length as u32,
        id: slice_id(bundle, offset as u64, length as u64),
    }
}

/// Each restored file's name (under `/d`) and bytes.
type Expected = Vec<(&'static str, Vec<u8>)>;

/// Small files as slices of one bundle (one all zeros, one empty), and a file mixing a data
/// blob, a hole and two slices; returns the repository, the snapshot, the bundle and every
/// file's expected bytes.
fn bundled_repo() -> (Repo, Snapshot, BlobId, Expected) {
    let fx = Fx::new();
    let mut bundle = noise(40, 700); // a: 0..700
    bundle.extend(noise(41, 1300)); // b: 700..2000
    bundle.extend([0u8; 500]); // zeros: 2000..2500
    bundle.extend(noise(42, 900)); // tail: 2500..3400
    let id = fx.bundle(&bundle);
    let big = noise(43, 1000);
    let blob = fx.data(&big);
    let mut mixed = big.clone();
    mixed.extend([0u8; 64]);
    mixed.extend(&bundle[2600..2900]);
    mixed.extend(&bundle[600..800]);
    let want = vec![
        ("a", bundle[..700].to_vec()),
        ("b", bundle[700..2000].to_vec()),
        ("zeros", bundle[2000..2500].to_vec()),
        ("tail", bundle[2500..].to_vec()),
        ("empty", Vec::new()),
        ("mixed", mixed.clone()),
    ];
    let snap = fx.snapshot(vec![fx.dir(
        b"d",
        vec![
            raw_file(b"a", 700, vec![slice(id, 0, 700)]),
            raw_file(b"b", 1300, vec![slice(id, 700, 1300)]),
            raw_file(b"zeros", 500, vec![slice(id, 2000, 500)]),
            raw_file(b"tail", 900, vec![slice(id, 2500, 900)]),
            raw_file(b"empty", 0, vec![slice(id, 3400, 0)]),
            raw_file(
                b"mixed",
                mixed.len(),
                vec![
                    ContentItem::Blob(blob),
                    ContentItem::Hole { hole: 64 },
                    slice(id, 2600, 300),
                    slice(id, 600, 200),
                ],
            ),
        ],
    )]);
    (fx.finish(&[&snap]), snap, id, want)
}

/// How many recorded reads covered the bundle's ciphertext (and drop the record).
fn bundle_reads(reader: &BlobReader, storage: &Counting, bundle: &BlobId) -> usize {
    let loc = reader.index().get(bundle).unwrap();
    let pack = reader.index().pack(loc.pack).id.to_hex();
    let (start, end) = (u64::from(loc.entry.offset), u64::from(loc.entry.offset + loc.entry.length));
    storage
        .reads
        .lock()
        .drain(..)
        .filter(|(id, range)| *id == pack && range.is_none_or(|(off, len)| off < end && off + len > start))
        .count()
}

#[test]
fn bundled_files_restore_byte_identical_from_one_read_of_their_bundle() {
    let (repo, snap, bundle, want) = bundled_repo();
    assert_eq!(repo.reader.index().get(&bundle).unwrap().entry.ty, BlobType::Bundle);
    let (reader, storage) = counting_reader(&repo);
    let t = tempfile::tempdir().unwrap();
    let s = run_with(&reader, &snap, &RestoreOptions { threads: 4, ..opts(t.path()) });
    for (name, bytes) in &want {
        assert_eq!(&fs::read(t.path().join("d").join(name)).unwrap(), bytes, "{name}");
        assert_eq!(mtime_of(&t.path().join("d").join(name)), MTIME, "{name}");
    }
    assert_eq!(s.files, 6);
    // Written: every slice but the all-zero one (left to the file's length), and the blob.
    assert_eq!(s.bytes_written, 700 + 1300 + 900 + 1000 + 300 + 200);
    // Five files and six slices name the bundle: it is fetched once.
    assert_eq!(bundle_reads(&reader, &storage, &bundle), 1);
    no_temp_files(t.path());
}

#[test]
fn rerun_if_changed_skips_bundled_files_and_rewrites_a_changed_one() {
    let (repo, snap, bundle, want) = bundled_repo();
    let (reader, storage) = counting_reader(&repo);
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    run_with(&reader, &snap, &opts(t.path()));
    storage.reads.lock().clear();

    let again = run_with(&reader, &snap, &RestoreOptions { threads: 4, ..opts(t.path()) });
    assert_eq!((again.files, again.files_skipped, again.bytes_written), (0, 6, 0));
    // Slices are compared by their keyed ids (FORMAT.md §8.2): the bundle is not read at all.
    assert_eq!(bundle_reads(&reader, &storage, &bundle), 0);

    // Same size and mtime, other bytes: in a slice-only file, and in a slice of the mixed one.
    for (name, at) in [("b", 5), ("mixed", 1000 + 64 + 10)] {
        let mut changed = want.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        changed[at] ^= 1;
        fs::write(d.join(name), &changed).unwrap();
        filetime::set_file_mtime(d.join(name), filetime::FileTime::from_unix_time(MTIME.0, MTIME.1)).unwrap();
    }
    let fixed = run_with(&reader, &snap, &opts(t.path()));
    assert_eq!((fixed.files, fixed.files_skipped, fixed.bytes_written), (2, 4, 1300 + 1500));
    for (name, bytes) in &want {
        assert_eq!(&fs::read(d.join(name)).unwrap(), bytes, "{name}");
    }
    no_temp_files(t.path());
}

#[test]
fn slices_and_blobs_naming_the_wrong_blob_or_bytes_fail_their_file() {
    let fx = Fx::new();
    let bundle_bytes = noise(50, 3000);
    let bundle = fx.bundle(&bundle_bytes);
    let data = fx.data(&noise(51, 800));
    let snap = fx.snapshot(vec![
        raw_file(b"past_end", 500, vec![slice(bundle, 2600, 500)]),
        raw_file(
            b"far_past_end",
            2 * u32::MAX as usize,
            vec![ContentItem::Slice { bundle, offset: u32::MAX, length: u32::MAX, id: BlobId([0; 32]) }],
        ),
        raw_file(b"slice_of_data", 10, vec![slice(data, 0, 10)]),
        raw_file(b"blob_of_bundle", 3000, vec![ContentItem::Blob(bundle)]),
        raw_file(b"missing_bundle", 4, vec![slice(BlobId([9; 32]), 0, 4)]),
        raw_file(b"ok", 100, vec![slice(bundle, 2900, 100)]),
    ]);
    let repo = fx.finish(&[&snap]);
    let t = tempfile::tempdir().unwrap();
    let s = restore(&repo.reader, &snap, &opts(t.path()), &NullReporter).unwrap();
    let mut errors = s.errors.clone();
    errors.sort();
    let names: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["/blob_of_bundle", "/far_past_end", "/missing_bundle", "/past_end", "/slice_of_data"],
        "{errors:?}"
    );
    for (path, msg) in &errors {
        assert!(!msg.contains('\n'), "{path}: {msg}");
        let named = match path.as_str() {
            "/slice_of_data" => data.short(),
            "/missing_bundle" => BlobId([9; 32]).short(),
            _ => bundle.short(),
        };
        assert!(msg.contains(&named), "{path}: {msg}");
    }
    assert!(errors[0].1.contains("indexed as a bundle blob"), "{errors:?}");
    assert!(errors[3].1.contains("runs past the end"), "{errors:?}");
    assert!(errors[4].1.contains("indexed as a data blob"), "{errors:?}");
    assert_eq!(listing(t.path()), vec![PathBuf::from("ok")]);
    assert_eq!(fs::read(t.path().join("ok")).unwrap(), &bundle_bytes[2900..]);
}
