//! The plan: walk the snapshot's trees, validate every name, apply include/exclude, and list
//! the directories, files and other entries to restore. Nothing is written while planning, so
//! a hostile tree is refused before the target is touched.

use std::collections::{HashMap, HashSet};

use offsite_format::{BlobId, Node, NodeKind, Tree};
use offsite_repo::BlobReader;
use rayon::prelude::*;

use super::filter::Filter;
use super::target::DirTable;
use crate::error::{EngineError, EngineResult};
use crate::events::display_path;

/// Trees fetched in parallel at once while planning.
const TREE_BATCH: usize = 256;

/// A directory to create. Index 0 is the target itself (the snapshot's `/`, no node). A parent
/// always has a smaller index than its children.
pub(crate) struct PlanDir {
    /// index of the parent directory
    pub parent: usize,
    /// name in the parent
    pub name: Vec<u8>,
    /// absolute snapshot path
    pub path: Vec<u8>,
    /// metadata (none for the root)
    pub node: Option<Node>,
}

/// A regular file to restore.
pub(crate) struct PlanFile {
    /// index of its directory
    pub dir: usize,
    /// absolute snapshot path
    pub path: Vec<u8>,
    /// the tree node (name, metadata, content)
    pub node: Node,
    /// restore as a hard link to this earlier file (equal `(dev, inode)`, `links > 1`)
    pub link_to: Option<usize>,
}

/// A symlink, FIFO or device to create.
pub(crate) struct PlanOther {
    /// index of its directory
    pub dir: usize,
    /// absolute snapshot path
    pub path: Vec<u8>,
    /// the tree node
    pub node: Node,
}

/// Everything a restore will create.
#[derive(Default)]
pub(crate) struct Plan {
    /// directories, parents first
    pub dirs: Vec<PlanDir>,
    /// regular files
    pub files: Vec<PlanFile>,
    /// symlinks, FIFOs, devices
    pub others: Vec<PlanOther>,
    /// trees that could not be read: (path, message)
    pub errors: Vec<(Vec<u8>, String)>,
}

impl DirTable for Plan {
    fn parent_and_name(&self, idx: usize) -> (usize, &[u8]) {
        let d = &self.dirs[idx];
        (d.parent, &d.name)
    }
}

/// `parent/name` as an absolute snapshot path.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Refuse names that could leave the directory or collide.
fn validate(nodes: &[Node], dir: &[u8]) -> EngineResult<()> {
    let mut seen = HashSet::with_capacity(nodes.len());
    for n in nodes {
        if !n.name_is_safe() || !seen.insert(&n.name.0) {
            return Err(EngineError::UnsafeEntry { dir: display_path(dir), name: display_path(&n.name.0) });
        }
    }
    Ok(())
}

/// Walk the snapshot from its root tree and build the plan.
pub(crate) fn build(reader: &BlobReader, root: &BlobId, filter: &Filter) -> EngineResult<Plan> {
    let mut plan = Plan::default();
    plan.dirs.push(PlanDir { parent: 0, name: Vec::new(), path: b"/".to_vec(), node: None });
    // Whether each directory was included by a pattern (itself or an ancestor).
    let mut dir_included = vec![filter.root_included()];
    // Level by level, trees of a level fetched in parallel (a bounded batch at a time): over a
    // high-latency store one tree after another would take a round trip per directory.
    let mut frontier: Vec<(usize, BlobId)> = vec![(0, *root)];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for batch in frontier.chunks(TREE_BATCH) {
            let trees: Vec<_> = batch
                .par_iter()
                .map(|(dir, id)| (*dir, reader.tree(id, &display_path(&plan.dirs[*dir].path))))
                .collect();
            for (dir, tree) in trees {
                match tree {
                    Ok(t) => add_tree(&mut plan, &mut dir_included, &mut next, filter, dir, t)?,
                    Err(e) => plan.errors.push((plan.dirs[dir].path.clone(), e.to_string())),
                }
            }
        }
        frontier = next;
    }
    // Directories are numbered parent-first. Drop directories that hold nothing selected (only with includes).
    if !filter.root_included() {
        prune(&mut plan, &dir_included);
    }
    link_hard_links(&mut plan);
    Ok(plan)
}

/// Add one directory's entries to the plan; subdirectories to walk go to `next`.
fn add_tree(
    plan: &mut Plan,
    dir_included: &mut Vec<bool>,
    next: &mut Vec<(usize, BlobId)>,
    filter: &Filter,
    dir: usize,
    tree: Tree,
) -> EngineResult<()> {
    let path = plan.dirs[dir].path.clone();
    validate(&tree.nodes, &path)?;
    let parent_included = dir_included[dir];
    for node in tree.nodes {
        let child = join(&path, &node.name.0);
        let is_dir = node.kind == NodeKind::Dir;
        if filter.excluded(&child, is_dir) {
            continue;
        }
        let inc = filter.included(&child, is_dir, parent_included);
        match node.kind {
            NodeKind::Dir => {
                let idx = plan.dirs.len();
                let subtree = node.subtree;
                if subtree.is_none() {
                    plan.errors.push((child.clone(), "directory without a subtree".into()));
                }
                plan.dirs.push(PlanDir {
                    parent: dir,
                    name: node.name.0.clone(),
                    path: child,
                    node: Some(node),
                });
                dir_included.push(inc);
                if let Some(s) = subtree {
                    next.push((idx, s));
                }
            }
            NodeKind::File if inc => plan.files.push(PlanFile { dir, path: child, node, link_to: None }),
            NodeKind::Symlink | NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev if inc => {
                plan.others.push(PlanOther { dir, path: child, node });
            }
            _ => {} // sockets are not restored; entries outside the includes are skipped
        }
    }
    Ok(())
}

/// Keep only directories that were included themselves or lead to something selected.
fn prune(plan: &mut Plan, included: &[bool]) {
    let n = plan.dirs.len();
    let mut keep = included.to_vec();
    keep[0] = true;
    let mark = |mut d: usize, keep: &mut [bool]| {
        while !keep[d] {
            keep[d] = true;
            d = plan.dirs[d].parent;
        }
    };
    for f in &plan.files {
        mark(f.dir, &mut keep);
    }
    for o in &plan.others {
        mark(o.dir, &mut keep);
    }
    for (d, inc) in plan.dirs.iter().zip(included).skip(1) {
        if *inc {
            mark(d.parent, &mut keep);
        }
    }
    let mut new_index = vec![usize::MAX; n];
    let mut dirs = Vec::new();
    for (i, d) in std::mem::take(&mut plan.dirs).into_iter().enumerate() {
        if keep[i] {
            new_index[i] = dirs.len();
            let parent = if i == 0 { 0 } else { new_index[d.parent] };
            dirs.push(PlanDir { parent, ..d });
        }
    }
    plan.dirs = dirs;
    for f in &mut plan.files {
        f.dir = new_index[f.dir];
    }
    for o in &mut plan.others {
        o.dir = new_index[o.dir];
    }
}

/// Files with `links > 1` and equal `(dev, inode)` become links to the first of them.
fn link_hard_links(plan: &mut Plan) {
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, f) in plan.files.iter_mut().enumerate() {
        if f.node.links > 1 && f.node.inode != 0 {
            match first.entry((f.node.dev, f.node.inode)) {
                std::collections::hash_map::Entry::Occupied(e) => f.link_to = Some(*e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
    }
}
