//! Cryptography for offsite: every key a repository uses and the primitives
//! that use them, built only on well-known crates (RustCrypto `aes-gcm` and
//! `argon2`, `blake3`, `x25519-dalek`, `sha2`, `zeroize`).
//!
//! - [`KeySet`]: the keys one key file unlocks, derived from a master secret
//!   with BLAKE3 `derive_key`; a backup-only set can write but not read.
//! - [`seal`]: a fresh key per pack or snapshot, recoverable only by a full key.
//! - [`aead`]: AES-256-GCM with counter nonces.
//! - [`wrap`]: Argon2id passphrase wrapping of a key set for key files.
//! - [`hash`]: SHA-256 for object names.
//!
//! ```
//! use offsite_crypto::{counter_nonce, Aead, KeySet};
//!
//! let keys = KeySet::generate();
//! // A backup-only client can seal a pack key but not open it again.
//! let writer = keys.to_backup_only();
//! let (pack_key, eph_public) = writer.seal_new_key(b"pack");
//! let ct = Aead::new(&pack_key).seal(&counter_nonce(0), b"blob", b"hello");
//! assert!(writer.open_sealed_key(&eph_public, b"pack").is_err());
//!
//! // The full key recomputes the pack key and decrypts.
//! let key = keys.open_sealed_key(&eph_public, b"pack")?;
//! assert_eq!(Aead::new(&key).open(&counter_nonce(0), b"blob", &ct)?, b"hello");
//! assert_eq!(writer.blob_id(b"hello"), keys.blob_id(b"hello"));
//! # Ok::<(), offsite_crypto::CryptoError>(())
//! ```

pub mod aead;
pub mod error;
pub mod hash;
pub mod keys;
pub mod seal;
pub mod secret;
pub mod wrap;

pub use aead::{counter_nonce, Aead, NONCE_LEN, TAG_LEN};
pub use error::CryptoError;
pub use hash::{sha256, sha256_hex};
pub use keys::{KeyKind, KeySet};
pub use seal::{seal_new_key, try_seal_new_key};
pub use secret::Key32;
pub use wrap::{derive_wrapping_key, unwrap_secret, wrap_secret, KdfParams};

use rand::RngCore;

/// `N` bytes from the operating system's CSPRNG (for salts, nonces and ids).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_random() {
        let a: [u8; 32] = random_bytes();
        let b: [u8; 32] = random_bytes();
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
        assert_eq!(random_bytes::<0>(), [0u8; 0]);
    }
}
