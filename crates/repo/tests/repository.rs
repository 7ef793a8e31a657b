//! Repository-level behaviour on a real local directory.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::KdfParams;
use offsite_format::{BlobType, RawBytes, RepoId, Snapshot, Summary};
use offsite_repo::{
    BlobReader, BlobWriter, CacheSetting, Index, InitOptions, RepoError, Repository, WriterOptions,
};

fn opts() -> InitOptions {
    InitOptions { kdf: KdfParams::for_tests(), pack_size: 64 * 1024, ..Default::default() }
}

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Arc<LocalStorage>,
    cache: CacheSetting,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let cache = CacheSetting::Dir(dir.path().join("cache"));
    Repository::init(storage.clone(), b"pw", &opts(), &cache).unwrap();
    Fixture { _dir: dir, storage, cache }
}

fn open(f: &Fixture, pw: &[u8]) -> Result<Repository, RepoError> {
    Repository::open(f.storage.clone(), pw, &f.cache)
}

fn snapshot(
    repo: &Repository,
    tree: offsite_format::BlobId,
    seen: Vec<offsite_format::SnapshotId>,
) -> Snapshot {
    Snapshot {
        version: 1,
        repository: repo.config().id,
        time: jiff::Timestamp::now().to_string(),
        host: "h".into(),
        user: "u".into(),
        paths: vec![RawBytes(b"/x".to_vec())],
        tags: vec![],
        tree,
        parent: None,
        seen,
        summary: Summary::default(),
        program: "test".into(),
    }
}

#[test]
fn open_errors_are_specific() {
    let f = fixture();
    assert!(matches!(open(&f, b"wrong"), Err(RepoError::WrongPassphrase { .. })));
    let missing = Arc::new(LocalStorage::new(f._dir.path().join("nothing")));
    let err = Repository::open(missing, b"pw", &f.cache).unwrap_err();
    assert!(matches!(err, RepoError::NoRepository { .. }), "{err}");
    let again = Repository::init(f.storage.clone(), b"pw", &opts(), &f.cache).unwrap_err();
    assert!(matches!(again, RepoError::AlreadyExists { .. }), "{again}");
    // A config from a future version is named as such before any key is tried.
    let cfg = f.storage.root().join("config");
    let mut b = std::fs::read(&cfg).unwrap();
    b[3] = 3;
    std::fs::write(&cfg, &b).unwrap();
    assert!(matches!(open(&f, b"pw"), Err(RepoError::UnsupportedVersion { found: 3, .. })));
    // A repository of format 1 (before 2026-12) gets one line saying so and what to do.
    b[3] = 1;
    std::fs::write(&cfg, &b).unwrap();
    let err = open(&f, b"pw").unwrap_err().to_string();
    assert!(err.contains("format version 1 was written by an older offsite"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn keys_add_list_remove_passwd_and_backup_only() {
    let f = fixture();
    let mut repo = open(&f, b"pw").unwrap();
    let bo = repo.add_key(b"writer", true, &KdfParams::for_tests()).unwrap();
    let full2 = repo.add_key(b"second", false, &KdfParams::for_tests()).unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 3);
    let w = open(&f, b"writer").unwrap();
    assert!(!w.is_full());
    assert!(matches!(w.add_key(b"x", false, &KdfParams::for_tests()), Err(RepoError::BackupOnly)));
    assert!(matches!(w.remove_key(&full2.to_hex()), Err(RepoError::BackupOnly)));
    // Can't remove the key in use.
    assert!(repo.remove_key(&repo.key_id().to_hex()).is_err());
    repo.remove_key(&bo.to_hex()).unwrap();
    assert!(matches!(open(&f, b"writer"), Err(RepoError::WrongPassphrase { .. })));
    repo.change_passphrase(b"new", &KdfParams::for_tests()).unwrap();
    assert!(open(&f, b"pw").is_err());
    let r2 = open(&f, b"new").unwrap();
    assert_eq!(r2.config().id, repo.config().id);
    // The second full key is now the only other full key; it can't remove the last full key.
    let r3 = open(&f, b"second").unwrap();
    r3.remove_key(&r2.key_id().to_hex()).unwrap();
    assert!(r3.remove_key(&r3.key_id().to_hex()).is_err());
}

#[test]
fn writer_reader_round_trip_dedup_and_corruption() {
    let f = fixture();
    let repo = Arc::new(open(&f, b"pw").unwrap());
    let index = Arc::new(Index::default());
    let w = BlobWriter::new(
        repo.clone(),
        index.clone(),
        WriterOptions { checkpoint_packs: 2, ..Default::default() },
    );
    let mut ids = Vec::new();
    for i in 0..200u32 {
        // Incompressible, so 200 blobs span many 64 KiB packs.
        let data: Vec<u8> = (0..128u32)
            .flat_map(|j| offsite_crypto::sha256(&[i.to_le_bytes(), j.to_le_bytes()].concat()))
            .collect();
        let (id, new) = w.add(BlobType::Data, &data).unwrap();
        assert!(new);
        assert!(!w.add(BlobType::Data, &data).unwrap().1, "second add dedups");
        ids.push((id, data));
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.data_blobs.load(std::sync::atomic::Ordering::Relaxed), 200);
    // Reload the index from storage: every blob is found and verifies.
    let index = Arc::new(Index::load(&*repo.storage().clone(), repo.keys()).unwrap());
    assert_eq!(index.len(), 200);
    assert!(repo.storage().list(ObjectKind::Index).unwrap().len() > 1, "checkpoints were written");
    let r = BlobReader::new(repo.clone(), index.clone()).unwrap();
    for (id, data) in &ids {
        assert_eq!(&r.read(id, "test").unwrap(), data);
    }
    // Flip one byte inside a pack: the blob there fails to authenticate, named by pack.
    let (id, _) = &ids[0];
    let loc = index.get(id).unwrap();
    let pack = index.pack(loc.pack).id.to_hex();
    let path = f.storage.root().join("data").join(&pack[..2]).join(&pack);
    let mut b = std::fs::read(&path).unwrap();
    b[loc.entry.offset as usize + 5] ^= 0x80;
    std::fs::write(&path, &b).unwrap();
    let err = r.read(id, "test").unwrap_err().to_string();
    assert!(err.contains(&pack[..8]) && err.contains("damaged"), "{err}");
    // A backup-only key cannot construct a reader.
    repo.add_key(b"w", true, &KdfParams::for_tests()).unwrap();
    let bo = Arc::new(open(&f, b"w").unwrap());
    assert!(matches!(BlobReader::new(bo, index), Err(RepoError::BackupOnly)));
}

#[test]
fn rollback_of_a_seen_snapshot_is_refused() {
    let f = fixture();
    let repo = open(&f, b"pw").unwrap();
    let s1 = repo.save_snapshot(&snapshot(&repo, offsite_format::BlobId([1; 32]), vec![])).unwrap();
    let set = repo.snapshot_set().unwrap();
    let s2 = repo.save_snapshot(&snapshot(&repo, offsite_format::BlobId([2; 32]), set.ids.clone())).unwrap();
    assert_eq!(repo.snapshot_set().unwrap().snapshots.len(), 2);
    // The storage drops s1 (named in s2's seen list): detected by any full client, even one
    // with no local memory.
    let bytes = f.storage.read(ObjectKind::Snapshot, &s1.to_hex(), None).unwrap();
    f.storage.delete(ObjectKind::Snapshot, &s1.to_hex()).unwrap();
    let fresh = Repository::open(f.storage.clone(), b"pw", &CacheSetting::Disabled).unwrap();
    assert!(matches!(fresh.snapshot_set(), Err(RepoError::Rollback { .. })));
    f.storage.write(ObjectKind::Snapshot, &s1.to_hex(), &bytes).unwrap();
    // The storage drops the newest snapshot: only this client's memory can tell, and does.
    f.storage.delete(ObjectKind::Snapshot, &s2.to_hex()).unwrap();
    let err = repo.snapshot_set().unwrap_err();
    assert!(matches!(err, RepoError::Rollback { .. }), "{err}");
    // A forget record makes the removal legitimate.
    repo.save_forget_record(vec![s2]).unwrap();
    assert_eq!(repo.snapshot_set().unwrap().snapshots.len(), 1);
    // A snapshot from another repository is refused.
    let mut alien = snapshot(&repo, offsite_format::BlobId([3; 32]), vec![]);
    alien.repository = RepoId([9; 32]);
    repo.save_snapshot(&alien).unwrap();
    let err = repo.snapshot_set().unwrap_err().to_string();
    assert!(err.contains("belongs to repository"), "{err}");
}

/// Snapshot times are RFC 3339 with up to 9 fractional digits, trailing zeros dropped: as
/// strings `…:45.5Z` sorts before `…:45Z`, so they are ordered by value (ties by id).
#[test]
fn snapshots_are_ordered_by_time_value_then_id() {
    let f = fixture();
    let repo = open(&f, b"pw").unwrap();
    let at = |time: &str, tree: u8| {
        let mut s = snapshot(&repo, offsite_format::BlobId([tree; 32]), vec![]);
        s.time = time.into();
        repo.save_snapshot(&s).unwrap()
    };
    let half = at("2026-11-22T10:00:45.5Z", 1);
    let whole = at("2026-11-22T10:00:45Z", 2);
    let earlier = at("2026-11-22T11:00:44+01:00", 3);
    let (tie_a, tie_b) = (at("2026-11-22T10:00:46Z", 4), at("2026-11-22T10:00:46.000Z", 5));
    let set = repo.snapshot_set().unwrap();
    let order: Vec<_> = set.snapshots.iter().map(|(id, _)| *id).collect();
    let ties = if tie_a < tie_b { [tie_a, tie_b] } else { [tie_b, tie_a] };
    assert_eq!(order, [earlier, whole, half, ties[0], ties[1]]);
    let now = jiff::Zoned::now();
    let pick = |spec: &str| offsite_repo::select(&set.snapshots, spec, &Default::default(), &now).unwrap().0;
    assert_eq!(pick("latest"), ties[1]);
    assert_eq!(pick("latest~2"), half);
    assert_eq!(pick("latest~3"), whole);
    // select orders by itself, whatever order it is handed.
    let mut reversed = set.snapshots.clone();
    reversed.reverse();
    let sel = offsite_repo::select(&reversed, "latest~2", &Default::default(), &now).unwrap();
    assert_eq!(sel.0, half);
}

/// A time that is not RFC 3339 (`"~"` would sort after every real time as a string, and stay
/// `latest` for ever) is refused when the snapshot is decoded, naming it.
#[test]
fn a_snapshot_whose_time_does_not_parse_is_refused() {
    let f = fixture();
    let repo = open(&f, b"pw").unwrap();
    repo.save_snapshot(&snapshot(&repo, offsite_format::BlobId([1; 32]), vec![])).unwrap();
    for bad in ["~", "", "2026-11-22 10:00:45", "2026-13-01T00:00:00Z", "yesterday"] {
        let mut s = snapshot(&repo, offsite_format::BlobId([2; 32]), vec![]);
        s.time = bad.into();
        let id = repo.save_snapshot(&s).unwrap();
        let err = repo.snapshot_set().unwrap_err().to_string();
        assert!(err.contains(&format!("snapshots/{}", &id.to_hex()[..8])), "{bad:?}: {err}");
        assert!(err.contains("RFC 3339"), "{bad:?}: {err}");
        f.storage.delete(ObjectKind::Snapshot, &id.to_hex()).unwrap();
        repo.save_forget_record(vec![id]).unwrap();
    }
    assert_eq!(repo.snapshot_set().unwrap().snapshots.len(), 1);
}

/// The config's sizes are bounded when it is decoded: a pack size of 0 or 4 GiB, chunker
/// sizes the chunker refuses, or a compression level outside 0..=19 make the repository
/// refuse to open, naming the config, and `init` refuses to write such a config.
#[test]
fn config_sizes_out_of_bounds_are_refused() {
    let good = offsite_format::ChunkerSizes { min: 4096, avg: 16384, max: 65536 };
    let cases: Vec<(&str, InitOptions)> = vec![
        ("pack_size", InitOptions { pack_size: 0, ..opts() }),
        ("pack_size", InitOptions { pack_size: 65535, ..opts() }),
        ("pack_size", InitOptions { pack_size: (128 << 20) + 1, ..opts() }),
        ("pack_size", InitOptions { pack_size: u32::MAX, ..opts() }),
        ("chunker", InitOptions { chunker: offsite_format::ChunkerSizes { min: 0, ..good }, ..opts() }),
        ("chunker", InitOptions { chunker: offsite_format::ChunkerSizes { avg: 20000, ..good }, ..opts() }),
        ("chunker", InitOptions { chunker: offsite_format::ChunkerSizes { min: 32768, ..good }, ..opts() }),
        (
            "chunker",
            InitOptions { chunker: offsite_format::ChunkerSizes { max: u32::MAX, ..good }, ..opts() },
        ),
        ("compression", InitOptions { compression: -1, ..opts() }),
        ("compression", InitOptions { compression: 20, ..opts() }),
        ("compression", InitOptions { compression: i32::MAX, ..opts() }),
    ];
    for (field, bad) in cases {
        // Written by hand (init refuses it), sealed with the repository's own key.
        let f = fixture();
        let repo = open(&f, b"pw").unwrap();
        let mut config = repo.config().clone();
        config.chunker = bad.chunker;
        config.compression = bad.compression;
        config.pack_size = bad.pack_size;
        let sealed = offsite_format::seal_record(offsite_format::RecordType::Config, repo.keys(), &config);
        f.storage.delete(ObjectKind::Config, "").unwrap();
        f.storage.write(ObjectKind::Config, "", &sealed).unwrap();
        let err = open(&f, b"pw").err().unwrap_or_else(|| panic!("{config:?} opened")).to_string();
        assert!(err.starts_with("config is damaged") && err.contains(field), "{config:?}: {err}");

        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let err = Repository::init(storage, b"pw", &bad, &CacheSetting::Disabled).err();
        assert!(err.is_some_and(|e| e.to_string().contains(field)), "init wrote {config:?}");
    }
    // The bounds themselves are allowed.
    for ok in [
        InitOptions { pack_size: 64 << 10, compression: 0, ..opts() },
        InitOptions { pack_size: 128 << 20, compression: 19, chunker: good, ..opts() },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        Repository::init(storage.clone(), b"pw", &ok, &CacheSetting::Disabled).unwrap();
        Repository::open(storage, b"pw", &CacheSetting::Disabled).unwrap();
    }
}
