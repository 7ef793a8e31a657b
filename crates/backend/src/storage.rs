//! The blocking storage trait every backend implements, and its blanket impls.

use std::sync::Arc;

use crate::error::StorageResult;
use crate::kind::ObjectKind;

/// Where a repository's objects live: a local directory today, SFTP, S3 or a REST server
/// later.
///
/// Calls block; an implementation must be usable from many threads at once (the engine
/// runs a pool of workers over one `Arc<dyn Storage>`). Every method validates its id with
/// [`crate::validate_id`] before touching storage. An object's name is its kind plus an id:
/// Config has id "", every other kind a 64-hex id (the SHA-256 of the stored bytes,
/// computed by the caller; the storage does not check it).
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Human-readable location for error messages, e.g. "/srv/backup" or later
    /// "sftp://host/path".
    fn location(&self) -> String;

    /// Create the empty layout (directories where the storage has them). Fails with
    /// AlreadyExists if a `config` object is already there; without a config it may be
    /// called again (it completes an interrupted init).
    fn create(&self) -> StorageResult<()>;

    /// Ids and sizes of all objects of `kind`, unordered. Temp files and names that are not
    /// 64 lowercase hex are skipped. For Config the answer is `[("", size)]` if the config
    /// exists and empty otherwise.
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>>;

    /// The whole object, or bytes `[start, start + len)` of it when `range` is
    /// `Some((start, len))`. A range reaching past the end is a Permanent error: a short
    /// object is never returned as if it were complete.
    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>>;

    /// Store an object whole, atomically and durably. Never overwrites: if the name exists,
    /// returns AlreadyExists and leaves it untouched. A crash never leaves a partial object
    /// under the final name.
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()>;

    /// Remove an object; NotFound if it does not exist.
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()>;

    /// Size of the object in bytes; NotFound if it does not exist.
    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64>;

    /// How many transfers (uploads or downloads) this storage should be given at once: the
    /// engine runs that many uploaders while backing up and at least that many downloaders
    /// while restoring. Remote backends answer their configured connection count (the CLI's
    /// `--connections`); the default suits a local disk.
    fn transfers(&self) -> usize {
        DEFAULT_LOCAL_TRANSFERS
    }
}

/// Parallel transfers to a local directory: two uploaders keep a disk busy while the
/// pipeline compresses and encrypts (measured: more only add seeks; docs/PERFORMANCE.md).
pub const DEFAULT_LOCAL_TRANSFERS: usize = 2;

macro_rules! forward_storage {
    ($ty:ty) => {
        /// Forwards every call to the shared storage, so wrappers compose over
        /// `Arc<dyn Storage>` and `Box<dyn Storage>`.
        impl<T: Storage + ?Sized> Storage for $ty {
            fn location(&self) -> String {
                (**self).location()
            }
            fn create(&self) -> StorageResult<()> {
                (**self).create()
            }
            fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
                (**self).list(kind)
            }
            fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
                (**self).read(kind, id, range)
            }
            fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
                (**self).write(kind, id, data)
            }
            fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
                (**self).delete(kind, id)
            }
            fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
                (**self).stat(kind, id)
            }
            fn transfers(&self) -> usize {
                (**self).transfers()
            }
        }
    };
}

forward_storage!(Arc<T>);
forward_storage!(Box<T>);
