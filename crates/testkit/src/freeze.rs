//! Freezing a storage's link while several threads use it, and measuring how long the calls
//! take to give up: the give-up bound of the remote backends (`--give-up-after` plus one
//! attempt, counted from the moment the link stopped moving, whatever the number of threads).
//!
//! [`freeze_under_load`] runs calls on several threads, as a backup's upload threads do,
//! freezes the link once they are under way, waits for every thread to fail, then makes a few
//! more calls one after the other (as a `check --read-data` or a restore carries on with the
//! next pack after a failed read, or a backup writes its final index), and measures from the
//! freeze to the end.
//! [`Paused`] freezes a server process itself (SIGSTOP): its connections stay open and it
//! answers nothing, for servers a [`crate::FaultProxy`] cannot be put in front of (the child
//! `rclone serve restic` of an rclone storage).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use offsite_backend::{RemoteOptions, StorageError};

/// What [`freeze_under_load`] saw.
#[derive(Debug)]
pub struct FrozenRun<E> {
    /// The error each thread stopped with, in thread order.
    pub errors: Vec<E>,
    /// The calls made one after the other once every thread had stopped.
    pub after: Vec<Result<(), E>>,
    /// From the freeze to the end of the last call.
    pub after_freeze: Duration,
    /// Calls that had succeeded when the link froze.
    pub done_before: u64,
}

/// Calls made after every thread stopped.
pub const CALLS_AFTER: usize = 3;

/// Run `call(thread, n)` for n = 0, 1, 2, ... on each of `threads` threads until it fails;
/// once `before` calls succeeded in all, `freeze()` the link. After every thread stopped, make
/// [`CALLS_AFTER`] more calls `call(threads, n)`, one after the other. Panics if the calls do
/// not get under way within a minute, or a thread's calls never fail (each is expected to give
/// up on the frozen link).
pub fn freeze_under_load<E: Send>(
    threads: usize,
    before: u64,
    call: impl Fn(usize, u64) -> Result<(), E> + Sync,
    freeze: impl FnOnce(),
) -> FrozenRun<E> {
    let done = AtomicU64::new(0);
    let (call, done_ref) = (&call, &done);
    let (errors, frozen, done_before) = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    for n in 0.. {
                        if let Err(e) = call(t, n) {
                            return e;
                        }
                        done_ref.fetch_add(1, SeqCst);
                    }
                    unreachable!("a thread's calls always end with an error")
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while done_ref.load(SeqCst) < before {
            assert!(Instant::now() < deadline, "the calls did not get under way within a minute");
            assert!(!handles.iter().any(|h| h.is_finished()), "a call failed before the link froze");
            thread::sleep(Duration::from_millis(2));
        }
        freeze();
        let frozen = Instant::now();
        let done_before = done_ref.load(SeqCst);
        let errors = handles.into_iter().map(|h| h.join().expect("a calling thread panicked")).collect();
        (errors, frozen, done_before)
    });
    let after = (0..CALLS_AFTER as u64).map(|n| call(threads, n)).collect();
    FrozenRun { errors, after, after_freeze: frozen.elapsed(), done_before }
}

/// A process stopped with SIGSTOP until this is dropped (SIGCONT).
#[derive(Debug)]
pub struct Paused(Pid);

impl Paused {
    /// Stop process `pid`. Panics if it cannot be signalled.
    pub fn stop(pid: u32) -> Paused {
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"));
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// The pid of a child of this process whose command name is `name` and whose command line
/// contains `arg`, if there is one (read from /proc).
pub fn child_process(name: &str, arg: &str) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm != name || ppid != Some(me) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(arg) {
            return Some(pid);
        }
    }
    None
}

/// The seconds in a give-up message's "gave up after 7.3s of failures", if it has them.
pub fn gave_up_seconds(message: &str) -> Option<f64> {
    let rest = &message[message.find("gave up after ")? + "gave up after ".len()..];
    rest[..rest.find("s of failures")?].parse().ok()
}

/// Small settings for frozen-link tests, so they finish in seconds: idle 1 s, connect 2 s,
/// give up after 3 s (a bound of 6 s), four connections.
pub fn frozen_options() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_secs(3),
        concurrency: 4,
        ..RemoteOptions::default()
    }
}

/// The `n`th object thread `thread` uploads in a frozen-link test: about 200 KiB, different for
/// every (thread, n).
pub fn object(thread: usize, n: u64) -> Vec<u8> {
    format!("{thread}-{n}.").repeat(40_000).into_bytes()
}

/// Scheduling slack allowed on top of a give-up bound on a loaded two-core machine.
pub const SLACK: Duration = Duration::from_secs(3);

/// Assert the give-up contract on a [`freeze_under_load`] run: every call (each thread's and
/// those after) ended within give-up + connect + idle (+ [`SLACK`]) of the freeze, each
/// with "storage unreachable: LOCATION: ...; gave up after Xs of failures (--give-up-after
/// Ns)", X the real time the failures lasted: at least the budget, at most the time since the
/// freeze plus the idle timeout (a stall counts from when the link stopped moving).
pub fn assert_gave_up_within(
    name: &str,
    run: &FrozenRun<StorageError>,
    opts: &RemoteOptions,
    location: &str,
) {
    let bound = opts.give_up_after + opts.connect_timeout + opts.idle_timeout;
    let took = run.after_freeze;
    eprintln!(
        "{name}: frozen link: every call ended {:.2}s after the freeze (bound {bound:?}, {} calls done before); \
         last call: {:?}",
        took.as_secs_f64(),
        run.done_before,
        run.after.last()
    );
    assert!(took <= bound + SLACK, "{name}: the calls ended {took:?} after the freeze, bound {bound:?}");
    let after =
        run.after.iter().map(|r| r.as_ref().expect_err("the link is still frozen: calls after must fail"));
    let budget = format!("s of failures (--give-up-after {}s)", opts.give_up_after.as_secs());
    for e in run.errors.iter().chain(after) {
        assert!(e.is_transient(), "{name}: {e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("storage unreachable: {location}: ")), "{name}: {msg}");
        assert!(msg.ends_with(&budget), "{name}: {msg}");
        let secs = gave_up_seconds(&msg).unwrap_or_else(|| panic!("{name}: no time spent in {msg}"));
        let most = (took + opts.idle_timeout).as_secs_f64();
        let least = opts.give_up_after.as_secs_f64() - 0.1;
        assert!(secs >= least && secs <= most, "{name}: {msg} ({took:?} after the freeze)");
    }
}
