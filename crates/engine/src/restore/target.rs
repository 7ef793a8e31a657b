//! The restore target on disk. Directories are held open by descriptor and every entry is
//! created, opened, renamed or removed relative to its parent directory's descriptor, never
//! following a symlink: a symlink planted inside the target (`TARGET/a -> /etc`) is refused or
//! replaced, never written through. Regular files are opened through `/proc/self/fd/N/name`
//! (the kernel resolves `N` to exactly the directory held open, and `O_NOFOLLOW` guards the
//! name), which also keeps every path short however deep the tree is. Without `/proc` the full
//! path is used; each directory on it was checked when it was created.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, Mode, SFlag};
use parking_lot::Mutex;

use crate::error::{EngineError, EngineResult};

/// Prefix of the temporary names files are written under before they are renamed into place.
pub const TMP_PREFIX: &str = ".offsite-tmp-";

/// Open directory descriptors kept at most (the rest are reopened on demand).
const DIR_CACHE: usize = 128;

/// A directory of the plan as the target sees it: its parent (index) and its name.
pub(crate) trait DirTable: Sync {
    /// Parent index and name of directory `idx` (`idx > 0`; 0 is the target itself).
    fn parent_and_name(&self, idx: usize) -> (usize, &[u8]);
}

/// The target directory and the directories of the plan under it.
pub(crate) struct Target<'a> {
    root_path: PathBuf,
    root: Arc<File>,
    proc_fd: bool,
    dirs: &'a dyn DirTable,
    cache: Mutex<HashMap<usize, Arc<File>>>,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// A fresh temporary name.
pub(crate) fn tmp_name() -> Vec<u8> {
    let r: [u8; 8] = offsite_crypto::random_bytes();
    format!("{TMP_PREFIX}{}", hex::encode(r)).into_bytes()
}

/// Whether `name` is one of our temporary names (prefix and 16 lowercase hex digits).
pub(crate) fn is_tmp_name(name: &[u8]) -> bool {
    name.strip_prefix(TMP_PREFIX.as_bytes())
        .is_some_and(|r| r.len() == 16 && r.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

/// Create the target if missing, open it, and prove it is writable (a probe file created and
/// removed), so an unusable target fails before any work with an error naming it.
pub(crate) fn prepare_root(path: &Path) -> EngineResult<File> {
    if path.as_os_str().is_empty() {
        return Err(EngineError::Usage("restore needs a target directory".into()));
    }
    std::fs::create_dir_all(path).map_err(|e| EngineError::io(path, e))?;
    let root = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| EngineError::io(path, e))?;
    let probe = tmp_name();
    let probe_path = path.join(os(&probe));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&probe_path)
        .map_err(|e| {
            EngineError::io(path, io::Error::new(e.kind(), format!("target is not writable: {e}")))
        })?;
    std::fs::remove_file(&probe_path).map_err(|e| EngineError::io(&probe_path, e))?;
    Ok(root)
}

impl<'a> Target<'a> {
    /// A target rooted at the opened directory `root` (found at `root_path`).
    pub(crate) fn new(root_path: PathBuf, root: File, dirs: &'a dyn DirTable) -> Self {
        Target {
            root_path,
            root: Arc::new(root),
            proc_fd: Path::new("/proc/self/fd").is_dir(),
            dirs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Full path of directory `idx` (messages, and the fallback without `/proc`).
    pub(crate) fn dir_path(&self, idx: usize) -> PathBuf {
        let mut names = Vec::new();
        let mut i = idx;
        while i != 0 {
            let (p, n) = self.dirs.parent_and_name(i);
            names.push(n);
            i = p;
        }
        let mut path = self.root_path.clone();
        for n in names.iter().rev() {
            path.push(os(n));
        }
        path
    }

    /// Full path of entry `name` in directory `dir` (messages).
    pub(crate) fn entry_path(&self, dir: usize, name: &[u8]) -> PathBuf {
        self.dir_path(dir).join(os(name))
    }

    /// A path that reaches `name` inside the directory open as `fd` (index `dir`).
    fn via(&self, fd: &File, dir: usize, name: &[u8]) -> PathBuf {
        if self.proc_fd {
            let mut p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            p.push(os(name));
            p
        } else {
            self.entry_path(dir, name)
        }
    }

    /// Open directory `idx` (0 = the target), walking down from the nearest open ancestor and
    /// refusing any component that is not a real directory.
    pub(crate) fn open_dir(&self, idx: usize) -> io::Result<Arc<File>> {
        if idx == 0 {
            return Ok(self.root.clone());
        }
        if let Some(f) = self.cache.lock().get(&idx) {
            return Ok(f.clone());
        }
        // Collect the chain up to an open ancestor.
        let mut chain = vec![idx];
        let mut base = self.root.clone();
        let mut i = idx;
        loop {
            let (p, _) = self.dirs.parent_and_name(i);
            if p == 0 {
                break;
            }
            if let Some(f) = self.cache.lock().get(&p) {
                base = f.clone();
                break;
            }
            chain.push(p);
            i = p;
        }
        let mut cur = base;
        for &d in chain.iter().rev() {
            let (p, name) = self.dirs.parent_and_name(d);
            let f = Arc::new(self.open_child_dir(&cur, p, name)?);
            let mut c = self.cache.lock();
            if c.len() >= DIR_CACHE {
                c.clear();
            }
            c.insert(d, f.clone());
            cur = f;
        }
        Ok(cur)
    }

    fn open_child_dir(&self, parent: &File, parent_idx: usize, name: &[u8]) -> io::Result<File> {
        super::hook::cross("restore.dir_open", || {
            (self.dir_path(parent_idx), name.to_vec(), self.entry_path(parent_idx, name))
        });
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.via(parent, parent_idx, name))
    }

    /// The entry `name` in directory `dir`, without following a symlink; `None` if absent.
    pub(crate) fn stat(&self, dir: usize, name: &[u8]) -> io::Result<Option<FileStat>> {
        let d = self.open_dir(dir)?;
        match nix::sys::stat::fstatat(Some(d.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(s) => Ok(Some(s)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Make directory `idx` exist as a real directory: create it (mode 0700 until its metadata
    /// is set at the end), keep an existing directory, and replace anything else found under
    /// its name (a planted symlink, a file) unless `replace` is false, which is an error.
    /// Returns whether it was created.
    pub(crate) fn ensure_dir(&self, idx: usize, replace: bool) -> io::Result<bool> {
        let (p, name) = self.dirs.parent_and_name(idx);
        let parent = self.open_dir(p)?;
        let fd = Some(parent.as_raw_fd());
        let created = match nix::sys::stat::mkdirat(fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    false
                } else if replace {
                    nix::unistd::unlinkat(fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                        .map_err(errno)?;
                    nix::sys::stat::mkdirat(fd, name, Mode::from_bits_truncate(0o700)).map_err(errno)?;
                    true
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory (overwrite never)",
                    ));
                }
            }
            Err(e) => return Err(errno(e)),
        };
        // Opening it proves it is a directory reached without a symlink, and caches it.
        self.open_dir(idx)?;
        Ok(created)
    }

    /// Remove temporary files an interrupted restore left in directory `idx`.
    pub(crate) fn remove_stale_tmp(&self, idx: usize) -> io::Result<()> {
        let d = self.open_dir(idx)?;
        let listing = if self.proc_fd {
            PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd()))
        } else {
            self.dir_path(idx)
        };
        for e in std::fs::read_dir(listing)? {
            let e = e?;
            let name = e.file_name();
            if is_tmp_name(name.as_bytes()) && !e.file_type()?.is_dir() {
                let _ = nix::unistd::unlinkat(
                    Some(d.as_raw_fd()),
                    name.as_os_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
        }
        Ok(())
    }

    /// Create a new empty file under a fresh temporary name in `dir`; returns name and handle.
    pub(crate) fn create_tmp(&self, dir: usize) -> io::Result<(Vec<u8>, File)> {
        let d = self.open_dir(dir)?;
        loop {
            let name = tmp_name();
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(self.via(&d, dir, &name))
            {
                Ok(f) => return Ok((name, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Open an existing regular file in `dir` for writing (never through a symlink).
    pub(crate) fn open_write(&self, dir: usize, name: &[u8]) -> io::Result<File> {
        let d = self.open_dir(dir)?;
        super::hook::cross("restore.tmp_reopen", || {
            (self.dir_path(dir), name.to_vec(), self.entry_path(dir, name))
        });
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.via(&d, dir, name))
    }

    /// Open an existing file in `dir` for reading (never through a symlink, never blocking on
    /// a FIFO).
    pub(crate) fn open_read(&self, dir: usize, name: &[u8]) -> io::Result<File> {
        let d = self.open_dir(dir)?;
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(self.via(&d, dir, name))
    }

    /// Rename `from` to `to` inside `dir`, replacing whatever non-directory is at `to`.
    pub(crate) fn rename(&self, dir: usize, from: &[u8], to: &[u8]) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        let fd = Some(d.as_raw_fd());
        nix::fcntl::renameat(fd, from, fd, to).map_err(errno)
    }

    /// Remove the non-directory entry `name` in `dir`.
    pub(crate) fn unlink(&self, dir: usize, name: &[u8]) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        nix::unistd::unlinkat(Some(d.as_raw_fd()), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(errno)
    }

    /// Hard-link `from_name` in `from_dir` as `to_name` in `to_dir` (links a symlink itself).
    pub(crate) fn link(
        &self,
        from_dir: usize,
        from_name: &[u8],
        to_dir: usize,
        to_name: &[u8],
    ) -> io::Result<()> {
        let a = self.open_dir(from_dir)?;
        let b = self.open_dir(to_dir)?;
        nix::unistd::linkat(
            Some(a.as_raw_fd()),
            os(from_name),
            Some(b.as_raw_fd()),
            os(to_name),
            AtFlags::empty(),
        )
        .map_err(errno)
    }

    /// Create a symlink `name` in `dir` pointing at `target` (raw bytes).
    pub(crate) fn symlink(&self, dir: usize, name: &[u8], target: &[u8]) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        nix::unistd::symlinkat(os(target), Some(d.as_raw_fd()), os(name)).map_err(errno)
    }

    /// Create a FIFO `name` in `dir`.
    pub(crate) fn mkfifo(&self, dir: usize, name: &[u8]) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        nix::unistd::mkfifoat(Some(d.as_raw_fd()), name, Mode::from_bits_truncate(0o600)).map_err(errno)
    }

    /// Create a device node `name` in `dir`.
    pub(crate) fn mknod(&self, dir: usize, name: &[u8], kind: SFlag, rdev: u64) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        nix::sys::stat::mknodat(Some(d.as_raw_fd()), name, kind, Mode::from_bits_truncate(0o600), rdev)
            .map_err(errno)
    }

    /// A path reaching `name` in `dir` through the directory's descriptor (for calls that only
    /// take paths, such as `lsetxattr`; the last component is not followed by those).
    pub(crate) fn entry_via(&self, dir: usize, name: &[u8]) -> io::Result<(Arc<File>, PathBuf)> {
        let d = self.open_dir(dir)?;
        let p = self.via(&d, dir, name);
        Ok((d, p))
    }
}
