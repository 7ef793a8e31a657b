//! Every decoder of stored data, fed garbage: random bytes, valid encodings with 1-3 flipped
//! bytes, truncated at every length, with bytes inserted, and arbitrary plaintext sealed in
//! valid envelopes (to get past the AEAD). No decoder may panic (a panic fails the test), and
//! no tampered AEAD-protected object may be accepted. Deterministic (ChaCha seeds); the same
//! harness ideas run unbounded under cargo-fuzz in `fuzz/` (this file does not depend on it).
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use offsite_crypto::{counter_nonce, derive_wrapping_key, wrap_secret, Aead, KdfParams, Key32, KeySet};
use offsite_format::{
    compress_payload, create_keyfile, decode_header, decode_pack, decompress_payload, open_record, pack_key,
    parse_keyfile, parse_trailer, seal_record, unlock_keyfile, BlobId, BlobOpener, BlobType, ChunkerSizes,
    Config, ContentItem, ForgetRecord, IndexFile, IndexPack, Lock, Node, NodeKind, PackBuilder, PackEntry,
    RawBytes, RecordType, RepoId, Snapshot, SnapshotId, Summary, Tree, Xattr, MAX_PLAINTEXT, TRAILER_LEN,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};

// ---------------------------------------------------------------- inputs and mutations

fn keys() -> KeySet {
    KeySet::from_master(Key32::from_bytes([7; 32]))
}

/// A valid ephemeral public key (another key set's public key).
fn eph() -> [u8; 32] {
    KeySet::from_master(Key32::from_bytes([9; 32])).public_key()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_bytes(r: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; r.gen_range(0..=max)];
    r.fill_bytes(&mut v);
    v
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

/// Random bytes, every truncation of each valid encoding, and `per_valid` mutations of each.
fn inputs(seed: u64, valid: &[Vec<u8>], random: usize, per_valid: usize) -> Vec<Vec<u8>> {
    let mut r = rng(seed);
    let max = valid.iter().map(Vec::len).max().unwrap_or(64).max(64);
    let mut out: Vec<Vec<u8>> = (0..random).map(|_| random_bytes(&mut r, max)).collect();
    for v in valid {
        if v.len() <= 8192 {
            out.extend((0..v.len()).map(|n| v[..n].to_vec()));
        }
        out.extend((0..per_valid).map(|_| mutate(&mut r, v)));
    }
    out
}

// ---------------------------------------------------------------- valid objects

fn repo() -> RepoId {
    RepoId([1; 32])
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: RawBytes(name.to_vec()),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 100,
        user: Some("u".into()),
        group: None,
        mtime: (1_763_000_000, 5),
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

fn tree() -> Tree {
    let mut file = node(b"a.txt", NodeKind::File);
    file.size = 4100;
    file.content = Some(vec![
        ContentItem::Blob(BlobId([1; 32])),
        ContentItem::Hole { hole: 4096 },
        ContentItem::Slice { bundle: BlobId([5; 32]), offset: 9, length: 4, id: BlobId([6; 32]) },
    ]);
    file.xattrs = vec![Xattr { name: RawBytes(b"user.x".to_vec()), value: RawBytes(vec![0, 255]) }];
    file.links = 2;
    file.inode = 7;
    let mut dir = node(b"d\xff", NodeKind::Dir);
    dir.subtree = Some(BlobId([2; 32]));
    let mut link = node(b"l", NodeKind::Symlink);
    link.target = Some(RawBytes(b"../a.txt".to_vec()));
    let mut dev = node(b"tty", NodeKind::Chardev);
    dev.rdev = Some(0x0501);
    Tree { nodes: vec![file, dir, link, dev, node(b"p", NodeKind::Fifo)] }
}

fn config() -> Config {
    Config {
        version: 2,
        id: repo(),
        public_key: [8; 32],
        key_commitment: [4; 32],
        created: "2026-11-22T10:00:00Z".into(),
        chunker: ChunkerSizes { min: 524_288, avg: 1_048_576, max: 8_388_608 },
        compression: 3,
        pack_size: 16_777_216,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        version: 1,
        repository: repo(),
        time: "2026-11-22T10:00:00.123456789Z".into(),
        host: "h".into(),
        user: "u".into(),
        paths: vec![RawBytes(b"/home/u".to_vec())],
        tags: vec!["daily".into()],
        tree: BlobId([3; 32]),
        parent: Some(SnapshotId([4; 32])),
        seen: vec![SnapshotId([4; 32])],
        summary: Summary { files_new: 1, bytes_read: 10, ..Summary::default() },
        program: "offsite 0.1.0".into(),
    }
}

fn forget() -> ForgetRecord {
    ForgetRecord {
        version: 1,
        repository: repo(),
        time: "2026-11-22T10:00:00Z".into(),
        removed: vec![SnapshotId([4; 32])],
    }
}

fn lock() -> Lock {
    Lock {
        version: 1,
        repository: repo(),
        time: "2026-11-22T10:00:00Z".into(),
        host: "h".into(),
        pid: 42,
        exclusive: true,
    }
}

struct Pack {
    bytes: Vec<u8>,
    eph: [u8; 32],
    entries: Vec<PackEntry>,
    plain: Vec<Vec<u8>>,
}

/// A pack of `n` blobs, alternately compressible (stored zstd) and tiny (stored raw).
fn pack(ks: &KeySet, ty: BlobType, n: u32) -> Pack {
    let mut b = PackBuilder::new(&ks.public_key());
    let mut plain = Vec::new();
    for i in 0..n {
        let data = if i % 2 == 0 { format!("blob {i} ").repeat(40).into_bytes() } else { vec![i as u8; 3] };
        b.add(ty, BlobId(ks.blob_id(&data)), compress_payload(&data, 3), data.len() as u32);
        plain.push(data);
    }
    let p = b.finish();
    // Entries in insertion order, matching `plain`.
    let entries =
        plain.iter().map(|d| *p.entries.iter().find(|e| e.id.0 == ks.blob_id(d)).unwrap()).collect();
    Pack { bytes: p.bytes, eph: p.eph, entries, plain }
}

fn index_file(p: &Pack) -> IndexFile {
    IndexFile {
        packs: vec![IndexPack {
            id: offsite_format::PackId([5; 32]),
            eph: p.eph,
            size: p.bytes.len() as u64,
            blobs: p.entries.clone(),
        }],
        supersedes: vec![offsite_format::IndexId([6; 32])],
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Decode a record of type `ty` into its Rust type.
fn open_as(ty: RecordType, ks: &KeySet, bytes: &[u8]) -> Result<(), offsite_format::FormatError> {
    match ty {
        RecordType::Config => open_record::<Config>(ty, ks, bytes).map(drop),
        RecordType::Index => open_record::<IndexFile>(ty, ks, bytes).map(drop),
        RecordType::Snapshot => open_record::<Snapshot>(ty, ks, bytes).map(drop),
        RecordType::ForgetRecord => open_record::<ForgetRecord>(ty, ks, bytes).map(drop),
        RecordType::Lock => open_record::<Lock>(ty, ks, bytes).map(drop),
    }
}

fn parses_as(ty: RecordType, j: &[u8]) -> bool {
    match ty {
        RecordType::Config => serde_json::from_slice::<Config>(j).is_ok(),
        RecordType::Index => serde_json::from_slice::<IndexFile>(j).is_ok(),
        RecordType::Snapshot => serde_json::from_slice::<Snapshot>(j).is_ok(),
        RecordType::ForgetRecord => serde_json::from_slice::<ForgetRecord>(j).is_ok(),
        RecordType::Lock => serde_json::from_slice::<Lock>(j).is_ok(),
    }
}

const TYPES: [RecordType; 5] =
    [RecordType::Config, RecordType::Index, RecordType::Snapshot, RecordType::ForgetRecord, RecordType::Lock];

/// The JSON of a valid record of each type.
fn record_jsons(ks: &KeySet) -> Vec<(RecordType, Vec<u8>)> {
    vec![
        (RecordType::Config, json(&config())),
        (RecordType::Index, json(&index_file(&pack(ks, BlobType::Data, 3)))),
        (RecordType::Snapshot, json(&snapshot())),
        (RecordType::ForgetRecord, json(&forget())),
        (RecordType::Lock, json(&lock())),
    ]
}

/// Seal `body` (what AES-GCM protects: normally a zstd frame) as a record of type `ty`, per
/// FORMAT.md §5, so arbitrary plaintext reaches the decoder after the AEAD.
/// An authentic record whose body is `u32le(len) || frame` (FORMAT.md §5, unpadded).
fn seal_body(ks: &KeySet, ty: RecordType, frame: &[u8]) -> Vec<u8> {
    seal_raw(ks, ty, &prefixed(frame))
}

fn prefixed(frame: &[u8]) -> Vec<u8> {
    let mut body = (frame.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(frame);
    body
}

/// An authentic record (with its MAC when sealed) around exactly these body bytes.
fn seal_raw(ks: &KeySet, ty: RecordType, body: &[u8]) -> Vec<u8> {
    let sealed = ty == RecordType::Snapshot;
    let mut out = b"OFS".to_vec();
    out.extend_from_slice(&[2, ty as u8, u8::from(sealed)]);
    let mut ad = b"offsite record v2".to_vec();
    ad.extend_from_slice(&[ty as u8, u8::from(sealed)]);
    let (key, nonce) = if sealed {
        let e = eph();
        out.extend_from_slice(&e);
        ad.extend_from_slice(&e);
        (ks.open_sealed_key(&e, b"offsite record seal v1").unwrap(), counter_nonce(0))
    } else {
        (Key32::from_bytes(*ks.index_key().as_bytes()), [3; 12])
    };
    out.extend_from_slice(&nonce);
    out.extend(Aead::new(&key).seal(&nonce, &ad, body));
    if sealed {
        let mac = ks.record_mac(&out);
        out.extend_from_slice(&mac);
    }
    out
}

// ---------------------------------------------------------------- records

#[test]
fn tampered_records_are_always_rejected() {
    let ks = keys();
    let other = KeySet::from_master(Key32::from_bytes([8; 32]));
    let mut n = 0;
    for (i, (ty, j)) in record_jsons(&ks).into_iter().enumerate() {
        let value: serde_json::Value = serde_json::from_slice(&j).unwrap();
        let valid = seal_record(ty, &ks, &value);
        open_as(ty, &ks, &valid).unwrap();
        assert!(open_as(ty, &other, &valid).is_err());
        assert!(open_as(ty, &ks.to_backup_only(), &valid).is_err() == (ty == RecordType::Snapshot));
        for bad in inputs(100 + i as u64, &[valid], 0, 2000) {
            for t in TYPES {
                assert!(open_as(t, &ks, &bad).is_err(), "{} accepted a tampered {}", t.name(), ty.name());
            }
            n += 1;
        }
    }
    // Random bytes, bare and behind a plausible header of every type and keying.
    let mut r = rng(1);
    for i in 0..10_000u32 {
        let mut b = random_bytes(&mut r, 300);
        if i % 2 == 0 {
            let head = [b'O', b'F', b'S', 2, (i % 7) as u8, (i / 2 % 3) as u8];
            b.splice(0..0, head);
        }
        for t in TYPES {
            assert!(open_as(t, &ks, &b).is_err());
        }
        n += 1;
    }
    assert!(n > 20_000);
}

#[test]
fn authentic_records_with_garbage_plaintext_never_panic() {
    let ks = keys();
    let jsons = record_jsons(&ks);
    for (i, (ty, j)) in jsons.iter().enumerate() {
        // Garbage inside the AEAD: the length prefix and the zstd decoder see it.
        let zstd = zstd::bulk::compress(j, 3).unwrap();
        for body in inputs(200 + i as u64, &[prefixed(&zstd)], 1000, 1000) {
            let _ = open_as(*ty, &ks, &seal_raw(&ks, *ty, &body));
        }
        // Garbage JSON in a valid zstd frame: accepted exactly when it parses.
        for text in inputs(300 + i as u64, std::slice::from_ref(j), 500, 1500) {
            let body = zstd::bulk::compress(&text, 1).unwrap();
            let opened = open_as(*ty, &ks, &seal_body(&ks, *ty, &body));
            assert_eq!(opened.is_ok(), parses_as(*ty, &text), "{}", String::from_utf8_lossy(&text));
        }
    }
    // A small frame that inflates to 8 MiB of whitespace: decoded, then refused as JSON.
    let bomb = zstd::bulk::compress(&vec![b' '; 8 << 20], 3).unwrap();
    assert!(bomb.len() < 4096);
    assert!(open_as(RecordType::Lock, &ks, &seal_body(&ks, RecordType::Lock, &bomb)).is_err());
}

// ---------------------------------------------------------------- JSON records

/// Parse every input as `T`; accepted values must survive a JSON round trip.
fn json_garbage<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(seed: u64, valid: &[Vec<u8>]) {
    let mut accepted = 0;
    for input in inputs(seed, valid, 5000, 15_000 / valid.len()) {
        if let Ok(v) = serde_json::from_slice::<T>(&input) {
            let back: T = serde_json::from_slice(&json(&v)).unwrap();
            assert_eq!(back, v);
            accepted += 1;
        }
    }
    // Whitespace-free JSON has few harmless mutations, but some (a digit) must be accepted.
    assert!(accepted > 0);
}

#[test]
fn tree_json_garbage() {
    json_garbage::<Tree>(10, &[json(&tree()), b"{\"nodes\":[]}".to_vec()]);
}

#[test]
fn index_json_garbage() {
    json_garbage::<IndexFile>(11, &[json(&index_file(&pack(&keys(), BlobType::Tree, 4)))]);
}

#[test]
fn snapshot_and_small_record_json_garbage() {
    json_garbage::<Snapshot>(12, &[json(&snapshot())]);
    json_garbage::<Config>(13, &[json(&config())]);
    json_garbage::<ForgetRecord>(14, &[json(&forget())]);
    json_garbage::<Lock>(15, &[json(&lock())]);
}

// ---------------------------------------------------------------- payloads

#[test]
fn payload_garbage_respects_the_recorded_length() {
    let text = b"hello hello hello hello ".repeat(50);
    let valid = [compress_payload(&text, 3), compress_payload(b"12345", 0)];
    assert_eq!(valid[0][0], 1);
    let mut r = rng(20);
    for (i, input) in inputs(21, &valid, 5000, 7500).into_iter().enumerate() {
        let raw_len = match i % 4 {
            0 => text.len(),
            1 => 5,
            2 => r.gen_range(0..4096),
            _ => [0, 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, usize::MAX][r.gen_range(0..5)],
        };
        if let Ok(out) = decompress_payload(&input, raw_len) {
            assert_eq!(out.len(), raw_len);
        }
    }
    // A zstd frame larger than recorded is refused, not truncated.
    assert!(decompress_payload(&valid[0], text.len() - 1).is_err());
    assert!(decompress_payload(&valid[0], MAX_PLAINTEXT + 1).is_err());
}

// ---------------------------------------------------------------- packs

#[test]
fn pack_garbage_never_yields_wrong_blobs() {
    let ks = keys();
    for (seed, ty, n) in [(30u64, BlobType::Data, 3u32), (31, BlobType::Tree, 1)] {
        let p = pack(&ks, ty, n);
        let (e, entries) = decode_pack(&ks, &p.bytes).unwrap();
        assert_eq!(e, p.eph);
        let mut accepted = 0;
        for bad in inputs(seed, std::slice::from_ref(&p.bytes), 2000, 4000) {
            let _ = parse_trailer(&bad);
            if bad.len() >= TRAILER_LEN {
                let _ = parse_trailer(&bad[bad.len() - TRAILER_LEN..]);
            }
            let Ok((e2, got)) = decode_pack(&ks, &bad) else { continue };
            // Only the authenticated header of this very pack can be accepted (a flip in the
            // blob area or padding is caught when a blob is opened, not here).
            assert_eq!((e2, &got), (e, &entries));
            accepted += 1;
            let opener = BlobOpener::new(&ks, &e2).unwrap();
            for en in &got {
                let ct = &bad[en.offset as usize..(en.offset + en.length) as usize];
                if let Ok(plain) = opener.open(&ks, en, ct) {
                    let i = p.entries.iter().position(|x| x == en).unwrap();
                    assert_eq!(plain, p.plain[i], "tampered pack yielded a wrong blob");
                }
            }
        }
        assert!(accepted > 0, "flips in the blob area leave the header valid");
    }
}

/// Pack header plaintext as PackBuilder lays it out.
fn header_plain(entries: &[PackEntry]) -> Vec<u8> {
    let mut h = (entries.len() as u32).to_le_bytes().to_vec();
    for e in entries {
        h.push(u8::from(e.ty == BlobType::Tree));
        h.extend_from_slice(&e.id.0);
        for v in [e.offset, e.length, e.raw_length, e.nonce] {
            h.extend_from_slice(&v.to_le_bytes());
        }
    }
    h.resize(offsite_format::padme(h.len() as u64) as usize, 0);
    h
}

#[test]
fn pack_headers_tampered_or_garbage() {
    let ks = keys();
    let p = pack(&ks, BlobType::Data, 3);
    let key = pack_key(&ks, &p.eph).unwrap();
    let (hstart, hend) = offsite_format::header_range(&ks, &p.bytes).unwrap();
    let header_ct = p.bytes[hstart..hend].to_vec();
    decode_header(&key, &header_ct, hstart as u64).unwrap();
    for bad in inputs(40, std::slice::from_ref(&header_ct), 3000, 7000) {
        assert!(decode_header(&key, &bad, hstart as u64).is_err());
    }
    // Garbage header plaintext under the real key: no panic, and accepted entries lie inside
    // the pack; decode_pack of the assembled pack agrees.
    let hkey = pack_key(&ks, &eph()).unwrap();
    let aead = Aead::new(&hkey);
    let mut r = rng(41);
    let mut accepted = 0;
    for plain in inputs(42, &[header_plain(&p.entries)], 3000, 7000) {
        let area = if r.gen_bool(0.5) { hstart } else { r.gen_range(0..2 * hstart) };
        let ct = aead.seal(&counter_nonce(u64::MAX), b"offsite pack header v1", &plain);
        let direct = decode_header(&hkey, &ct, area as u64);
        if let Ok(es) = &direct {
            accepted += 1;
            for e in es {
                assert!(u64::from(e.offset) + u64::from(e.length) <= area as u64 && e.length >= 17);
            }
        }
        if r.gen_ratio(1, 8) {
            let mut whole = vec![0u8; area];
            whole.extend_from_slice(&ct);
            whole.extend(offsite_format::seal_trailer(&hkey, &eph(), ct.len() as u32));
            assert_eq!(decode_pack(&ks, &whole).ok().map(|(_, e)| e), direct.ok());
        }
    }
    assert!(accepted > 0);
}

#[test]
fn tampered_blobs_and_entries_are_rejected() {
    let ks = keys();
    let p = pack(&ks, BlobType::Data, 2);
    let opener = BlobOpener::new(&ks, &p.eph).unwrap();
    let mut r = rng(50);
    for (i, en) in p.entries.iter().enumerate() {
        let ct = p.bytes[en.offset as usize..(en.offset + en.length) as usize].to_vec();
        assert_eq!(opener.open(&ks, en, &ct).unwrap(), p.plain[i]);
        for bad in inputs(51 + i as u64, std::slice::from_ref(&ct), 1000, 3000) {
            assert!(opener.open(&ks, en, &bad).is_err());
        }
        for _ in 0..2000 {
            let mut e = *en;
            match r.gen_range(0..4) {
                0 => e.ty = BlobType::Tree,
                1 => e.id.0[r.gen_range(0..32)] ^= r.gen_range(1..=255u8),
                2 => e.raw_length ^= 1 << r.gen_range(0..32),
                _ => e.nonce ^= 1 << r.gen_range(0..32),
            }
            assert!(opener.open(&ks, &e, &ct).is_err(), "{e:?}");
        }
    }
    assert!(BlobOpener::new(&ks.to_backup_only(), &p.eph).is_err());
    assert!(BlobOpener::new(&ks, &[0; 32]).is_err());
}

#[test]
fn authentic_blobs_with_garbage_payload() {
    let ks = keys();
    let key = pack_key(&ks, &eph()).unwrap();
    let aead = Aead::new(&key);
    let opener = BlobOpener::new(&ks, &eph()).unwrap();
    let text = b"tree tree tree tree ".repeat(30);
    let valid = [compress_payload(&text, 3), compress_payload(b"{\"nodes\":[]}", 0)];
    let mut r = rng(60);
    let mut accepted = 0;
    for payload in inputs(61, &valid, 5000, 7500) {
        let plain_guess = payload.get(1..).unwrap_or(&[]);
        let id = BlobId(ks.blob_id(if r.gen_bool(0.5) { plain_guess } else { &text }));
        let raw_length = if r.gen_bool(0.5) { plain_guess.len() as u32 } else { text.len() as u32 };
        let e = PackEntry {
            ty: BlobType::Tree,
            id,
            offset: 0,
            length: payload.len() as u32 + 16,
            raw_length,
            nonce: 3,
        };
        let mut ad = b"offsite blob v1".to_vec();
        ad.push(1);
        ad.extend_from_slice(&id.0);
        let ct = aead.seal(&counter_nonce(3), &ad, &payload);
        if let Ok(plain) = opener.open(&ks, &e, &ct) {
            assert_eq!(plain.len(), raw_length as usize);
            assert_eq!(ks.blob_id(&plain), id.0);
            accepted += 1;
        }
    }
    assert!(accepted > 0);
}

// ---------------------------------------------------------------- key files and key sets

fn cheap_kdf() -> KdfParams {
    let mut p = KdfParams::for_tests();
    p.salt = [5; 16];
    p
}

/// Unlock a key file if its KDF is cheap enough to run thousands of times.
fn unlock_if_cheap(
    bytes: &[u8],
    pw: &[u8],
) -> Option<Result<(offsite_format::KeyFile, KeySet), offsite_format::FormatError>> {
    let kf = parse_keyfile(bytes).ok()?;
    (kf.kdf.m_cost_kib <= 1024 && kf.kdf.t_cost <= 4).then(|| unlock_keyfile(bytes, pw))
}

#[test]
fn key_file_garbage_never_unlocks_other_secrets() {
    let ks = keys();
    let valid = create_keyfile(&ks, repo(), b"pw", &cheap_kdf(), "2026-11-22T10:00:00Z").unwrap();
    let bo = ks.to_backup_only();
    let valid_bo = create_keyfile(&bo, repo(), b"pw", &cheap_kdf(), "2026-11-22T10:00:00Z").unwrap();
    let mut opened = 0;
    for (i, (file, secret)) in [(valid, ks.to_bytes()), (valid_bo, bo.to_bytes())].into_iter().enumerate() {
        for bad in inputs(70 + i as u64, std::slice::from_ref(&file), 2000, 8000) {
            if let Some(Ok((kf, got))) = unlock_if_cheap(&bad, b"pw") {
                // Whitespace and the unauthenticated `created` may change; the secrets, kind
                // and repository may not.
                assert_eq!(got.to_bytes(), secret);
                assert_eq!(
                    (kf.repository, kf.kind.as_str()),
                    (repo(), if i == 0 { "full" } else { "backup-only" })
                );
                opened += 1;
            }
        }
    }
    assert!(opened > 0);
}

#[test]
fn key_file_with_garbage_secrets() {
    let wk = derive_wrapping_key(b"pw", &cheap_kdf()).unwrap();
    let ks = keys();
    let valid = [ks.to_bytes().to_vec(), ks.to_backup_only().to_bytes().to_vec()];
    let mut r = rng(80);
    for secret in inputs(81, &valid, 2000, 4000) {
        let kind = if r.gen_bool(0.5) { "full" } else { "backup-only" };
        let mut ad = b"offsite key v1".to_vec();
        ad.extend_from_slice(&repo().0);
        ad.push(u8::from(kind != "full"));
        let p = cheap_kdf();
        let file = serde_json::to_vec(&serde_json::json!({
            "version": 1, "kind": kind, "created": "x", "repository": repo().to_hex(),
            "kdf": {"algorithm": "argon2id", "m_cost_kib": p.m_cost_kib, "t_cost": p.t_cost,
                    "p_cost": p.p_cost, "salt": hex::encode(p.salt)},
            "data": STANDARD.encode(wrap_secret(&wk, &ad, &secret)),
        }))
        .unwrap();
        if let Ok((_, got)) = unlock_keyfile(&file, b"pw") {
            assert_eq!(&got.to_bytes()[..], &secret[..]);
        }
    }
}

#[test]
fn key_set_garbage_round_trips_when_accepted() {
    let ks = keys();
    let valid = [ks.to_bytes().to_vec(), ks.to_backup_only().to_bytes().to_vec()];
    let mut accepted = 0;
    for b in inputs(90, &valid, 10_000, 5000) {
        if let Ok(k) = KeySet::from_bytes(&b) {
            assert_eq!(&k.to_bytes()[..], &b[..]);
            accepted += 1;
        }
    }
    assert!(accepted > 0, "flips in key bytes give other valid key sets");
}
