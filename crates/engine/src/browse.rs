//! Browsing snapshots: find a node by path, list (ls), compare (diff), print one file (dump).
//! Paths are absolute byte paths as backed up (`/home/u/file`); the root tree is `/`.

use std::io::Write;

use offsite_format::{BlobId, ContentItem, Node, NodeKind, RawBytes, Snapshot, Tree};
use offsite_repo::{BlobReader, RepoError};

use crate::content::{resolve, slice_matches, slice_of, Refused};
use crate::error::{EngineError, EngineResult};
use crate::events::display_path;

/// Holes are written as zeros in pieces of this size, so a huge hole never needs a huge buffer.
const ZERO_CHUNK: usize = 64 * 1024;

/// One listed entry.
#[derive(Clone, Debug)]
pub struct LsEntry {
    /// absolute path in the snapshot
    pub path: Vec<u8>,
    /// the node with its metadata
    pub node: Node,
}

/// One difference between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffItem {
    /// "+" added, "-" removed, "M" changed (content or metadata)
    pub change: &'static str,
    /// absolute path
    pub path: Vec<u8>,
    /// size in the newer snapshot (or the older one for removals)
    pub size: u64,
}

/// The components of a user path: empty components (`//`, a trailing `/`) and `.` are
/// ignored; `..` is refused, since a snapshot path never needs it.
fn components(path: &[u8]) -> EngineResult<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(EngineError::Usage(format!(
                    "{}: paths in a snapshot may not contain `..`",
                    display_path(path)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `dir` + `/` + `name`, where `dir` is absolute (`/` for the root).
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn root_node(snapshot: &Snapshot) -> Node {
    Node {
        name: RawBytes(b"/".to_vec()),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: (0, 0),
        size: 0,
        inode: 0,
        dev: 0,
        links: 0,
        rdev: None,
        target: None,
        xattrs: Vec::new(),
        content: None,
        subtree: Some(snapshot.tree),
    }
}

fn load_tree(reader: &BlobReader, id: &BlobId, dir: &[u8]) -> EngineResult<Tree> {
    Ok(reader.tree(id, &format!("directory {}", display_path(dir)))?)
}

fn subtree_of(node: &Node, path: &[u8]) -> EngineResult<BlobId> {
    node.subtree.ok_or_else(|| {
        EngineError::Other(format!("directory {} has no subtree in the snapshot", display_path(path)))
    })
}

/// The node at `path` (`/` is the root directory, returned as a synthetic dir node named `/`
/// whose subtree is the snapshot's root tree). Errors with [`EngineError::NotInSnapshot`] when
/// a component is missing or a non-directory is walked through.
pub fn find_node(reader: &BlobReader, snapshot: &Snapshot, path: &[u8]) -> EngineResult<Node> {
    let mut node = root_node(snapshot);
    let mut walked = b"/".to_vec();
    for c in components(path)? {
        let missing = || EngineError::NotInSnapshot(display_path(path));
        if node.kind != NodeKind::Dir {
            return Err(missing());
        }
        let tree = load_tree(reader, &subtree_of(&node, &walked)?, &walked)?;
        node = tree.nodes.into_iter().find(|n| n.name.0 == c).ok_or_else(missing)?;
        walked = join(&walked, c);
    }
    Ok(node)
}

/// The canonical absolute form of a user path (`/a/b`, `/` for the root).
fn canonical(path: &[u8]) -> EngineResult<Vec<u8>> {
    let mut out = Vec::new();
    for c in components(path)? {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Every entry under `path` (recursively), or the whole snapshot for `None`, in tree order:
/// pre-order, each directory's entries in the order stored (sorted by name). The directory
/// named by `path` itself is not listed; a path naming a file (or any non-directory) lists
/// just that entry.
pub fn ls(reader: &BlobReader, snapshot: &Snapshot, path: Option<&[u8]>) -> EngineResult<Vec<LsEntry>> {
    let path = canonical(path.unwrap_or(b"/"))?;
    let node = find_node(reader, snapshot, &path)?;
    let mut out = Vec::new();
    if node.kind == NodeKind::Dir {
        list_dir(reader, &subtree_of(&node, &path)?, &path, &mut out)?;
    } else {
        out.push(LsEntry { path, node });
    }
    Ok(out)
}

fn list_dir(reader: &BlobReader, tree: &BlobId, dir: &[u8], out: &mut Vec<LsEntry>) -> EngineResult<()> {
    for node in load_tree(reader, tree, dir)?.nodes {
        let path = join(dir, &node.name.0);
        let sub = if node.kind == NodeKind::Dir { Some(subtree_of(&node, &path)?) } else { None };
        out.push(LsEntry { path: path.clone(), node });
        if let Some(sub) = sub {
            list_dir(reader, &sub, &path, out)?;
        }
    }
    Ok(())
}

/// Itemized changes from `old` to `new`, in path order; unchanged subtrees are skipped by id.
///
/// `+` an entry only in `new`, `-` only in `old` (a whole added or removed directory lists
/// every entry under it), `M` an entry in both whose content, size, mode, owner, mtime,
/// xattrs, symlink target or device number changed. A changed type is `-` then `+`.
/// Directories are `M` only for mode, owner or xattr changes: their mtime moves with every
/// added or removed child, which the children's own items already show.
///
/// Content is compared by blob id; slices of bundles by the keyed id of their bytes, so a
/// file stored again in another bundle is not a change (nothing is read from packs).
pub fn diff(reader: &BlobReader, old: &Snapshot, new: &Snapshot) -> EngineResult<Vec<DiffItem>> {
    let mut out = Vec::new();
    if old.tree != new.tree {
        diff_trees(reader, &old.tree, &new.tree, b"/", &mut out)?;
    }
    Ok(out)
}

fn sorted_nodes(reader: &BlobReader, id: &BlobId, dir: &[u8]) -> EngineResult<Vec<Node>> {
    let mut nodes = load_tree(reader, id, dir)?.nodes;
    // Trees are stored sorted; sorting again costs nothing then and keeps the merge correct
    // for a tree that is not.
    nodes.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    Ok(nodes)
}

fn diff_trees(
    reader: &BlobReader,
    old: &BlobId,
    new: &BlobId,
    dir: &[u8],
    out: &mut Vec<DiffItem>,
) -> EngineResult<()> {
    let old_nodes = sorted_nodes(reader, old, dir)?;
    let new_nodes = sorted_nodes(reader, new, dir)?;
    let (mut i, mut j) = (0, 0);
    while i < old_nodes.len() || j < new_nodes.len() {
        let order = match (old_nodes.get(i), new_nodes.get(j)) {
            (Some(a), Some(b)) => a.name.0.cmp(&b.name.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                whole(reader, &old_nodes[i], dir, "-", out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                whole(reader, &new_nodes[j], dir, "+", out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (a, b) = (&old_nodes[i], &new_nodes[j]);
                if a.kind != b.kind {
                    whole(reader, a, dir, "-", out)?;
                    whole(reader, b, dir, "+", out)?;
                } else {
                    let path = join(dir, &b.name.0);
                    if changed(a, b) {
                        out.push(DiffItem { change: "M", path: path.clone(), size: b.size });
                    }
                    if b.kind == NodeKind::Dir {
                        let (sa, sb) = (subtree_of(a, &path)?, subtree_of(b, &path)?);
                        if sa != sb {
                            diff_trees(reader, &sa, &sb, &path, out)?;
                        }
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// Whether an entry present in both snapshots (same name and type) changed.
fn changed(a: &Node, b: &Node) -> bool {
    let meta = a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs;
    if a.kind == NodeKind::Dir {
        return meta;
    }
    meta || a.mtime != b.mtime
        || a.size != b.size
        || a.target != b.target
        || a.rdev != b.rdev
        || (a.content != b.content && !same_slices(&a.content, &b.content))
}

/// Whether two different content lists hold the same bytes because they differ only in
/// slices with the same keyed content id and length (the same content stored in other
/// bundles).
fn same_slices(a: &Option<Vec<ContentItem>>, b: &Option<Vec<ContentItem>>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return false };
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (x, y) if x == y => true,
            (
                ContentItem::Slice { length: la, id: ia, .. },
                ContentItem::Slice { length: lb, id: ib, .. },
            ) => la == lb && ia == ib,
            _ => false,
        })
}

/// `node` and, for a directory, everything under it, all with the same change mark.
fn whole(
    reader: &BlobReader,
    node: &Node,
    dir: &[u8],
    change: &'static str,
    out: &mut Vec<DiffItem>,
) -> EngineResult<()> {
    let path = join(dir, &node.name.0);
    out.push(DiffItem { change, path: path.clone(), size: node.size });
    if node.kind == NodeKind::Dir {
        for child in sorted_nodes(reader, &subtree_of(node, &path)?, &path)? {
            whole(reader, &child, &path, change, out)?;
        }
    }
    Ok(())
}

/// Check, from the index alone, that every blob the content names is indexed with the type
/// the reference needs (a blob item: data; a slice: a bundle holding all of the slice's
/// bytes), so a bad content list is refused before anything is written.
fn check_content_refs(reader: &BlobReader, items: &[ContentItem], by: &str) -> EngineResult<()> {
    for item in items {
        match resolve(reader.index(), item) {
            Ok(_) => {}
            Err(Refused::Missing(id)) => {
                return Err(RepoError::MissingBlob { blob: id.short(), by: by.to_string() }.into())
            }
            Err(Refused::WrongType { id, want, found }) => {
                return Err(EngineError::Other(format!(
                    "blob {} named by {by} as a {} blob is indexed as a {} blob",
                    id.short(),
                    want,
                    found
                )))
            }
            Err(Refused::PastEnd { loc, offset, length, raw }) => {
                return Err(EngineError::Other(format!(
                    "{by}: slice of {length} bytes at {offset} runs past the end of bundle {} ({raw} bytes)",
                    loc.entry.id.short()
                )))
            }
        }
    }
    Ok(())
}

/// Write the content of the file at `path` to `out`; returns bytes written.
///
/// Blobs are read one at a time and each is verified (authenticated, decompressed within its
/// recorded length, and a data blob hashed against its id) before a byte of it is written; a
/// slice of a bundle writes just its bytes (the last bundle read is kept, so several slices of
/// one bundle read it once); holes are written as zeros from a small fixed buffer. A blob item
/// must name a data blob and a slice a bundle holding all of its bytes, else it is an error
/// naming the blob. A directory is an error (`PATH is a directory`), as is any other non-file
/// entry.
pub fn dump(reader: &BlobReader, snapshot: &Snapshot, path: &[u8], out: &mut dyn Write) -> EngineResult<u64> {
    let shown = display_path(&canonical(path)?);
    let node = find_node(reader, snapshot, path)?;
    match node.kind {
        NodeKind::File => {}
        NodeKind::Dir => return Err(EngineError::Usage(format!("{shown} is a directory"))),
        _ => return Err(EngineError::Usage(format!("{shown} is not a regular file"))),
    }
    let write_err = |e| EngineError::Io { path: format!("writing {shown}"), source: e };
    let by = format!("file {shown}");
    let mut written = 0u64;
    let zeros = vec![0u8; ZERO_CHUNK];
    let items = node.content.as_deref().unwrap_or_default();
    check_content_refs(reader, items, &by)?;
    let mut last_bundle: Option<(BlobId, Vec<u8>)> = None;
    let keys = reader.repo().keys();
    for item in items {
        match item {
            ContentItem::Blob(id) => {
                let data = reader.read(id, &by)?;
                out.write_all(&data).map_err(write_err)?;
                written += data.len() as u64;
            }
            ContentItem::Slice { bundle, offset, length, id } => {
                let holds = |plain: &[u8]| {
                    slice_of(plain, (*offset).into(), (*length).into())
                        .is_some_and(|b| slice_matches(keys, b, id))
                };
                // The bundle read last, if it holds this slice's bytes; else the first indexed
                // copy that does (a forged copy listed first is passed over).
                let plain = match last_bundle.take() {
                    Some((bid, plain)) if bid == *bundle && holds(&plain) => plain,
                    _ => reader.read_accepting(bundle, &by, None, &holds)?,
                };
                // Checked against the indexed length, which the read checked the plaintext
                // against; refused all the same should they ever disagree.
                let slice = slice_of(&plain, (*offset).into(), (*length).into()).ok_or_else(|| {
                    EngineError::Other(format!(
                        "{by}: slice of {length} bytes at {offset} runs past the end of bundle {} ({} bytes)",
                        bundle.short(),
                        plain.len()
                    ))
                })?;
                out.write_all(slice).map_err(write_err)?;
                written += slice.len() as u64;
                last_bundle = Some((*bundle, plain));
            }
            ContentItem::Hole { hole } => {
                let mut left = *hole;
                while left > 0 {
                    let n = left.min(ZERO_CHUNK as u64) as usize;
                    out.write_all(&zeros[..n]).map_err(write_err)?;
                    left -= n as u64;
                }
                written += hole;
            }
        }
    }
    out.flush().map_err(write_err)?;
    Ok(written)
}
