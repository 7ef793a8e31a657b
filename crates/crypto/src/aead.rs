//! AES-256-GCM authenticated encryption, by `ring` (its VAES/AVX-512 and AES-NI code paths
//! measured 3-4x faster than RustCrypto `aes-gcm` on the development machine; see
//! docs/FORMAT.md §14). The RustCrypto implementation stays a dev-dependency: a test checks
//! that both produce identical ciphertexts.
//!
//! Each key must never see the same nonce twice. Packs and snapshots use a
//! fresh key each (see [`crate::seal`]) with [`counter_nonce`] inside; key
//! files use random nonces (see [`crate::wrap`]).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::{CryptoError, Key32};

/// Length of an AES-GCM nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// An AES-256-GCM key schedule, ready to seal and open messages.
///
/// **Not wiped when dropped.** `ring`'s `LessSafeKey` has no zeroizing drop and no way to
/// clear it, and this workspace forbids the `unsafe` code that could overwrite it from
/// outside. So the expanded AES-256 round keys (whose first two round keys are the key
/// itself) and the GHASH key with its precomputed table stay in the memory the `Aead`
/// occupied (a stack frame, or the heap of the pack builder or blob opener holding it), and in
/// any place a move copied it from, until that memory is reused. What is wiped is the key
/// it was made from: the [`Key32`] passed to [`Aead::new`] zeroizes its 32 bytes when its
/// owner drops it. Keep an `Aead` no longer than its use: the crates make one per record, key
/// file or pack and drop it when done (a pack's or sealed record's key opens that object only;
/// the index key and a key file's wrapping key open more).
pub struct Aead {
    cipher: LessSafeKey,
}

impl Aead {
    /// Expands `key` for AES-256-GCM.
    pub fn new(key: &Key32) -> Self {
        let key =
            UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("a 32-byte key is valid for AES-256-GCM");
        Aead { cipher: LessSafeKey::new(key) }
    }

    /// Encrypts `plaintext`, authenticating it together with `ad`, and
    /// returns `ciphertext || tag` (plaintext length + [`TAG_LEN`] bytes).
    ///
    /// # Panics
    /// If `plaintext` is longer than AES-GCM's limit of 2^36 - 32 bytes.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_into(nonce, ad, &mut buf);
        buf
    }

    /// Like [`Aead::seal`] but in place: `buf` holds the plaintext on entry
    /// and `ciphertext || tag` on return (reserve [`TAG_LEN`] spare capacity
    /// to avoid a reallocation).
    ///
    /// # Panics
    /// If `buf` is longer than AES-GCM's limit of 2^36 - 32 bytes.
    pub fn seal_into(&self, nonce: &[u8; NONCE_LEN], ad: &[u8], buf: &mut Vec<u8>) {
        self.cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(ad), buf)
            .expect("AES-GCM only fails on messages over 64 GiB, far above any pack or blob");
    }

    /// Verifies and decrypts `ciphertext || tag` produced by [`Aead::seal`]
    /// with the same key, nonce and `ad`. Any mismatch, including input
    /// shorter than a tag, gives [`CryptoError::Auth`] and no plaintext.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Auth);
        }
        let mut buf = ciphertext.to_vec();
        let len = self
            .cipher
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(ad), &mut buf)
            .map_err(|_| CryptoError::Auth)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The nonce for message number `n` under one key: `n` as little-endian u64
/// in the first 8 bytes, the last 4 bytes zero. Distinct `n` give distinct
/// nonces.
pub fn counter_nonce(n: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ring and RustCrypto agree byte for byte (the format must not depend on the library).
    #[test]
    fn ring_matches_rustcrypto() {
        use aes_gcm::aead::{Aead as _, KeyInit, Payload};
        let key = Key32::from_bytes([9; 32]);
        let rc = aes_gcm::Aes256Gcm::new(&(*key.as_bytes()).into());
        for len in [0usize, 1, 15, 16, 17, 1000, 70_000] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let nonce = counter_nonce(len as u64);
            let ours = Aead::new(&key).seal(&nonce, b"ad", &pt);
            let theirs = rc.encrypt((&nonce).into(), Payload { msg: &pt, aad: b"ad" }).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    // NIST CAVP GCM test vectors, gcmEncryptExtIV256.rsp
    // ([Keylen = 256] [IVlen = 96] [PTlen = 128] [AADlen = 128] [Taglen = 128], Count = 0).
    #[test]
    fn nist_cavp_known_answer() {
        let key = Key32::from_slice(&h("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b"))
            .expect("32 bytes");
        let nonce: [u8; 12] = h("ac93a1a6145299bde902f21a").try_into().expect("12 bytes");
        let pt = h("2d71bcfa914e4ac045b2aa60955fad24");
        let ad = h("1e0889016f67601c8ebea4943bc23ad6");
        let expected = h("8995ae2e6df3dbf96fac7b7137bae67feca5aa77d51d4a0a14d9c51e1da474ab");

        let aead = Aead::new(&key);
        let ct = aead.seal(&nonce, &ad, &pt);
        assert_eq!(hex::encode(&ct), hex::encode(&expected));
        let mut buf = pt.clone();
        aead.seal_into(&nonce, &ad, &mut buf);
        assert_eq!(buf, expected);
        assert_eq!(aead.open(&nonce, &ad, &ct).expect("authentic"), pt);
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test case 14:
    // all-zero 256-bit key, all-zero 96-bit IV, one all-zero block.
    #[test]
    fn gcm_spec_test_case_14() {
        let aead = Aead::new(&Key32::from_bytes([0; 32]));
        let ct = aead.seal(&[0; 12], b"", &[0; 16]);
        assert_eq!(hex::encode(ct), "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    }

    #[test]
    fn tampering_and_wrong_ad_fail() {
        let aead = Aead::new(&Key32::from_bytes([9; 32]));
        let nonce = counter_nonce(3);
        let ct = aead.seal(&nonce, b"tree", b"hello world");
        assert_eq!(ct.len(), 11 + TAG_LEN);
        assert!(matches!(aead.open(&nonce, b"data", &ct), Err(CryptoError::Auth)));
        assert!(matches!(aead.open(&counter_nonce(4), b"tree", &ct), Err(CryptoError::Auth)));
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(matches!(aead.open(&nonce, b"tree", &bad), Err(CryptoError::Auth)));
        }
        let other = Aead::new(&Key32::from_bytes([8; 32]));
        assert!(matches!(other.open(&nonce, b"tree", &ct), Err(CryptoError::Auth)));
    }

    #[test]
    fn short_input_is_auth_error() {
        let aead = Aead::new(&Key32::from_bytes([1; 32]));
        for len in 0..TAG_LEN {
            assert!(matches!(aead.open(&[0; 12], b"", &vec![0; len]), Err(CryptoError::Auth)));
        }
        // An empty plaintext seals to exactly one tag and opens again.
        let ct = aead.seal(&[0; 12], b"ad", b"");
        assert_eq!(ct.len(), TAG_LEN);
        assert_eq!(aead.open(&[0; 12], b"ad", &ct).expect("authentic"), b"");
    }

    #[test]
    fn counter_nonces_are_distinct_and_little_endian() {
        let mut seen = std::collections::HashSet::new();
        for n in [0u64, 1, 2, 255, 256, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert!(seen.insert(counter_nonce(n)), "duplicate nonce for {n}");
        }
        assert_eq!(counter_nonce(0x0102), [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(counter_nonce(u64::MAX)[8..], [0, 0, 0, 0]);
    }
}
