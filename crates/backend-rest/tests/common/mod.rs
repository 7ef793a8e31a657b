//! A real REST server for tests: `rclone serve restic` on a free port of 127.0.0.1, over a
//! fresh temp directory, killed on drop.
#![allow(dead_code)] // each test binary uses its own part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use offsite_backend::RemoteOptions;

/// True if `rclone` runs. Without it a test fails when CI=true (saying why) and is skipped
/// with a note otherwise.
pub fn rclone_available() -> bool {
    match Command::new("rclone").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => true,
        other => {
            let why =
                format!("rclone is not runnable ({other:?}); install it with `apt-get install -y rclone`");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
            eprintln!("note: skipping this test: {why}");
            false
        }
    }
}

/// Return from the test early (skipped) when rclone is missing outside CI.
#[macro_export]
macro_rules! require_rclone {
    () => {
        if !common::rclone_available() {
            return;
        }
    };
}

/// Short timeouts for fault tests: a dead link must be given up on within seconds.
pub fn fast_options() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_secs(6),
        concurrency: 4,
        ..RemoteOptions::default()
    }
}

/// A running `rclone serve restic`.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Server {
    /// Start a server with extra flags (`--append-only`, `--user`, ...) and wait until its
    /// port accepts connections (polled, at most 20 s; fails at once if rclone exits).
    pub fn start(flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = free_port();
        let mut child = Command::new("rclone")
            .args(["serve", "restic", "--addr", &addr.to_string()])
            .args(flags)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve restic");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rclone serve restic exited with {status} before listening on {addr}");
            }
            assert!(Instant::now() < deadline, "rclone serve restic did not listen on {addr} within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, addr, dir }
    }

    /// The directory the server stores repositories in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// URL of repository `name` on this server, with optional `user:pass@`.
    pub fn url(&self, userinfo: &str, name: &str) -> String {
        format!("http://{userinfo}{}/{name}/", self.addr)
    }

    /// Path of `rel` ('/'-separated) inside repository `name`, on disk.
    pub fn path_in(&self, name: &str, rel: &str) -> PathBuf {
        self.dir.path().join(name).join(rel)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}
