//! Check: structure (every snapshot's trees and blobs reachable and indexed, packs agree with the
//! index, snapshot DAG consistent) and optionally data (decrypt and verify every blob).
//!
//! A damaged object never stops the check: it becomes a [`Problem`] naming the object and,
//! where the damage reaches file content or directories, the snapshots and paths affected.
//! Phases: `objects` (snapshots, index objects, pack listing), `trees` (walk every snapshot,
//! then find affected paths), `data` (read packs whole and verify every blob).

mod data;
mod objects;
mod problems;
mod trees;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use offsite_format::{BlobId, PackId};
use offsite_repo::{BlobReader, Repository};

use crate::error::{EngineError, EngineResult};
use crate::events::Reporter;

use problems::Problems;
pub use problems::AFFECTS_CAP;

/// How much data to read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ReadData {
    /// structure only
    #[default]
    None,
    /// every pack
    All,
    /// this percentage of packs (random)
    Subset(f64),
}

/// Check options.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// data reading
    pub read_data: ReadData,
}

/// One problem found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// the damaged object, e.g. "data/ab12cd34" or "index/…" or "snapshots/…"
    pub object: String,
    /// what is wrong
    pub message: String,
    /// affected snapshots and paths, e.g. "snapshot 1a2b3c4d: /home/u/file"
    pub affects: Vec<String>,
}

/// Check result.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// problems (empty = healthy)
    pub problems: Vec<Problem>,
    /// snapshots checked
    pub snapshots: u64,
    /// trees walked
    pub trees: u64,
    /// packs whose data was read
    pub packs_read: u64,
    /// blobs verified by reading
    pub blobs_read: u64,
    /// packs stored but named by no index (left by an interrupted backup; `prune` removes
    /// them). Not a problem: each is reported as a warning event.
    pub unreferenced_packs: u64,
}

/// State shared by the phases: the problems so far and which blobs they concern.
pub(crate) struct Findings {
    /// problems, merged by object
    pub problems: Problems,
    /// blob or tree id -> problems it belongs to (to name the affected paths)
    pub bad: HashMap<BlobId, Vec<usize>>,
    /// packs missing or of the wrong size: not read again, their blobs already count as bad
    pub unusable: HashSet<PackId>,
    /// bundle -> the slices files name in it (offset, length, keyed content id): reading
    /// data checks each copy of the bundle holds those bytes (a bundle's id is random)
    pub slices: HashMap<BlobId, Vec<(u64, u64, BlobId)>>,
}

impl Findings {
    fn new() -> Self {
        Findings {
            problems: Problems::default(),
            bad: HashMap::new(),
            unusable: HashSet::new(),
            slices: HashMap::new(),
        }
    }

    /// Record that `blob` is damaged by problem `idx`.
    pub fn mark(&mut self, blob: BlobId, idx: usize) {
        let v = self.bad.entry(blob).or_default();
        if !v.contains(&idx) {
            v.push(idx);
        }
    }
}

/// Check the repository (full keys only).
///
/// Structure: every key file hashes to its name and parses, every snapshot and index object
/// decodes and hashes to its name, the snapshot DAG names no lost snapshot, every pack the
/// index names exists with its recorded size, and every tree of every snapshot is indexed,
/// readable and well formed (safe names, sorted entries, file sizes that match their content)
/// and names only indexed blobs. With
/// [`ReadData::All`] or [`ReadData::Subset`], the selected packs are also read whole: their
/// own header must match the index and every blob must decrypt to its recorded length and hash
/// to its id; a bundle (whose id is random) must hold, at each slice a file names, bytes with
/// that slice's keyed content id. Each copy of a blob stored twice is read and judged on its
/// own, so a forged copy is named by its pack.
///
/// Returns an error only when the check cannot run at all (wrong key kind, storage listing
/// failing); damage is reported in [`CheckReport::problems`].
pub fn check(
    repo: Arc<Repository>,
    opts: &CheckOptions,
    reporter: &dyn Reporter,
) -> EngineResult<CheckReport> {
    repo.require_full()?;
    if let ReadData::Subset(pct) = opts.read_data {
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(EngineError::Usage(format!(
                "read-data subset must be a percentage above 0 and at most 100, not {pct}"
            )));
        }
    }
    let mut found = Findings::new();
    let mut report = CheckReport::default();

    objects::check_keys(&repo, &mut found)?;
    let snapshots = objects::load_snapshots(&repo, &mut found)?;
    report.snapshots = snapshots.len() as u64;
    let loaded = objects::load_index(&repo, &mut found)?;
    report.unreferenced_packs = objects::check_packs(&loaded, &mut found, reporter)?;

    let reader = BlobReader::new(repo.clone(), loaded.index.clone())?;
    report.trees = trees::check_trees(&reader, &snapshots, &mut found, reporter);

    if opts.read_data != ReadData::None {
        let (packs, blobs) = data::read_data(&repo, &loaded, opts.read_data, &mut found, reporter);
        report.packs_read = packs;
        report.blobs_read = blobs;
    }

    if !found.bad.is_empty() {
        trees::collect_affects(&reader, &snapshots, &mut found);
    }
    report.problems = found.problems.finish();
    Ok(report)
}
