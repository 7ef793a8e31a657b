//! The JSON records inside encrypted envelopes: config, index, tree, snapshot, forget record, lock.
//! Field names and meanings are normative (docs/FORMAT.md).

use serde::{Deserialize, Serialize};

use crate::bytes::RawBytes;
use crate::id::{BlobId, IndexId, PackId, RepoId, SnapshotId};
use crate::pack::PackEntry;

/// The repository `config` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// format version (2)
    pub version: u32,
    /// random repository id; key files and snapshots name it
    pub id: RepoId,
    /// the repository's X25519 public key: packs and snapshots are sealed to it
    #[serde(with = "hex32")]
    pub public_key: [u8; 32],
    /// [`offsite_crypto::KeySet::commitment`] of the repository's keys: opening refuses a key
    /// file whose keys differ (a planted key file with the right passphrase)
    #[serde(with = "hex32")]
    pub key_commitment: [u8; 32],
    /// RFC 3339 creation time
    pub created: String,
    /// content-defined chunker sizes
    pub chunker: ChunkerSizes,
    /// zstd level for data blobs (0 = no compression)
    pub compression: i32,
    /// target pack size in bytes
    pub pack_size: u32,
}

/// Chunker minimum, average and maximum chunk sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerSizes {
    /// minimum chunk length
    pub min: u32,
    /// target average chunk length (power of two)
    pub avg: u32,
    /// maximum chunk length
    pub max: u32,
}

/// One `index/` object: which blob is in which pack at which offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// packs described by this index object
    pub packs: Vec<IndexPack>,
    /// index objects this one replaces (written by prune/repack; readers may ignore them)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<IndexId>,
}

/// One pack in an index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// storage name of the pack
    pub id: PackId,
    /// ephemeral X25519 public key of the pack (hex), to derive its key without its trailer
    #[serde(with = "hex32")]
    pub eph: [u8; 32],
    /// stored size of the pack
    pub size: u64,
    /// blobs in the pack
    pub blobs: Vec<PackEntry>,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// A directory listing: a tree blob's plaintext. Nodes are sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// entries of the directory
    pub nodes: Vec<Node>,
}

/// What kind of filesystem object a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// regular file (content in `content`)
    File,
    /// directory (listing in `subtree`)
    Dir,
    /// symbolic link (`target`)
    Symlink,
    /// named pipe
    Fifo,
    /// character device (`rdev`)
    Chardev,
    /// block device (`rdev`)
    Blockdev,
    /// unix socket (restored as nothing; kept for listings)
    Socket,
}

/// One piece of a file's content: a blob id, a run of zero bytes stored as a hole, or a slice
/// of a bundle blob (small files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ContentItem {
    /// the data blob holding the next bytes
    Blob(BlobId),
    /// `hole` zero bytes (a sparse region)
    Hole {
        /// length of the hole
        hole: u64,
    },
    /// `length` bytes at `offset` in the plaintext of the bundle blob `bundle`, whose keyed
    /// hash is `id`
    Slice {
        /// id of a blob of type [`crate::BlobType::Bundle`]
        bundle: BlobId,
        /// where the bytes start in the bundle's plaintext
        offset: u32,
        /// how many bytes
        length: u32,
        /// keyed hash (`KeySet::blob_id`) of the slice's bytes: a bundle's own id is random,
        /// so this binds the bytes to the tree; every reader checks it before use
        id: BlobId,
    },
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// attribute name (raw bytes)
    pub name: RawBytes,
    /// attribute value (raw bytes)
    pub value: RawBytes,
}

/// One directory entry with all its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// file name (raw bytes, never contains `/` or NUL, never `.` or `..`)
    pub name: RawBytes,
    /// object kind
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// permission bits including setuid, setgid and sticky (`st_mode & 0o7777`)
    pub mode: u32,
    /// owner id
    pub uid: u32,
    /// group id
    pub gid: u32,
    /// owner name, when it resolved
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// group name, when it resolved
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// modification time: seconds since the epoch and nanoseconds
    pub mtime: (i64, u32),
    /// apparent size in bytes (files)
    #[serde(default)]
    pub size: u64,
    /// inode number (files with links > 1: restore re-links equal `(dev, inode)`)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    /// device id of the inode's filesystem (with `inode`)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev: u64,
    /// link count at backup time
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// device number of a char or block device
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// symlink target (raw bytes)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawBytes>,
    /// extended attributes, sorted by name
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// file content in order
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ContentItem>>,
    /// directory listing
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Node {
    /// Whether a stored name is safe to create inside a directory: not empty, `.` or `..`, and
    /// free of `/` and NUL. Restore refuses any other.
    pub fn name_is_safe(&self) -> bool {
        let n = &self.name.0;
        !(n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0))
    }
}

/// Counters of one backup run, stored in its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// files not in the previous backup
    pub files_new: u64,
    /// files whose content or metadata changed
    pub files_changed: u64,
    /// files reused from the files cache without reading
    pub files_unchanged: u64,
    /// directories
    pub dirs: u64,
    /// other entries (symlinks, devices, fifos)
    pub others: u64,
    /// bytes of file content read
    pub bytes_read: u64,
    /// total apparent size of files in the snapshot
    pub bytes_total: u64,
    /// stored (compressed, encrypted) bytes added to the repository
    pub bytes_added: u64,
    /// new data blobs
    pub data_blobs: u64,
    /// new tree blobs
    pub tree_blobs: u64,
    /// entries that could not be read
    pub errors: u64,
    /// run time in milliseconds
    pub duration_ms: u64,
}

/// A snapshot record (sealed: only full keys read it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// format version (1)
    pub version: u32,
    /// the repository it belongs to
    pub repository: RepoId,
    /// RFC 3339 time with nanoseconds, UTC
    pub time: String,
    /// host name
    pub host: String,
    /// user name
    pub user: String,
    /// absolute paths given to backup
    pub paths: Vec<RawBytes>,
    /// tags
    #[serde(default)]
    pub tags: Vec<String>,
    /// root tree (holds the absolute paths from `/`)
    pub tree: BlobId,
    /// previous snapshot of the same paths and host, if any
    #[serde(default)]
    pub parent: Option<SnapshotId>,
    /// every snapshot the writer saw listed when it started (the authenticated snapshot DAG)
    #[serde(default)]
    pub seen: Vec<SnapshotId>,
    /// counters
    pub summary: Summary,
    /// writer, e.g. "offsite 0.1.0"
    pub program: String,
}

/// Authenticated record of snapshots removed by `forget` (index key: every key kind reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRecord {
    /// format version (1)
    pub version: u32,
    /// the repository it belongs to
    pub repository: RepoId,
    /// RFC 3339 time
    pub time: String,
    /// snapshots removed
    pub removed: Vec<SnapshotId>,
}

/// A lock record (index key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// format version (1)
    pub version: u32,
    /// the repository it belongs to
    pub repository: RepoId,
    /// RFC 3339 time the lock was taken or last refreshed
    pub time: String,
    /// host name of the holder
    pub host: String,
    /// process id of the holder
    pub pid: u32,
    /// exclusive (prune) or shared
    pub exclusive: bool,
}

impl Config {
    /// Smallest `pack_size` accepted: 64 KiB (test repositories use it with small chunks).
    pub const MIN_PACK_SIZE: u32 = 64 << 10;
    /// Largest `pack_size` accepted: 128 MiB. Writers fill one pack per worker thread in
    /// memory and queue one finished pack per upload connection, so this bounds their memory.
    pub const MAX_PACK_SIZE: u32 = 128 << 20;
    /// Largest `chunker.max` accepted: 256 MiB, the chunker's own bound.
    pub const MAX_CHUNK_SIZE: u32 = 256 << 20;
    /// Highest `compression` level accepted: 19, zstd's highest level without its "ultra"
    /// mode, whose windows of up to 128 MiB would be paid in every worker's context.
    pub const MAX_COMPRESSION: i32 = 19;

    /// The reason this config must not be used, if any: a `pack_size` outside
    /// [`Config::MIN_PACK_SIZE`]..=[`Config::MAX_PACK_SIZE`], chunker sizes that break
    /// `64 <= min <= avg <= max <=` [`Config::MAX_CHUNK_SIZE`] with `avg` a power of two, or a
    /// `compression` outside 0..=[`Config::MAX_COMPRESSION`] (docs/FORMAT.md §5.1). Readers
    /// refuse such a config when they decode it; writers never create one.
    pub fn invalid(&self) -> Option<String> {
        Self::invalid_settings(self.chunker, self.compression, self.pack_size)
    }

    /// [`Config::invalid`] for settings a config is about to be made of.
    pub fn invalid_settings(chunker: ChunkerSizes, compression: i32, pack_size: u32) -> Option<String> {
        let (lo, hi) = (Self::MIN_PACK_SIZE, Self::MAX_PACK_SIZE);
        if !(lo..=hi).contains(&pack_size) {
            return Some(format!("pack_size {pack_size} is outside {lo}..={hi}"));
        }
        let ChunkerSizes { min, avg, max } = chunker;
        if !(64 <= min && min <= avg && avg <= max && max <= Self::MAX_CHUNK_SIZE && avg.is_power_of_two()) {
            return Some(format!(
                "chunker sizes min {min}, avg {avg}, max {max} break 64 <= min <= avg <= max <= {} \
                 with avg a power of two",
                Self::MAX_CHUNK_SIZE
            ));
        }
        if !(0..=Self::MAX_COMPRESSION).contains(&compression) {
            return Some(format!("compression level {compression} is outside 0..={}", Self::MAX_COMPRESSION));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn content_items_have_the_json_of_format_md_section_8() {
        let items = vec![
            ContentItem::Blob(BlobId([0xab; 32])),
            ContentItem::Hole { hole: 4096 },
            ContentItem::Slice {
                bundle: BlobId([0x01; 32]),
                offset: 70_000,
                length: 12,
                id: BlobId([2; 32]),
            },
        ];
        let json = serde_json::to_string(&items).unwrap();
        let want = format!(
            "[\"{}\",{{\"hole\":4096}},{{\"bundle\":\"{}\",\"offset\":70000,\"length\":12,\"id\":\"{}\"}}]",
            "ab".repeat(32),
            "01".repeat(32),
            "02".repeat(32)
        );
        assert_eq!(json, want);
        assert_eq!(serde_json::from_str::<Vec<ContentItem>>(&json).unwrap(), items);
        // A slice past u32, or missing a field, is not a content item.
        for bad in [
            format!(
                "[{{\"bundle\":\"{}\",\"offset\":4294967296,\"length\":1,\"id\":\"{}\"}}]",
                "01".repeat(32),
                "02".repeat(32)
            ),
            format!("[{{\"bundle\":\"{}\",\"offset\":1,\"id\":\"{}\"}}]", "01".repeat(32), "02".repeat(32)),
            // A slice without the keyed id of its bytes (format 1) is refused.
            format!("[{{\"bundle\":\"{}\",\"offset\":1,\"length\":1}}]", "01".repeat(32)),
        ] {
            assert!(serde_json::from_str::<Vec<ContentItem>>(&bad).is_err(), "{bad}");
        }
    }
}
