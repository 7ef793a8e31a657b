//! Garbage into the repository layer: snapshot selectors (random text, mutated valid
//! selectors, extreme numbers) must parse or be refused, never panic; and a hostile storage that
//! serves tampered objects (config, key file, index, snapshot, pack) must get an error, never a
//! panic and never wrong data. Deterministic (ChaCha seeds); see `fuzz/` for the unbounded runs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::{sha256_hex, KdfParams};
use offsite_format::{BlobType, RawBytes, Snapshot, Summary};
use offsite_repo::{
    parse_selector, BlobReader, BlobWriter, CacheSetting, Index, InitOptions, Repository, Selector,
    WriterOptions,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `valid` with 1-3 bytes flipped, truncated, or with 1-3 random bytes inserted; never equal
/// to `valid`.
fn mutate(r: &mut ChaCha8Rng, valid: &[u8]) -> Vec<u8> {
    loop {
        let mut m = valid.to_vec();
        match r.gen_range(0..3) {
            0 if !m.is_empty() => {
                for _ in 0..r.gen_range(1..=3) {
                    let i = r.gen_range(0..m.len());
                    m[i] ^= r.gen_range(1..=255u8);
                }
            }
            1 if !m.is_empty() => m.truncate(r.gen_range(0..m.len())),
            _ => {
                for _ in 0..r.gen_range(1..=3) {
                    let i = r.gen_range(0..=m.len());
                    m.insert(i, r.gen());
                }
            }
        }
        if m != valid {
            return m;
        }
    }
}

// ---------------------------------------------------------------- selectors

const VALID_SELECTORS: &[&str] = &[
    "latest",
    "latest~2",
    "2026-11-01",
    "2026-11-01T08:59",
    "2026-11-01 08:59:30",
    "2026-11-10T12:00:00Z",
    "2026-11-10T12:00:00.5+01:00",
    "10D",
    "3W",
    "5M",
    "1y",
    "90s",
    "12h",
    "30m",
    "ab12",
    "  latest  ",
];

/// Inputs found while fuzzing `parse_selector` or chosen at the edges of its arithmetic.
const EDGE_SELECTORS: &[&str] = &[
    "",
    " ",
    "~",
    "-",
    "latest~",
    "latest~-1",
    "latest~18446744073709551616",
    "latest~18446744073709551615",
    "9223372036854775807Y",
    "9223372036854775807s",
    "-9223372036854775808D",
    "9223372036854775808M",
    "19999Y",
    "20000Y",
    "0s",
    "+5D",
    "-5D",
    "5é",
    "é",
    "\u{1F600}",
    "1\u{1F600}",
    "9999-12-31",
    "9999-12-31T23:59:59.999999999",
    "-009999-01-01",
    "-009999-01-01T00:00",
    "0000-00-00",
    "2026-02-30",
    "2026-11-01T25:00",
    "2026-11-01T",
    "2026-11-01t00:00",
    "2026-03-08T02:30",
    "2026-11-01T08:59Z[Mars/Base]",
    "2026-11-01T08:59+99:99",
];

#[test]
fn selector_garbage_parses_or_is_refused() {
    let nows: [jiff::Zoned; 2] = [
        "2026-11-20T12:00:00+00:00[UTC]".parse().unwrap(),
        "2026-03-08T01:30:00-05:00[-05:00]".parse().unwrap(),
    ];
    let alphabet = b"0123456789-:.+~ TtZzlatesDdWwMYyhm\xc3\xa9";
    let mut r = rng(1);
    let mut inputs: Vec<String> = EDGE_SELECTORS.iter().map(|s| s.to_string()).collect();
    for v in VALID_SELECTORS {
        inputs.extend((0..v.len()).filter(|&n| v.is_char_boundary(n)).map(|n| v[..n].to_string()));
        for _ in 0..600 {
            inputs.push(String::from_utf8_lossy(&mutate(&mut r, v.as_bytes())).into_owned());
        }
    }
    for _ in 0..5000 {
        let mut b = vec![0u8; r.gen_range(0..24)];
        r.fill_bytes(&mut b);
        inputs.push(String::from_utf8_lossy(&b).into_owned());
    }
    for _ in 0..5000 {
        let len = r.gen_range(0..24);
        let b: Vec<u8> = (0..len).map(|_| alphabet[r.gen_range(0..alphabet.len())]).collect();
        inputs.push(String::from_utf8_lossy(&b).into_owned());
    }
    assert!(inputs.len() > 19_000);
    for s in &inputs {
        for now in &nows {
            match parse_selector(s, now) {
                Ok(Selector::Latest(_)) => assert!(s.trim().starts_with("latest"), "{s:?}"),
                Ok(Selector::Prefix(p)) => {
                    assert!(
                        !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{s:?}"
                    );
                    assert_eq!(p, p.to_ascii_lowercase());
                }
                Ok(Selector::AtOrBefore(_)) | Err(_) => {}
            }
        }
    }
    for v in VALID_SELECTORS {
        assert!(parse_selector(v, &nows[0]).is_ok(), "{v}");
    }
}

// ---------------------------------------------------------------- a hostile storage

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Arc<LocalStorage>,
    blobs: Vec<(offsite_format::BlobId, Vec<u8>)>,
}

/// A repository with one data pack, one tree pack, an index and a snapshot.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let opts = InitOptions { kdf: KdfParams::for_tests(), pack_size: 64 * 1024, ..Default::default() };
    Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
    let repo = Arc::new(Repository::open(storage.clone(), b"pw", &CacheSetting::Disabled).unwrap());
    let w = BlobWriter::new(repo.clone(), Arc::new(Index::default()), WriterOptions::default());
    let mut blobs = Vec::new();
    for (ty, data) in [
        (BlobType::Data, b"some file content ".repeat(20)),
        (BlobType::Data, vec![1, 2, 3]),
        (BlobType::Tree, b"{\"nodes\":[]}".to_vec()),
    ] {
        let (id, _) = w.add(ty, &data).unwrap();
        blobs.push((id, data));
    }
    w.finish().unwrap();
    repo.save_snapshot(&Snapshot {
        version: 1,
        repository: repo.config().id,
        time: "2026-11-22T10:00:00Z".into(),
        host: "h".into(),
        user: "u".into(),
        paths: vec![RawBytes(b"/x".to_vec())],
        tags: vec![],
        tree: blobs[2].0,
        parent: None,
        seen: vec![],
        summary: Summary::default(),
        program: "test".into(),
    })
    .unwrap();
    Fixture { _dir: dir, storage, blobs }
}

fn only(storage: &LocalStorage, kind: ObjectKind) -> (String, Vec<u8>) {
    let listed = storage.list(kind).unwrap();
    assert_eq!(listed.len(), 1, "{kind:?}");
    let id = listed[0].0.clone();
    let bytes = storage.read(kind, &id, None).unwrap();
    (id, bytes)
}

fn open(f: &Fixture) -> Result<Repository, offsite_repo::RepoError> {
    Repository::open(f.storage.clone(), b"pw", &CacheSetting::Disabled)
}

#[test]
fn tampered_config_and_key_files_are_refused() {
    let f = fixture();
    let id = open(&f).unwrap().config().id;
    let config = f.storage.read(ObjectKind::Config, "", None).unwrap();
    let (key_id, key) = only(&f.storage, ObjectKind::Key);
    let mut r = rng(2);
    for _ in 0..400 {
        let bad = mutate(&mut r, &config);
        f.storage.delete(ObjectKind::Config, "").unwrap();
        f.storage.write(ObjectKind::Config, "", &bad).unwrap();
        assert!(open(&f).is_err(), "tampered config accepted");
    }
    f.storage.delete(ObjectKind::Config, "").unwrap();
    f.storage.write(ObjectKind::Config, "", &config).unwrap();
    // A key file rewritten under the name of its new contents (the storage is consistent but
    // hostile): only harmless edits (whitespace, the creation time) may still open, and then
    // to the same repository with the same keys.
    let mut opened = 0;
    for _ in 0..400 {
        let bad = mutate(&mut r, &key);
        let name = sha256_hex(&bad);
        f.storage.delete(ObjectKind::Key, &key_id).unwrap();
        f.storage.write(ObjectKind::Key, &name, &bad).unwrap();
        if let Ok(repo) = open(&f) {
            assert_eq!(repo.config().id, id);
            assert!(repo.is_full());
            opened += 1;
        }
        f.storage.delete(ObjectKind::Key, &name).unwrap();
        f.storage.write(ObjectKind::Key, &key_id, &key).unwrap();
    }
    assert!(opened < 400);
    open(&f).unwrap();
}

#[test]
fn tampered_index_snapshot_and_pack_are_refused() {
    let f = fixture();
    let repo = Arc::new(open(&f).unwrap());
    let (_, index) = only(&f.storage, ObjectKind::Index);
    let (_, snap) = only(&f.storage, ObjectKind::Snapshot);
    let mut r = rng(3);
    for _ in 0..300 {
        let bad = mutate(&mut r, &index);
        let name = sha256_hex(&bad);
        f.storage.write(ObjectKind::Index, &name, &bad).unwrap();
        assert!(Index::load(&*f.storage, repo.keys()).is_err(), "tampered index accepted");
        f.storage.delete(ObjectKind::Index, &name).unwrap();

        // Added beside the genuine snapshot, so only decoding can fail (no rollback).
        let bad = mutate(&mut r, &snap);
        let name = sha256_hex(&bad);
        f.storage.write(ObjectKind::Snapshot, &name, &bad).unwrap();
        assert!(repo.snapshot_set().is_err(), "tampered snapshot accepted");
        f.storage.delete(ObjectKind::Snapshot, &name).unwrap();
    }
    assert_eq!(repo.snapshot_set().unwrap().snapshots.len(), 1);

    // Packs are range-read and not verified by name: tamper in place; every blob read gives the
    // genuine bytes or an error.
    let index = Arc::new(Index::load(&*f.storage, repo.keys()).unwrap());
    let mut packs: Vec<String> =
        f.storage.list(ObjectKind::Data).unwrap().into_iter().map(|(id, _)| id).collect();
    packs.sort();
    let mut rejected = 0;
    for pack in &packs {
        let good = f.storage.read(ObjectKind::Data, pack, None).unwrap();
        for _ in 0..150 {
            let bad = mutate(&mut r, &good);
            f.storage.delete(ObjectKind::Data, pack).unwrap();
            f.storage.write(ObjectKind::Data, pack, &bad).unwrap();
            let fresh = BlobReader::new(repo.clone(), index.clone()).unwrap();
            for (id, data) in &f.blobs {
                match fresh.read(id, "test") {
                    Ok(got) => assert_eq!(&got, data, "tampered pack yielded wrong data"),
                    Err(_) => rejected += 1,
                }
            }
        }
        f.storage.delete(ObjectKind::Data, pack).unwrap();
        f.storage.write(ObjectKind::Data, pack, &good).unwrap();
    }
    assert!(rejected > 0);
}
