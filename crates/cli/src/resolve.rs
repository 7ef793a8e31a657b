//! The second stage of argument handling: global flags plus environment variables become one
//! [`Invocation`] that every command reads. No command looks at the environment itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use offsite_backend::{LocalStorage, RemoteOptions, Storage};
use offsite_crypto::KdfParams;
use offsite_repo::CacheSetting;
use zeroize::Zeroizing;

use crate::args::GlobalArgs;
use crate::output::warn;
use crate::password::Source;

/// Everything a command needs to know about how it was invoked.
#[derive(Debug)]
pub struct Invocation {
    /// Repository location as given (`--repo`, `OFFSITE_REPOSITORY`).
    pub location: Option<String>,
    /// Where the passphrase comes from.
    pub password: Source,
    /// Where a new passphrase comes from when `--new-password-file` is not given.
    pub new_password_env: Option<Zeroizing<String>>,
    /// JSON lines on stdout.
    pub json: bool,
    /// Only errors and warnings.
    pub quiet: bool,
    /// Verbosity level (`-v` count).
    pub verbose: u8,
    /// Local cache.
    pub cache: CacheSetting,
    /// `--key-id`: try only the key files whose id starts with this.
    pub key_id: Option<String>,
    /// `--expect-latest`: a snapshot that must be listed.
    pub expect_latest: Option<String>,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Parallel transfers (`--connections`), when given.
    pub connections: Option<usize>,
    /// Test-only cheap key derivation for new keys (`OFFSITE_INSECURE_FAST_KDF`).
    pub insecure_fast_kdf: FastKdf,
    /// Remote storage settings (`--idle-timeout`, `--connect-timeout`, `--give-up-after`,
    /// `--connections`, `--cacert`).
    pub remote: Result<RemoteOptions, String>,
    /// SSH key for sftp:// (`--ssh-identity`, `OFFSITE_SSH_IDENTITY`).
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts for sftp:// (`--ssh-known-hosts`, `OFFSITE_SSH_KNOWN_HOSTS`).
    pub ssh_known_hosts: Option<PathBuf>,
    /// S3 endpoint, region and credentials (flags and the usual AWS variables).
    pub s3: S3Settings,
}

/// The value `OFFSITE_INSECURE_FAST_KDF` (`--insecure-fast-kdf`) must have for `init`,
/// `key add` and `key passwd` to make key files with the test-only parameters.
pub const FAST_KDF_CONFIRMATION: &str = "testing-only-keys-are-crackable";

/// Whether new key files get the cheapest Argon2id parameters (tests only): a key file made so
/// gives its passphrase to anyone who holds it and tries a dictionary, so the setting must say
/// that it knows ([`FAST_KDF_CONFIRMATION`]), and it is announced on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastKdf {
    /// Unset (or empty): real parameters.
    Off,
    /// Set to [`FAST_KDF_CONFIRMATION`].
    Confirmed,
    /// Set to anything else: commands that make key files refuse to run.
    Unconfirmed,
}

impl FastKdf {
    fn from_value(value: Option<&str>) -> FastKdf {
        match value {
            None | Some("") => FastKdf::Off,
            Some(FAST_KDF_CONFIRMATION) => FastKdf::Confirmed,
            Some(_) => FastKdf::Unconfirmed,
        }
    }
}

/// S3 settings from `--s3-endpoint` and the AWS environment variables.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `--s3-endpoint` / `AWS_ENDPOINT_URL`
    pub endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`)
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret_access_key: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn remote_options(g: &GlobalArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<RemoteOptions, String> {
    let mut o = RemoteOptions { ca_cert: g.cacert.clone(), ..RemoteOptions::default() };
    if let Some(n) = g.connections {
        o.concurrency = usize::from(n);
    }
    let pick = |flag: &Option<String>, var: &str| flag.clone().or_else(|| env(var));
    for (value, name, slot) in [
        (pick(&g.idle_timeout, "OFFSITE_IDLE_TIMEOUT"), "--idle-timeout", &mut o.idle_timeout),
        (pick(&g.connect_timeout, "OFFSITE_CONNECT_TIMEOUT"), "--connect-timeout", &mut o.connect_timeout),
        (pick(&g.give_up_after, "OFFSITE_GIVE_UP_AFTER"), "--give-up-after", &mut o.give_up_after),
    ] {
        if let Some(v) = value {
            *slot = crate::units::parse_duration(&v).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(o)
}

/// Read an environment variable; unset and empty are the same.
fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Merge flags and environment into an [`Invocation`].
pub fn resolve(g: &GlobalArgs) -> Invocation {
    resolve_with(g, &env_nonempty)
}

/// [`resolve`] with an injectable environment (tests).
pub fn resolve_with(g: &GlobalArgs, env: &dyn Fn(&str) -> Option<String>) -> Invocation {
    let password = if let Some(f) = &g.password_file {
        Source::File(f.clone())
    } else if let Some(cmd) = env("OFFSITE_PASSWORD_COMMAND") {
        Source::Command(cmd)
    } else if let Some(p) = env("OFFSITE_PASSWORD") {
        Source::Env("OFFSITE_PASSWORD", Zeroizing::new(p))
    } else if let Some(f) = &g.key_file {
        Source::KeyFile(f.clone())
    } else {
        Source::Prompt
    };
    let cache = if g.no_cache {
        CacheSetting::Disabled
    } else if let Some(dir) = &g.cache_dir {
        CacheSetting::Dir(dir.clone())
    } else {
        CacheSetting::Default
    };
    Invocation {
        location: g.repo.clone().filter(|r| !r.is_empty()),
        password,
        new_password_env: env("OFFSITE_NEW_PASSWORD").map(Zeroizing::new),
        json: g.json,
        quiet: g.quiet,
        verbose: g.verbose,
        cache,
        key_id: g.key_id.clone().filter(|k| !k.is_empty()),
        expect_latest: g.expect_latest.clone().filter(|k| !k.is_empty()),
        threads: g.threads.unwrap_or(0),
        connections: g.connections.map(usize::from),
        insecure_fast_kdf: FastKdf::from_value(g.insecure_fast_kdf.as_deref()),
        remote: remote_options(g, env),
        ssh_identity: g.ssh_identity.clone(),
        ssh_known_hosts: g.ssh_known_hosts.clone(),
        s3: S3Settings {
            endpoint: g.s3_endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            access_key_id: env("AWS_ACCESS_KEY_ID"),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").map(Zeroizing::new),
        },
    }
}

impl Invocation {
    /// The repository location, or an error telling how to give one.
    pub fn location(&self) -> Result<&str> {
        match &self.location {
            Some(l) => Ok(l),
            None => bail!("no repository given: use --repo or set OFFSITE_REPOSITORY"),
        }
    }

    /// Key derivation parameters for a new key file (init, key add, key passwd): the real
    /// ones; under a confirmed `OFFSITE_INSECURE_FAST_KDF` the cheapest, with a warning; under
    /// any other value of it an error, before anything is asked or written.
    pub fn kdf(&self) -> Result<KdfParams> {
        match self.insecure_fast_kdf {
            FastKdf::Off => Ok(KdfParams::new_default()),
            FastKdf::Confirmed => {
                warn(
                    "OFFSITE_INSECURE_FAST_KDF: the new key file gets test-only Argon2id parameters: \
                     anyone who obtains it (from the storage or any copy) can crack its passphrase \
                     quickly; never use this for real data",
                );
                Ok(KdfParams::for_tests())
            }
            FastKdf::Unconfirmed => bail!(
                "OFFSITE_INSECURE_FAST_KDF would make key files whose passphrase anyone holding them \
                 can crack quickly: unset it, or, for tests only, set it to exactly {FAST_KDF_CONFIRMATION}"
            ),
        }
    }

    /// Say on stderr that a key file was opened under `OFFSITE_INSECURE_FAST_KDF` (any value):
    /// a repository used with it was most likely created with it.
    pub fn warn_if_fast_kdf(&self) {
        if self.insecure_fast_kdf != FastKdf::Off {
            warn(
                "OFFSITE_INSECURE_FAST_KDF is set, a test-only setting: key files created under it \
                 can be cracked quickly by anyone who obtains them; unset it for real repositories",
            );
        }
    }

    /// Where a new passphrase (key add, key passwd) comes from.
    pub fn new_password_source(&self, file: Option<&PathBuf>) -> Source {
        match (file, &self.new_password_env) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(p)) => Source::Env("OFFSITE_NEW_PASSWORD", p.clone()),
            (None, None) => Source::Prompt,
        }
    }
}

/// What a repository location names.
#[derive(Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local or mounted file system.
    Local(PathBuf),
    /// `sftp://user@host[:port]/path`
    Sftp(String),
    /// `s3://bucket/prefix`
    S3(String),
    /// `rest:http(s)://...` (the URL after `rest:`)
    Rest(String),
    /// `rclone:remote:path` (the part after `rclone:`)
    Rclone(String),
}

/// Classify a repository location string.
pub fn parse_location(location: &str) -> Result<Location> {
    if location.starts_with("sftp://") {
        return Ok(Location::Sftp(location.to_string()));
    }
    if location.starts_with("s3://") {
        return Ok(Location::S3(location.to_string()));
    }
    if let Some(url) = location.strip_prefix("rest:") {
        return Ok(Location::Rest(url.to_string()));
    }
    if let Some(remote) = location.strip_prefix("rclone:") {
        return Ok(Location::Rclone(remote.to_string()));
    }
    if let Some(local) = location.strip_prefix("file://") {
        return Ok(Location::Local(PathBuf::from(local)));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        let looks_like_scheme = !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if looks_like_scheme {
            bail!(
                "unknown repository URL scheme {scheme:?} in {location}: use a local path, sftp://, s3://, rest: or rclone:"
            );
        }
    }
    Ok(Location::Local(PathBuf::from(location)))
}

/// Open the storage a repository location names. Relative local paths are made absolute so
/// messages name the directory unambiguously.
pub fn open_storage(inv: &Invocation) -> Result<Arc<dyn Storage>> {
    let location = inv.location()?;
    let remote = || inv.remote.clone().map_err(anyhow::Error::msg);
    let what = || format!("cannot open repository {location}");
    Ok(match parse_location(location)? {
        Location::Local(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            let storage = LocalStorage::new(path);
            Arc::new(match inv.connections {
                Some(n) => storage.with_transfers(n),
                None => storage,
            })
        }
        Location::Sftp(url) => {
            let opts = offsite_backend_sftp::SftpOptions {
                remote: remote()?,
                identity: inv.ssh_identity.clone(),
                known_hosts: inv.ssh_known_hosts.clone(),
            };
            Arc::new(offsite_backend_sftp::SftpStorage::new(&url, opts).with_context(what)?)
        }
        Location::S3(url) => {
            let s3 = &inv.s3;
            let opts = offsite_backend_s3::S3Options {
                remote: remote()?,
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.as_ref().map(|s| s.to_string()),
                path_style: None,
            };
            Arc::new(offsite_backend_s3::S3Storage::new(&url, opts).with_context(what)?)
        }
        Location::Rest(url) => {
            Arc::new(offsite_backend_rest::RestStorage::new(&url, remote()?).with_context(what)?)
        }
        Location::Rclone(r) => {
            Arc::new(offsite_backend_rest::RcloneStorage::new(&r, remote()?).with_context(what)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut v = vec!["offsite"];
        v.extend_from_slice(args);
        v.push("init");
        crate::args::Cli::try_parse_from(v).expect("parses").global
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_string())
    }

    #[test]
    fn password_sources_in_documented_order() {
        let all = env_of(&[("OFFSITE_PASSWORD_COMMAND", "echo x"), ("OFFSITE_PASSWORD", "p")]);
        let g = global(&["--password-file", "/f", "--key-file", "/k"]);
        assert!(matches!(resolve_with(&g, &all).password, Source::File(_)));
        let g = global(&["--key-file", "/k"]);
        assert!(matches!(resolve_with(&g, &all).password, Source::Command(_)));
        let only_pw = env_of(&[("OFFSITE_PASSWORD", "p")]);
        assert!(matches!(resolve_with(&g, &only_pw).password, Source::Env(..)));
        assert!(matches!(resolve_with(&g, &env_of(&[])).password, Source::KeyFile(_)));
        assert!(matches!(resolve_with(&global(&[]), &env_of(&[])).password, Source::Prompt));
    }

    #[test]
    fn the_fast_kdf_needs_its_confirmation() {
        let none = env_of(&[]);
        let kdf = |args: &[&str]| resolve_with(&global(args), &none).insecure_fast_kdf;
        assert_eq!(kdf(&[]), FastKdf::Off);
        assert_eq!(kdf(&["--insecure-fast-kdf", ""]), FastKdf::Off);
        assert_eq!(kdf(&["--insecure-fast-kdf", FAST_KDF_CONFIRMATION]), FastKdf::Confirmed);
        assert_eq!(kdf(&["--insecure-fast-kdf", "1"]), FastKdf::Unconfirmed);
        let inv = resolve_with(&global(&["--insecure-fast-kdf", "yes"]), &none);
        let e = inv.kdf().expect_err("unconfirmed");
        assert!(e.to_string().contains(FAST_KDF_CONFIRMATION), "{e}");
    }

    #[test]
    fn cache_setting() {
        let none = env_of(&[]);
        assert!(matches!(resolve_with(&global(&["--no-cache"]), &none).cache, CacheSetting::Disabled));
        assert!(matches!(resolve_with(&global(&["--cache-dir", "/c"]), &none).cache, CacheSetting::Dir(_)));
    }

    #[test]
    fn connections_set_remote_concurrency_and_local_transfers() {
        let none = env_of(&[]);
        let inv = resolve_with(&global(&["--connections", "7", "--repo", "/srv/r"]), &none);
        assert_eq!(inv.remote.as_ref().expect("valid").concurrency, 7);
        assert_eq!(open_storage(&inv).expect("local").transfers(), 7);
        let inv = resolve_with(&global(&["--repo", "/srv/r"]), &none);
        assert_eq!(inv.remote.as_ref().expect("valid").concurrency, RemoteOptions::default().concurrency);
        assert_eq!(open_storage(&inv).expect("local").transfers(), offsite_backend::DEFAULT_LOCAL_TRANSFERS);
        let mut v = vec!["offsite", "--connections", "0", "init"];
        assert!(crate::args::Cli::try_parse_from(&v).is_err(), "0 connections accepted");
        v[2] = "257";
        assert!(crate::args::Cli::try_parse_from(&v).is_err(), "257 connections accepted");
    }

    #[test]
    fn cacert_reaches_the_remote_options() {
        let none = env_of(&[]);
        let inv = resolve_with(&global(&["--cacert", "/etc/offsite/ca.pem"]), &none);
        let remote = inv.remote.expect("valid");
        assert_eq!(remote.ca_cert.as_deref(), Some(std::path::Path::new("/etc/offsite/ca.pem")));
        assert_eq!(resolve_with(&global(&[]), &none).remote.expect("valid").ca_cert, None);
    }

    #[test]
    fn locations() {
        assert_eq!(parse_location("/srv/r").expect("local"), Location::Local("/srv/r".into()));
        assert_eq!(parse_location("rel/dir").expect("local"), Location::Local("rel/dir".into()));
        assert_eq!(parse_location("file:///srv/r").expect("local"), Location::Local("/srv/r".into()));
        assert_eq!(parse_location("sftp://u@h/p").expect("known"), Location::Sftp("sftp://u@h/p".into()));
        assert_eq!(parse_location("rest:https://h/p").expect("known"), Location::Rest("https://h/p".into()));
        assert_eq!(parse_location("rclone:r:p").expect("known"), Location::Rclone("r:p".into()));
        assert_eq!(parse_location("s3://b/p").expect("known"), Location::S3("s3://b/p".into()));
        let e = parse_location("xyz://host/path").expect_err("unknown");
        assert!(e.to_string().contains("unknown repository URL scheme"), "{e}");
    }
}
