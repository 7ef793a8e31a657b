//! Pack files: many encrypted blobs, padding, an encrypted header listing them, and a trailer.
//!
//! ```text
//! pack    = blob* || padding || header_ct || ephemeral_public (32) || length_ct (20) || "OSP2"
//! key     = sealed key (X25519 to the repository public key, context "offsite pack v1")
//! blob_i  = AES-256-GCM(key, nonce = counter(n_i), AD = "offsite blob v1" || type u8 || blob id, payload)
//! header  = AES-256-GCM(key, nonce = counter(2^64-1), AD = "offsite pack header v1",
//!           count u32le || entry* || zero padding)         entry = 49 bytes, see PackEntry
//! length_ct = AES-256-GCM(key, nonce = counter(2^64-2), AD = "offsite pack header length v2",
//!           u32le(len(header_ct)))
//! ```
//! Blobs are written in a random order (their nonce counter `n_i` is their insertion number), the
//! padding is random bytes so the whole pack length is a Padmé length of at least
//! [`MIN_PACK_LEN`], the header plaintext is padded the same way and its length is encrypted,
//! so the storage learns neither blob lengths nor their count.

use offsite_crypto::{counter_nonce, seal_new_key, Aead, Key32, KeySet};
use rand::seq::SliceRandom;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::id::{storage_id, BlobId, PackId};
use crate::FormatError;

/// Trailer magic, last 4 bytes of every pack.
pub const PACK_MAGIC: &[u8; 4] = b"OSP2";
/// Length of the encrypted header length in the trailer (u32 plus the GCM tag).
pub const LENGTH_CT_LEN: usize = 4 + 16;
/// Bytes after the header ciphertext: ephemeral public key, encrypted header length, magic.
pub const TRAILER_LEN: usize = 32 + LENGTH_CT_LEN + 4;
/// Every pack is padded to at least this many bytes: the last, partly filled packs of a backup
/// (one changed small file: one bundle; its directories: a few trees) would otherwise show the
/// stored length of the little they hold.
pub const MIN_PACK_LEN: u64 = 64 * 1024;
/// Size of one header entry.
pub const ENTRY_LEN: usize = 1 + 32 + 4 * 4;
const SEAL_CONTEXT: &[u8] = b"offsite pack v1";
const HEADER_AD: &[u8] = b"offsite pack header v1";
const BLOB_AD: &[u8] = b"offsite blob v1";
const HEADER_NONCE: u64 = u64::MAX;
const LENGTH_NONCE: u64 = u64::MAX - 1;
const LENGTH_AD: &[u8] = b"offsite pack header length v2";
/// Most blobs one pack may list (bounds header decoding).
pub const MAX_PACK_BLOBS: usize = 1 << 20;

/// Data blobs hold file content; tree blobs hold directory listings; bundle blobs hold the
/// contents of several small files end to end. Trees are kept in packs of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// a chunk of file content; its id is the keyed hash of its plaintext
    Data,
    /// a serialized [`crate::Tree`]; its id is the keyed hash of its plaintext
    Tree,
    /// small files' contents end to end, referenced by [`crate::ContentItem::Slice`]; its id is
    /// random, chosen when the bundle is opened (so files can name it before it is full), and
    /// bound to the plaintext by the AEAD's associated data alone
    Bundle,
}

/// How a blob type is named in messages ("data blob 1a2b3c4d"): `data`, `tree`, `bundle`.
impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Data => "data",
            Self::Tree => "tree",
            Self::Bundle => "bundle",
        })
    }
}

impl BlobType {
    fn to_u8(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Tree => 1,
            Self::Bundle => 2,
        }
    }
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Data),
            1 => Some(Self::Tree),
            2 => Some(Self::Bundle),
            _ => None,
        }
    }

    /// Whether the blob's id is the keyed hash of its plaintext (checked on every read).
    pub fn content_addressed(self) -> bool {
        self != Self::Bundle
    }
}

/// Where one blob lives inside its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// data or tree
    #[serde(rename = "type")]
    pub ty: BlobType,
    /// keyed hash of the plaintext
    pub id: BlobId,
    /// byte offset of the ciphertext in the pack
    pub offset: u32,
    /// ciphertext length (payload + 16-byte tag)
    pub length: u32,
    /// plaintext length after decompression
    pub raw_length: u32,
    /// nonce counter used to encrypt it
    pub nonce: u32,
}

fn blob_ad(ty: BlobType, id: &BlobId) -> Vec<u8> {
    let mut ad = BLOB_AD.to_vec();
    ad.push(ty.to_u8());
    ad.extend_from_slice(&id.0);
    ad
}

/// Largest padding granularity: Padmé's step, capped at 64 KiB.
pub const MAX_PAD_STEP: u64 = 64 * 1024;

/// The padded length for `len`: Padmé (round up to a multiple of `2^(E-S)` with
/// `E = floor(log2 len)`, `S = floor(log2 E) + 1`), with the step capped at [`MAX_PAD_STEP`].
/// Small objects get Padmé's guarantee (O(log log len) bits leak, ≤ 12% overhead); packs of
/// megabytes pay at most 64 KiB (under 1% on an 8 MiB pack) instead of Padmé's 256 KiB.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let step = (1u64 << (e - s)).min(MAX_PAD_STEP);
    len.div_ceil(step) * step
}

/// Accumulates encrypted blobs for one pack, in memory.
pub struct PackBuilder {
    aead: Aead,
    eph: [u8; 32],
    blobs: Vec<(PackEntry, Vec<u8>)>,
    bytes: usize,
}

impl std::fmt::Debug for PackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackBuilder").field("blobs", &self.blobs.len()).field("bytes", &self.bytes).finish()
    }
}

/// A pack ready to store: bytes, name and what it holds (offsets final).
#[derive(Debug)]
pub struct FinishedPack {
    /// the stored bytes
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`
    pub id: PackId,
    /// ephemeral public key (also in the trailer); the index keeps it so a reader can
    /// decrypt a blob without fetching the trailer
    pub eph: [u8; 32],
    /// one entry per blob, in storage order
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// Start a pack whose key is sealed to the repository public key.
    pub fn new(repo_public: &[u8; 32]) -> Self {
        let (key, eph) = seal_new_key(repo_public, SEAL_CONTEXT);
        Self { aead: Aead::new(&key), eph, blobs: Vec::new(), bytes: 0 }
    }

    /// Encrypt one blob payload (see [`crate::compress_payload`]) into the pack.
    pub fn add(&mut self, ty: BlobType, id: BlobId, mut payload: Vec<u8>, raw_length: u32) {
        let nonce = u32::try_from(self.blobs.len()).expect("pack blob count fits u32");
        self.aead.seal_into(&counter_nonce(u64::from(nonce)), &blob_ad(ty, &id), &mut payload);
        let length = u32::try_from(payload.len()).expect("blob fits u32");
        self.bytes += payload.len();
        self.blobs.push((PackEntry { ty, id, offset: 0, length, raw_length, nonce }, payload));
    }

    /// Ciphertext bytes added so far.
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Number of blobs added so far.
    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Shuffle the blobs, lay them out, pad, append the encrypted header and trailer.
    pub fn finish(mut self) -> FinishedPack {
        let mut rng = rand::thread_rng();
        self.blobs.shuffle(&mut rng);
        let mut header = Vec::with_capacity(4 + self.blobs.len() * ENTRY_LEN);
        header.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        let mut offset = 0u32;
        let mut entries = Vec::with_capacity(self.blobs.len());
        for (e, ct) in &mut self.blobs {
            e.offset = offset;
            offset += u32::try_from(ct.len()).expect("pack fits u32");
            encode_entry(e, &mut header);
            entries.push(*e);
        }
        let padded = padme(header.len() as u64) as usize;
        header.resize(padded, 0);
        let header_ct = self.aead.seal(&counter_nonce(HEADER_NONCE), HEADER_AD, &header);
        let body = self.bytes as u64 + header_ct.len() as u64 + TRAILER_LEN as u64;
        let pad = (padme(body).max(MIN_PACK_LEN) - body) as usize;
        let mut bytes = Vec::with_capacity(body as usize + pad);
        for (_, ct) in self.blobs {
            bytes.extend_from_slice(&ct);
        }
        let start = bytes.len();
        bytes.resize(start + pad, 0);
        rng.fill_bytes(&mut bytes[start..]);
        bytes.extend_from_slice(&header_ct);
        bytes.extend(trailer(&self.aead, &self.eph, header_ct.len() as u32));
        let id = PackId(storage_id(&bytes));
        FinishedPack { bytes, id, eph: self.eph, entries }
    }
}

fn encode_entry(e: &PackEntry, out: &mut Vec<u8>) {
    out.push(e.ty.to_u8());
    out.extend_from_slice(&e.id.0);
    for v in [e.offset, e.length, e.raw_length, e.nonce] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The pack key, recomputed from the ephemeral public key (full keys only).
pub fn pack_key(keys: &KeySet, eph: &[u8; 32]) -> Result<Key32, FormatError> {
    Ok(keys.open_sealed_key(eph, SEAL_CONTEXT)?)
}

fn trailer(aead: &Aead, eph: &[u8; 32], header_ct_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRAILER_LEN);
    out.extend_from_slice(eph);
    out.extend(aead.seal(&counter_nonce(LENGTH_NONCE), LENGTH_AD, &header_ct_len.to_le_bytes()));
    out.extend_from_slice(PACK_MAGIC);
    out
}

/// The trailer of a pack whose key is `key`: `eph || length_ct || magic` (for tests and fuzz
/// harnesses that assemble packs by hand).
pub fn seal_trailer(key: &Key32, eph: &[u8; 32], header_ct_len: u32) -> Vec<u8> {
    trailer(&Aead::new(key), eph, header_ct_len)
}

/// Parse the last [`TRAILER_LEN`] bytes of a pack: (ephemeral public key, encrypted header
/// length). The length opens with the pack key ([`open_header_len`]).
pub fn parse_trailer(tail: &[u8]) -> Result<([u8; 32], [u8; LENGTH_CT_LEN]), FormatError> {
    if tail.len() != TRAILER_LEN || &tail[32 + LENGTH_CT_LEN..] != PACK_MAGIC {
        return Err(FormatError::Malformed("pack trailer missing or bad magic"));
    }
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&tail[..32]);
    let mut len = [0u8; LENGTH_CT_LEN];
    len.copy_from_slice(&tail[32..32 + LENGTH_CT_LEN]);
    Ok((eph, len))
}

/// Authenticate and decrypt the header length of a pack's trailer.
pub fn open_header_len(key: &Key32, length_ct: &[u8; LENGTH_CT_LEN]) -> Result<u32, FormatError> {
    let plain = Aead::new(key)
        .open(&counter_nonce(LENGTH_NONCE), LENGTH_AD, length_ct)
        .map_err(|_| FormatError::Auth)?;
    Ok(u32_at(&plain, 0))
}

/// Where a pack's header ciphertext lies, `(start, end)`, from its trailer (full keys only).
pub fn header_range(keys: &KeySet, bytes: &[u8]) -> Result<(usize, usize), FormatError> {
    if bytes.len() < TRAILER_LEN {
        return Err(FormatError::Malformed("pack shorter than its trailer"));
    }
    let (eph, len_ct) = parse_trailer(&bytes[bytes.len() - TRAILER_LEN..])?;
    let hlen = open_header_len(&pack_key(keys, &eph)?, &len_ct)? as usize;
    let end = bytes.len() - TRAILER_LEN;
    if hlen > end {
        return Err(FormatError::Malformed("pack header length exceeds the pack"));
    }
    Ok((end - hlen, end))
}

/// Decrypt and parse a pack header (the `header_ct` bytes).
pub fn decode_header(key: &Key32, header_ct: &[u8], pack_len: u64) -> Result<Vec<PackEntry>, FormatError> {
    let plain = Aead::new(key)
        .open(&counter_nonce(HEADER_NONCE), HEADER_AD, header_ct)
        .map_err(|_| FormatError::Auth)?;
    if plain.len() < 4 {
        return Err(FormatError::Malformed("pack header too short"));
    }
    let count = u32_at(&plain, 0) as usize;
    if count > MAX_PACK_BLOBS || 4 + count * ENTRY_LEN > plain.len() {
        return Err(FormatError::Malformed("pack header count exceeds its length"));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let b = &plain[4 + i * ENTRY_LEN..4 + (i + 1) * ENTRY_LEN];
        let ty = BlobType::from_u8(b[0]).ok_or(FormatError::Malformed("unknown blob type"))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[1..33]);
        let e = PackEntry {
            ty,
            id: BlobId(id),
            offset: u32_at(b, 33),
            length: u32_at(b, 37),
            raw_length: u32_at(b, 41),
            nonce: u32_at(b, 45),
        };
        if u64::from(e.offset) + u64::from(e.length) > pack_len || e.length < 17 {
            return Err(FormatError::Malformed("pack header entry outside the pack"));
        }
        out.push(e);
    }
    Ok(out)
}

/// Decode a whole pack held in memory: entries from its own header.
pub fn decode_pack(keys: &KeySet, bytes: &[u8]) -> Result<([u8; 32], Vec<PackEntry>), FormatError> {
    let (hstart, hend) = header_range(keys, bytes)?;
    let (eph, _) = parse_trailer(&bytes[bytes.len() - TRAILER_LEN..])?;
    let key = pack_key(keys, &eph)?;
    let entries = decode_header(&key, &bytes[hstart..hend], hstart as u64)?;
    Ok((eph, entries))
}

/// Decrypts blobs of one pack.
pub struct BlobOpener {
    aead: Aead,
}

impl BlobOpener {
    /// For the pack whose ephemeral public key is `eph` (full keys only).
    pub fn new(keys: &KeySet, eph: &[u8; 32]) -> Result<Self, FormatError> {
        Ok(Self { aead: Aead::new(&pack_key(keys, eph)?) })
    }

    /// Authenticate and decrypt one blob's ciphertext, decompress it (bounded by the recorded
    /// length) and check that its keyed hash equals its id (bundles excepted: their id is
    /// random, and the AEAD binds it). Returns the plaintext.
    pub fn open(&self, keys: &KeySet, e: &PackEntry, ciphertext: &[u8]) -> Result<Vec<u8>, FormatError> {
        let payload = self
            .aead
            .open(&counter_nonce(u64::from(e.nonce)), &blob_ad(e.ty, &e.id), ciphertext)
            .map_err(|_| FormatError::Auth)?;
        let plain = crate::compress::decompress_payload(&payload, e.raw_length as usize)?;
        if e.ty.content_addressed() && keys.blob_id(&plain) != e.id.0 {
            return Err(FormatError::IdMismatch);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::compress_payload;

    #[test]
    fn padme_values() {
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(9), 10);
        assert_eq!(padme(1000), 1024);
        for l in [100u64, 4097, 1 << 20, 16_000_001] {
            let p = padme(l);
            assert!(p >= l && (p - l) * 100 <= l * 12, "{l} -> {p}");
        }
        // Large objects: the step is capped at 64 KiB.
        assert_eq!(padme(8 * 1024 * 1024 + 1), 8 * 1024 * 1024 + 64 * 1024);
        assert_eq!(padme((1 << 20) + 1), (1 << 20) + 32 * 1024);
    }

    #[test]
    fn pack_round_trip_shuffle_and_tamper() {
        let keys = KeySet::generate();
        let mut b = PackBuilder::new(&keys.public_key());
        let mut want = Vec::new();
        for i in 0..20u32 {
            let data = format!("blob number {i} ").repeat(i as usize * 50 + 1).into_bytes();
            let id = BlobId(keys.blob_id(&data));
            b.add(BlobType::Data, id, compress_payload(&data, 3), data.len() as u32);
            want.push((id, data));
        }
        let p = b.finish();
        assert_eq!(p.bytes.len() as u64, padme(p.bytes.len() as u64));
        let (eph, entries) = decode_pack(&keys, &p.bytes).unwrap();
        assert_eq!(entries, p.entries);
        let opener = BlobOpener::new(&keys, &eph).unwrap();
        for (id, data) in &want {
            let e = entries.iter().find(|e| e.id == *id).unwrap();
            let ct = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&opener.open(&keys, e, ct).unwrap(), data);
            let mut bad = ct.to_vec();
            bad[3] ^= 1;
            assert!(opener.open(&keys, e, &bad).is_err());
            // A data blob can't be passed off as a tree.
            let mut as_tree = *e;
            as_tree.ty = BlobType::Tree;
            assert!(opener.open(&keys, &as_tree, ct).is_err());
        }
        assert!(matches!(decode_pack(&keys.to_backup_only(), &p.bytes), Err(FormatError::BackupOnly)));
        for cut in [0, 10, TRAILER_LEN, p.bytes.len() - 1] {
            assert!(decode_pack(&keys, &p.bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_bundle_is_bound_to_its_random_id_by_the_aead_alone() {
        let keys = KeySet::generate();
        let mut b = PackBuilder::new(&keys.public_key());
        let data = b"small file one\nsmall file two\n".to_vec();
        let id = BlobId([0x5a; 32]); // not the keyed hash of `data`
        b.add(BlobType::Bundle, id, compress_payload(&data, 3), data.len() as u32);
        let p = b.finish();
        let (eph, entries) = decode_pack(&keys, &p.bytes).unwrap();
        assert_eq!(entries[0].ty, BlobType::Bundle, "type byte 2 decodes as a bundle");
        let opener = BlobOpener::new(&keys, &eph).unwrap();
        let e = entries[0];
        let ct = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert_eq!(opener.open(&keys, &e, ct).unwrap(), data);
        // The same bytes named as a data blob, or under another id, do not authenticate.
        for forged in [PackEntry { ty: BlobType::Data, ..e }, PackEntry { id: BlobId([0x5b; 32]), ..e }] {
            assert!(matches!(opener.open(&keys, &forged, ct), Err(FormatError::Auth)));
        }
        // A data blob whose id is not its keyed hash is refused even though it authenticates.
        let mut b = PackBuilder::new(&keys.public_key());
        b.add(BlobType::Data, id, compress_payload(&data, 3), data.len() as u32);
        let p = b.finish();
        let (eph, entries) = decode_pack(&keys, &p.bytes).unwrap();
        let e = entries[0];
        let ct = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
        let opener = BlobOpener::new(&keys, &eph).unwrap();
        assert!(matches!(opener.open(&keys, &e, ct), Err(FormatError::IdMismatch)));
    }
}
