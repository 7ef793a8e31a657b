//! Every record offsite stores, and how it is encoded, compressed and encrypted. No I/O.
//!
//! docs/FORMAT.md is the normative description of these bytes; this crate is its implementation.
//! Decoders take untrusted bytes and return [`FormatError`] on any input, never panic.
//!
//! ```
//! use offsite_crypto::KeySet;
//! use offsite_format::{open_record, seal_record, RecordType, Tree};
//! let keys = KeySet::generate();
//! let bytes = seal_record(RecordType::Index, &keys, &offsite_format::IndexFile::default());
//! let back: offsite_format::IndexFile = open_record(RecordType::Index, &keys, &bytes).unwrap();
//! assert!(back.packs.is_empty());
//! # let _ = Tree::default();
//! ```

mod bytes;
mod compress;
mod envelope;
mod error;
mod id;
mod keyfile;
mod pack;
mod records;

pub use bytes::RawBytes;
pub use compress::{compress_payload, decompress_payload, MAX_PLAINTEXT};
pub use envelope::{open_record, peek, seal_record, verify_sealed_record, RecordType, FORMAT_VERSION};
pub use error::FormatError;
pub use id::{storage_id, BlobId, IndexId, KeyId, PackId, RepoId, SnapshotId};
pub use keyfile::{create_keyfile, parse_keyfile, unlock_keyfile, KdfRecord, KeyFile, MAX_KEYFILE_LEN};
pub use pack::{
    decode_header, decode_pack, header_range, open_header_len, pack_key, padme, parse_trailer, seal_trailer,
    BlobOpener, BlobType, FinishedPack, PackBuilder, PackEntry, ENTRY_LEN, LENGTH_CT_LEN, MIN_PACK_LEN,
    PACK_MAGIC, TRAILER_LEN,
};
pub use records::{
    ChunkerSizes, Config, ContentItem, ForgetRecord, IndexFile, IndexPack, Lock, Node, NodeKind, Snapshot,
    Summary, Tree, Xattr,
};
