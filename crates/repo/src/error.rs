//! Repository errors: typed, one line each, naming the object involved.

use offsite_backend::StorageError;
use offsite_format::FormatError;

/// Everything that can go wrong opening or using a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// No `config` object at the location.
    #[error("no repository at {location}")]
    NoRepository {
        /// where we looked
        location: String,
    },
    /// `init` over an existing repository.
    #[error("a repository already exists at {location}")]
    AlreadyExists {
        /// where
        location: String,
    },
    /// No key file opened with the passphrase.
    #[error("wrong passphrase for repository {location} (no key file opened with it)")]
    WrongPassphrase {
        /// the repository
        location: String,
    },
    /// A stored object failed authentication or decoding.
    #[error("{object} is damaged: {source}")]
    Corrupt {
        /// e.g. "index/ab12cd34"
        object: String,
        /// the decoding failure
        #[source]
        source: FormatError,
    },
    /// An object's bytes do not hash to its name.
    #[error("{object} is damaged: its content does not match its name")]
    NameMismatch {
        /// e.g. "snapshots/ab12cd34"
        object: String,
    },
    /// The repository was written in another format version.
    #[error("{}", unsupported_version(*found, *supported))]
    UnsupportedVersion {
        /// version found
        found: u32,
        /// version we read
        supported: u32,
    },
    /// The operation needs a full key.
    #[error("this key can only add backups")]
    BackupOnly,
    /// A blob named by a tree or snapshot is not in the index.
    #[error("blob {blob} is missing from the index (referenced by {by})")]
    MissingBlob {
        /// blob id (short)
        blob: String,
        /// what referenced it
        by: String,
    },
    /// The storage served an older or incomplete set of snapshots.
    #[error("snapshot {snapshot} is missing but was seen before ({how}): the storage lost it or serves an older state of the repository; once you know why, acknowledge it with `offsite forget --missing {snapshot}` (full key)")]
    Rollback {
        /// missing snapshot id (short)
        snapshot: String,
        /// how we knew it existed
        how: String,
    },
    /// A snapshot selector matched nothing.
    #[error("no snapshot matches {0:?}")]
    NoSnapshot(String),
    /// A snapshot selector matched several.
    #[error("snapshot id prefix {0:?} is ambiguous")]
    AmbiguousSnapshot(String),
    /// A snapshot selector did not parse.
    #[error("invalid snapshot selector {0:?}: use latest, latest~N, an id prefix, a date like 2026-11-01[T10:00], or an age like 10D, 3h, 2W")]
    BadSelector(String),
    /// Local cache I/O failed.
    #[error("cache {path}: {source}")]
    Cache {
        /// the file
        path: String,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// Anything else with a message.
    #[error("{0}")]
    Other(String),
}

fn unsupported_version(found: u32, supported: u32) -> String {
    if found < supported {
        format!(
            "repository format version {found} was written by an older offsite; this offsite reads only version {supported}: \
             read it with the offsite that wrote it, or start a new repository with `offsite init`"
        )
    } else {
        format!(
            "repository format version {found} is not supported by this offsite (reads version {supported}); upgrade offsite"
        )
    }
}

impl RepoError {
    /// Wrap a decode error with the object it came from.
    pub fn corrupt(object: impl Into<String>, source: FormatError) -> Self {
        match source {
            FormatError::BackupOnly => RepoError::BackupOnly,
            FormatError::UnsupportedVersion { found, supported } => {
                RepoError::UnsupportedVersion { found, supported }
            }
            source => RepoError::Corrupt { object: object.into(), source },
        }
    }
}

/// Result alias.
pub type RepoResult<T> = Result<T, RepoError>;
