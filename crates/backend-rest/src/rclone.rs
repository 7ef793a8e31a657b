//! [`RcloneStorage`]: any rclone remote, served by an `rclone serve restic` child process.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError, StorageResult};
use rand::RngCore;

use crate::rest::RestStorage;

/// Lines of rclone's log kept for error messages.
const LOG_LINES: usize = 20;
/// Longest wait for rclone to start serving.
const MAX_STARTUP: Duration = Duration::from_secs(60);

/// A repository on any rclone remote (`rclone:remote:path`), reached through a child
/// `rclone serve restic` process that this storage starts and kills when dropped.
///
/// Why not `--stdio` (what restic uses): rclone's stdio mode speaks HTTP/2 only (h2c with
/// prior knowledge), and a blocking HTTP/2 client written for this crate would dwarf the rest
/// of it. So the child listens on `127.0.0.1:0`, its log line "Serving restic REST API on
/// http://127.0.0.1:PORT/" tells the port, and a [`RestStorage`] talks to it, with the same
/// timeouts and retries as any REST server. Other local users could reach that port, so the
/// child requires a random user and password, handed to it in its environment
/// (`RCLONE_USER`, `RCLONE_PASS`, which only the same user can read) rather than on its
/// command line (which `ps` shows to everyone).
///
/// rclone's stderr is drained by a thread (its last lines go into startup errors); the
/// thread ends when the child does.
pub struct RcloneStorage {
    rest: RestStorage,
    remote: String,
    child: Mutex<Child>,
    stderr: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RcloneStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcloneStorage").field("remote", &self.remote).finish_non_exhaustive()
    }
}

impl RcloneStorage {
    /// Start `rclone serve restic` for `remote` (`remote:path` or a local path, the part
    /// after `rclone:`) and wait until it serves (at most a minute). Errors: "rclone not
    /// found: install rclone to use rclone: repositories" when there is no `rclone` on the
    /// PATH, and rclone's own last log line when it exits without serving (unknown remote,
    /// bad config).
    pub fn new(remote: &str, opts: RemoteOptions) -> StorageResult<RcloneStorage> {
        Self::with_program("rclone", remote, opts)
    }

    /// [`RcloneStorage::new`] running `program` instead of `rclone` from the PATH.
    pub fn with_program(program: &str, remote: &str, opts: RemoteOptions) -> StorageResult<RcloneStorage> {
        let what = format!("rclone serve restic {remote}");
        let (user, pass) = (random_token(), random_token());
        let mut child = serve_command(program, remote, &user, &pass).spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::Permanent {
                what: "rclone not found".into(),
                source: io::Error::new(e.kind(), "install rclone to use rclone: repositories"),
            },
            _ => StorageError::from_io(what.clone(), e),
        })?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().map(|pipe| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || drain_log(pipe, &log, &tx))
        });
        let wait = opts.give_up_after.min(MAX_STARTUP);
        let addr = match rx.recv_timeout(wait) {
            Ok(addr) => addr,
            Err(timeout_or_exit) => {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(t) = stderr {
                    let _ = t.join();
                }
                let last = log.lock().unwrap_or_else(|p| p.into_inner()).back().cloned().unwrap_or_default();
                let why = match timeout_or_exit {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("rclone did not start serving within {wait:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => "rclone exited without serving".into(),
                };
                return Err(StorageError::Permanent {
                    what,
                    source: io::Error::other(format!("{why}: {last}")),
                });
            }
        };
        let url = format!("http://{user}:{pass}@{addr}/");
        let mut shown = format!("rclone:{remote}");
        if !shown.ends_with('/') && !shown.ends_with(':') {
            shown.push('/');
        }
        let rest = RestStorage::new(&url, opts)?.shown_as(shown);
        Ok(RcloneStorage { rest, remote: remote.to_string(), child: Mutex::new(child), stderr })
    }
}

/// The `rclone serve restic` command: loopback only, credentials in its environment, and
/// offsite's passphrases ([`offsite_backend::SECRET_ENV_VARS`]) removed from it.
fn serve_command(program: &str, remote: &str, user: &str, pass: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["serve", "restic", "--addr", "127.0.0.1:0", "--", remote])
        .env("RCLONE_USER", user)
        .env("RCLONE_PASS", pass)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in offsite_backend::SECRET_ENV_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// 128 random bits as hex.
fn random_token() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Read rclone's log until it exits, keeping its last lines and sending the `host:port` of
/// the "Serving restic REST API on http://..." line once.
fn drain_log(pipe: impl io::Read, log: &Mutex<VecDeque<String>>, tx: &mpsc::Sender<String>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        let serving = line.find("Serving restic REST API on ").map(|at| &line[at..]);
        if let Some(url) = serving.and_then(|s| s.find("http://").map(|at| &s[at + "http://".len()..])) {
            let addr: String = url.chars().take_while(|c| !matches!(c, '/' | ']' | ' ' | ',')).collect();
            let _ = tx.send(addr);
        }
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}

impl Drop for RcloneStorage {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if let Some(t) = self.stderr.take() {
            let _ = t.join();
        }
    }
}

impl Storage for RcloneStorage {
    fn location(&self) -> String {
        format!("rclone:{}", self.remote)
    }
    fn transfers(&self) -> usize {
        self.rest.transfers()
    }
    fn create(&self) -> StorageResult<()> {
        self.rest.create()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.rest.list(kind)
    }
    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        self.rest.read(kind, id, range)
    }
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.rest.write(kind, id, data)
    }
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        self.rest.delete(kind, id)
    }
    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.rest.stat(kind, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_address() {
        let (tx, rx) = mpsc::channel();
        let log = Mutex::new(VecDeque::new());
        let text = "2026/11/22 NOTICE: Config file not found\n\
                    2026/11/22 NOTICE: Local file system at /tmp/x: Serving restic REST API on http://127.0.0.1:39809/\n";
        drain_log(text.as_bytes(), &log, &tx);
        assert_eq!(rx.try_recv().unwrap(), "127.0.0.1:39809");
        assert_eq!(log.lock().unwrap().len(), 2);
    }

    #[test]
    fn rclone_inherits_no_passphrase() {
        let cmd = serve_command("rclone", "remote:path", "u", "p");
        let env: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        for secret in ["OFFSITE_PASSWORD", "OFFSITE_NEW_PASSWORD"] {
            assert!(env.contains(&(secret.to_string(), None)), "{secret} is passed to rclone: {env:?}");
        }
        assert!(env.contains(&("RCLONE_USER".to_string(), Some("u".to_string()))), "{env:?}");
        assert!(env.contains(&("RCLONE_PASS".to_string(), Some("p".to_string()))), "{env:?}");
    }

    #[test]
    fn a_missing_rclone_says_how_to_fix_it() {
        let err = RcloneStorage::with_program("/nonexistent/rclone", "remote:path", RemoteOptions::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "rclone not found: install rclone to use rclone: repositories");
    }
}
