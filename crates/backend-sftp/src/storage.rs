//! [`SftpStorage`]: the [`Storage`] trait over a pool of SFTP connections, with reconnection
//! and bounded retries.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use offsite_backend::retry::Retrier;
use offsite_backend::{validate_id, ObjectKind, RemoteOptions, Storage, StorageError, StorageResult};

use crate::auth::load_identities;
use crate::conn::{Conn, Connector};
use crate::failure::Failure;
use crate::hostkey::{default_known_hosts, HostKeyPolicy};
use crate::ops::{self, Ctx};
use crate::url::{parse_sftp_url, SftpTarget};

/// Settings of an SFTP storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SftpOptions {
    /// Timeouts, retry budget and the number of parallel connections.
    pub remote: RemoteOptions,
    /// Private key to log in with (OpenSSH format, not passphrase-protected). When set it is
    /// the only key offered; when unset, `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa` (those
    /// that exist) are offered, then the keys of the ssh-agent at `$SSH_AUTH_SOCK`.
    pub identity: Option<PathBuf>,
    /// The known_hosts file the server's host key must be recorded in; default
    /// `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
}

/// Idle and in-use connections, at most `concurrency` at once.
struct Pool {
    idle: Mutex<Vec<Arc<Conn>>>,
    permits: tokio::sync::Semaphore,
}

impl Pool {
    /// An idle connection that is still open, or a new one.
    async fn get(&self, connector: &Connector) -> Result<Arc<Conn>, Failure> {
        loop {
            let next = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
            match next {
                Some(c) if c.is_closed() => continue,
                Some(c) => return Ok(c),
                None => break,
            }
        }
        connector.connect().await.map(Arc::new)
    }

    fn put(&self, conn: Arc<Conn>) {
        if conn.is_closed() {
            return;
        }
        if let Ok(mut v) = self.idle.lock() {
            v.push(conn);
        }
    }

    /// After a lost link, forget idle connections whose transport has ended too.
    fn discard_closed(&self) {
        if let Ok(mut v) = self.idle.lock() {
            v.retain(|c| !c.is_closed());
        }
    }
}

struct Shared {
    target: SftpTarget,
    connector: Connector,
    ctx: Ctx,
    pool: Pool,
    retry: Retrier,
}

/// A repository on an SFTP server, in the same layout as [`offsite_backend::LocalStorage`]
/// (`config`, `keys/`, `data/<xx>/`, `index/`, `snapshots/`, `locks/`).
///
/// # Connections
/// Pure-Rust SSH (russh) on a tokio runtime owned by the storage (two worker threads); each
/// [`Storage`] call blocks on it, so calls must not be made from inside another tokio
/// runtime. Up to `remote.concurrency` SSH connections, each with one SFTP session, are
/// opened lazily and reused, so calls from several threads run in parallel; further calls
/// wait for a free connection. [`SftpStorage::new`] does no network I/O: the first call
/// connects.
///
/// # Timeouts and retries
/// Connecting (TCP, SSH handshake, host-key check, authentication, SFTP start) must finish
/// within `connect_timeout`; after that every request-sized step (a 64 KiB piece of a transfer
/// with up to 16 in flight, a stat, a rename) must finish within `idle_timeout`, so a slow
/// link is never cut for being slow, only for making no progress. A lost, refused or stalled
/// link drops the connection; the call reconnects and starts over through
/// [`offsite_backend::retry::Retrier`]: exponential backoff (100 ms doubling, at most 10 s
/// apart) under one give-up budget shared by every call and thread of this storage. Once the
/// storage has failed for `give_up_after` (counted from when the link stopped moving), calls
/// fail with a [`StorageError::Transient`] error reading `storage unreachable:
/// sftp://HOST:PORT/PATH: CAUSE; gave up after 7.2s of failures (--give-up-after 6s)`. A write retried
/// after a lost link that finds its object published by the lost attempt (same bytes)
/// succeeds; a retried delete that finds nothing succeeds.
///
/// # Host keys
/// The server's host key must be recorded in the known_hosts file; an unknown or changed key
/// fails the call (permanently) with a message saying what to do. Nothing is ever added to
/// known_hosts.
///
/// # Durability and atomicity
/// Writes upload `<dir>/.tmp-<random>` (mode 0600), `fsync@openssh.com` it when the server
/// offers that extension (OpenSSH does; otherwise the data is as durable as the server makes
/// it on close), close it, then publish it with `hardlink@openssh.com` (which, like the local
/// backend's `link(2)`, never replaces an existing object) and remove the temp name. Servers
/// without hard links get check-then-`posix-rename@openssh.com` (racy only against a
/// concurrent writer of the same content-addressed name, whose bytes are identical). SFTP
/// has no way to fsync a directory, so the new name's durability is the server file
/// system's. Directories are created with mode 0700.
pub struct SftpStorage {
    shared: Shared,
    rt: tokio::runtime::Runtime,
    transfers: usize,
}

impl std::fmt::Debug for SftpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStorage")
            .field("location", &self.shared.target.location())
            .finish_non_exhaustive()
    }
}

fn config_error(what: String, kind: io::ErrorKind, msg: String) -> StorageError {
    StorageError::Permanent { what, source: io::Error::new(kind, msg) }
}

impl SftpStorage {
    /// A storage for `url` (`sftp://[user@]host[:port]/path`; see [`crate::parse_sftp_url`]
    /// for the path forms). Parses the URL, loads the identity and starts the runtime; does
    /// not connect. Errors: a malformed URL, an unusable `identity` file, no home directory
    /// to find known_hosts in (all [`StorageError::Permanent`]).
    pub fn new(url: &str, opts: SftpOptions) -> Result<SftpStorage, StorageError> {
        let target = parse_sftp_url(url)?;
        let location = target.location();
        let known_hosts = opts.known_hosts.clone().or_else(default_known_hosts).ok_or_else(|| {
            config_error(
                location.clone(),
                io::ErrorKind::NotFound,
                "no known_hosts file: $HOME is not set; pass --ssh-known-hosts FILE".into(),
            )
        })?;
        let identities = load_identities(opts.identity.as_deref())
            .map_err(|m| config_error(location.clone(), io::ErrorKind::InvalidInput, m))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("offsite-sftp")
            .enable_all()
            .build()
            .map_err(|e| StorageError::from_io(format!("{location} (starting the SFTP runtime)"), e))?;
        let remote = opts.remote;
        let policy = HostKeyPolicy { known_hosts, host: target.host.clone(), port: target.port };
        let connector = Connector {
            target: target.clone(),
            policy: Arc::new(policy),
            identities,
            idle_timeout: remote.idle_timeout,
            connect_timeout: remote.connect_timeout,
            request_timeout: remote.idle_timeout.saturating_mul(17),
        };
        let ctx = Ctx { location: location.clone(), root: target.path.clone(), idle: remote.idle_timeout };
        let pool = Pool {
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(remote.concurrency.max(1)),
        };
        Ok(SftpStorage {
            shared: Shared {
                retry: Retrier::for_remote(target.endpoint(), &remote),
                target,
                connector,
                ctx,
                pool,
            },
            rt,
            transfers: remote.concurrency.max(1),
        })
    }

    /// Where the repository is: user, host, port and path.
    pub fn target(&self) -> &SftpTarget {
        &self.shared.target
    }

    /// Run `op` on a pooled connection through the storage's [`Retrier`]: a lost link drops
    /// the connection and the next attempt reconnects, until the shared give-up budget is
    /// spent. `op` gets whether an earlier attempt of this call failed.
    fn call<T, F, Fut>(&self, op: F) -> StorageResult<T>
    where
        F: Fn(Arc<Conn>, bool) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let s = &self.shared;
        let op = &op;
        self.rt.block_on(async {
            let _permit = s.pool.permits.acquire().await.map_err(|_| {
                config_error(
                    s.target.location(),
                    io::ErrorKind::Other,
                    "the connection pool was closed".into(),
                )
            })?;
            let endpoint = s.target.endpoint();
            let endpoint = endpoint.as_str();
            let attempt = |retried| async move {
                let conn = s.pool.get(&s.connector).await.map_err(|f| f.into_storage_error(endpoint))?;
                match op(conn.clone(), retried).await {
                    Ok(v) => {
                        s.pool.put(conn);
                        Ok(v)
                    }
                    Err(Failure::Final(e)) => {
                        s.pool.put(conn);
                        Err(e)
                    }
                    Err(link) => {
                        drop(conn);
                        s.pool.discard_closed();
                        Err(link.into_storage_error(endpoint))
                    }
                }
            };
            s.retry.run_async(attempt, tokio::time::sleep).await
        })
    }

    fn temp_name(dir: &str) -> String {
        let name = format!(".tmp-{}", hex::encode(rand::random::<[u8; 16]>()));
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    }
}

/// The directory of an object (`""` for the config at the root) and the directories to
/// create before its first write.
fn dir_and_parents(kind: ObjectKind, id: &str) -> (String, Vec<String>) {
    match kind {
        ObjectKind::Config => (String::new(), Vec::new()),
        ObjectKind::Data => {
            let dir = format!("data/{}", &id[..2]);
            (dir.clone(), vec!["data".to_string(), dir])
        }
        _ => (kind.dir_name().to_string(), vec![kind.dir_name().to_string()]),
    }
}

const KIND_DIRS: [&str; 5] = ["keys", "data", "index", "snapshots", "locks"];

impl Storage for SftpStorage {
    fn location(&self) -> String {
        self.shared.target.location()
    }

    fn transfers(&self) -> usize {
        self.transfers
    }

    fn create(&self) -> StorageResult<()> {
        let ctx = &self.shared.ctx;
        self.call(|c, _| async move { ops::create(&c, ctx, &KIND_DIRS).await })
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        let ctx = &self.shared.ctx;
        self.call(|c, _| async move {
            match kind {
                ObjectKind::Config => ops::list_config(&c, ctx).await,
                ObjectKind::Data => ops::list_data(&c, ctx).await,
                _ => ops::list_flat(&c, ctx, kind.dir_name()).await,
            }
        })
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        validate_id(kind, id)?;
        let ctx = &self.shared.ctx;
        let rel = kind.relative_path(id);
        let rel = rel.as_str();
        self.call(|c, _| async move { ops::read(&c, ctx, rel, range).await })
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        validate_id(kind, id)?;
        let ctx = &self.shared.ctx;
        let rel = kind.relative_path(id);
        let rel = rel.as_str();
        let (dir, parents) = dir_and_parents(kind, id);
        let (dir, parents) = (dir.as_str(), parents.as_slice());
        // Temp files of attempts lost with their link, removed by the next attempt.
        let stale: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let stale = &stale;
        self.call(|c, retried| async move {
            let earlier: Vec<String> = stale.lock().map(|v| v.clone()).unwrap_or_default();
            for tmp in &earlier {
                ops::remove_quietly(&c, ctx, tmp).await;
            }
            let tmp = Self::temp_name(dir);
            if let Ok(mut v) = stale.lock() {
                v.push(tmp.clone());
            }
            match ops::write(&c, ctx, rel, &tmp, parents, data).await {
                // The lost attempt may have published the object before its link broke.
                Err(Failure::Final(StorageError::AlreadyExists { what })) if retried => {
                    if ops::read(&c, ctx, rel, None).await? == data {
                        Ok(())
                    } else {
                        Err(Failure::Final(StorageError::AlreadyExists { what }))
                    }
                }
                other => other,
            }
        })
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        validate_id(kind, id)?;
        let ctx = &self.shared.ctx;
        let rel = kind.relative_path(id);
        let rel = rel.as_str();
        self.call(|c, retried| async move {
            match ops::delete(&c, ctx, rel).await {
                // The lost attempt may have deleted it before its link broke.
                Err(Failure::Final(StorageError::NotFound { what })) if retried => {
                    if ops::exists(&c, ctx, "").await? {
                        Ok(())
                    } else {
                        Err(Failure::Final(StorageError::NotFound { what }))
                    }
                }
                other => other,
            }
        })
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        validate_id(kind, id)?;
        let ctx = &self.shared.ctx;
        let rel = kind.relative_path(id);
        let rel = rel.as_str();
        self.call(|c, _| async move { ops::stat(&c, ctx, rel).await })
    }
}
