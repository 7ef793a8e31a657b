//! A fault injector for whole-system tests.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{StorageError, StorageResult};
use crate::kind::ObjectKind;
use crate::storage::Storage;

/// The error a failed write reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InjectedError {
    /// A [`StorageError::Transient`] error (a retry would succeed).
    #[default]
    Transient,
    /// A [`StorageError::NoSpace`] error (the disk is full).
    NoSpace,
}

/// Which faults [`FaultStorage`] injects next. Tests change it while the system runs through
/// the handle from [`FaultStorage::plan`]; counters go down as faults are injected.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail this many of the next writes (nothing is stored) with `fail_writes_with`.
    pub fail_writes: u32,
    /// The error those failed writes report.
    pub fail_writes_with: InjectedError,
    /// Report success for this many of the next writes but store nothing (a lost write).
    pub lose_writes: u32,
    /// Flip one bit in the middle of the bytes returned by this many of the next non-empty
    /// reads (the stored object is untouched).
    pub corrupt_reads: u32,
    /// Once this many calls have been made, fail every further call with a Transient
    /// error, as if the link were gone for good.
    pub fail_after_calls: Option<u64>,
    /// Calls made so far (every method but `location`), counted by the wrapper.
    pub calls: u64,
}

/// Wraps a real storage and injects faults into it: failed writes, lost writes, corrupted
/// reads, a storage that stops answering. It is a fault injector, not a mock: every call
/// that is not faulted reaches the wrapped storage and returns its real answer.
#[derive(Debug)]
pub struct FaultStorage<S> {
    inner: S,
    plan: Arc<Mutex<FaultPlan>>,
}

impl<S: Storage> FaultStorage<S> {
    /// Wrap `inner` with an empty plan (no faults until the test sets some).
    pub fn new(inner: S) -> Self {
        FaultStorage { inner, plan: Arc::default() }
    }

    /// The shared plan; lock it to inject faults or read the call count.
    pub fn plan(&self) -> Arc<Mutex<FaultPlan>> {
        Arc::clone(&self.plan)
    }

    fn lock(&self) -> MutexGuard<'_, FaultPlan> {
        // A test that panicked while holding the lock leaves a usable plan.
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a call and fail it if the storage is "gone".
    fn enter(&self, what: &str) -> StorageResult<MutexGuard<'_, FaultPlan>> {
        let mut plan = self.lock();
        plan.calls += 1;
        match plan.fail_after_calls {
            Some(limit) if plan.calls > limit => Err(StorageError::Transient {
                what: what.to_string(),
                source: io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "injected fault: storage unreachable",
                ),
            }),
            _ => Ok(plan),
        }
    }
}

fn name(kind: ObjectKind, id: &str) -> String {
    format!("{}/{}", kind.dir_name(), id)
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> StorageResult<()> {
        drop(self.enter("create")?);
        self.inner.create()
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        drop(self.enter(kind.dir_name())?);
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        drop(self.enter(&name(kind, id))?);
        let mut data = self.inner.read(kind, id, range)?;
        let mut plan = self.lock();
        if plan.corrupt_reads > 0 && !data.is_empty() {
            plan.corrupt_reads -= 1;
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
        }
        Ok(data)
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        let what = name(kind, id);
        let mut plan = self.enter(&what)?;
        if plan.fail_writes > 0 {
            plan.fail_writes -= 1;
            return Err(match plan.fail_writes_with {
                InjectedError::NoSpace => StorageError::NoSpace { what },
                InjectedError::Transient => StorageError::Transient {
                    what,
                    source: io::Error::new(io::ErrorKind::TimedOut, "injected fault"),
                },
            });
        }
        if plan.lose_writes > 0 {
            plan.lose_writes -= 1;
            return Ok(());
        }
        drop(plan);
        self.inner.write(kind, id, data)
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        drop(self.enter(&name(kind, id))?);
        self.inner.delete(kind, id)
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        drop(self.enter(&name(kind, id))?);
        self.inner.stat(kind, id)
    }
}
