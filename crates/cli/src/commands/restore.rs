//! `offsite restore`: write a snapshot (or part of it) into a target directory.

use anyhow::{bail, Result};
use offsite_engine::{Overwrite, RestoreOptions, RestoreSummary};
use serde_json::json;

use crate::args::{OverwriteArg, RestoreArgs};
use crate::output::{warn, CliReporter, Output};
use crate::resolve::Invocation;
use crate::units::format_bytes;
use crate::Status;

/// Restore, print the summary; fail if any entry could not be restored.
pub fn run(inv: &Invocation, out: Output, a: &RestoreArgs) -> Result<Status> {
    let reader = super::open_reader(inv)?;
    let snaps = super::snapshots(reader.repo())?;
    let (id, snap) = super::select(&snaps, &a.snapshot, &a.filter)?;
    let opts = RestoreOptions {
        target: std::path::absolute(&a.target).unwrap_or_else(|_| a.target.clone()),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: match a.overwrite {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::Never => Overwrite::Never,
        },
        threads: inv.threads,
    };
    let reporter = CliReporter::new(out, out.verbose > 0, "restore");
    let result = offsite_engine::restore(&reader, &snap, &opts, &reporter);
    reporter.finish();
    let summary = result?;
    for (path, message) in &summary.errors {
        if !reporter.already_named(path) {
            warn(format_args!("cannot restore {path}: {message}"));
        }
    }
    print_summary(out, &summary, &id.short(), &opts.target.display().to_string())?;
    if !summary.errors.is_empty() {
        bail!("{} entries could not be restored (named above)", summary.errors.len());
    }
    Ok(Status::Success)
}

fn print_summary(out: Output, s: &RestoreSummary, id: &str, target: &str) -> Result<()> {
    let errors: Vec<_> = s.errors.iter().map(|(p, m)| json!({"path": p, "message": m})).collect();
    out.json(&json!({
        "type": "summary",
        "files": s.files,
        "files_skipped": s.files_skipped,
        "dirs": s.dirs,
        "others": s.others,
        "bytes_written": s.bytes_written,
        "errors": errors,
    }))?;
    out.info(format_args!(
        "restored snapshot {id} to {target}: {} files ({}), {} dirs, {} others; {} files already there",
        s.files,
        format_bytes(s.bytes_written),
        s.dirs,
        s.others,
        s.files_skipped
    ))?;
    Ok(())
}
