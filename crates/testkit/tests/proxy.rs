//! FaultProxy in front of an echo server: each fault does what its doc says.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use offsite_testkit::FaultProxy;

const WAIT: Duration = Duration::from_secs(5);

/// An echo server on 127.0.0.1 (lives as long as the test binary).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn client(proxy: &FaultProxy) -> TcpStream {
    let c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

fn echo(c: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).unwrap();
    back
}

#[test]
fn forwards_both_ways_and_counts() {
    let proxy = FaultProxy::start(echo_server());
    let mut c = client(&proxy);
    assert_eq!(echo(&mut c, b"hello"), b"hello");
    // The reply can reach the client before the proxy thread has counted it: wait for the count.
    assert!(proxy.wait_until(WAIT, |s| s.forwarded == 10), "forwarded {:?}", proxy.stats());
    let stats = proxy.stats();
    assert_eq!((stats.connections, stats.forwarded, stats.open), (1, 10, 1));
}

#[test]
fn cut_all_resets_open_connections() {
    let proxy = FaultProxy::start(echo_server());
    let mut c = client(&proxy);
    echo(&mut c, b"hi");
    proxy.cut_all();
    let r = c.read(&mut [0u8; 8]);
    assert!(matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset), "{r:?}");
    assert!(proxy.wait_until(WAIT, |s| s.open == 0));
}

#[test]
fn refuse_closes_new_connections_until_switched_off() {
    let proxy = FaultProxy::start(echo_server());
    proxy.refuse(true);
    let mut c = client(&proxy);
    let r = c.read(&mut [0u8; 8]);
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    assert_eq!(proxy.stats().refused, 1);
    proxy.refuse(false);
    assert_eq!(echo(&mut client(&proxy), b"again"), b"again");
}

#[test]
fn stall_holds_bytes_until_healed() {
    let proxy = FaultProxy::start(echo_server());
    proxy.stall_after(3);
    let mut c = client(&proxy);
    c.write_all(b"hello").unwrap();
    assert!(proxy.wait_until(WAIT, |s| s.forwarded == 3));
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let r = c.read(&mut [0u8; 8]);
    assert!(matches!(&r, Err(e) if e.kind() == ErrorKind::WouldBlock), "stalled link answered: {r:?}");
    proxy.heal();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
}

#[test]
fn close_after_ends_the_connection() {
    let proxy = FaultProxy::start(echo_server());
    proxy.close_after(4);
    let mut c = client(&proxy);
    c.write_all(b"hello").unwrap();
    let mut back = Vec::new();
    let _ = c.read_to_end(&mut back);
    assert!(back.len() < 5, "got {back:?} through a connection closed after 4 bytes");
    assert!(proxy.wait_until(WAIT, |s| s.open == 0 && s.forwarded == 4), "{:?}", proxy.stats());
}

#[test]
fn blackhole_swallows_everything() {
    let proxy = FaultProxy::start(echo_server());
    proxy.blackhole(true);
    let mut c = client(&proxy);
    c.write_all(b"anyone there?").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let r = c.read(&mut [0u8; 8]);
    assert!(matches!(&r, Err(e) if e.kind() == ErrorKind::WouldBlock), "{r:?}");
    assert_eq!(proxy.stats().forwarded, 0);
}

#[test]
fn trickle_caps_the_bandwidth() {
    let proxy = FaultProxy::start(echo_server());
    proxy.trickle(10_000);
    let mut c = client(&proxy);
    let msg = vec![7u8; 5_000];
    let start = Instant::now();
    assert_eq!(echo(&mut c, &msg), msg);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(450), "5,000 bytes at 10,000 B/s took {elapsed:?}");
}

#[test]
fn dropping_the_proxy_closes_its_port_and_connections() {
    let proxy = FaultProxy::start(echo_server());
    let addr = proxy.addr();
    let mut c = client(&proxy);
    echo(&mut c, b"x");
    drop(proxy);
    assert!(!matches!(c.read(&mut [0u8; 1]), Ok(1..)));
    assert!(TcpStream::connect(addr).is_err(), "the proxy still listens after drop");
}
