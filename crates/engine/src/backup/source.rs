//! Reading metadata from the source filesystem into tree [`Node`]s.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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

/// The node kind of a file type, `None` for unknown types.
pub fn kind_of(meta: &Metadata) -> Option<NodeKind> {
    let ft = meta.file_type();
    Some(if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
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
    meta: &Metadata,
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
