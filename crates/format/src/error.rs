//! Errors of decoding stored bytes.

/// Why stored bytes could not be decoded. Every decoder returns this, never panics.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The object is structurally wrong (bad magic, truncated, bad field).
    #[error("malformed object: {0}")]
    Malformed(&'static str),
    /// Authentication failed: the bytes were changed, or belong to another key or object.
    #[error("authentication failed: the object was modified or does not belong here")]
    Auth,
    /// The object was written by a newer (or unknown) format version.
    #[error("unsupported format version {found} (this offsite reads version {supported})")]
    UnsupportedVersion {
        /// version found in the object
        found: u32,
        /// version this build reads
        supported: u32,
    },
    /// A record held a different type than the one asked for.
    #[error("object holds a {found} where a {expected} was expected")]
    WrongType {
        /// what was found
        found: &'static str,
        /// what the caller asked for
        expected: &'static str,
    },
    /// The wrong passphrase was given for a key file.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A backup-only key cannot decrypt this object.
    #[error("this key can only add backups")]
    BackupOnly,
    /// Decompressed size above the allowed bound (zstd bomb or corrupt length).
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// the bound that was exceeded
        limit: usize,
    },
    /// JSON inside a decrypted record did not parse.
    #[error("malformed record: {0}")]
    Json(String),
    /// A blob decrypted but its keyed hash does not match its id.
    #[error("blob content does not match its id")]
    IdMismatch,
}

impl From<offsite_crypto::CryptoError> for FormatError {
    fn from(e: offsite_crypto::CryptoError) -> Self {
        match e {
            offsite_crypto::CryptoError::BackupOnly => FormatError::BackupOnly,
            offsite_crypto::CryptoError::Auth => FormatError::Auth,
            offsite_crypto::CryptoError::Malformed(m) => FormatError::Malformed(m),
            offsite_crypto::CryptoError::BadKdf(_) => FormatError::Malformed("bad key derivation parameters"),
        }
    }
}
