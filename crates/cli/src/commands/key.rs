//! `offsite key add|list|remove|passwd`: the key files (passphrases) that open the repository.

use anyhow::Result;
use offsite_crypto::KdfParams;
use serde_json::json;

use crate::args::KeyCommand;
use crate::output::Output;
use crate::password::{self, Purpose};
use crate::resolve::Invocation;
use crate::units::local_time;
use crate::Status;

/// Run one key subcommand.
pub fn run(inv: &Invocation, out: Output, cmd: KeyCommand) -> Result<Status> {
    // The parameters of the key file to make, first: a refusal comes before any passphrase.
    let kdf = match cmd {
        KeyCommand::Add(_) | KeyCommand::Passwd(_) => inv.kdf()?,
        KeyCommand::List | KeyCommand::Remove(_) => KdfParams::new_default(),
    };
    let mut repo = super::open(inv)?;
    match cmd {
        KeyCommand::Add(a) => {
            let pass =
                password::read(&inv.new_password_source(a.new_password_file.as_ref()), Purpose::NewKey)?;
            let id = repo.add_key(&pass, a.backup_only, &kdf)?;
            let kind = if a.backup_only { "backup-only" } else { "full" };
            out.json(&json!({"type": "key_added", "id": id.to_hex(), "kind": kind}))?;
            out.info(format_args!("added {kind} key {}", id.short()))?;
        }
        KeyCommand::List => {
            for k in repo.list_keys()? {
                out.json(&json!({
                    "type": "key", "id": k.id.to_hex(), "kind": k.kind, "created": k.created, "current": k.current,
                }))?;
                let mark = if k.current { "*" } else { " " };
                out.line(format_args!(
                    "{mark} {}  {:<11}  {}",
                    k.id.short(),
                    k.kind,
                    local_time(&k.created)
                ))?;
            }
        }
        KeyCommand::Remove(a) => {
            let id = repo.remove_key(&a.id)?;
            out.json(&json!({"type": "key_removed", "id": id.to_hex()}))?;
            out.info(format_args!("removed key {}", id.short()))?;
        }
        KeyCommand::Passwd(a) => {
            let old = repo.key_id();
            let pass =
                password::read(&inv.new_password_source(a.new_password_file.as_ref()), Purpose::NewKey)?;
            let id = repo.change_passphrase(&pass, &kdf)?;
            out.json(&json!({"type": "key_changed", "old": old.to_hex(), "id": id.to_hex()}))?;
            out.info(format_args!("passphrase changed: key {} replaces key {}", id.short(), old.short()))?;
        }
    }
    Ok(Status::Success)
}
