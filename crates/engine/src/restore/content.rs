//! File content: decide per file, group the needed blobs by pack and offset, read each pack's
//! needed ranges once (neighbouring ranges merged across small gaps), verify every blob
//! before use and write it (or, for a bundle, each file's slice of it) at each of its places
//! with positional writes. A bundle shared by many small files is fetched and decrypted once.
//! A file is written under a temporary name and renamed into place, its metadata set, as soon
//! as its last blob is written; a file with a failed blob is removed and reported, never put
//! in place.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use offsite_backend::ObjectKind;
use offsite_format::{BlobId, BlobType, ContentItem, Node};
use offsite_repo::{read_range, BlobLocation};
use parking_lot::Mutex;
use rayon::prelude::*;

use super::plan::PlanFile;
use super::{Ctx, Overwrite};
use crate::content::{candidates, choose_sources, slice_matches, slice_of, source_len, Refused, Source};
use crate::events::display_path;

/// Ranges of one pack closer than this are read together.
const MERGE_GAP: u64 = 1024 * 1024;
/// A merged read grows no longer than this (bounds memory per worker).
const MAX_RUN: u64 = 16 * 1024 * 1024;
/// Open temporary files a worker keeps while it processes one range.
const MAX_HANDLES: usize = 16;
/// Size of the buffer holes are compared in.
const HOLE_CHUNK: u64 = 1024 * 1024;

/// What became of a planned file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileStatus {
    /// not handled here (a hard link, or its directory failed)
    NotHandled,
    /// written and renamed into place
    Written,
    /// left as it was
    Skipped,
    /// reported as an error, not in place
    Failed,
}

/// One piece of a file: at `offset`, `len` bytes of a blob's plaintext starting at `within`
/// (a whole data blob: `within` 0, `len` its length; a slice of a bundle, whose bytes must
/// have the keyed id `id`), or `len` zero bytes.
#[derive(Clone, Copy)]
struct Piece {
    offset: u64,
    len: u64,
    blob: Option<BlobLocation>,
    within: u64,
    id: Option<BlobId>,
}

/// Where a needed blob's bytes go: `len` bytes from `within` in its plaintext, to offset `at`
/// of job `job`'s file; a slice's bytes must have the keyed id `id`.
#[derive(Clone, Copy)]
struct Place {
    job: usize,
    at: u64,
    within: u64,
    len: u64,
    id: Option<BlobId>,
}

enum Decision {
    Write(Vec<Piece>),
    Done(FileStatus),
}

/// A file being written.
struct Job {
    file: usize,
    /// blob placements not yet handled
    remaining: AtomicUsize,
    /// first failure
    failed: Mutex<Option<String>>,
    /// temporary name, once created
    tmp: Mutex<Option<Vec<u8>>>,
    /// 0 pending, 1 written, 2 failed
    state: AtomicU8,
}

impl Job {
    fn fail(&self, msg: String) {
        let mut f = self.failed.lock();
        if f.is_none() {
            *f = Some(msg);
        }
    }
    fn is_failed(&self) -> bool {
        self.failed.lock().is_some()
    }
}

/// A blob needed by one or more files, with every place it goes to.
struct Need {
    loc: BlobLocation,
    places: Vec<Place>,
}

/// One storage read: a range of a pack and the needed blobs in it, by offset.
struct Run {
    pack: u32,
    start: u64,
    end: u64,
    needs: Vec<usize>,
}

fn is_zero(b: &[u8]) -> bool {
    let chunks = b.chunks_exact(16);
    let rest = chunks.remainder();
    chunks.into_iter().all(|c| c == [0u8; 16]) && rest.iter().all(|x| *x == 0)
}

impl Ctx<'_> {
    /// The file's pieces, with lengths from the index; untrusted sizes are checked so the
    /// pieces add up to exactly the file's size.
    fn pieces(&self, node: &Node) -> Result<Vec<Piece>, String> {
        let items = match &node.content {
            Some(c) => c.as_slice(),
            None if node.size == 0 => &[],
            None => return Err(format!("file of {} bytes has no content list", node.size)),
        };
        let mut all = Vec::with_capacity(items.len());
        for item in items {
            match candidates(self.reader.index(), item) {
                Ok(c) => all.push(c),
                Err(Refused::Missing(id)) if matches!(item, ContentItem::Slice { .. }) => {
                    return Err(format!("bundle {} is missing", id.short()))
                }
                Err(Refused::Missing(id)) => return Err(format!("blob {} is missing", id.short())),
                Err(Refused::WrongType { id, want: BlobType::Bundle, found }) => {
                    return Err(format!(
                        "blob {} is named as a bundle but indexed as a {} blob",
                        id.short(),
                        found
                    ))
                }
                Err(Refused::WrongType { id, found, .. }) => {
                    return Err(format!(
                        "blob {} is not a data blob (it is indexed as a {} blob)",
                        id.short(),
                        found
                    ))
                }
                Err(Refused::PastEnd { loc, offset, length, raw }) => {
                    return Err(format!(
                        "slice of {length} bytes at {offset} runs past the end of bundle {} ({raw} bytes)",
                        loc.entry.id.short()
                    ))
                }
            }
        }
        let Some(chosen) = choose_sources(&all, node.size) else {
            let sum = all.iter().fold(0u64, |acc, c| acc.saturating_add(source_len(&c[0])));
            return Err(format!("content adds up to {sum} bytes but the file's size is {}", node.size));
        };
        let mut out = Vec::with_capacity(chosen.len());
        let mut offset = 0u64;
        for source in chosen {
            let (len, blob, within, id) = match source {
                Source::Hole(len) => (len, None, 0, None),
                // An empty slice: nothing to read.
                Source::Blob { len: 0, .. } => continue,
                Source::Blob { loc, within, len, id } => (len, Some(loc), within, id),
            };
            out.push(Piece { offset, len, blob, within, id });
            offset = offset.checked_add(len).ok_or("content length overflows")?;
        }
        Ok(out)
    }

    /// Whether the existing file holds exactly this content, by keyed ids: a whole data blob's
    /// own id, a slice's `id` (nothing is read from the storage).
    fn same_content(&self, f: &PlanFile, pieces: &[Piece]) -> std::io::Result<bool> {
        let file = self.target.open_read(f.dir, &f.node.name.0)?;
        if !file.metadata()?.file_type().is_file() {
            return Ok(false);
        }
        let mut buf = Vec::new();
        for p in pieces {
            match p.blob {
                Some(loc) => {
                    buf.resize(usize::try_from(p.len).unwrap_or(usize::MAX).min(1 << 30), 0);
                    if buf.len() as u64 != p.len {
                        return Ok(false);
                    }
                    file.read_exact_at(&mut buf, p.offset)?;
                    let want = p.id.unwrap_or(loc.entry.id);
                    if self.reader.repo().keys().blob_id(&buf) != want.0 {
                        return Ok(false);
                    }
                }
                None => {
                    if self.is_hole(&file, p.offset, p.len) {
                        continue;
                    }
                    let mut done = 0u64;
                    while done < p.len {
                        let n = (p.len - done).min(HOLE_CHUNK);
                        buf.resize(n as usize, 0);
                        file.read_exact_at(&mut buf, p.offset + done)?;
                        if !is_zero(&buf) {
                            return Ok(false);
                        }
                        done += n;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Whether the filesystem reports no data in `[offset, offset + len)` (so it reads as
    /// zeros without reading it); false when it cannot tell.
    fn is_hole(&self, file: &File, offset: u64, len: u64) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(start) = i64::try_from(offset) else { return false };
        match nix::unistd::lseek(file.as_raw_fd(), start, nix::unistd::Whence::SeekData) {
            Ok(data) => u64::try_from(data).is_ok_and(|d| d >= offset.saturating_add(len)),
            Err(nix::errno::Errno::ENXIO) => true, // no data after offset
            Err(_) => false,
        }
    }

    fn decide(&self, f: &PlanFile, dir_ok: &[bool]) -> Decision {
        if f.link_to.is_some() || !dir_ok[f.dir] {
            return Decision::Done(FileStatus::NotHandled);
        }
        let pieces = match self.pieces(&f.node) {
            Ok(p) => p,
            Err(msg) => {
                self.error(&f.path, msg);
                return Decision::Done(FileStatus::Failed);
            }
        };
        let existing = match self.target.stat(f.dir, &f.node.name.0) {
            Ok(s) => s,
            Err(e) => {
                self.error(&f.path, format!("cannot inspect the target: {e}"));
                return Decision::Done(FileStatus::Failed);
            }
        };
        let Some(st) = existing else { return Decision::Write(pieces) };
        let skip = match self.opts.overwrite {
            Overwrite::Always => false,
            Overwrite::Never => true,
            Overwrite::IfChanged => {
                st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && u64::try_from(st.st_size).ok() == Some(f.node.size)
                    && (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(u32::MAX)) == f.node.mtime
                    && self.same_content(f, &pieces).unwrap_or(false)
                    && self.refresh_metadata(f)
            }
        };
        if skip {
            self.counters.files_skipped.fetch_add(1, Ordering::Relaxed);
            self.progress_report(false);
            Decision::Done(FileStatus::Skipped)
        } else {
            Decision::Write(pieces)
        }
    }

    /// Set ownership, permissions and xattrs of an identical existing file (they may differ
    /// although the content does not). Returns false (rewrite it instead) if it cannot be
    /// opened, or if it is hard-linked elsewhere while the snapshot has it unlinked: changing
    /// it in place would change the other names too.
    fn refresh_metadata(&self, f: &PlanFile) -> bool {
        match self.target.open_read(f.dir, &f.node.name.0) {
            Ok(file)
                if file.metadata().is_ok_and(|m| m.is_file() && (m.nlink() == 1 || f.node.links > 1)) =>
            {
                self.apply_fd(&file, &f.node, &f.path);
                true
            }
            _ => false,
        }
    }

    /// Restore the content of every planned regular file that is not a hard link.
    pub(crate) fn restore_files(&self, dir_ok: &[bool]) -> Vec<FileStatus> {
        let files = &self.plan.files;
        if self.stopped() {
            return vec![FileStatus::NotHandled; files.len()];
        }
        let decisions: Vec<Decision> = files.par_iter().map(|f| self.decide(f, dir_ok)).collect();
        let mut status: Vec<FileStatus> = vec![FileStatus::NotHandled; files.len()];
        let mut jobs = Vec::new();
        let mut needs: Vec<Need> = Vec::new();
        // One need per blob: a bundle named by many files is read and decrypted once.
        let mut need_of: HashMap<BlobId, usize> = HashMap::new();
        let mut items_total = 0u64;
        let mut bytes_total = 0u64;
        for (i, d) in decisions.into_iter().enumerate() {
            match d {
                Decision::Done(s) => {
                    status[i] = s;
                    if s == FileStatus::Skipped {
                        items_total += 1;
                    }
                }
                Decision::Write(pieces) => {
                    let j = jobs.len();
                    let mut count = 0usize;
                    for p in &pieces {
                        if let Some(loc) = p.blob {
                            let n = *need_of.entry(loc.entry.id).or_insert_with(|| {
                                needs.push(Need { loc, places: Vec::new() });
                                needs.len() - 1
                            });
                            needs[n].places.push(Place {
                                job: j,
                                at: p.offset,
                                within: p.within,
                                len: p.len,
                                id: p.id,
                            });
                            count += 1;
                        }
                    }
                    items_total += 1;
                    let blob_bytes: u64 = pieces.iter().filter(|p| p.blob.is_some()).map(|p| p.len).sum();
                    bytes_total = bytes_total.saturating_add(blob_bytes);
                    jobs.push(Job {
                        file: i,
                        remaining: AtomicUsize::new(count),
                        failed: Mutex::new(None),
                        tmp: Mutex::new(None),
                        state: AtomicU8::new(0),
                    });
                }
            }
        }
        drop(need_of);
        self.progress.items_total.store(items_total, Ordering::Relaxed);
        self.progress.bytes_total.store(bytes_total, Ordering::Relaxed);
        let runs = self.runs(&needs);

        // Files without blobs (empty, all holes) are complete already.
        jobs.par_iter().enumerate().filter(|(_, j)| j.remaining.load(Ordering::Relaxed) == 0).for_each(
            |(j, _)| {
                if !self.stopped() {
                    self.finalize(&jobs, j, None);
                }
            },
        );
        runs.par_iter().for_each(|r| self.process_run(r, &jobs, &needs));

        // Whatever did not complete (a fatal stop) leaves no temporary file behind.
        for job in &jobs {
            let s = match job.state.load(Ordering::Acquire) {
                1 => FileStatus::Written,
                2 => FileStatus::Failed,
                _ => {
                    self.remove_tmp(job);
                    FileStatus::Failed
                }
            };
            status[job.file] = s;
        }
        status
    }

    /// Group the needed blobs into storage reads: by pack, by offset, merging neighbours.
    fn runs(&self, needs: &[Need]) -> Vec<Run> {
        let mut order: Vec<usize> = (0..needs.len()).collect();
        order.sort_by_key(|&n| (needs[n].loc.pack, needs[n].loc.entry.offset));
        let mut runs: Vec<Run> = Vec::new();
        for n in order {
            let loc = &needs[n].loc;
            let off = u64::from(loc.entry.offset);
            let end = off + u64::from(loc.entry.length);
            if let Some(r) = runs.last_mut() {
                if r.pack == loc.pack && off >= r.end && off - r.end < MERGE_GAP && end - r.start <= MAX_RUN {
                    r.end = end;
                    r.needs.push(n);
                    continue;
                }
            }
            runs.push(Run { pack: loc.pack, start: off, end, needs: vec![n] });
        }
        // Widen to the read alignment, never to exactly one blob, so no request shows a
        // blob's length.
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        for r in &mut runs {
            let size = *sizes.entry(r.pack).or_insert_with(|| self.reader.index().pack(r.pack).size);
            (r.start, r.end) = read_range(r.start, r.end, size);
        }
        runs
    }

    fn process_run(&self, run: &Run, jobs: &[Job], needs: &[Need]) {
        if self.stopped() {
            return;
        }
        let info = self.reader.index().pack(run.pack);
        let bytes = self
            .reader
            .repo()
            .storage()
            .read(ObjectKind::Data, &info.id.to_hex(), Some((run.start, run.end - run.start)))
            .map_err(|e| format!("cannot read data/{}: {e}", info.id.short()));
        let mut handles: HashMap<usize, File> = HashMap::new();
        for &n in &run.needs {
            if self.stopped() {
                return;
            }
            let need = &needs[n];
            let plain =
                bytes.as_ref().map_err(Clone::clone).and_then(|b| self.open_blob(b, run.start, &need.loc));
            let plain = match plain {
                Ok(p) if self.places_match(&p, &need.places) => Ok(p),
                // This copy fails (damaged, or a forgery listed first): another indexed copy
                // that is sound for every place is used instead.
                first => {
                    let by = display_path(&self.plan.files[jobs[need.places[0].job].file].path);
                    let accept = |p: &[u8]| self.places_match(p, &need.places);
                    match self.reader.read_accepting(&need.loc.entry.id, &by, Some(&need.loc), &accept) {
                        Ok(p) => Ok(p),
                        Err(_) => first,
                    }
                }
            };
            match plain {
                Err(msg) => {
                    for pl in &need.places {
                        jobs[pl.job].fail(msg.clone());
                        self.placed(jobs, pl.job, pl.len, &mut handles);
                    }
                }
                Ok(p) => {
                    // Whole blobs placed several times are tested for zeros once.
                    let whole_zero = OnceLock::new();
                    for pl in &need.places {
                        let j = pl.job;
                        match slice_of(&p, pl.within, pl.len) {
                            // `pieces` checked the slice against the indexed length, which
                            // `open_blob` checked against the plaintext: not reached.
                            None => jobs[j].fail(format!(
                                "blob {}: slice lies outside its plaintext",
                                need.loc.entry.id.short()
                            )),
                            // No sound copy holds this file's bytes: never written.
                            Some(b) if !self.place_matches(b, pl) => jobs[j].fail(format!(
                                "bundle {} does not hold this file's bytes (its content id differs): \
                                 the bundle was forged or damaged and no sound copy is indexed",
                                need.loc.entry.id.short()
                            )),
                            Some(b) => {
                                let zero = if b.len() == p.len() {
                                    *whole_zero.get_or_init(|| is_zero(&p))
                                } else {
                                    is_zero(b)
                                };
                                if !zero && !jobs[j].is_failed() {
                                    self.write_at(jobs, j, &mut handles, b, pl.at);
                                }
                            }
                        }
                        self.placed(jobs, j, pl.len, &mut handles);
                    }
                }
            }
        }
    }

    /// Whether a slice's bytes have the keyed id its tree names (whole data blobs were
    /// verified by their own id when opened).
    fn place_matches(&self, bytes: &[u8], pl: &Place) -> bool {
        pl.id.is_none_or(|id| slice_matches(self.reader.repo().keys(), bytes, &id))
    }

    /// Whether every place's bytes in the plaintext `p` are the ones its tree names (a whole
    /// data blob: all of `p`, which its id verified when it was opened).
    fn places_match(&self, p: &[u8], places: &[Place]) -> bool {
        places.iter().all(|pl| match pl.id {
            None => pl.within == 0 && pl.len == p.len() as u64,
            Some(_) => slice_of(p, pl.within, pl.len).is_some_and(|b| self.place_matches(b, pl)),
        })
    }

    /// Authenticate, decrypt and verify one blob of a fetched range.
    fn open_blob(&self, range: &[u8], start: u64, loc: &BlobLocation) -> Result<Vec<u8>, String> {
        let rel = u64::from(loc.entry.offset) - start;
        let len = u64::from(loc.entry.length);
        let ct = usize::try_from(rel)
            .ok()
            .zip(usize::try_from(rel + len).ok())
            .and_then(|(a, b)| range.get(a..b))
            .ok_or_else(|| format!("blob {}: short read from its pack", loc.entry.id.short()))?;
        let plain = self.reader.open(loc, ct).map_err(|e| e.to_string())?;
        if plain.len() as u64 != u64::from(loc.entry.raw_length) {
            return Err(format!("blob {}: length differs from the index", loc.entry.id.short()));
        }
        Ok(plain)
    }

    fn write_at(&self, jobs: &[Job], j: usize, handles: &mut HashMap<usize, File>, data: &[u8], off: u64) {
        let job = &jobs[j];
        if !handles.contains_key(&j) {
            if handles.len() >= MAX_HANDLES {
                handles.clear();
            }
            match self.open_tmp(job) {
                Ok(h) => {
                    handles.insert(j, h);
                }
                Err(e) => return self.write_failed(job, e),
            }
        }
        let Some(h) = handles.get(&j) else { return };
        match h.write_all_at(data, off) {
            Ok(()) => {
                self.counters.bytes_written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                handles.remove(&j);
                self.write_failed(job, e);
            }
        }
    }

    fn write_failed(&self, job: &Job, e: std::io::Error) {
        let f = &self.plan.files[job.file];
        self.check_fatal(&self.target.entry_path(f.dir, &f.node.name.0), &e);
        job.fail(format!("cannot write: {e}"));
    }

    /// The job's temporary file, created on first use.
    fn open_tmp(&self, job: &Job) -> std::io::Result<File> {
        let dir = self.plan.files[job.file].dir;
        let mut t = job.tmp.lock();
        match &*t {
            Some(name) => self.target.open_write(dir, name),
            None => {
                let (name, f) = self.target.create_tmp(dir)?;
                *t = Some(name);
                Ok(f)
            }
        }
    }

    fn remove_tmp(&self, job: &Job) {
        if let Some(name) = job.tmp.lock().take() {
            let _ = self.target.unlink(self.plan.files[job.file].dir, &name);
        }
    }

    /// One placement of job `j` (of `len` bytes) is handled; the last one completes the file.
    fn placed(&self, jobs: &[Job], j: usize, len: u64, handles: &mut HashMap<usize, File>) {
        self.progress.bytes_done.fetch_add(len, Ordering::Relaxed);
        if jobs[j].remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let h = handles.remove(&j);
            self.finalize(jobs, j, h);
        }
    }

    /// All of a file's blobs are handled: drop it if one failed, else size it (trailing holes
    /// stay sparse), set its metadata and rename it into place.
    fn finalize(&self, jobs: &[Job], j: usize, handle: Option<File>) {
        let job = &jobs[j];
        let f = &self.plan.files[job.file];
        let name = &f.node.name.0;
        // Err(None): abandoned because the restore stopped (reported once, by the cause).
        let result = (|| -> Result<(), Option<String>> {
            if let Some(msg) = job.failed.lock().take() {
                return Err(Some(msg));
            }
            if self.stopped() {
                return Err(None);
            }
            let file = match handle {
                Some(h) => h,
                None => self.open_tmp(job).map_err(|e| {
                    self.check_fatal(&self.target.entry_path(f.dir, name), &e);
                    Some(format!("cannot create: {e}"))
                })?,
            };
            file.set_len(f.node.size).map_err(|e| {
                self.check_fatal(&self.target.entry_path(f.dir, name), &e);
                Some(format!("cannot set size: {e}"))
            })?;
            self.apply_fd(&file, &f.node, &f.path);
            drop(file);
            let tmp = job.tmp.lock().clone().ok_or_else(|| Some("temporary file missing".to_string()))?;
            self.target
                .rename(f.dir, &tmp, name)
                .map_err(|e| Some(format!("cannot rename into place: {e}")))?;
            job.tmp.lock().take();
            Ok(())
        })();
        match result {
            Ok(()) => {
                job.state.store(1, Ordering::Release);
                self.counters.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(msg) => {
                self.remove_tmp(job);
                job.state.store(2, Ordering::Release);
                if let Some(msg) = msg {
                    self.error(&f.path, msg);
                }
            }
        }
        self.progress_report(false);
    }
}
