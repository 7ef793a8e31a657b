//! `offsite check`: verify structure and optionally data; exit 1 when problems are found.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use offsite_engine::{CheckOptions, ReadData};
use serde_json::json;

use crate::args::CheckArgs;
use crate::output::{CliReporter, Output};
use crate::resolve::Invocation;
use crate::units::parse_percent;
use crate::Status;

/// Check the repository and print every problem with the paths it affects.
pub fn run(inv: &Invocation, out: Output, a: &CheckArgs) -> Result<Status> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(p), _) => ReadData::Subset(parse_percent(p).context("--read-data-subset")?),
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = Arc::new(super::open(inv)?);
    repo.require_full()?;
    let reporter = CliReporter::new(out, false, "check");
    let result = offsite_engine::check(repo, &CheckOptions { read_data }, &reporter);
    reporter.finish();
    let report = result?;
    for p in &report.problems {
        out.json(
            &json!({"type": "problem", "object": p.object, "message": p.message, "affects": p.affects}),
        )?;
        out.line(format_args!("{}: {}", p.object, p.message))?;
        for a in &p.affects {
            out.line(format_args!("  affects {a}"))?;
        }
    }
    out.json(&json!({
        "type": "summary",
        "problems": report.problems.len(),
        "snapshots": report.snapshots,
        "trees": report.trees,
        "packs_read": report.packs_read,
        "blobs_read": report.blobs_read,
    }))?;
    out.info(format_args!(
        "checked {} snapshots, {} trees; read {} packs, {} blobs",
        report.snapshots, report.trees, report.packs_read, report.blobs_read
    ))?;
    if !report.problems.is_empty() {
        bail!("the repository has {} problem(s) (listed above)", report.problems.len());
    }
    out.info("no problems found")?;
    Ok(Status::Success)
}
