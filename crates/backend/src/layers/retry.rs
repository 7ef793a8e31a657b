//! Retrying transient errors with exponential backoff.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{StorageError, StorageResult};
use crate::kind::ObjectKind;
use crate::storage::Storage;

/// How often and how patiently [`RetryStorage`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least one is always made).
    pub max_tries: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub base_delay: Duration,
    /// Upper bound on a single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five tries, waiting 100 ms, 200 ms, 400 ms, 800 ms between them (at most 10 s each).
    fn default() -> Self {
        RetryPolicy {
            max_tries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): `base_delay * 2^(attempt-1)`,
    /// capped at `max_delay`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.checked_mul(factor).unwrap_or(self.max_delay).min(self.max_delay)
    }
}

type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// Retries calls that fail with a [`StorageError::Transient`] error, waiting with
/// exponential backoff between attempts; every other result passes through unchanged, and
/// after `max_tries` attempts the last transient error is returned.
///
/// Two answers are read in the light of an earlier transient failure of the same call,
/// because that attempt may have landed before the link broke: a retried `write` that finds
/// the object already there succeeds if the stored bytes equal `data` (and reports
/// AlreadyExists otherwise), and a retried `delete` that finds nothing succeeds.
pub struct RetryStorage<S> {
    inner: S,
    policy: RetryPolicy,
    sleep: Sleeper,
}

impl<S: fmt::Debug> fmt::Debug for RetryStorage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStorage")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
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
        RetryStorage { inner, policy, sleep: Arc::new(std::thread::sleep) }
    }

    /// Replace how the wrapper waits between attempts (default: `std::thread::sleep`);
    /// tests pass a recorder so they check the backoff without sleeping.
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleep = Arc::new(sleep);
        self
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Run `op` until it succeeds, fails for good, or the tries are used up. `op` receives
    /// whether an earlier attempt failed transiently.
    fn run<T>(&self, mut op: impl FnMut(bool) -> StorageResult<T>) -> StorageResult<T> {
        let mut attempt = 1;
        loop {
            match op(attempt > 1) {
                Err(e) if e.is_transient() && attempt < self.policy.max_tries => {
                    (self.sleep)(self.policy.delay_after(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
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
        self.run(|_| self.inner.create())
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.run(|_| self.inner.list(kind))
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        self.run(|_| self.inner.read(kind, id, range))
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.run(|retried| match self.inner.write(kind, id, data) {
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
        self.run(|retried| match self.inner.delete(kind, id) {
            Err(e) if retried && e.is_not_found() => Ok(()),
            other => other,
        })
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.run(|_| self.inner.stat(kind, id))
    }
}
