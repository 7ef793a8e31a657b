//! The engine: backup (archiver), restore (restorer), check, and browsing snapshots (ls, diff,
//! dump). Each operation is one function over an open repository that reports [`Event`]s.
//!
//! Layout: `backup/` walks the source, consults the files cache, chunks and stores content and
//! builds trees bottom-up; `restore/` plans by pack and writes files at offsets; `check.rs`
//! verifies structure and (optionally) every blob; `browse.rs` walks trees for ls, diff, dump.

pub mod backup;
pub mod browse;
pub mod check;
mod content;
mod error;
pub mod events;
pub mod restore;

/// The exclude rules of `backup` (gitignore-style patterns, CACHEDIR.TAG, size limit); public
/// for `fuzz/` (target `exclude`).
pub use backup::excludes;

pub use backup::{backup, BackupOptions, BackupOutcome};
pub use browse::{diff, dump, find_node, ls, DiffItem, LsEntry};
pub use check::{check, CheckOptions, CheckReport, Problem, ReadData};
pub use error::{EngineError, EngineResult};
pub use events::{display_path, CollectReporter, Event, NullReporter, Reporter};
pub use restore::{restore, Overwrite, RestoreOptions, RestoreSummary};
