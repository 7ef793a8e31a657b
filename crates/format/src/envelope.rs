//! The envelope of every encrypted record (config, index, snapshot, forget record, lock):
//!
//! ```text
//! "OFS" || version u8 (=2) || type u8 || keying u8 || [ephemeral X25519 public, 32 bytes, if keying = 1]
//!       || nonce (12) || AES-256-GCM(body) || tag (16) || [MAC (32), if keying = 1]
//! body = u32le(n) || zstd(JSON) (n bytes) || zero bytes up to padme(4 + n)
//! AD = "offsite record v2" || type u8 || keying u8 || [ephemeral public]
//! MAC = keyed BLAKE3 under the record MAC key of every byte before it
//! ```
//! keying 0: the repository index key (both key kinds hold it); nonce random.
//! keying 1: a fresh key sealed to the repository X25519 public key (only a full key opens it),
//! and a MAC every key holder can check, so a backup-only client tells a record a key holder
//! wrote from one the storage made up (docs/FORMAT.md §5).

use offsite_crypto::{counter_nonce, random_bytes, seal_new_key, Aead, Key32, KeySet};
use serde::{de::DeserializeOwned, Serialize};
use subtle::ConstantTimeEq;

use crate::compress::{compress_record, decompress_record};
use crate::FormatError;

/// Current format version, in the envelope header and every record.
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 3] = b"OFS";
const AD_PREFIX: &[u8] = b"offsite record v2";
/// Length of the MAC that ends a sealed record.
const MAC_LEN: usize = 32;
const SEAL_CONTEXT: &[u8] = b"offsite record seal v1";

/// What a record holds; bound into the AEAD associated data so one can't pass for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// the repository `config`
    Config = 1,
    /// an `index/` object
    Index = 2,
    /// a snapshot in `snapshots/`
    Snapshot = 3,
    /// a forget record in `snapshots/`
    ForgetRecord = 4,
    /// a lock in `locks/`
    Lock = 5,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Config,
            2 => Self::Index,
            3 => Self::Snapshot,
            4 => Self::ForgetRecord,
            5 => Self::Lock,
            _ => return None,
        })
    }
    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Index => "index",
            Self::Snapshot => "snapshot",
            Self::ForgetRecord => "forget record",
            Self::Lock => "lock",
        }
    }
    /// Snapshots are sealed to the public key; the rest use the index key.
    fn sealed(self) -> bool {
        matches!(self, Self::Snapshot)
    }
}

/// Read the version and type of an envelope without any key (for "unsupported version" errors).
pub fn peek(bytes: &[u8]) -> Result<(u32, Option<RecordType>), FormatError> {
    if bytes.len() < 6 || &bytes[..3] != MAGIC {
        return Err(FormatError::Malformed("not an offsite record (bad magic)"));
    }
    Ok((u32::from(bytes[3]), RecordType::from_u8(bytes[4])))
}

fn ad(ty: RecordType, keying: u8, eph: Option<&[u8; 32]>) -> Vec<u8> {
    let mut ad = AD_PREFIX.to_vec();
    ad.push(ty as u8);
    ad.push(keying);
    if let Some(e) = eph {
        ad.extend_from_slice(e);
    }
    ad
}

/// Serialize, compress and encrypt a record.
pub fn seal_record<T: Serialize>(ty: RecordType, keys: &KeySet, value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("records always serialize to JSON");
    seal_bytes(ty, keys, &padded_body(&compress_record(&json)))
}

/// Every record body is padded to at least this many bytes: an index object naming the one or
/// two packs of a small backup, or a snapshot, would otherwise show how much it lists.
pub const MIN_RECORD_BODY: u64 = 4096;

/// `u32le(n) || frame || zeros` up to `padme(max(4 + n, MIN_RECORD_BODY))`: a record's size
/// shows no exact length of what it holds (the number of blobs an index lists, of snapshots a
/// snapshot saw).
fn padded_body(frame: &[u8]) -> Vec<u8> {
    let n = u32::try_from(frame.len()).expect("a record is far below 4 GiB");
    let len = crate::pack::padme((4 + frame.len() as u64).max(MIN_RECORD_BODY)) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(frame);
    out.resize(len, 0);
    out
}

/// The zstd frame inside a padded body.
fn unpad_body(body: &[u8]) -> Result<&[u8], FormatError> {
    let n = body.get(..4).ok_or(FormatError::Malformed("record body too short"))?;
    let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
    body.get(4..4usize.saturating_add(n)).ok_or(FormatError::Malformed("record body shorter than it says"))
}

fn seal_bytes(ty: RecordType, keys: &KeySet, body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT_VERSION as u8);
    out.push(ty as u8);
    let (key, eph) = if ty.sealed() {
        let (k, e) = seal_new_key(&keys.public_key(), SEAL_CONTEXT);
        (k, Some(e))
    } else {
        (Key32::from_bytes(*keys.index_key().as_bytes()), None)
    };
    let keying = u8::from(eph.is_some());
    out.push(keying);
    if let Some(e) = &eph {
        out.extend_from_slice(e);
    }
    let nonce = if eph.is_some() { counter_nonce(0) } else { random_bytes::<12>() };
    out.extend_from_slice(&nonce);
    out.extend(Aead::new(&key).seal(&nonce, &ad(ty, keying, eph.as_ref()), body));
    if eph.is_some() {
        let mac = keys.record_mac(&out);
        out.extend_from_slice(&mac);
    }
    out
}

/// Check the MAC of a sealed record of type `expected` without opening it, with any key kind:
/// a backup-only client's proof that a key holder wrote it, not the storage.
pub fn verify_sealed_record(expected: RecordType, keys: &KeySet, bytes: &[u8]) -> Result<(), FormatError> {
    let ty = header_type(expected, bytes)?;
    if !ty.sealed() || bytes[5] != 1 {
        return Err(FormatError::Malformed("record keying does not match its type"));
    }
    if bytes.len() < 6 + 32 + 12 + 16 + MAC_LEN {
        return Err(FormatError::Malformed("truncated record"));
    }
    let (signed, mac) = bytes.split_at(bytes.len() - MAC_LEN);
    if bool::from(keys.record_mac(signed).ct_eq(mac)) {
        Ok(())
    } else {
        Err(FormatError::Auth)
    }
}

/// Authenticate, decrypt, decompress and parse a record of the expected type.
pub fn open_record<T: DeserializeOwned>(
    expected: RecordType,
    keys: &KeySet,
    bytes: &[u8],
) -> Result<T, FormatError> {
    let json = open_bytes(expected, keys, bytes)?;
    serde_json::from_slice(&json).map_err(|e| FormatError::Json(e.to_string()))
}

/// The record's type, once its version is this format's and its type is `expected`.
fn header_type(expected: RecordType, bytes: &[u8]) -> Result<RecordType, FormatError> {
    let (version, ty) = peek(bytes)?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    let ty = ty.ok_or(FormatError::Malformed("unknown record type"))?;
    if ty != expected {
        return Err(FormatError::WrongType { found: ty.name(), expected: expected.name() });
    }
    Ok(ty)
}

fn open_bytes(expected: RecordType, keys: &KeySet, bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    let ty = header_type(expected, bytes)?;
    let keying = bytes[5];
    if ty.sealed() {
        verify_sealed_record(expected, keys, bytes)?;
    }
    let bytes = if ty.sealed() { &bytes[..bytes.len() - MAC_LEN] } else { bytes };
    let mut rest = &bytes[6..];
    let (key, eph) = match keying {
        0 if !ty.sealed() => (Key32::from_bytes(*keys.index_key().as_bytes()), None),
        1 if ty.sealed() => {
            if rest.len() < 32 {
                return Err(FormatError::Malformed("truncated record"));
            }
            let mut e = [0u8; 32];
            e.copy_from_slice(&rest[..32]);
            rest = &rest[32..];
            (keys.open_sealed_key(&e, SEAL_CONTEXT)?, Some(e))
        }
        _ => return Err(FormatError::Malformed("record keying does not match its type")),
    };
    if rest.len() < 12 + 16 {
        return Err(FormatError::Malformed("truncated record"));
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&rest[..12]);
    let body = Aead::new(&key)
        .open(&nonce, &ad(ty, keying, eph.as_ref()), &rest[12..])
        .map_err(|_| FormatError::Auth)?;
    decompress_record(unpad_body(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_type_binding() {
        let keys = KeySet::generate();
        let v = serde_json::json!({"a": 1});
        let b = seal_record(RecordType::Index, &keys, &v);
        let back: serde_json::Value = open_record(RecordType::Index, &keys, &b).unwrap();
        assert_eq!(back, v);
        assert!(matches!(
            open_record::<serde_json::Value>(RecordType::Snapshot, &keys, &b),
            Err(FormatError::WrongType { .. })
        ));
        // Rewriting the type byte is caught by the AEAD.
        let mut forged = b.clone();
        forged[4] = RecordType::Config as u8;
        assert!(matches!(
            open_record::<serde_json::Value>(RecordType::Config, &keys, &forged),
            Err(FormatError::Auth)
        ));
    }

    #[test]
    fn sealed_needs_full_key_and_every_flip_is_caught() {
        let keys = KeySet::generate();
        let b = seal_record(RecordType::Snapshot, &keys, &serde_json::json!({"x": "y"}));
        let bo = keys.to_backup_only();
        assert!(matches!(
            open_record::<serde_json::Value>(RecordType::Snapshot, &bo, &b),
            Err(FormatError::BackupOnly)
        ));
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(
                open_record::<serde_json::Value>(RecordType::Snapshot, &keys, &c).is_err(),
                "flip at {i}"
            );
        }
        let other = KeySet::generate();
        assert!(open_record::<serde_json::Value>(RecordType::Snapshot, &other, &b).is_err());
    }

    #[test]
    fn versions_and_garbage() {
        let keys = KeySet::generate();
        let mut b = seal_record(RecordType::Config, &keys, &1u32);
        b[3] = 9;
        assert!(matches!(
            open_record::<u32>(RecordType::Config, &keys, &b),
            Err(FormatError::UnsupportedVersion { found: 9, .. })
        ));
        for n in 0..40 {
            assert!(open_record::<u32>(RecordType::Config, &keys, &b[..n.min(b.len())]).is_err());
        }
    }
}
