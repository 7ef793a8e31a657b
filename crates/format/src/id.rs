//! Typed 32-byte identifiers, shown and stored as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FormatError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex characters (its storage name).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex characters, as shown to users.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// Parse 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self, FormatError> {
                let mut out = [0u8; 32];
                if s.len() != 64 {
                    return Err(FormatError::Malformed("id is not 64 hex characters"));
                }
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| FormatError::Malformed("id is not hex"))?;
                Ok(Self(out))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                Self::from_hex(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 hash of a blob's plaintext (data chunk or tree).
    BlobId
);
id_type!(
    /// SHA-256 of a pack file's stored bytes.
    PackId
);
id_type!(
    /// SHA-256 of an index object's stored bytes.
    IndexId
);
id_type!(
    /// SHA-256 of a snapshot (or forget record) object's stored bytes.
    SnapshotId
);
id_type!(
    /// SHA-256 of a key file's stored bytes.
    KeyId
);
id_type!(
    /// Random repository identifier, fixed at `init`.
    RepoId
);

/// SHA-256 of stored bytes: the storage name every object carries.
pub fn storage_id(bytes: &[u8]) -> [u8; 32] {
    offsite_crypto::sha256(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = BlobId([0xab; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short(), "abababab");
        assert!(BlobId::from_hex("ab").is_err());
        assert!(BlobId::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
