//! Per-object keys that anyone holding the repository's public key can
//! create but only a full key can recompute (an ECIES-style KEM over X25519).
//!
//! A writer calls [`seal_new_key`] with the repository's X25519 public key,
//! encrypts the pack or snapshot with the returned key and stores the
//! ephemeral public key beside it. A reader with a full key recovers the same
//! key with [`crate::KeySet::open_sealed_key`]. The derivation is
//! `blake3::derive_key(SEALED_KEY_CONTEXT, shared || eph_public || recipient_public || context)`.

use rand::rngs::OsRng;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};

use crate::{CryptoError, Key32};

/// BLAKE3 `derive_key` context string for sealed object keys.
pub const SEALED_KEY_CONTEXT: &str = "offsite 2026-11 sealed key";

/// Creates a fresh random key for one object and the ephemeral public key to
/// store with it, so that the holder of the secret key matching
/// `recipient_public` can recompute the key. `context` (for example the
/// object type and id) is bound into the derivation; the opener must pass
/// the same bytes.
///
/// # Panics
/// If `recipient_public` is a low-order point, which would make the key
/// computable by anyone. A [`crate::KeySet`] never holds such a public key
/// (see [`crate::KeySet::seal_new_key`]); use [`try_seal_new_key`] for
/// untrusted input.
pub fn seal_new_key(recipient_public: &[u8; 32], context: &[u8]) -> (Key32, [u8; 32]) {
    match try_seal_new_key(recipient_public, context) {
        Ok(sealed) => sealed,
        Err(_) => panic!("refusing to seal a key to a low-order X25519 public key"),
    }
}

/// Like [`seal_new_key`], but returns [`CryptoError::Malformed`] instead of
/// panicking when `recipient_public` is a low-order point.
pub fn try_seal_new_key(
    recipient_public: &[u8; 32],
    context: &[u8],
) -> Result<(Key32, [u8; 32]), CryptoError> {
    let eph = EphemeralSecret::random_from_rng(OsRng);
    let eph_public = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recipient_public));
    if !shared.was_contributory() {
        return Err(CryptoError::Malformed("recipient public key is a low-order point"));
    }
    let key = derive_sealed_key(shared.as_bytes(), &eph_public, recipient_public, context);
    Ok((key, eph_public))
}

/// The KDF shared by the seal and open paths.
pub(crate) fn derive_sealed_key(
    shared: &[u8; 32],
    eph_public: &[u8; 32],
    recipient_public: &[u8; 32],
    context: &[u8],
) -> Key32 {
    // Streaming the pieces equals derive_key over their concatenation and
    // keeps the shared secret out of an extra heap buffer.
    let mut h = blake3::Hasher::new_derive_key(SEALED_KEY_CONTEXT);
    h.update(shared);
    h.update(eph_public);
    h.update(recipient_public);
    h.update(context);
    Key32::from_bytes(*h.finalize().as_bytes())
}

/// True when `public` is a point of small order (or on the twist's small
/// subgroup), i.e. X25519 with any clamped scalar yields all zeros.
pub(crate) fn is_low_order(public: &[u8; 32]) -> bool {
    // Clamped scalars are multiples of the cofactor, so the output is zero
    // exactly for low-order inputs whatever the (non-secret) probe scalar is.
    let probe = StaticSecret::from([0x55; 32]);
    !probe.diffie_hellman(&PublicKey::from(*public)).was_contributory()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_matches_the_documented_concatenation() {
        let (shared, eph, rcpt) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut material = Vec::new();
        for part in [&shared[..], &eph[..], &rcpt[..], b"pack 1234"] {
            material.extend_from_slice(part);
        }
        let expected = blake3::derive_key("offsite 2026-11 sealed key", &material);
        let got = derive_sealed_key(&shared, &eph, &rcpt, b"pack 1234");
        assert_eq!(got.as_bytes(), &expected);
    }

    #[test]
    fn low_order_points_are_detected() {
        // u = 0 and u = 1 have order dividing 8; the base point u = 9 does not.
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&[0; 32]));
        assert!(is_low_order(&one));
        assert!(!is_low_order(&x25519_dalek::X25519_BASEPOINT_BYTES));
        assert!(matches!(try_seal_new_key(&[0; 32], b"x"), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn each_seal_is_fresh() {
        let public = PublicKey::from(&StaticSecret::from([7u8; 32])).to_bytes();
        let (k1, e1) = seal_new_key(&public, b"ctx");
        let (k2, e2) = seal_new_key(&public, b"ctx");
        assert_ne!(k1, k2);
        assert_ne!(e1, e2);
    }
}
