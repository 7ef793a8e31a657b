//! `offsite snapshots`: list snapshots (full keys only: snapshots are sealed).

use anyhow::Result;
use offsite_format::{RawBytes, Snapshot, SnapshotId};
use serde_json::json;

use crate::args::SnapshotsArgs;
use crate::output::{escape, Output};
use crate::resolve::Invocation;
use crate::units::local_time;
use crate::Status;

/// List the snapshots that pass the filter, oldest first.
pub fn run(inv: &Invocation, out: Output, a: &SnapshotsArgs) -> Result<Status> {
    let repo = super::open(inv)?;
    repo.require_full()?;
    let filter = super::filter(&a.filter);
    let set = repo.snapshot_set()?;
    let state = set.state_digest();
    let snaps: Vec<(SnapshotId, Snapshot)> =
        set.snapshots.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    if out.json {
        for (id, s) in &snaps {
            out.json(&json!({
                "type": "snapshot",
                "id": id.to_hex(),
                "time": s.time,
                "host": s.host,
                "user": s.user,
                "paths": paths(&s.paths),
                "tags": s.tags,
                "tree": s.tree.to_hex(),
                "parent": s.parent.map(|p| p.to_hex()),
                "summary": s.summary,
            }))?;
        }
        return Ok(Status::Success);
    }
    let rows: Vec<[String; 5]> = snaps
        .iter()
        .map(|(id, s)| {
            [id.short(), local_time(&s.time), s.host.clone(), s.tags.join(","), paths(&s.paths).join(",")]
        })
        .collect();
    print_table(out, ["ID", "Time", "Host", "Tags", "Paths"], &rows)?;
    out.info(format_args!("{} snapshot(s); repository state {state}", snaps.len()))?;
    Ok(Status::Success)
}

fn paths(p: &[RawBytes]) -> Vec<String> {
    p.iter().map(|b| offsite_engine::display_path(&b.0)).collect()
}

fn print_table(out: Output, header: [&str; 5], rows: &[[String; 5]]) -> Result<()> {
    // Columns are as wide as the cells will be shown, escaped (`Output::line` escapes).
    let shown_width = |cell: &str| escape(cell).chars().count();
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(shown_width(cell));
        }
    }
    let fmt = |cells: [&str; 5]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                line.push_str(&" ".repeat(w - shown_width(cell) + 2));
            }
        }
        line
    };
    out.line(fmt(header))?;
    for row in rows {
        out.line(fmt([&row[0], &row[1], &row[2], &row[3], &row[4]]))?;
    }
    Ok(())
}
