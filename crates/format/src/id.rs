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
            /// Parse 64 hex characters (either case).
            pub fn from_hex(s: &str) -> Result<Self, FormatError> {
                decode_hex32(s.as_bytes()).map(Self)
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
                // On the stack: trees and indexes serialize tens of thousands of ids.
                let mut buf = [0u8; 64];
                hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
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

/// Value of each byte as a hex digit, 0xff for a byte that is not one.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// 64 hex digits to 32 bytes, by table (index loading decodes one per blob).
fn decode_hex32(s: &[u8]) -> Result<[u8; 32], FormatError> {
    if s.len() != 64 {
        return Err(FormatError::Malformed("id is not 64 hex characters"));
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    if bad & 0xf0 != 0 {
        return Err(FormatError::Malformed("id is not hex"));
    }
    Ok(out)
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
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }

    #[test]
    fn the_table_decoder_agrees_with_the_hex_crate_on_every_byte_in_every_position() {
        let good = "0123456789abcdefABCDEF".repeat(3);
        let base = good.as_bytes()[..64].to_vec();
        for pos in [0, 1, 31, 62, 63] {
            for b in 0..=255u8 {
                let mut s = base.clone();
                s[pos] = b;
                let mut want = [0u8; 32];
                let want = hex::decode_to_slice(&s, &mut want).map(|_| want).ok();
                assert_eq!(decode_hex32(&s).ok(), want, "byte {b:#04x} at {pos}");
            }
        }
        assert!(decode_hex32(&base[..63]).is_err());
    }
}
