//! The second stage of argument handling: global flags plus environment variables become one
//! [`Invocation`] that every command reads. No command looks at the environment itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use offsite_backend::{LocalStorage, Storage};
use offsite_crypto::KdfParams;
use offsite_repo::CacheSetting;
use zeroize::Zeroizing;

use crate::args::GlobalArgs;
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
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Test-only cheap key derivation for new keys.
    pub insecure_fast_kdf: bool,
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
        threads: g.threads.unwrap_or(0),
        insecure_fast_kdf: g.insecure_fast_kdf,
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

    /// Key derivation parameters for new key files.
    pub fn kdf(&self) -> KdfParams {
        if self.insecure_fast_kdf {
            KdfParams::for_tests()
        } else {
            KdfParams::new_default()
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
    /// A backend that is planned but not built yet (`sftp://`, `s3://`, `rest:`, `rclone:`).
    Unsupported(&'static str),
}

/// Classify a repository location string.
pub fn parse_location(location: &str) -> Result<Location> {
    for (prefix, name) in [("sftp://", "sftp"), ("s3://", "s3"), ("rest:", "rest"), ("rclone:", "rclone")] {
        if location.starts_with(prefix) {
            return Ok(Location::Unsupported(name));
        }
    }
    if let Some(local) = location.strip_prefix("file://") {
        return Ok(Location::Local(PathBuf::from(local)));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        let looks_like_scheme = !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if looks_like_scheme {
            bail!(
                "unknown repository URL scheme {scheme:?} in {location}: use a local path (sftp://, s3://, rest: and rclone: come later)"
            );
        }
    }
    Ok(Location::Local(PathBuf::from(location)))
}

/// Open the storage a repository location names. Relative local paths are made absolute so
/// messages name the directory unambiguously.
pub fn open_storage(location: &str) -> Result<Arc<dyn Storage>> {
    match parse_location(location)? {
        Location::Local(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            Ok(Arc::new(LocalStorage::new(path)))
        }
        Location::Unsupported(name) => {
            bail!("{name} repositories are not supported by this offsite yet: use a local path")
        }
    }
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
    fn cache_setting() {
        let none = env_of(&[]);
        assert!(matches!(resolve_with(&global(&["--no-cache"]), &none).cache, CacheSetting::Disabled));
        assert!(matches!(resolve_with(&global(&["--cache-dir", "/c"]), &none).cache, CacheSetting::Dir(_)));
    }

    #[test]
    fn locations() {
        assert_eq!(parse_location("/srv/r").expect("local"), Location::Local("/srv/r".into()));
        assert_eq!(parse_location("rel/dir").expect("local"), Location::Local("rel/dir".into()));
        assert_eq!(parse_location("file:///srv/r").expect("local"), Location::Local("/srv/r".into()));
        assert_eq!(parse_location("sftp://u@h/p").expect("known"), Location::Unsupported("sftp"));
        assert_eq!(parse_location("rest:https://h/p").expect("known"), Location::Unsupported("rest"));
        let e = parse_location("xyz://host/path").expect_err("unknown");
        assert!(e.to_string().contains("unknown repository URL scheme"), "{e}");
    }
}
