//! SFTP storage for offsite: a repository in a directory on any SSH server with the SFTP
//! subsystem (OpenSSH's `internal-sftp` or `sftp-server`).
//!
//! ```no_run
//! use offsite_backend::{ObjectKind, Storage};
//! use offsite_backend_sftp::{SftpOptions, SftpStorage};
//!
//! let s = SftpStorage::new("sftp://backup@nas.example:2222/srv/offsite", SftpOptions::default())?;
//! let snapshots = s.list(ObjectKind::Snapshot)?;
//! # Ok::<(), offsite_backend::StorageError>(())
//! ```
//!
//! # URLs
//! `sftp://[user@]host[:port]/path`: the path is absolute on the server;
//! `sftp://user@host/~/backups` is `backups` relative to the directory the server starts the
//! session in (the login's home). See [`parse_sftp_url`].
//!
//! # Security
//! The server's host key must already be in the known_hosts file (default
//! `~/.ssh/known_hosts`, or [`SftpOptions::known_hosts`]); there is no trust on first use.
//! Authentication is by public key only: [`SftpOptions::identity`], else the default key
//! files and the ssh-agent. See [`SftpStorage`] for timeouts, retries, durability and the
//! never-overwrite guarantee.
//!
//! The client is pure Rust (russh with the `ring` crypto backend, russh-sftp); no `ssh`
//! binary is needed.

mod auth;
mod conn;
mod failure;
mod hostkey;
mod ops;
mod storage;
mod url;

pub use storage::{SftpOptions, SftpStorage};
pub use url::{parse_sftp_url, SftpTarget};
