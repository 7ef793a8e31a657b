//! Network faults between the backend and a real S3 server, through `FaultProxy`, with short
//! timeouts (idle 2 s, connect 2 s, give up after 6 s; the frozen-link test idle 1 s, connect
//! 2 s, give up after 3 s).

mod common;

use std::time::{Duration, Instant};

use offsite_backend::conformance::id_of;
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_s3::S3Storage;
use offsite_testkit::freeze::{
    assert_gave_up_within, freeze_under_load, frozen_options, gave_up_seconds, object,
};
use offsite_testkit::FaultProxy;

/// give_up_after, plus one attempt's connect and idle timeouts, plus scheduling margin.
const BOUND: Duration = Duration::from_secs(6 + 2 + 2 + 2);

struct Setup {
    _server: common::Server,
    proxy: FaultProxy,
    storage: S3Storage,
    url: String,
}

fn setup(bucket: &str) -> Option<Setup> {
    setup_with(bucket, common::impatient())
}

fn setup_with(bucket: &str, remote: RemoteOptions) -> Option<Setup> {
    let server = common::start()?;
    let bucket = server.bucket(bucket);
    let proxy = FaultProxy::start(server.addr);
    let url = format!("s3://{bucket}/repo");
    let storage =
        S3Storage::new(&url, common::options(&format!("http://{}", proxy.addr()), remote)).expect("storage");
    storage.create().expect("create through a healthy proxy");
    Some(Setup { _server: server, proxy, storage, url })
}

fn assert_unreachable(e: &StorageError, s: &Setup) {
    assert!(e.is_transient(), "{e:?}");
    let msg = e.to_string();
    let prefix = format!("storage unreachable: {} at http://{}: ", s.url, s.proxy.addr());
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(msg.ends_with("s of failures (--give-up-after 6s)"), "{msg}");
    assert!(gave_up_seconds(&msg).is_some_and(|secs| secs >= 6.0), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn blackholed_link_gives_up_with_storage_unreachable() {
    let Some(s) = setup("blackhole") else { return };
    let data = b"snapshot".to_vec();
    let id = id_of(&data);
    s.storage.write(ObjectKind::Snapshot, &id, &data).expect("write while healthy");
    s.proxy.blackhole(true);
    for (i, (name, call)) in [
        (
            "read",
            Box::new(|| s.storage.read(ObjectKind::Snapshot, &id, None).map(|_| ())) as Box<dyn Fn() -> _>,
        ),
        ("list", Box::new(|| s.storage.list(ObjectKind::Snapshot).map(|_| ()))),
        ("write", Box::new(|| s.storage.write(ObjectKind::Index, &id_of(b"i"), b"i"))),
    ]
    .into_iter()
    .enumerate()
    {
        let t = Instant::now();
        let e = call().expect_err(name);
        let took = t.elapsed();
        eprintln!("{name} under blackhole, after {took:?}: {e}");
        assert_unreachable(&e, &s);
        if i == 0 {
            assert!(took >= Duration::from_secs(6) && took < BOUND, "{name} gave up after {took:?}");
        } else {
            // The storage's budget is spent: later calls fail at once, not after a budget each.
            assert!(took < Duration::from_secs(1), "{name} gave up after {took:?}");
        }
    }
    s.proxy.heal();
    // The next command (a storage of its own) gets through.
    let next =
        S3Storage::new(&s.url, common::options(&format!("http://{}", s.proxy.addr()), common::impatient()))
            .expect("storage");
    assert_eq!(next.read(ObjectKind::Snapshot, &id, None).expect("read after heal"), data);
}

/// Hardening item 7 on S3: eight threads uploading, the link freezes (TCP open, nothing
/// forwarded), then three more calls after they all failed (as a check or restore carrying on):
/// every call ends within give-up-after + connect-timeout + idle-timeout of the freeze, where
/// each call used to get its own budget (and an upload waiting for its answer an allowance of
/// up to two minutes for socket buffers to drain).
#[test]
fn a_frozen_link_ends_every_thread_within_the_give_up_bound() {
    let remote = frozen_options();
    let Some(s) = setup_with("frozen", remote.clone()) else { return };
    let run = freeze_under_load(
        8,
        16,
        |thread, n| {
            let data = object(thread, n);
            s.storage.write(ObjectKind::Data, &id_of(&data), &data)
        },
        || s.proxy.blackhole(true),
    );
    assert_gave_up_within("s3", &run, &remote, &format!("{} at http://{}", s.url, s.proxy.addr()));
}

#[test]
fn refused_connections_give_up_with_storage_unreachable() {
    let Some(s) = setup("refuse") else { return };
    s.proxy.refuse(true);
    s.proxy.cut_all(); // pooled keep-alive connections would bypass the refusal
    let t = Instant::now();
    let e = s.storage.stat(ObjectKind::Config, "").expect_err("refused");
    let took = t.elapsed();
    eprintln!("stat with refused connections, after {took:?}: {e}");
    assert_unreachable(&e, &s);
    assert!(took >= Duration::from_secs(6) && took < BOUND, "gave up after {took:?}");
    assert!(s.proxy.stats().refused >= 2, "retries should have reached the proxy: {:?}", s.proxy.stats());
}

#[test]
fn slow_but_moving_transfers_are_not_cut() {
    let Some(s) = setup("trickle") else { return };
    let data: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let id = id_of(&data);
    s.proxy.trickle(256 * 1024);
    s.proxy.cut_all(); // new connections, all trickled

    let t = Instant::now();
    s.storage.write(ObjectKind::Data, &id, &data).expect("slow upload succeeds");
    let up = t.elapsed();

    let t = Instant::now();
    let back = s.storage.read(ObjectKind::Data, &id, None).expect("slow download succeeds");
    let down = t.elapsed();
    assert!(back == data, "downloaded object differs");
    eprintln!("2 MiB at 256 KiB/s: upload {up:?}, download {down:?}");
    // 2 MiB at 256 KiB/s is about 8 s each way: far above the 2 s idle timeout.
    assert!(down > Duration::from_secs(4), "download took only {down:?}: was it trickled?");
    assert!(up > Duration::from_secs(2), "upload took only {up:?}: was it trickled?");
}
