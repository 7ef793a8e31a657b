//! Walking every snapshot's trees (each distinct tree once, a level at a time in parallel), and,
//! when something is damaged, walking again to name the snapshots and paths it affects.

use std::collections::HashSet;

use offsite_format::{BlobId, BlobType, ContentItem, NodeKind, Snapshot, SnapshotId, Tree};
use offsite_repo::BlobReader;
use rayon::prelude::*;

use super::problems::describe;
use super::Findings;
use crate::content::{resolve, Refused, Source};
use crate::events::{display_path, Event, Reporter};

/// What checking one tree found.
struct TreeCheck {
    /// the tree decoded
    ok: bool,
    /// (object, message, blob the problem is about)
    issues: Vec<(String, String, BlobId)>,
    /// subtrees to check next
    subtrees: Vec<BlobId>,
    /// slices of bundles the tree's files name: (bundle, offset, length, keyed content id),
    /// verified against the bundle's bytes when data is read
    slices: Vec<(BlobId, u64, u64, BlobId)>,
}

impl TreeCheck {
    fn issue(&mut self, object: String, message: String, blob: BlobId) {
        self.issues.push((object, message, blob));
    }
}

/// Check every tree reachable from the snapshots; returns how many distinct trees decoded.
pub(crate) fn check_trees(
    reader: &BlobReader,
    snapshots: &[(SnapshotId, Snapshot)],
    found: &mut Findings,
    reporter: &dyn Reporter,
) -> u64 {
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut frontier: Vec<BlobId> =
        snapshots.iter().map(|(_, s)| s.tree).filter(|t| seen.insert(*t)).collect();
    let mut decoded = 0u64;
    while !frontier.is_empty() {
        let results: Vec<TreeCheck> = frontier.par_iter().map(|id| check_tree(reader, id, found)).collect();
        let mut next = Vec::new();
        for r in results {
            decoded += u64::from(r.ok);
            for (object, message, blob) in r.issues {
                let idx = found.problems.add(object, message);
                found.mark(blob, idx);
            }
            next.extend(r.subtrees.into_iter().filter(|t| seen.insert(*t)));
            for (bundle, within, len, id) in r.slices {
                found.slices.entry(bundle).or_default().push((within, len, id));
            }
        }
        if reporter.wants_progress() {
            reporter.report(Event::Progress {
                phase: "check",
                items_done: decoded,
                bytes_done: 0,
                items_total: None,
                bytes_total: None,
                current: Some("trees".into()),
            });
        }
        frontier = next;
    }
    decoded
}

fn check_tree(reader: &BlobReader, id: &BlobId, found: &Findings) -> TreeCheck {
    let mut r = TreeCheck { ok: false, issues: Vec::new(), subtrees: Vec::new(), slices: Vec::new() };
    let index = reader.index();
    let object = format!("tree {}", id.short());
    let Some(loc) = index.get(id) else {
        r.issue(object, "missing from the index".into(), *id);
        return r;
    };
    if loc.entry.ty != BlobType::Tree {
        r.issue(object, format!("named as a directory but indexed as a {} blob", loc.entry.ty), *id);
        return r;
    }
    let pack = index.pack(loc.pack).id;
    if found.unusable.contains(&pack) {
        return r; // reported with its pack; the blob is already marked
    }
    let bytes = match reader.read(id, "check") {
        Ok(b) => b,
        Err(e) => {
            r.issue(format!("data/{}", pack.short()), format!("tree {}: {}", id.short(), describe(&e)), *id);
            return r;
        }
    };
    let tree: Tree = match serde_json::from_slice(&bytes) {
        Ok(t) => t,
        Err(e) => {
            r.issue(object, format!("does not decode as a directory: {e}"), *id);
            return r;
        }
    };
    r.ok = true;
    for (i, node) in tree.nodes.iter().enumerate() {
        let name = display_path(&node.name.0);
        if !node.name_is_safe() {
            r.issue(object.clone(), format!("entry {name:?} has an unsafe name (restore refuses it)"), *id);
        }
        if i > 0 && tree.nodes[i - 1].name.0 >= node.name.0 {
            r.issue(
                object.clone(),
                format!("entries are not sorted by name or repeat a name (at {name:?})"),
                *id,
            );
        }
        match node.kind {
            NodeKind::Dir => match node.subtree {
                Some(sub) => r.subtrees.push(sub),
                None => r.issue(object.clone(), format!("directory {name:?} has no subtree"), *id),
            },
            NodeKind::File => check_content(reader, found, node, &name, &object, id, &mut r),
            _ => {}
        }
    }
    r
}

fn check_content(
    reader: &BlobReader,
    found: &Findings,
    node: &offsite_format::Node,
    name: &str,
    object: &str,
    tree: &BlobId,
    r: &mut TreeCheck,
) {
    let Some(content) = &node.content else {
        if node.size != 0 {
            r.issue(
                object.to_string(),
                format!("file {name:?} of {} bytes has no content list", node.size),
                *tree,
            );
        }
        return;
    };
    let mut total = 0u64;
    let mut complete = true;
    for item in content {
        match resolve(reader.index(), item) {
            Ok(Source::Hole(hole)) => total = total.saturating_add(hole),
            Ok(Source::Blob { loc, len, within, id }) => {
                if let Some(id) = id {
                    r.slices.push((loc.entry.id, within, len, id));
                }
                if found.unusable.contains(&reader.index().pack(loc.pack).id) {
                    complete = false;
                }
                total = total.saturating_add(len);
            }
            Err(Refused::Missing(b)) => {
                complete = false;
                r.issue(
                    format!("blob {}", b.short()),
                    "file content is referenced but missing from the index".into(),
                    b,
                );
            }
            Err(Refused::WrongType { id, want, found: ty }) => {
                complete = false;
                let named = if want == BlobType::Bundle { "named as a bundle but " } else { "" };
                r.issue(
                    format!("blob {}", id.short()),
                    format!("file content is {named}indexed as a {} blob", ty),
                    id,
                );
            }
            // Reported on the tree; the file's total still counts the slice as written.
            Err(Refused::PastEnd { loc, offset, length, raw }) => {
                r.issue(
                    object.to_string(),
                    format!(
                        "file {name:?}: slice of {length} bytes at {offset} runs past the end of bundle {} ({raw} bytes)",
                        loc.entry.id.short()
                    ),
                    *tree,
                );
                if found.unusable.contains(&reader.index().pack(loc.pack).id) {
                    complete = false;
                }
                total = total.saturating_add(length);
            }
        }
    }
    if complete && total != node.size {
        r.issue(
            object.to_string(),
            format!("file {name:?}: content adds up to {total} bytes, but its size is {}", node.size),
            *tree,
        );
    }
}

/// Walk the snapshots again and name, for every problem with marked blobs, the snapshots and
/// paths whose content or listing depends on them. Trees found free of damage are not
/// walked twice.
pub(crate) fn collect_affects(
    reader: &BlobReader,
    snapshots: &[(SnapshotId, Snapshot)],
    found: &mut Findings,
) {
    let mut walk = Affects { reader, clean: HashSet::new(), unreadable: HashSet::new() };
    for (sid, snap) in snapshots {
        let label = sid.short();
        if let Some(ps) = found.bad.get(&snap.tree).cloned() {
            for p in ps {
                found.problems.affect(p, format!("snapshot {label}: /"));
            }
        }
        walk.tree(&snap.tree, b"/", &label, found);
    }
}

struct Affects<'a> {
    reader: &'a BlobReader,
    clean: HashSet<BlobId>,
    unreadable: HashSet<BlobId>,
}

impl Affects<'_> {
    /// Returns whether anything damaged is under this tree.
    fn tree(&mut self, id: &BlobId, dir: &[u8], snap: &str, found: &mut Findings) -> bool {
        if self.clean.contains(id) || self.unreadable.contains(id) {
            return false;
        }
        let unusable = self.reader.index().get(id).is_none_or(|l| {
            l.entry.ty != BlobType::Tree || found.unusable.contains(&self.reader.index().pack(l.pack).id)
        });
        // A damaged tree may still be readable (bad names or sizes): then list under it too.
        let tree = if unusable { None } else { self.reader.tree(id, "check").ok() };
        let Some(tree) = tree else {
            self.unreadable.insert(*id);
            return false;
        };
        let mut any = false;
        for node in &tree.nodes {
            let mut path = dir.to_vec();
            if !path.ends_with(b"/") {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name.0);
            let mut hits: Vec<usize> = Vec::new();
            for item in node.content.iter().flatten() {
                // A damaged bundle affects every file with a slice of it.
                let blob = match item {
                    ContentItem::Blob(b) | ContentItem::Slice { bundle: b, .. } => b,
                    ContentItem::Hole { .. } => continue,
                };
                hits.extend(found.bad.get(blob).into_iter().flatten());
            }
            if let Some(sub) = &node.subtree {
                hits.extend(found.bad.get(sub).into_iter().flatten());
            }
            hits.sort_unstable();
            hits.dedup();
            if !hits.is_empty() {
                any = true;
                let shown = format!("snapshot {snap}: {}", display_path(&path));
                for p in hits {
                    found.problems.affect(p, shown.clone());
                }
            }
            if let Some(sub) = &node.subtree {
                any |= self.tree(sub, &path, snap, found);
            }
        }
        if !any {
            self.clean.insert(*id);
        }
        any
    }
}
