//! The SFTP backend through a fault-injecting TCP proxy in front of a real sshd: a dead link
//! gives a bounded, clear error; a frozen link ends every thread's calls within one shared
//! give-up budget; a reset link is reconnected and the calls succeed; a stalled transfer is
//! detected by the idle timeout; a slow link is not cut.
//!
//! Timeouts are short here (idle 2 s, connect 2 s, give up after 6 s; the frozen-link test
//! idle 1 s, connect 2 s, give up after 3 s).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use offsite_backend::conformance::id_of;
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_sftp::{SftpOptions, SftpStorage};
use offsite_testkit::freeze::{
    assert_gave_up_within, freeze_under_load, frozen_options, gave_up_seconds, object,
};
use offsite_testkit::FaultProxy;

struct Setup {
    proxy: FaultProxy,
    storage: SftpStorage,
    _kh: tempfile::TempDir,
}

fn through_proxy(name: &str) -> Option<Setup> {
    through_proxy_with(name, common::short_timeouts())
}

fn through_proxy_with(name: &str, remote: RemoteOptions) -> Option<Setup> {
    let sshd = common::sshd()?;
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], sshd.port)));
    let port = proxy.addr().port();
    let (kh_dir, kh) = sshd.known_hosts_for(port);
    let dir = sshd.repo_dir(name);
    let storage = SftpStorage::new(&sshd.url(port, &dir), sshd.options(&kh, remote)).expect("storage");
    storage.create().expect("create through the healthy proxy");
    Some(Setup { proxy, storage, _kh: kh_dir })
}

/// give_up_after, plus one connect or idle timeout for the attempt running when the budget
/// ends, plus scheduling slack.
const BOUND: Duration = Duration::from_secs(6 + 2 + 3);

fn assert_unreachable(e: &StorageError, port: u16) {
    assert!(e.is_transient(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("storage unreachable: sftp://127.0.0.1:{port}/")), "{msg}");
    assert!(msg.ends_with("s of failures (--give-up-after 6s)"), "{msg}");
    let secs = gave_up_seconds(&msg).unwrap_or_else(|| panic!("no time spent in {msg}"));
    assert!((5.0..=BOUND.as_secs_f64()).contains(&secs), "{msg}");
    assert!(!msg.contains('\n'));
}

#[test]
fn a_blackholed_link_gives_up_within_the_budget() {
    let Some(t) = through_proxy("blackhole") else { return };
    let data = b"before the link died".to_vec();
    t.storage.write(ObjectKind::Snapshot, &id_of(&data), &data).expect("write while healthy");
    t.proxy.blackhole(true);
    let started = Instant::now();
    let e = t.storage.list(ObjectKind::Snapshot).expect_err("the link is dead");
    let elapsed = started.elapsed();
    assert_unreachable(&e, t.proxy.addr().port());
    assert!(elapsed >= Duration::from_secs(5), "gave up before spending the retry budget: {elapsed:?}");
    assert!(elapsed <= BOUND, "took {elapsed:?}, more than {BOUND:?}");
    assert!(t.proxy.stats().connections >= 2, "reconnects were attempted: {:?}", t.proxy.stats());
}

#[test]
fn refused_connections_give_up_within_the_budget() {
    let Some(t) = through_proxy("refuse") else { return };
    t.proxy.refuse(true);
    t.proxy.cut_all();
    let started = Instant::now();
    let e = t.storage.stat(ObjectKind::Index, &id_of(b"x")).expect_err("refused");
    let elapsed = started.elapsed();
    assert_unreachable(&e, t.proxy.addr().port());
    assert!(elapsed <= BOUND, "took {elapsed:?}");
    assert!(t.proxy.stats().refused >= 2, "retried with backoff: {:?}", t.proxy.stats());
}

/// Hardening item 7: with several threads uploading (more than the storage has connections,
/// as a backup's upload threads) and three more calls after they all failed (as a check or
/// restore carrying on with the next pack), a link that freezes (TCP open, nothing forwarded)
/// ends every call within give-up-after + connect-timeout + idle-timeout of the freeze: one budget for all of them,
/// where each call (and each thread waiting for a connection) used to get its own.
#[test]
fn a_frozen_link_ends_every_thread_within_the_give_up_bound() {
    let remote = frozen_options();
    let Some(t) = through_proxy_with("frozen", remote.clone()) else { return };
    let run = freeze_under_load(
        8,
        16,
        |thread, n| {
            let data = object(thread, n);
            t.storage.write(ObjectKind::Data, &id_of(&data), &data)
        },
        || t.proxy.blackhole(true),
    );
    assert_gave_up_within("sftp", &run, &remote, &t.storage.target().endpoint());
}

#[test]
fn cut_connections_are_reconnected_and_uploads_succeed() {
    let Some(t) = through_proxy("cut") else { return };
    let objects: Vec<Vec<u8>> = (0..24u32).map(|i| vec![i as u8; 512 * 1024 + i as usize]).collect();
    let before = t.proxy.stats();
    std::thread::scope(|scope| {
        for part in objects.chunks(6) {
            let s = &t.storage;
            scope.spawn(move || {
                for o in part {
                    s.write(ObjectKind::Data, &id_of(o), o).expect("write survives cut links");
                }
            });
        }
        // Cut every connection twice while the uploads are under way.
        for n in 1..=2u64 {
            assert!(
                t.proxy.wait_until(Duration::from_secs(20), |s| s.forwarded
                    >= before.forwarded + n * 3 * 1024 * 1024),
                "uploads did not progress"
            );
            t.proxy.cut_all();
        }
    });
    assert!(t.proxy.stats().connections > before.connections, "connections were re-established");
    let listed = t.storage.list(ObjectKind::Data).expect("list");
    assert_eq!(listed.len(), objects.len(), "{listed:?}");
    for o in &objects {
        assert_eq!(&t.storage.read(ObjectKind::Data, &id_of(o), None).expect("read"), o);
    }
}

#[test]
fn a_stalled_upload_is_detected_and_retried_on_a_new_connection() {
    let Some(t) = through_proxy("stall") else { return };
    let data: Vec<u8> = (0..4u32 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let id = id_of(&data);
    let before = t.proxy.stats();
    // The connection in use has forwarded little so far; 1 MiB more and it stalls.
    t.proxy.stall_after(1024 * 1024);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| t.storage.write(ObjectKind::Data, &id, &data));
        // The idle timeout notices, and the client reconnects: then let traffic flow.
        assert!(
            t.proxy.wait_until(Duration::from_secs(10), |s| s.connections > before.connections),
            "no reconnect after the stall"
        );
        t.proxy.heal();
        writer.join().expect("writer thread").expect("write completes after the stall");
    });
    assert!(started.elapsed() >= Duration::from_secs(2), "the stall was waited out by the idle timeout");
    assert_eq!(t.storage.read(ObjectKind::Data, &id, None).expect("read back"), data);
}

#[test]
fn a_slow_link_is_not_cut_for_being_slow() {
    let Some(t) = through_proxy("trickle") else { return };
    // 1 MiB at 400 KiB/s takes about 2.5 s, longer than the 2 s idle timeout, but bytes keep
    // moving, so nothing may time out.
    let data: Vec<u8> = (0..1024u32 * 1024).map(|i| (i % 241) as u8).collect();
    let id = id_of(&data);
    let before = t.proxy.stats();
    t.proxy.trickle(400 * 1024);
    let started = Instant::now();
    t.storage.write(ObjectKind::Data, &id, &data).expect("slow write");
    let elapsed = started.elapsed();
    t.proxy.heal();
    assert!(elapsed >= Duration::from_secs(2), "the link was throttled: {elapsed:?}");
    assert_eq!(t.proxy.stats().connections, before.connections, "no reconnect on a slow but live link");
    assert_eq!(t.storage.read(ObjectKind::Data, &id, None).expect("read back"), data);
}

/// A link closed while the client waits for the server's answer to its key is a link failure
/// (retried until the budget, then "storage unreachable"), never "authentication failed":
/// russh reports such a close as a refused key. The proxy closes every connection after `n`
/// bytes, with `n` swept across the end of the authentication exchange, which a key the server
/// refuses locates (same key type, so the same message sizes). The budget is short (300 ms) so
/// each cut point gives up quickly.
#[test]
fn a_link_closed_during_authentication_is_retried_not_called_a_wrong_key() {
    let Some(sshd) = common::sshd() else { return };
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], sshd.port)));
    let port = proxy.addr().port();
    let (_kh_dir, kh) = sshd.known_hosts_for(port);
    let dir = sshd.repo_dir("authcut");
    let quick = RemoteOptions {
        idle_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_millis(300),
        concurrency: 1,
        ..RemoteOptions::default()
    };
    let other = tempfile::tempdir().expect("tempdir");
    common::keygen(&other.path().join("stranger"));
    let stranger =
        SftpOptions { identity: Some(other.path().join("stranger")), ..sshd.options(&kh, quick.clone()) };
    let before = proxy.stats().forwarded;
    let refused = SftpStorage::new(&sshd.url(port, &dir), stranger).expect("storage");
    let e = refused.create().expect_err("key not authorized");
    assert!(matches!(e, StorageError::PermissionDenied { .. }), "{e:?}");
    let whole = proxy.stats().forwarded - before;
    let mut cuts = 0;
    for n in (whole.saturating_sub(320)..=whole).step_by(8) {
        proxy.close_after(n);
        let s = SftpStorage::new(&sshd.url(port, &dir), sshd.options(&kh, quick.clone())).expect("storage");
        if let Err(e) = s.stat(ObjectKind::Index, &id_of(b"x")) {
            assert!(!matches!(e, StorageError::PermissionDenied { .. }), "closed after {n} bytes: {e}");
            cuts += 1;
        }
    }
    assert!(cuts > 0, "no cut point failed the call: the sweep missed the connection setup");
    proxy.heal();
}
