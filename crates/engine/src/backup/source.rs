//! Reading metadata from the source filesystem into tree [`Node`]s.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::{fstatat, SFlag};

use offsite_format::{Node, NodeKind, RawBytes, Xattr};
use parking_lot::Mutex;

/// Resolves uids and gids to names, caching lookups.
#[derive(Debug, Default)]
pub struct Owners {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl Owners {
    fn user(&self, uid: u32) -> Option<String> {
        self.users
            .lock()
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
            })
            .clone()
    }
    fn group(&self, gid: u32) -> Option<String> {
        self.groups
            .lock()
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
            })
            .clone()
    }
}

/// What `lstat` says of an entry. Taken with `fstatat` relative to the descriptor of the
/// directory being read ([`Stat::at`]): one name resolved, not the whole path (path lookups
/// were most of an unchanged backup's system time), and nothing a concurrent rename of a
/// parent directory could redirect. Accessors mirror [`MetadataExt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    /// `lstat` of `name` inside the open directory `dir` (`fstatat` with
    /// `AT_SYMLINK_NOFOLLOW`).
    pub fn at(dir: &File, name: &[u8]) -> std::io::Result<Stat> {
        let st = fstatat(Some(dir.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// From metadata the standard library read (`lstat` by path, `fstat`).
    pub fn from_meta(m: &Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Device of the filesystem.
    pub fn dev(&self) -> u64 {
        self.dev
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }
    /// File type and permission bits (`st_mode`).
    pub fn mode(&self) -> u32 {
        self.mode
    }
    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }
    /// Owner.
    pub fn uid(&self) -> u32 {
        self.uid
    }
    /// Group.
    pub fn gid(&self) -> u32 {
        self.gid
    }
    /// Device number of a device node.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }
    /// Modification time, seconds.
    pub fn mtime(&self) -> i64 {
        self.mtime.0
    }
    /// Modification time, nanoseconds.
    pub fn mtime_nsec(&self) -> i64 {
        self.mtime.1
    }
    /// Status change time, seconds.
    pub fn ctime(&self) -> i64 {
        self.ctime.0
    }
    /// Status change time, nanoseconds.
    pub fn ctime_nsec(&self) -> i64 {
        self.ctime.1
    }
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == SFlag::S_IFDIR
    }
    fn file_type(&self) -> SFlag {
        SFlag::from_bits_truncate(self.mode & SFlag::S_IFMT.bits())
    }
}

/// The node kind of a file type, `None` for unknown types.
pub fn kind_of(meta: &Stat) -> Option<NodeKind> {
    let ft = meta.file_type();
    Some(if ft == SFlag::S_IFREG {
        NodeKind::File
    } else if ft == SFlag::S_IFDIR {
        NodeKind::Dir
    } else if ft == SFlag::S_IFLNK {
        NodeKind::Symlink
    } else if ft == SFlag::S_IFIFO {
        NodeKind::Fifo
    } else if ft == SFlag::S_IFCHR {
        NodeKind::Chardev
    } else if ft == SFlag::S_IFBLK {
        NodeKind::Blockdev
    } else if ft == SFlag::S_IFSOCK {
        NodeKind::Socket
    } else {
        return None;
    })
}

/// Build a node (without content or subtree) from `lstat` metadata, reading the symlink target
/// and the xattrs (unless `xattrs` gives them, from the files cache). Xattr failures
/// (unsupported filesystem) yield no xattrs.
pub fn node_from(
    path: &Path,
    name: &[u8],
    meta: &Stat,
    kind: NodeKind,
    owners: &Owners,
    xattrs: Option<Vec<Xattr>>,
) -> std::io::Result<Node> {
    let target = if kind == NodeKind::Symlink {
        Some(RawBytes(std::fs::read_link(path)?.as_os_str().as_bytes().to_vec()))
    } else {
        None
    };
    let hardlink = kind == NodeKind::File && meta.nlink() > 1;
    Ok(Node {
        name: RawBytes(name.to_vec()),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: owners.user(meta.uid()),
        group: owners.group(meta.gid()),
        mtime: (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0)),
        size: if kind == NodeKind::File { meta.len() } else { 0 },
        inode: if hardlink { meta.ino() } else { 0 },
        dev: if hardlink { meta.dev() } else { 0 },
        links: if hardlink { meta.nlink() } else { 0 },
        rdev: matches!(kind, NodeKind::Chardev | NodeKind::Blockdev).then(|| meta.rdev()),
        target,
        xattrs: match xattrs {
            Some(x) => x,
            None => read_xattrs(path),
        },
        content: None,
        subtree: None,
    })
}

fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some(Xattr { name: RawBytes(n.as_bytes().to_vec()), value: RawBytes(value) })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
