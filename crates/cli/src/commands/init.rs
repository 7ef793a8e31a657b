//! `offsite init`: create a repository with a first full key.

use anyhow::Result;
use offsite_repo::{InitOptions, Repository};
use serde_json::json;

use crate::output::Output;
use crate::password::{self, Purpose};
use crate::resolve::{open_storage, Invocation};
use crate::Status;

/// Create the repository and print its id and location.
pub fn run(inv: &Invocation, out: Output) -> Result<Status> {
    let kdf = inv.kdf()?;
    let storage = open_storage(inv)?;
    let location = storage.location();
    let pass = password::read(&inv.password, Purpose::Create(&location))?;
    let opts = InitOptions { kdf, ..Default::default() };
    let repo = Repository::init(storage, &pass, &opts, &inv.cache)?;
    let id = repo.config().id.to_hex();
    out.json(&json!({"type": "init", "id": id, "location": location}))?;
    out.info(format_args!("created repository {} at {location}", &id[..8]))?;
    out.info("keep the passphrase safe: without it nothing in the repository can be read")?;
    Ok(Status::Success)
}
