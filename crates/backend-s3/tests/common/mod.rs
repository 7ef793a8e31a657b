//! A real S3 server for the tests: s3s-fs 0.14.1 on a free local port, killed on drop.
//!
//! Install it with `cargo install s3s-fs@0.14.1 --features binary --locked`. Without it the
//! tests fail when `CI=true` and are skipped (with a note on stderr) otherwise.

#![allow(dead_code)]

pub mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use offsite_backend::RemoteOptions;
use offsite_backend_s3::S3Options;

pub const ACCESS_KEY: &str = "offsite-test-key";
pub const SECRET_KEY: &str = "offsite-test-secret-0123456789";

/// A running s3s-fs serving the directory `root` (each subdirectory is a bucket).
pub struct Server {
    child: Child,
    root: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// Start s3s-fs, or return None (after printing why) when it is not installed and this is
/// not CI. Under `CI=true` a missing s3s-fs fails the test.
pub fn start() -> Option<Server> {
    let Some(bin) = find_binary() else {
        let why = "s3s-fs not found (PATH, ~/.cargo/bin, $S3S_FS); install it with \
                   `cargo install s3s-fs@0.14.1 --features binary --locked`";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("note: skipping S3 test: {why}");
        return None;
    };
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut server = Server { child, root, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    wait_for_port(&mut server);
    Some(server)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Poll the port with TCP connects (each refused at once until s3s-fs listens), for at most
/// 20 s; fail early if the server exited.
fn wait_for_port(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("s3s-fs exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {} within 20 s", server.addr);
        std::thread::yield_now();
    }
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory s3s-fs serves.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Create bucket `name` (a directory under the root).
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.root.path().join(name)).expect("create bucket dir");
        name.to_string()
    }
}

/// Options for `endpoint` with the test credentials and the given timeouts.
pub fn options(endpoint: &str, remote: RemoteOptions) -> S3Options {
    S3Options {
        remote,
        endpoint: Some(endpoint.to_string()),
        region: None,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key: Some(SECRET_KEY.to_string()),
        path_style: None,
    }
}

/// Timeouts for tests against a healthy local server.
pub fn patient() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        give_up_after: Duration::from_secs(60),
        concurrency: 4,
        ..RemoteOptions::default()
    }
}

/// Short timeouts for fault tests: idle 2 s, connect 2 s, give up after 6 s.
pub fn impatient() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_secs(6),
        concurrency: 2,
        ..RemoteOptions::default()
    }
}
