//! `offsite ls`: list the entries of a snapshot, or of one path in it.

use anyhow::Result;
use offsite_engine::{display_path, LsEntry};
use offsite_format::{Node, NodeKind};
use serde_json::json;

use crate::args::LsArgs;
use crate::output::Output;
use crate::resolve::Invocation;
use crate::units::{local_timestamp, mode_string, timestamp};
use crate::Status;

/// Print one line (or JSON object) per entry.
pub fn run(inv: &Invocation, out: Output, a: &LsArgs) -> Result<Status> {
    let reader = super::open_reader(inv)?;
    let snaps = super::snapshots(reader.repo())?;
    let (_, snap) = super::select(&snaps, &a.snapshot, &a.filter)?;
    let path = a.path.as_deref().map(super::snapshot_path);
    for entry in offsite_engine::ls(&reader, &snap, path.as_deref())? {
        if out.json {
            out.json(&entry_json(&entry))?;
        } else {
            out.line(entry_line(&entry))?;
        }
    }
    Ok(Status::Success)
}

/// The `ls -l` type character of a node kind.
pub fn type_char(kind: NodeKind) -> char {
    match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
    }
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Chardev => "chardev",
        NodeKind::Blockdev => "blockdev",
        NodeKind::Socket => "socket",
    }
}

fn owner(n: &Node) -> String {
    let user = n.user.clone().unwrap_or_else(|| n.uid.to_string());
    let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
    format!("{user}/{group}")
}

fn entry_line(e: &LsEntry) -> String {
    let n = &e.node;
    let mut line = format!(
        "{} {:<15} {:>12} {} {}",
        mode_string(type_char(n.kind), n.mode),
        owner(n),
        n.size,
        local_timestamp(timestamp(n.mtime.0, n.mtime.1)),
        display_path(&e.path)
    );
    if let Some(t) = &n.target {
        line.push_str(" -> ");
        line.push_str(&display_path(&t.0));
    }
    line
}

fn entry_json(e: &LsEntry) -> serde_json::Value {
    let n = &e.node;
    json!({
        "type": "entry",
        "path": display_path(&e.path),
        "kind": kind_name(n.kind),
        "mode": n.mode,
        "permissions": mode_string(type_char(n.kind), n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": timestamp(n.mtime.0, n.mtime.1).to_string(),
        "target": n.target.as_ref().map(|t| display_path(&t.0)),
    })
}
