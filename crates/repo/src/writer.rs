//! Writing blobs: dedup against the index, compress, encrypt into packs, upload packs with
//! bounded concurrency, and write index checkpoints so an interrupted backup loses at most a few
//! packs. Commit order: a pack is stored before any index names it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use offsite_backend::{failpoint, ObjectKind};
use offsite_format::{
    compress_payload, seal_record, storage_id, BlobId, BlobType, FinishedPack, IndexFile, IndexId, IndexPack,
    PackBuilder, RecordType,
};
use parking_lot::Mutex;

use crate::error::{RepoError, RepoResult};
use crate::index::{Index, PackInfo};
use crate::repository::Repository;

/// How the writer behaves.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// parallel uploads (0 = what the storage asks for, [`offsite_backend::Storage::transfers`])
    pub uploaders: usize,
    /// write an index checkpoint after this many packs
    pub checkpoint_packs: usize,
    /// store nothing (dry run): blobs are counted as if new
    pub dry_run: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { uploaders: 0, checkpoint_packs: 8, dry_run: false }
    }
}

/// Counters of what a writer stored.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// new data blobs
    pub data_blobs: AtomicU64,
    /// new tree blobs
    pub tree_blobs: AtomicU64,
    /// plaintext bytes of new blobs
    pub raw_bytes: AtomicU64,
    /// stored bytes of packs
    pub stored_bytes: AtomicU64,
    /// packs stored
    pub packs: AtomicU64,
}

struct Shared {
    repo: Arc<Repository>,
    index: Arc<Index>,
    checkpoint: Mutex<Vec<IndexPack>>,
    error: Mutex<Option<RepoError>>,
    stats: WriterStats,
    opts: WriterOptions,
}

/// Adds blobs to a repository from many threads at once.
pub struct BlobWriter {
    shared: Arc<Shared>,
    pending: Mutex<HashSet<BlobId>>,
    open: [Mutex<Vec<PackBuilder>>; 2],
    tx: Option<Sender<FinishedPack>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").finish_non_exhaustive()
    }
}

fn slot(ty: BlobType) -> usize {
    match ty {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

impl BlobWriter {
    /// Start a writer (and its upload threads) over an open repository and its loaded index.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>, opts: WriterOptions) -> BlobWriter {
        let uploaders = if opts.uploaders == 0 { repo.storage().transfers() } else { opts.uploaders }.max(1);
        let shared = Arc::new(Shared {
            repo,
            index,
            checkpoint: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            stats: WriterStats::default(),
            opts,
        });
        // Back-pressure: at most one finished pack waiting besides those being uploaded.
        let (tx, rx) = bounded::<FinishedPack>(1);
        let workers = (0..uploaders)
            .map(|_| {
                let (s, rx) = (shared.clone(), rx.clone());
                std::thread::spawn(move || upload_loop(&s, &rx))
            })
            .collect();
        BlobWriter {
            shared,
            pending: Mutex::new(HashSet::new()),
            open: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            tx: Some(tx),
            workers,
        }
    }

    /// The repository written to.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.shared.repo
    }

    /// Id a blob's plaintext would have.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(self.shared.repo.keys().blob_id(data))
    }

    /// Store a blob unless an identical one exists. Returns its id and whether it was new.
    pub fn add(&self, ty: BlobType, data: &[u8]) -> RepoResult<(BlobId, bool)> {
        let id = self.blob_id(data);
        let new = self.add_with_id(ty, id, data)?;
        Ok((id, new))
    }

    /// Like [`BlobWriter::add`] with the id already computed by the caller.
    pub fn add_with_id(&self, ty: BlobType, id: BlobId, data: &[u8]) -> RepoResult<bool> {
        if let Some(e) = self.shared.error.lock().take() {
            return Err(e);
        }
        if self.shared.index.contains(&id) || !self.pending.lock().insert(id) {
            return Ok(false);
        }
        let level = match ty {
            BlobType::Data => self.shared.repo.config().compression,
            BlobType::Tree => 3,
        };
        let payload = compress_payload(data, level);
        let raw = u32::try_from(data.len()).map_err(|_| RepoError::Other("blob larger than 4 GiB".into()))?;
        let stats = &self.shared.stats;
        match ty {
            BlobType::Data => stats.data_blobs.fetch_add(1, Ordering::Relaxed),
            BlobType::Tree => stats.tree_blobs.fetch_add(1, Ordering::Relaxed),
        };
        stats.raw_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.shared.opts.dry_run {
            stats.stored_bytes.fetch_add(payload.len() as u64 + 16, Ordering::Relaxed);
            return Ok(true);
        }
        let pool = &self.open[slot(ty)];
        let mut builder =
            pool.lock().pop().unwrap_or_else(|| PackBuilder::new(&self.shared.repo.keys().public_key()));
        builder.add(ty, id, payload, raw);
        if builder.size() >= self.shared.repo.config().pack_size as usize {
            self.send(builder.finish())?;
        } else {
            pool.lock().push(builder);
        }
        Ok(true)
    }

    fn send(&self, pack: FinishedPack) -> RepoResult<()> {
        let tx = self.tx.as_ref().ok_or_else(|| RepoError::Other("writer already finished".into()))?;
        tx.send(pack).map_err(|_| {
            self.shared
                .error
                .lock()
                .take()
                .unwrap_or_else(|| RepoError::Other("upload threads stopped".into()))
        })
    }

    /// Flush every open pack, wait for uploads, write the last index object. Returns the stats.
    pub fn finish(mut self) -> RepoResult<WriterStats> {
        for ty in [BlobType::Data, BlobType::Tree] {
            let builders: Vec<_> = std::mem::take(&mut *self.open[slot(ty)].lock());
            for b in builders {
                if b.count() > 0 {
                    self.send(b.finish())?;
                }
            }
        }
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            w.join().map_err(|_| RepoError::Other("an upload thread panicked".into()))?;
        }
        if let Some(e) = self.shared.error.lock().take() {
            return Err(e);
        }
        write_checkpoint(&self.shared)?;
        let shared =
            Arc::try_unwrap(self.shared).map_err(|_| RepoError::Other("writer still shared".into()))?;
        Ok(shared.stats)
    }

    /// Live counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }
}

fn upload_loop(s: &Shared, rx: &Receiver<FinishedPack>) {
    for pack in rx {
        if s.error.lock().is_some() {
            continue; // drain, so senders never block forever
        }
        if let Err(e) = upload(s, pack) {
            s.error.lock().get_or_insert(e);
        }
    }
}

fn upload(s: &Shared, pack: FinishedPack) -> RepoResult<()> {
    let storage = s.repo.storage();
    match storage.write(ObjectKind::Data, &pack.id.to_hex(), &pack.bytes) {
        Err(e) if !matches!(e, offsite_backend::StorageError::AlreadyExists { .. }) => return Err(e.into()),
        _ => {}
    }
    failpoint::hit("writer.pack_stored");
    let size = pack.bytes.len() as u64;
    s.stats.stored_bytes.fetch_add(size, Ordering::Relaxed);
    s.stats.packs.fetch_add(1, Ordering::Relaxed);
    s.index.add_pack(PackInfo { id: pack.id, eph: pack.eph, size }, &pack.entries);
    let full = {
        let mut c = s.checkpoint.lock();
        c.push(IndexPack { id: pack.id, eph: pack.eph, size, blobs: pack.entries });
        c.len() >= s.opts.checkpoint_packs
    };
    if full {
        write_checkpoint(s)?;
    }
    Ok(())
}

/// Store an index object naming the packs uploaded since the last one.
fn write_checkpoint(s: &Shared) -> RepoResult<()> {
    let packs = std::mem::take(&mut *s.checkpoint.lock());
    if packs.is_empty() {
        return Ok(());
    }
    let bytes = seal_record(RecordType::Index, s.repo.keys(), &IndexFile { packs, supersedes: vec![] });
    let id = IndexId(storage_id(&bytes));
    s.repo.storage().write(ObjectKind::Index, &id.to_hex(), &bytes)?;
    failpoint::hit("writer.checkpoint_written");
    s.stats.stored_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}
