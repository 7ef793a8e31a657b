//! Remote storage over HTTP for offsite: [`RestStorage`] speaks restic's REST backend API v2
//! (rest-server, `rclone serve restic`, `offsite serve`), and [`RcloneStorage`] reaches every
//! provider rclone knows through an `rclone serve restic` child process.
//!
//! Both implement the blocking [`offsite_backend::Storage`] trait with a blocking HTTP client
//! (ureq, rustls with ring): no async runtime. Both honour [`offsite_backend::RemoteOptions`]:
//! a connect timeout, an idle timeout on every socket read and write (lack of progress, never
//! the length of a transfer), bounded concurrency, and retries of transient failures by
//! [`offsite_backend::retry::Retrier`] (exponential backoff, one `give_up_after` budget shared
//! by every call and thread of a storage), after which a call fails with "storage unreachable:
//! <url>: <cause>; gave up after <seconds>s of failures (--give-up-after <budget>)".
//!
//! ```no_run
//! use offsite_backend::{ObjectKind, RemoteOptions, Storage};
//! use offsite_backend_rest::RestStorage;
//!
//! // A `rest:` repository URL without its prefix; credentials may be part of it.
//! let storage = RestStorage::new("https://user:secret@backup.example:8000/repo", RemoteOptions::default())?;
//! storage.create()?;
//! let config = storage.read(ObjectKind::Config, "", None)?;
//! # Ok::<(), offsite_backend::StorageError>(())
//! ```
//!
//! Errors map HTTP answers to [`offsite_backend::StorageError`] classes: 401 and 403 are
//! PermissionDenied (naming the URL, never the password), 404 NotFound, 409 (and 403 for an
//! existing name) AlreadyExists, 413 and 507 NoSpace, 408, 429 and 5xx Transient, and a server
//! that answers something else than the API (HTML to a listing, JSON of the wrong shape, a
//! different byte range than asked for) Permanent, with what it said. A server certificate
//! that rustls refuses is Permanent too ("the server's TLS certificate is not trusted"): no
//! retry makes it trusted. [`offsite_backend::RemoteOptions::ca_cert`] (`--cacert`) replaces
//! the built-in webpki roots for https URLs.
//!
//! A full server is NoSpace when it says so: 413, 507, a 5xx whose body reads "no space left"
//! or "quota exceeded", or (`rclone serve restic`, which answers a full disk with a bare 500)
//! a 500 to an upload after which an empty object is left at its name (removed again). An
//! upload the server keeps failing with 500 until `give_up_after` ends with "<url> could not
//! store <object>: the server kept answering 500 ...; a full disk or an exhausted quota on the
//! server does this: free space there, then run the command again".
//!
//! Layout: `endpoint` parses URLs and keeps the password out of messages, `answer` classifies
//! HTTP failures (that classification is all this crate adds to the shared retries), `tls` picks the trusted roots
//! and recognises a refused certificate, `rest` is the REST client,
//! `rclone` the child process.

mod answer;
mod endpoint;
mod rclone;
mod rest;
mod tls;

pub use rclone::RcloneStorage;
pub use rest::RestStorage;
