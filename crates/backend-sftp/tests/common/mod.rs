//! A real OpenSSH sshd on 127.0.0.1 for the tests of one test binary, started once with its
//! own config, host key, client key and authorized_keys in a temp dir (see shared/INFRA.md).
//!
//! sshd runs under `sh`, which kills it and removes the temp dir when the test process ends
//! (its stdin, a pipe from this process, closes). Without sshd or ssh-keygen the tests fail when `CI=true` and are
//! skipped with a printed note otherwise.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use offsite_backend::RemoteOptions;
use offsite_backend_sftp::SftpOptions;

const SSHD: &str = "/usr/sbin/sshd";

/// The running server and the files around it.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    /// `HOST:PORT`-free host key line body: `ssh-ed25519 AAAA...`.
    pub host_key_line: String,
    /// Directory the repositories of the tests live in (on the same machine as the server).
    pub data: PathBuf,
    _guard: Mutex<Child>,
}

static SERVER: OnceLock<Option<Sshd>> = OnceLock::new();

/// The binary's sshd, started on first use; None (after printing why) if it cannot run here
/// and CI is not set.
pub fn sshd() -> Option<&'static Sshd> {
    SERVER.get_or_init(start).as_ref()
}

fn unavailable(why: &str) -> Option<Sshd> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("sftp tests need a real sshd, and CI=true: {why} (install openssh-server)");
    }
    eprintln!("NOTE: skipping sftp tests: {why} (install openssh-server to run them)");
    None
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Make an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(path))
        .expect("ssh-keygen");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("bound address").port()
}

fn start() -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        return unavailable(&format!("{SSHD} is missing"));
    }
    if which("ssh-keygen").is_none() {
        return unavailable("ssh-keygen is missing");
    }
    let _ = std::fs::create_dir_all("/run/sshd"); // sshd refuses to start without it (as root)
    let user = match run(Command::new("id").arg("-un")) {
        Ok(u) => u,
        Err(e) => return unavailable(&e),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
    let data = d.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let pubkey = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
    let host_key_line = pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" ");

    for _ in 0..5 {
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 MaxStartups 100\nMaxSessions 100\nSubsystem sftp internal-sftp\n",
                d = d.display()
            ),
        )
        .expect("sshd_config");
        let log = d.join("sshd.log");
        // sh kills sshd when our end of its stdin closes, i.e. when this process exits.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("\"$0\" -D -e -f \"$1\" 2>\"$2\" & pid=$!; read _; kill $pid; wait $pid; rm -rf \"$3\"")
            .arg(SSHD)
            .arg(&config)
            .arg(&log)
            .arg(d)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh for sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                // An sshd greets with its version; anything else is a stranger on the port.
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    let _ = s.write_all(b"SSH-2.0-probe\r\n");
                    return Some(Sshd { dir, port, user, host_key_line, data, _guard: Mutex::new(child) });
                }
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if exited || log_text.contains("Address already in use") || Instant::now() > deadline {
                let _ = child.kill();
                if log_text.contains("Address already in use") {
                    break;
                }
                if Instant::now() > deadline || exited {
                    return unavailable(&format!("sshd did not start: {}", log_text.trim()));
                }
            }
            std::thread::sleep(Duration::from_millis(10)); // polling the port, not guessing a delay
        }
    }
    unavailable("no free port for sshd after 5 tries")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|p| Path::new(p).join(name)).find(|p| p.exists())
}

impl Sshd {
    /// A known_hosts file (in a fresh temp dir) that records this server's key for
    /// `127.0.0.1:port`.
    pub fn known_hosts_for(&self, port: u16) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{port} {}\n", self.host_key_line)).expect("known_hosts");
        (dir, path)
    }

    /// A fresh, not yet existing repository directory on the server.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.data.join(format!("{name}-{}", rand_suffix()))
    }

    /// `sftp://user@127.0.0.1:port/<dir>`.
    pub fn url(&self, port: u16, dir: &Path) -> String {
        format!("sftp://{}@127.0.0.1:{port}{}", self.user, dir.display())
    }

    /// Options with the client key and `known_hosts`, and `remote`.
    pub fn options(&self, known_hosts: &Path, remote: RemoteOptions) -> SftpOptions {
        SftpOptions {
            remote,
            identity: Some(self.dir.path().join("client_key")),
            known_hosts: Some(known_hosts.to_path_buf()),
        }
    }
}

/// Short timeouts for fault tests: idle 2 s, connect 2 s, give up after 6 s.
pub fn short_timeouts() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_secs(6),
        concurrency: 4,
        ..RemoteOptions::default()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", N.fetch_add(1, Ordering::Relaxed))
}
