//! Engine errors.

use offsite_repo::RepoError;

/// What can stop a backup, restore, check or listing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The repository layer failed.
    #[error("{0}")]
    Repo(#[from] RepoError),
    /// A source or target path failed.
    #[error("{path}: {source}")]
    Io {
        /// the path involved
        path: String,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// A path given by the user is not in the snapshot.
    #[error("{0} is not in the snapshot")]
    NotInSnapshot(String),
    /// A tree entry would write outside the restore target.
    #[error("refusing unsafe entry {name:?} in {dir} (it would leave the restore target)")]
    UnsafeEntry {
        /// directory holding it
        dir: String,
        /// the name, lossy
        name: String,
    },
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// Wrap an I/O error with its path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// Result alias.
pub type EngineResult<T> = Result<T, EngineError>;
