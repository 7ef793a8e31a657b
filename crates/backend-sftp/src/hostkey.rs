//! Host-key pinning against an OpenSSH `known_hosts` file.
//!
//! Lines are looked up with russh's parser (plain `host`, `[host]:port` for ports other than
//! 22, comma-separated host lists and hashed `|1|salt|hash` entries). Keys are compared by
//! their key data only (never the comment). There is no trust on first use: an unknown key
//! and a changed key are both errors that say what to do.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use russh::keys::{known_hosts, Algorithm, HashAlg, PublicKey};

/// The verdict on a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyVerdict {
    /// The key is recorded for this host.
    Trusted,
    /// The host has no recorded key of this type (or none at all).
    Unknown(String),
    /// A different key of the same type is recorded for this host.
    Changed(String),
}

/// The known_hosts file to check against, and the host as it is written there.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyPolicy {
    pub(crate) known_hosts: PathBuf,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// `~/.ssh/known_hosts`, if there is a home directory.
pub(crate) fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".ssh").join("known_hosts"))
}

fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. }))
}

impl HostKeyPolicy {
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Keys recorded for the host; an unreadable or malformed file is an error, a missing
    /// file records nothing.
    fn recorded(&self) -> Result<Vec<(usize, PublicKey)>, String> {
        known_hosts::known_host_keys_path(&self.host, self.port, &self.known_hosts)
            .map_err(|e| format!("cannot read known_hosts file {}: {e}", self.known_hosts.display()))
    }

    /// Host-key algorithms to offer: russh's defaults, narrowed to the types recorded for
    /// this host when there are any (as OpenSSH does), so a server that has several host keys
    /// presents the one we know.
    pub(crate) fn preferred_algorithms(&self, defaults: &[Algorithm]) -> Cow<'static, [Algorithm]> {
        let recorded = self.recorded().unwrap_or_default();
        let narrowed: Vec<Algorithm> = defaults
            .iter()
            .filter(|a| recorded.iter().any(|(_, k)| same_family(a, &k.algorithm())))
            .cloned()
            .collect();
        if narrowed.is_empty() {
            Cow::Owned(defaults.to_vec())
        } else {
            Cow::Owned(narrowed)
        }
    }

    /// Check `key`, presented by the server, against the file.
    pub(crate) fn check(&self, key: &PublicKey) -> HostKeyVerdict {
        let recorded = match self.recorded() {
            Ok(r) => r,
            Err(e) => return HostKeyVerdict::Unknown(e),
        };
        if recorded.iter().any(|(_, k)| k.key_data() == key.key_data()) {
            return HostKeyVerdict::Trusted;
        }
        let hp = self.host_port();
        let file = self.known_hosts.display();
        if let Some((line, old)) =
            recorded.iter().find(|(_, k)| same_family(&k.algorithm(), &key.algorithm()))
        {
            return HostKeyVerdict::Changed(format!(
                "host key for {hp} CHANGED: the server presents {} but {file}:{line} records {}; \
                 possible man-in-the-middle attack (if the server's key really changed, remove \
                 the old line and add the new key)",
                describe(key),
                describe(old)
            ));
        }
        HostKeyVerdict::Unknown(format!(
            "unknown host key for {hp} ({}): add it to known_hosts (e.g. ssh-keyscan) or pass \
             --ssh-known-hosts FILE (checked {file})",
            describe(key)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two ed25519 public keys made with ssh-keygen.
    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAINg3iprHNAJ/g2Cl+0YOlGMhn0L0VncR/bnyHcGVFI2I";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIN4dEuM0wIJAfhPLcx0dFDLMIet02Q2KDrov8mDziSOh";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).expect("test key parses")
    }

    fn policy(dir: &tempfile::TempDir, contents: &str, port: u16) -> HostKeyPolicy {
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, contents).expect("write known_hosts");
        HostKeyPolicy { known_hosts: path, host: "127.0.0.1".into(), port }
    }

    #[test]
    fn recorded_key_is_trusted_with_or_without_port() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = policy(&dir, &format!("[127.0.0.1]:2222 ssh-ed25519 {K1} comment\n"), 2222);
        assert_eq!(p.check(&key(K1)), HostKeyVerdict::Trusted);
        let p = policy(&dir, &format!("other,127.0.0.1 ssh-ed25519 {K1}\n"), 22);
        assert_eq!(p.check(&key(K1)), HostKeyVerdict::Trusted);
    }

    #[test]
    fn other_port_or_host_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p =
            policy(&dir, &format!("[127.0.0.1]:2223 ssh-ed25519 {K1}\n127.0.0.2 ssh-ed25519 {K1}\n"), 2222);
        match p.check(&key(K1)) {
            HostKeyVerdict::Unknown(m) => {
                assert!(m.starts_with("unknown host key for 127.0.0.1:2222 (ssh-ed25519 SHA256:"), "{m}");
                assert!(m.contains("ssh-keyscan") && m.contains("--ssh-known-hosts FILE"), "{m}");
            }
            v => panic!("expected Unknown, got {v:?}"),
        }
    }

    #[test]
    fn a_different_key_of_the_same_type_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = policy(&dir, &format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {K2}\n"), 2222);
        match p.check(&key(K1)) {
            HostKeyVerdict::Changed(m) => {
                assert!(m.starts_with("host key for 127.0.0.1:2222 CHANGED"), "{m}");
                assert!(m.contains("man-in-the-middle"), "{m}");
            }
            v => panic!("expected Changed, got {v:?}"),
        }
    }

    #[test]
    fn a_missing_file_knows_nothing() {
        let p = HostKeyPolicy { known_hosts: "/nonexistent/known_hosts".into(), host: "h".into(), port: 22 };
        assert!(matches!(p.check(&key(K1)), HostKeyVerdict::Unknown(_)));
    }
}
