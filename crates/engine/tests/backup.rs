//! Backup behaviour on real files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::KdfParams;
use offsite_engine::{backup, BackupOptions, CollectReporter, Event, NullReporter};
use offsite_format::ChunkerSizes;
use offsite_repo::{CacheSetting, InitOptions, Repository};

struct Env {
    dir: tempfile::TempDir,
    storage: Arc<LocalStorage>,
}

impl Env {
    fn new(chunker: ChunkerSizes) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let opts =
            InitOptions { kdf: KdfParams::for_tests(), chunker, pack_size: 1 << 20, ..Default::default() };
        Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
        // The source sits one level down so that its ancestors do not change between backups
        // (the repository and cache directories appear beside `tree`, not beside `src`).
        std::fs::create_dir_all(dir.path().join("tree/src")).unwrap();
        Env { dir, storage }
    }
    fn small() -> Env {
        Env::new(ChunkerSizes { min: 4096, avg: 16384, max: 65536 })
    }
    fn src(&self) -> PathBuf {
        self.dir.path().join("tree/src")
    }
    fn repo(&self) -> Arc<Repository> {
        let cache = CacheSetting::Dir(self.dir.path().join("cache"));
        Arc::new(Repository::open(self.storage.clone(), b"pw", &cache).unwrap())
    }
    fn opts(&self) -> BackupOptions {
        BackupOptions { paths: vec![self.src()], ..Default::default() }
    }
    fn repo_bytes(&self) -> u64 {
        walk_size(&self.dir.path().join("repo"))
    }
}

fn walk_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn unchanged_second_backup_reads_nothing_and_adds_almost_nothing() {
    let env = Env::small();
    for i in 0..50 {
        let d = env.src().join(format!("d{}", i % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), pseudo_random(i, 3000 + i as usize * 100)).unwrap();
    }
    std::fs::write(env.src().join("big"), pseudo_random(99, 400_000)).unwrap();
    let first = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    assert_eq!(first.snapshot.summary.files_new, 51);
    assert!(first.errors.is_empty());
    let size1 = env.repo_bytes();
    let second = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    let s = &second.snapshot.summary;
    assert_eq!(s.files_unchanged, 51);
    assert_eq!(s.bytes_read, 0, "no file content read");
    assert_eq!(s.data_blobs, 0);
    // The source directory's tree is identical (the root tree is not compared: it holds the
    // metadata of /tmp, which other tests running in parallel change).
    let repo = env.repo();
    let index = Arc::new(offsite_repo::Index::load(&**repo.storage(), repo.keys()).unwrap());
    let reader = offsite_repo::BlobReader::new(repo, index).unwrap();
    let src = env.src();
    let path = std::os::unix::ffi::OsStrExt::as_bytes(src.as_os_str());
    let a = offsite_engine::find_node(&reader, &first.snapshot, path).unwrap();
    let b = offsite_engine::find_node(&reader, &second.snapshot, path).unwrap();
    assert!(a.subtree.is_some());
    assert_eq!(a.subtree, b.subtree, "same tree id for the unchanged directory");
    assert_eq!(second.snapshot.parent, first.id);
    let added = env.repo_bytes() - size1;
    // The snapshot (a record of at least 4 KiB, FORMAT.md §5) and, when the metadata of /tmp
    // changed meanwhile, one minimal tree pack (64 KiB, §6) and the index object naming it.
    let record = 4096 + 256;
    let most = if second.snapshot.summary.tree_blobs == 0 {
        record
    } else {
        offsite_format::MIN_PACK_LEN + 2 * record
    };
    assert!(added <= most, "unchanged backup added {added} bytes (at most {most})");
}

/// The files cache keeps a file's xattrs so an unchanged file is not even listed for them;
/// an xattr set since (which moves the ctime, not the mtime) must still reach the snapshot.
#[test]
fn an_xattr_change_alone_reaches_the_next_snapshot() {
    let env = Env::small();
    let f = env.src().join("file");
    std::fs::write(&f, b"content that does not change").unwrap();
    if xattr::set(&f, "user.probe", b"1").is_err() {
        offsite_testkit::prereq::missing("no user xattrs on this filesystem");
        return;
    }
    let xattrs_in = |snap: &offsite_format::Snapshot| {
        let repo = env.repo();
        let index = Arc::new(offsite_repo::Index::load(&**repo.storage(), repo.keys()).unwrap());
        let reader = offsite_repo::BlobReader::new(repo, index).unwrap();
        let path = std::os::unix::ffi::OsStrExt::as_bytes(f.as_os_str());
        let node = offsite_engine::find_node(&reader, snap, path).unwrap();
        node.xattrs.iter().map(|x| (x.name.0.clone(), x.value.0.clone())).collect::<Vec<_>>()
    };
    let first = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    assert_eq!(xattrs_in(&first.snapshot), vec![(b"user.probe".to_vec(), b"1".to_vec())]);
    // Unchanged: served from the cache, xattrs included.
    let second = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    assert_eq!(second.snapshot.summary.files_unchanged, 1);
    assert_eq!(xattrs_in(&second.snapshot), vec![(b"user.probe".to_vec(), b"1".to_vec())]);
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    xattr::set(&f, "user.probe", b"2").unwrap();
    xattr::set(&f, "user.added", b"new").unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), mtime, "mtime must not move");
    let third = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    assert_eq!(third.snapshot.summary.files_unchanged, 0, "a ctime change is not a cache hit");
    assert_eq!(
        xattrs_in(&third.snapshot),
        vec![(b"user.added".to_vec(), b"new".to_vec()), (b"user.probe".to_vec(), b"2".to_vec())]
    );
}

#[test]
fn insertion_near_start_restores_only_nearby_chunks() {
    let env = Env::small();
    let data = pseudo_random(7, 2_000_000);
    let f = env.src().join("large");
    std::fs::write(&f, &data).unwrap();
    let first = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    let blobs = first.snapshot.summary.data_blobs;
    assert!(blobs > 20, "{blobs} chunks");
    let mut edited = data[..1000].to_vec();
    edited.extend_from_slice(b"INSERTED BYTES");
    edited.extend_from_slice(&data[1000..]);
    std::fs::write(&f, &edited).unwrap();
    let second = backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    assert_eq!(second.snapshot.summary.files_changed, 1);
    let new = second.snapshot.summary.data_blobs;
    assert!((1..=2).contains(&new), "{new} of {blobs} chunks stored again");
}

#[test]
fn no_plaintext_reaches_the_repository() {
    let env = Env::small();
    let marker_name = "SECRETNAMEMARKER1234";
    let marker_content = b"SECRETCONTENTMARKER5678";
    let d = env.src().join("SECRETDIRMARKER");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join(marker_name), marker_content.repeat(1000)).unwrap();
    std::fs::write(env.src().join("plain.txt"), b"hello hello hello hello").unwrap();
    xattr::set(env.src().join("plain.txt"), "user.SECRETXATTRMARKER", b"SECRETXATTRVALUE").ok();
    let opts = BackupOptions {
        host: Some("SECRETHOSTMARKER".into()),
        tags: vec!["SECRETTAGMARKER".into()],
        ..env.opts()
    };
    backup(env.repo(), &opts, &NullReporter).unwrap();
    let needles: [&[u8]; 8] = [
        marker_name.as_bytes(),
        marker_content,
        b"SECRETDIRMARKER",
        b"SECRETXATTRMARKER",
        b"SECRETXATTRVALUE",
        b"SECRETHOSTMARKER",
        b"SECRETTAGMARKER",
        b"hello hello",
    ];
    let mut files = 0;
    for kind in ObjectKind::ALL {
        let ids = if kind == ObjectKind::Config {
            vec![(String::new(), 0)]
        } else {
            env.storage.list(kind).unwrap()
        };
        for (id, _) in ids {
            let bytes = env.storage.read(kind, &id, None).unwrap();
            files += 1;
            for n in needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n),
                    "{} found in {kind:?}/{id}",
                    String::from_utf8_lossy(n)
                );
            }
        }
    }
    assert!(files >= 5);
}

#[test]
fn dry_run_itemizes_and_writes_nothing() {
    let env = Env::small();
    std::fs::write(env.src().join("a"), b"one").unwrap();
    std::fs::write(env.src().join("b"), b"two").unwrap();
    backup(env.repo(), &env.opts(), &NullReporter).unwrap();
    std::fs::write(env.src().join("a"), b"one changed").unwrap();
    std::fs::remove_file(env.src().join("b")).unwrap();
    std::fs::write(env.src().join("c"), b"three").unwrap();
    let before = env.repo_bytes();
    let rep = CollectReporter::default();
    let out = backup(env.repo(), &BackupOptions { dry_run: true, ..env.opts() }, &rep).unwrap();
    assert!(out.id.is_none());
    assert_eq!(env.repo_bytes(), before, "dry run stored nothing");
    let mut changes: Vec<(String, String)> = rep
        .0
        .lock()
        .iter()
        .filter_map(|e| match e {
            Event::Change { change, path, .. } => {
                Some((change.to_string(), path.rsplit('/').next().unwrap().to_string()))
            }
            _ => None,
        })
        .collect();
    changes.sort();
    let want: Vec<(String, String)> =
        [("+", "c"), ("-", "b"), ("M", "a")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(changes, want);
}

#[test]
fn missing_path_is_reported_and_the_rest_backed_up() {
    let env = Env::small();
    std::fs::write(env.src().join("a"), b"one").unwrap();
    let opts = BackupOptions { paths: vec![env.src(), env.dir.path().join("nope")], ..Default::default() };
    let out = backup(env.repo(), &opts, &NullReporter).unwrap();
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].0.ends_with("/nope"), "{:?}", out.errors);
    assert_eq!(out.snapshot.summary.files_new, 1);
    assert!(out.id.is_some());
}

#[test]
fn excludes_patterns_caches_and_size() {
    let env = Env::small();
    let s = env.src();
    std::fs::write(s.join("keep.txt"), b"k").unwrap();
    std::fs::write(s.join("skip.tmp"), b"s").unwrap();
    std::fs::write(s.join("huge"), vec![1u8; 10_000]).unwrap();
    std::fs::create_dir(s.join("cache")).unwrap();
    std::fs::write(s.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    std::fs::write(s.join("cache/x"), b"x").unwrap();
    std::fs::create_dir(s.join("build")).unwrap();
    std::fs::write(s.join("build/o"), b"o").unwrap();
    let exf = env.dir.path().join("excludes");
    std::fs::write(&exf, "# comment\n\nbuild/\n").unwrap();
    let opts = BackupOptions {
        excludes: vec!["*.tmp".into()],
        exclude_files: vec![exf],
        exclude_caches: true,
        exclude_larger_than: Some(5000),
        ..env.opts()
    };
    let out = backup(env.repo(), &opts, &NullReporter).unwrap();
    assert_eq!(out.snapshot.summary.files_new, 1, "only keep.txt");
}

/// The files cache holds plaintext paths on the client: once a backup of other paths commits,
/// the entries of paths it no longer covers are dropped, while its own paths still hit.
#[test]
fn the_files_cache_forgets_paths_no_longer_backed_up() {
    let env = Env::small();
    let (a, b) = (env.src().join("a"), env.src().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("kept-file"), b"under a").unwrap();
    std::fs::write(b.join("dropped-secret-name"), b"under b").unwrap();
    let cache_body = |env: &Env| {
        let repo = env.repo();
        let file = std::fs::read(repo.cache_dir().unwrap().join("files-cache.bin")).unwrap();
        // 8-byte magic, parent flag and id, then one zstd frame.
        let body = zstd::stream::decode_all(&file[8 + 1 + 32..]).unwrap();
        (file, body)
    };
    let holds = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let both = BackupOptions { paths: vec![a.clone(), b.clone()], ..Default::default() };
    backup(env.repo(), &both, &NullReporter).unwrap();
    let (_, body) = cache_body(&env);
    assert!(holds(&body, b"dropped-secret-name"), "control: the cache names files it holds");

    let only_a = BackupOptions { paths: vec![a.clone()], ..Default::default() };
    let second = backup(env.repo(), &only_a, &NullReporter).unwrap();
    assert_eq!(second.snapshot.summary.files_unchanged, 1, "a's file hit the cache");
    let (file, body) = cache_body(&env);
    for hay in [&file, &body] {
        assert!(!holds(hay, b"dropped-secret-name"), "the cache still names a file under b");
        assert!(!holds(hay, b.as_os_str().as_encoded_bytes()), "the cache still names b");
    }
    assert!(holds(&body, b"kept-file"));
    let third = backup(env.repo(), &only_a, &NullReporter).unwrap();
    assert_eq!(third.snapshot.summary.files_unchanged, 1, "a's file still hits the cache");
    assert_eq!(third.snapshot.summary.bytes_read, 0);
}
