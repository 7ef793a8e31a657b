//! Key files (`keys/<id>`): the repository secrets wrapped by a passphrase with Argon2id.
//!
//! Plain JSON (the storage sees the kind, creation time, KDF parameters and the repository id,
//! nothing else); `data` is `nonce || AES-256-GCM(wrapping key, secrets) || tag` with
//! AD = "offsite key v2" || repository id (32 bytes) || kind u8 (0 full, 1 backup-only).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use offsite_crypto::{derive_wrapping_key, unwrap_secret, wrap_secret, KdfParams, KeyKind, KeySet};
use serde::{Deserialize, Serialize};

use crate::id::RepoId;
use crate::FormatError;

/// The key file version this code writes and reads (the format version, docs/FORMAT.md §13).
pub const KEYFILE_VERSION: u32 = crate::envelope::FORMAT_VERSION;

/// Most bytes a key file may have (bounds parsing of hostile input).
pub const MAX_KEYFILE_LEN: usize = 64 * 1024;

/// The stored JSON of a key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// format version (2)
    pub version: u32,
    /// "full" or "backup-only"
    pub kind: String,
    /// RFC 3339 creation time
    pub created: String,
    /// repository this key opens
    pub repository: RepoId,
    /// Argon2id parameters
    pub kdf: KdfRecord,
    /// base64 of the wrapped secrets
    pub data: String,
}

/// Argon2id parameters as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfRecord {
    /// always "argon2id"
    pub algorithm: String,
    /// memory in KiB
    pub m_cost_kib: u32,
    /// iterations
    pub t_cost: u32,
    /// lanes
    pub p_cost: u32,
    /// 16-byte salt, hex
    pub salt: String,
}

impl KdfRecord {
    fn to_params(&self) -> Result<KdfParams, FormatError> {
        if self.algorithm != "argon2id" {
            return Err(FormatError::Malformed("unknown key derivation algorithm"));
        }
        let mut salt = [0u8; 16];
        hex::decode_to_slice(self.salt.as_bytes(), &mut salt)
            .map_err(|_| FormatError::Malformed("key file salt is not 16 hex bytes"))?;
        let p = KdfParams { m_cost_kib: self.m_cost_kib, t_cost: self.t_cost, p_cost: self.p_cost, salt };
        p.validate().map_err(|_| FormatError::Malformed("key file KDF parameters out of bounds"))?;
        Ok(p)
    }
}

fn kind_name(k: KeyKind) -> &'static str {
    match k {
        KeyKind::Full => "full",
        KeyKind::BackupOnly => "backup-only",
    }
}

fn ad(repo: &RepoId, kind: KeyKind) -> Vec<u8> {
    let mut ad = b"offsite key v2".to_vec();
    ad.extend_from_slice(&repo.0);
    ad.push(match kind {
        KeyKind::Full => 0,
        KeyKind::BackupOnly => 1,
    });
    ad
}

/// Wrap `keys` under `passphrase`; returns the key file's stored bytes.
pub fn create_keyfile(
    keys: &KeySet,
    repo: RepoId,
    passphrase: &[u8],
    params: &KdfParams,
    created: &str,
) -> Result<Vec<u8>, FormatError> {
    let wk = derive_wrapping_key(passphrase, params)?;
    let wrapped = wrap_secret(&wk, &ad(&repo, keys.kind()), &keys.to_bytes());
    let kf = KeyFile {
        version: KEYFILE_VERSION,
        kind: kind_name(keys.kind()).to_string(),
        created: created.to_string(),
        repository: repo,
        kdf: KdfRecord {
            algorithm: "argon2id".into(),
            m_cost_kib: params.m_cost_kib,
            t_cost: params.t_cost,
            p_cost: params.p_cost,
            salt: hex::encode(params.salt),
        },
        data: STANDARD.encode(wrapped),
    };
    Ok(serde_json::to_vec_pretty(&kf).expect("key file serializes"))
}

/// Parse a key file without unwrapping it (for `key list`).
pub fn parse_keyfile(bytes: &[u8]) -> Result<KeyFile, FormatError> {
    if bytes.len() > MAX_KEYFILE_LEN {
        return Err(FormatError::Malformed("key file too large"));
    }
    let kf: KeyFile = serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
    if kf.version != KEYFILE_VERSION {
        return Err(FormatError::UnsupportedVersion { found: kf.version, supported: KEYFILE_VERSION });
    }
    Ok(kf)
}

/// Unwrap a key file with a passphrase. `WrongPassphrase` when it does not open.
pub fn unlock_keyfile(bytes: &[u8], passphrase: &[u8]) -> Result<(KeyFile, KeySet), FormatError> {
    let kf = parse_keyfile(bytes)?;
    let kind = match kf.kind.as_str() {
        "full" => KeyKind::Full,
        "backup-only" => KeyKind::BackupOnly,
        _ => return Err(FormatError::Malformed("unknown key kind")),
    };
    let params = kf.kdf.to_params()?;
    let wrapped =
        STANDARD.decode(kf.data.as_bytes()).map_err(|_| FormatError::Malformed("key data is not base64"))?;
    let wk = derive_wrapping_key(passphrase, &params)?;
    let secret =
        unwrap_secret(&wk, &ad(&kf.repository, kind), &wrapped).map_err(|_| FormatError::WrongPassphrase)?;
    let keys = KeySet::from_bytes(&secret)?;
    if keys.kind() != kind {
        return Err(FormatError::Malformed("key kind does not match its secrets"));
    }
    Ok((kf, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_unlock_wrong_passphrase_and_tamper() {
        let keys = KeySet::generate();
        let repo = RepoId([3; 32]);
        let p = KdfParams::for_tests();
        let b = create_keyfile(&keys, repo, b"pw", &p, "2026-11-22T00:00:00Z").unwrap();
        let (kf, k2) = unlock_keyfile(&b, b"pw").unwrap();
        assert_eq!(kf.repository, repo);
        assert_eq!(k2.blob_id(b"x"), keys.blob_id(b"x"));
        assert!(matches!(unlock_keyfile(&b, b"nope"), Err(FormatError::WrongPassphrase)));
        // Moving the key file to another repository id breaks it.
        let mut kf2 = parse_keyfile(&b).unwrap();
        kf2.repository = RepoId([4; 32]);
        let moved = serde_json::to_vec(&kf2).unwrap();
        assert!(unlock_keyfile(&moved, b"pw").is_err());
        // Claiming a full key is backup-only (or back) breaks it.
        let mut kf3 = parse_keyfile(&b).unwrap();
        kf3.kind = "backup-only".into();
        assert!(unlock_keyfile(&serde_json::to_vec(&kf3).unwrap(), b"pw").is_err());
        assert!(unlock_keyfile(b"{}", b"pw").is_err());
        assert!(unlock_keyfile(&[0xff; 10], b"pw").is_err());
    }

    #[test]
    fn backup_only_round_trip() {
        let keys = KeySet::generate().to_backup_only();
        let b = create_keyfile(&keys, RepoId([1; 32]), b"pw", &KdfParams::for_tests(), "t").unwrap();
        let (kf, k2) = unlock_keyfile(&b, b"pw").unwrap();
        assert_eq!(kf.kind, "backup-only");
        assert_eq!(k2.kind(), KeyKind::BackupOnly);
    }
}
