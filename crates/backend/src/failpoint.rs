//! Named failpoints, for crash-consistency tests: the process aborts at a chosen step so every
//! crash point of a command can be enumerated and replayed.
//!
//! Durable steps call [`hit`] with a site name `<area>.<step>`:
//!
//! | site | crossed |
//! | --- | --- |
//! | `local.temp_synced` | local storage: an object's temp file is written and fsynced, not yet published |
//! | `local.linked` | local storage: the object is published (hard link), its temp name not yet removed |
//! | `local.published` | local storage: the object is published, the directory not yet fsynced |
//! | `local.removed` | local storage: an object is unlinked, the directory not yet fsynced |
//! | `init.layout_created` | `init`: the directories exist, no key or config written yet |
//! | `init.config_written` | `init`: the config is stored (the repository exists from here on) |
//! | `key.written` | a key file is stored (`init`, `key add`, `key passwd`) |
//! | `key.removed` | `key remove`: the key file is deleted |
//! | `key.old_removed` | `key passwd`: the replaced key file is deleted |
//! | `writer.pack_stored` | backup: a pack is stored, not yet in any index checkpoint |
//! | `writer.checkpoint_written` | backup: an index object naming stored packs is stored |
//! | `snapshot.written` | backup: the snapshot is stored, the client's record of seen snapshots not yet updated |
//!
//! Two environment variables, read once per process at the first crossing, drive them:
//!
//! - `OFFSITE_FAILPOINT=<site>:<k>` (k >= 1): at the k-th crossing of `site` the process prints
//!   `offsite: failpoint <site>:<k> reached, aborting` on stderr and calls
//!   [`std::process::abort`] (SIGABRT: no destructors, no buffered output flushed, like a crash).
//!   A malformed value is ignored with one warning on stderr.
//! - `OFFSITE_FAILPOINT_TRACE=<file>`: every crossing appends the site's name as one line to
//!   the file, so a test can list the (site, k) pairs a command crosses.
//!
//! With neither variable set, [`hit`] costs one initialized `OnceLock` load: no lock, no
//! allocation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable naming the failpoint to fire: `<site>:<k>`.
pub const FAILPOINT_VAR: &str = "OFFSITE_FAILPOINT";
/// The variable naming the file every crossing is appended to.
pub const TRACE_VAR: &str = "OFFSITE_FAILPOINT_TRACE";

/// The failpoint to fire: its site, the crossing that fires, the crossings so far.
#[derive(Debug)]
struct Target {
    site: String,
    k: u64,
    crossed: AtomicU64,
}

/// Failpoint settings of this process; absent when neither variable is set.
#[derive(Debug)]
struct Active {
    target: Option<Target>,
    trace: Option<File>,
}

static ACTIVE: OnceLock<Option<Active>> = OnceLock::new();

/// Cross the failpoint `site`: record it in the trace file and abort the process if this is the
/// crossing `OFFSITE_FAILPOINT` names (see the module doc). Does nothing when neither variable
/// is set.
pub fn hit(site: &'static str) {
    if let Some(active) = ACTIVE.get_or_init(Active::from_env) {
        active.cross(site);
    }
}

impl Active {
    fn from_env() -> Option<Active> {
        let spec = std::env::var_os(FAILPOINT_VAR);
        let trace_path = std::env::var_os(TRACE_VAR);
        if spec.is_none() && trace_path.is_none() {
            return None;
        }
        let target = spec.and_then(|raw| {
            let spec = raw.to_string_lossy();
            match parse(&spec) {
                Ok((site, k)) => Some(Target { site, k, crossed: AtomicU64::new(0) }),
                Err(why) => {
                    eprintln!("offsite: warning: ignoring {FAILPOINT_VAR}={spec:?}: {why}");
                    None
                }
            }
        });
        let trace =
            trace_path.and_then(|path| match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!(
                        "offsite: warning: ignoring {TRACE_VAR}: cannot open {}: {e}",
                        std::path::Path::new(&path).display()
                    );
                    None
                }
            });
        Some(Active { target, trace })
    }

    fn cross(&self, site: &'static str) {
        if let Some(mut f) = self.trace.as_ref() {
            // One append per line: lines from concurrent crossings never interleave.
            let _ = f.write_all(format!("{site}\n").as_bytes());
        }
        if let Some(t) = self.target.as_ref().filter(|t| t.site == site) {
            let n = t.crossed.fetch_add(1, Ordering::SeqCst) + 1;
            if n == t.k {
                eprintln!("offsite: failpoint {site}:{n} reached, aborting");
                std::process::abort();
            }
        }
    }
}

/// Parse `<site>:<k>`: a site of lowercase letters, digits, `.`, `_` and `-`, and a crossing
/// number of at least 1.
fn parse(spec: &str) -> Result<(String, u64), String> {
    let Some((site, k)) = spec.rsplit_once(':') else {
        return Err("expected <site>:<k>, e.g. local.published:1".into());
    };
    if site.is_empty() {
        return Err("the site name is empty".into());
    }
    if let Some(c) = site.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(format!("{c:?} cannot be part of a site name"));
    }
    match k.parse::<u64>() {
        Ok(0) => Err("the crossing number counts from 1".into()),
        Ok(k) => Ok((site.to_string(), k)),
        Err(_) => Err(format!("{k:?} is not a crossing number")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_site_and_a_crossing_number_parse() {
        assert_eq!(parse("local.published:1"), Ok(("local.published".to_string(), 1)));
        assert_eq!(parse("writer.pack_stored:17"), Ok(("writer.pack_stored".to_string(), 17)));
        assert_eq!(parse("a-b.c_d9:2"), Ok(("a-b.c_d9".to_string(), 2)));
    }

    #[test]
    fn malformed_specs_are_refused_with_the_reason() {
        let err = |s: &str| parse(s).expect_err(s);
        assert!(err("local.published").contains("expected <site>:<k>"));
        assert!(err(":3").contains("site name is empty"));
        assert!(err("local.published:0").contains("counts from 1"));
        assert!(err("local.published:").contains("is not a crossing number"));
        assert!(err("local.published:-1").contains("is not a crossing number"));
        assert!(err("local.published:x").contains("is not a crossing number"));
        assert!(err("Local.published:1").contains("'L' cannot be part"));
        assert!(err("local published:1").contains("' ' cannot be part"));
        // The last colon separates k: a colon in the site is refused, not split on.
        assert!(err("a:b:1").contains("':' cannot be part"));
    }
}
