//! Storage backends for offsite: where a repository's objects live.
//!
//! A repository is a set of immutable objects in the layout of restic's REST backend API v2:
//!
//! ```text
//! config            a single object at the root (id "")
//! keys/<id>
//! data/<xx>/<id>    xx = the first two hex characters of id
//! index/<id>
//! snapshots/<id>
//! locks/<id>
//! ```
//!
//! Ids are 64 lowercase hex characters, the SHA-256 of the stored bytes, computed by the
//! caller. Every backend implements [`Storage`]: list, read whole or a range, write whole
//! (atomically, never overwriting), delete, stat.
//!
//! # Blocking by design
//!
//! [`Storage`] is a **blocking** (synchronous) trait, `Send + Sync`, called from a pool of
//! worker threads; the engine is thread-based and bounds concurrency by the size of its
//! pools. Remote backends added later (SFTP, S3 through OpenDAL, REST) own a tokio runtime
//! internally and block on it inside each call, with their own timeouts. An async trait was
//! considered and rejected: the engine is CPU-bound (chunking, hashing, compression,
//! encryption), and thread pools give bounded concurrency simply, without an async runtime
//! leaking into every crate. (This refines the "small async trait" of DESIGN.md.)
//!
//! # Pieces
//!
//! - [`LocalStorage`]: a directory on a local or mounted file system.
//! - [`retry`]: the one retry mechanism: a [`retry::Retrier`] runs a call's attempts with
//!   exponential backoff under a [`retry::GiveUpBudget`] shared by all calls and threads of a
//!   storage. Every remote storage (SFTP, S3, REST, rclone) runs its calls through it and only
//!   classifies its own errors.
//! - [`layers`]: wrappers that compose over any storage: [`layers::RetryStorage`]
//!   (the same retries as a layer), [`layers::CountingStorage`] (calls and bytes,
//!   for tests), [`layers::FaultStorage`] (a fault injector for whole-system tests).
//! - [`conformance`]: the checks every backend's tests run.
//! - [`failpoint`]: named crash points (`OFFSITE_FAILPOINT=<site>:<k>`) for crash tests.
//! - `Arc<T>` and `Box<T>` implement [`Storage`] when `T` does, so wrappers take shared or
//!   boxed storages (`Arc<dyn Storage>`) as well as concrete ones.

pub mod conformance;
mod error;
pub mod failpoint;
mod kind;
pub mod layers;
mod local;
mod remote;
pub mod retry;
mod storage;

/// Environment variables that hold offsite's passphrases. They are removed from the
/// environment of every child process offsite runs (`rclone serve restic`, the password
/// command): no child needs them, and a child's environment is visible to more than the child
/// (its own children, its crash reports, `/proc/<pid>/environ` for as long as it runs).
/// Variables that only point at a secret (`OFFSITE_PASSWORD_FILE`, `OFFSITE_PASSWORD_COMMAND`)
/// stay: a child of the same user could follow them anyway, and a password command may want
/// to know which repository it is asked about. Storage credentials (`AWS_*`) stay too: rclone
/// may be configured to take them from its environment.
pub const SECRET_ENV_VARS: &[&str] = &["OFFSITE_PASSWORD", "OFFSITE_NEW_PASSWORD"];

pub use error::{StorageError, StorageResult};
pub use kind::{is_object_id, validate_id, ObjectKind};
pub use local::LocalStorage;
pub use remote::RemoteOptions;
pub use storage::{Storage, DEFAULT_LOCAL_TRANSFERS};
