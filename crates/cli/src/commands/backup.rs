//! `offsite backup`: store files and directories as a new snapshot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use offsite_engine::{BackupOptions, BackupOutcome, Event, Reporter};
use serde_json::json;

use crate::args::BackupArgs;
use crate::output::{warn, warn_unreadable, CliReporter, Output};
use crate::resolve::Invocation;
use crate::units::{format_bytes, format_duration_ms, parse_size};
use crate::Status;

/// Back up, print the summary, and say whether every file could be read.
pub fn run(inv: &Invocation, out: Output, a: BackupArgs) -> Result<Status> {
    let exclude_larger_than =
        a.exclude_larger_than.as_deref().map(parse_size).transpose().context("--exclude-larger-than")?;
    let (paths, mut errors) = existing_paths(&offsite_engine::backup::normalize_paths(&a.paths)?);
    if paths.is_empty() {
        let (path, msg) = &errors[0];
        bail!("nothing to back up: cannot read {path}: {msg}");
    }
    let repo = Arc::new(super::open(inv)?);
    let opts = BackupOptions {
        paths,
        excludes: a.excludes,
        exclude_files: a.exclude_files,
        exclude_caches: a.exclude_caches,
        one_file_system: a.one_file_system,
        exclude_larger_than,
        tags: a.tags,
        host: a.host,
        user: None,
        dry_run: a.dry_run,
        threads: inv.threads,
        force: a.force,
        itemize: a.dry_run || out.verbose > 0,
    };
    let reporter = CliReporter::new(out, a.dry_run || out.verbose > 0, "backup");
    for (path, message) in &errors {
        reporter.report(Event::Error { path: path.clone(), message: message.clone() });
    }
    let started = Instant::now();
    let result = offsite_engine::backup(repo, &opts, &reporter);
    reporter.finish();
    let outcome = result?;
    if reporter.broken_pipe() {
        return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
    }
    for (path, message) in &outcome.errors {
        if !reporter.already_named(path) {
            warn_unreadable(path, message);
        }
    }
    errors.extend(outcome.errors.iter().cloned());
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    print_summary(out, &outcome, &errors, elapsed)?;
    if errors.is_empty() {
        Ok(Status::Success)
    } else {
        if !out.json {
            warn(format_args!("{} path(s) could not be read and are not in the snapshot", errors.len()));
        }
        Ok(Status::Incomplete)
    }
}

/// Split the (normalized) paths given into those that exist and those that do not, with the
/// reason, so one mistyped path does not stop the backup of the others.
fn existing_paths(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match p.symlink_metadata() {
            Ok(_) => ok.push(p.clone()),
            Err(e) => errors.push((p.display().to_string(), e.to_string())),
        }
    }
    (ok, errors)
}

fn print_summary(out: Output, o: &BackupOutcome, errors: &[(String, String)], elapsed_ms: u64) -> Result<()> {
    let s = &o.snapshot.summary;
    let duration_ms = if s.duration_ms > 0 { s.duration_ms } else { elapsed_ms };
    let errors_json: Vec<_> = errors.iter().map(|(p, m)| json!({"path": p, "message": m})).collect();
    out.json(&json!({
        "type": "summary",
        "snapshot": o.id.map(|id| id.to_hex()),
        "dry_run": o.id.is_none(),
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unchanged": s.files_unchanged,
        "dirs": s.dirs,
        "others": s.others,
        "bytes_read": s.bytes_read,
        "bytes_total": s.bytes_total,
        "bytes_added": s.bytes_added,
        "duration_ms": duration_ms,
        "errors": errors_json,
        "state": o.state,
    }))?;
    out.info(format_args!(
        "Files: {} new, {} changed, {} unchanged",
        s.files_new, s.files_changed, s.files_unchanged
    ))?;
    out.info(format_args!("Dirs: {}", s.dirs))?;
    out.info(format_args!("Read: {}", format_bytes(s.bytes_read)))?;
    out.info(format_args!("Added to the repository: {} (stored)", format_bytes(s.bytes_added)))?;
    out.info(format_args!("Duration: {}", format_duration_ms(duration_ms)))?;
    match o.id {
        Some(id) => {
            out.info(format_args!("snapshot {} saved", id.short()))?;
            if let Some(state) = &o.state {
                out.info(format_args!("repository state {state}"))?;
            }
        }
        None => out.info("dry run: nothing was saved")?,
    }
    Ok(())
}
