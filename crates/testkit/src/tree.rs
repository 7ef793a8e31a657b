//! Source trees for whole-system tests: [`generate`] builds a deterministic tree holding every
//! kind of entry and metadata offsite records, [`mutate`] changes it the way a day of work does,
//! and [`compare`] checks a restored tree against the original, field by field.
//!
//! Everything is a pure function of a seed, so a test that fails can regenerate the exact tree
//! it ran on, and a test that keeps many snapshots can rebuild any expected tree on demand
//! instead of copying it.
//!
//! ```no_run
//! use offsite_testkit::tree::{compare, generate, mutate, Spec};
//! # let (src, restored) = (std::path::Path::new("/tmp/src"), std::path::Path::new("/tmp/out"));
//! generate(src, &Spec { seed: 7, ..Spec::default() }).unwrap();
//! mutate(src, 1).unwrap();
//! // ... back up `src`, restore it to `restored` ...
//! compare(src, restored).unwrap();
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`generate`] builds.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Everything (names, sizes, contents, times) follows from this seed.
    pub seed: u64,
    /// Small text files (100 B to 8 KiB), spread over nested directories.
    pub files: usize,
    /// Big files, alternately compressible text and incompressible noise.
    pub big_files: usize,
    /// Size of each big file in bytes.
    pub big_size: usize,
    /// Add the edge cases: empty file and directory, non-UTF-8 names, a name holding every byte
    /// 0x01-0xFF but `/`, a path of ~3,000 bytes, hard links across directories, a sparse file,
    /// symlinks (relative, dangling, non-UTF-8 target), a FIFO, a device node (root only),
    /// setuid/setgid/sticky modes, user xattrs (where the filesystem has them), odd mtimes.
    pub edge_cases: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { seed: 1, files: 200, big_files: 2, big_size: 2 << 20, edge_cases: true }
    }
}

/// A small, fast, seeded generator (SplitMix64): deterministic across platforms and runs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` incompressible bytes that follow from `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

const WORDS: &[&str] = &[
    "backup",
    "offsite",
    "restore",
    "the",
    "of",
    "and",
    "a",
    "repository",
    "snapshot",
    "chunk",
    "pack",
    "index",
    "tree",
    "key",
    "encrypted",
    "storage",
    "file",
    "directory",
    "to",
    "in",
    "is",
    "that",
    "remote",
    "local",
    "data",
    "never",
    "lost",
    "every",
    "byte",
    "checked",
    "fn",
    "let",
    "mut",
    "impl",
];

/// `len` bytes of compressible, text-like content that follow from `seed`.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let w = WORDS[rng.range(0, WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if rng.range(0, 12) == 0 { b'\n' } else { b' ' });
        if rng.range(0, 40) == 0 {
            out.extend_from_slice(format!("{} ", rng.next_u64()).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn small_file_path(i: usize) -> PathBuf {
    PathBuf::from(format!("d{:02}/s{}/file-{i:05}.txt", i % 16, (i / 16) % 4))
}

fn big_file_path(i: usize) -> PathBuf {
    PathBuf::from(format!("big/big-{i}.{}", if i % 2 == 0 { "txt" } else { "bin" }))
}

/// The name holding every byte 0x01-0xFF but `/` (254 bytes, within NAME_MAX).
pub fn every_byte_name() -> OsString {
    let bytes: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').collect();
    OsStr::from_bytes(&bytes).to_os_string()
}

/// Whether `dir`'s filesystem takes `user.*` extended attributes.
pub fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    if fs::write(&probe, b"").is_err() {
        return false;
    }
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    let _ = fs::remove_file(&probe);
    ok
}

/// Whether the tests run as root (device nodes and foreign owners need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Build the tree `spec` describes under `root` (created if missing; existing entries with the
/// same names are replaced). Deterministic: the same spec gives the same names, contents,
/// modes and times.
pub fn generate(root: &Path, spec: &Spec) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let mut rng = Rng::new(spec.seed);
    for i in 0..spec.files {
        let p = root.join(small_file_path(i));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        let len = rng.range(100, 8192) as usize;
        fs::write(&p, text(spec.seed.wrapping_mul(1_000_003) ^ i as u64, len))?;
    }
    if spec.big_files > 0 {
        fs::create_dir_all(root.join("big"))?;
    }
    for i in 0..spec.big_files {
        let seed = spec.seed.wrapping_mul(7919) ^ (i as u64 + 1) << 32;
        let body = if i % 2 == 0 { text(seed, spec.big_size) } else { pseudo_random(seed, spec.big_size) };
        fs::write(root.join(big_file_path(i)), body)?;
    }
    if spec.edge_cases {
        edge_cases(root, spec.seed)?;
    }
    // Times last, deepest first, so creating children does not disturb them.
    let mut all = listing(root)?;
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &all {
        let s = 1_600_000_000 + rng.range(0, 100_000_000) as i64;
        let ns = rng.range(0, 1_000_000_000) as u32;
        set_mtime(&root.join(p), s, ns)?;
    }
    set_mtime(root, 1_650_000_000, 999_999_999)
}

fn set_mtime(p: &Path, s: i64, ns: u32) -> io::Result<()> {
    let t = filetime::FileTime::from_unix_time(s, ns);
    filetime::set_symlink_file_times(p, t, t)
}

fn edge_cases(root: &Path, seed: u64) -> io::Result<()> {
    use std::os::unix::fs::symlink;
    let e = root.join("edge");
    if e.exists() {
        fs::remove_dir_all(&e)?;
    }
    fs::create_dir_all(e.join("empty-dir"))?;
    fs::create_dir_all(e.join("links"))?;
    fs::write(e.join("empty-file"), b"")?;
    fs::write(e.join(OsStr::from_bytes(b"caf\xe9-latin1-\xff\xfe.txt")), b"not UTF-8")?;
    fs::write(e.join(every_byte_name()), b"every byte but / and NUL in my name")?;
    // A path of ~3,000 bytes below the root: 14 levels of 200-byte names.
    let mut deep = e.join("deep");
    for level in 0..14u8 {
        deep.push(OsStr::from_bytes(&[b'a' + level; 200]));
    }
    fs::create_dir_all(&deep)?;
    fs::write(deep.join("leaf"), text(seed ^ 0xdee9, 3000))?;
    // Hard links across directories: a group of three names.
    fs::write(e.join("links/original"), pseudo_random(seed ^ 0x11, 30_000))?;
    fs::hard_link(e.join("links/original"), e.join("links/second"))?;
    fs::hard_link(e.join("links/original"), e.join("hardlink-third"))?;
    // A sparse file: hole, data, hole, data, trailing hole (64 MiB apparent, 2 extents).
    let sparse = fs::File::create(e.join("sparse.img"))?;
    sparse.set_len(64 << 20)?;
    sparse.write_all_at(&pseudo_random(seed ^ 0x5a, 100_000), 8 << 20)?;
    sparse.write_all_at(&text(seed ^ 0x5b, 50_000), 40 << 20)?;
    drop(sparse);
    symlink("links/original", e.join("rel-link"))?;
    symlink(OsStr::from_bytes(b"/nowhere/\xfe\xff"), e.join("dangling"))?;
    nix::unistd::mkfifo(&e.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o620))?;
    if is_root() {
        // A character device (same numbers as /dev/null); stored as metadata, never opened.
        nix::sys::stat::mknod(
            &e.join("chardev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        )?;
    }
    fs::write(e.join("setuid"), b"#!/bin/true\n")?;
    fs::create_dir_all(e.join("setgid-dir"))?;
    fs::create_dir_all(e.join("sticky-dir"))?;
    for (p, m) in
        [("setuid", 0o4755), ("setgid-dir", 0o2770), ("sticky-dir", 0o1777), ("links/original", 0o600)]
    {
        fs::set_permissions(e.join(p), fs::Permissions::from_mode(m))?;
    }
    if user_xattrs_supported(&e) {
        xattr::set(e.join("links/original"), "user.note", b"\x00binary\xff value")?;
        xattr::set(e.join("empty-dir"), "user.dir", b"on a directory")?;
    }
    Ok(())
}

/// Change the tree the way a day of work does, deterministically from `seed`: rewrite about
/// one small file in ten, append to the first big file, rewrite 64 KiB inside the second, add
/// one new file and delete one small file. Changed files get fresh mtimes.
pub fn mutate(root: &Path, seed: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed ^ 0x6d75_7461_7465);
    let mut small = Vec::new();
    let mut big = Vec::new();
    for p in listing(root)? {
        let s = p.to_string_lossy();
        if s.ends_with(".txt") && s.contains("/file-") {
            small.push(p);
        } else if s.starts_with("big/") {
            big.push(p);
        }
    }
    small.sort();
    big.sort();
    for (k, p) in small.iter().enumerate() {
        if rng.range(0, 10) == 0 {
            let len = rng.range(100, 8192) as usize;
            fs::write(root.join(p), text(seed.wrapping_mul(31) ^ k as u64, len))?;
        }
    }
    if let Some(p) = big.first() {
        let mut f = fs::OpenOptions::new().append(true).open(root.join(p))?;
        io::Write::write_all(&mut f, &text(seed ^ 0xa99e, 100_000))?;
    }
    if let Some(p) = big.get(1) {
        let f = fs::OpenOptions::new().write(true).open(root.join(p))?;
        let len = f.metadata()?.len();
        let at = rng.range(0, len.saturating_sub(65_536));
        f.write_all_at(&pseudo_random(seed ^ 0x3e3e, 65_536.min(len as usize)), at)?;
    }
    fs::write(root.join(format!("new-{seed}.txt")), text(seed ^ 0x4e4e, 5000))?;
    if !small.is_empty() {
        let victim = &small[rng.range(0, small.len() as u64) as usize];
        if root.join(victim).exists() {
            fs::remove_file(root.join(victim))?;
        }
    }
    Ok(())
}

/// Every entry below `root` (not `root` itself), as sorted relative paths; symlinks are not
/// followed.
pub fn listing(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

/// Allocated bytes of a file (st_blocks * 512).
fn allocated(m: &fs::Metadata) -> u64 {
    m.blocks() * 512
}

fn user_xattrs(p: &Path) -> Vec<(OsString, Vec<u8>)> {
    let Ok(names) = xattr::list(p) else { return Vec::new() };
    let mut out: Vec<_> = names
        .filter(|n| n.as_bytes().starts_with(b"user."))
        .map(|n| {
            let v = xattr::get(p, &n).ok().flatten().unwrap_or_default();
            (n, v)
        })
        .collect();
    out.sort();
    out
}

/// Compare the tree at `actual` with the one at `expected`, entry by entry: the same names;
/// for each, type, permission bits (setuid/setgid/sticky included), owner and group, mtime to
/// the nanosecond (directories and symlinks too), user xattrs, symlink target, device numbers,
/// file content; hard-linked names in `expected` are one inode in `actual` and vice versa; a
/// file sparse in `expected` is sparse in `actual` (allocated at most its data plus 1 MiB).
///
/// Returns every difference found (up to 20), one per line, naming the relative path.
pub fn compare(expected: &Path, actual: &Path) -> Result<(), String> {
    let mut diffs = Vec::new();
    let mut add = |d: String| {
        if diffs.len() < 20 {
            diffs.push(d);
        }
    };
    let names_e = listing(expected).map_err(|e| format!("cannot list {}: {e}", expected.display()))?;
    let names_a = listing(actual).map_err(|e| format!("cannot list {}: {e}", actual.display()))?;
    let (set_e, set_a): (HashSet<&PathBuf>, HashSet<&PathBuf>) =
        (names_e.iter().collect(), names_a.iter().collect());
    if names_e != names_a {
        let missing: Vec<_> = names_e.iter().filter(|n| !set_a.contains(n)).take(5).collect();
        let extra: Vec<_> = names_a.iter().filter(|n| !set_e.contains(n)).take(5).collect();
        add(format!("different entries: missing {missing:?}, extra {extra:?}"));
    }
    let mut inode_map: HashMap<u64, u64> = HashMap::new();
    let mut inode_back: HashMap<u64, u64> = HashMap::new();
    let common: Vec<PathBuf> = names_e.iter().filter(|n| set_a.contains(n)).cloned().collect();
    for rel in std::iter::once(PathBuf::new()).chain(common) {
        let (pe, pa) = (expected.join(&rel), actual.join(&rel));
        let what = if rel.as_os_str().is_empty() { ".".to_string() } else { rel.display().to_string() };
        let (me, ma) = match (fs::symlink_metadata(&pe), fs::symlink_metadata(&pa)) {
            (Ok(me), Ok(ma)) => (me, ma),
            (e, a) => {
                add(format!("{what}: cannot stat: {:?} / {:?}", e.err(), a.err()));
                continue;
            }
        };
        if me.file_type() != ma.file_type() {
            add(format!("{what}: type {:?} != {:?}", me.file_type(), ma.file_type()));
            continue;
        }
        if me.mode() != ma.mode() {
            add(format!("{what}: mode {:o} != {:o}", me.mode(), ma.mode()));
        }
        if (me.uid(), me.gid()) != (ma.uid(), ma.gid()) {
            add(format!("{what}: owner {}:{} != {}:{}", me.uid(), me.gid(), ma.uid(), ma.gid()));
        }
        if (me.mtime(), me.mtime_nsec()) != (ma.mtime(), ma.mtime_nsec()) {
            add(format!(
                "{what}: mtime {}.{:09} != {}.{:09}",
                me.mtime(),
                me.mtime_nsec(),
                ma.mtime(),
                ma.mtime_nsec()
            ));
        }
        let ft = me.file_type();
        if ft.is_symlink() {
            if fs::read_link(&pe).ok() != fs::read_link(&pa).ok() {
                add(format!("{what}: symlink target differs"));
            }
            continue;
        }
        if user_xattrs(&pe) != user_xattrs(&pa) {
            add(format!("{what}: xattrs differ"));
        }
        if !ft.is_file() && !ft.is_dir() {
            if me.rdev() != ma.rdev() {
                add(format!("{what}: device {} != {}", me.rdev(), ma.rdev()));
            }
            continue;
        }
        if !ft.is_file() {
            continue;
        }
        if me.nlink() > 1 || ma.nlink() > 1 {
            let fwd = *inode_map.entry(me.ino()).or_insert(ma.ino());
            let back = *inode_back.entry(ma.ino()).or_insert(me.ino());
            if fwd != ma.ino() || back != me.ino() {
                add(format!("{what}: hard-link group differs"));
            }
        }
        if me.len() != ma.len() {
            add(format!("{what}: size {} != {}", me.len(), ma.len()));
            continue;
        }
        match (fs::read(&pe), fs::read(&pa)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => add(format!("{what}: content differs")),
            (e, a) => add(format!("{what}: cannot read: {:?} / {:?}", e.err(), a.err())),
        }
        if allocated(&me) < me.len() / 2 && allocated(&ma) > allocated(&me) + (1 << 20) {
            add(format!(
                "{what}: holes not kept ({} bytes allocated, {} in the original)",
                allocated(&ma),
                allocated(&me)
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generation_is_deterministic_and_compares_equal_to_itself() {
        let t = tempfile::tempdir().unwrap();
        let spec = Spec { seed: 9, files: 40, big_files: 2, big_size: 300_000, edge_cases: true };
        generate(&t.path().join("a"), &spec).unwrap();
        generate(&t.path().join("b"), &spec).unwrap();
        // Hard links differ in inode numbers between a and b, but form the same groups.
        compare(&t.path().join("a"), &t.path().join("b")).unwrap();
        assert!(listing(&t.path().join("a")).unwrap().iter().any(|p| p.as_os_str().len() > 2800));
    }

    #[test]
    fn compare_finds_content_mode_mtime_and_link_differences() {
        let t = tempfile::tempdir().unwrap();
        let spec = Spec { seed: 3, files: 20, big_files: 1, big_size: 10_000, edge_cases: true };
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        generate(&a, &spec).unwrap();
        generate(&b, &spec).unwrap();
        let f = small_file_path(3);
        let m = fs::metadata(b.join(&f)).unwrap();
        let mut body = fs::read(b.join(&f)).unwrap();
        body[0] ^= 1;
        fs::write(b.join(&f), &body).unwrap();
        set_mtime(&b.join(&f), m.mtime(), m.mtime_nsec() as u32).unwrap();
        let err = compare(&a, &b).unwrap_err();
        assert!(err.contains("content differs"), "{err}");

        generate(&b, &spec).unwrap();
        fs::set_permissions(b.join("edge/setuid"), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(compare(&a, &b).unwrap_err().contains("mode"));

        generate(&b, &spec).unwrap();
        fs::set_permissions(b.join("edge/setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
        set_mtime(&b.join("edge/rel-link"), 5, 5).unwrap();
        assert!(compare(&a, &b).unwrap_err().contains("mtime"));

        set_mtime(&b.join("edge/rel-link"), 0, 0).unwrap();
        let (s, ns) = {
            let m = fs::symlink_metadata(a.join("edge/rel-link")).unwrap();
            (m.mtime(), m.mtime_nsec() as u32)
        };
        set_mtime(&b.join("edge/rel-link"), s, ns).unwrap();
        compare(&a, &b).unwrap();
        // Break a hard link: same content, separate inode.
        let second = b.join("edge/links/second");
        let (m, body) = (fs::metadata(&second).unwrap(), fs::read(&second).unwrap());
        fs::remove_file(&second).unwrap();
        fs::write(&second, body).unwrap();
        fs::set_permissions(&second, fs::Permissions::from_mode(m.mode())).unwrap();
        set_mtime(&second, m.mtime(), m.mtime_nsec() as u32).unwrap();
        assert!(compare(&a, &b).unwrap_err().contains("hard-link"));
    }

    #[test]
    fn mutate_changes_the_tree_deterministically() {
        let t = tempfile::tempdir().unwrap();
        let spec = Spec { seed: 5, files: 60, big_files: 2, big_size: 200_000, edge_cases: false };
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        generate(&a, &spec).unwrap();
        generate(&b, &spec).unwrap();
        mutate(&a, 11).unwrap();
        assert!(compare(&b, &a).is_err(), "mutate changed nothing");
        mutate(&b, 11).unwrap();
        // Contents and names agree; mtimes of changed files are "now" in both, so compare them
        // by content only.
        let (la, lb) = (listing(&a).unwrap(), listing(&b).unwrap());
        assert_eq!(la, lb);
        for p in la {
            if a.join(&p).is_file() {
                assert_eq!(fs::read(a.join(&p)).unwrap(), fs::read(b.join(&p)).unwrap(), "{}", p.display());
            }
        }
    }
}
