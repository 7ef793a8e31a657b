//! Suite 2, corruption: damage to any stored object is detected, the problem names the object
//! (and, for data or tree damage, the snapshots and paths it affects), restore never writes a
//! wrong byte nor leaves a temporary file, nothing panics, and a healthy repository raises no
//! alarm.
//!
//! The repository: four backups of a changing tree (one forgotten, leaving a forget record),
//! so it holds every object class the format has: `config`, two `keys/` (full and
//! backup-only), several `index/` objects, snapshots and a forget record in `snapshots/`, tree
//! packs and data packs. The format has no "head" object: the tips a client last saw live in
//! its local cache (`snapshots-seen`, FORMAT.md §10), and deleting the newest snapshot is
//! caught through them (see `deleted_objects_of_every_class_are_detected`).
//!
//! `every_flipped_byte_is_detected_and_never_restored` flips one byte at a time at seeded
//! random positions spread evenly over the classes (pack flips split between the header and
//! trailer, and the body of blobs and padding). `OFFSITE_FLIPS` sets the count (default 1000),
//! `OFFSITE_SEED` the seed. Each flip checks only what it can affect: config and key flips
//! open the repository afresh; other flips reuse the opened repository and, for packs, the
//! loaded index; only pack flips read data and restore. The full run:
//! `OFFSITE_FLIPS=100000 cargo test --release -p offsite-engine --test corruption --
//! --exact every_flipped_byte_is_detected_and_never_restored --nocapture` (about 5-9 ms a flip
//! on the 2-core machine, so 8-15 minutes).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_crypto::KdfParams;
use offsite_engine::check::AFFECTS_CAP;
use offsite_engine::{
    backup, check, restore, BackupOptions, CheckOptions, CheckReport, CollectReporter, Event, NullReporter,
    ReadData, RestoreOptions,
};
use offsite_format::{
    open_record, seal_record, storage_id, BlobId, BlobType, ContentItem, IndexFile, NodeKind, PackEntry,
    RecordType, Snapshot, SnapshotId, TRAILER_LEN,
};
use offsite_repo::{BlobReader, BlobWriter, CacheSetting, Index, InitOptions, Repository, WriterOptions};

const PW: &[u8] = b"pw";
const PW_BACKUP_ONLY: &[u8] = b"pw for the backup-only key";

/// splitmix64: a seeded, dependency-free generator for positions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..len).map(|_| r.next() as u8).collect()
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = ["offsite ", "backup ", "chunk ", "pack ", "tree ", "blob ", "index ", "snapshot\n"];
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(words[r.below(words.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// The object classes damage is spread over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    Config,
    Key,
    Index,
    Snapshot,
    Forget,
    TreePackHeader,
    TreePackBody,
    DataPackHeader,
    DataPackBody,
}

impl Class {
    const ALL: [Class; 9] = [
        Class::Config,
        Class::Key,
        Class::Index,
        Class::Snapshot,
        Class::Forget,
        Class::TreePackHeader,
        Class::TreePackBody,
        Class::DataPackHeader,
        Class::DataPackBody,
    ];
    fn name(self) -> &'static str {
        match self {
            Class::Config => "config",
            Class::Key => "key",
            Class::Index => "index",
            Class::Snapshot => "snapshot",
            Class::Forget => "forget",
            Class::TreePackHeader => "tree_pack_header",
            Class::TreePackBody => "tree_pack_body",
            Class::DataPackHeader => "data_pack_header",
            Class::DataPackBody => "data_pack_body",
        }
    }
    fn is_pack(self) -> bool {
        matches!(
            self,
            Class::TreePackHeader | Class::TreePackBody | Class::DataPackHeader | Class::DataPackBody
        )
    }
}

/// One stored object.
#[derive(Clone, Debug)]
struct Obj {
    kind: ObjectKind,
    id: String,
    path: PathBuf,
    len: u64,
    /// how problems and errors name it: "config", "keys/1a2b3c4d", "data/…"
    label: String,
    /// classes by region: (class, start, end)
    regions: Vec<(Class, u64, u64)>,
    /// packs: the blobs, from the pack's own header
    entries: Vec<PackEntry>,
}

impl Obj {
    fn class(&self) -> Class {
        self.regions[0].0
    }
}

/// The healthy repository and what it holds.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo_dir: PathBuf,
    cache: PathBuf,
    /// opened once with the full key, no cache (reused where the damage leaves it valid)
    repo: Arc<Repository>,
    index: Arc<Index>,
    snaps: Vec<(SnapshotId, Snapshot)>,
    /// per snapshot: absolute path -> content of every regular file
    expected: HashMap<SnapshotId, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// blob or tree id -> "snapshot X: /path" of every file or directory using it
    users: HashMap<BlobId, Vec<String>>,
    objects: Vec<Obj>,
    forgotten: SnapshotId,
}

fn chmod_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(p) {
        let mut perm = m.permissions();
        perm.set_mode(perm.mode() | 0o200);
        let _ = std::fs::set_permissions(p, perm);
    }
}

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(p) else { return };
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Every regular file under `src`, by absolute path.
fn snapshot_files(src: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut all = Vec::new();
    files_under(src, &mut all);
    all.into_iter()
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| (p.as_os_str().as_bytes().to_vec(), std::fs::read(&p).unwrap()))
        .collect()
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let src = root.join("src");
        let repo_dir = root.join("repo");
        let cache = root.join("cache");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&repo_dir));
        let opts = InitOptions {
            kdf: KdfParams::for_tests(),
            chunker: offsite_format::ChunkerSizes { min: 4096, avg: 16384, max: 65536 },
            pack_size: 64 * 1024,
            ..Default::default()
        };
        let cached = Arc::new(
            Repository::init(storage.clone(), PW, &opts, &CacheSetting::Dir(cache.clone())).unwrap(),
        );
        cached.add_key(PW_BACKUP_ONLY, true, &KdfParams::for_tests()).unwrap();

        // Backup 1: text (compressed), noise (stored raw), duplicates, an empty file, a symlink,
        // a deep directory and a sparse file.
        write(&src.join("docs/a.txt"), &text(1, 40_000));
        write(&src.join("docs/b.txt"), &text(2, 9_000));
        write(&src.join("bin/r1"), &noise(3, 120_000));
        write(&src.join("bin/r2"), &noise(4, 50_000));
        write(&src.join("deep/x/y/z/leaf"), b"leaf content");
        write(&src.join("dup1"), &noise(5, 20_000));
        write(&src.join("dup2"), &noise(5, 20_000));
        write(&src.join("empty"), b"");
        std::os::unix::fs::symlink("docs/a.txt", src.join("link")).unwrap();
        {
            let f = std::fs::File::create(src.join("sparse")).unwrap();
            f.set_len(1 << 20).unwrap();
            f.write_all_at(&noise(6, 5000), 300_000).unwrap();
        }
        let mut expected = HashMap::new();
        let run = |expected: &mut HashMap<SnapshotId, _>| {
            let b = BackupOptions { paths: vec![src.clone()], ..Default::default() };
            let out = backup(cached.clone(), &b, &NullReporter).unwrap();
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            let id = out.id.unwrap();
            expected.insert(id, snapshot_files(&src));
            id
        };
        let s1 = run(&mut expected);
        // Backup 2: an edit in the middle, an append, a new file, a removal.
        let mut r1 = noise(3, 120_000);
        r1[60_000..61_000].copy_from_slice(&noise(7, 1000));
        write(&src.join("bin/r1"), &r1);
        let mut a = text(1, 40_000);
        a.extend_from_slice(&text(8, 3000));
        write(&src.join("docs/a.txt"), &a);
        write(&src.join("docs/c.txt"), &text(9, 7000));
        std::fs::remove_file(src.join("docs/b.txt")).unwrap();
        run(&mut expected);
        // Backup 3: a new directory.
        write(&src.join("new/r3"), &noise(10, 70_000));
        write(&src.join("new/t"), &text(11, 2000));
        run(&mut expected);
        // Forget the first snapshot (record first, then delete, as `forget` does).
        let forget = cached.save_forget_record(vec![s1]).unwrap();
        cached.storage().delete(ObjectKind::Snapshot, &s1.to_hex()).unwrap();
        expected.remove(&s1);
        // Backup 4: a small change.
        write(&src.join("deep/x/y/z/leaf"), b"leaf content, changed");
        run(&mut expected);
        // The client's tips now name every live snapshot.
        cached.snapshot_set().unwrap();

        let repo = Arc::new(Repository::open(storage, PW, &CacheSetting::Disabled).unwrap());
        let index = Arc::new(Index::load(&**repo.storage(), repo.keys()).unwrap());
        let snaps = repo.snapshot_set().unwrap().snapshots;
        assert_eq!(snaps.len(), 3);
        let reader = BlobReader::new(repo.clone(), index.clone()).unwrap();
        let mut users: HashMap<BlobId, Vec<String>> = HashMap::new();
        for (sid, s) in &snaps {
            users.entry(s.tree).or_default().push(format!("snapshot {}: /", sid.short()));
            walk_users(&reader, &s.tree, b"", &sid.short(), &mut users);
        }
        let mut w = World {
            _dir: dir,
            root,
            repo_dir,
            cache,
            repo,
            index,
            snaps,
            expected,
            users,
            objects: Vec::new(),
            forgotten: s1,
        };
        w.objects = w.classify(forget);
        w
    }

    fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(LocalStorage::new(&self.repo_dir))
    }

    /// Every stored object with its class regions.
    fn classify(&self, forget: SnapshotId) -> Vec<Obj> {
        let st = self.repo.storage();
        let mut out = Vec::new();
        let mk = |kind: ObjectKind, id: &str, label: String| {
            let path = self.repo_dir.join(kind.relative_path(id));
            chmod_writable(&path);
            let len = std::fs::metadata(&path).unwrap().len();
            (path, len, label)
        };
        let (path, len, label) = mk(ObjectKind::Config, "", "config".into());
        out.push(Obj {
            kind: ObjectKind::Config,
            id: String::new(),
            path,
            len,
            label,
            regions: vec![(Class::Config, 0, len)],
            entries: vec![],
        });
        for (kind, class) in [(ObjectKind::Key, Class::Key), (ObjectKind::Index, Class::Index)] {
            for (id, _) in st.list(kind).unwrap() {
                let (path, len, label) = mk(kind, &id, format!("{}/{}", kind.dir_name(), &id[..8]));
                out.push(Obj { kind, id, path, len, label, regions: vec![(class, 0, len)], entries: vec![] });
            }
        }
        for (id, _) in st.list(ObjectKind::Snapshot).unwrap() {
            let class = if id == forget.to_hex() { Class::Forget } else { Class::Snapshot };
            let (path, len, label) = mk(ObjectKind::Snapshot, &id, format!("snapshots/{}", &id[..8]));
            out.push(Obj {
                kind: ObjectKind::Snapshot,
                id,
                path,
                len,
                label,
                regions: vec![(class, 0, len)],
                entries: vec![],
            });
        }
        for (id, _) in st.list(ObjectKind::Data).unwrap() {
            let (path, len, label) = mk(ObjectKind::Data, &id, format!("data/{}", &id[..8]));
            let bytes = std::fs::read(&path).unwrap();
            let (eph, entries) = offsite_format::decode_pack(self.repo.keys(), &bytes).unwrap();
            let (hstart, _) = offsite_format::header_range(self.repo.keys(), &bytes).unwrap();
            assert_eq!(eph, self.index.packs().iter().find(|p| p.id.to_hex() == id).unwrap().eph);
            let hstart = hstart as u64;
            let tree = entries[0].ty == BlobType::Tree;
            let (body, header) = if tree {
                (Class::TreePackBody, Class::TreePackHeader)
            } else {
                (Class::DataPackBody, Class::DataPackHeader)
            };
            out.push(Obj {
                kind: ObjectKind::Data,
                id,
                path,
                len,
                label,
                regions: vec![(body, 0, hstart), (header, hstart, len)],
                entries,
            });
        }
        out.sort_by(|a, b| (a.class(), &a.id).cmp(&(b.class(), &b.id)));
        out
    }

    fn objects_of(&self, class: Class) -> Vec<&Obj> {
        self.objects.iter().filter(|o| o.regions.iter().any(|r| r.0 == class)).collect()
    }

    /// "snapshot X: /path" of everything using one of `blobs` that a walk can still name:
    /// nothing under a directory whose own listing is among them.
    fn affected(&self, blobs: &[PackEntry]) -> HashSet<String> {
        let users = |ty: Option<BlobType>| -> Vec<String> {
            blobs
                .iter()
                .filter(|e| ty.is_none_or(|t| e.ty == t))
                .flat_map(|e| self.users.get(&e.id).into_iter().flatten().cloned())
                .collect()
        };
        let lost_dirs: Vec<String> = users(Some(BlobType::Tree))
            .into_iter()
            .map(|d| if d.ends_with('/') { d } else { format!("{d}/") })
            .collect();
        let below = |u: &String| lost_dirs.iter().any(|d| u.starts_with(d.as_str()) && u.len() > d.len());
        users(None).into_iter().filter(|u| !below(u)).collect()
    }
}

/// Record, for every blob and subtree under `tree`, the paths that use it.
fn walk_users(
    reader: &BlobReader,
    tree: &BlobId,
    dir: &[u8],
    snap: &str,
    users: &mut HashMap<BlobId, Vec<String>>,
) {
    for node in reader.tree(tree, "test").unwrap().nodes {
        let mut path = dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(&node.name.0);
        let shown = format!("snapshot {snap}: {}", String::from_utf8_lossy(&path));
        for item in node.content.iter().flatten() {
            // A bundle is used by every file with a slice of it.
            if let ContentItem::Blob(b) | ContentItem::Slice { bundle: b, .. } = item {
                let v = users.entry(*b).or_default();
                if !v.contains(&shown) {
                    v.push(shown.clone());
                }
            }
        }
        if node.kind == NodeKind::Dir {
            let sub = node.subtree.unwrap();
            users.entry(sub).or_default().push(shown.clone());
            walk_users(reader, &sub, &path, snap, users);
        }
    }
}

/// How a piece of damage was noticed.
#[derive(Debug, Default)]
struct Verdict {
    open_error: Option<String>,
    check: Option<CheckReport>,
    check_error: Option<String>,
    restore_failed: bool,
}

impl Verdict {
    fn detected(&self) -> bool {
        self.open_error.is_some()
            || self.check_error.is_some()
            || self.check.as_ref().is_some_and(|r| !r.problems.is_empty())
            || self.restore_failed
    }
}

/// What the damage changed.
struct Damage<'a> {
    obj: &'a Obj,
    /// blobs whose stored bytes changed (their files must fail, never restore wrong bytes)
    hit: Vec<PackEntry>,
    /// blobs the check must report as affected (all of a pack whose size changed)
    marked: Vec<PackEntry>,
    /// whether the object keeps its length (then a restore must not fail for damage outside
    /// every blob)
    same_len: bool,
    what: String,
}

/// Run what the damage can affect, assert the properties, and say whether it was detected.
fn judge(w: &World, d: &Damage, pick: u64) -> Verdict {
    let mut v = Verdict::default();
    let class = d.obj.class();
    let repo = if matches!(class, Class::Config | Class::Key) {
        match Repository::open(w.storage(), PW, &CacheSetting::Disabled) {
            Err(e) => {
                let msg = e.to_string();
                // A flipped version byte reads as a format version this offsite does not know.
                let named =
                    msg.contains(&d.obj.label) || (class == Class::Config && msg.contains("format version"));
                assert!(named, "{}: the error does not name {}: {msg}", d.what, d.obj.label);
                v.open_error = Some(msg);
                return v;
            }
            Ok(r) => Arc::new(r),
        }
    } else {
        w.repo.clone()
    };
    let read_data = if class.is_pack() { ReadData::All } else { ReadData::None };
    match check(repo.clone(), &CheckOptions { read_data }, &NullReporter) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&d.obj.label),
                "{}: check error does not name {}: {msg}",
                d.what,
                d.obj.label
            );
            v.check_error = Some(msg);
        }
        Ok(report) => {
            if !report.problems.is_empty() {
                let p = report.problems.iter().find(|p| p.object == d.obj.label).unwrap_or_else(|| {
                    panic!("{}: no problem names {}: {:#?}", d.what, d.obj.label, report.problems)
                });
                let want = w.affected(&d.marked);
                let got: HashSet<String> =
                    p.affects.iter().filter(|a| !a.starts_with("... and ")).cloned().collect();
                if want.len() <= AFFECTS_CAP {
                    assert_eq!(got, want, "{}: affected paths", d.what);
                } else {
                    assert_eq!(got.len(), AFFECTS_CAP, "{}: affected paths {got:?}", d.what);
                    assert!(got.is_subset(&want), "{}: affected paths {got:?} not in {want:?}", d.what);
                }
            }
            v.check = Some(report);
        }
    }
    if class.is_pack() {
        v.restore_failed = restore_and_verify(w, &repo, d, pick);
    }
    v
}

/// Restore a snapshot (one using a damaged blob, if any) and assert that every file written
/// has exactly the snapshot's bytes and that no temporary file is left. Returns whether the
/// restore reported a failure.
fn restore_and_verify(w: &World, repo: &Arc<Repository>, d: &Damage, pick: u64) -> bool {
    // A snapshot that needs a damaged blob, if one does (blobs only the forgotten snapshot
    // used are damaged without harm to any restore).
    let needs_damaged = d
        .hit
        .iter()
        .flat_map(|e| w.users.get(&e.id).into_iter().flatten())
        .find_map(|u| w.snaps.iter().find(|(s, _)| u.starts_with(&format!("snapshot {}:", s.short()))));
    let (sid, snap) = needs_damaged.unwrap_or(&w.snaps[(pick % w.snaps.len() as u64) as usize]);
    let reader = BlobReader::new(repo.clone(), w.index.clone()).unwrap();
    let target = w.root.join("target");
    let _ = std::fs::remove_dir_all(&target);
    // Two workers: each restore starts a pool, and a flip needs no more.
    let opts = RestoreOptions { target: target.clone(), threads: 2, ..Default::default() };
    let result = restore(&reader, snap, &opts, &NullReporter);
    let failed = match &result {
        Err(_) => true,
        Ok(s) => !s.errors.is_empty(),
    };
    let want = &w.expected[sid];
    let mut got = Vec::new();
    files_under(&target, &mut got);
    let mut restored = 0;
    for f in &got {
        let rel = f.strip_prefix(&target).unwrap();
        let name = rel.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with(offsite_engine::restore::TMP_PREFIX),
            "{}: temporary file left: {rel:?}",
            d.what
        );
        let meta = std::fs::symlink_metadata(f).unwrap();
        if !meta.is_file() {
            continue;
        }
        let abs = Path::new("/").join(rel);
        let expect = want
            .get(abs.as_os_str().as_bytes())
            .unwrap_or_else(|| panic!("{}: unexpected file {abs:?}", d.what));
        assert!(std::fs::read(f).unwrap() == *expect, "{}: wrong bytes restored in {abs:?}", d.what);
        restored += 1;
    }
    if needs_damaged.is_some() {
        assert!(failed, "{}: the restore read a damaged blob and reported nothing", d.what);
    } else if d.same_len {
        // Damage outside every blob (padding, header, trailer) does not stop a restore: it
        // reads blobs by the index and authenticates each one.
        assert!(!failed, "{}: restore failed for damage outside every blob: {result:?}", d.what);
        assert_eq!(restored, want.len(), "{}: files missing", d.what);
    }
    let _ = std::fs::remove_dir_all(&target);
    failed
}

/// Put an object's original bytes back when dropped (also on a failed assertion).
struct Restore<'a>(&'a Obj, Vec<u8>);
impl Drop for Restore<'_> {
    fn drop(&mut self) {
        std::fs::write(&self.0.path, &self.1).unwrap();
    }
}

fn overlapping(entries: &[PackEntry], start: u64, end: u64) -> Vec<PackEntry> {
    entries
        .iter()
        .filter(|e| u64::from(e.offset) < end && start < u64::from(e.offset) + u64::from(e.length))
        .copied()
        .collect()
}

/// Flips per class and how many were detected.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, (u64, u64)>, BTreeMap<&'static str, f64>);
impl Tally {
    fn add(&mut self, class: Class, detected: bool) {
        let e = self.0.entry(class.name()).or_default();
        e.0 += 1;
        e.1 += u64::from(detected);
    }
    fn time(&mut self, class: Class, seconds: f64) {
        *self.1.entry(class.name()).or_default() += seconds;
    }
    fn ms_per_flip(&self) -> String {
        let parts: Vec<String> = self
            .1
            .iter()
            .map(|(k, t)| format!("{k}: {:.2}", t * 1000.0 / self.0.get(k).map_or(1, |e| e.0.max(1)) as f64))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
    fn totals(&self) -> (u64, u64) {
        self.0.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
    fn by_class(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, (n, d))| format!("{k}: {d}/{n}")).collect();
        format!("{{{}}}", parts.join(", "))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn assert_healthy(w: &World, when: &str) {
    let r = CollectReporter::default();
    let report = check(w.repo.clone(), &CheckOptions { read_data: ReadData::All }, &r).unwrap();
    assert!(report.problems.is_empty(), "false alarm {when}: {:#?}", report.problems);
    assert_eq!(report.unreferenced_packs, 0, "{when}");
    assert_eq!(report.snapshots, 3, "{when}");
    let warnings: Vec<Event> =
        r.0.lock()
            .iter()
            .filter(|e| matches!(e, Event::Warning { .. } | Event::Error { .. }))
            .cloned()
            .collect();
    assert!(warnings.is_empty(), "{when}: {warnings:?}");
}

#[test]
fn every_flipped_byte_is_detected_and_never_restored() {
    let w = World::new();
    assert_healthy(&w, "before");
    let flips = env_u64("OFFSITE_FLIPS", 1000);
    let seed = env_u64("OFFSITE_SEED", 0x0ff5_17e5);
    eprintln!("corruption: seed={seed:#x} flips={flips}");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut panics = Vec::new();
    let started = Instant::now();
    for n in 0..flips {
        let class = Class::ALL[(n % Class::ALL.len() as u64) as usize];
        let objs = w.objects_of(class);
        let obj = objs[rng.below(objs.len() as u64) as usize];
        let &(_, start, end) = obj.regions.iter().find(|r| r.0 == class).unwrap();
        let pos = start + rng.below(end - start);
        let mask = 1 + rng.below(255) as u8;
        let pick = rng.next();
        let hit = overlapping(&obj.entries, pos, pos + 1);
        let d = Damage {
            obj,
            marked: hit.clone(),
            hit,
            same_len: true,
            what: format!(
                "flip {n}: {} ({}) byte {pos} of {} ^ {mask:#04x}",
                obj.label,
                class.name(),
                obj.len
            ),
        };
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&obj.path).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, pos).unwrap();
        f.write_all_at(&[b[0] ^ mask], pos).unwrap();
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| judge(&w, &d, pick)));
        tally.time(class, t.elapsed().as_secs_f64());
        f.write_all_at(&b, pos).unwrap();
        match outcome {
            Ok(v) => {
                tally.add(class, v.detected());
                assert!(v.detected(), "{}: not detected", d.what);
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push(format!("{}: {msg}", d.what));
                if panics.len() >= 5 {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (total, detected) = tally.totals();
    eprintln!(
        "corruption: flips={total} detected={detected} by_class={} elapsed={elapsed:.1}s ({:.2} ms/flip)",
        tally.by_class(),
        elapsed * 1000.0 / total.max(1) as f64
    );
    eprintln!("corruption: ms per flip by class {}", tally.ms_per_flip());
    assert!(panics.is_empty(), "{} failures:\n{}", panics.len(), panics.join("\n"));
    assert_eq!(total, flips);
    assert_eq!(detected, flips);
    assert_healthy(&w, "after");
}

/// Apply `damage` to the object's bytes (a new content, or `None` to delete it), judge, put
/// the original back.
fn with_damage(w: &World, d: &Damage, new: Option<&[u8]>) -> Verdict {
    let original = std::fs::read(&d.obj.path).unwrap();
    let _guard = Restore(d.obj, original);
    match new {
        Some(bytes) => std::fs::write(&d.obj.path, bytes).unwrap(),
        None => std::fs::remove_file(&d.obj.path).unwrap(),
    }
    judge(w, d, 0)
}

#[test]
fn truncated_and_zeroed_objects_are_detected() {
    let w = World::new();
    let mut rng = Rng(env_u64("OFFSITE_SEED", 7));
    let mut tally = Tally::default();
    for obj in &w.objects {
        let original = std::fs::read(&obj.path).unwrap();
        let len = original.len() as u64;
        let mut cuts: Vec<u64> = vec![0, 1, len / 2, len.saturating_sub(TRAILER_LEN as u64), len - 1];
        cuts.retain(|&c| c < len);
        cuts.dedup();
        for cut in cuts {
            // A pack of another size: the check marks all its blobs; only those past the cut
            // lost bytes.
            let d = Damage {
                obj,
                hit: overlapping(&obj.entries, cut, len),
                marked: obj.entries.clone(),
                same_len: false,
                what: format!("{} truncated to {cut} of {len} bytes", obj.label),
            };
            let v = with_damage(&w, &d, Some(&original[..cut as usize]));
            tally.add(obj.class(), v.detected());
            assert!(v.detected(), "{}: not detected", d.what);
        }
        // Zero-filled 4 KiB blocks: the first, and one at a random aligned offset.
        let blocks = len.div_ceil(4096);
        for block in [0, rng.below(blocks)] {
            let (start, end) = (block * 4096, ((block + 1) * 4096).min(len));
            let mut bad = original.clone();
            bad[start as usize..end as usize].fill(0);
            if bad == original {
                continue;
            }
            let hit: Vec<PackEntry> = overlapping(&obj.entries, start, end)
                .into_iter()
                .filter(|e| {
                    let r = e.offset as usize..(e.offset + e.length) as usize;
                    bad[r.clone()] != original[r]
                })
                .collect();
            let class = obj.regions.iter().find(|r| r.1 <= start && start < r.2).unwrap().0;
            let d = Damage {
                obj,
                marked: hit.clone(),
                hit,
                same_len: true,
                what: format!("{} zeroed at {start}..{end} of {len}", obj.label),
            };
            let v = with_damage(&w, &d, Some(&bad));
            tally.add(class, v.detected());
            assert!(v.detected(), "{}: not detected", d.what);
        }
    }
    let (total, detected) = tally.totals();
    eprintln!("corruption: truncated/zeroed={total} detected={detected} by_class={}", tally.by_class());
    assert_healthy(&w, "after truncations");
}

#[test]
fn deleted_objects_of_every_class_are_detected() {
    let w = World::new();
    // The client that made the backups: it keeps the tips it last saw in its cache.
    let cached = Arc::new(Repository::open(w.storage(), PW, &CacheSetting::Dir(w.cache.clone())).unwrap());
    let (newest, _) = w.snaps.iter().max_by(|a, b| a.1.time.cmp(&b.1.time)).unwrap();
    let mut seen = HashSet::new();
    for obj in &w.objects {
        seen.insert(obj.class());
        let d = Damage {
            obj,
            hit: obj.entries.clone(),
            marked: obj.entries.clone(),
            same_len: false,
            what: format!("{} deleted", obj.label),
        };
        let original = std::fs::read(&obj.path).unwrap();
        let _guard = Restore(obj, original);
        std::fs::remove_file(&obj.path).unwrap();
        match obj.class() {
            Class::Config => {
                let e = Repository::open(w.storage(), PW, &CacheSetting::Disabled).unwrap_err();
                assert!(e.to_string().contains("no repository"), "{e}");
            }
            Class::Key => {
                // Deleting a key file is what `key remove` does: nothing can tell the two apart
                // (key files are not listed anywhere authenticated). Only its passphrase stops
                // working; the other key still opens and the data is untouched.
                let full = Repository::open(w.storage(), PW, &CacheSetting::Disabled);
                let backup_only = Repository::open(w.storage(), PW_BACKUP_ONLY, &CacheSetting::Disabled);
                assert!(full.is_err() != backup_only.is_err(), "{}: exactly one passphrase opens", d.what);
                if let Ok(r) = full {
                    let report = check(Arc::new(r), &CheckOptions::default(), &NullReporter).unwrap();
                    assert!(report.problems.is_empty(), "{}: {:#?}", d.what, report.problems);
                }
            }
            Class::Snapshot if obj.id == newest.to_hex() => {
                // No other snapshot names the newest one yet: the client's tips do.
                let e = cached.snapshot_set().unwrap_err();
                assert!(e.to_string().contains(&newest.short()), "{e}");
                let report = check(cached.clone(), &CheckOptions::default(), &NullReporter).unwrap();
                assert!(
                    report.problems.iter().any(|p| p.message.contains(&newest.short())),
                    "{}: {:#?}",
                    d.what,
                    report.problems
                );
                // A client without that record cannot know (FORMAT.md §10).
            }
            Class::Snapshot | Class::Forget => {
                // Named by a later snapshot's `seen` list and not forgotten.
                let missing =
                    if obj.class() == Class::Forget { w.forgotten.short() } else { obj.id[..8].to_string() };
                for r in [&w.repo, &cached] {
                    let report = check(r.clone(), &CheckOptions::default(), &NullReporter).unwrap();
                    assert!(
                        report
                            .problems
                            .iter()
                            .any(|p| p.object == format!("snapshots/{missing}")
                                && p.message.contains("missing")),
                        "{}: {:#?}",
                        d.what,
                        report.problems
                    );
                }
            }
            Class::Index => {
                let report = check(w.repo.clone(), &CheckOptions::default(), &NullReporter).unwrap();
                assert!(!report.problems.is_empty(), "{}: not detected", d.what);
                assert!(report.unreferenced_packs > 0, "{}", d.what);
                // Everything the lost index named that a snapshot uses is reported with paths.
                assert!(
                    report.problems.iter().any(|p| !p.affects.is_empty()),
                    "{}: {:#?}",
                    d.what,
                    report.problems
                );
            }
            _ => {
                drop(_guard);
                let original = std::fs::read(&obj.path).unwrap();
                let v = with_damage(&w, &d, None);
                assert!(v.detected(), "{}: not detected", d.what);
                let p = v.check.as_ref().unwrap().problems.iter().find(|p| p.object == obj.label).unwrap();
                assert!(p.message.contains("missing"), "{}: {p:?}", d.what);
                assert_eq!(std::fs::read(&obj.path).unwrap(), original);
                continue;
            }
        }
    }
    assert_eq!(seen.len(), 7, "classes covered: {seen:?}");
    assert_healthy(&w, "after deletions");
}

/// Write `bytes` as a new object of `kind` under `name`; returns its path (for removal).
fn plant(w: &World, kind: ObjectKind, name: &str, bytes: &[u8]) -> PathBuf {
    let p = w.repo_dir.join(kind.relative_path(name));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn duplicated_objects_are_detected_or_harmless() {
    let w = World::new();
    let full = CheckOptions { read_data: ReadData::All };
    let run = |what: &str| {
        let r = CollectReporter::default();
        let report = check(w.repo.clone(), &full, &r).unwrap();
        let opened = Repository::open(w.storage(), PW, &CacheSetting::Disabled);
        (report, opened.map(|_| ()).map_err(|e| e.to_string()), what.to_string())
    };
    for obj in &w.objects {
        let bytes = std::fs::read(&obj.path).unwrap();
        // 1. The same bytes under a second, well-formed name that is not their hash: every
        //    object read whole is checked against its name. A pack is read only through an
        //    index: a copy no index names is a stray, like a pack an interrupted backup left
        //    (prune removes it); the check warns about it and raises no problem.
        let other = hex::encode(offsite_crypto::sha256(&[&bytes[..], b"x"].concat()));
        let kinds: &[ObjectKind] =
            if obj.kind == ObjectKind::Config { &[] } else { std::slice::from_ref(&obj.kind) };
        for &kind in kinds {
            let p = plant(&w, kind, &other, &bytes);
            let (report, opened, what) =
                run(&format!("{} copied to {}/{}", obj.label, kind.dir_name(), &other[..8]));
            std::fs::remove_file(&p).unwrap();
            assert!(opened.is_ok(), "{what}: {opened:?}");
            if kind == ObjectKind::Data {
                assert!(report.problems.is_empty(), "{what}: false alarm {:#?}", report.problems);
                assert_eq!(report.unreferenced_packs, 1, "{what}");
            } else {
                let label = format!("{}/{}", kind.dir_name(), &other[..8]);
                assert!(report.problems.iter().any(|p| p.object == label), "{what}: {:#?}", report.problems);
            }
        }
        // 2. A copy under the wrong kind, named by its own hash (so the name check passes):
        //    the record type (authenticated), the key-file syntax or the pack magic refuses
        //    it, and the problem names the copy. In data/ it is a stray (see above). The
        //    config replaced by another record makes the repository refuse to open.
        let own = hex::encode(storage_id(&bytes));
        for kind in [ObjectKind::Key, ObjectKind::Index, ObjectKind::Snapshot, ObjectKind::Data] {
            if kind == obj.kind {
                continue;
            }
            let p = plant(&w, kind, &own, &bytes);
            let (report, opened, what) = run(&format!("{} copied into {}/", obj.label, kind.dir_name()));
            std::fs::remove_file(&p).unwrap();
            assert!(opened.is_ok(), "{what}: {opened:?}");
            if kind == ObjectKind::Data {
                assert!(report.problems.is_empty(), "{what}: false alarm {:#?}", report.problems);
                assert_eq!(report.unreferenced_packs, 1, "{what}");
            } else {
                let label = format!("{}/{}", kind.dir_name(), &own[..8]);
                let p = report.problems.iter().find(|p| p.object == label);
                assert!(p.is_some(), "{what}: {:#?}", report.problems);
            }
        }
        if obj.kind != ObjectKind::Config {
            let config = w.repo_dir.join("config");
            let saved = std::fs::read(&config).unwrap();
            std::fs::write(&config, &bytes).unwrap();
            let opened = Repository::open(w.storage(), PW, &CacheSetting::Disabled);
            std::fs::write(&config, &saved).unwrap();
            let e = opened.err().unwrap_or_else(|| panic!("config replaced by {} opened", obj.label));
            let msg = e.to_string();
            assert!(msg.contains("config") || msg.contains("format version"), "{}: {msg}", obj.label);
        }
    }

    // 3. Harmless duplicates under valid names: an index object and a snapshot sealed again
    //    (same content, new nonce, so a new name), and packs stored twice by two clients that
    //    did not see each other's index (FORMAT.md §7: every listed copy is valid). The
    //    check accepts all of them with no alarm, and a restore still gives the right bytes.
    let idx_obj = w.objects_of(Class::Index)[0];
    let f: IndexFile =
        open_record(RecordType::Index, w.repo.keys(), &std::fs::read(&idx_obj.path).unwrap()).unwrap();
    let again = seal_record(RecordType::Index, w.repo.keys(), &f);
    let p1 = plant(&w, ObjectKind::Index, &hex::encode(storage_id(&again)), &again);
    let (sid, snap) = &w.snaps[0];
    let again = seal_record(RecordType::Snapshot, w.repo.keys(), snap);
    let p2 = plant(&w, ObjectKind::Snapshot, &hex::encode(storage_id(&again)), &again);
    let before: HashSet<String> =
        w.repo.storage().list(ObjectKind::Data).unwrap().into_iter().map(|x| x.0).collect();
    let reader = BlobReader::new(w.repo.clone(), w.index.clone()).unwrap();
    let other_client = BlobWriter::new(w.repo.clone(), Arc::new(Index::default()), WriterOptions::default());
    let mut copied = 0;
    for obj in w.objects_of(Class::DataPackBody).into_iter().chain(w.objects_of(Class::TreePackBody)) {
        for e in &obj.entries {
            other_client.add(e.ty, &reader.read(&e.id, "test").unwrap()).unwrap();
            copied += 1;
        }
    }
    other_client.finish().unwrap();
    let (report, opened, _) = run("harmless duplicates");
    assert!(opened.is_ok());
    assert!(report.problems.is_empty(), "false alarm on duplicates: {:#?}", report.problems);
    assert_eq!(report.unreferenced_packs, 0);
    assert_eq!(report.snapshots, 4);
    assert!(report.blobs_read >= 2 * copied, "{} blobs read, {copied} copied", report.blobs_read);
    let index = Arc::new(Index::load(&**w.repo.storage(), w.repo.keys()).unwrap());
    let reader = BlobReader::new(w.repo.clone(), index).unwrap();
    let target = w.root.join("dup-target");
    let s = restore(
        &reader,
        snap,
        &RestoreOptions { target: target.clone(), ..Default::default() },
        &NullReporter,
    )
    .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    for (path, content) in &w.expected[sid] {
        let p = target.join(Path::new(std::ffi::OsStr::from_bytes(path)).strip_prefix("/").unwrap());
        assert!(std::fs::read(&p).unwrap() == *content, "{p:?}");
    }
    std::fs::remove_file(p1).unwrap();
    std::fs::remove_file(p2).unwrap();
    let after: Vec<String> =
        w.repo.storage().list(ObjectKind::Data).unwrap().into_iter().map(|x| x.0).collect();
    assert!(after.len() > before.len());
}
