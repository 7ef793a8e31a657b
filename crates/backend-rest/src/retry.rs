//! Retrying one storage call through transient failures, within a time budget.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use offsite_backend::{RemoteOptions, StorageError, StorageResult};

/// Wait before the first retry; doubled before each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Upper bound on one wait.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Run `op` until it succeeds or fails with a non-transient error. A transient failure is
/// retried after an exponential backoff (100 ms, 200 ms, ... at most 10 s) unless the next
/// attempt would start after `give_up_after`; then the call fails with a Transient error that
/// reads "storage unreachable: <location>: <cause> (gave up after <budget>)". `op` receives
/// whether an earlier attempt failed transiently (it may have landed all the same).
///
/// An attempt in progress is not interrupted, so a call ends at most one attempt (bounded by
/// the connect and idle timeouts when the link is gone) after `give_up_after`.
pub(crate) fn with_retries<T>(
    opts: &RemoteOptions,
    location: &str,
    mut op: impl FnMut(bool) -> StorageResult<T>,
) -> StorageResult<T> {
    let start = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut retried = false;
    loop {
        match op(retried) {
            Err(StorageError::Transient { what, source }) => {
                if start.elapsed() + delay >= opts.give_up_after {
                    return Err(StorageError::Transient {
                        what: format!("storage unreachable: {location}"),
                        source: io::Error::new(
                            source.kind(),
                            format!("{what}: {source} (gave up after {})", human(opts.give_up_after)),
                        ),
                    });
                }
                thread::sleep(delay);
                delay = (delay * 2).min(MAX_DELAY);
                retried = true;
            }
            other => return other,
        }
    }
}

/// A duration the way people write it: "10m", "6s", "1h30m", "250ms".
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(budget_ms: u64) -> RemoteOptions {
        RemoteOptions { give_up_after: Duration::from_millis(budget_ms), ..RemoteOptions::default() }
    }

    fn transient() -> StorageError {
        StorageError::Transient {
            what: "GET config".into(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
        }
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(6)), "6s");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let mut calls = 0;
        let r = with_retries(&opts(10_000), "http://h/", |retried| {
            calls += 1;
            assert_eq!(retried, calls > 1);
            if calls < 3 {
                Err(transient())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let mut calls = 0;
        let r: StorageResult<()> = with_retries(&opts(10_000), "http://h/", |_| {
            calls += 1;
            Err(StorageError::NotFound { what: "x".into() })
        });
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(calls, 1);
    }

    #[test]
    fn giving_up_says_storage_unreachable_with_the_budget() {
        let start = Instant::now();
        let mut calls = 0;
        let r: StorageResult<()> = with_retries(&opts(500), "http://h/repo/", |_| {
            calls += 1;
            Err(transient())
        });
        let err = r.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "storage unreachable: http://h/repo/: GET config: connection refused (gave up after 500ms)"
        );
        assert!(calls >= 3, "only {calls} attempts");
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
