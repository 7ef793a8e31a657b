//! Retrying transient failures: one mechanism for every remote storage and for
//! [`crate::layers::RetryStorage`].
//!
//! A backend classifies what one attempt did into a [`StorageResult`]: `Ok`, a definite answer
//! (not found, no space, refused...), or [`StorageError::Transient`] (the link broke, stalled or
//! the server said "try later"). A [`Retrier`] runs the attempts: exponential backoff between
//! them ([`RetryPolicy`]), and one [`GiveUpBudget`] shared by every call and every thread of the
//! storage, so a command whose storage stopped answering ends in bounded time.
//!
//! # The give-up budget
//!
//! A run of failures starts at the first transient failure after the last success and ends at
//! the next success (any answer from the storage, on any thread). A failure found by a timeout
//! (its cause has [`io::ErrorKind::TimedOut`]: nothing moved for the idle timeout, or connecting
//! took too long) counts from the moment the link stopped moving: the idle timeout before it was
//! reported, but not before its attempt started.
//!
//! Once a run has lasted `give_up_after`:
//! - a call whose attempt fails gives up instead of waiting for another one (an attempt is
//!   never interrupted, so it ends within its own connect and idle timeouts);
//! - a call that starts fails at once, without an attempt, except for one probe attempt every
//!   `give_up_after` after the last failure, so a long-lived process notices that the storage is
//!   back;
//! - so a command ends within `give_up_after` plus one attempt (the connect timeout plus the
//!   idle timeout) of the moment its storage stopped moving, however many threads it runs.
//!
//! Waits between attempts double from 100 ms up to 10 s; the last one is cut short so that one
//! more attempt starts when the budget ends. A call that has itself failed for `give_up_after`
//! gives up even if other calls succeeded meanwhile (a link that carries small requests but
//! stalls every large one). Giving up is a [`StorageError::Transient`] error reading
//! `storage unreachable: LOCATION: CAUSE; gave up after 23.4s of failures (--give-up-after 20s)`
//! with the real time the run lasted; [`GaveUp::of`] finds those figures in it.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{StorageError, StorageResult};
use crate::remote::RemoteOptions;

/// How a [`Retrier`] waits between attempts, and an optional cap on their number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least one is always made); `u32::MAX` for no
    /// limit but time ([`RetryPolicy::remote`]).
    pub max_tries: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub base_delay: Duration,
    /// Upper bound on a single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five tries, waiting 100 ms, 200 ms, 400 ms, 800 ms between them (at most 10 s each): what
    /// [`crate::layers::RetryStorage`] does by default.
    fn default() -> Self {
        RetryPolicy { max_tries: 5, ..RetryPolicy::remote() }
    }
}

impl RetryPolicy {
    /// Remote storages: waits of 100 ms doubling up to 10 s, as many attempts as the give-up
    /// budget allows.
    pub fn remote() -> Self {
        RetryPolicy {
            max_tries: u32::MAX,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): `base_delay * 2^(attempt-1)`,
    /// capped at `max_delay`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.checked_mul(factor).unwrap_or(self.max_delay).min(self.max_delay)
    }
}

/// A retry attempt may start this long after the budget's end: a wait cut short to end with
/// the budget overshoots it by a little.
const LATE_START: Duration = Duration::from_millis(100);

/// The give-up budget of one storage, shared by all its calls and threads (see the module
/// doc). Made once per storage with [`GiveUpBudget::new`] and shared as an `Arc`.
#[derive(Debug)]
pub struct GiveUpBudget {
    give_up_after: Duration,
    idle_timeout: Duration,
    run: Mutex<Option<Run>>,
}

/// The current run of failures.
#[derive(Debug)]
struct Run {
    /// When the run started: the first failure, or the moment its link stopped moving.
    since: Instant,
    /// The last failure's message, for calls that give up without an attempt.
    cause: String,
    /// From when a call may make a probe attempt although the budget is spent.
    next_probe: Instant,
}

impl GiveUpBudget {
    /// A budget that gives up after `give_up_after` of failures, counting a failure found by
    /// a timeout from up to `idle_timeout` before it was reported.
    pub fn new(give_up_after: Duration, idle_timeout: Duration) -> Arc<GiveUpBudget> {
        Arc::new(GiveUpBudget { give_up_after, idle_timeout, run: Mutex::new(None) })
    }

    /// The budget of a remote storage built with `opts`.
    pub fn for_remote(opts: &RemoteOptions) -> Arc<GiveUpBudget> {
        GiveUpBudget::new(opts.give_up_after, opts.idle_timeout)
    }

    /// How long a run of failures may last.
    pub fn give_up_after(&self) -> Duration {
        self.give_up_after
    }

    fn lock(&self) -> MutexGuard<'_, Option<Run>> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The storage answered (or a transfer moved again): the run of failures, if any, ends.
    pub fn succeeded(&self) {
        *self.lock() = None;
    }

    /// How long the current run of failures has lasted, if there is one.
    pub fn failing_for(&self) -> Option<Duration> {
        self.lock().as_ref().map(|r| r.since.elapsed())
    }

    /// An attempt that waited longer than the idle timeout (its backend let it, e.g. for an
    /// upload's last bytes to drain from socket buffers) is being abandoned because nothing
    /// moved since `since`: the run of failures started then at the latest. Returns when the
    /// run started.
    pub fn stalled(&self, since: Instant, cause: &str) -> Instant {
        self.record(since, cause.to_string())
    }

    /// Record a failure that began at `began`; returns when the run started.
    fn record(&self, began: Instant, cause: String) -> Instant {
        let now = Instant::now();
        let mut run = self.lock();
        let run = run.get_or_insert_with(|| Run { since: began, cause: String::new(), next_probe: now });
        run.since = run.since.min(began);
        run.cause = cause;
        run.next_probe = now + self.give_up_after;
        run.since
    }

    /// Whether a new call may make its first attempt; when not, how long the run has lasted
    /// and its last failure's message.
    fn admit(&self, now: Instant) -> Result<(), (Duration, String)> {
        let mut run = self.lock();
        let Some(run) = run.as_mut() else { return Ok(()) };
        if now < run.since + self.give_up_after {
            return Ok(());
        }
        if now >= run.next_probe {
            run.next_probe = now + self.give_up_after;
            return Ok(());
        }
        Err((now.saturating_duration_since(run.since), run.cause.clone()))
    }
}

/// What a call that gave up saw: the inner error of the [`StorageError::Transient`] error a
/// [`Retrier`] returns when the give-up budget is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The last failure, one line.
    pub cause: String,
    /// How long the run of failures lasted when the call gave up.
    pub elapsed: Duration,
    /// The budget (`--give-up-after`).
    pub give_up_after: Duration,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.cause, self.summary())
    }
}

impl std::error::Error for GaveUp {}

impl GaveUp {
    /// `gave up after 23.4s of failures (--give-up-after 20s)`.
    pub fn summary(&self) -> String {
        format!(
            "gave up after {:.1}s of failures (--give-up-after {})",
            self.elapsed.as_secs_f64(),
            human(self.give_up_after)
        )
    }

    /// The figures of a give-up error made by a [`Retrier`], if `e` is one.
    pub fn of(e: &StorageError) -> Option<&GaveUp> {
        match e {
            StorageError::Transient { source, .. } => source.get_ref()?.downcast_ref::<GaveUp>(),
            _ => None,
        }
    }

    /// The error a call that gave up on `location` returns.
    pub fn into_error(self, location: &str) -> StorageError {
        StorageError::Transient {
            what: format!("storage unreachable: {location}"),
            source: io::Error::new(io::ErrorKind::TimedOut, self),
        }
    }
}

/// A duration the way the command line takes it: "10m", "6s", "1h30m", "250ms", "1.5s".
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    if d.subsec_millis() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
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

/// True if `e` is a transient failure found by a timeout (nothing moved).
fn timed_out(e: &StorageError) -> bool {
    matches!(e, StorageError::Transient { source, .. } if source.kind() == io::ErrorKind::TimedOut)
}

type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// Runs a storage call's attempts under a [`RetryPolicy`] and a shared [`GiveUpBudget`]; see
/// the module doc. Cheap to clone (the budget is shared, not copied).
#[derive(Clone)]
pub struct Retrier {
    location: String,
    budget: Arc<GiveUpBudget>,
    policy: RetryPolicy,
    sleep: Sleeper,
}

impl fmt::Debug for Retrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrier")
            .field("location", &self.location)
            .field("budget", &self.budget)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What to do after an attempt.
enum Next<T> {
    /// The call's result.
    Done(StorageResult<T>),
    /// Wait this long, then make another attempt.
    Wait(Duration),
}

/// One call's progress through its attempts.
struct Attempts<'a> {
    r: &'a Retrier,
    tries: u32,
    delay: Duration,
    /// When this call's own first failure began.
    call_since: Option<Instant>,
    attempt_started: Instant,
}

impl<'a> Attempts<'a> {
    fn new(r: &'a Retrier) -> Self {
        Attempts {
            r,
            tries: 0,
            delay: r.policy.base_delay,
            call_since: None,
            attempt_started: Instant::now(),
        }
    }

    /// Before each attempt: an error (and no attempt) when the budget is spent.
    fn begin(&mut self, last: Option<&StorageError>) -> StorageResult<()> {
        let now = Instant::now();
        let budget = &self.r.budget;
        if self.tries == 0 {
            if let Err((elapsed, cause)) = budget.admit(now) {
                return Err(self.r.gave_up(cause, elapsed));
            }
        } else if let Some(start) = self.run_start() {
            if now > start + budget.give_up_after + LATE_START {
                let cause = last.map(|e| self.r.cause(e)).unwrap_or_default();
                return Err(self.r.gave_up(cause, now - start));
            }
        }
        self.tries += 1;
        self.attempt_started = now;
        Ok(())
    }

    /// The earlier of the shared run's start and this call's own first failure.
    fn run_start(&self) -> Option<Instant> {
        let shared = self.r.budget.lock().as_ref().map(|run| run.since);
        match (shared, self.call_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// After each attempt: the call's result, or how long to wait before the next attempt.
    fn end<T>(&mut self, result: StorageResult<T>) -> (Next<T>, Option<StorageError>) {
        let e = match result {
            Err(e) if e.is_transient() => e,
            other => {
                self.r.budget.succeeded();
                return (Next::Done(other), None);
            }
        };
        let now = Instant::now();
        let budget = &self.r.budget;
        let began = if timed_out(&e) {
            now.checked_sub(budget.idle_timeout).map_or(self.attempt_started, |t| t.max(self.attempt_started))
        } else {
            now
        };
        let cause = self.r.cause(&e);
        let shared = budget.record(began, cause.clone());
        let start = shared.min(*self.call_since.get_or_insert(began));
        let deadline = start + budget.give_up_after;
        if now >= deadline {
            return (Next::Done(Err(self.r.gave_up(cause, now - start))), None);
        }
        if self.tries >= self.r.policy.max_tries {
            return (Next::Done(Err(e)), None);
        }
        let wait = self.delay.min(deadline - now);
        self.delay = (self.delay * 2).min(self.r.policy.max_delay);
        // One line at debug level (`-vv`), as a command that then gives up prints one line.
        tracing::debug!(
            "{}: attempt {} failed, retrying in {:.1} s ({:.1} s of failures): {}",
            self.r.location,
            self.tries,
            wait.as_secs_f64(),
            now.saturating_duration_since(start).as_secs_f64(),
            cause
        );
        (Next::Wait(wait), Some(e))
    }
}

impl Retrier {
    /// Retries for the storage at `location` (named in give-up messages) under `budget`, with
    /// [`RetryPolicy::remote`].
    pub fn new(location: impl Into<String>, budget: Arc<GiveUpBudget>) -> Retrier {
        Retrier {
            location: location.into(),
            budget,
            policy: RetryPolicy::remote(),
            sleep: Arc::new(std::thread::sleep),
        }
    }

    /// Retries for a remote storage at `location` built with `opts`, with a budget of its own.
    pub fn for_remote(location: impl Into<String>, opts: &RemoteOptions) -> Retrier {
        Retrier::new(location, GiveUpBudget::for_remote(opts))
    }

    /// Use `policy` for the waits and the number of attempts.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Retrier {
        self.policy = policy;
        self
    }

    /// Replace how [`Retrier::run`] waits between attempts (default `std::thread::sleep`);
    /// tests pass a recorder.
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Retrier {
        self.sleep = Arc::new(sleep);
        self
    }

    /// Name the storage `location` in give-up messages.
    pub fn with_location(mut self, location: impl Into<String>) -> Retrier {
        self.location = location.into();
        self
    }

    /// The shared budget.
    pub fn budget(&self) -> &Arc<GiveUpBudget> {
        &self.budget
    }

    /// The policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// A failure's message for the give-up error, on one line; a failure about the storage as
    /// a whole (its `what` is the location) without the location, which the message names
    /// already.
    fn cause(&self, e: &StorageError) -> String {
        let text = match e {
            StorageError::Transient { what, source } if *what == self.location => source.to_string(),
            _ => e.to_string(),
        };
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn gave_up(&self, cause: String, elapsed: Duration) -> StorageError {
        GaveUp { cause, elapsed, give_up_after: self.budget.give_up_after }.into_error(&self.location)
    }

    /// Run one call: `op` is one attempt and receives whether an earlier attempt of this call
    /// failed transiently (it may have landed all the same). Blocks the thread while waiting.
    pub fn run<T>(&self, mut op: impl FnMut(bool) -> StorageResult<T>) -> StorageResult<T> {
        let mut call = Attempts::new(self);
        let mut last = None;
        loop {
            call.begin(last.as_ref())?;
            match call.end(op(call.tries > 1)) {
                (Next::Done(r), _) => return r,
                (Next::Wait(d), e) => {
                    last = e;
                    (self.sleep)(d);
                }
            }
        }
    }

    /// [`Retrier::run`] for async attempts: `sleep(d)` is the runtime's timer (e.g.
    /// `tokio::time::sleep`).
    pub async fn run_async<T, F, Fut, S, SFut>(&self, mut op: F, sleep: S) -> StorageResult<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = StorageResult<T>>,
        S: Fn(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let mut call = Attempts::new(self);
        let mut last = None;
        loop {
            call.begin(last.as_ref())?;
            let result = op(call.tries > 1).await;
            match call.end(result) {
                (Next::Done(r), _) => return r,
                (Next::Wait(d), e) => {
                    last = e;
                    sleep(d).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(6)), "6s");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn delays_double_and_are_capped() {
        let p = RetryPolicy::remote();
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(4), Duration::from_millis(800));
        assert_eq!(p.delay_after(8), Duration::from_secs(10));
        assert_eq!(p.delay_after(60), Duration::from_secs(10));
    }

    #[test]
    fn gave_up_errors_carry_their_figures() {
        let e = GaveUp {
            cause: "GET config: connection refused".into(),
            elapsed: Duration::from_millis(23_400),
            give_up_after: Duration::from_secs(20),
        }
        .into_error("rest:http://h/r/");
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "storage unreachable: rest:http://h/r/: GET config: connection refused; gave up after 23.4s \
             of failures (--give-up-after 20s)"
        );
        assert_eq!(GaveUp::of(&e).map(|g| g.elapsed), Some(Duration::from_millis(23_400)));
        assert!(GaveUp::of(&StorageError::NotFound { what: "x".into() }).is_none());
    }
}
