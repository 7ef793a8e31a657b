//! Client identities: which private keys to offer, loaded once per storage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::PrivateKey;

/// The keys to offer, in order, and whether the ssh-agent may be asked too.
#[derive(Debug, Clone)]
pub(crate) struct Identities {
    /// Keys that loaded, with the file each came from.
    pub(crate) keys: Vec<(PathBuf, Arc<PrivateKey>)>,
    /// Files that exist but could not be used (encrypted, unsupported type), with why; shown
    /// when authentication fails.
    pub(crate) skipped: Vec<String>,
    /// Ask the agent at `$SSH_AUTH_SOCK` after the key files (only without an explicit
    /// identity, like OpenSSH's `IdentitiesOnly` for `-i`).
    pub(crate) use_agent: bool,
}

/// The default key files, in OpenSSH's order.
fn default_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else { return Vec::new() };
    let ssh = Path::new(&home).join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|n| ssh.join(n)).collect()
}

/// Load the identity: `explicit` alone if given (an unreadable or unusable file is an error
/// naming it), else whichever of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` exist and load,
/// plus the ssh-agent.
pub(crate) fn load_identities(explicit: Option<&Path>) -> Result<Identities, String> {
    if let Some(path) = explicit {
        let key = russh::keys::load_secret_key(path, None).map_err(|e| {
            format!(
                "cannot use SSH identity {}: {e} (passphrase-protected keys work through ssh-agent)",
                path.display()
            )
        })?;
        return Ok(Identities {
            keys: vec![(path.to_path_buf(), Arc::new(key))],
            skipped: Vec::new(),
            use_agent: false,
        });
    }
    let mut ids = Identities { keys: Vec::new(), skipped: Vec::new(), use_agent: true };
    for path in default_files() {
        if !path.exists() {
            continue;
        }
        match russh::keys::load_secret_key(&path, None) {
            Ok(key) => ids.keys.push((path, Arc::new(key))),
            Err(e) => ids.skipped.push(format!("{} ({e})", path.display())),
        }
    }
    Ok(ids)
}

impl Identities {
    /// What was offered, for an authentication failure message.
    pub(crate) fn describe(&self, agent_keys: usize) -> String {
        let mut parts: Vec<String> = self.keys.iter().map(|(p, _)| p.display().to_string()).collect();
        if agent_keys > 0 {
            parts.push(format!("{agent_keys} ssh-agent key(s)"));
        }
        let mut s = if parts.is_empty() {
            "no key to offer (pass --ssh-identity FILE or load a key into ssh-agent)".to_string()
        } else {
            format!("offered {}", parts.join(", "))
        };
        if !self.skipped.is_empty() {
            s.push_str(&format!("; skipped {}", self.skipped.join(", ")));
        }
        s
    }
}
