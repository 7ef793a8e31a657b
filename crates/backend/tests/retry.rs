//! The retry mechanism every remote storage uses (`offsite_backend::retry`): one give-up
//! budget shared by all calls and threads, started by the first failure of a run and reset by
//! any success; the give-up message names the real time spent. Times are real and small (a
//! budget of 300 ms); every bound is measured, never slept out.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use offsite_backend::retry::{GaveUp, GiveUpBudget, Retrier, RetryPolicy};
use offsite_backend::{StorageError, StorageResult};

const GIVE_UP: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(100);
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(250);

fn retrier() -> Retrier {
    Retrier::new("test://storage", GiveUpBudget::new(GIVE_UP, IDLE))
}

fn refused() -> StorageError {
    StorageError::Transient {
        what: "GET config".into(),
        source: io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
    }
}

fn stalled() -> StorageError {
    StorageError::Transient {
        what: "PUT data/ab".into(),
        source: io::Error::new(io::ErrorKind::TimedOut, "no byte moved for 0.1 s"),
    }
}

/// An attempt on a frozen link: nothing moves for the idle timeout, then it fails.
fn frozen_attempt<T>() -> StorageResult<T> {
    thread::sleep(IDLE);
    Err(stalled())
}

fn gave_up(e: &StorageError) -> &GaveUp {
    GaveUp::of(e).unwrap_or_else(|| panic!("not a give-up error: {e:?}"))
}

#[test]
fn every_thread_and_every_later_call_share_one_budget() {
    let r = retrier();
    let frozen = Instant::now();
    // Eight threads (more than a storage has connections), then a ninth call after they all
    // gave up, as a backup's final index write: with a budget per call the later calls would
    // start over and the whole took 2-3 budgets.
    let barrier = Barrier::new(8);
    let errors: Vec<StorageError> = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (r, barrier) = (&r, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    if i >= 4 {
                        // Waited for a connection while the first four failed.
                        thread::sleep(GIVE_UP);
                    }
                    r.run(|_| frozen_attempt::<()>()).expect_err("frozen")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let last = r.run(|_| frozen_attempt::<()>()).expect_err("still frozen");
    let elapsed = frozen.elapsed();
    // The budget, plus the one attempt (an idle timeout here) in flight when it ran out.
    let bound = GIVE_UP + IDLE + SLACK;
    assert!(elapsed <= bound, "every call ended {elapsed:?} after the freeze, bound {bound:?}");
    for e in errors.iter().chain([&last]) {
        let g = gave_up(e);
        assert!(g.elapsed >= GIVE_UP - IDLE && g.elapsed <= bound, "{e}");
        assert_eq!(g.give_up_after, GIVE_UP);
    }
}

#[test]
fn a_call_after_the_budget_is_spent_fails_at_once_naming_the_last_failure() {
    let r = retrier();
    let started = Instant::now();
    let first = r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("refused");
    let first_took = started.elapsed();
    assert!(first_took >= GIVE_UP && first_took <= GIVE_UP + SLACK, "{first_took:?}");
    let msg = first.to_string();
    assert!(
        msg.starts_with(
            "storage unreachable: test://storage: GET config: connection refused; gave up after 0."
        ),
        "{msg}"
    );
    assert!(msg.ends_with("s of failures (--give-up-after 300ms)"), "{msg}");

    let attempts = AtomicU32::new(0);
    let t = Instant::now();
    let second = r
        .run(|_| -> StorageResult<()> {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(refused())
        })
        .expect_err("spent");
    assert!(t.elapsed() < Duration::from_millis(50), "took {:?}", t.elapsed());
    assert_eq!(attempts.load(Ordering::SeqCst), 0, "no attempt once the budget is spent");
    assert!(second.to_string().contains("GET config: connection refused; gave up after"), "{second}");
    assert!(gave_up(&second).elapsed >= first_took - Duration::from_millis(20));
}

#[test]
fn after_giving_up_one_probe_per_budget_finds_the_storage_back() {
    let r = retrier();
    r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("refused");
    assert!(r.run(|_| Ok(1)).is_err(), "no attempt right after giving up");
    // A probe is allowed a budget after the last failure: poll until it is.
    let t = Instant::now();
    let back = loop {
        match r.run(|_| Ok(7)) {
            Ok(v) => break v,
            Err(_) if t.elapsed() < GIVE_UP + SLACK => thread::yield_now(),
            Err(e) => panic!("no probe within {:?}: {e}", GIVE_UP + SLACK),
        }
    };
    assert_eq!(back, 7);
    assert!(t.elapsed() >= GIVE_UP - Duration::from_millis(20), "probed after {:?}", t.elapsed());
    assert_eq!(r.budget().failing_for(), None, "the success ended the run");
}

#[test]
fn any_success_resets_the_budget() {
    let r = retrier();
    let budget = Arc::clone(r.budget());
    let tries = AtomicU32::new(0);
    // Fails for two thirds of the budget, then succeeds.
    let t = Instant::now();
    let v = r
        .run(|_| {
            tries.fetch_add(1, Ordering::SeqCst);
            if t.elapsed() < GIVE_UP * 2 / 3 {
                Err(refused())
            } else {
                Ok(5)
            }
        })
        .expect("recovers within the budget");
    assert_eq!(v, 5);
    assert!(tries.load(Ordering::SeqCst) >= 3);
    assert_eq!(budget.failing_for(), None);
    // A new run gets the whole budget again.
    let t = Instant::now();
    let e = r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("refused");
    assert!(t.elapsed() >= GIVE_UP, "the new run gave up after {:?}: {e}", t.elapsed());
}

#[test]
fn a_stall_counts_from_when_the_link_stopped_moving() {
    let r = retrier();
    let t = Instant::now();
    let e = r.run(|_| frozen_attempt::<()>()).expect_err("frozen");
    let took = t.elapsed();
    // The first failure came after an idle timeout but the run started when the attempt did:
    // the call ends one budget after the freeze, plus at most the attempt running then.
    assert!(took >= GIVE_UP && took <= GIVE_UP + IDLE + SLACK, "took {took:?}: {e}");
    let g = gave_up(&e);
    assert!(g.elapsed >= took - Duration::from_millis(20), "{g:?} vs {took:?}");
}

#[test]
fn a_call_that_keeps_failing_gives_up_although_others_succeed() {
    let r = retrier();
    let t = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let e = thread::scope(|s| {
        let (stop, r2) = (&stop, &r);
        s.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                r2.run(|_| Ok(())).expect("small calls get through");
                thread::sleep(Duration::from_millis(20));
            }
        });
        let e = r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("the large call keeps failing");
        stop.store(true, Ordering::SeqCst);
        e
    });
    assert!(t.elapsed() <= GIVE_UP + SLACK, "took {:?}", t.elapsed());
    assert!(gave_up(&e).elapsed >= GIVE_UP, "{e}");
}

#[test]
fn definite_answers_are_not_retried_and_max_tries_still_applies() {
    let r = retrier();
    let n = AtomicU32::new(0);
    let e = r
        .run(|_| -> StorageResult<()> {
            n.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::NotFound { what: "x".into() })
        })
        .expect_err("not found");
    assert!(e.is_not_found());
    assert_eq!(n.load(Ordering::SeqCst), 1);

    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = Arc::clone(&waits);
    let r = retrier()
        .with_policy(RetryPolicy { max_tries: 3, ..RetryPolicy::remote() })
        .with_sleep(move |d| rec.lock().expect("lock").push(d));
    let e = r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("refused");
    assert!(GaveUp::of(&e).is_none(), "the last error itself after max_tries: {e}");
    assert_eq!(*waits.lock().expect("lock"), [Duration::from_millis(100), Duration::from_millis(200)]);
}

#[test]
fn async_calls_share_the_same_budget() {
    let r = retrier();
    r.run(|_| -> StorageResult<()> { Err(refused()) }).expect_err("refused");
    let attempts = AtomicU32::new(0);
    let fut = r.run_async(
        |_| {
            attempts.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, StorageError>(()))
        },
        |_| std::future::ready(()),
    );
    let e = block_on(fut).expect_err("spent by the blocking call");
    assert!(GaveUp::of(&e).is_some(), "{e}");
    assert_eq!(attempts.load(Ordering::SeqCst), 0);
}

/// A minimal executor for futures that never wait (no runtime in this crate).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
