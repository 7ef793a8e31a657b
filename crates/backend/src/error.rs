//! Typed storage errors and the mapping from operating-system errors to them.

use std::io;

/// What went wrong in a storage call, classified so callers can react: retry a
/// [`StorageError::Transient`] error, tell the user about a full disk, treat a missing object
/// as "not there". Every variant names the object or location concerned in `what`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or the whole repository) does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The object or location that is missing.
        what: String,
    },
    /// The object already exists; storage never overwrites objects.
    #[error("{what} already exists")]
    AlreadyExists {
        /// The object that exists.
        what: String,
    },
    /// The storage is full (ENOSPC) or a quota is exhausted (EDQUOT).
    #[error("no space left on storage while writing {what}")]
    NoSpace {
        /// The object being written.
        what: String,
    },
    /// The storage refused access (EACCES, EPERM, a read-only file system, an HTTP 403).
    #[error("permission denied on {what}")]
    PermissionDenied {
        /// The object or location access was refused to.
        what: String,
    },
    /// A failure that may go away by itself (interrupted call, timeout, reset connection);
    /// worth retrying with backoff.
    #[error("{what}: {source}")]
    Transient {
        /// The object or location concerned.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A failure that retrying will not fix (corrupt file system, short object, bad range).
    #[error("{what}: {source}")]
    Permanent {
        /// The object or location concerned.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The object id is not valid for its kind (not 64 lowercase hex, or not empty for config).
    #[error("invalid object name {name:?}")]
    InvalidName {
        /// The rejected name, including its kind directory.
        name: String,
    },
}

/// Result of a storage call.
pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    /// True if the object (or the repository) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// True if the call may succeed when retried later (see [`crate::retry`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Transient { .. })
    }

    /// Classify an I/O error that happened on `what`.
    ///
    /// NotFound becomes [`StorageError::NotFound`], an existing target
    /// [`StorageError::AlreadyExists`], ENOSPC and EDQUOT [`StorageError::NoSpace`], EACCES,
    /// EPERM and EROFS [`StorageError::PermissionDenied`], EINTR, EAGAIN, ETIMEDOUT and
    /// ECONNRESET (and their portable [`io::ErrorKind`] equivalents)
    /// [`StorageError::Transient`], everything else [`StorageError::Permanent`]. Remote
    /// backends use it for the I/O errors of their transports too.
    pub fn from_io(what: impl Into<String>, err: io::Error) -> StorageError {
        let what = what.into();
        if let Some(code) = err.raw_os_error() {
            match code {
                libc::ENOENT => return StorageError::NotFound { what },
                libc::EEXIST => return StorageError::AlreadyExists { what },
                libc::ENOSPC | libc::EDQUOT => return StorageError::NoSpace { what },
                libc::EACCES | libc::EPERM | libc::EROFS => return StorageError::PermissionDenied { what },
                libc::EINTR | libc::EAGAIN | libc::ETIMEDOUT | libc::ECONNRESET => {
                    return StorageError::Transient { what, source: err }
                }
                _ => return StorageError::Permanent { what, source: err },
            }
        }
        match err.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound { what },
            io::ErrorKind::AlreadyExists => StorageError::AlreadyExists { what },
            io::ErrorKind::PermissionDenied => StorageError::PermissionDenied { what },
            io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => StorageError::Transient { what, source: err },
            _ => StorageError::Permanent { what, source: err },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> StorageError {
        StorageError::from_io("data/ab/abcd", io::Error::from_raw_os_error(code))
    }

    #[test]
    fn os_errors_map_to_their_class() {
        assert!(os(libc::ENOENT).is_not_found());
        assert!(matches!(os(libc::EEXIST), StorageError::AlreadyExists { .. }));
        assert!(matches!(os(libc::ENOSPC), StorageError::NoSpace { .. }));
        assert!(matches!(os(libc::EDQUOT), StorageError::NoSpace { .. }));
        for code in [libc::EACCES, libc::EPERM, libc::EROFS] {
            assert!(matches!(os(code), StorageError::PermissionDenied { .. }));
        }
        for code in [libc::EINTR, libc::EAGAIN, libc::ETIMEDOUT, libc::ECONNRESET] {
            assert!(os(code).is_transient(), "errno {code} should be transient");
        }
        for code in [libc::EIO, libc::EISDIR, libc::EINVAL] {
            assert!(matches!(os(code), StorageError::Permanent { .. }));
        }
    }

    #[test]
    fn portable_kinds_map_without_errno() {
        let e = |k| StorageError::from_io("x", io::Error::new(k, "synthetic"));
        assert!(e(io::ErrorKind::NotFound).is_not_found());
        assert!(e(io::ErrorKind::TimedOut).is_transient());
        assert!(e(io::ErrorKind::ConnectionReset).is_transient());
        assert!(matches!(e(io::ErrorKind::PermissionDenied), StorageError::PermissionDenied { .. }));
        assert!(matches!(e(io::ErrorKind::InvalidData), StorageError::Permanent { .. }));
    }

    #[test]
    fn messages_name_the_object_on_one_line() {
        assert_eq!(os(libc::ENOSPC).to_string(), "no space left on storage while writing data/ab/abcd");
        assert_eq!(os(libc::ENOENT).to_string(), "data/ab/abcd not found");
        let msg = os(libc::EIO).to_string();
        assert!(msg.starts_with("data/ab/abcd: "), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
