//! The repository layer: open and create repositories, manage keys, hold the index, write
//! blobs into packs, read and verify blobs, store snapshots and detect rollback, select
//! snapshots. The engine (backup, restore, check) builds on this.
//!
//! ```
//! use std::sync::Arc;
//! use offsite_backend::LocalStorage;
//! use offsite_repo::{CacheSetting, InitOptions, Repository};
//! let dir = tempfile::tempdir().unwrap();
//! let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
//! let opts = InitOptions { kdf: offsite_crypto::KdfParams::for_tests(), ..Default::default() };
//! Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
//! let repo = Repository::open(storage, b"pw", &CacheSetting::Disabled).unwrap();
//! assert!(repo.is_full());
//! ```

mod cache;
mod error;
mod index;
mod journal;
mod reader;
mod repository;
mod select;
mod snapshots;
mod writer;

pub use cache::{read_optional, write_unsynced, CacheSetting};
pub use error::{RepoError, RepoResult};
pub use index::{BlobLocation, Index, PackInfo};
pub use journal::{PackJournal, RecordLog, JOURNAL_FILE};
pub use reader::{read_range, BlobReader, READ_ALIGN};
pub use repository::{InitOptions, KeyInfo, Repository, MAX_KEY_TRIES};
pub use select::{parse_selector, select, snapshot_time, sort_snapshots, Selector, SnapshotFilter};
pub use snapshots::{MissingSnapshot, SnapshotSet};
pub use writer::{BlobWriter, WriterOptions, WriterStats};
