//! Metadata, applied after content: ownership first (it clears setuid/setgid), then the
//! permission bits including setuid/setgid/sticky, extended attributes, and last the times
//! (nanoseconds; atime is set to mtime). Failures are reported for the path and never undo
//! restored content; without root, `EPERM` from chown is expected and ignored.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use offsite_format::{Node, NodeKind};
use xattr::FileExt as _;

use super::Ctx;

/// The stored mtime as a timespec, or `None` if the nanoseconds are out of range.
fn mtime(node: &Node) -> Option<TimeSpec> {
    let (s, ns) = node.mtime;
    if ns >= 1_000_000_000 {
        return None;
    }
    Some(TimeSpec::new(s as libc::time_t, i64::from(ns) as libc::c_long))
}

fn ids(node: &Node) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)))
}

fn mode(node: &Node) -> Mode {
    Mode::from_bits_truncate((node.mode & 0o7777) as libc::mode_t)
}

impl Ctx<'_> {
    fn chown_result(&self, path: &[u8], r: nix::Result<()>) {
        match r {
            Ok(()) => {}
            Err(Errno::EPERM) if !self.is_root => {}
            Err(e) => self.warn(path, format!("cannot set owner: {}", io::Error::from(e))),
        }
    }

    fn xattr_result(&self, path: &[u8], name: &[u8], r: io::Result<()>) {
        if let Err(e) = r {
            if e.raw_os_error() == Some(libc::ENOTSUP) || e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                if !self.xattr_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    self.warn(
                        path,
                        "the target filesystem does not support extended attributes; they are not restored"
                            .into(),
                    );
                }
            } else {
                self.warn(
                    path,
                    format!("cannot set extended attribute {}: {e}", String::from_utf8_lossy(name)),
                );
            }
        }
    }

    /// Apply a file's or directory's metadata through its open descriptor.
    pub(crate) fn apply_fd(&self, f: &File, node: &Node, path: &[u8]) {
        let fd = f.as_raw_fd();
        let (u, g) = ids(node);
        self.chown_result(path, nix::unistd::fchown(fd, u, g));
        if let Err(e) = nix::sys::stat::fchmod(fd, mode(node)) {
            self.error(path, format!("cannot set permissions: {}", io::Error::from(e)));
        }
        for x in &node.xattrs {
            let r = f.set_xattr(OsStr::from_bytes(&x.name.0), &x.value.0);
            self.xattr_result(path, &x.name.0, r);
        }
        match mtime(node) {
            Some(t) => {
                if let Err(e) = nix::sys::stat::futimens(fd, &t, &t) {
                    self.error(path, format!("cannot set times: {}", io::Error::from(e)));
                }
            }
            None => self.warn(path, "stored mtime is invalid; not restored".into()),
        }
    }

    /// Apply metadata to a symlink, FIFO or device just made as temporary `name` of directory
    /// `dir` and open as `handle` ([`super::target::Target::create_other`]), never through a
    /// call that follows a symlink. A FIFO's handle is a real descriptor: everything goes
    /// through it. A device's or symlink's is `O_PATH`: the owner is set through it, a
    /// device's mode through `/proc/self/fd/N`, extended attributes and times by name
    /// without following, in the temporary's place, which no one else can write
    /// (permissions are not set on symlinks: Linux has none).
    pub(crate) fn apply_other(&self, dir: usize, name: &[u8], handle: &File, node: &Node, path: &[u8]) {
        if node.kind == NodeKind::Fifo {
            return self.apply_fd(handle, node, path);
        }
        let (place, via) = match self.target.tmp_via(dir, name) {
            Ok(x) => x,
            Err(e) => return self.error(path, format!("cannot set metadata: {e}")),
        };
        let (u, g) = ids(node);
        self.chown_result(
            path,
            nix::unistd::fchownat(Some(handle.as_raw_fd()), "", u, g, AtFlags::AT_EMPTY_PATH),
        );
        if node.kind != NodeKind::Symlink {
            if let Err(e) = self.target.chmod_tmp(dir, name, handle, mode(node)) {
                self.error(path, format!("cannot set permissions: {e}"));
            }
        }
        for x in &node.xattrs {
            // lsetxattr: the last component (the entry itself) is not followed.
            let r = xattr::set(&via, OsStr::from_bytes(&x.name.0), &x.value.0);
            self.xattr_result(path, &x.name.0, r);
        }
        match mtime(node) {
            Some(t) => {
                let fd = Some(place.as_raw_fd());
                if let Err(e) = nix::sys::stat::utimensat(fd, name, &t, &t, UtimensatFlags::NoFollowSymlink) {
                    self.error(path, format!("cannot set times: {}", io::Error::from(e)));
                }
            }
            None => self.warn(path, "stored mtime is invalid; not restored".into()),
        }
    }

    /// Set every directory's metadata, children before parents, after all content is in place
    /// (so writing children does not disturb their directory's times).
    pub(crate) fn apply_dirs(&self, dir_ok: &[bool]) {
        // The private places of temporaries go first: removing one changes its directory.
        self.target.remove_places();
        for (i, d) in self.plan.dirs.iter().enumerate().skip(1).rev() {
            let Some(node) = &d.node else { continue };
            if !dir_ok[i] {
                continue;
            }
            match self.target.open_dir(i) {
                Ok(f) => self.apply_fd(&f, node, &d.path),
                Err(e) => self.error(&d.path, format!("cannot open directory to set metadata: {e}")),
            }
        }
    }
}
