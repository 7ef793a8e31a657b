//! What the storage learns. A canary scan: 10,000 random markers placed in file contents,
//! file, directory and symlink-target names, xattr names and values, the host, user and tag
//! names of the snapshot; every byte written to storage is searched for every marker, raw, as
//! the base64 names trees use, and inside any zstd frame (none may appear), while the
//! decrypted repository holds all of them (so the scan would catch a leak). A size check: no
//! object written and no range read is as long as one blob it contains, so the storage never
//! learns a blob's (a chunk's, a small file's) length.
//!
//! The storage here is a real [`LocalStorage`] behind a recording layer defined below.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use offsite_backend::{LocalStorage, ObjectKind, Storage, StorageResult};
use offsite_engine::{
    backup, check, dump, ls, restore, BackupOptions, CheckOptions, NullReporter, ReadData, RestoreOptions,
};
use offsite_format::{BlobId, ContentItem, NodeKind};
use offsite_repo::{BlobReader, CacheSetting, Index, InitOptions, Repository};
use parking_lot::Mutex;

/// One storage call the recorder saw.
#[derive(Clone, Debug)]
enum Call {
    /// a write of this many bytes
    Write { kind: ObjectKind, id: String, len: u64 },
    /// a read, whole (`range` None) or of `(offset, length)`
    Read { kind: ObjectKind, id: String, range: Option<(u64, u64)> },
}

/// Passes every call to the wrapped storage and records writes (with their bytes) and reads.
#[derive(Debug)]
struct Recorder {
    inner: Arc<dyn Storage>,
    calls: Mutex<Vec<Call>>,
    written: Mutex<Vec<u8>>,
}

impl Recorder {
    fn new(inner: Arc<dyn Storage>) -> Recorder {
        Recorder { inner, calls: Mutex::new(Vec::new()), written: Mutex::new(Vec::new()) }
    }
}

impl Storage for Recorder {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> StorageResult<()> {
        self.inner.create()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        self.calls.lock().push(Call::Read { kind, id: id.to_string(), range });
        self.inner.read(kind, id, range)
    }
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.calls.lock().push(Call::Write { kind, id: id.to_string(), len: data.len() as u64 });
        let mut w = self.written.lock();
        w.extend_from_slice(data);
        // A separator no marker can span.
        w.push(0);
        drop(w);
        self.inner.write(kind, id, data)
    }
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        self.inner.delete(kind, id)
    }
    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.inner.stat(kind, id)
    }
}

struct Env {
    dir: tempfile::TempDir,
    rec: Arc<Recorder>,
}

impl Env {
    fn new(pack_size: u32) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let rec = Arc::new(Recorder::new(local));
        let storage: Arc<dyn Storage> = rec.clone();
        let opts =
            InitOptions { kdf: offsite_crypto::KdfParams::for_tests(), pack_size, ..Default::default() };
        Repository::init(storage, b"pw", &opts, &CacheSetting::Disabled).unwrap();
        std::fs::create_dir_all(dir.path().join("tree/src")).unwrap();
        Env { dir, rec }
    }
    fn src(&self) -> PathBuf {
        self.dir.path().join("tree/src")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn repo(&self) -> Arc<Repository> {
        let storage: Arc<dyn Storage> = self.rec.clone();
        Arc::new(Repository::open(storage, b"pw", &CacheSetting::Dir(self.cache())).unwrap())
    }
    fn reader(&self) -> BlobReader {
        let repo = self.repo();
        let index = Index::load(&**repo.storage(), repo.keys()).unwrap();
        BlobReader::new(repo, Arc::new(index)).unwrap()
    }
}

/// xorshift64*: a seeded generator, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 32) as u8).collect()
    }
}

const MARKER_LEN: usize = 16;
const ALNUM: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn marker(rng: &mut Rng) -> String {
    (0..MARKER_LEN).map(|_| ALNUM[rng.below(36) as usize] as char).collect()
}

/// The markers of `set` that occur in `haystack`. Markers are fixed-length strings over a
/// known alphabet, so one window slides over the bytes, skipping past any byte that cannot
/// be in a marker.
fn find_markers<const N: usize>(
    set: &HashSet<[u8; N]>,
    alphabet: fn(u8) -> bool,
    haystack: &[u8],
    found: &mut HashSet<[u8; N]>,
) {
    let mut i = 0;
    while i + N <= haystack.len() {
        match (0..N).rev().find(|&k| !alphabet(haystack[i + k])) {
            Some(k) => i += k + 1,
            None => {
                let w: [u8; N] = haystack[i..i + N].try_into().unwrap();
                if set.contains(&w) {
                    found.insert(w);
                }
                i += 1;
            }
        }
    }
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// A name as trees store it (FORMAT.md §8: base64), so a tree leaked unencrypted is caught
/// too: 16 bytes are 24 base64 characters.
fn as_stored_name(m: &str) -> [u8; 24] {
    let json = serde_json::to_vec(&offsite_format::RawBytes(m.as_bytes().to_vec())).unwrap();
    json[1..json.len() - 1].try_into().unwrap()
}

fn as_key(m: &str) -> [u8; MARKER_LEN] {
    m.as_bytes().try_into().unwrap()
}

/// Markers found by a [`Scanner`]: raw ones, and names in their base64 (tree) form.
#[derive(Default)]
struct Hits {
    raw: HashSet<[u8; MARKER_LEN]>,
    base64: HashSet<[u8; 24]>,
}

/// Searches bytes for every marker, raw and (names) base64-encoded, in the bytes as they are
/// and inside every zstd frame found in them: zstd codes literals with Huffman tables, so
/// plaintext that was compressed but not encrypted would hide its markers from a plain grep.
struct Scanner {
    raw: HashSet<[u8; MARKER_LEN]>,
    base64: HashSet<[u8; 24]>,
}

impl Scanner {
    fn scan(&self, bytes: &[u8], hits: &mut Hits) {
        self.scan_plain(bytes, hits);
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        for (i, w) in bytes.windows(4).enumerate() {
            if w == ZSTD_MAGIC {
                if let Some(frame) = decode_frame(&bytes[i..]) {
                    self.scan_plain(&frame, hits);
                }
            }
        }
    }

    fn scan_plain(&self, bytes: &[u8], hits: &mut Hits) {
        find_markers(&self.raw, alnum, bytes, &mut hits.raw);
        find_markers(&self.base64, base64_char, bytes, &mut hits.base64);
    }
}

/// The zstd frame at the start of `bytes`, decoded (at most 256 MiB), if it is one.
fn decode_frame(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let decoder = zstd::stream::read::Decoder::with_buffer(bytes).ok()?.single_frame();
    decoder.take(256 << 20).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// What the source holds, read back from the file system: names, contents, xattrs and
/// symlink targets, one after another.
fn source_bytes(dir: &Path, out: &mut Vec<u8>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        out.extend_from_slice(e.file_name().as_bytes());
        out.push(0);
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            out.extend_from_slice(std::fs::read_link(&path).unwrap().as_os_str().as_bytes());
            out.push(0);
            continue;
        }
        for name in xattr::list(&path).unwrap() {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(&xattr::get(&path, &name).unwrap().unwrap_or_default());
            out.push(0);
        }
        if ft.is_dir() {
            source_bytes(&path, out);
        } else {
            out.extend_from_slice(&std::fs::read(&path).unwrap());
            out.push(0);
        }
    }
}

#[test]
fn canary_markers_never_reach_the_storage() {
    const MARKERS: usize = 10_000;
    let started = Instant::now();
    let env = Env::new(8 * 1024 * 1024);
    let mut rng = Rng(0x0ff5_17e5_ca4a_4121);
    let markers: Vec<String> = (0..MARKERS).map(|_| marker(&mut rng)).collect();
    let set: HashSet<[u8; MARKER_LEN]> = markers.iter().map(|m| as_key(m)).collect();
    assert_eq!(set.len(), MARKERS, "markers are distinct");
    let mut next = markers.iter();
    let mut take = || next.next().unwrap().clone();

    // 500 directories named by markers, 4 files in each named by markers, each file holding
    // 2 markers in compressible text; 1,200 files carry an xattr whose name and value are
    // markers; 1,088 symlinks point at marker names.
    let (dirs, per_dir) = (500, 4);
    let mut n_files = 0;
    let xattrs_ok = {
        let probe = env.src().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let ok = xattr::set(&probe, "user.probe", b"v").is_ok();
        std::fs::remove_file(&probe).unwrap();
        ok
    };
    let mut placed = 0;
    let mut name_markers = Vec::new();
    let mut content_markers = Vec::new();
    for _ in 0..dirs {
        let name = take();
        name_markers.push(name.clone());
        let d = env.src().join(name);
        std::fs::create_dir(&d).unwrap();
        placed += 1;
        for _ in 0..per_dir {
            let name = take();
            name_markers.push(name.clone());
            let f = d.join(name);
            let mut text = String::new();
            for line in 0..40 {
                text.push_str(&format!("line {line}: the same old words, again and again, "));
                if line == 10 || line == 30 {
                    let m = take();
                    content_markers.push(m.clone());
                    text.push_str(&m);
                    placed += 1;
                }
                text.push('\n');
            }
            std::fs::write(&f, text).unwrap();
            placed += 1;
            if n_files < 1200 && xattrs_ok {
                xattr::set(&f, format!("user.{}", take()), take().as_bytes()).unwrap();
                placed += 2;
            }
            n_files += 1;
        }
    }
    for i in 0..1088 {
        let d = env.src().join(format!("links{}", i % 8));
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(format!("../{}", take()), d.join(format!("l{i}"))).unwrap();
        placed += 1;
    }
    let host = take();
    let user = take();
    let tags: Vec<String> = (0..10).map(|_| take()).collect();
    placed += 12;
    if xattrs_ok {
        assert_eq!(placed, MARKERS);
    } else {
        eprintln!("the file system refuses user xattrs: 2,400 markers not placed");
    }

    let opts = BackupOptions {
        paths: vec![env.src()],
        host: Some(host.clone()),
        user: Some(user.clone()),
        tags: tags.clone(),
        ..Default::default()
    };
    let out = backup(env.repo(), &opts, &NullReporter).unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let backed_up = started.elapsed();

    // Control 1: the source really holds every marker placed (read back from the disk).
    let mut source = Vec::new();
    source_bytes(&env.src(), &mut source);
    source.extend_from_slice(format!("{host}\0{user}\0{}", tags.join("\0")).as_bytes());
    let mut found = HashSet::new();
    find_markers(&set, alnum, &source, &mut found);
    assert_eq!(found.len(), placed, "the source holds every placed marker");

    // Control 2: the repository, decrypted, holds every marker: the snapshot record, every
    // data blob, every tree's names, symlink targets and xattrs (decoded). So the backup kept
    // them all, and a leak would be found below. The trees as stored (JSON) hold every whole
    // name in its base64 form.
    let reader = env.reader();
    let set_snap = env.repo().snapshot_set().unwrap();
    let mut plain = serde_json::to_vec(&set_snap.snapshots[0].1).unwrap();
    let mut tree_json = Vec::new();
    for (id, loc) in reader.index().blobs() {
        let bytes = reader.read(&id, "canary").unwrap();
        if loc.entry.ty == offsite_format::BlobType::Tree {
            let tree: offsite_format::Tree = serde_json::from_slice(&bytes).unwrap();
            for n in &tree.nodes {
                plain.extend_from_slice(&n.name.0);
                plain.push(0);
                if let Some(t) = &n.target {
                    plain.extend_from_slice(&t.0);
                    plain.push(0);
                }
                for x in &n.xattrs {
                    plain.extend_from_slice(&x.name.0);
                    plain.push(0);
                    plain.extend_from_slice(&x.value.0);
                    plain.push(0);
                }
            }
            tree_json.extend(bytes);
        } else {
            plain.extend(bytes);
        }
        plain.push(0);
    }
    let mut in_repo = HashSet::new();
    find_markers(&set, alnum, &plain, &mut in_repo);
    assert_eq!(in_repo.len(), placed, "the decrypted repository holds every marker");
    let stored_names: HashSet<[u8; 24]> = name_markers.iter().map(|m| as_stored_name(m)).collect();
    let mut b64_found = HashSet::new();
    find_markers(&stored_names, base64_char, &tree_json, &mut b64_found);
    assert_eq!(b64_found.len(), name_markers.len(), "trees hold every name in base64");

    // Control 3: the scan sees through compression: the plaintext above, zstd-compressed
    // as a leak of unencrypted records or blobs would be, shows every marker and name.
    let scanner = Scanner { raw: set.clone(), base64: stored_names.clone() };
    let mut control = Hits::default();
    let leak = zstd::encode_all(&[plain.as_slice(), &tree_json].concat()[..], 3).unwrap();
    scanner.scan(&[b"some ciphertext".as_slice(), &leak, b"more"].concat(), &mut control);
    assert_eq!((control.raw.len(), control.base64.len()), (placed, name_markers.len()));

    // The scan: every byte written through the storage interface, and every file in the
    // repository directory (temporary and stray files included).
    let written = env.rec.written.lock().clone();
    let mut leaked = Hits::default();
    scanner.scan(&written, &mut leaked);
    let mut on_disk = 0u64;
    let repo_files = files(&env.dir.path().join("repo"));
    for f in &repo_files {
        let bytes = std::fs::read(f).unwrap();
        on_disk += bytes.len() as u64;
        scanner.scan(&bytes, &mut leaked);
    }
    assert!(leaked.base64.is_empty(), "{} names reached the storage in base64", leaked.base64.len());
    let raw: Vec<String> = leaked.raw.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    assert!(raw.is_empty(), "{} markers reached the storage, e.g. {:?}", raw.len(), &raw[..raw.len().min(5)]);

    // The local cache is the client's own, on the machine that holds the files: its files
    // cache records paths and xattrs, but never file content nor the snapshot's host, user
    // and tags.
    let mut in_cache = Hits::default();
    for f in files(&env.cache()) {
        scanner.scan(&std::fs::read(&f).unwrap(), &mut in_cache);
    }
    let in_cache = in_cache.raw;
    let never: Vec<&String> = content_markers
        .iter()
        .chain([&host, &user])
        .chain(&tags)
        .filter(|m| in_cache.contains(&as_key(m)))
        .collect();
    assert!(never.is_empty(), "the local cache holds content, host, user or tag markers: {never:?}");

    eprintln!(
        "canary: {placed} markers; scanned {} bytes written in {} objects ({} files, {on_disk} bytes on disk); \
         {} bytes of plaintext hold all markers; {} path and xattr markers in the local cache (none of content, host, user, tags); backup {backed_up:?}, \
         total {:?}",
        written.len(),
        env.rec.calls.lock().iter().filter(|c| matches!(c, Call::Write { .. })).count(),
        repo_files.len(),
        plain.len(),
        in_cache.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------- sizes

/// Every blob's extent in its pack: pack id -> [(offset, stored length)].
fn extents(index: &Index) -> HashMap<String, Vec<(u64, u64)>> {
    let mut out: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    for (_, loc) in index.blobs() {
        out.entry(index.pack(loc.pack).id.to_hex())
            .or_default()
            .push((u64::from(loc.entry.offset), u64::from(loc.entry.length)));
    }
    out
}

#[test]
fn no_object_or_range_the_storage_sees_is_as_long_as_one_blob() {
    let started = Instant::now();
    // Small packs, so there are many of them and many ranges between them.
    let env = Env::new(1024 * 1024);
    let mut rng = Rng(0x005e_ed0f_5123);
    // First backup: blobs whose stored length is exactly 17 and 18 read alignments (raw payload
    // of n bytes is n + 1 flag byte + 16 tag bytes), alone in their pack, one at offset 0:
    // an aligned read of exactly the blob would show its length. (Above 64 KiB, so each is a
    // blob of its own, not a slice of a bundle.)
    let aligned = ["aligned-17", "aligned-18"];
    std::fs::write(env.src().join(aligned[0]), rng.bytes(17 * 4096 - 17)).unwrap();
    std::fs::write(env.src().join(aligned[1]), rng.bytes(18 * 4096 - 17)).unwrap();
    let opts = BackupOptions { paths: vec![env.src()], ..Default::default() };
    backup(env.repo(), &opts, &NullReporter).unwrap();
    // Second backup: 150 files from empty to 300 KB, random or text, and three of several
    // chunks (the default chunker cuts between 512 KiB and 8 MiB).
    let mut names = aligned.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for i in 0..150 {
        let len = rng.below(300_000) as usize;
        let bytes = if i % 3 == 0 {
            "some text that compresses well\n".repeat(len / 31 + 1).into_bytes()
        } else {
            rng.bytes(len)
        };
        let name = format!("d{}/f{i}", i % 7);
        std::fs::create_dir_all(env.src().join(format!("d{}", i % 7))).unwrap();
        std::fs::write(env.src().join(&name), bytes).unwrap();
        names.push(name);
    }
    for (i, len) in [2_500_000usize, 3_100_000, 1_700_000].into_iter().enumerate() {
        let name = format!("big{i}");
        std::fs::write(env.src().join(&name), rng.bytes(len)).unwrap();
        names.push(name);
    }
    let out = backup(env.repo(), &opts, &NullReporter).unwrap();
    assert!(out.errors.is_empty());

    // Read it every way: a full restore, restores of single files, check --read-data, dump
    // of every file, ls.
    let reader = env.reader();
    let snap = out.snapshot;
    let target = env.dir.path().join("restored");
    restore(&reader, &snap, &RestoreOptions { target: target.clone(), ..Default::default() }, &NullReporter)
        .unwrap();
    for name in names.iter().take(20) {
        let t = env.dir.path().join(format!("single-{}", name.replace('/', "-")));
        let include = vec![format!("**/src/{name}")];
        let s = restore(
            &reader,
            &snap,
            &RestoreOptions { target: t, include, ..Default::default() },
            &NullReporter,
        )
        .unwrap();
        assert_eq!(s.files, 1, "{name}");
    }
    let report = check(env.repo(), &CheckOptions { read_data: ReadData::All }, &NullReporter).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    for name in &names {
        let path = env.src().join(name);
        let mut sink = Vec::new();
        dump(&reader, &snap, path.as_os_str().as_bytes(), &mut sink).unwrap();
        assert!(sink == std::fs::read(&path).unwrap(), "dump of {name}");
    }
    let listed = ls(&reader, &snap, Some(env.src().as_os_str().as_bytes())).unwrap();
    assert!(listed.len() > 150);
    let src_rel = env.src().strip_prefix("/").unwrap().to_path_buf();
    for name in &names {
        assert!(
            std::fs::read(target.join(&src_rel).join(name)).unwrap()
                == std::fs::read(env.src().join(name)).unwrap()
        );
    }

    // The single-blob files really are single blobs of an aligned length.
    let index = reader.index();
    for name in aligned {
        let node =
            offsite_engine::find_node(&reader, &snap, env.src().join(name).as_os_str().as_bytes()).unwrap();
        let ids: Vec<BlobId> = node
            .content
            .unwrap()
            .iter()
            .map(|c| match c {
                ContentItem::Blob(id) => *id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(u64::from(index.get(&ids[0]).unwrap().entry.length) % 4096, 0);
        assert_eq!(node.kind, NodeKind::File);
    }

    let extents = extents(index);
    let lengths: HashSet<u64> = extents.values().flatten().map(|&(_, l)| l).collect();
    let calls = env.rec.calls.lock().clone();
    let (mut ranges, mut writes, mut coincidences) = (0, 0, 0);
    for c in &calls {
        match c {
            Call::Write { kind, id, len } => {
                writes += 1;
                if *kind == ObjectKind::Data {
                    let inside = &extents[id];
                    assert!(
                        inside.iter().all(|&(_, l)| l != *len),
                        "pack {id} of {len} bytes is as long as a blob it holds: {inside:?}"
                    );
                }
                coincidences += u64::from(lengths.contains(len));
            }
            Call::Read { kind: ObjectKind::Data, id, range: Some((off, len)) } => {
                ranges += 1;
                let end = off + len;
                for &(b_off, b_len) in &extents[id] {
                    let inside = b_off >= *off && b_off + b_len <= end;
                    assert!(
                        !(inside && b_len == *len),
                        "read of data/{} at {off}+{len} is exactly the blob at {b_off}+{b_len}",
                        &id[..8]
                    );
                }
                coincidences += u64::from(lengths.contains(len));
            }
            Call::Read { .. } => {}
        }
    }
    assert!(ranges >= 150, "{ranges} range reads");
    eprintln!(
        "sizes: {} blobs in {} packs; {writes} objects written, {ranges} range reads checked; {coincidences} \
         lengths equal to some unrelated blob's (not a leak: that blob is not in the object or range); {:?}",
        index.len(),
        extents.len(),
        started.elapsed()
    );
}

/// What the storage sees of a backup that changes small files, and of reading them back: the
/// size of every object written, and every range read by a restore of the file, a dump of it,
/// `ls` and a check of the structure. `variant` picks the change: 0 one file to 100 bytes,
/// 1 the same file to 30 KB of random bytes, 2 that file and a second one.
/// Sizes the storage saw, by object kind: (objects written, ranges or whole objects read).
type Observed = (Vec<(ObjectKind, u64)>, Vec<(ObjectKind, u64)>);

fn small_change_observed(variant: u8) -> Observed {
    let env = Env::new(8 * 1024 * 1024);
    let mut rng = Rng(0x5a11_f11e + u64::from(variant));
    for i in 0..40 {
        std::fs::create_dir_all(env.src().join("docs")).unwrap();
        std::fs::write(env.src().join(format!("docs/n{i}.txt")), rng.bytes(2000)).unwrap();
    }
    std::fs::write(env.src().join("big"), rng.bytes(2_000_000)).unwrap();
    let opts = BackupOptions { paths: vec![env.src()], ..Default::default() };
    backup(env.repo(), &opts, &NullReporter).unwrap();
    // The same starting point in every variant (same file sizes, same tree shape).
    let changed = env.src().join("docs/n7.txt");
    match variant {
        0 => std::fs::write(&changed, rng.bytes(100)).unwrap(),
        1 => std::fs::write(&changed, rng.bytes(30_000)).unwrap(),
        _ => {
            std::fs::write(&changed, rng.bytes(100)).unwrap();
            std::fs::write(env.src().join("docs/n8.txt"), rng.bytes(5000)).unwrap();
        }
    }
    let mark = env.rec.calls.lock().len();
    let out = backup(env.repo(), &opts, &NullReporter).unwrap();
    let reader = env.reader();
    let target = env.dir.path().join("one");
    let include = vec!["**/docs/n7.txt".to_string()];
    restore(&reader, &out.snapshot, &RestoreOptions { target, include, ..Default::default() }, &NullReporter)
        .unwrap();
    let mut sink = Vec::new();
    dump(&reader, &out.snapshot, changed.as_os_str().as_bytes(), &mut sink).unwrap();
    assert_eq!(sink, std::fs::read(&changed).unwrap());
    ls(&reader, &out.snapshot, Some(env.src().as_os_str().as_bytes())).unwrap();
    let report = check(env.repo(), &CheckOptions::default(), &NullReporter).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    // Key files are left out: written once by init, their size shows only the digits of their
    // creation time.
    let calls: Vec<Call> = env.rec.calls.lock()[mark..]
        .iter()
        .filter(|c| {
            !matches!(c, Call::Write { kind: ObjectKind::Key, .. } | Call::Read { kind: ObjectKind::Key, .. })
        })
        .cloned()
        .collect();
    let mut written = Vec::new();
    let mut read = Vec::new();
    for c in calls {
        match c {
            Call::Write { kind, len, .. } => written.push((kind, len)),
            Call::Read { kind, range: Some((_, len)), .. } => read.push((kind, len)),
            Call::Read { kind, id, range: None } => {
                let len = env.rec.inner.stat(kind, &id).unwrap();
                read.push((kind, len));
            }
        }
    }
    written.sort_by_key(|(k, l)| (k.dir_name(), *l));
    read.sort_by_key(|(k, l)| (k.dir_name(), *l));
    (written, read)
}

#[test]
fn a_backup_that_changes_one_small_file_shows_neither_its_length_nor_a_blob_count() {
    let base = small_change_observed(0);
    assert!(!base.0.is_empty() && !base.1.is_empty(), "{base:?}");
    // 100 bytes or 30 KB: the same objects of the same sizes, the same reads.
    let longer = small_change_observed(1);
    assert_eq!(base.0, longer.0, "object sizes reveal the changed file's length");
    assert_eq!(base.1, longer.1, "read ranges reveal the changed file's length");
    // One changed file or two: the same again.
    let two = small_change_observed(2);
    assert_eq!(base.0, two.0, "object sizes reveal how many files changed");
    assert_eq!(base.1, two.1, "read ranges reveal how many files changed");
    eprintln!("written {:?}; read {:?}", base.0, base.1);
}
