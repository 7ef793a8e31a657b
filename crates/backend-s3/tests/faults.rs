//! Network faults between the backend and a real S3 server, through `FaultProxy`, with short
//! timeouts (idle 2 s, connect 2 s, give up after 6 s).

mod common;

use std::time::{Duration, Instant};

use offsite_backend::conformance::id_of;
use offsite_backend::{ObjectKind, Storage, StorageError};
use offsite_backend_s3::S3Storage;
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
    let server = common::start()?;
    let bucket = server.bucket(bucket);
    let proxy = FaultProxy::start(server.addr);
    let url = format!("s3://{bucket}/repo");
    let storage =
        S3Storage::new(&url, common::options(&format!("http://{}", proxy.addr()), common::impatient()))
            .expect("storage");
    storage.create().expect("create through a healthy proxy");
    Some(Setup { _server: server, proxy, storage, url })
}

fn assert_unreachable(e: &StorageError, s: &Setup) {
    assert!(e.is_transient(), "{e:?}");
    let msg = e.to_string();
    let prefix = format!("storage unreachable: {} at http://{}: ", s.url, s.proxy.addr());
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(msg.contains("(gave up after "), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn blackholed_link_gives_up_with_storage_unreachable() {
    let Some(s) = setup("blackhole") else { return };
    let data = b"snapshot".to_vec();
    let id = id_of(&data);
    s.storage.write(ObjectKind::Snapshot, &id, &data).expect("write while healthy");
    s.proxy.blackhole(true);
    for (name, call) in [
        (
            "read",
            Box::new(|| s.storage.read(ObjectKind::Snapshot, &id, None).map(|_| ())) as Box<dyn Fn() -> _>,
        ),
        ("list", Box::new(|| s.storage.list(ObjectKind::Snapshot).map(|_| ()))),
        ("write", Box::new(|| s.storage.write(ObjectKind::Index, &id_of(b"i"), b"i"))),
    ] {
        let t = Instant::now();
        let e = call().expect_err(name);
        let took = t.elapsed();
        eprintln!("{name} under blackhole, after {took:?}: {e}");
        assert_unreachable(&e, &s);
        assert!(took >= Duration::from_secs(6) && took < BOUND, "{name} gave up after {took:?}");
    }
    s.proxy.heal();
    assert_eq!(s.storage.read(ObjectKind::Snapshot, &id, None).expect("read after heal"), data);
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
