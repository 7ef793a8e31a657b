//! Entries without content: hard links to files already restored, symlinks (raw byte
//! targets), FIFOs and device nodes (root only). Each is created under a temporary name in a
//! place no one else can write (`target.rs`), checked and opened, its metadata set through
//! that handle, then renamed over the final name, so an existing entry is replaced whole.

use std::sync::atomic::Ordering;

use nix::sys::stat::SFlag;
use offsite_format::NodeKind;
use rayon::prelude::*;

use super::content::FileStatus;
use super::plan::PlanOther;
use super::target::Other;
use super::{Ctx, Overwrite};

impl Ctx<'_> {
    /// Restore files planned as hard links to an earlier file, once that file is in place.
    pub(crate) fn restore_links(&self, dir_ok: &[bool], status: &[FileStatus]) {
        for f in &self.plan.files {
            let Some(leader) = f.link_to else { continue };
            if !dir_ok[f.dir] {
                continue;
            }
            let l = &self.plan.files[leader];
            if !matches!(status[leader], FileStatus::Written | FileStatus::Skipped) {
                self.error(
                    &f.path,
                    format!(
                        "not restored: it is a hard link of {}, which was not restored",
                        String::from_utf8_lossy(&l.path)
                    ),
                );
                continue;
            }
            let name = &f.node.name.0;
            let existing = match self.target.stat(f.dir, name) {
                Ok(e) => e,
                Err(e) => {
                    self.error(&f.path, format!("cannot inspect the target: {e}"));
                    continue;
                }
            };
            if let Some(st) = existing {
                let skip = match self.opts.overwrite {
                    Overwrite::Never => true,
                    Overwrite::Always => false,
                    Overwrite::IfChanged => self
                        .target
                        .stat(l.dir, &l.node.name.0)
                        .ok()
                        .flatten()
                        .is_some_and(|ls| ls.st_ino == st.st_ino && ls.st_dev == st.st_dev),
                };
                if skip {
                    self.counters.files_skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let r = self.target.link_tmp(l.dir, &l.node.name.0, f.dir).and_then(|(tmp, st)| {
                // What the leader's name holds now must be a regular file and, unless it was
                // an existing file left as it was, the one restored there: its size and, when
                // we could set it, its owner.
                let known =
                    status[leader] == FileStatus::Written || self.opts.overwrite == Overwrite::IfChanged;
                let owner = !self.is_root || (st.st_uid, st.st_gid) == (l.node.uid, l.node.gid);
                let same = st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && (!known || (u64::try_from(st.st_size).ok() == Some(l.node.size) && owner));
                let r = if same {
                    self.target.rename(f.dir, &tmp, name)
                } else {
                    Err(std::io::Error::other(format!(
                        "{} was replaced by something else since it was restored; not linked",
                        String::from_utf8_lossy(&l.path)
                    )))
                };
                r.inspect_err(|_| {
                    let _ = self.target.unlink(f.dir, &tmp);
                })
            });
            match r {
                Ok(()) => {
                    self.counters.files.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.error(&f.path, format!("cannot create hard link: {e}")),
            }
        }
    }

    /// Create every planned symlink, FIFO and device.
    pub(crate) fn restore_others(&self, dir_ok: &[bool]) {
        self.plan.others.par_iter().filter(|o| dir_ok[o.dir]).for_each(|o| self.restore_other(o));
    }

    fn restore_other(&self, o: &PlanOther) {
        let name = &o.node.name.0;
        let existing = match self.target.stat(o.dir, name) {
            Ok(e) => e,
            Err(e) => return self.error(&o.path, format!("cannot inspect the target: {e}")),
        };
        if let Some(st) = existing {
            let skip = match self.opts.overwrite {
                Overwrite::Never => true,
                Overwrite::Always => false,
                Overwrite::IfChanged => {
                    o.node.kind == NodeKind::Symlink
                        && st.st_mode & libc::S_IFMT == libc::S_IFLNK
                        && self.read_link(o.dir, name).as_deref()
                            == o.node.target.as_ref().map(|t| t.0.as_slice())
                }
            };
            if skip {
                return;
            }
        }
        let what = match o.node.kind {
            NodeKind::Symlink => match &o.node.target {
                Some(t) => Other::Symlink(&t.0),
                None => return self.error(&o.path, "symlink without a target".into()),
            },
            NodeKind::Fifo => Other::Fifo,
            NodeKind::Chardev | NodeKind::Blockdev => {
                if !self.is_root {
                    return self.error(&o.path, "device nodes can only be restored by root".into());
                }
                let Some(rdev) = o.node.rdev else {
                    return self.error(&o.path, "device without a device number".into());
                };
                let kind = if o.node.kind == NodeKind::Chardev { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                Other::Device(kind, rdev)
            }
            NodeKind::File | NodeKind::Dir | NodeKind::Socket => return,
        };
        let (tmp, handle) = match self.target.create_other(o.dir, &what) {
            Ok(x) => x,
            Err(e) => {
                self.check_fatal(&self.target.entry_path(o.dir, name), &e);
                return self.error(&o.path, format!("cannot create: {e}"));
            }
        };
        self.apply_other(o.dir, &tmp, &handle, &o.node, &o.path);
        drop(handle);
        match self.target.rename(o.dir, &tmp, name) {
            Ok(()) => {
                self.counters.others.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = self.target.unlink(o.dir, &tmp);
                self.error(&o.path, format!("cannot rename into place: {e}"));
            }
        }
    }

    fn read_link(&self, dir: usize, name: &[u8]) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStringExt;
        let d = self.target.open_dir(dir).ok()?;
        nix::fcntl::readlinkat(Some(d.as_raw_fd()), name).ok().map(OsStringExt::into_vec)
    }
}
