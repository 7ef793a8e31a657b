//! The restore target on disk.
//!
//! Directories are held open by descriptor and every entry is created, opened, renamed or
//! removed relative to its directory's descriptor, one name at a time, never following a
//! symlink: a symlink planted inside the target (`TARGET/a -> /etc`) is refused or replaced,
//! never written through. Names are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! where the kernel has it (Linux 5.6 and later), else with `openat(O_NOFOLLOW)`; the plan has
//! checked that every name is one component.
//!
//! Restore often runs as root, and its target (or a directory an earlier restore left open to
//! all) may be writable by other users, who can swap any name in it between two of restore's
//! steps. So restore does not trust such a name from one step to the next:
//! - a directory restore created must be ours and closed to others when first opened, and one
//!   opened again (the cache of descriptors is bounded) must be the same (device, inode);
//! - everything made under a temporary name (a file being written, a symlink, FIFO or device)
//!   is made in a *place* no one else can write: the directory itself when only we can write
//!   into it, else a private directory (ours, closed to others) made in it for this restore. Its
//!   metadata is set there, through a descriptor where Linux allows, and renaming it to its
//!   final name is the last step that names it;
//! - a temporary is known by its (device, inode) from its creation: it is opened again, and
//!   renamed, only if its name still holds that inode. This is the second line, not the first:
//!   an inode number is free for the next new file once the old one is deleted and closed, so
//!   only the private place keeps others from swapping a name; behind it the check catches
//!   root or a bug, and says so instead of writing into something else.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use parking_lot::Mutex;

use super::hook;
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

/// (device, inode): what a name must still hold when restore uses it again.
type Id = (libc::dev_t, libc::ino_t);

fn id_of(st: &FileStat) -> Id {
    (st.st_dev, st.st_ino)
}

/// Where the temporaries of one directory are made.
#[derive(Clone)]
enum Place {
    /// the directory itself: no one else can write into it
    Itself,
    /// a private directory made in it, by name and identity
    Private { name: Vec<u8>, id: Id },
}

/// A symlink, FIFO or device to make.
pub(crate) enum Other<'b> {
    /// a symlink to these bytes
    Symlink(&'b [u8]),
    /// a FIFO
    Fifo,
    /// a character or block device with this number
    Device(SFlag, u64),
}

/// The target directory and the directories of the plan under it.
pub(crate) struct Target<'a> {
    root_path: PathBuf,
    root: Arc<File>,
    euid: libc::uid_t,
    proc_fd: bool,
    dirs: &'a dyn DirTable,
    cache: Mutex<HashMap<usize, Arc<File>>>,
    /// every directory opened so far: opened again, it must be the same
    ids: Mutex<HashMap<usize, Id>>,
    /// the place of each directory that had a temporary
    places: Mutex<HashMap<usize, Place>>,
    /// open private places (bounded like `cache`)
    private: Mutex<HashMap<usize, Arc<File>>>,
    /// temporaries made and not yet renamed or removed: name -> (directory, identity)
    tmps: Mutex<HashMap<Vec<u8>, (usize, Id)>>,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// The error for a name that no longer holds what restore made or opened there.
fn replaced(what: &str) -> io::Error {
    io::Error::other(format!(
        "the {what} restore was working on was replaced by something else (someone who can write into \
         this directory?); not touched"
    ))
}

fn fstat(f: &File) -> io::Result<FileStat> {
    nix::sys::stat::fstat(f.as_raw_fd()).map_err(errno)
}

/// Whether `st` is ours with no permission for anyone else (a directory restore just made).
fn private_to(st: &FileStat, euid: libc::uid_t) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_uid == euid && st.st_mode & 0o077 == 0
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

/// Whether `openat2` is worth trying: cleared at its first ENOSYS (a kernel before 5.6), or when
/// it fails with EPERM where `openat` succeeds (a seccomp filter refusing calls it does not know).
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Open `name`, one component, in directory `dir`, never following a symlink (with `O_PATH` a
/// symlink is opened itself).
fn open_at(dir: &File, name: &[u8], flags: OFlag, mode: Mode) -> io::Result<File> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let plain = || nix::fcntl::openat(Some(dir.as_raw_fd()), os(name), flags, mode);
    let raw = if OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        let mut how = OpenHow::new().flags(flags).resolve(resolve);
        if flags.contains(OFlag::O_CREAT) {
            how = how.mode(mode);
        }
        match nix::fcntl::openat2(dir.as_raw_fd(), os(name), how) {
            Err(Errno::ENOSYS) => {
                OPENAT2.store(false, Ordering::Relaxed);
                plain()
            }
            Err(Errno::EPERM) => {
                let r = plain();
                if r.is_ok() {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                r
            }
            // Only for a `..` it could not vouch for (there is none): ask `openat`.
            Err(Errno::EAGAIN) => plain(),
            r => r,
        }
    } else {
        plain()
    };
    own(dir, raw.map_err(errno)?)
}

/// nix 0.29 returns `openat`'s descriptor as a bare number, and owning that takes `unsafe`
/// (forbidden here). So `raw` is moved into a `File` by `dup3` onto a duplicate of `like`, a
/// descriptor that `File` already owns, and closed.
fn own(like: &File, raw: RawFd) -> io::Result<File> {
    let f = like
        .try_clone()
        .and_then(|f| nix::unistd::dup3(raw, f.as_raw_fd(), OFlag::O_CLOEXEC).map(|_| f).map_err(errno));
    let _ = nix::unistd::close(raw);
    f
}

/// Create the target if missing, open it, and prove it is writable (a probe file created and
/// removed), so an unusable target fails before any work with an error naming it.
pub(crate) fn prepare_root(path: &Path) -> EngineResult<File> {
    if path.as_os_str().is_empty() {
        return Err(EngineError::Usage("restore needs a target directory".into()));
    }
    std::fs::create_dir_all(path).map_err(|e| EngineError::io(path, e))?;
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| EngineError::io(path, e))?;
    let probe = tmp_name();
    open_at(&root, &probe, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(0o600))
        .map_err(|e| {
            EngineError::io(path, io::Error::new(e.kind(), format!("target is not writable: {e}")))
        })?;
    nix::unistd::unlinkat(Some(root.as_raw_fd()), os(&probe), UnlinkatFlags::NoRemoveDir)
        .map_err(|e| EngineError::io(path.join(os(&probe)), errno(e)))?;
    Ok(root)
}

impl<'a> Target<'a> {
    /// A target rooted at the opened directory `root` (found at `root_path`).
    pub(crate) fn new(root_path: PathBuf, root: File, dirs: &'a dyn DirTable) -> Self {
        Target {
            root_path,
            root: Arc::new(root),
            euid: nix::unistd::geteuid().as_raw(),
            proc_fd: Path::new("/proc/self/fd").is_dir(),
            dirs,
            cache: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            places: Mutex::new(HashMap::new()),
            private: Mutex::new(HashMap::new()),
            tmps: Mutex::new(HashMap::new()),
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

    /// Keep `f`, open as directory `idx`, in a bounded cache.
    fn keep(cache: &Mutex<HashMap<usize, Arc<File>>>, idx: usize, f: &Arc<File>) {
        let mut c = cache.lock();
        if c.len() >= DIR_CACHE {
            c.clear();
        }
        c.insert(idx, f.clone());
    }

    /// Open directory `idx` (0 = the target), walking down from the nearest open ancestor and
    /// refusing any component that is not a real directory, or not the one opened before.
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
            let f = self.open_child_dir(&cur, p, name)?;
            let id = id_of(&fstat(&f)?);
            if *self.ids.lock().entry(d).or_insert(id) != id {
                return Err(replaced("directory"));
            }
            let f = Arc::new(f);
            Self::keep(&self.cache, d, &f);
            cur = f;
        }
        Ok(cur)
    }

    fn open_child_dir(&self, parent: &File, parent_idx: usize, name: &[u8]) -> io::Result<File> {
        hook::cross("restore.dir_open", || {
            (self.dir_path(parent_idx), name.to_vec(), self.entry_path(parent_idx, name))
        });
        open_at(parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
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
    /// One it created must still be ours and closed to others when it is opened. Returns
    /// whether it was created.
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
                    nix::unistd::unlinkat(fd, name, UnlinkatFlags::NoRemoveDir).map_err(errno)?;
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
        let f = self.open_child_dir(&parent, p, name)?;
        let st = fstat(&f)?;
        if created && !private_to(&st, self.euid) {
            return Err(replaced("directory"));
        }
        self.ids.lock().insert(idx, id_of(&st));
        Self::keep(&self.cache, idx, &Arc::new(f));
        Ok(created)
    }

    /// The names in directory `d`, found at `path` (used without `/proc`).
    fn list(&self, d: &File, path: impl FnOnce() -> PathBuf) -> io::Result<Vec<Vec<u8>>> {
        use std::os::unix::ffi::OsStringExt;
        let listing =
            if self.proc_fd { PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())) } else { path() };
        std::fs::read_dir(listing)?.map(|e| e.map(|e| e.file_name().into_vec())).collect()
    }

    /// Remove the private place `name` in directory `dir` (open as `d`), with whatever it still
    /// holds (only our temporaries: no one else can write into it), if it is still `id` or,
    /// for one a crashed restore left, still ours and closed to others.
    fn remove_place(&self, d: &File, dir: usize, name: &[u8], id: Option<Id>) {
        let Ok(p) = open_at(d, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) else { return };
        let Ok(st) = fstat(&p) else { return };
        if id.map_or(!private_to(&st, self.euid), |id| id != id_of(&st)) {
            return;
        }
        for n in self.list(&p, || self.entry_path(dir, name)).unwrap_or_default() {
            let _ = nix::unistd::unlinkat(Some(p.as_raw_fd()), os(&n), UnlinkatFlags::NoRemoveDir);
        }
        let _ = nix::unistd::unlinkat(Some(d.as_raw_fd()), os(name), UnlinkatFlags::RemoveDir);
    }

    /// Remove temporary files an interrupted restore left in directory `idx`, and the private
    /// places it left with what they hold.
    pub(crate) fn remove_stale_tmp(&self, idx: usize) -> io::Result<()> {
        let d = self.open_dir(idx)?;
        for name in self.list(&d, || self.dir_path(idx))?.into_iter().filter(|n| is_tmp_name(n)) {
            match nix::sys::stat::fstatat(Some(d.as_raw_fd()), os(&name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    self.remove_place(&d, idx, &name, None)
                }
                Ok(_) => {
                    let _ = nix::unistd::unlinkat(Some(d.as_raw_fd()), os(&name), UnlinkatFlags::NoRemoveDir);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The place of directory `dir`'s temporaries, decided at its first: the directory itself
    /// if only we can write into it (ours, no write permission for group or others; root
    /// could anyway), else a private directory made in it.
    fn place(&self, dir: usize) -> io::Result<Place> {
        let mut places = self.places.lock();
        if let Some(p) = places.get(&dir) {
            return Ok(p.clone());
        }
        let d = self.open_dir(dir)?;
        let st = fstat(&d)?;
        let place = if st.st_uid == self.euid && st.st_mode & 0o022 == 0 {
            Place::Itself
        } else {
            let (name, f) = loop {
                let name = tmp_name();
                match nix::sys::stat::mkdirat(Some(d.as_raw_fd()), os(&name), Mode::from_bits_truncate(0o700))
                {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => continue,
                    Err(e) => return Err(errno(e)),
                }
                break (
                    name.clone(),
                    open_at(&d, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?,
                );
            };
            let st = fstat(&f)?;
            if !private_to(&st, self.euid) {
                return Err(replaced("private directory for temporary files"));
            }
            Self::keep(&self.private, dir, &Arc::new(f));
            Place::Private { name, id: id_of(&st) }
        };
        places.insert(dir, place.clone());
        Ok(place)
    }

    /// The open place of directory `dir`'s temporaries.
    fn place_dir(&self, dir: usize) -> io::Result<Arc<File>> {
        match self.place(dir)? {
            Place::Itself => self.open_dir(dir),
            Place::Private { name, id } => {
                if let Some(f) = self.private.lock().get(&dir) {
                    return Ok(f.clone());
                }
                let d = self.open_dir(dir)?;
                let f = open_at(&d, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
                if id_of(&fstat(&f)?) != id {
                    return Err(replaced("private directory for temporary files"));
                }
                let f = Arc::new(f);
                Self::keep(&self.private, dir, &f);
                Ok(f)
            }
        }
    }

    /// Full path of the place of directory `dir`'s temporaries (messages, steps, the fallback
    /// without `/proc`).
    fn place_path(&self, dir: usize) -> PathBuf {
        let mut p = self.dir_path(dir);
        if let Some(Place::Private { name, .. }) = self.places.lock().get(&dir) {
            p.push(os(name));
        }
        p
    }

    /// Remove the private places (empty by now: every temporary was renamed or removed), so
    /// that directories' times can be set after. Places are made again if needed.
    pub(crate) fn remove_places(&self) {
        let places: Vec<(usize, Place)> = self.places.lock().drain().collect();
        self.private.lock().clear();
        for (dir, place) in places {
            if let (Place::Private { name, id }, Ok(d)) = (place, self.open_dir(dir)) {
                self.remove_place(&d, dir, &name, Some(id));
            }
        }
    }

    /// The identity of `name` if it is a temporary of directory `dir`.
    fn tmp_id(&self, dir: usize, name: &[u8]) -> Option<Id> {
        self.tmps.lock().get(name).filter(|(d, _)| *d == dir).map(|(_, id)| *id)
    }

    /// Fail unless `name` in `place` still holds `id`.
    fn check_tmp(place: &File, name: &[u8], id: Id, what: &str) -> io::Result<()> {
        let st = nix::sys::stat::fstatat(Some(place.as_raw_fd()), os(name), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(errno)?;
        if id_of(&st) == id {
            Ok(())
        } else {
            Err(replaced(what))
        }
    }

    /// A fresh temporary name in the place of `dir`, unused by this restore: `make` creates the
    /// entry under it (EEXIST: another name is tried).
    fn fresh<T>(&self, mut make: impl FnMut(&[u8]) -> io::Result<T>) -> io::Result<(Vec<u8>, T)> {
        loop {
            let name = tmp_name();
            if self.tmps.lock().contains_key(&name) {
                continue;
            }
            match make(&name) {
                Ok(t) => return Ok((name, t)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Create a new empty file under a fresh temporary name for `dir`; returns name and handle.
    pub(crate) fn create_tmp(&self, dir: usize) -> io::Result<(Vec<u8>, File)> {
        let place = self.place_dir(dir)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
        let (name, f) = self.fresh(|n| open_at(&place, n, flags, Mode::from_bits_truncate(0o600)))?;
        let id = id_of(&fstat(&f)?);
        self.tmps.lock().insert(name.clone(), (dir, id));
        Ok((name, f))
    }

    /// Open a temporary file of `dir` again for writing: only if it is still the file
    /// `create_tmp` made. (Another name is opened in `dir`, never through a symlink.)
    pub(crate) fn open_write(&self, dir: usize, name: &[u8]) -> io::Result<File> {
        let Some(id) = self.tmp_id(dir, name) else {
            let d = self.open_dir(dir)?;
            return open_at(&d, name, OFlag::O_WRONLY, Mode::empty());
        };
        let place = self.place_dir(dir)?;
        hook::cross("restore.tmp_reopen", || {
            (self.dir_path(dir), name.to_vec(), self.place_path(dir).join(os(name)))
        });
        let f = open_at(&place, name, OFlag::O_WRONLY, Mode::empty())?;
        if id_of(&fstat(&f)?) != id {
            return Err(replaced("temporary file"));
        }
        Ok(f)
    }

    /// Open an existing file in `dir` for reading (never through a symlink, never blocking on
    /// a FIFO).
    pub(crate) fn open_read(&self, dir: usize, name: &[u8]) -> io::Result<File> {
        let d = self.open_dir(dir)?;
        open_at(&d, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())
    }

    /// Rename `from` to `to` in `dir`, replacing whatever non-directory is at `to`. A temporary
    /// `from` comes from its place, and only if it is still what was made.
    pub(crate) fn rename(&self, dir: usize, from: &[u8], to: &[u8]) -> io::Result<()> {
        let d = self.open_dir(dir)?;
        let fd = Some(d.as_raw_fd());
        let Some(id) = self.tmp_id(dir, from) else {
            return nix::fcntl::renameat(fd, from, fd, to).map_err(errno);
        };
        let place = self.place_dir(dir)?;
        Self::check_tmp(&place, from, id, "temporary")?;
        nix::fcntl::renameat(Some(place.as_raw_fd()), from, fd, to).map_err(errno)?;
        self.tmps.lock().remove(from);
        Ok(())
    }

    /// Remove the non-directory entry `name` in `dir` (a temporary: from its place).
    pub(crate) fn unlink(&self, dir: usize, name: &[u8]) -> io::Result<()> {
        let d = match self.tmp_id(dir, name) {
            Some(_) => {
                self.tmps.lock().remove(name);
                self.place_dir(dir)?
            }
            None => self.open_dir(dir)?,
        };
        nix::unistd::unlinkat(Some(d.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir).map_err(errno)
    }

    /// Hard-link `from_name` in `from_dir` under a fresh temporary name for `to_dir`. Returns
    /// the name and what it links (a symlink is linked itself, not followed).
    pub(crate) fn link_tmp(
        &self,
        from_dir: usize,
        from_name: &[u8],
        to_dir: usize,
    ) -> io::Result<(Vec<u8>, FileStat)> {
        let a = self.open_dir(from_dir)?;
        let place = self.place_dir(to_dir)?;
        let (name, ()) = self.fresh(|n| {
            nix::unistd::linkat(
                Some(a.as_raw_fd()),
                os(from_name),
                Some(place.as_raw_fd()),
                os(n),
                AtFlags::empty(),
            )
            .map_err(errno)
        })?;
        let st = nix::sys::stat::fstatat(Some(place.as_raw_fd()), os(&name), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(errno)?;
        self.tmps.lock().insert(name.clone(), (to_dir, id_of(&st)));
        Ok((name, st))
    }

    /// Make a symlink, FIFO or device under a fresh temporary name for `dir`, and open it: a
    /// FIFO for reading without blocking (a descriptor metadata can be set through), a
    /// symlink or device `O_PATH` (nothing is read: opening a device can have effects). It
    /// must be what was just made (its kind, ours, one link), else it is unlinked from the
    /// place and refused. Returns its name and handle.
    pub(crate) fn create_other(&self, dir: usize, what: &Other<'_>) -> io::Result<(Vec<u8>, File)> {
        let place = self.place_dir(dir)?;
        let pfd = Some(place.as_raw_fd());
        let private = Mode::from_bits_truncate(0o600);
        let (name, ()) = self.fresh(|n| {
            match *what {
                Other::Symlink(t) => nix::unistd::symlinkat(os(t), pfd, os(n)),
                Other::Fifo => nix::unistd::mkfifoat(pfd, os(n), private),
                Other::Device(kind, rdev) => nix::sys::stat::mknodat(pfd, os(n), kind, private, rdev),
            }
            .map_err(errno)
        })?;
        hook::cross("restore.other_created", || {
            (self.dir_path(dir), name.clone(), self.place_path(dir).join(os(&name)))
        });
        let (flags, kind, rdev, noun) = match *what {
            Other::Symlink(_) => (OFlag::O_PATH, libc::S_IFLNK, None, "symlink"),
            Other::Fifo => (OFlag::O_RDONLY | OFlag::O_NONBLOCK, libc::S_IFIFO, None, "FIFO"),
            Other::Device(kind, rdev) => (OFlag::O_PATH, kind.bits(), Some(rdev), "device"),
        };
        let checked = match open_at(&place, &name, flags, Mode::empty()) {
            Ok(f) => fstat(&f).and_then(|st| {
                let ours = st.st_mode & libc::S_IFMT == kind
                    && st.st_uid == self.euid
                    && st.st_nlink == 1
                    && rdev.is_none_or(|r| r == st.st_rdev);
                if ours {
                    Ok((f, id_of(&st)))
                } else {
                    Err(replaced(noun))
                }
            }),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(replaced(noun)),
            Err(e) => Err(e),
        };
        match checked {
            Ok((f, id)) => {
                self.tmps.lock().insert(name.clone(), (dir, id));
                Ok((name, f))
            }
            Err(e) => {
                let _ = nix::unistd::unlinkat(pfd, os(&name), UnlinkatFlags::NoRemoveDir);
                Err(e)
            }
        }
    }

    /// The place of temporary `name` of `dir` and a path reaching it (for calls that only take
    /// paths and do not follow the last component, `lsetxattr`, `utimensat` with
    /// `AT_SYMLINK_NOFOLLOW`): through the place's descriptor in `/proc` (which also keeps
    /// every path short however deep the tree is), else the full path.
    pub(crate) fn tmp_via(&self, dir: usize, name: &[u8]) -> io::Result<(Arc<File>, PathBuf)> {
        let place = self.place_dir(dir)?;
        let mut p = if self.proc_fd {
            PathBuf::from(format!("/proc/self/fd/{}", place.as_raw_fd()))
        } else {
            self.place_path(dir)
        };
        p.push(os(name));
        Ok((place, p))
    }

    /// Set the mode of temporary `name` of `dir`, open as `handle` (`O_PATH`, checked by
    /// [`Target::create_other`]; `fchmod` refuses such a descriptor) without following a
    /// symlink: through `/proc/self/fd/N`, which leads to exactly that inode, else by name with
    /// `AT_SYMLINK_NOFOLLOW` (C libraries without it fail rather than follow).
    pub(crate) fn chmod_tmp(&self, dir: usize, name: &[u8], handle: &File, mode: Mode) -> io::Result<()> {
        if self.proc_fd {
            let p = format!("/proc/self/fd/{}", handle.as_raw_fd());
            return nix::sys::stat::fchmodat(None, p.as_str(), mode, FchmodatFlags::FollowSymlink)
                .map_err(errno);
        }
        let place = self.place_dir(dir)?;
        nix::sys::stat::fchmodat(Some(place.as_raw_fd()), os(name), mode, FchmodatFlags::NoFollowSymlink)
            .map_err(errno)
    }
}

impl Drop for Target<'_> {
    /// A restore that stopped early leaves no private place behind.
    fn drop(&mut self) {
        self.remove_places();
    }
}
