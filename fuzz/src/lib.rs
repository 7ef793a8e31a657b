//! Harnesses for the cargo-fuzz targets in `fuzz_targets/`: one function per decoder family.
//!
//! Each function takes arbitrary bytes, feeds them to offsite's decoders of stored data and
//! panics only when a decoder panics or breaks a property that must hold for every input (an
//! accepted value must round-trip, an accepted blob must have its recorded length, ...). The
//! same functions run from `cargo test` over the committed seeds (`tests/seeds.rs`), so they
//! build and work on stable.
//!
//! Keys are fixed ([`keys`]) so runs are reproducible. Random bytes never get past AES-GCM, so
//! the `*_plaintext`, `blob` and `keyfile` harnesses also *seal* fuzzer-chosen plaintext under
//! the fixed keys with the layouts of docs/FORMAT.md, to reach the code after authentication.
//!
//! Three targets check parsers of user input and the chunker against references written here:
//! `units` (sizes, durations, percentages of the command line, [`units`]), `exclude` (exclude
//! patterns, [`exclude`]) and `chunker` (cut points against a literal reading of the format,
//! [`chunker`]).

mod chunking;
mod cli_units;
mod excludes;

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use offsite_crypto::{counter_nonce, derive_wrapping_key, wrap_secret, Aead, KdfParams, Key32, KeySet};
use offsite_format::{
    decode_header, decode_pack, decompress_payload, open_record, pack_key, parse_keyfile, parse_trailer,
    unlock_keyfile, BlobId, BlobOpener, BlobType, Config, ForgetRecord, IndexFile, Lock, PackEntry,
    RecordType, Snapshot, Tree, MAX_PLAINTEXT, TRAILER_LEN,
};
use serde::{de::DeserializeOwned, Serialize};

pub use chunking::chunker;
pub use cli_units::units;
pub use excludes::exclude;

/// The master secret of the fixed repository every harness decodes for.
pub const MASTER: [u8; 32] = [7; 32];
/// Master secret of a second key set whose public key serves as a fixed, valid ephemeral key.
const EPH_MASTER: [u8; 32] = [9; 32];
/// Passphrase of the harness key files.
pub const PASSPHRASE: &[u8] = b"fuzz";
/// Salt of the harness key files (the KDF is the cheapest argon2 allows).
pub const SALT: [u8; 16] = [5; 16];

const RECORD_AD: &[u8] = b"offsite record v2";
const RECORD_SEAL_CONTEXT: &[u8] = b"offsite record seal v1";
const HEADER_AD: &[u8] = b"offsite pack header v1";
const BLOB_AD: &[u8] = b"offsite blob v1";

/// The fixed full key set.
pub fn keys() -> &'static KeySet {
    static K: OnceLock<KeySet> = OnceLock::new();
    K.get_or_init(|| KeySet::from_master(Key32::from_bytes(MASTER)))
}

/// A fixed ephemeral public key (valid, not low-order) for sealed records and packs.
pub fn eph() -> [u8; 32] {
    static E: OnceLock<[u8; 32]> = OnceLock::new();
    *E.get_or_init(|| KeySet::from_master(Key32::from_bytes(EPH_MASTER)).public_key())
}

/// The cheapest KDF parameters, with the fixed salt.
pub fn cheap_kdf() -> KdfParams {
    let mut p = KdfParams::for_tests();
    p.salt = SALT;
    p
}

fn wrapping_key() -> &'static Key32 {
    static W: OnceLock<Key32> = OnceLock::new();
    W.get_or_init(|| derive_wrapping_key(PASSPHRASE, &cheap_kdf()).expect("test KDF parameters are valid"))
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = d.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

fn record_type(b: u8) -> RecordType {
    match b % 5 {
        0 => RecordType::Config,
        1 => RecordType::Index,
        2 => RecordType::Snapshot,
        3 => RecordType::ForgetRecord,
        _ => RecordType::Lock,
    }
}

/// Decode `bytes` as a record of type `ty` into its Rust type; `Ok(())` when it was accepted.
fn open_as(ty: RecordType, bytes: &[u8]) -> Result<(), offsite_format::FormatError> {
    let k = keys();
    match ty {
        RecordType::Config => open_record::<Config>(ty, k, bytes).map(drop),
        RecordType::Index => open_record::<IndexFile>(ty, k, bytes).map(drop),
        RecordType::Snapshot => open_record::<Snapshot>(ty, k, bytes).map(drop),
        RecordType::ForgetRecord => open_record::<ForgetRecord>(ty, k, bytes).map(drop),
        RecordType::Lock => open_record::<Lock>(ty, k, bytes).map(drop),
    }
}

/// Whether `json` parses as the Rust type of record type `ty`.
fn parses_as(ty: RecordType, json: &[u8]) -> bool {
    match ty {
        RecordType::Config => serde_json::from_slice::<Config>(json).is_ok(),
        RecordType::Index => serde_json::from_slice::<IndexFile>(json).is_ok(),
        RecordType::Snapshot => serde_json::from_slice::<Snapshot>(json).is_ok(),
        RecordType::ForgetRecord => serde_json::from_slice::<ForgetRecord>(json).is_ok(),
        RecordType::Lock => serde_json::from_slice::<Lock>(json).is_ok(),
    }
}

const ALL_TYPES: [RecordType; 5] =
    [RecordType::Config, RecordType::Index, RecordType::Snapshot, RecordType::ForgetRecord, RecordType::Lock];

/// Target `record`: the whole input is a stored record; it is opened as every record type.
/// Nothing but a record sealed under the fixed keys may be accepted.
pub fn record(data: &[u8]) {
    for ty in ALL_TYPES {
        let _ = open_as(ty, data);
    }
}

/// Seal `body` (the bytes inside AES-GCM: `u32le(n) || zstd frame || padding`) as a record of
/// type `ty` under the fixed keys, per FORMAT.md §5, with a fixed nonce or ephemeral key, and
/// the MAC of a sealed record.
pub fn seal_record_body(ty: RecordType, body: &[u8]) -> Vec<u8> {
    let mut out = b"OFS".to_vec();
    out.push(2);
    out.push(ty as u8);
    let sealed = ty == RecordType::Snapshot;
    out.push(u8::from(sealed));
    let mut ad = RECORD_AD.to_vec();
    ad.push(ty as u8);
    ad.push(u8::from(sealed));
    let (key, nonce) = if sealed {
        let e = eph();
        out.extend_from_slice(&e);
        ad.extend_from_slice(&e);
        let key = keys().open_sealed_key(&e, RECORD_SEAL_CONTEXT).expect("full key, valid ephemeral key");
        (key, counter_nonce(0))
    } else {
        (Key32::from_bytes(*keys().index_key().as_bytes()), [3u8; 12])
    };
    out.extend_from_slice(&nonce);
    out.extend(Aead::new(&key).seal(&nonce, &ad, body));
    if sealed {
        let mac = keys().record_mac(&out);
        out.extend_from_slice(&mac);
    }
    out
}

/// A record body around one zstd frame: its length, then the frame (FORMAT.md §5).
pub fn framed(frame: &[u8]) -> Vec<u8> {
    let mut body = (frame.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(frame);
    body
}

/// Target `record_plaintext`: byte 0 picks the record type (`% 5`) and whether the rest is
/// sealed as is (bit 3 set: the length prefix and the zstd decoder see arbitrary bytes) or
/// zstd-compressed and framed first (the JSON parser sees arbitrary bytes). The record is authentic, so acceptance must agree with
/// parsing the JSON directly.
pub fn record_plaintext(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let ty = record_type(sel);
    if sel & 8 != 0 {
        let _ = open_as(ty, &seal_record_body(ty, rest));
    } else {
        let body = framed(&zstd::bulk::compress(rest, 1).expect("zstd compresses any input"));
        let opened = open_as(ty, &seal_record_body(ty, &body));
        assert_eq!(opened.is_ok(), parses_as(ty, rest), "sealed JSON accepted iff it parses");
    }
}

/// Target `pack`: the input is a whole pack file (decode_pack) and a trailer (parse_trailer).
/// Blobs listed by an accepted header are opened too.
pub fn pack(data: &[u8]) {
    if data.len() >= TRAILER_LEN {
        let _ = parse_trailer(&data[data.len() - TRAILER_LEN..]);
    }
    let _ = parse_trailer(data);
    if let Ok((e, entries)) = decode_pack(keys(), data) {
        check_entries(&entries, data.len() as u64);
        if let Ok(opener) = BlobOpener::new(keys(), &e) {
            for en in &entries {
                let ct = &data[en.offset as usize..(en.offset as usize + en.length as usize)];
                let _ = opener.open(keys(), en, ct);
            }
        }
    }
}

fn check_entries(entries: &[PackEntry], pack_len: u64) {
    for e in entries {
        assert!(u64::from(e.offset) + u64::from(e.length) <= pack_len, "accepted entry outside the pack");
        assert!(e.length >= 17, "accepted entry shorter than a tag and a flag");
    }
}

/// Seal `plain` as a pack header under the pack key for [`eph`].
pub fn seal_header(plain: &[u8]) -> Vec<u8> {
    let key = pack_key(keys(), &eph()).expect("full key, valid ephemeral key");
    Aead::new(&key).seal(&counter_nonce(u64::MAX), HEADER_AD, plain)
}

/// Target `pack_header_plaintext`: bytes 0..4 are the length of the blob area (`% 1 MiB`), the
/// rest is a header plaintext, sealed under the fixed pack key. Decoded by decode_header and,
/// assembled into a whole pack (zero blob area, header, trailer), by decode_pack; both must
/// agree.
pub fn pack_header_plaintext(data: &[u8]) {
    let area = (u32_at(data, 0) % (1 << 20)) as usize;
    let plain = data.get(4..).unwrap_or(&[]);
    let ct = seal_header(plain);
    let key = pack_key(keys(), &eph()).expect("full key, valid ephemeral key");
    let direct = decode_header(&key, &ct, area as u64);
    if let Ok(entries) = &direct {
        check_entries(entries, area as u64);
    }
    let mut packed = vec![0u8; area];
    packed.extend_from_slice(&ct);
    packed.extend(offsite_format::seal_trailer(&key, &eph(), ct.len() as u32));
    let whole = decode_pack(keys(), &packed);
    assert_eq!(direct.ok(), whole.ok().map(|(_, e)| e), "decode_pack and decode_header disagree");
}

/// Seal `payload` as blob `e` (its type, id and nonce counter) of the pack for [`eph`].
pub fn seal_blob(e: &PackEntry, payload: &[u8]) -> Vec<u8> {
    let key = pack_key(keys(), &eph()).expect("full key, valid ephemeral key");
    let mut ad = BLOB_AD.to_vec();
    ad.push(match e.ty {
        BlobType::Data => 0,
        BlobType::Tree => 1,
        BlobType::Bundle => 2,
    });
    ad.extend_from_slice(&e.id.0);
    Aead::new(&key).seal(&counter_nonce(u64::from(e.nonce)), &ad, payload)
}

/// Target `blob`: byte 0 holds flags, bytes 1..5 the recorded raw length, 5..9 the nonce
/// counter, the rest the blob. Flag bit 0: tree (else data); bit 4: bundle (its id is not
/// checked against a hash, FORMAT.md §8.2). Bit 1: seal the rest as a payload
/// (else it is the ciphertext itself). Bit 2: the blob id is the keyed hash of the payload after
/// its flag byte (so raw payloads pass the id check), else of the whole rest. Bit 3: cap the raw
/// length at 64 KiB. Whatever is accepted must have the recorded length, and the id unless it
/// is a bundle.
pub fn blob(data: &[u8]) {
    let Some(&flags) = data.first() else { return };
    let mut raw_length = u32_at(data, 1);
    if flags & 8 != 0 {
        raw_length %= 1 << 16;
    }
    let nonce = u32_at(data, 5);
    let rest = data.get(9..).unwrap_or(&[]);
    let ty = match (flags & 16 != 0, flags & 1 != 0) {
        (true, _) => BlobType::Bundle,
        (false, true) => BlobType::Tree,
        (false, false) => BlobType::Data,
    };
    let id_of = if flags & 4 != 0 { rest.get(1..).unwrap_or(&[]) } else { rest };
    let entry = PackEntry {
        ty,
        id: BlobId(keys().blob_id(id_of)),
        offset: 0,
        length: u32::try_from(rest.len()).unwrap_or(u32::MAX),
        raw_length,
        nonce,
    };
    let ct = if flags & 2 != 0 { seal_blob(&entry, rest) } else { rest.to_vec() };
    let opener = BlobOpener::new(keys(), &eph()).expect("full key, valid ephemeral key");
    if let Ok(plain) = opener.open(keys(), &entry, &ct) {
        assert_eq!(plain.len(), raw_length as usize, "accepted blob of the wrong length");
        if ty.content_addressed() {
            assert_eq!(keys().blob_id(&plain), entry.id.0, "accepted blob with the wrong id");
        }
    }
}

/// A key file (pretty JSON like `create_keyfile`) for repository `[1; 32]` whose wrapped secret
/// is `secret`, as `kind`, under [`PASSPHRASE`] and [`cheap_kdf`].
pub fn keyfile_with_secret(kind: &str, secret: &[u8]) -> Vec<u8> {
    let repo = [1u8; 32];
    let mut ad = b"offsite key v2".to_vec();
    ad.extend_from_slice(&repo);
    ad.push(u8::from(kind != "full"));
    let p = cheap_kdf();
    let v = serde_json::json!({
        "version": 2, "kind": kind, "created": "2026-11-22T00:00:00Z", "repository": hex::encode(repo),
        "kdf": {"algorithm": "argon2id", "m_cost_kib": p.m_cost_kib, "t_cost": p.t_cost, "p_cost": p.p_cost,
                "salt": hex::encode(p.salt)},
        "data": STANDARD.encode(wrap_secret(wrapping_key(), &ad, secret)),
    });
    serde_json::to_vec_pretty(&v).expect("JSON values serialize")
}

/// Target `keyfile`: byte 0 selects. Even: the rest is a key file: parse_keyfile, the KDF
/// bounds of what it names, and unlock_keyfile when its KDF is cheap (at most 64 KiB, 2 passes;
/// others would only measure Argon2). Odd: the rest is a secret payload wrapped in a valid key
/// file (bit 1: claimed backup-only), so unlocking reaches KeySet::from_bytes and the kind check.
pub fn keyfile(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    if sel & 1 == 0 {
        keyfile_bytes(rest);
    } else {
        let kind = if sel & 2 != 0 { "backup-only" } else { "full" };
        let file = keyfile_with_secret(kind, rest);
        if let Ok((_, ks)) = unlock_keyfile(&file, PASSPHRASE) {
            assert_eq!(&ks.to_bytes()[..], rest, "unlocked secrets differ from the wrapped ones");
        }
    }
}

/// Parse a key file and unlock it when its KDF parameters are cheap.
pub fn keyfile_bytes(bytes: &[u8]) {
    let Ok(kf) = parse_keyfile(bytes) else { return };
    let mut salt = [0u8; 16];
    let salt_ok = hex::decode_to_slice(kf.kdf.salt.as_bytes(), &mut salt).is_ok();
    let params =
        KdfParams { m_cost_kib: kf.kdf.m_cost_kib, t_cost: kf.kdf.t_cost, p_cost: kf.kdf.p_cost, salt };
    let valid = params.validate().is_ok();
    if salt_ok && valid && kf.kdf.m_cost_kib <= 64 && kf.kdf.t_cost <= 2 {
        let _ = unlock_keyfile(bytes, PASSPHRASE);
    }
}

fn json_round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&v).expect("decoded records serialize");
        let back: T = serde_json::from_slice(&again).expect("a re-encoded record parses");
        assert_eq!(back, v, "record changed in a JSON round trip");
    }
}

/// Target `tree_json`: a tree blob's plaintext. Accepted trees must survive a JSON round trip.
pub fn tree_json(data: &[u8]) {
    json_round_trip::<Tree>(data);
}

/// Target `index_json`: an index record's JSON (round trip as for trees).
pub fn index_json(data: &[u8]) {
    json_round_trip::<IndexFile>(data);
}

/// Target `snapshot_json`: the JSON of a snapshot, and of the other small records (config,
/// forget record, lock) (round trip as for trees).
pub fn snapshot_json(data: &[u8]) {
    json_round_trip::<Snapshot>(data);
    json_round_trip::<Config>(data);
    json_round_trip::<ForgetRecord>(data);
    json_round_trip::<Lock>(data);
}

/// Target `payload`: bytes 0..4 are the recorded raw length (bit 31 set: taken modulo 64 KiB),
/// the rest a blob payload. Accepted payloads have exactly the recorded length.
pub fn payload(data: &[u8]) {
    let mut raw_len = u32_at(data, 0) as usize;
    if raw_len & (1 << 31) != 0 {
        raw_len %= 1 << 16;
    }
    let body = data.get(4..).unwrap_or(&[]);
    if let Ok(out) = decompress_payload(body, raw_len) {
        assert_eq!(out.len(), raw_len, "accepted payload of the wrong length");
        assert!(raw_len <= MAX_PLAINTEXT);
    }
}

/// Fixed "now" instants for selectors: UTC and a fixed negative offset.
fn nows() -> &'static [jiff::Zoned; 2] {
    static N: OnceLock<[jiff::Zoned; 2]> = OnceLock::new();
    N.get_or_init(|| {
        [
            "2026-11-20T12:00:00+00:00[UTC]".parse().expect("valid zoned time"),
            "2026-03-08T01:30:00-05:00[-05:00]".parse().expect("valid zoned time"),
        ]
    })
}

/// Target `selector`: the input (if UTF-8) is a snapshot selector, parsed at fixed times.
pub fn selector(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for now in nows() {
        let _ = offsite_repo::parse_selector(s, now);
    }
}

/// Target `keyset`: a key file's secret payload. Accepted payloads serialize back unchanged.
pub fn keyset(data: &[u8]) {
    if let Ok(k) = KeySet::from_bytes(data) {
        assert_eq!(&k.to_bytes()[..], data, "key set changed in a round trip");
    }
}

/// A harness: takes the fuzzer's bytes and panics only on a bug.
pub type Harness = fn(&[u8]);

/// Every harness by target name (for the seed test and the seed generator).
pub const TARGETS: &[(&str, Harness)] = &[
    ("record", record),
    ("record_plaintext", record_plaintext),
    ("pack", pack),
    ("pack_header_plaintext", pack_header_plaintext),
    ("blob", blob),
    ("keyfile", keyfile),
    ("tree_json", tree_json),
    ("index_json", index_json),
    ("snapshot_json", snapshot_json),
    ("payload", payload),
    ("selector", selector),
    ("keyset", keyset),
    ("units", units),
    ("exclude", exclude),
    ("chunker", chunker),
];
