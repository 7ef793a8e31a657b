//! Exclude rules: gitignore-style patterns matched against absolute paths, CACHEDIR.TAG,
//! filesystem boundaries and a size limit.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{EngineError, EngineResult};

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Compiled exclude rules.
#[derive(Debug)]
pub struct Excludes {
    patterns: Gitignore,
    /// skip directories tagged with CACHEDIR.TAG
    pub caches: bool,
    /// skip files larger than this
    pub larger_than: Option<u64>,
}

impl Excludes {
    /// Compile patterns and pattern files (one pattern a line, `#` comments, blank lines ignored).
    pub fn new(
        patterns: &[String],
        files: &[PathBuf],
        caches: bool,
        larger_than: Option<u64>,
    ) -> EngineResult<Self> {
        let mut b = GitignoreBuilder::new("/");
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| EngineError::Usage(format!("invalid exclude pattern {p:?}: {e}")))?;
        }
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| EngineError::io(f, e))?;
            for line in text.lines() {
                let l = line.trim_end();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                b.add_line(Some(f.clone()), l).map_err(|e| {
                    EngineError::Usage(format!("invalid exclude pattern {l:?} in {}: {e}", f.display()))
                })?;
            }
        }
        let patterns = b.build().map_err(|e| EngineError::Usage(format!("invalid exclude patterns: {e}")))?;
        Ok(Excludes { patterns, caches, larger_than })
    }

    /// Whether a path is excluded by pattern.
    pub fn excluded(&self, path: &Path, is_dir: bool) -> bool {
        self.patterns.matched(path, is_dir).is_ignore()
    }

    /// Whether a directory is a tagged cache directory (and caches are excluded).
    pub fn is_cache_dir(&self, dir: &Path) -> bool {
        if !self.caches {
            return false;
        }
        let mut buf = [0u8; 43];
        std::fs::File::open(dir.join("CACHEDIR.TAG"))
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
            .is_ok_and(|()| buf == CACHEDIR_SIGNATURE)
    }
}
