//! Suite 6, crypto invariants, checked on real repositories:
//! - known answers for the primitives `crates/crypto` does not already pin against a published
//!   vector: Argon2id (RFC 9106 §5.3), SHA-256 beyond one block (FIPS 180-2 B.2, B.3) and the
//!   AES-256 block cipher of the chunker's cut PRF (FIPS 197 C.3). AES-256-GCM (NIST CAVP),
//!   BLAKE3 keyed hash and derive_key (official vectors) and X25519 (RFC 7748 §6.1) are pinned
//!   in `crates/crypto/src`. No HKDF is used: every subkey comes from BLAKE3 `derive_key`.
//! - an object of one type fed where another is expected fails authentication: every ordered
//!   pair of record types with the header rewritten to claim the other type, and every tree
//!   blob opened as a data blob and back;
//! - the same file under two repository keys has unrelated cut points;
//! - no (key, nonce) pair repeats across a repository after several backups.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_chunker::{Chunker, ChunkerParams};
use offsite_crypto::{sha256_hex, KdfParams, KeySet};
use offsite_format::{
    decode_pack, open_record, parse_keyfile, parse_trailer, seal_record, BlobOpener, BlobType, ChunkerSizes,
    Config, ForgetRecord, FormatError, IndexFile, Lock, RawBytes, RecordType, RepoId, Snapshot, SnapshotId,
    Summary, TRAILER_LEN,
};
use offsite_repo::{BlobReader, BlobWriter, CacheSetting, Index, InitOptions, Repository, WriterOptions};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// splitmix64 bytes: incompressible, reproducible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Known answers

/// RFC 9106 §5.3: Argon2id v1.3, m = 32 KiB, t = 3, p = 4, 32-byte tag, with secret and
/// associated data. `derive_wrapping_key` passes neither, so this pins the argon2 crate's
/// Argon2id itself; `crates/crypto/src/wrap.rs` (argon2id_is_used) pins that
/// `derive_wrapping_key` is exactly that Argon2id with the key file's parameters. Here the
/// same holds for the vector's password, salt and costs.
#[test]
fn argon2id_rfc9106_vector() {
    use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
    let mut b = ParamsBuilder::new();
    b.m_cost(32).t_cost(3).p_cost(4).output_len(32).data(AssociatedData::new(&[4u8; 12]).unwrap());
    let params = b.build().unwrap();
    let a = Argon2::new_with_secret(&[3u8; 8], Algorithm::Argon2id, Version::V0x13, params).unwrap();
    let mut tag = [0u8; 32];
    a.hash_password_into(&[1u8; 32], &[2u8; 16], &mut tag).unwrap();
    assert_eq!(tag.to_vec(), h("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"));

    // Our derivation with the vector's password, salt and costs is that Argon2id without the
    // secret and associated data.
    let ours = offsite_crypto::derive_wrapping_key(
        &[1u8; 32],
        &KdfParams { m_cost_kib: 32, t_cost: 3, p_cost: 4, salt: [2u8; 16] },
    )
    .unwrap();
    let plain =
        Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2::Params::new(32, 3, 4, Some(32)).unwrap());
    let mut want = [0u8; 32];
    plain.hash_password_into(&[1u8; 32], &[2u8; 16], &mut want).unwrap();
    assert_eq!(ours.as_bytes(), &want);
    assert_ne!(ours.as_bytes(), &tag);
}

/// FIPS 180-2 appendix B.2 (two blocks) and B.3 (one million 'a'); B.1 ("abc") and the empty
/// string are in `crates/crypto/src/hash.rs`.
#[test]
fn sha256_fips180_multi_block_vectors() {
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256_hex(&vec![b'a'; 1_000_000]),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
    // Object names are this SHA-256 of the stored bytes.
    assert_eq!(hex::encode(offsite_format::storage_id(b"abc")), sha256_hex(b"abc"));
}

/// FIPS 197 appendix C.3: the AES-256 block cipher the chunker's cut PRF is built on
/// (`aes::Aes256`, the type `crates/chunker/src/cdc.rs` uses).
#[test]
fn aes256_fips197_vector() {
    use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
    let key = h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let cipher = aes::Aes256::new(GenericArray::from_slice(&key));
    let mut block = GenericArray::clone_from_slice(&h("00112233445566778899aabbccddeeff"));
    cipher.encrypt_block(&mut block);
    assert_eq!(block.to_vec(), h("8ea2b7ca516745bfeafc49904b496089"));
}

// ---------------------------------------------------------------------------------------------
// Type confusion

const TYPES: [RecordType; 5] =
    [RecordType::Config, RecordType::Index, RecordType::Snapshot, RecordType::ForgetRecord, RecordType::Lock];

fn sealed(t: RecordType) -> bool {
    t == RecordType::Snapshot
}

/// A valid record of type `t` (its real content).
fn record(t: RecordType, keys: &KeySet) -> Vec<u8> {
    let repo = RepoId([9; 32]);
    match t {
        RecordType::Config => seal_record(
            t,
            keys,
            &Config {
                version: 2,
                id: repo,
                public_key: keys.public_key(),
                key_commitment: keys.commitment(),
                created: "2026-01-01T00:00:00Z".into(),
                chunker: ChunkerSizes { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 },
                compression: 3,
                pack_size: 8 * 1024 * 1024,
            },
        ),
        RecordType::Index => seal_record(t, keys, &IndexFile::default()),
        RecordType::Snapshot => {
            seal_record(t, keys, &snapshot(repo, offsite_format::BlobId([1; 32]), vec![]))
        }
        RecordType::ForgetRecord => seal_record(
            t,
            keys,
            &ForgetRecord {
                version: 1,
                repository: repo,
                time: "2026-01-01T00:00:00Z".into(),
                removed: vec![],
            },
        ),
        RecordType::Lock => seal_record(
            t,
            keys,
            &Lock {
                version: 1,
                repository: repo,
                time: "2026-01-01T00:00:00Z".into(),
                host: "h".into(),
                pid: 1,
                exclusive: true,
            },
        ),
    }
}

fn snapshot(repo: RepoId, tree: offsite_format::BlobId, seen: Vec<SnapshotId>) -> Snapshot {
    Snapshot {
        version: 1,
        repository: repo,
        time: "2026-01-01T00:00:00Z".into(),
        host: "h".into(),
        user: "u".into(),
        paths: vec![RawBytes(b"/".to_vec())],
        tags: vec![],
        tree,
        parent: None,
        seen,
        summary: Summary::default(),
        program: "test".into(),
    }
}

/// The header of `bytes` (a record of type `from`) rewritten to claim type `to`, keeping its
/// nonce and ciphertext: the keying byte and ephemeral key follow `to`'s layout (an
/// unsealed record claiming to be sealed gets an ephemeral key of another sealed record).
fn relabel(bytes: &[u8], from: RecordType, to: RecordType, donor_eph: &[u8]) -> Vec<u8> {
    // A sealed record ends in a MAC (32 bytes), which the relabelled one keeps or drops.
    let body = if sealed(from) { &bytes[6 + 32..bytes.len() - 32] } else { &bytes[6..] };
    let mut out = b"OFS\x02".to_vec();
    out.push(to as u8);
    out.push(u8::from(sealed(to)));
    if sealed(to) {
        out.extend_from_slice(if sealed(from) { &bytes[6..38] } else { donor_eph });
    }
    out.extend_from_slice(body);
    if sealed(to) {
        out.extend_from_slice(&bytes[bytes.len() - 32..]);
    }
    out
}

fn open_as(t: RecordType, keys: &KeySet, bytes: &[u8]) -> Result<(), FormatError> {
    match t {
        RecordType::Config => open_record::<Config>(t, keys, bytes).map(|_| ()),
        RecordType::Index => open_record::<IndexFile>(t, keys, bytes).map(|_| ()),
        RecordType::Snapshot => open_record::<Snapshot>(t, keys, bytes).map(|_| ()),
        RecordType::ForgetRecord => open_record::<ForgetRecord>(t, keys, bytes).map(|_| ()),
        RecordType::Lock => open_record::<Lock>(t, keys, bytes).map(|_| ()),
    }
}

#[test]
fn a_record_of_one_type_never_opens_as_another() {
    let keys = KeySet::generate();
    let donor = record(RecordType::Snapshot, &keys);
    let donor_eph = donor[6..38].to_vec();
    for from in TYPES {
        let bytes = record(from, &keys);
        // Sanity: it opens as itself.
        open_as(from, &keys, &bytes).unwrap_or_else(|e| panic!("{} does not open: {e}", from.name()));
        for to in TYPES {
            if to == from {
                continue;
            }
            // As stored: refused by its authenticated type byte.
            assert!(
                matches!(open_as(to, &keys, &bytes), Err(FormatError::WrongType { .. })),
                "{} opened as {}",
                from.name(),
                to.name()
            );
            // Header rewritten to claim the expected type: the AEAD refuses it, since the
            // type (and keying) are in its associated data and sealed records use other keys.
            let forged = relabel(&bytes, from, to, &donor_eph);
            let got = open_as(to, &keys, &forged);
            assert!(
                matches!(got, Err(FormatError::Auth)),
                "{} relabelled as {}: {got:?}",
                from.name(),
                to.name()
            );
        }
    }
}

/// A small repository in a temporary directory.
struct Repo {
    _dir: tempfile::TempDir,
    storage: Arc<LocalStorage>,
    repo: Arc<Repository>,
}

fn new_repo(chunker: ChunkerSizes) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let opts =
        InitOptions { kdf: KdfParams::for_tests(), chunker, pack_size: 64 * 1024, ..Default::default() };
    let repo = Arc::new(Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap());
    Repo { _dir: dir, storage, repo }
}

const SMALL: ChunkerSizes = ChunkerSizes { min: 4096, avg: 16384, max: 65536 };

/// Chunk `data` with the repository's keyed chunker and store the chunks, as the archiver does;
/// returns the blob ids in file order.
fn store_file(writer: &BlobWriter, data: &[u8]) -> Vec<offsite_format::BlobId> {
    let c = writer.repo().config().chunker;
    let params =
        ChunkerParams { min_size: c.min as usize, avg_size: c.avg as usize, max_size: c.max as usize };
    let chunker = Chunker::new(writer.repo().keys().chunker_key().as_bytes(), params);
    let mut at = 0;
    let mut ids = Vec::new();
    for len in chunker.cut_all(data) {
        ids.push(writer.add(BlobType::Data, &data[at..at + len]).unwrap().0);
        at += len;
    }
    assert_eq!(at, data.len());
    ids
}

#[test]
fn a_tree_blob_never_opens_as_data_nor_data_as_tree() {
    let r = new_repo(SMALL);
    let writer = BlobWriter::new(r.repo.clone(), Arc::new(Index::default()), WriterOptions::default());
    store_file(&writer, &noise(1, 200_000));
    for i in 0..3u8 {
        writer.add_bundle(offsite_format::BlobId([i; 32]), &noise(u64::from(i) + 7, 5000)).unwrap();
    }
    for i in 0..40u32 {
        let tree = format!(r#"{{"nodes":[{{"name":"{}","type":"file","size":{i}}}]}}"#, "ZmlsZQ==");
        writer.add(BlobType::Tree, tree.as_bytes()).unwrap();
    }
    writer.finish().unwrap();
    let keys = r.repo.keys();
    let mut checked = [0u32; 3];
    for (id, _) in r.storage.list(ObjectKind::Data).unwrap() {
        let bytes = r.storage.read(ObjectKind::Data, &id, None).unwrap();
        let (eph, entries) = decode_pack(keys, &bytes).unwrap();
        let opener = BlobOpener::new(keys, &eph).unwrap();
        for e in entries {
            let ct = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            opener.open(keys, &e, ct).unwrap();
            for ty in [BlobType::Data, BlobType::Tree, BlobType::Bundle].into_iter().filter(|t| *t != e.ty) {
                let other = offsite_format::PackEntry { ty, ..e };
                assert!(
                    matches!(opener.open(keys, &other, ct), Err(FormatError::Auth)),
                    "{:?} as {:?}",
                    e.ty,
                    other.ty
                );
            }
            checked[match e.ty {
                BlobType::Data => 0,
                BlobType::Tree => 1,
                BlobType::Bundle => 2,
            }] += 1;
        }
    }
    assert!(checked[0] > 5 && checked[1] == 40 && checked[2] == 3, "{checked:?}");

    // Through the reader, with an index relabelled by someone holding the index key (a
    // backup-only key can write index objects): a tree listed as data is read as data and
    // fails authentication; a data blob listed as tree is refused as a tree.
    let index = Index::load(&*r.storage, keys).unwrap();
    let relabelled = Index::default();
    for p in index.packs() {
        let entries: Vec<_> = index
            .blobs()
            .into_iter()
            .filter(|(_, l)| index.pack(l.pack).id == p.id)
            .map(|(_, l)| {
                let mut e = l.entry;
                e.ty = match e.ty {
                    BlobType::Data => BlobType::Tree,
                    BlobType::Tree | BlobType::Bundle => BlobType::Data,
                };
                e
            })
            .collect();
        relabelled.add_pack(p.clone(), &entries);
    }
    let reader = BlobReader::new(r.repo.clone(), Arc::new(relabelled)).unwrap();
    for (id, loc) in index.blobs() {
        let err = reader.read(&id, "test").unwrap_err().to_string();
        assert!(
            err.contains("authenticat") || err.contains("damaged"),
            "{:?} blob read as the other: {err}",
            loc.entry.ty
        );
        if loc.entry.ty == BlobType::Data {
            assert!(reader.tree(&id, "test").is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keyed cut points

/// The chunk lengths of a file, read back from the repository's index.
fn chunk_lengths(r: &Repo, data: &[u8]) -> Vec<u64> {
    let writer = BlobWriter::new(r.repo.clone(), Arc::new(Index::default()), WriterOptions::default());
    let ids = store_file(&writer, data);
    writer.finish().unwrap();
    let index = Index::load(&*r.storage, r.repo.keys()).unwrap();
    ids.iter().map(|id| u64::from(index.get(id).unwrap().entry.raw_length)).collect()
}

fn cut_points(lengths: &[u64]) -> HashSet<u64> {
    let mut at = 0;
    let mut cuts = HashSet::new();
    for l in &lengths[..lengths.len() - 1] {
        at += l;
        cuts.insert(at);
    }
    cuts
}

#[test]
fn the_same_file_under_two_keys_has_unrelated_cut_points() {
    // Random bytes, then text (low entropy exercises the gear hash's prefilter differently).
    let mut data = noise(7, 3 << 20);
    let words = [&b"alpha "[..], b"beta ", b"gamma\n", b"delta ", b"epsilon "];
    let mut s = 1u64;
    while data.len() < 6 << 20 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        data.extend_from_slice(words[(s >> 33) as usize % words.len()]);
    }
    let a = new_repo(SMALL);
    let b = new_repo(SMALL);
    let la = chunk_lengths(&a, &data);
    let lb = chunk_lengths(&b, &data);
    assert_eq!(la.iter().sum::<u64>(), data.len() as u64);
    assert_eq!(lb.iter().sum::<u64>(), data.len() as u64);
    assert!(la.len() > 200 && lb.len() > 200, "{} and {} chunks", la.len(), lb.len());
    let (ca, cb) = (cut_points(&la), cut_points(&lb));
    let shared = ca.intersection(&cb).count();
    // By chance: each of A's cuts lands on one of B's with probability about |B| / len, so
    // about |A|·|B| / len shared cuts (here well under 1). Max-length cuts (no content cut
    // within 64 KiB) are position-determined only after the previous cut, so they do not
    // align either.
    let chance = (ca.len() * cb.len()) as f64 / data.len() as f64;
    eprintln!("cut points: {} and {}, {shared} shared (chance {chance:.2})", ca.len(), cb.len());
    assert!(shared as f64 <= 3.0 + 3.0 * chance, "{shared} shared cut points (chance {chance:.2})");
    // The lengths lists differ as wholes, not only at the cuts.
    assert_ne!(la, lb);
    // Control: the same key cuts the same way (what the comparison above would find if the
    // cut decision did not depend on the key): storing the file again adds no new blob.
    let again = chunk_lengths(&a, &data);
    assert_eq!(again, la);
}

// ---------------------------------------------------------------------------------------------
// Nonce uniqueness

#[test]
fn no_key_nonce_pair_repeats_across_a_repository() {
    let r = new_repo(SMALL);
    r.repo.add_key(b"second", false, &KdfParams::for_tests()).unwrap();
    r.repo.add_key(b"backup-only", true, &KdfParams::for_tests()).unwrap();
    // Three backups: several data packs each, index checkpoints every 2 packs, tree packs,
    // snapshots naming the earlier ones; then a forget record.
    let mut seen = Vec::new();
    for round in 0..3u64 {
        let index = Arc::new(Index::load(&*r.storage, r.repo.keys()).unwrap());
        let writer = BlobWriter::new(
            r.repo.clone(),
            index,
            WriterOptions { checkpoint_packs: 2, ..Default::default() },
        );
        store_file(&writer, &noise(round, 400_000));
        let mut tree = None;
        for i in 0..30 {
            let t =
                format!(r#"{{"nodes":[{{"name":"ZmlsZQ==","type":"file","size":{}}}]}}"#, round * 100 + i);
            tree = Some(writer.add(BlobType::Tree, t.as_bytes()).unwrap().0);
        }
        writer.finish().unwrap();
        let id = r.repo.save_snapshot(&snapshot(r.repo.config().id, tree.unwrap(), seen.clone())).unwrap();
        seen.push(id);
    }
    r.repo.save_forget_record(vec![seen[0]]).unwrap();
    let keys = r.repo.keys();

    // Records under the index key (config, index objects, forget records): random nonces,
    // all distinct. Sealed records (snapshots): a fresh ephemeral key each, nonce zero.
    let mut index_key_nonces: HashMap<Vec<u8>, String> = HashMap::new();
    let mut ephemerals: HashMap<Vec<u8>, String> = HashMap::new();
    let mut record = |what: String, bytes: &[u8]| {
        assert_eq!(&bytes[..4], b"OFS\x02");
        if bytes[5] == 0 {
            let nonce = bytes[6..18].to_vec();
            if let Some(prev) = index_key_nonces.insert(nonce, what.clone()) {
                panic!("index-key nonce of {what} repeats that of {prev}");
            }
        } else {
            assert_eq!(&bytes[38..50], &[0u8; 12], "{what}: sealed records use nonce 0");
            if let Some(prev) = ephemerals.insert(bytes[6..38].to_vec(), what.clone()) {
                panic!("ephemeral key of {what} repeats that of {prev}");
            }
        }
    };
    record("config".into(), &r.storage.read(ObjectKind::Config, "", None).unwrap());
    let mut counts = HashMap::new();
    for kind in [ObjectKind::Index, ObjectKind::Snapshot] {
        for (id, _) in r.storage.list(kind).unwrap() {
            record(format!("{}/{}", kind.dir_name(), &id[..8]), &r.storage.read(kind, &id, None).unwrap());
            *counts.entry(kind.dir_name()).or_insert(0) += 1;
        }
    }

    // Packs: a fresh ephemeral key each (so a fresh pack key), and within a pack every blob's
    // counter is distinct and none is the header's (2^64 - 1). The index names the same key.
    let index = Index::load(&*r.storage, keys).unwrap();
    let eph_in_index: HashMap<String, [u8; 32]> =
        index.packs().into_iter().map(|p| (p.id.to_hex(), p.eph)).collect();
    let mut blobs = 0;
    for (id, _) in r.storage.list(ObjectKind::Data).unwrap() {
        let bytes = r.storage.read(ObjectKind::Data, &id, None).unwrap();
        let (eph, _) = parse_trailer(&bytes[bytes.len() - TRAILER_LEN..]).unwrap();
        assert_eq!(eph_in_index[&id], eph, "data/{}", &id[..8]);
        if let Some(prev) = ephemerals.insert(eph.to_vec(), format!("data/{}", &id[..8])) {
            panic!("ephemeral key of data/{} repeats that of {prev}", &id[..8]);
        }
        let (_, entries) = decode_pack(keys, &bytes).unwrap();
        let mut counters = HashSet::new();
        for e in &entries {
            assert!(counters.insert(e.nonce), "data/{}: counter {} used twice", &id[..8], e.nonce);
        }
        assert!(counters.iter().all(|c| u64::from(*c) != u64::MAX));
        blobs += entries.len();
        *counts.entry("data").or_insert(0) += 1;
    }

    // Key files: a fresh salt (so a fresh wrapping key) and a fresh nonce each.
    let mut salts = HashSet::new();
    let mut key_nonces = HashSet::new();
    for (id, _) in r.storage.list(ObjectKind::Key).unwrap() {
        let kf = parse_keyfile(&r.storage.read(ObjectKind::Key, &id, None).unwrap()).unwrap();
        assert!(salts.insert(kf.kdf.salt.clone()), "keys/{}: salt repeats", &id[..8]);
        let data = base64::engine::general_purpose::STANDARD.decode(kf.data).unwrap();
        assert!(key_nonces.insert(data[..12].to_vec()), "keys/{}: nonce repeats", &id[..8]);
        *counts.entry("keys").or_insert(0) += 1;
    }
    eprintln!("crypto invariants: objects {counts:?}, {blobs} blobs, {} sealed keys", ephemerals.len());
    assert_eq!(counts["keys"], 3);
    assert_eq!(counts["snapshots"], 4);
    assert!(counts["data"] >= 9, "{counts:?}");
    assert!(counts["index"] >= 6, "{counts:?}");
}
