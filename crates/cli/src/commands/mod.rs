//! One module per subcommand, each a thin adapter: open the repository, call one engine or
//! repository function, render the result. Shared steps (open, load the index, select a
//! snapshot) live here.

mod backup;
mod check;
mod diff;
mod dump;
mod forget;
mod init;
mod key;
mod ls;
mod restore;
mod snapshots;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use offsite_backend::ObjectKind;
use offsite_format::{Snapshot, SnapshotId};
use offsite_repo::{BlobReader, Index, RepoError, Repository, SnapshotFilter};

use crate::args::{Cli, Command, FilterArgs};
use crate::output::Output;
use crate::password::{self, Purpose};
use crate::resolve::{open_storage, resolve, Invocation};
use crate::Status;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Status> {
    let inv = resolve(&cli.global);
    let out = Output::new(&inv);
    match cli.command {
        Command::Init => init::run(&inv, out),
        Command::Backup(a) => backup::run(&inv, out, a),
        Command::Snapshots(a) => snapshots::run(&inv, out, &a),
        Command::Ls(a) => ls::run(&inv, out, &a),
        Command::Diff(a) => diff::run(&inv, out, &a),
        Command::Dump(a) => dump::run(&inv, out, &a),
        Command::Restore(a) => restore::run(&inv, out, &a),
        Command::Check(a) => check::run(&inv, out, &a),
        Command::Forget(a) => forget::run(&inv, out, &a),
        Command::Key(k) => key::run(&inv, out, k),
    }
}

/// Open the repository with the invocation's passphrase. A missing repository is reported
/// before any passphrase is asked for.
pub fn open(inv: &Invocation) -> Result<Repository> {
    let storage = open_storage(inv)?;
    match storage.stat(ObjectKind::Config, "") {
        Err(e) if e.is_not_found() => {
            return Err(RepoError::NoRepository { location: storage.location() }.into())
        }
        _ => {}
    }
    let pass = password::read(&inv.password, Purpose::Open(&storage.location()))?;
    let started = std::time::Instant::now();
    let mut repo = Repository::open_with_key(storage, &pass, &inv.cache, inv.key_id.as_deref())?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "repository opened (key derived)");
    for w in repo.warnings() {
        crate::output::warn(w);
    }
    repo.set_expect_latest(inv.expect_latest.clone());
    if !repo.has_local_record() && inv.expect_latest.is_none() {
        crate::output::notice(format_args!(
            "this client has no record of repository {} (a new machine, a lost cache or --no-cache), so it \
             cannot tell an older state of it from the current one this time; compare the state digest that \
             `offsite snapshots` prints with a trusted client's, or pin the newest snapshot with --expect-latest ID",
            repo.config().id.short()
        ));
    }
    inv.warn_if_fast_kdf();
    Ok(repo)
}

/// Open the repository for reading: a full key, the index loaded, a blob reader.
pub fn open_reader(inv: &Invocation) -> Result<BlobReader> {
    let repo = Arc::new(open(inv)?);
    repo.require_full()?;
    let index = Index::load(&**repo.storage(), repo.keys()).context("loading the index")?;
    Ok(BlobReader::new(repo, Arc::new(index))?)
}

/// Every snapshot (oldest first) that passes the filter. Needs a full key.
pub fn snapshots(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>> {
    repo.require_full()?;
    Ok(repo.snapshot_set()?.snapshots)
}

/// The snapshot filter the flags describe.
pub fn filter(args: &FilterArgs) -> SnapshotFilter {
    SnapshotFilter {
        host: args.host.clone(),
        path: args.path.as_ref().map(|p| absolute_bytes(p)),
        tags: args.tags.clone(),
    }
}

/// Pick one snapshot by selector (`latest`, `latest~N`, id prefix, date, age) and filter.
pub fn select(
    snaps: &[(SnapshotId, Snapshot)],
    spec: &str,
    args: &FilterArgs,
) -> Result<(SnapshotId, Snapshot)> {
    let now = jiff::Zoned::now();
    Ok(offsite_repo::select(snaps, spec, &filter(args), &now)?.clone())
}

/// A path on this machine as absolute bytes (as backup records it).
pub fn absolute_bytes(p: &Path) -> Vec<u8> {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.as_os_str().as_bytes().to_vec()
}

/// A path inside a snapshot as typed: made absolute from `/`, trailing slashes removed.
pub fn snapshot_path(p: &Path) -> Vec<u8> {
    let raw = p.as_os_str().as_bytes();
    let mut v = Vec::with_capacity(raw.len() + 1);
    if !raw.starts_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(raw);
    while v.len() > 1 && v.ends_with(b"/") {
        v.pop();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_are_absolute_without_trailing_slash() {
        assert_eq!(snapshot_path(Path::new("/home/u/")), b"/home/u");
        assert_eq!(snapshot_path(Path::new("home/u")), b"/home/u");
        assert_eq!(snapshot_path(Path::new("/")), b"/");
        assert_eq!(snapshot_path(Path::new("//")), b"/");
    }
}
