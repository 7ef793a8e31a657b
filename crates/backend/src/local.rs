//! A repository in a local directory (or any mounted file system).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{StorageError, StorageResult};
use crate::failpoint;
use crate::kind::{is_object_id, validate_id, ObjectKind};
use crate::storage::Storage;

/// Prefix of temp files; [`Storage::list`] skips them.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Test hook run after the temp file's bytes are written, before it is synced and
/// published; an error from it makes the write fail there.
type WriteHook = fn(&Path) -> io::Result<()>;

/// A repository stored as plain files under a root directory, in the restic REST v2
/// layout.
///
/// Writes go to `.tmp-<random hex>` in the destination directory, which is fsynced, then
/// published under the final name with `link(2)` (which, unlike `rename(2)`, fails instead of
/// replacing an existing object, atomically), after which the directory is fsynced and the
/// temp name removed. On file systems without hard links it falls back to check-then-rename.
/// The 256 `data/<xx>` directories are created lazily by the first write that needs one.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    write_hook: Option<WriteHook>,
    transfers: usize,
}

impl LocalStorage {
    /// A storage rooted at `root`. Touches nothing; [`Storage::create`] makes the layout.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into(), write_hook: None, transfers: crate::DEFAULT_LOCAL_TRANSFERS }
    }

    /// The same storage, answering `n` (at least 1) to [`Storage::transfers`].
    pub fn with_transfers(mut self, n: usize) -> Self {
        self.transfers = n.max(1);
        self
    }

    /// The repository's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    #[cfg(test)]
    fn with_write_hook(mut self, hook: WriteHook) -> Self {
        self.write_hook = Some(hook);
        self
    }

    fn path_of(&self, kind: ObjectKind, id: &str) -> PathBuf {
        self.root.join(kind.relative_path(id))
    }

    /// Map an I/O error on `path`; a NotFound caused by a missing root says so.
    fn err(&self, path: &Path, e: io::Error) -> StorageError {
        if e.kind() == io::ErrorKind::NotFound && !self.root.is_dir() {
            return StorageError::NotFound { what: format!("repository {}", self.root.display()) };
        }
        StorageError::from_io(path.display().to_string(), e)
    }

    fn checked_path(&self, kind: ObjectKind, id: &str) -> StorageResult<PathBuf> {
        validate_id(kind, id)?;
        Ok(self.path_of(kind, id))
    }

    /// Create `dir` (whose parent must exist) if missing, and make the entry durable.
    fn ensure_dir(&self, dir: &Path) -> StorageResult<()> {
        match fs::create_dir(dir) {
            Ok(()) => {
                let parent = dir.parent().unwrap_or(&self.root);
                sync_dir(parent).map_err(|e| self.err(parent, e))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.err(dir, e)),
        }
    }

    /// Create the directories leading to objects of `kind` (`keys/`, or `data/` and
    /// `data/<xx>/`). The root itself must exist.
    fn ensure_parents(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        if !self.root.is_dir() {
            return Err(StorageError::NotFound { what: format!("repository {}", self.root.display()) });
        }
        if kind == ObjectKind::Config {
            return Ok(());
        }
        let dir = self.root.join(kind.dir_name());
        self.ensure_dir(&dir)?;
        if kind == ObjectKind::Data {
            self.ensure_dir(&dir.join(&id[..2]))?;
        }
        Ok(())
    }

    fn write_temp(&self, tmp: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        f.write_all(data)?;
        if let Some(hook) = self.write_hook {
            hook(tmp)?;
        }
        f.sync_all()
    }

    /// Publish `tmp` as `dest` without ever replacing an existing `dest`.
    fn publish(&self, tmp: &Path, dest: &Path) -> io::Result<()> {
        match fs::hard_link(tmp, dest) {
            Ok(()) => {
                failpoint::hit("local.linked");
                let _ = fs::remove_file(tmp);
                Ok(())
            }
            Err(e) if link_unsupported(&e) => {
                // No hard links here (FAT, some FUSE file systems): check, then rename.
                // Racy against a concurrent writer of the same name, which for
                // content-addressed names writes the same bytes.
                if dest.symlink_metadata().is_ok() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                fs::rename(tmp, dest)
            }
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, dir: &Path, prefix: Option<&str>) -> StorageResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // A kind directory missing from an existing repository holds no objects.
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.root.is_dir() => return Ok(out),
            Err(e) => return Err(self.err(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.err(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_object_id(name) || prefix.is_some_and(|p| !name.starts_with(p)) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted between readdir and stat.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&entry.path(), e)),
            };
            if meta.is_file() {
                out.push((name.to_string(), meta.len()));
            }
        }
        Ok(out)
    }
}

/// True if `link(2)` failed because the file system has no hard links.
fn link_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK | libc::ENOSYS))
}

/// fsync a directory so the entries created or removed in it are durable. File systems that
/// cannot sync directories (EINVAL, ENOTSUP) are accepted as they are.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Ok(()),
        other => other,
    }
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", hex::encode(rand::random::<[u8; 16]>()))
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn transfers(&self) -> usize {
        self.transfers
    }

    fn create(&self) -> StorageResult<()> {
        let config = self.path_of(ObjectKind::Config, "");
        if config.symlink_metadata().is_ok() {
            return Err(StorageError::AlreadyExists {
                what: format!("repository config {}", config.display()),
            });
        }
        fs::create_dir_all(&self.root).map_err(|e| self.err(&self.root, e))?;
        for kind in ObjectKind::ALL {
            if kind != ObjectKind::Config {
                self.ensure_dir(&self.root.join(kind.dir_name()))?;
            }
        }
        sync_dir(&self.root).map_err(|e| self.err(&self.root, e))?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| self.err(parent, e))?;
        }
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        match kind {
            ObjectKind::Config => match self.stat(kind, "") {
                Ok(size) => Ok(vec![(String::new(), size)]),
                Err(e) if e.is_not_found() && self.root.is_dir() => Ok(Vec::new()),
                Err(e) => Err(e),
            },
            ObjectKind::Data => {
                let data = self.root.join(kind.dir_name());
                let subdirs = match fs::read_dir(&data) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && self.root.is_dir() => {
                        return Ok(Vec::new())
                    }
                    Err(e) => return Err(self.err(&data, e)),
                };
                let mut out = Vec::new();
                for entry in subdirs {
                    let entry = entry.map_err(|e| self.err(&data, e))?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let is_prefix = name.len() == 2 && is_object_id(&name.repeat(32));
                    if is_prefix && entry.path().is_dir() {
                        out.extend(self.list_dir(&entry.path(), Some(name))?);
                    }
                }
                Ok(out)
            }
            _ => self.list_dir(&self.root.join(kind.dir_name()), None),
        }
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        let path = self.checked_path(kind, id)?;
        let err = |e| self.err(&path, e);
        let mut file = File::open(&path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let Some((start, len)) = range else {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut buf).map_err(err)?;
            return Ok(buf);
        };
        let in_bounds = start.checked_add(len).is_some_and(|end| end <= size);
        if !in_bounds {
            return Err(StorageError::Permanent {
                what: path.display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "range of {len} bytes at offset {start} is past the end of the \
                         {size}-byte object"
                    ),
                ),
            });
        }
        let len = usize::try_from(len)
            .map_err(|_| self.err(&path, io::Error::other("range too large for this platform")))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, start).map_err(err)?;
        Ok(buf)
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        let dest = self.checked_path(kind, id)?;
        if dest.symlink_metadata().is_ok() {
            return Err(StorageError::AlreadyExists { what: dest.display().to_string() });
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = dir.join(temp_name());
        let mut result = self.write_temp(&tmp, data);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            // First object in this directory (lazy data/<xx>), or a layout made elsewhere.
            self.ensure_parents(kind, id)?;
            result = self.write_temp(&tmp, data);
        }
        let result = result
            .map_err(|e| self.err(&dest, e))
            .inspect(|()| failpoint::hit("local.temp_synced"))
            .and_then(|()| self.publish(&tmp, &dest).map_err(|e| self.err(&dest, e)))
            .inspect(|()| failpoint::hit("local.published"))
            .and_then(|()| sync_dir(&dir).map_err(|e| self.err(&dir, e)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        let path = self.checked_path(kind, id)?;
        fs::remove_file(&path).map_err(|e| self.err(&path, e))?;
        failpoint::hit("local.removed");
        let dir = path.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| self.err(dir, e))
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        let path = self.checked_path(kind, id)?;
        let meta = fs::metadata(&path).map_err(|e| self.err(&path, e))?;
        if !meta.is_file() {
            return Err(StorageError::Permanent {
                what: path.display().to_string(),
                source: io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
            });
        }
        Ok(meta.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::id_of;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("test dir is readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_failing_midway_leaves_no_object_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path())
            .with_write_hook(|_| Err(io::Error::from_raw_os_error(libc::ENOSPC)));
        s.create().expect("create");
        let data = vec![7u8; 4096];
        let id = id_of(&data);
        let err = s.write(ObjectKind::Data, &id, &data).expect_err("hook fails");
        assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("data/{}/{id}", &id[..2])), "{err}");
        assert_eq!(names_in(&dir.path().join("data").join(&id[..2])), Vec::<String>::new());
        assert!(s.stat(ObjectKind::Data, &id).expect_err("absent").is_not_found());

        let err = s.write(ObjectKind::Snapshot, &id, &data).expect_err("hook fails");
        assert!(matches!(err, StorageError::NoSpace { .. }));
        assert_eq!(names_in(&dir.path().join("snapshots")), Vec::<String>::new());
    }

    #[test]
    fn a_successful_write_leaves_only_the_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path());
        s.create().expect("create");
        assert_eq!(names_in(&dir.path().join("data")), Vec::<String>::new());
        let data = b"pack".to_vec();
        let id = id_of(&data);
        s.write(ObjectKind::Data, &id, &data).expect("write");
        // data/<xx> is created lazily by the first write into it.
        assert_eq!(names_in(&dir.path().join("data")), vec![id[..2].to_string()]);
        assert_eq!(names_in(&dir.path().join("data").join(&id[..2])), vec![id.clone()]);
        assert_eq!(fs::read(dir.path().join(ObjectKind::Data.relative_path(&id))).expect("read"), data);
    }

    #[test]
    fn create_lays_out_the_kind_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path().join("repo"));
        s.create().expect("create");
        assert_eq!(names_in(s.root()), ["data", "index", "keys", "locks", "snapshots"]);
        // Without a config, create completes an interrupted init instead of failing.
        s.create().expect("create again without config");
    }

    #[test]
    fn a_missing_repository_root_is_reported_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("no-such-repo");
        let s = LocalStorage::new(&root);
        let id = id_of(b"x");
        let want = format!("repository {} not found", root.display());
        let errors = [
            s.list(ObjectKind::Snapshot).map(|_| ()),
            s.list(ObjectKind::Data).map(|_| ()),
            s.list(ObjectKind::Config).map(|_| ()),
            s.read(ObjectKind::Config, "", None).map(|_| ()),
            s.read(ObjectKind::Data, &id, Some((0, 1))).map(|_| ()),
            s.stat(ObjectKind::Key, &id).map(|_| ()),
            s.write(ObjectKind::Data, &id, b"x"),
            s.write(ObjectKind::Config, "", b"x"),
            s.delete(ObjectKind::Lock, &id),
        ];
        for r in errors {
            let e = r.expect_err("no repository");
            assert!(e.is_not_found(), "{e:?}");
            assert_eq!(e.to_string(), want);
        }
        assert!(!root.exists(), "nothing may be created by failed calls");
    }

    #[test]
    fn a_missing_object_names_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path());
        s.create().expect("create");
        let id = id_of(b"x");
        let e = s.read(ObjectKind::Data, &id, None).expect_err("missing");
        let path = dir.path().join(format!("data/{}/{id}", &id[..2]));
        assert_eq!(e.to_string(), format!("{} not found", path.display()));
    }

    #[test]
    fn a_range_past_the_end_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path());
        s.create().expect("create");
        let id = id_of(b"0123456789");
        s.write(ObjectKind::Data, &id, b"0123456789").expect("write");
        let e = s.read(ObjectKind::Data, &id, Some((8, 4))).expect_err("past end");
        assert!(matches!(e, StorageError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("past the end of the 10-byte object"), "{e}");
    }
}
