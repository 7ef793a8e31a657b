//! Test helpers for offsite's remote backends: [`FaultProxy`], a TCP proxy that breaks the link
//! on command, so a backend's timeouts and retries are tested against a real server.
//!
//! Put the proxy between the client under test and a real server started on 127.0.0.1, point the
//! client at [`FaultProxy::addr`], then switch faults on and off from the test while calls run:
//!
//! ```no_run
//! use std::time::Duration;
//! use offsite_testkit::FaultProxy;
//!
//! # let server_addr: std::net::SocketAddr = "127.0.0.1:8000".parse().unwrap();
//! let proxy = FaultProxy::start(server_addr);
//! let url = format!("http://{}/repo/", proxy.addr());
//! // ... build the client on `url`, start a call on another thread ...
//! proxy.stall_after(256 * 1024); // every connection stops forwarding after 256 KiB
//! assert!(proxy.wait_until(Duration::from_secs(5), |s| s.forwarded >= 256 * 1024));
//! proxy.refuse(true); // new connections are closed at once
//! proxy.cut_all(); // open connections are reset (RST)
//! assert!(proxy.wait_until(Duration::from_secs(5), |s| s.refused >= 1));
//! proxy.heal(); // every fault off: the next retry gets through
//! ```
//!
//! Faults, each switched at run time and applying to open connections as well as new ones:
//! [`cut_all`](FaultProxy::cut_all), [`blackhole`](FaultProxy::blackhole),
//! [`refuse`](FaultProxy::refuse), [`stall_after`](FaultProxy::stall_after),
//! [`close_after`](FaultProxy::close_after), [`trickle`](FaultProxy::trickle); [`heal`](FaultProxy::heal)
//! clears them all. Byte limits count the bytes a connection forwarded in both directions since it
//! opened. [`FaultProxy::stats`] and [`FaultProxy::wait_until`] let a test react to what the client
//! did (a retry arrived, N bytes went through) instead of sleeping.
//!
//! Plain std threads, two per connection plus one acceptor; all of them end when the proxy is
//! dropped, which also resets every connection still open.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked proxy threads look at the fault switches.
const TICK: Duration = Duration::from_millis(5);

/// What the proxy has seen so far; see [`FaultProxy::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded to the upstream since the start.
    pub connections: u64,
    /// Connections closed at once because [`FaultProxy::refuse`] was on.
    pub refused: u64,
    /// Bytes forwarded, both directions, all connections.
    pub forwarded: u64,
    /// Connections open now.
    pub open: usize,
}

struct Conn {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    forwarded: AtomicU64,
    dead: AtomicBool,
    pumps: AtomicU32,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    blackhole: AtomicBool,
    refuse: AtomicBool,
    stall_after: AtomicU64,
    close_after: AtomicU64,
    trickle: AtomicU64,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    connections: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address, with faults switched on and off
/// at run time. Dropping it stops every thread it started and resets every open connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Abort a connection: both peers get a reset (SO_LINGER 0, then the last descriptor closes
/// when the pump threads see `dead` and return).
fn reset(conn: &Conn) {
    conn.dead.store(true, SeqCst);
    for s in [&conn.client, &conn.upstream] {
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        let _ = s.shutdown(Shutdown::Read);
    }
}

impl FaultProxy {
    /// Start a proxy on a free port of 127.0.0.1 forwarding every connection to `upstream`.
    /// Panics if no port can be bound (this is test code).
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || accept_loop(&listener, upstream, &s));
        FaultProxy { addr, shared, acceptor: Some(acceptor) }
    }

    /// The proxy's address; point the client here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reset every open connection now (both peers see ECONNRESET); new ones are unaffected.
    pub fn cut_all(&self) {
        for conn in lock(&self.shared.conns).drain(..) {
            reset(&conn);
        }
    }

    /// While on, connections are accepted and read from but nothing is forwarded or answered,
    /// open ones included: the link is gone without either side being told.
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, SeqCst);
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, SeqCst);
    }

    /// Each connection forwards at most `bytes` (both directions together), then stops
    /// forwarding and reading, holding the connection open. 0 switches it off.
    pub fn stall_after(&self, bytes: u64) {
        self.shared.stall_after.store(bytes, SeqCst);
    }

    /// Each connection is closed (FIN to both peers) once it has forwarded `bytes`. 0 switches
    /// it off.
    pub fn close_after(&self, bytes: u64) {
        self.shared.close_after.store(bytes, SeqCst);
    }

    /// Cap every connection's bandwidth at `bytes_per_sec` in each direction (0: no cap). Data
    /// moves in small pieces about 20 times a second, so the link is slow but never idle.
    pub fn trickle(&self, bytes_per_sec: u64) {
        self.shared.trickle.store(bytes_per_sec, SeqCst);
    }

    /// Switch every fault off; connections that were stalled resume.
    pub fn heal(&self) {
        self.blackhole(false);
        self.refuse(false);
        self.stall_after(0);
        self.close_after(0);
        self.trickle(0);
    }

    /// Counters of what went through the proxy so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            connections: s.connections.load(SeqCst),
            refused: s.refused.load(SeqCst),
            forwarded: s.forwarded.load(SeqCst),
            open: lock(&s.conns).len(),
        }
    }

    /// Poll [`FaultProxy::stats`] every few milliseconds until `cond` holds (true) or
    /// `timeout` passes (false).
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&ProxyStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(TICK);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor, which then sees `stop`
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
        for t in std::mem::take(&mut *lock(&self.shared.threads)) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, s: &Arc<Shared>) {
    for (id, client) in listener.incoming().enumerate() {
        if s.stop.load(SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if s.refuse.load(SeqCst) {
            s.refused.fetch_add(1, SeqCst);
            continue; // dropped: closed at once
        }
        let Ok(upstream) = TcpStream::connect(upstream) else { continue };
        let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
        let (Ok(c3), Ok(u3)) = (client.try_clone(), upstream.try_clone()) else { continue };
        let conn = Arc::new(Conn {
            id: id as u64,
            client,
            upstream,
            forwarded: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            pumps: AtomicU32::new(2),
        });
        lock(&s.conns).push(Arc::clone(&conn));
        s.connections.fetch_add(1, SeqCst); // after the push: `open` never lags `connections`
        let mut threads = lock(&s.threads);
        threads.retain(|t| !t.is_finished());
        for (from, to) in [(c2, u2), (u3, c3)] {
            let (conn, s) = (Arc::clone(&conn), Arc::clone(s));
            threads.push(thread::spawn(move || pump(from, to, &conn, &s)));
        }
    }
}

/// Copy `from` to `to` under the current faults until EOF, an error, a reset or the proxy's end;
/// the last of a connection's two pumps removes it from the open list.
fn pump(from: TcpStream, to: TcpStream, conn: &Conn, s: &Shared) {
    let _ = (from.set_read_timeout(Some(TICK * 4)), to.set_write_timeout(Some(TICK * 4)));
    let mut buf = vec![0u8; 64 * 1024];
    'conn: while !conn.dead.load(SeqCst) && !s.stop.load(SeqCst) {
        let rate = s.trickle.load(SeqCst);
        let cap = if rate == 0 { buf.len() } else { (rate / 20).clamp(1, buf.len() as u64) as usize };
        let n = match (&from).read(&mut buf[..cap]) {
            Ok(0) => {
                if !conn.dead.load(SeqCst) {
                    let _ = to.shutdown(Shutdown::Write); // pass the half-close on
                }
                break;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                reset(conn);
                break;
            }
        };
        let mut data = &buf[..n];
        while !data.is_empty() && !s.blackhole.load(SeqCst) {
            if conn.dead.load(SeqCst) || s.stop.load(SeqCst) {
                break 'conn;
            }
            let done = conn.forwarded.load(SeqCst);
            let limit = |a: &AtomicU64| Some(a.load(SeqCst)).filter(|&n| n > 0).unwrap_or(u64::MAX);
            let (stall, close) = (limit(&s.stall_after), limit(&s.close_after));
            if done >= close {
                conn.dead.store(true, SeqCst);
                let _ = (conn.client.shutdown(Shutdown::Both), conn.upstream.shutdown(Shutdown::Both));
                break 'conn;
            }
            if done >= stall {
                thread::sleep(TICK);
                continue;
            }
            let m = (data.len() as u64).min(stall - done).min(close - done) as usize;
            match (&to).write(&data[..m]) {
                Ok(k) if k > 0 => {
                    conn.forwarded.fetch_add(k as u64, SeqCst);
                    s.forwarded.fetch_add(k as u64, SeqCst);
                    data = &data[k..];
                    if rate > 0 {
                        thread::sleep(Duration::from_secs_f64(k as f64 / rate as f64));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                _ => {
                    reset(conn);
                    break 'conn;
                }
            }
        }
    }
    if conn.pumps.fetch_sub(1, SeqCst) == 1 {
        lock(&s.conns).retain(|c| c.id != conn.id);
    }
}
