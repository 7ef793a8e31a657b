//! Target `exclude`: the backup's exclude rules (`offsite_engine::excludes::Excludes`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use offsite_engine::excludes::Excludes;

/// At most this many patterns and paths are taken from one input (each pattern is also
/// compiled alone, so the cost grows with the count).
const MAX_LINES: usize = 8;

fn compile(patterns: &[String]) -> Option<Excludes> {
    Excludes::new(patterns, &[], false, None).ok()
}

/// Whether `p` is an absolute path in normal form: `/` then one or more components separated
/// by single slashes, none of them `.` or `..`, and no trailing slash.
fn normal_absolute(p: &[u8]) -> bool {
    let Some(rest) = p.strip_prefix(b"/") else { return false };
    rest.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Whether `pattern` is a plain absolute path: a [`normal_absolute`] path without glob or escape
/// characters (`*?[]{}\`) and without trailing whitespace (which gitignore syntax strips).
fn plain(pattern: &str) -> bool {
    normal_absolute(pattern.as_bytes())
        && !pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
        && !pattern.ends_with(char::is_whitespace)
}

/// Target `exclude`: the input is split into lines. Lines before the first empty line are
/// exclude patterns (UTF-8, lossily; at most 8), the lines after it are paths (any bytes; at
/// most 8). `Excludes::new` must not panic; an invalid pattern must make it fail, alone and in
/// any set. Every path is matched (as a file and as a directory) against the whole set.
///
/// A pattern that is a plain absolute path (no glob characters, normal form, see [`plain`])
/// must compile and, alone, exclude exactly that path among the normal-form absolute paths
/// (itself and the input's paths); with the whole set, it stays excluded unless some pattern
/// is a negation (`!...`).
pub fn exclude(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let pattern_lines: Vec<&[u8]> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    let patterns: Vec<String> =
        pattern_lines.iter().take(MAX_LINES).map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let paths: Vec<&Path> = lines.take(MAX_LINES).map(|l| Path::new(OsStr::from_bytes(l))).collect();

    let all = compile(&patterns);
    let negation = patterns.iter().any(|p| p.starts_with('!'));
    for p in &patterns {
        let Some(alone) = compile(std::slice::from_ref(p)) else {
            assert!(!plain(p), "plain pattern {p:?} is rejected");
            assert!(all.is_none(), "pattern {p:?} is invalid alone but accepted in a set");
            continue;
        };
        if !plain(p) {
            continue;
        }
        let own = Path::new(p.as_str());
        for is_dir in [false, true] {
            assert!(alone.excluded(own, is_dir), "plain pattern {p:?} does not exclude its own path");
            if let (Some(all), false) = (&all, negation) {
                assert!(all.excluded(own, is_dir), "plain pattern {p:?} does not exclude its path in a set");
            }
            for q in &paths {
                let qb = q.as_os_str().as_bytes();
                if normal_absolute(qb) {
                    let same = qb == p.as_bytes();
                    assert_eq!(alone.excluded(q, is_dir), same, "plain pattern {p:?} against path {q:?}");
                }
            }
        }
    }
    if let Some(all) = &all {
        for q in &paths {
            for is_dir in [false, true] {
                let _ = all.excluded(q, is_dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_patterns() {
        assert!(plain("/home/u/x.txt"));
        assert!(plain("/a b/c"));
        for p in ["/", "a/b", "/a//b", "/a/./b", "/a/../b", "/a/", "/a*", "/a ", "/[a]", "/a\\b", "/{a,b}"] {
            assert!(!plain(p), "{p:?}");
        }
    }
}
