//! Counting calls and bytes, so tests can assert how much a run transferred.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StorageResult;
use crate::kind::ObjectKind;
use crate::storage::Storage;

/// Calls and bytes seen by a [`CountingStorage`] since it was made or last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// `write` calls, failed ones included.
    pub writes: u64,
    /// Bytes of successful writes.
    pub bytes_written: u64,
    /// `read` calls, failed ones included.
    pub reads: u64,
    /// Bytes returned by successful reads.
    pub bytes_read: u64,
    /// `list` calls.
    pub lists: u64,
    /// `delete` calls.
    pub deletes: u64,
}

/// Passes every call through to the wrapped storage and counts calls and bytes, e.g. to
/// check that an unchanged second backup uploads almost nothing.
#[derive(Debug)]
pub struct CountingStorage<S> {
    inner: S,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
    bytes_read: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl<S: Storage> CountingStorage<S> {
    /// Wrap `inner` with all counters at zero.
    pub fn new(inner: S) -> Self {
        CountingStorage {
            inner,
            writes: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> StorageStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StorageStats {
            writes: get(&self.writes),
            bytes_written: get(&self.bytes_written),
            reads: get(&self.reads),
            bytes_read: get(&self.bytes_read),
            lists: get(&self.lists),
            deletes: get(&self.deletes),
        }
    }

    /// Set every counter back to zero (e.g. between a first and a second backup).
    pub fn reset(&self) {
        for c in
            [&self.writes, &self.bytes_written, &self.reads, &self.bytes_read, &self.lists, &self.deletes]
        {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Storage> Storage for CountingStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn transfers(&self) -> usize {
        self.inner.transfers()
    }

    fn create(&self) -> StorageResult<()> {
        self.inner.create()
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        add(&self.lists, 1);
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        add(&self.reads, 1);
        let data = self.inner.read(kind, id, range)?;
        add(&self.bytes_read, data.len() as u64);
        Ok(data)
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        add(&self.writes, 1);
        self.inner.write(kind, id, data)?;
        add(&self.bytes_written, data.len() as u64);
        Ok(())
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        add(&self.deletes, 1);
        self.inner.delete(kind, id)
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.inner.stat(kind, id)
    }
}
