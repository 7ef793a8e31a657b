//! Which snapshot paths a restore selects: gitignore-style include and exclude patterns matched
//! against absolute snapshot paths (`/home/me/src/x.rs`). An excluded directory excludes its
//! subtree; an included directory includes its subtree unless a `!pattern` re-excludes part.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{EngineError, EngineResult};

/// Compiled include and exclude patterns.
pub(crate) struct Filter {
    include: Option<Gitignore>,
    exclude: Option<Gitignore>,
}

fn compile(patterns: &[String], what: &str) -> EngineResult<Option<Gitignore>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GitignoreBuilder::new("/");
    for p in patterns {
        b.add_line(None, p).map_err(|e| EngineError::Usage(format!("bad {what} pattern {p:?}: {e}")))?;
    }
    let g = b.build().map_err(|e| EngineError::Usage(format!("bad {what} patterns: {e}")))?;
    Ok(Some(g))
}

impl Filter {
    /// Compile the patterns; a bad one is a usage error naming it.
    pub(crate) fn new(include: &[String], exclude: &[String]) -> EngineResult<Filter> {
        Ok(Filter { include: compile(include, "include")?, exclude: compile(exclude, "exclude")? })
    }

    /// Whether the snapshot root itself counts as included (true when there is no include).
    pub(crate) fn root_included(&self) -> bool {
        self.include.is_none()
    }

    /// Whether `path` is excluded (its subtree is then not walked at all).
    pub(crate) fn excluded(&self, path: &[u8], is_dir: bool) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|g| g.matched(Path::new(OsStr::from_bytes(path)), is_dir).is_ignore())
    }

    /// Whether `path` is included, given whether its parent directory was.
    pub(crate) fn included(&self, path: &[u8], is_dir: bool, parent_included: bool) -> bool {
        match &self.include {
            None => true,
            Some(g) => {
                let m = g.matched(Path::new(OsStr::from_bytes(path)), is_dir);
                if m.is_ignore() {
                    true
                } else if m.is_whitelist() {
                    false
                } else {
                    parent_included
                }
            }
        }
    }
}
