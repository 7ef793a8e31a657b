//! Opening and creating repositories, and managing their key files.

use std::path::PathBuf;
use std::sync::Arc;

use offsite_backend::{failpoint, ObjectKind, Storage, StorageError};
use offsite_crypto::{KdfParams, KeyKind, KeySet};
use offsite_format::{
    create_keyfile, open_record, parse_keyfile, peek, seal_record, storage_id, unlock_keyfile, ChunkerSizes,
    Config, FormatError, KeyId, RecordType, RepoId, FORMAT_VERSION,
};

use crate::cache::{read_optional, write_atomic_if_changed, CacheSetting};
use crate::error::{RepoError, RepoResult};

/// Options for creating a repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// chunk sizes
    pub chunker: ChunkerSizes,
    /// zstd level for data (0 = off)
    pub compression: i32,
    /// target pack size
    pub pack_size: u32,
    /// Argon2id parameters for the first key
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            chunker: ChunkerSizes { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 },
            compression: 3,
            pack_size: 8 * 1024 * 1024,
            kdf: KdfParams::new_default(),
        }
    }
}

/// One key file as listed by `key list`.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// storage name
    pub id: KeyId,
    /// full or backup-only
    pub kind: String,
    /// creation time
    pub created: String,
    /// whether this is the key the repository was opened with
    pub current: bool,
}

/// Key files tried at most per open, the cached last key first: each attempt costs one
/// Argon2id derivation, and the storage can plant key files (docs/FORMAT.md §4).
pub const MAX_KEY_TRIES: usize = 8;

/// An open repository: storage, config and the unlocked key set.
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: Config,
    keys: KeySet,
    key_id: KeyId,
    cache: Option<PathBuf>,
    warnings: Vec<String>,
    expect_latest: Option<String>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.storage.location())
            .field("id", &self.config.id)
            .field("kind", &self.keys.kind())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// Read an object whole and check that its bytes hash to its name.
pub(crate) fn read_verified(storage: &dyn Storage, kind: ObjectKind, id: &str) -> RepoResult<Vec<u8>> {
    let bytes = storage.read(kind, id, None)?;
    if hex::encode(storage_id(&bytes)) != id {
        return Err(RepoError::NameMismatch { object: format!("{}/{}", kind.dir_name(), &id[..8]) });
    }
    Ok(bytes)
}

impl Repository {
    /// Create a repository at the storage with a first full key wrapped by `passphrase`.
    pub fn init(
        storage: Arc<dyn Storage>,
        passphrase: &[u8],
        opts: &InitOptions,
        cache: &CacheSetting,
    ) -> RepoResult<Repository> {
        if let Some(why) = Config::invalid_settings(opts.chunker, opts.compression, opts.pack_size) {
            return Err(RepoError::Other(format!("cannot create a repository with {why}")));
        }
        let location = storage.location();
        match storage.create() {
            Err(StorageError::AlreadyExists { .. }) => return Err(RepoError::AlreadyExists { location }),
            r => r?,
        }
        failpoint::hit("init.layout_created");
        // An init interrupted after writing its key is finished with that key.
        let (keys, id, leftover) = match interrupted_init_key(&*storage, passphrase)? {
            Some((key_id, keys, id)) => (keys, id, Some(key_id)),
            None => (KeySet::generate(), RepoId(offsite_crypto::random_bytes()), None),
        };
        let config = Config {
            version: FORMAT_VERSION,
            id,
            public_key: keys.public_key(),
            key_commitment: keys.commitment(),
            created: now_rfc3339(),
            chunker: opts.chunker,
            compression: opts.compression,
            pack_size: opts.pack_size,
        };
        // Key first, config last: a repository exists only once its config does, and then it
        // can always be opened.
        let key_id = match leftover {
            Some(key_id) => key_id,
            None => write_key(&*storage, &keys, config.id, passphrase, &opts.kdf)?,
        };
        storage.write(ObjectKind::Config, "", &seal_record(RecordType::Config, &keys, &config))?;
        failpoint::hit("init.config_written");
        let cache = cache.base().map(|b| b.join(config.id.to_hex()));
        Ok(Repository { storage, config, keys, key_id, cache, warnings: Vec::new(), expect_latest: None })
    }

    /// Open a repository with a passphrase: find the key file it unlocks, then read the config.
    pub fn open(
        storage: Arc<dyn Storage>,
        passphrase: &[u8],
        cache: &CacheSetting,
    ) -> RepoResult<Repository> {
        Repository::open_with_key(storage, passphrase, cache, None)
    }

    /// Like [`Repository::open`], trying only the key files whose id starts with `key_prefix`
    /// when it is given (`--key-id`).
    ///
    /// A key file is used only if its keys match the config's key commitment and public key
    /// (docs/FORMAT.md §5.1): one that opens with the passphrase but holds other keys (planted
    /// by the storage or a thief to capture future backups) is skipped and named in
    /// [`Repository::warnings`]. At most [`MAX_KEY_TRIES`] key files are tried.
    pub fn open_with_key(
        storage: Arc<dyn Storage>,
        passphrase: &[u8],
        cache: &CacheSetting,
        key_prefix: Option<&str>,
    ) -> RepoResult<Repository> {
        let location = storage.location();
        let config_bytes = match storage.read(ObjectKind::Config, "", None) {
            Err(e) if e.is_not_found() => return Err(RepoError::NoRepository { location }),
            r => r?,
        };
        let (version, _) = peek(&config_bytes).map_err(|e| RepoError::corrupt("config", e))?;
        if version != FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let found = find_key(&*storage, passphrase, cache, key_prefix, &config_bytes)?;
        let (key_id, keys, config) = (found.key_id, found.keys, found.config);
        if let Some(why) = config.invalid() {
            return Err(RepoError::corrupt("config", FormatError::Json(why)));
        }
        let cache = cache.base().map(|b| b.join(config.id.to_hex()));
        if let Some(dir) = &cache {
            let _ = write_atomic_if_changed(&dir.join("last-key"), key_id.to_hex().as_bytes());
        }
        Ok(Repository { storage, config, keys, key_id, cache, warnings: found.warnings, expect_latest: None })
    }

    /// Pin a snapshot that must be listed (or forgotten) whenever snapshots are listed
    /// (`--expect-latest ID`): a client without a record of the repository (new machine,
    /// `--no-cache`) then still detects a storage that serves a state from before `ID`.
    pub fn set_expect_latest(&mut self, id_prefix: Option<String>) {
        self.expect_latest = id_prefix.map(|p| p.to_lowercase());
    }

    /// The `--expect-latest` pin, if any.
    pub fn expected_latest(&self) -> Option<&str> {
        self.expect_latest.as_deref()
    }

    /// Warnings from opening (key files skipped, planted key files): the CLI prints them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    /// The decoded config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The unlocked keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }
    /// The key file used to open.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// Whether this key can read (a full key).
    pub fn is_full(&self) -> bool {
        self.keys.kind() == KeyKind::Full
    }
    /// Error unless this is a full key.
    pub fn require_full(&self) -> RepoResult<()> {
        if self.is_full() {
            Ok(())
        } else {
            Err(RepoError::BackupOnly)
        }
    }
    /// This repository's cache directory, if caching is on.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.as_deref()
    }
    /// Human-readable location.
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Add a key file. A full key may add full or backup-only keys; a backup-only key may only
    /// add backup-only keys.
    pub fn add_key(&self, passphrase: &[u8], backup_only: bool, kdf: &KdfParams) -> RepoResult<KeyId> {
        if !backup_only {
            self.require_full()?;
        }
        let keys = if backup_only { self.keys.to_backup_only() } else { copy_keys(&self.keys)? };
        write_key(&*self.storage, &keys, self.config.id, passphrase, kdf)
    }

    /// All key files with their kind and creation time.
    pub fn list_keys(&self) -> RepoResult<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for (id, _) in self.storage.list(ObjectKind::Key)? {
            let bytes = read_verified(&*self.storage, ObjectKind::Key, &id)?;
            let kid = KeyId::from_hex(&id).map_err(|e| RepoError::corrupt(format!("keys/{id}"), e))?;
            let kf =
                parse_keyfile(&bytes).map_err(|e| RepoError::corrupt(format!("keys/{}", kid.short()), e))?;
            out.push(KeyInfo { id: kid, kind: kf.kind, created: kf.created, current: kid == self.key_id });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Remove a key file by id prefix. Refuses the key in use and the last full key.
    pub fn remove_key(&self, prefix: &str) -> RepoResult<KeyId> {
        self.require_full()?;
        let keys = self.list_keys()?;
        let matches: Vec<_> = keys.iter().filter(|k| k.id.to_hex().starts_with(prefix)).collect();
        let k = match matches.as_slice() {
            [] => return Err(RepoError::Other(format!("no key matches {prefix:?}"))),
            [k] => *k,
            _ => return Err(RepoError::Other(format!("key id prefix {prefix:?} is ambiguous"))),
        };
        if k.current {
            return Err(RepoError::Other(format!(
                "key {} is the one in use; open the repository with another key to remove it",
                k.id.short()
            )));
        }
        if k.kind == "full" && keys.iter().filter(|x| x.kind == "full").count() == 1 {
            return Err(RepoError::Other("refusing to remove the last full key".into()));
        }
        self.storage.delete(ObjectKind::Key, &k.id.to_hex())?;
        failpoint::hit("key.removed");
        Ok(k.id)
    }

    /// Replace the passphrase of the key in use: write a new key file, then delete the old one.
    pub fn change_passphrase(&mut self, new: &[u8], kdf: &KdfParams) -> RepoResult<KeyId> {
        let keys = copy_keys(&self.keys)?;
        let id = write_key(&*self.storage, &keys, self.config.id, new, kdf)?;
        self.storage.delete(ObjectKind::Key, &self.key_id.to_hex())?;
        failpoint::hit("key.old_removed");
        self.key_id = id;
        Ok(id)
    }
}

/// A copy of a key set, of the same kind (KeySet is deliberately not `Clone`).
fn copy_keys(keys: &KeySet) -> RepoResult<KeySet> {
    KeySet::from_bytes(&keys.to_bytes()).map_err(|e| RepoError::Other(e.to_string()))
}

fn write_key(
    storage: &dyn Storage,
    keys: &KeySet,
    repo: RepoId,
    pass: &[u8],
    kdf: &KdfParams,
) -> RepoResult<KeyId> {
    let bytes =
        create_keyfile(keys, repo, pass, kdf, &now_rfc3339()).map_err(|e| RepoError::Other(e.to_string()))?;
    let id = KeyId(storage_id(&bytes));
    storage.write(ObjectKind::Key, &id.to_hex(), &bytes)?;
    failpoint::hit("key.written");
    Ok(id)
}

/// The key left by an `init` interrupted after writing its key and before writing the config.
///
/// With no key files, `None`. With exactly one, a full key that `pass` opens, and no data, index
/// or snapshot object, that key (its id, keys and repository id), so init finishes with it
/// instead of adding a second key that opens no config. Anything else is refused, naming the
/// key files: they may belong to a repository whose config was lost, so nothing is deleted.
fn interrupted_init_key(storage: &dyn Storage, pass: &[u8]) -> RepoResult<Option<(KeyId, KeySet, RepoId)>> {
    let keys = storage.list(ObjectKind::Key)?;
    let Some((id, _)) = keys.first() else { return Ok(None) };
    let refuse = |why: &str| {
        let names: Vec<&str> = keys.iter().map(|(id, _)| &id[..8]).collect();
        RepoError::Other(format!(
            "{} has no config but holds key files ({why}): keys/{}: if an interrupted init left \
             them, delete them and run init again; if a repository lost its config, keep them",
            storage.location(),
            names.join(", keys/")
        ))
    };
    for kind in [ObjectKind::Data, ObjectKind::Index, ObjectKind::Snapshot] {
        if !storage.list(kind)?.is_empty() {
            return Err(refuse(&format!("and {} objects", kind.dir_name())));
        }
    }
    if keys.len() > 1 {
        return Err(refuse("more than one"));
    }
    let bytes = read_verified(storage, ObjectKind::Key, id)?;
    let kid = KeyId::from_hex(id).map_err(|e| RepoError::corrupt(format!("keys/{id}"), e))?;
    match unlock_keyfile(&bytes, pass) {
        Ok((kf, keys)) if keys.kind() == KeyKind::Full => Ok(Some((kid, keys, kf.repository))),
        Ok(_) => Err(refuse("a backup-only key")),
        Err(FormatError::WrongPassphrase) => Err(refuse("this passphrase opens none")),
        Err(e) => Err(RepoError::corrupt(format!("keys/{}", kid.short()), e)),
    }
}

/// A key file that opened and matches the config.
struct FoundKey {
    key_id: KeyId,
    keys: KeySet,
    config: Config,
    warnings: Vec<String>,
}

/// Why a key file that the passphrase opened was not used.
fn key_mismatch(keys: &KeySet, repo: RepoId, config_bytes: &[u8]) -> Result<Config, String> {
    let config: Config = match open_record(RecordType::Config, keys, config_bytes) {
        Ok(c) => c,
        Err(FormatError::Auth) => return Err("the config does not authenticate with its index key".into()),
        Err(e) => return Err(format!("the config does not decode with it: {e}")),
    };
    if config.id != repo {
        return Err(format!("it names repository {}, the config {}", repo.short(), config.id.short()));
    }
    if config.public_key != keys.public_key() || config.key_commitment != keys.commitment() {
        return Err("its keys differ from the ones the config commits to".into());
    }
    Ok(config)
}

fn find_key(
    storage: &dyn Storage,
    pass: &[u8],
    cache: &CacheSetting,
    key_prefix: Option<&str>,
    config_bytes: &[u8],
) -> RepoResult<FoundKey> {
    let mut ids: Vec<String> = storage.list(ObjectKind::Key)?.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    if let Some(prefix) = key_prefix {
        ids.retain(|id| id.starts_with(prefix));
        if ids.is_empty() {
            return Err(RepoError::Other(format!(
                "no key file of {} starts with {prefix:?}; list them with `offsite key list`",
                storage.location()
            )));
        }
    }
    // Try the key used last time first: each attempt costs one Argon2id derivation.
    if let Some(base) = cache.base() {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                if let Ok(Some(last)) = read_optional(&e.path().join("last-key")) {
                    let last = String::from_utf8_lossy(&last).to_string();
                    if let Some(pos) = ids.iter().position(|i| *i == last) {
                        let id = ids.remove(pos);
                        ids.insert(0, id);
                    }
                }
            }
        }
    }
    let skipped: Vec<String> =
        ids.iter().skip(MAX_KEY_TRIES).map(|id| format!("keys/{}", &id[..8])).collect();
    let mut damaged = None;
    let mut readable = 0usize;
    let mut foreign: Vec<(String, String)> = Vec::new();
    for id in ids.into_iter().take(MAX_KEY_TRIES) {
        let bytes = match read_verified(storage, ObjectKind::Key, &id) {
            Ok(b) => b,
            Err(e @ RepoError::NameMismatch { .. }) => {
                damaged = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        match unlock_keyfile(&bytes, pass) {
            Ok((kf, keys)) => {
                let kid = KeyId::from_hex(&id).map_err(|e| RepoError::corrupt(format!("keys/{id}"), e))?;
                match key_mismatch(&keys, kf.repository, config_bytes) {
                    Ok(config) => {
                        let mut warnings: Vec<String> = foreign
                            .iter()
                            .map(|(other, why)| {
                                format!(
                                    "the passphrase opens two key files, keys/{} and keys/{other}; \
                                     keys/{other} does not belong to this repository ({why}): \
                                     it was planted or is damaged; remove it with `offsite key remove {other}`",
                                    kid.short()
                                )
                            })
                            .collect();
                        if !skipped.is_empty() {
                            warnings.push(format!(
                                "tried {MAX_KEY_TRIES} key files; not tried: {}",
                                skipped.join(", ")
                            ));
                        }
                        return Ok(FoundKey { key_id: kid, keys, config, warnings });
                    }
                    Err(why) => foreign.push((kid.short(), why)),
                }
            }
            Err(FormatError::WrongPassphrase) => readable += 1,
            Err(e) => damaged = Some(RepoError::corrupt(format!("keys/{}", &id[..8]), e)),
        }
    }
    if let Some((other, why)) = foreign.first() {
        return Err(RepoError::Other(format!(
            "the passphrase opens keys/{other}, but it does not belong to repository {} ({why}): \
             it was planted or the config was replaced; refusing to use it",
            storage.location()
        )));
    }
    if !skipped.is_empty() {
        return Err(RepoError::Other(format!(
            "wrong passphrase for repository {}: tried the first {MAX_KEY_TRIES} key files, not {}; \
             name the key file with --key-id",
            storage.location(),
            skipped.join(", ")
        )));
    }
    match damaged {
        // Every key file is damaged: say so rather than blame the passphrase.
        Some(e) if readable == 0 => Err(e),
        // Some key file is damaged and no other opened: the passphrase may be right and its
        // key file the damaged one, so name that too.
        Some(e) => Err(RepoError::Other(format!(
            "wrong passphrase for repository {}, or its key file is damaged ({e})",
            storage.location()
        ))),
        None => Err(RepoError::WrongPassphrase { location: storage.location() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_backend::LocalStorage;

    /// A location as an `init` killed after writing its key leaves it: layout and key, no config.
    fn interrupted_init(pass: &[u8]) -> (tempfile::TempDir, Arc<dyn Storage>, KeyId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path().join("repo")));
        storage.create().expect("create");
        let keys = KeySet::generate();
        let id = write_key(
            &*storage,
            &keys,
            RepoId(offsite_crypto::random_bytes()),
            pass,
            &KdfParams::for_tests(),
        )
        .expect("write key");
        (dir, storage, id)
    }

    #[test]
    fn init_after_an_init_interrupted_past_its_key_adopts_that_key() {
        let (_dir, storage, key) = interrupted_init(b"pw");
        let opts = InitOptions { kdf: KdfParams::for_tests(), ..Default::default() };
        let repo = Repository::init(storage.clone(), b"pw", &opts, &CacheSetting::Disabled).expect("init");
        assert_eq!(repo.key_id(), key);
        assert_eq!(storage.list(ObjectKind::Key).expect("list").len(), 1, "no second key");
        let opened = Repository::open(storage, b"pw", &CacheSetting::Disabled).expect("open");
        assert_eq!(opened.config().id, repo.config().id);
    }

    #[test]
    fn init_over_key_files_it_cannot_adopt_names_them_and_writes_nothing() {
        let (_dir, storage, key) = interrupted_init(b"pw");
        let opts = InitOptions { kdf: KdfParams::for_tests(), ..Default::default() };
        let err =
            Repository::init(storage.clone(), b"other", &opts, &CacheSetting::Disabled).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("has no config but holds key files"), "{msg}");
        assert!(msg.contains(&format!("keys/{}", key.short())), "{msg}");
        assert!(storage.stat(ObjectKind::Config, "").expect_err("no config").is_not_found());
        assert_eq!(storage.list(ObjectKind::Key).expect("list").len(), 1);
    }
}
