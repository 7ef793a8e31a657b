//! [`KeySet`]: every key that a repository key file unlocks, derived from
//! one master secret.
//!
//! Subkeys are `blake3::derive_key(CONTEXT, master)` with one context string
//! per purpose (the `*_CONTEXT` constants below), so no key serves two
//! purposes. A backup-only key set holds the id, chunker, index and record
//! MAC keys and the X25519 public key: enough to deduplicate and write new
//! packs and snapshots, but not to read any of them.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::seal::{derive_sealed_key, is_low_order};
use crate::{CryptoError, Key32};

/// Context for the blob id key (keyed BLAKE3 over plaintext).
pub const ID_KEY_CONTEXT: &str = "offsite 2026-11 blob id key";
/// Context for the content-defined chunker key.
pub const CHUNKER_KEY_CONTEXT: &str = "offsite 2026-11 chunker key";
/// Context for the index key.
pub const INDEX_KEY_CONTEXT: &str = "offsite 2026-11 index key";
/// Context for the X25519 secret scalar.
pub const X25519_SECRET_CONTEXT: &str = "offsite 2026-11 x25519 secret";
/// Context for the record MAC key: authenticates sealed records (snapshots) to every key
/// holder, backup-only ones included, who cannot open them.
pub const RECORD_MAC_KEY_CONTEXT: &str = "offsite 2026-12 record mac key";
/// Context of the key set commitment the config carries (see [`KeySet::commitment`]).
pub const COMMITMENT_CONTEXT: &str = "offsite 2026-12 key set commitment";

/// Magic that starts a serialized key set.
const MAGIC: &[u8; 4] = b"OSK2";
const TAG_FULL: u8 = 0x00;
const TAG_BACKUP_ONLY: u8 = 0x01;
const FULL_LEN: usize = 5 + 32;
const BACKUP_ONLY_LEN: usize = 5 + 5 * 32;

/// What a key set can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Holds the master secret: can read and write everything.
    Full,
    /// Can deduplicate and add backups, but cannot decrypt packs or snapshots.
    BackupOnly,
}

/// The keys a key file unlocks. See the module documentation.
///
/// Every secret is wiped from memory on drop; `Debug` shows only the kind.
#[derive(Clone)]
pub struct KeySet {
    master: Option<Key32>,
    x25519_secret: Option<StaticSecret>,
    id_key: Key32,
    chunker_key: Key32,
    index_key: Key32,
    record_mac_key: Key32,
    public: PublicKey,
}

fn derive(context: &str, master: &Key32) -> Key32 {
    Key32::from_bytes(blake3::derive_key(context, master.as_bytes()))
}

impl KeySet {
    /// A full key set with a new random master secret (for `offsite init`).
    pub fn generate() -> KeySet {
        KeySet::from_master(Key32::random())
    }

    /// The full key set derived from `master`. Deterministic: the same master
    /// always gives the same subkeys.
    pub fn from_master(master: Key32) -> KeySet {
        let scalar = Zeroizing::new(blake3::derive_key(X25519_SECRET_CONTEXT, master.as_bytes()));
        let secret = StaticSecret::from(*scalar);
        let public = PublicKey::from(&secret);
        KeySet {
            id_key: derive(ID_KEY_CONTEXT, &master),
            chunker_key: derive(CHUNKER_KEY_CONTEXT, &master),
            index_key: derive(INDEX_KEY_CONTEXT, &master),
            record_mac_key: derive(RECORD_MAC_KEY_CONTEXT, &master),
            x25519_secret: Some(secret),
            public,
            master: Some(master),
        }
    }

    /// Whether this set holds the master secret ([`KeyKind::Full`]) or not.
    pub fn kind(&self) -> KeyKind {
        if self.master.is_some() {
            KeyKind::Full
        } else {
            KeyKind::BackupOnly
        }
    }

    /// A copy without the master secret and the X25519 secret, for a
    /// backup-only key file. Calling it on a backup-only set returns a copy.
    pub fn to_backup_only(&self) -> KeySet {
        KeySet {
            master: None,
            x25519_secret: None,
            id_key: self.id_key.clone(),
            chunker_key: self.chunker_key.clone(),
            index_key: self.index_key.clone(),
            record_mac_key: self.record_mac_key.clone(),
            public: self.public,
        }
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext under the id key.
    /// Same data in repositories with different masters gets unrelated ids.
    pub fn blob_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.id_key.as_bytes(), data).as_bytes()
    }

    /// A streaming hasher that finishes to the same value as
    /// [`KeySet::blob_id`] over everything fed to it.
    pub fn id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.id_key.as_bytes())
    }

    /// The key of the content-defined chunker.
    pub fn chunker_key(&self) -> &Key32 {
        &self.chunker_key
    }

    /// The key for index files.
    pub fn index_key(&self) -> &Key32 {
        &self.index_key
    }

    /// The MAC of a sealed record's bytes under the record MAC key (keyed BLAKE3): lets every
    /// key holder tell a record a key holder wrote from one the storage made up.
    pub fn record_mac(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.record_mac_key.as_bytes(), bytes).as_bytes()
    }

    /// A commitment to every secret a backup-only key holds and to the public key:
    /// `blake3::derive_key(COMMITMENT_CONTEXT, id_key || chunker_key || index_key ||
    /// record_mac_key || public_key)`. The config stores it, so a key file that opens with the
    /// right passphrase but carries other keys (a planted key file sealing future backups to an
    /// attacker's public key) is refused. Equal for a full set and its backup-only copy.
    pub fn commitment(&self) -> [u8; 32] {
        let mut material = Zeroizing::new(Vec::with_capacity(5 * 32));
        material.extend_from_slice(self.id_key.as_bytes());
        material.extend_from_slice(self.chunker_key.as_bytes());
        material.extend_from_slice(self.index_key.as_bytes());
        material.extend_from_slice(self.record_mac_key.as_bytes());
        material.extend_from_slice(self.public.as_bytes());
        blake3::derive_key(COMMITMENT_CONTEXT, &material)
    }

    /// The repository's X25519 public key, to which pack and snapshot keys
    /// are sealed. Never a low-order point.
    pub fn public_key(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Seals a fresh object key to this repository's public key; works for
    /// both kinds. Same as [`crate::seal::seal_new_key`] with
    /// [`KeySet::public_key`], which cannot panic here because a key set's
    /// public key is never low-order.
    pub fn seal_new_key(&self, context: &[u8]) -> (Key32, [u8; 32]) {
        crate::seal::seal_new_key(self.public.as_bytes(), context)
    }

    /// Recomputes the key that [`crate::seal::seal_new_key`] returned
    /// together with `ephemeral_public` for this repository and `context`.
    ///
    /// Errors: [`CryptoError::BackupOnly`] for a backup-only set;
    /// [`CryptoError::Malformed`] if `ephemeral_public` is a low-order point
    /// (a forged object). A wrong `context` or a tampered ephemeral key gives
    /// a different key, so the following AEAD open fails.
    pub fn open_sealed_key(&self, ephemeral_public: &[u8; 32], context: &[u8]) -> Result<Key32, CryptoError> {
        let secret = self.x25519_secret.as_ref().ok_or(CryptoError::BackupOnly)?;
        let shared = secret.diffie_hellman(&PublicKey::from(*ephemeral_public));
        if !shared.was_contributory() {
            return Err(CryptoError::Malformed("ephemeral public key is a low-order point"));
        }
        Ok(derive_sealed_key(shared.as_bytes(), ephemeral_public, self.public.as_bytes(), context))
    }

    /// The secret payload of a key file (to be wrapped, never stored in the
    /// clear):
    /// - full: `b"OSK2" || 0x00 || master(32)`
    /// - backup-only: `b"OSK2" || 0x01 || id_key(32) || chunker_key(32) || index_key(32) ||
    ///   record_mac_key(32) || x25519_public(32)`
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(BACKUP_ONLY_LEN));
        out.extend_from_slice(MAGIC);
        match &self.master {
            Some(master) => {
                out.push(TAG_FULL);
                out.extend_from_slice(master.as_bytes());
            }
            None => {
                out.push(TAG_BACKUP_ONLY);
                out.extend_from_slice(self.id_key.as_bytes());
                out.extend_from_slice(self.chunker_key.as_bytes());
                out.extend_from_slice(self.index_key.as_bytes());
                out.extend_from_slice(self.record_mac_key.as_bytes());
                out.extend_from_slice(self.public.as_bytes());
            }
        }
        out
    }

    /// Parses what [`KeySet::to_bytes`] wrote. Wrong magic, unknown kind,
    /// wrong length or a low-order public key give
    /// [`CryptoError::Malformed`]; never panics.
    pub fn from_bytes(b: &[u8]) -> Result<KeySet, CryptoError> {
        if b.len() < 5 || &b[..4] != MAGIC {
            return Err(CryptoError::Malformed("not an offsite key payload"));
        }
        match b[4] {
            TAG_FULL => {
                if b.len() != FULL_LEN {
                    return Err(CryptoError::Malformed("full key payload has wrong length"));
                }
                Ok(KeySet::from_master(Key32::from_slice(&b[5..37])?))
            }
            TAG_BACKUP_ONLY => {
                if b.len() != BACKUP_ONLY_LEN {
                    return Err(CryptoError::Malformed("backup-only key payload has wrong length"));
                }
                let mut public = [0u8; 32];
                public.copy_from_slice(&b[133..165]);
                if is_low_order(&public) {
                    return Err(CryptoError::Malformed("repository public key is a low-order point"));
                }
                Ok(KeySet {
                    master: None,
                    x25519_secret: None,
                    id_key: Key32::from_slice(&b[5..37])?,
                    chunker_key: Key32::from_slice(&b[37..69])?,
                    index_key: Key32::from_slice(&b[69..101])?,
                    record_mac_key: Key32::from_slice(&b[101..133])?,
                    public: PublicKey::from(public),
                })
            }
            _ => Err(CryptoError::Malformed("unknown key kind")),
        }
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kind", &self.kind()).field("keys", &"<redacted>").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::{counter_nonce, Aead};

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    /// Official BLAKE3 test vectors (BLAKE3-team/BLAKE3, test_vectors/test_vectors.json):
    /// input is bytes 0,1,..,250 repeating; first 32 output bytes.
    #[test]
    fn blake3_official_vectors() {
        let key = *b"whats the Elvish word for friend";
        let ctx = "BLAKE3 2019-12-27 16:29:52 test vectors context";
        let input = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        let cases = [
            (
                0,
                "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26",
                "2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d",
            ),
            (
                1,
                "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b",
                "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c",
            ),
            (
                1024,
                "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4",
                "7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a689684302706",
            ),
            (
                4097,
                "00df940cd36bb9fa7cbbc3556744e0dbc8191401afe70520ba292ee3ca80abbc",
                "aca51029626b55fda7117b42a7c211f8c6e9ba4fe5b7a8ca922f34299500ead8",
            ),
        ];
        for (len, keyed, derived) in cases {
            let data = input(len);
            assert_eq!(*blake3::keyed_hash(&key, &data).as_bytes(), h32(keyed), "len {len}");
            assert_eq!(blake3::derive_key(ctx, &data), h32(derived), "len {len}");
            // Our blob ids are exactly keyed BLAKE3 under the id key.
            let ks = KeySet::from_master(Key32::from_bytes([0; 32]));
            let mut ks_id = ks.clone();
            ks_id.id_key = Key32::from_bytes(key);
            assert_eq!(ks_id.blob_id(&data), h32(keyed));
        }
    }

    #[test]
    fn subkeys_use_the_documented_contexts() {
        let master = [0x42u8; 32];
        let ks = KeySet::from_master(Key32::from_bytes(master));
        let d = |c: &str| blake3::derive_key(c, &master);
        assert_eq!(ks.chunker_key().as_bytes(), &d("offsite 2026-11 chunker key"));
        assert_eq!(ks.index_key().as_bytes(), &d("offsite 2026-11 index key"));
        assert_eq!(ks.blob_id(b"x"), *blake3::keyed_hash(&d("offsite 2026-11 blob id key"), b"x").as_bytes());
        let secret = StaticSecret::from(d("offsite 2026-11 x25519 secret"));
        assert_eq!(ks.public_key(), PublicKey::from(&secret).to_bytes());
        // All four subkeys differ from each other and from the master.
        let all = [
            master,
            d(ID_KEY_CONTEXT),
            d(CHUNKER_KEY_CONTEXT),
            d(INDEX_KEY_CONTEXT),
            d(X25519_SECRET_CONTEXT),
            d(RECORD_MAC_KEY_CONTEXT),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        assert_eq!(ks.kind(), KeyKind::Full);
    }

    // RFC 7748 section 6.1 (Alice and Bob), through the x25519-dalek types we use.
    #[test]
    fn x25519_rfc7748_section_6_1() {
        let alice =
            StaticSecret::from(h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        let bob = StaticSecret::from(h32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
        let alice_pub = PublicKey::from(&alice);
        let bob_pub = PublicKey::from(&bob);
        assert_eq!(
            alice_pub.to_bytes(),
            h32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob_pub.to_bytes(),
            h32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let k = h32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*alice.diffie_hellman(&bob_pub).as_bytes(), k);
        assert_eq!(*bob.diffie_hellman(&alice_pub).as_bytes(), k);
    }

    #[test]
    fn seal_open_round_trip_and_backup_only_refused() {
        let full = KeySet::generate();
        let backup = full.to_backup_only();
        assert_eq!(backup.kind(), KeyKind::BackupOnly);
        assert_eq!(backup.public_key(), full.public_key());

        // A backup-only writer seals; the full key recomputes the same key.
        let (key, eph) = backup.seal_new_key(b"pack 01");
        let opened = full.open_sealed_key(&eph, b"pack 01").expect("full key opens");
        assert_eq!(opened, key);
        let (key2, eph2) = crate::seal::seal_new_key(&full.public_key(), b"snapshot");
        assert_eq!(full.open_sealed_key(&eph2, b"snapshot").expect("opens"), key2);

        // End to end through the AEAD.
        let ct = Aead::new(&key).seal(&counter_nonce(0), b"ad", b"secret data");
        let pt = Aead::new(&opened).open(&counter_nonce(0), b"ad", &ct).expect("authentic");
        assert_eq!(pt, b"secret data");

        // Wrong context or another repository give another key.
        assert_ne!(full.open_sealed_key(&eph, b"pack 02").expect("opens"), key);
        assert_ne!(KeySet::generate().open_sealed_key(&eph, b"pack 01").expect("opens"), key);

        assert!(matches!(backup.open_sealed_key(&eph, b"pack 01"), Err(CryptoError::BackupOnly)));
        assert!(matches!(full.open_sealed_key(&[0; 32], b"pack 01"), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn backup_only_keeps_dedup_keys() {
        let full = KeySet::generate();
        let backup = full.to_backup_only();
        assert_eq!(backup.blob_id(b"data"), full.blob_id(b"data"));
        assert_eq!(backup.chunker_key(), full.chunker_key());
        assert_eq!(backup.index_key(), full.index_key());
        assert_eq!(backup.to_backup_only().to_bytes(), backup.to_bytes());
    }

    #[test]
    fn id_hasher_matches_blob_id() {
        let ks = KeySet::generate();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut hasher = ks.id_hasher();
        for part in data.chunks(4093) {
            hasher.update(part);
        }
        assert_eq!(*hasher.finalize().as_bytes(), ks.blob_id(&data));
    }

    #[test]
    fn different_masters_give_different_ids() {
        let a = KeySet::from_master(Key32::from_bytes([1; 32]));
        let b = KeySet::from_master(Key32::from_bytes([2; 32]));
        assert_ne!(a.blob_id(b"same data"), b.blob_id(b"same data"));
        let a2 = KeySet::from_master(Key32::from_bytes([1; 32]));
        assert_eq!(a.blob_id(b"same data"), a2.blob_id(b"same data"));
    }

    #[test]
    fn serialization_round_trips_with_exact_layout() {
        let master = [0x5au8; 32];
        let full = KeySet::from_master(Key32::from_bytes(master));
        let bytes = full.to_bytes();
        assert_eq!(&bytes[..5], b"OSK2\x00");
        assert_eq!(&bytes[5..], &master);
        let back = KeySet::from_bytes(&bytes).expect("valid");
        assert_eq!(back.kind(), KeyKind::Full);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.public_key(), full.public_key());

        let backup = full.to_backup_only();
        let bytes = backup.to_bytes();
        assert_eq!(bytes.len(), 165);
        assert_eq!(&bytes[..5], b"OSK2\x01");
        assert_eq!(&bytes[5..37], &blake3::derive_key(ID_KEY_CONTEXT, &master));
        assert_eq!(&bytes[37..69], full.chunker_key().as_bytes());
        assert_eq!(&bytes[69..101], full.index_key().as_bytes());
        assert_eq!(&bytes[101..133], &blake3::derive_key(RECORD_MAC_KEY_CONTEXT, &master));
        assert_eq!(&bytes[133..], &full.public_key());
        let back = KeySet::from_bytes(&bytes).expect("valid");
        assert_eq!(back.kind(), KeyKind::BackupOnly);
        assert_eq!(back.commitment(), full.commitment());
        assert_eq!(back.record_mac(b"r"), full.record_mac(b"r"));
        assert_ne!(KeySet::generate().commitment(), full.commitment());
        assert_eq!(back.blob_id(b"z"), full.blob_id(b"z"));
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        let full = KeySet::generate().to_bytes();
        let backup = KeySet::generate().to_backup_only().to_bytes();
        for good in [&full[..], &backup[..]] {
            for len in 0..good.len() {
                assert!(KeySet::from_bytes(&good[..len]).is_err(), "truncated to {len}");
            }
            let mut long = good.to_vec();
            long.push(0);
            assert!(KeySet::from_bytes(&long).is_err());
            let mut bad_magic = good.to_vec();
            bad_magic[0] ^= 1;
            assert!(KeySet::from_bytes(&bad_magic).is_err());
        }
        let mut bad_kind = full.to_vec();
        bad_kind[4] = 2;
        assert!(KeySet::from_bytes(&bad_kind).is_err());
        // A backup-only payload carrying a low-order public key.
        let mut low = backup.to_vec();
        low[133..].fill(0);
        assert!(matches!(KeySet::from_bytes(&low), Err(CryptoError::Malformed(_))));
        // Garbage of assorted lengths never panics and never parses.
        for len in [0usize, 1, 5, 37, 64, 133, 165, 500] {
            let garbage: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            assert!(KeySet::from_bytes(&garbage).is_err());
        }
    }

    #[test]
    fn debug_reveals_no_key_bytes() {
        let master = [0xc3u8; 32];
        let full = KeySet::from_master(Key32::from_bytes(master));
        let dbg = format!("{full:?} {:?}", full.to_backup_only());
        let secrets = [
            master,
            *full.chunker_key().as_bytes(),
            *full.index_key().as_bytes(),
            blake3::derive_key(ID_KEY_CONTEXT, &master),
            blake3::derive_key(X25519_SECRET_CONTEXT, &master),
        ];
        for s in secrets {
            assert!(!dbg.contains(&hex::encode(s)));
            assert!(!dbg.contains(&hex::encode(&s[..4])));
            assert!(!dbg.contains(&format!("{}, {}", s[0], s[1])));
        }
        assert!(dbg.contains("Full") && dbg.contains("BackupOnly"));
        assert_eq!(format!("{:?}", full.chunker_key()), "Key32(<redacted>)");
    }
}
