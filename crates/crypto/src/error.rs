//! The one error type of this crate.

/// Why a cryptographic operation failed.
///
/// Messages never include key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Decryption or tag verification failed: the key is wrong, or the data
    /// (or its associated data) was changed. Deliberately carries no detail.
    #[error("authentication failed (wrong key or tampered data)")]
    Auth,
    /// The operation needs the master secret or the X25519 secret, which a
    /// backup-only key does not hold.
    #[error("this key can only add backups")]
    BackupOnly,
    /// Serialized key material, or a public key, is not well formed.
    #[error("malformed key material: {0}")]
    Malformed(&'static str),
    /// Argon2 parameters are out of the accepted bounds or rejected by argon2.
    #[error("invalid key derivation parameters: {0}")]
    BadKdf(String),
}
