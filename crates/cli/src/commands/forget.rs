//! `offsite forget --missing`: acknowledge snapshots the storage no longer holds.
//!
//! A snapshot named by another snapshot's `seen` list, or seen by this client before, that is
//! neither listed nor forgotten stops every command ("missing but seen before"). Once the
//! owner knows why (a stolen backup-only key wrote a snapshot naming ids that never existed,
//! or the storage lost one), this writes a forget record naming them (docs/FORMAT.md §10).
//! The full `forget` policy surface comes with the retention work.

use anyhow::{bail, Result};
use offsite_format::SnapshotId;
use serde_json::json;

use crate::args::ForgetArgs;
use crate::output::Output;
use crate::resolve::Invocation;
use crate::Status;

/// Show the missing snapshots the arguments name and acknowledge them.
pub fn run(inv: &Invocation, out: Output, a: &ForgetArgs) -> Result<Status> {
    let repo = super::open(inv)?;
    repo.require_full()?;
    let missing = repo.missing_snapshots()?;
    let mut chosen: Vec<SnapshotId> = Vec::new();
    for want in &a.missing {
        let hits: Vec<_> = if want == "all" {
            missing.iter().collect()
        } else {
            missing.iter().filter(|m| m.id.to_hex().starts_with(&want.to_lowercase())).collect()
        };
        match hits.as_slice() {
            [] if want == "all" => {}
            [] => bail!(
                "no missing snapshot matches {want:?}: `offsite forget --missing` takes only snapshots reported \
                 as missing but seen before ({} now)",
                missing.len()
            ),
            [one] => chosen.push(one.id),
            _ if want == "all" => chosen.extend(hits.iter().map(|m| m.id)),
            _ => bail!("missing snapshot id prefix {want:?} is ambiguous; give more characters"),
        }
    }
    chosen.sort();
    chosen.dedup();
    for m in missing.iter().filter(|m| chosen.contains(&m.id)) {
        if out.json {
            out.json(
                &json!({"type": "missing", "id": m.id.to_hex(), "how": m.how, "acknowledged": !a.dry_run}),
            )?;
        } else {
            out.line(format_args!("missing {} ({}): its files cannot be restored", m.id.short(), m.how))?;
        }
    }
    if chosen.is_empty() {
        out.info("no snapshot is missing")?;
        return Ok(Status::Success);
    }
    if a.dry_run {
        out.info(format_args!("dry run: {} snapshot(s) would be acknowledged as gone", chosen.len()))?;
        return Ok(Status::Success);
    }
    let n = chosen.len();
    let record = repo.acknowledge_missing(chosen)?;
    out.info(format_args!("acknowledged {n} snapshot(s) as gone (forget record {})", record.short()))?;
    Ok(Status::Success)
}
