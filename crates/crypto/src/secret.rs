//! [`Key32`], a 32-byte secret that is wiped from memory when dropped.

use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// A 32-byte secret key.
///
/// The bytes are overwritten with zeros when the value is dropped, `Debug`
/// prints `Key32(<redacted>)`, and `==` compares in constant time. Cloning
/// makes a second copy that is wiped independently.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    /// Takes ownership of `b` as a key. The caller's copy of the array (if it
    /// kept one) is its own to wipe.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Key32(b)
    }

    /// Copies a key out of a slice without an intermediate unwiped array;
    /// fails unless the slice is exactly 32 bytes long.
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != 32 {
            return Err(CryptoError::Malformed("a key must be 32 bytes"));
        }
        let mut k = Key32([0u8; 32]);
        k.0.copy_from_slice(b);
        Ok(k)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut k = Key32([0u8; 32]);
        OsRng.fill_bytes(&mut k.0);
        k
    }

    /// Mutable access for primitives that write a key into a buffer.
    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }

    /// The raw key bytes, for handing to a primitive.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

impl PartialEq for Key32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Key32 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = Key32::from_bytes([0xab; 32]);
        let s = format!("{k:?}");
        assert_eq!(s, "Key32(<redacted>)");
        assert!(!s.contains("ab") && !s.contains("171"));
    }

    #[test]
    fn equality_compares_bytes() {
        let a = Key32::from_bytes([1; 32]);
        let mut other = [1u8; 32];
        assert_eq!(a, Key32::from_bytes(other));
        other[31] = 2;
        assert_ne!(a, Key32::from_bytes(other));
    }

    #[test]
    fn random_keys_differ_and_from_slice_checks_length() {
        assert_ne!(Key32::random(), Key32::random());
        assert!(Key32::from_slice(&[0; 31]).is_err());
        assert!(Key32::from_slice(&[0; 33]).is_err());
        assert_eq!(Key32::from_slice(&[7; 32]).ok(), Some(Key32::from_bytes([7; 32])));
    }
}
