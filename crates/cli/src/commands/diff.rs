//! `offsite diff`: itemized changes between two snapshots (`+` added, `M` changed, `-` removed).

use anyhow::Result;
use offsite_engine::{display_path, Event};

use crate::args::DiffArgs;
use crate::output::Output;
use crate::resolve::Invocation;
use crate::Status;

/// Print one line per difference, then a count.
pub fn run(inv: &Invocation, out: Output, a: &DiffArgs) -> Result<Status> {
    let reader = super::open_reader(inv)?;
    let snaps = super::snapshots(reader.repo())?;
    let (_, old) = super::select(&snaps, &a.old, &a.filter)?;
    let (_, new) = super::select(&snaps, &a.new, &a.filter)?;
    let items = offsite_engine::diff(&reader, &old, &new)?;
    let (mut added, mut changed, mut removed) = (0u64, 0u64, 0u64);
    for item in &items {
        match item.change {
            "+" => added += 1,
            "-" => removed += 1,
            _ => changed += 1,
        }
        let path = display_path(&item.path);
        out.line(format_args!("{} {:>7} {path}", item.change, item.size))?;
        out.json(&Event::Change { change: item.change, path, size: item.size })?;
    }
    out.json(
        &serde_json::json!({"type": "summary", "added": added, "changed": changed, "removed": removed}),
    )?;
    out.info(format_args!("{added} added, {changed} changed, {removed} removed"))?;
    Ok(Status::Success)
}
