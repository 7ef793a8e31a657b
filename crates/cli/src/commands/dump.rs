//! `offsite dump`: write one file of a snapshot to stdout, byte for byte.

use anyhow::Result;

use crate::args::DumpArgs;
use crate::output::{Output, StdoutSink};
use crate::resolve::Invocation;
use crate::Status;

/// Write the file's content to stdout (also with `--json`: the content is the output).
pub fn run(inv: &Invocation, _out: Output, a: &DumpArgs) -> Result<Status> {
    let reader = super::open_reader(inv)?;
    let snaps = super::snapshots(reader.repo())?;
    let (_, snap) = super::select(&snaps, &a.snapshot, &a.filter)?;
    let path = super::snapshot_path(&a.path);
    let mut sink = StdoutSink::new();
    let result = offsite_engine::dump(&reader, &snap, &path, &mut sink);
    if sink.broken() {
        return Ok(Status::Success);
    }
    result?;
    match sink.finish() {
        Err(e) if !sink.broken() => Err(anyhow::Error::new(e).context("writing to stdout")),
        _ => Ok(Status::Success),
    }
}
