//! Real servers for the remote end-to-end tests, each on a free port of 127.0.0.1, started
//! per test and killed on drop: OpenSSH sshd (SFTP), s3s-fs (S3) and `rclone serve restic`
//! (REST), plus the test world that drives the `offsite` binary against them.
//!
//! A missing server binary fails the test when `CI=true` (saying why) and skips it with a
//! note on stderr otherwise: every constructor returns `None` in that case.

#![allow(dead_code)] // each test uses its own part

use std::ffi::OsString;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Passphrase of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";
/// s3s-fs access key.
pub const ACCESS_KEY: &str = "offsite-test-key";
/// s3s-fs secret key.
pub const SECRET_KEY: &str = "offsite-test-secret-0123456789";

const SSHD: &str = "/usr/sbin/sshd";
/// Longest wait for a server's port to accept connections.
const STARTUP: Duration = Duration::from_secs(20);

/// Skip (None, with a note) or, under `CI=true`, fail with `why`.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and a server for this test is missing: {why}");
    }
    eprintln!("NOTE: skipping this test: {why}");
    None
}

/// `name` on the PATH, or in ~/.cargo/bin (where `cargo install` puts s3s-fs).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A port of 127.0.0.1 that was free a moment ago (and, once the listener is dropped, is
/// closed: nothing answers on it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("bound address").port()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server process listening on `port`, killed (and reaped) on drop.
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Its working files (config, keys, log, data); removed after the process is gone.
    pub dir: tempfile::TempDir,
    /// How long from spawning until the port accepted a connection.
    pub startup: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Spawn `make(port, dir)` on a free port (stderr to `dir/server.log`) and poll the port
    /// with TCP connects until it accepts, for at most [`STARTUP`]. A process that exits
    /// first (e.g. the port was taken in between) is retried on another port, twice.
    fn spawn(name: &str, dir: tempfile::TempDir, make: impl Fn(u16, &Path) -> Command) -> Server {
        let log = dir.path().join("server.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let started = Instant::now();
            let mut child = make(port, dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("server log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Server { child, port, dir, startup: started.elapsed() };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last =
                        format!("{name} exited with {status} before listening on {addr}: {}", read_log(&log));
                    eprintln!("note: {last}");
                    break;
                }
                if started.elapsed() > STARTUP {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{name} did not listen on {addr} within {STARTUP:?}: {}", read_log(&log));
                }
                // Polling the port (refused at once until it listens), not guessing a delay.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("{last}")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default().trim().replace('\n', " | ")
}

// ---------------------------------------------------------------- sshd

/// OpenSSH sshd with its own host key, a client key in `authorized_keys`, and a known_hosts
/// file recording its host key for `[127.0.0.1]:PORT`.
pub struct Sshd {
    /// The running server.
    pub server: Server,
    /// The ssh user: the user running the tests.
    pub user: String,
    /// Private key the server accepts.
    pub client_key: PathBuf,
    /// known_hosts with the server's key.
    pub known_hosts: PathBuf,
}

/// Start sshd, or None when it is not installed (and this is not CI).
pub fn sshd() -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        return unavailable(&format!("{SSHD} is missing (apt-get install -y openssh-server)"));
    }
    let Some(keygen) = find_program("ssh-keygen") else {
        return unavailable("ssh-keygen is missing (apt-get install -y openssh-client)");
    };
    let _ = fs::create_dir_all("/run/sshd"); // sshd refuses to start without it
    let user = run_ok(Command::new("id").arg("-un"));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    for key in ["host_key", "client_key"] {
        run_ok(Command::new(&keygen).args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(d.join(key)));
    }
    fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
    let server = Server::spawn("sshd", dir, |port, d| {
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 100\n\
                 Subsystem sftp internal-sftp\n",
                d = d.display()
            ),
        )
        .expect("sshd_config");
        let mut c = Command::new(SSHD);
        c.args(["-D", "-e", "-f"]).arg(config);
        c
    });
    let host_key = fs::read_to_string(d.join("host_key.pub")).expect("host key");
    let host_key = host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let known_hosts = d.join("known_hosts");
    fs::write(&known_hosts, format!("[127.0.0.1]:{} {host_key}\n", server.port)).expect("known_hosts");
    Some(Sshd { user, client_key: d.join("client_key"), known_hosts, server })
}

impl Sshd {
    /// `sftp://USER@127.0.0.1:PORT/DIR`.
    pub fn url(&self, dir: &Path) -> String {
        format!("sftp://{}@127.0.0.1:{}{}", self.user, self.server.port, dir.display())
    }
}

// ---------------------------------------------------------------- s3s-fs

/// s3s-fs serving `dir/root` (each subdirectory a bucket) with [`ACCESS_KEY`]/[`SECRET_KEY`].
pub fn s3s_fs() -> Option<Server> {
    let Some(bin) = find_program("s3s-fs") else {
        return unavailable(
            "s3s-fs not found (PATH, ~/.cargo/bin); install it with \
             `cargo install s3s-fs@0.14.1 --features binary --locked`",
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("root")).expect("s3 root");
    Some(Server::spawn("s3s-fs", dir, |port, d| {
        let mut c = Command::new(&bin);
        c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(d.join("root"));
        c
    }))
}

/// Create bucket `name` on an s3s-fs server (a directory under its root).
pub fn s3_bucket(server: &Server, name: &str) {
    fs::create_dir_all(server.dir.path().join("root").join(name)).expect("bucket dir");
}

// ---------------------------------------------------------------- rclone

/// True if `rclone` runs; otherwise skip (or fail under CI).
pub fn rclone_available() -> bool {
    match Command::new("rclone").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => true,
        other => unavailable::<()>(&format!("rclone is not runnable ({other:?}); apt-get install -y rclone"))
            .is_some(),
    }
}

/// `rclone serve restic --addr 127.0.0.1:PORT [flags] DIR/data`.
pub fn rclone_rest(flags: &[&str]) -> Option<Server> {
    if !rclone_available() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("data")).expect("rest data dir");
    Some(Server::spawn("rclone serve restic", dir, |port, d| {
        let mut c = Command::new("rclone");
        c.args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")]).args(flags).arg(d.join("data"));
        c
    }))
}

// ---------------------------------------------------------------- the world

/// One test's files (`root/src` to back up, `root/cache`, restore targets) and the
/// repository location and environment the `offsite` binary gets.
pub struct World {
    _dir: tempfile::TempDir,
    /// Canonical temp directory.
    pub root: PathBuf,
    /// `--repo`.
    pub location: String,
    /// Extra environment (`OFFSITE_SSH_*`, `AWS_*`).
    pub env: Vec<(String, OsString)>,
}

impl World {
    /// A fresh directory with an empty `src`; the location is set later.
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        fs::create_dir_all(root.join("src")).expect("mkdir src");
        World { _dir: dir, root, location: String::new(), env: Vec::new() }
    }

    /// Add an environment variable for every command.
    pub fn set(&mut self, name: &str, value: impl Into<OsString>) {
        self.env.push((name.to_string(), value.into()));
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A ready `offsite` command: no inherited OFFSITE_*/AWS_* settings, the location,
    /// passphrase, cache and fast KDF, then this world's extra variables; stdin not a terminal.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_offsite"));
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with("OFFSITE_") || name.starts_with("AWS_") {
                c.env_remove(&k);
            }
        }
        c.env("OFFSITE_REPOSITORY", &self.location)
            .env("OFFSITE_PASSWORD", PASSWORD)
            .env("OFFSITE_CACHE_DIR", self.root.join("cache"))
            .env("OFFSITE_INSECURE_FAST_KDF", "testing-only-keys-are-crackable");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(args).current_dir(&self.root).stdin(Stdio::null());
        c
    }

    /// Run, require exit 0, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let mut c = self.cmd(args);
        let out = c.output().expect("run offsite");
        assert!(out.status.success(), "{c:?} failed ({}):\n{}", out.status, show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `c`, require exit 1, return the one error line of stderr.
    pub fn fails(&self, c: &mut Command) -> String {
        let out = c.output().expect("run offsite");
        assert_eq!(out.status.code(), Some(1), "{c:?}:\n{}", show(&out));
        error_line(&String::from_utf8_lossy(&out.stderr)).to_string()
    }

    /// A small tree: two text files, a subdirectory, ~3 MiB of random bytes, a symlink.
    pub fn populate(&self) {
        let write = |rel: &str, content: &[u8]| {
            let p = self.root.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, content).expect("write");
        };
        write("src/hello.txt", b"hello, world\n");
        write("src/docs/notes.md", b"# notes\nsecret plans\n");
        write("src/data/blob.bin", &pseudo_random(3 << 20, 7));
        std::os::unix::fs::symlink("hello.txt", self.root.join("src/link")).expect("symlink");
    }
}

/// stdout and stderr of a run, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The single `offsite: error: ` line of `stderr` (there must be exactly one).
pub fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("offsite: error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line in {stderr:?}");
    errors[0]
}

/// Deterministic incompressible bytes (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Assert that `restored` holds exactly the entries of `original`: same names, same kinds,
/// files byte for byte, symlinks with the same target. Returns the number of entries.
pub fn assert_same_tree(original: &Path, restored: &Path) -> usize {
    let names = |dir: &Path| {
        let mut v: Vec<OsString> =
            fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
        v.sort();
        v
    };
    let (a, b) = (names(original), names(restored));
    assert_eq!(a, b, "entries of {} vs {}", original.display(), restored.display());
    let mut n = 0;
    for name in a {
        let (o, r) = (original.join(&name), restored.join(&name));
        let (om, rm) = (fs::symlink_metadata(&o).expect("stat"), fs::symlink_metadata(&r).expect("stat"));
        assert_eq!(om.file_type(), rm.file_type(), "kind of {}", r.display());
        if om.file_type().is_symlink() {
            assert_eq!(fs::read_link(&o).expect("link"), fs::read_link(&r).expect("link"), "{}", r.display());
        } else if om.is_dir() {
            n += assert_same_tree(&o, &r);
        } else {
            let (ob, rb) = (fs::read(&o).expect("read"), fs::read(&r).expect("read"));
            assert!(
                ob == rb,
                "{} differs from {} ({} vs {} bytes)",
                r.display(),
                o.display(),
                rb.len(),
                ob.len()
            );
        }
        n += 1;
    }
    n
}
