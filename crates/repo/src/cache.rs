//! The local cache directory of one repository: files cache, seen-snapshot tips, last key used.
//! Lives under `$OFFSITE_CACHE_DIR`, else `$XDG_CACHE_HOME/offsite`, else `~/.cache/offsite`,
//! in a subdirectory named by the repository id.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{RepoError, RepoResult};

/// Where the cache lives, as configured.
#[derive(Clone, Debug, Default)]
pub enum CacheSetting {
    /// From the environment (see module doc).
    #[default]
    Default,
    /// This directory (the per-repository subdirectory is made under it).
    Dir(PathBuf),
    /// No cache: every run starts cold (no files cache, no rollback tips).
    Disabled,
}

impl CacheSetting {
    /// The base directory, if any.
    pub fn base(&self) -> Option<PathBuf> {
        match self {
            Self::Disabled => None,
            Self::Dir(d) => Some(d.clone()),
            Self::Default => {
                if let Some(d) = std::env::var_os("OFFSITE_CACHE_DIR") {
                    return Some(PathBuf::from(d));
                }
                if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
                    return Some(PathBuf::from(d).join("offsite"));
                }
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("offsite"))
            }
        }
    }
}

/// Write a cache file atomically (temp, fsync, rename), creating the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> RepoResult<()> {
    replace(path, data, true)
}

/// Like [`write_atomic`], but leaves a file that already holds exactly `data` alone (no
/// write, no fsync: a command that changed nothing pays nothing for it).
pub fn write_atomic_if_changed(path: &Path, data: &[u8]) -> RepoResult<()> {
    if read_optional(path)?.is_some_and(|old| old == data) {
        return Ok(());
    }
    write_atomic(path, data)
}

/// Replace a cache file by rename without fsync, for files that detect their own damage (a
/// checksum) or are mere hints: after a power cut the file is the old one, the new one, or
/// damaged and then ignored, never misread. Saves an fsync (5-50 ms) at the end of a backup.
pub fn write_unsynced(path: &Path, data: &[u8]) -> RepoResult<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> RepoResult<()> {
    let err = |source| RepoError::Cache { path: path.display().to_string(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".tmp-{}", hex::encode(offsite_crypto::random_bytes::<8>())));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Read a cache file; `None` when absent.
pub fn read_optional(path: &Path) -> RepoResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RepoError::Cache { path: path.display().to_string(), source }),
    }
}
