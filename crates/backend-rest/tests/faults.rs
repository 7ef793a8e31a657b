//! RestStorage through a fault-injecting proxy in front of a real server, with short timeouts
//! (idle 2 s, connect 2 s, give up after 6 s): a dead link is given up on in bounded time, a
//! frozen one within one give-up budget shared by every thread, a broken one is retried, a
//! slow one is never cut.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{fast_options, Server};
use offsite_backend::conformance::id_of;
use offsite_backend::{ObjectKind, RemoteOptions, Storage};
use offsite_backend_rest::RestStorage;
use offsite_testkit::freeze::{
    self, assert_gave_up_within, freeze_under_load, frozen_options, gave_up_seconds,
};
use offsite_testkit::FaultProxy;

/// A server with repository "repo" created, a direct client, the proxy and a client through it.
fn setup() -> (Server, RestStorage, FaultProxy, RestStorage) {
    let server = Server::start(&[]);
    let direct = RestStorage::new(&server.url("", "repo"), RemoteOptions::default()).unwrap();
    direct.create().unwrap();
    let proxy = FaultProxy::start(server.addr);
    let via = RestStorage::new(&format!("http://{}/repo/", proxy.addr()), fast_options()).unwrap();
    (server, direct, proxy, via)
}

fn object(size: usize) -> (String, Vec<u8>) {
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    (id_of(&data), data)
}

#[test]
fn blackhole_mid_read_gives_up_within_the_budget() {
    require_rclone!();
    let (_server, direct, proxy, via) = setup();
    let (id, data) = object(4 << 20);
    direct.write(ObjectKind::Data, &id, &data).unwrap();
    let opts = fast_options();

    proxy.trickle(256 * 1024);
    let start = Instant::now();
    let err = std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(
                proxy.wait_until(Duration::from_secs(10), |s| s.forwarded > 200_000),
                "read never started"
            );
            proxy.blackhole(true);
        });
        via.read(ObjectKind::Data, &id, None).unwrap_err()
    });
    let elapsed = start.elapsed();
    eprintln!("blackhole mid-read: gave up after {elapsed:?}: {err}");
    assert!(err.is_transient(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("storage unreachable: {}", via.location())), "{msg}");
    assert!(msg.ends_with("s of failures (--give-up-after 6s)"), "{msg}");
    // Bound: the budget, plus the one attempt in flight when it ran out (an idle timeout).
    let bound = opts.give_up_after + opts.idle_timeout + Duration::from_secs(1);
    assert!(elapsed < bound, "took {elapsed:?}, bound {bound:?}");
    assert!(elapsed >= opts.give_up_after - opts.idle_timeout, "gave up early, after {elapsed:?}");
    assert!(proxy.stats().connections >= 2, "never retried: {:?}", proxy.stats());
}

#[test]
fn refused_connections_say_storage_unreachable_within_the_budget() {
    require_rclone!();
    let (_server, _direct, proxy, via) = setup();
    proxy.refuse(true);
    let start = Instant::now();
    let err = via.list(ObjectKind::Snapshot).unwrap_err();
    let elapsed = start.elapsed();
    eprintln!("refused: gave up after {elapsed:?} and {} attempts: {err}", proxy.stats().refused);
    assert!(elapsed < fast_options().give_up_after + Duration::from_secs(1), "took {elapsed:?}");
    // The whole budget is used: the last wait is cut short so a last attempt starts when it
    // ends (the loop used to stop once the next wait would end past it, after 3.1 s of 6).
    let budget = fast_options().give_up_after;
    assert!(elapsed >= budget - Duration::from_millis(50), "stopped retrying early: {elapsed:?}");
    assert!(err.is_transient(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("storage unreachable: {}: GET snapshots/", via.location())), "{msg}");
    assert!(msg.ends_with("s of failures (--give-up-after 6s)"), "{msg}");
    let secs = gave_up_seconds(&msg).unwrap_or_else(|| panic!("no time spent in {msg}"));
    assert!(secs >= 5.9 && secs <= elapsed.as_secs_f64() + 0.1, "{msg} after {elapsed:?}");
    assert!(proxy.stats().refused >= 5, "{:?}", proxy.stats());
}

/// Hardening item 7 on REST: eight threads uploading (more than the four connections), the
/// link freezes (TCP open, nothing forwarded), then three more calls after they all failed (as
/// a check or restore carrying on with the next pack): every call ends within give-up-after +
/// connect-timeout + idle-timeout of the freeze, where each call used to get its own budget.
#[test]
fn a_frozen_link_ends_every_thread_within_the_give_up_bound() {
    require_rclone!();
    let server = Server::start(&[]);
    RestStorage::new(&server.url("", "repo"), RemoteOptions::default()).unwrap().create().unwrap();
    let proxy = FaultProxy::start(server.addr);
    let opts = frozen_options();
    let via = RestStorage::new(&format!("http://{}/repo/", proxy.addr()), opts.clone()).unwrap();
    let run = freeze_under_load(
        8,
        16,
        |thread, n| {
            let data = freeze::object(thread, n);
            via.write(ObjectKind::Data, &id_of(&data), &data)
        },
        || proxy.blackhole(true),
    );
    assert_gave_up_within("rest", &run, &opts, &via.location());
}

#[test]
fn a_write_cut_midway_is_retried_and_lands_once_the_link_heals() {
    require_rclone!();
    let (server, direct, proxy, via) = setup();
    let (id, data) = object(1 << 20);
    proxy.stall_after(256 * 1024);
    let start = Instant::now();
    let healed_at = std::thread::scope(|scope| {
        let healer = scope.spawn(|| {
            assert!(
                proxy.wait_until(Duration::from_secs(10), |s| s.forwarded >= 256 * 1024),
                "upload never started"
            );
            proxy.refuse(true);
            proxy.cut_all();
            assert!(proxy.wait_until(Duration::from_secs(10), |s| s.refused >= 1), "write was not retried");
            proxy.heal();
            start.elapsed()
        });
        via.write(ObjectKind::Data, &id, &data).unwrap();
        healer.join().unwrap()
    });
    let elapsed = start.elapsed();
    eprintln!("cut during write: healed after {healed_at:?}, write done after {elapsed:?}");
    assert_eq!(direct.read(ObjectKind::Data, &id, None).unwrap(), data);
    let stats = proxy.stats();
    assert!(stats.connections >= 2 && stats.refused >= 1, "{stats:?}");
    let on_disk = server.path_in("repo", &format!("data/{}/{id}", &id[..2]));
    assert_eq!(std::fs::read(on_disk).unwrap(), data);
}

#[test]
fn a_trickle_slower_than_the_idle_timeout_still_completes() {
    require_rclone!();
    let (_server, direct, proxy, via) = setup();
    let (id, data) = object(1 << 20);
    direct.write(ObjectKind::Data, &id, &data).unwrap();
    proxy.trickle(200 * 1024);
    let start = Instant::now();
    let back = via.read(ObjectKind::Data, &id, None).unwrap();
    let elapsed = start.elapsed();
    eprintln!("trickle 200 KiB/s: 1 MiB read in {elapsed:?}");
    assert!(back == data, "read back differs");
    let idle = fast_options().idle_timeout;
    assert!(elapsed > idle * 2, "the transfer took {elapsed:?}: not slower than the idle timeout {idle:?}");
    assert_eq!(proxy.stats().connections, 1, "the slow transfer was cut and retried");
}

#[test]
fn a_body_cut_short_is_retried() {
    require_rclone!();
    let (_server, direct, proxy, via) = setup();
    let (id, data) = object(1 << 20);
    direct.write(ObjectKind::Data, &id, &data).unwrap();
    proxy.close_after(100 * 1024);
    let back = std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(
                proxy.wait_until(Duration::from_secs(10), |s| s.connections >= 1 && s.open == 0),
                "no cut"
            );
            proxy.heal();
        });
        via.read(ObjectKind::Data, &id, Some((1000, 900_000))).unwrap()
    });
    assert!(back == data[1000..901_000], "range read back differs");
    assert!(proxy.stats().connections >= 2, "{:?}", proxy.stats());
}
