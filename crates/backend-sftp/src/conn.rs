//! One SSH connection carrying one SFTP session: connecting, host-key check, authentication.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use offsite_backend::StorageError;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::{Config as SftpConfig, RawSftpSession};

use crate::auth::Identities;
use crate::failure::{human, Failure};
use crate::hostkey::{HostKeyPolicy, HostKeyVerdict};
use crate::url::SftpTarget;

/// SSH ciphers in order of preference. AES-256-GCM first, unlike russh's default
/// (ChaCha20-Poly1305 first): with AES instructions it costs far less CPU on both ends (ring
/// on our side, OpenSSL in sshd), and on loopback or a fast LAN the cipher is what bounds a
/// restore. ChaCha20-Poly1305 stays next for servers or CPUs without AES-GCM.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// The russh client handler: pins the host key.
pub(crate) struct Client {
    policy: Arc<HostKeyPolicy>,
}

/// Errors of the SSH layer while connecting.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The transport or protocol failed.
    Ssh(russh::Error),
    /// The host key was not accepted; the message says why and what to do.
    HostKey(String),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Ssh(e)
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(ClientError::HostKey(format!(
                "the server at {}:{} presented a host certificate; only plain host keys in known_hosts are supported",
                self.policy.host, self.policy.port
            )));
        };
        match self.policy.check(key) {
            HostKeyVerdict::Trusted => Ok(true),
            HostKeyVerdict::Unknown(m) | HostKeyVerdict::Changed(m) => Err(ClientError::HostKey(m)),
        }
    }
}

/// SFTP protocol extensions the server announced that we use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Features {
    /// `fsync@openssh.com`: make a file durable before publishing it.
    pub(crate) fsync: bool,
    /// `hardlink@openssh.com`: publish without ever replacing an existing object.
    pub(crate) hardlink: bool,
    /// `posix-rename@openssh.com`: atomic rename when hard links are not available.
    pub(crate) posix_rename: bool,
    /// `statvfs@openssh.com`: tell a full disk from other write failures.
    pub(crate) statvfs: bool,
}

/// An authenticated SSH connection with an SFTP session on it.
pub(crate) struct Conn {
    // Kept so the connection stays open; dropped with the session.
    handle: Handle<Client>,
    pub(crate) sftp: RawSftpSession,
    pub(crate) features: Features,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("features", &self.features).finish_non_exhaustive()
    }
}

impl Conn {
    /// True once the SSH transport has ended (reset, closed, keepalive timeout).
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

/// Everything needed to open connections to one repository.
#[derive(Debug)]
pub(crate) struct Connector {
    pub(crate) target: SftpTarget,
    pub(crate) policy: Arc<HostKeyPolicy>,
    pub(crate) identities: Identities,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// How long the SFTP layer itself waits for any one reply; far above the idle timeout,
    /// which this crate enforces per step.
    pub(crate) request_timeout: Duration,
}

fn is_permanent_ssh(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::NoCommonAlgo { .. }
            | russh::Error::UnknownAlgo
            | russh::Error::Version
            | russh::Error::WrongServerSig
    )
}

impl Connector {
    fn final_err(&self, kind: io::ErrorKind, msg: String) -> Failure {
        Failure::Final(StorageError::Permanent {
            what: self.target.location(),
            source: io::Error::new(kind, msg),
        })
    }

    /// Connect, check the host key, authenticate and start SFTP, all within the connect
    /// timeout. Refused or dropped connections are [`Failure::Link`], time-outs
    /// [`Failure::Stall`] (both worth retrying); a rejected host key, failed authentication or an SSH server without SFTP
    /// are final.
    pub(crate) async fn connect(&self) -> Result<Conn, Failure> {
        let hp = self.target.host_port();
        match tokio::time::timeout(self.connect_timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Stall(format!(
                "connecting to {hp} took longer than the connect timeout of {}",
                human(self.connect_timeout)
            ))),
        }
    }

    async fn connect_inner(&self) -> Result<Conn, Failure> {
        let t = &self.target;
        let hp = t.host_port();
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| Failure::Link(format!("cannot connect to {hp}: {e}")))?;
        let _ = tcp.set_nodelay(true);

        let mut config = client::Config::default();
        config.preferred.key = self.policy.preferred_algorithms(&russh::Preferred::DEFAULT.key);
        config.preferred.cipher = std::borrow::Cow::Borrowed(CIPHERS);
        // Notice a dead link while the connection sits idle in the pool.
        config.keepalive_interval = Some((self.idle_timeout / 2).max(Duration::from_millis(500)));
        config.keepalive_max = 2;
        let client = Client { policy: self.policy.clone() };
        let mut handle = match client::connect_stream(Arc::new(config), tcp, client).await {
            Ok(h) => h,
            Err(ClientError::HostKey(m)) => return Err(self.final_err(io::ErrorKind::PermissionDenied, m)),
            Err(ClientError::Ssh(e)) if is_permanent_ssh(&e) => {
                return Err(self
                    .final_err(io::ErrorKind::Unsupported, format!("ssh handshake with {hp} failed: {e}")))
            }
            Err(ClientError::Ssh(e)) => return Err(Failure::Link(format!("ssh handshake with {hp}: {e}"))),
        };

        self.authenticate(&mut handle).await?;

        let link = |doing: &str, e: russh::Error| Failure::Link(format!("{doing} on {hp}: {e}"));
        let channel =
            handle.channel_open_session().await.map_err(|e| link("opening a session channel", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| link("requesting the sftp subsystem", e))?;
        let cfg = SftpConfig {
            request_timeout_secs: self.request_timeout.as_secs().max(1),
            ..SftpConfig::default()
        };
        let sftp = RawSftpSession::new_with_config(channel.into_stream(), cfg);
        let version = sftp.init().await.map_err(|e| {
            Failure::Link(format!(
                "starting SFTP on {hp} (is the sftp subsystem enabled on the server?): {e}"
            ))
        })?;
        let has = |name: &str, ver: &str| version.extensions.get(name).is_some_and(|v| v == ver);
        let features = Features {
            fsync: has("fsync@openssh.com", "1"),
            hardlink: has("hardlink@openssh.com", "1"),
            posix_rename: has("posix-rename@openssh.com", "1"),
            statvfs: has("statvfs@openssh.com", "2"),
        };
        Ok(Conn { handle, sftp, features })
    }

    async fn authenticate(&self, handle: &mut Handle<Client>) -> Result<(), Failure> {
        let t = &self.target;
        let link = |e: russh::Error| Failure::Link(format!("authenticating to {}: {e}", t.host_port()));
        for (_, key) in &self.identities.keys {
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await.map_err(link)?.flatten().or(Some(HashAlg::Sha256))
            } else {
                None
            };
            let res = handle
                .authenticate_publickey(t.user.clone(), PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(link)?;
            if matches!(res, AuthResult::Success) {
                return Ok(());
            }
        }
        let mut agent_keys = 0;
        if self.identities.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
            if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
                let ids = agent.request_identities().await.unwrap_or_default();
                agent_keys = ids.len();
                for id in ids {
                    let key = id.public_key().into_owned();
                    let hash = if key.algorithm().is_rsa() {
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(link)?
                            .flatten()
                            .or(Some(HashAlg::Sha256))
                    } else {
                        None
                    };
                    match handle.authenticate_publickey_with(t.user.clone(), key, hash, &mut agent).await {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) | Err(_) => continue,
                    }
                }
            }
        }
        // russh reports a connection that closed while it waited for the server's answer as a
        // refused key: a link cut during authentication is a link failure (retried), not a
        // wrong key (final).
        if handle.is_closed() {
            return Err(Failure::Link(format!(
                "authenticating to {}: the connection closed before the server answered",
                t.host_port()
            )));
        }
        Err(Failure::Final(StorageError::PermissionDenied {
            what: format!(
                "{} (authentication failed for {}@{}: {})",
                t.location(),
                t.user,
                t.host,
                self.identities.describe(agent_keys)
            ),
        }))
    }
}
