//! [`RetryStorage`]: the retry mechanism of [`crate::retry`] as a layer over any storage whose
//! calls are single attempts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{StorageError, StorageResult};
use crate::kind::ObjectKind;
use crate::remote::RemoteOptions;
use crate::retry::{GiveUpBudget, Retrier};
use crate::storage::Storage;

pub use crate::retry::RetryPolicy;

/// Retries calls that fail with a [`StorageError::Transient`] error through a
/// [`crate::retry::Retrier`]: exponential backoff between attempts, at most
/// [`RetryPolicy::max_tries`] attempts (after which the last transient error is returned) and a
/// [`GiveUpBudget`] (by default its own, of [`RemoteOptions::default`]'s `give_up_after`; share
/// one with [`RetryStorage::with_budget`]). Every other result passes through unchanged.
///
/// The remote storages (SFTP, S3, REST, rclone) run the same [`Retrier`] inside their calls
/// rather than under this layer, because their attempts need backend state (a dropped
/// connection, the temp file of a lost upload); this layer serves storages without retries of
/// their own.
///
/// Two answers are read in the light of an earlier transient failure of the same call,
/// because that attempt may have landed before the link broke: a retried `write` that finds
/// the object already there succeeds if the stored bytes equal `data` (and reports
/// AlreadyExists otherwise), and a retried `delete` that finds nothing succeeds.
pub struct RetryStorage<S> {
    inner: S,
    retrier: Retrier,
}

impl<S: fmt::Debug> fmt::Debug for RetryStorage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStorage")
            .field("inner", &self.inner)
            .field("policy", &self.retrier.policy())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> RetryStorage<S> {
    /// Wrap `inner` with the default [`RetryPolicy`].
    pub fn new(inner: S) -> Self {
        Self::with_policy(inner, RetryPolicy::default())
    }

    /// Wrap `inner` with `policy`.
    pub fn with_policy(inner: S, policy: RetryPolicy) -> Self {
        let defaults = RemoteOptions::default();
        let retrier = Retrier::new(inner.location(), GiveUpBudget::for_remote(&defaults)).with_policy(policy);
        RetryStorage { inner, retrier }
    }

    /// Give up under `budget` (shared with other storages or layers) instead of a budget of its
    /// own.
    pub fn with_budget(mut self, budget: Arc<GiveUpBudget>) -> Self {
        let policy = self.retrier.policy();
        self.retrier = Retrier::new(self.inner.location(), budget).with_policy(policy);
        self
    }

    /// Replace how the wrapper waits between attempts (default: `std::thread::sleep`);
    /// tests pass a recorder so they check the backoff without sleeping.
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.retrier = self.retrier.with_sleep(sleep);
        self
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Storage> Storage for RetryStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn transfers(&self) -> usize {
        self.inner.transfers()
    }

    fn create(&self) -> StorageResult<()> {
        self.retrier.run(|_| self.inner.create())
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.retrier.run(|_| self.inner.list(kind))
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        self.retrier.run(|_| self.inner.read(kind, id, range))
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.retrier.run(|retried| match self.inner.write(kind, id, data) {
            Err(StorageError::AlreadyExists { what }) if retried => {
                // The earlier attempt may have landed; accept it only if it is ours.
                match self.inner.read(kind, id, None) {
                    Ok(stored) if stored == data => Ok(()),
                    Ok(_) => Err(StorageError::AlreadyExists { what }),
                    Err(e) => Err(e),
                }
            }
            other => other,
        })
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        self.retrier.run(|retried| match self.inner.delete(kind, id) {
            Err(e) if retried && e.is_not_found() => Ok(()),
            other => other,
        })
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.retrier.run(|_| self.inner.stat(kind, id))
    }
}
