//! A hostile storage, scripted: between real `offsite` runs each test changes the repository
//! directory the way a malicious or broken server could (roll it back, drop or swap objects,
//! swap in another repository's config and keys, plant a user file's stored bytes where
//! metadata belongs). Each attack must be refused with one clear error line that names it,
//! and the restore target must hold nothing written from the attacked data.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use offsite_backend::{LocalStorage, ObjectKind};
use offsite_format::BlobType;
use offsite_repo::{CacheSetting, Index, Repository};

const PASSWORD: &str = "hostile storage test";

/// One test's world: `root/repo`, `root/src`, `root/cache`.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn init() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        fs::create_dir_all(root.join("src")).expect("mkdir src");
        let w = World { _dir: dir, root };
        w.ok(&["init"]);
        w
    }

    fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    fn src_str(&self) -> String {
        self.src().to_str().expect("utf8").to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `offsite ARGS` with this world's repository, passphrase, cache and a cheap KDF.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with_cache(args, &self.root.join("cache"))
    }

    fn cmd_with_cache(&self, args: &[&str], cache: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_offsite"));
        for var in [
            "OFFSITE_PASSWORD_FILE",
            "OFFSITE_PASSWORD_COMMAND",
            "OFFSITE_NEW_PASSWORD",
            "OFFSITE_LOG",
            "OFFSITE_REPOSITORY",
            "OFFSITE_PASSWORD",
            "OFFSITE_CACHE_DIR",
            "OFFSITE_INSECURE_FAST_KDF",
        ] {
            c.env_remove(var);
        }
        c.env("OFFSITE_REPOSITORY", self.repo())
            .env("OFFSITE_PASSWORD", PASSWORD)
            .env("OFFSITE_CACHE_DIR", cache)
            .env("OFFSITE_INSECURE_FAST_KDF", "testing-only-keys-are-crackable")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run offsite");
        assert!(out.status.success(), "offsite {args:?} failed:\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Back up the source; returns the new snapshot id.
    fn backup(&self) -> String {
        let out = self.ok(&["backup", "--json", &self.src_str()]);
        let last = out.lines().last().expect("a summary line");
        let v: serde_json::Value = serde_json::from_str(last).expect("json");
        v["snapshot"].as_str().expect("snapshot id").to_string()
    }

    fn write(&self, rel: &str, content: &[u8]) {
        let p = self.src().join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write");
    }

    /// The pack files in the repository, by id.
    fn packs(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for sub in fs::read_dir(self.repo().join("data")).expect("data dir") {
            for f in fs::read_dir(sub.expect("entry").path()).expect("data subdir") {
                out.insert(f.expect("entry").file_name().to_str().expect("utf8").to_string());
            }
        }
        out
    }

    fn object(&self, kind: ObjectKind, id: &str) -> PathBuf {
        self.repo().join(kind.relative_path(id))
    }

    /// Back up, returning the snapshot id and the data and tree packs this backup added.
    fn backup_new_packs(&self) -> (String, Vec<String>, Vec<String>) {
        let before = self.packs();
        let snap = self.backup();
        let added: Vec<String> = self.packs().difference(&before).cloned().collect();
        let types = self.pack_types();
        let (tree, data): (Vec<String>, Vec<String>) =
            added.into_iter().partition(|p| types.get(p) == Some(&BlobType::Tree));
        (snap, data, tree)
    }

    /// Each indexed pack's blob type, read in-process with the full key (the test knows it;
    /// the storage does not).
    fn pack_types(&self) -> std::collections::HashMap<String, BlobType> {
        let index = self.index();
        index.blobs().into_iter().map(|(_, loc)| (index.pack(loc.pack).id.to_hex(), loc.entry.ty)).collect()
    }

    fn open(&self) -> Repository {
        let storage = Arc::new(LocalStorage::new(self.repo()));
        Repository::open(storage, PASSWORD.as_bytes(), &CacheSetting::Disabled).expect("open in-process")
    }

    fn index(&self) -> Index {
        let repo = self.open();
        Index::load(&**repo.storage(), repo.keys()).expect("index")
    }

    /// Run a command that must fail; returns its one error line.
    fn refused(&self, c: &mut Command) -> (String, String) {
        let out = c.output().expect("run offsite");
        assert_eq!(out.status.code(), Some(1), "{c:?} should have failed:\n{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Shown with --nocapture: the exact line each attack produces.
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        eprintln!("offsite {}\n{stderr}", args.join(" "));
        (error_line(&stderr).to_string(), stderr)
    }

    /// `restore latest` into a fresh target must fail; returns (error line, stderr, target).
    fn restore_refused(&self, name: &str) -> (String, String, PathBuf) {
        let target = self.path(name);
        let (line, stderr) =
            self.refused(&mut self.cmd(&["restore", "latest", "--target", target.to_str().expect("utf8")]));
        (line, stderr, target)
    }
}

fn show(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one `offsite: error:` line of a failed run.
fn error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("offsite: error: ")).collect();
    assert_eq!(lines.len(), 1, "want exactly one error line:\n{stderr}");
    lines[0]
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Exchange two files' contents by renaming (what a server swapping objects does).
fn swap_files(a: &Path, b: &Path) {
    let tmp = a.with_extension("swap");
    fs::rename(a, &tmp).expect("rename");
    fs::rename(b, a).expect("rename");
    fs::rename(&tmp, b).expect("rename");
}

/// Every regular file and symlink under `dir` (relative paths), and whether any exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                out.extend(files_under(&e.path()).into_iter().map(|p| Path::new(&e.file_name()).join(p)));
            } else {
                out.push(PathBuf::from(e.file_name()));
            }
        }
    }
    out
}

/// A snapshot-level attack was refused before anything was restored: the target was not even
/// created.
fn assert_nothing_restored(target: &Path) {
    assert!(!target.exists(), "the refused restore created {}: {:?}", target.display(), files_under(target));
}

fn short(id: &str) -> &str {
    &id[..8]
}

// ---------------------------------------------------------------- rollback and lost snapshots

#[test]
fn rollback_of_the_whole_repository_to_an_older_copy_is_refused() {
    let w = World::init();
    w.write("a.txt", b"first state\n");
    w.backup();
    let old = w.path("repo-as-it-was");
    copy_dir(&w.repo(), &old);
    w.write("a.txt", b"second state, the one the owner expects\n");
    let newest = w.backup();

    // The server answers with the repository as it was before the second backup.
    fs::remove_dir_all(w.repo()).expect("rm repo");
    copy_dir(&old, &w.repo());

    let (line, _, target) = w.restore_refused("target");
    assert!(line.contains(&format!("snapshot {} is missing but was seen before", short(&newest))), "{line}");
    assert!(line.contains("serves an older state of the repository"), "{line}");
    assert_nothing_restored(&target);
    // Nothing builds on the older state either.
    let (line, _) = w.refused(&mut w.cmd(&["backup", &w.src_str()]));
    assert!(line.contains(&format!("snapshot {} is missing", short(&newest))), "{line}");
    let (line, _) = w.refused(&mut w.cmd(&["snapshots"]));
    assert!(line.contains("older state"), "{line}");
}

#[test]
fn dropping_the_newest_snapshot_is_refused_by_the_client_that_saw_it() {
    let w = World::init();
    w.write("a.txt", b"one\n");
    w.backup();
    w.write("b.txt", b"two\n");
    let newest = w.backup();
    fs::remove_file(w.object(ObjectKind::Snapshot, &newest)).expect("drop the newest snapshot");

    let (line, _, target) = w.restore_refused("target");
    assert!(line.contains(&format!("snapshot {} is missing but was seen before", short(&newest))), "{line}");
    assert!(line.contains("this client saw it earlier"), "{line}");
    assert_nothing_restored(&target);
    let (line, _) = w.refused(&mut w.cmd(&["check"]));
    assert!(line.contains("1 problem"), "{line}");
}

#[test]
fn dropping_a_middle_snapshot_is_refused_even_by_a_client_that_never_saw_it() {
    let w = World::init();
    let mut ids = Vec::new();
    for i in 0..3 {
        w.write(&format!("f{i}.txt"), format!("file {i}\n").as_bytes());
        ids.push(w.backup());
    }
    fs::remove_file(w.object(ObjectKind::Snapshot, &ids[1])).expect("drop the middle snapshot");

    // A client with an empty cache: only the authenticated `seen` list of the newest snapshot
    // can tell.
    let fresh = w.path("fresh-cache");
    let target = w.path("target");
    let (line, _) = w.refused(
        &mut w.cmd_with_cache(&["restore", "latest", "--target", target.to_str().expect("utf8")], &fresh),
    );
    let want = format!(
        "snapshot {} is missing but was seen before (named by snapshot {})",
        short(&ids[1]),
        short(&ids[2])
    );
    assert!(line.contains(&want), "{line}");
    assert_nothing_restored(&target);
    // check names the lost snapshot and the one that proves it existed.
    let out = w.cmd_with_cache(&["check"], &fresh).output().expect("check");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "snapshots/{}: missing, but snapshot {} names it",
            short(&ids[1]),
            short(&ids[2])
        )),
        "{}",
        show(&out)
    );
}

#[test]
fn swapped_snapshot_objects_are_refused() {
    let w = World::init();
    w.write("a.txt", b"one\n");
    let first = w.backup();
    w.write("b.txt", b"two\n");
    let second = w.backup();
    swap_files(&w.object(ObjectKind::Snapshot, &first), &w.object(ObjectKind::Snapshot, &second));

    let (line, _, target) = w.restore_refused("target");
    assert!(line.contains("its content does not match its name"), "{line}");
    assert!(line.contains(short(&first)) || line.contains(short(&second)), "{line}");
    assert_nothing_restored(&target);
}

// ---------------------------------------------------------------- swapped packs

/// Every file restored under `target` is byte-identical to the source file at the same path;
/// no temporary file is left. Returns the restored source-relative paths.
fn assert_no_wrong_bytes(w: &World, target: &Path) -> BTreeSet<PathBuf> {
    let base = target.join(w.src().strip_prefix("/").expect("absolute"));
    let mut restored = BTreeSet::new();
    for rel in files_under(target) {
        let name = rel.file_name().expect("name").to_string_lossy().into_owned();
        assert!(!name.starts_with(".offsite-tmp-"), "temporary file left: {}", rel.display());
        let full = target.join(&rel);
        let in_src = full.strip_prefix(&base).expect("restored under the source path").to_path_buf();
        assert_eq!(
            fs::read(&full).expect("read restored"),
            fs::read(w.src().join(&in_src)).expect("read source"),
            "{} restored with wrong bytes",
            in_src.display()
        );
        restored.insert(in_src);
    }
    restored
}

#[test]
fn swapped_data_packs_fail_their_files_and_restore_nothing_wrong() {
    let w = World::init();
    // Two backups each add one incompressible file of the same size: their data packs have
    // equal sizes, so not even the listing shows the swap.
    w.write("a/one.bin", &pseudo_random(1, 100_000));
    let (_, data1, _) = w.backup_new_packs();
    w.write("b/two.bin", &pseudo_random(2, 100_000));
    let (_, data2, _) = w.backup_new_packs();
    w.write("c/three.txt", b"untouched by the attack\n");
    w.backup_new_packs();
    let (p1, p2) = (data1[0].clone(), data2[0].clone());
    assert_eq!((data1.len(), data2.len()), (1, 1));
    let (a, b) = (w.object(ObjectKind::Data, &p1), w.object(ObjectKind::Data, &p2));
    assert_eq!(fs::metadata(&a).expect("a").len(), fs::metadata(&b).expect("b").len());
    swap_files(&a, &b);

    let (line, stderr, target) = w.restore_refused("target");
    assert!(line.contains("2 entries could not be restored"), "{line}");
    for (file, pack) in [("a/one.bin", &p1), ("b/two.bin", &p2)] {
        let warning = stderr
            .lines()
            .find(|l| l.contains(&format!("/src/{file}:")))
            .unwrap_or_else(|| panic!("{file} not named:\n{stderr}"));
        assert!(warning.starts_with("offsite: warning: "), "{warning}");
        assert!(warning.contains(&format!("data/{}", short(pack))), "{warning}");
        assert!(warning.contains("authentication failed"), "{warning}");
    }
    let restored = assert_no_wrong_bytes(&w, &target);
    assert_eq!(restored, BTreeSet::from([PathBuf::from("c/three.txt")]));

    // check --read-data names both packs and the files they hold.
    let out = w.cmd(&["check", "--read-data"]).output().expect("check");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (file, pack) in [("a/one.bin", &p1), ("b/two.bin", &p2)] {
        let problem = stdout
            .lines()
            .find(|l| l.starts_with(&format!("data/{}: ", short(pack))))
            .unwrap_or_else(|| panic!("{pack} not named:\n{stdout}"));
        assert!(problem.contains("its content does not match its name"), "{problem}");
        assert!(stdout.contains(&format!("/src/{file}")), "{stdout}");
    }
}

#[test]
fn swapped_tree_packs_restore_no_directory_from_the_wrong_trees() {
    let w = World::init();
    w.write("a/one.txt", b"one\n");
    let (_, _, tree1) = w.backup_new_packs();
    w.write("b/two.txt", b"two\n");
    let (_, _, tree2) = w.backup_new_packs();
    w.write("c/three.txt", b"three\n");
    w.backup_new_packs();
    assert_eq!((tree1.len(), tree2.len()), (1, 1));
    // The third snapshot's trees for the unchanged a/ and b/ live in the first two tree packs.
    swap_files(&w.object(ObjectKind::Data, &tree1[0]), &w.object(ObjectKind::Data, &tree2[0]));

    let (line, stderr, target) = w.restore_refused("target");
    assert!(line.contains("2 entries could not be restored"), "{line}");
    for (dir, pack) in [("a", &tree1[0]), ("b", &tree2[0])] {
        let warning = stderr
            .lines()
            .find(|l| l.contains(&format!("/src/{dir}:")))
            .unwrap_or_else(|| panic!("{dir} not named:\n{stderr}"));
        assert!(warning.contains(&format!("data/{}", short(pack))), "{warning}");
        assert!(warning.contains("authentication failed"), "{warning}");
    }
    let restored = assert_no_wrong_bytes(&w, &target);
    assert_eq!(restored, BTreeSet::from([PathBuf::from("c/three.txt")]));

    // The first snapshot's root tree is in a swapped pack: nothing of it is restored.
    let t2 = w.path("target-first");
    let (line, stderr) =
        w.refused(&mut w.cmd(&["restore", "latest~2", "--target", t2.to_str().expect("utf8")]));
    assert!(line.contains("1 entries could not be restored"), "{line}");
    assert!(stderr.contains(&format!("cannot read /: data/{}", short(&tree1[0]))), "{stderr}");
    assert!(files_under(&t2).is_empty(), "{:?}", files_under(&t2));
}

// ---------------------------------------------------------------- another repository

/// A second repository with the same passphrase on the same server.
fn other_repository(w: &World) -> PathBuf {
    let other = w.path("other-repo");
    let out = w
        .cmd(&["init", "--repo", other.to_str().expect("utf8")])
        .output()
        .expect("init the other repository");
    assert!(out.status.success(), "{}", show(&out));
    other
}

fn replace_keys(w: &World, other: &Path) {
    for e in fs::read_dir(w.repo().join("keys")).expect("keys") {
        fs::remove_file(e.expect("entry").path()).expect("rm key");
    }
    for e in fs::read_dir(other.join("keys")).expect("keys") {
        let e = e.expect("entry");
        fs::copy(e.path(), w.repo().join("keys").join(e.file_name())).expect("copy key");
    }
}

#[test]
fn another_repositorys_config_or_keys_are_refused() {
    let w = World::init();
    w.write("a.txt", b"one\n");
    w.backup();
    let other = other_repository(&w);
    let saved = w.path("saved");
    copy_dir(&w.repo(), &saved);

    // Its config (another repository id) under this repository's keys.
    fs::copy(other.join("config"), w.repo().join("config")).expect("swap config");
    let (line, _, target) = w.restore_refused("target");
    assert!(line.contains("does not belong to repository"), "{line}");
    assert!(line.contains("the config does not authenticate with its index key"), "{line}");
    assert_nothing_restored(&target);

    // Its key files (another master key) with this repository's config.
    fs::remove_dir_all(w.repo()).expect("rm");
    copy_dir(&saved, &w.repo());
    replace_keys(&w, &other);
    let (line, _, target) = w.restore_refused("target");
    assert!(line.contains("does not belong to repository"), "{line}");
    assert_nothing_restored(&target);

    // Both: the repository opens as the other one, and this one's index and snapshots do not
    // authenticate under its keys.
    fs::copy(other.join("config"), w.repo().join("config")).expect("swap config");
    let (line, _, target) = w.restore_refused("target");
    assert!(
        line.contains("authentication failed: the object was modified or does not belong here"),
        "{line}"
    );
    assert!(line.contains("index/") || line.contains("snapshots/"), "{line}");
    assert_nothing_restored(&target);
}

// ---------------------------------------------------------------- user data passed off as metadata

/// Write a record header (FORMAT.md §5) around `ciphertext`.
fn forged_record(ty: u8, eph: Option<&[u8; 32]>, ciphertext: &[u8]) -> Vec<u8> {
    let mut r = b"OFS".to_vec();
    r.push(2);
    r.push(ty);
    match eph {
        Some(e) => {
            r.push(1);
            r.extend_from_slice(e);
            r.extend_from_slice(&[0; 12]);
        }
        None => {
            r.push(0);
            r.extend_from_slice(&ciphertext[..12.min(ciphertext.len())]);
        }
    }
    r.extend_from_slice(ciphertext);
    if eph.is_some() {
        // A sealed record ends in a MAC the storage cannot compute: any 32 bytes.
        r.extend_from_slice(&[0x5a; 32]);
    }
    r
}

fn plant(w: &World, kind: ObjectKind, bytes: &[u8]) -> String {
    let id = offsite_backend::conformance::id_of(bytes);
    let path = w.object(kind, &id);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, bytes).expect("plant");
    id
}

#[test]
fn a_user_files_stored_bytes_planted_as_metadata_are_refused() {
    let w = World::init();
    w.write("a.txt", b"one\n");
    let first = w.backup();
    // The user backs up files whose plaintext is metadata: a copy of a stored snapshot
    // object (small: stored in a bundle), and a tree listing (JSON) that would restore a file
    // outside the source, padded with spaces past 64 KiB so it is a data blob of its own.
    let snapshot_bytes = fs::read(w.object(ObjectKind::Snapshot, &first)).expect("snapshot");
    w.write("looks-like-a-snapshot", &snapshot_bytes);
    let mut tree_json =
        br#"{"nodes":[{"name":"ZXZpbA==","type":"file","mode":420,"uid":0,"gid":0,"mtime":[0,0],"size":0}]}"#
            .to_vec();
    tree_json.resize(70_000, b' ');
    w.write("looks-like-a-tree.json", &tree_json);
    let (_, data, tree) = w.backup_new_packs();
    // The bundle and the data blob land in one data pack, or in two when the writer's threads
    // each open a pack of their own (it keeps a pool of open packs); the test works on whichever
    // holds them.
    assert!(!data.is_empty() && data.len() <= 2, "{data:?}");
    let index = w.index();
    // For each new data pack: its bytes, its ephemeral key (in its trailer, in the clear) and
    // its blobs at the offsets the index gives (an attacker could try every split; the test
    // just looks).
    type PackView = (Vec<u8>, [u8; 32], Vec<(u32, u32)>);
    let packs: Vec<PackView> = data
        .iter()
        .map(|pack| {
            let bytes = fs::read(w.object(ObjectKind::Data, pack)).expect("pack");
            let n = bytes.len();
            let eph: [u8; 32] = bytes[n - 40..n - 8].try_into().expect("32 bytes");
            let blobs = index
                .blobs()
                .into_iter()
                .filter(|(_, loc)| index.pack(loc.pack).id.to_hex() == *pack)
                .map(|(_, loc)| (loc.entry.offset, loc.entry.length))
                .collect();
            (bytes, eph, blobs)
        })
        .collect();
    assert_eq!(packs.iter().map(|(_, _, b)| b.len()).sum::<usize>(), 2, "a bundle and a data blob");
    let pack = data[0].clone();
    let pack_bytes = &packs[0].0;
    let saved = w.path("saved");
    copy_dir(&w.repo(), &saved);
    let reset = || {
        fs::remove_dir_all(w.repo()).expect("rm");
        copy_dir(&saved, &w.repo());
    };

    // 1. The pack, whole, under a snapshot name that matches its hash.
    let id = plant(&w, ObjectKind::Snapshot, pack_bytes);
    let (line, _, target) = w.restore_refused("t1");
    assert!(line.contains(&format!("snapshots/{} is damaged", short(&id))), "{line}");
    assert_nothing_restored(&target);
    reset();

    // 2. Each blob's ciphertext dressed as a sealed snapshot record with the pack's own key,
    //    and as an index record: the record keys and associated data differ from a pack's.
    for (off, len, pack_bytes, eph) in
        packs.iter().flat_map(|(p, e, b)| b.iter().map(move |(o, l)| (o, l, p, e)))
    {
        let ct = &pack_bytes[*off as usize..(*off + *len) as usize];
        for (kind, record) in [
            (ObjectKind::Snapshot, forged_record(3, Some(eph), ct)),
            (ObjectKind::Index, forged_record(2, None, ct)),
        ] {
            let id = plant(&w, kind, &record);
            let (line, _, target) = w.restore_refused("t2");
            let object = format!("{}/{}", kind.dir_name(), short(&id));
            assert!(line.contains(&format!("{object} is damaged: authentication failed")), "{line}");
            assert_nothing_restored(&target);
            reset();
        }
    }

    // 3. The user's data pack served under the name of the tree pack that holds the root.
    assert_eq!(tree.len(), 1);
    fs::copy(w.object(ObjectKind::Data, &pack), w.object(ObjectKind::Data, &tree[0])).expect("plant");
    let (line, stderr, target) = w.restore_refused("t3");
    assert!(line.contains("1 entries could not be restored"), "{line}");
    assert!(stderr.contains(&format!("cannot read /: data/{}", short(&tree[0]))), "{stderr}");
    assert!(files_under(&target).is_empty(), "{:?}", files_under(&target));
}

// ---- A stolen backup-only key (docs/FORMAT.md §1): the attacker holds a backup-only key
// file's passphrase and can write to the storage; nothing more. ----

const THIEF_PASSWORD: &str = "the laptop's backup-only passphrase";

impl World {
    /// Add a backup-only key with [`THIEF_PASSWORD`] (the key a stolen laptop holds).
    fn add_backup_only_key(&self) {
        let out = self
            .cmd(&["key", "add", "--backup-only"])
            .env("OFFSITE_NEW_PASSWORD", THIEF_PASSWORD)
            .output()
            .expect("run offsite");
        assert!(out.status.success(), "key add failed:\n{}", show(&out));
    }

    /// The repository opened in-process with the stolen backup-only key.
    fn open_as_thief(&self) -> Arc<Repository> {
        let storage = Arc::new(LocalStorage::new(self.repo()));
        let repo =
            Repository::open(storage, THIEF_PASSWORD.as_bytes(), &CacheSetting::Disabled).expect("open");
        assert!(!repo.is_full(), "the thief holds a backup-only key");
        Arc::new(repo)
    }

    /// Write `bytes` as an object of `kind` under the name its hash gives, as the storage could.
    fn put(&self, kind: ObjectKind, bytes: &[u8]) -> String {
        let id = offsite_crypto::sha256_hex(bytes);
        let p = self.object(kind, &id);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, bytes).expect("write object");
        id
    }
}

/// Seal `record` (an index object) until its name sorts before every listed name of its kind,
/// so that a reader that keeps the first copy it lists keeps the attacker's (a thief can
/// grind names: a record's nonce is random).
fn sorted_first(w: &World, repo: &Repository, record: &offsite_format::IndexFile) -> Vec<u8> {
    let names: Vec<String> = fs::read_dir(w.repo().join("index"))
        .expect("index dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    loop {
        let bytes = offsite_format::seal_record(offsite_format::RecordType::Index, repo.keys(), record);
        let id = offsite_crypto::sha256_hex(&bytes);
        if names.iter().all(|n| id < *n) {
            return bytes;
        }
    }
}

#[test]
fn a_stolen_backup_only_key_cannot_rewrite_the_small_files_of_earlier_snapshots() {
    let w = World::init();
    w.write("home/.bashrc", b"alias ls='ls --color'\n");
    w.write("home/notes.txt", &pseudo_random(1, 3000));
    let snap = w.backup();
    w.add_backup_only_key();

    // The thief stores a bundle under the existing bundle's id, same length, its own bytes,
    // and an index object (named to list first) that names it.
    let thief = w.open_as_thief();
    let index = Arc::new(Index::load(&**thief.storage(), thief.keys()).expect("index"));
    let (bundle, loc) = index
        .blobs()
        .into_iter()
        .find(|(_, l)| l.entry.ty == BlobType::Bundle)
        .expect("the small files are in a bundle");
    let forged = vec![b'#'; loc.entry.raw_length as usize];
    let before: BTreeSet<String> = fs::read_dir(w.repo().join("index"))
        .expect("index dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let writer = offsite_repo::BlobWriter::new(thief.clone(), Arc::new(Index::default()), Default::default());
    writer.add_bundle(bundle, &forged).expect("store the forged bundle");
    writer.finish().expect("finish");
    let written: Vec<String> = fs::read_dir(w.repo().join("index"))
        .expect("index dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(written.len(), 1, "the writer stored one index object");
    let path = w.object(ObjectKind::Index, &written[0]);
    let record: offsite_format::IndexFile = offsite_format::open_record(
        offsite_format::RecordType::Index,
        thief.keys(),
        &fs::read(&path).expect("read index"),
    )
    .expect("the thief reads the index");
    fs::remove_file(&path).expect("remove");
    w.put(ObjectKind::Index, &sorted_first(&w, &thief, &record));

    // The owner restores the genuine bytes, and dump does too.
    let target = w.path("restored");
    w.ok(&["restore", &snap, "--target", target.to_str().expect("utf8")]);
    let restored_src = target.join(w.src().strip_prefix("/").expect("absolute"));
    assert_eq!(fs::read(restored_src.join("home/.bashrc")).expect("read"), b"alias ls='ls --color'\n");
    assert_eq!(fs::read(restored_src.join("home/notes.txt")).expect("read"), pseudo_random(1, 3000));
    let dumped = w.ok(&["dump", &snap, &format!("{}/home/.bashrc", w.src_str())]);
    assert_eq!(dumped, "alias ls='ls --color'\n");
    // check --read-data names the forged copy's pack.
    let out = w.cmd(&["check", "--read-data"]).output().expect("run");
    let text = show(&out);
    assert!(!out.status.success(), "check must report the forged copy:\n{text}");
    assert!(text.contains(&format!("bundle blob {}", short(&bundle.to_hex()))), "{text}");
    assert!(text.contains("forged or damaged"), "{text}");
}

#[test]
fn a_key_file_planted_with_the_right_passphrase_captures_no_backup() {
    let w = World::init();
    w.write("a.txt", b"first");
    w.backup();
    w.add_backup_only_key();
    let thief = w.open_as_thief();
    // The thief's key file: the real id, chunker, index and MAC keys, its own public key.
    let mut payload = thief.keys().to_bytes().to_vec();
    let attacker = offsite_crypto::KeySet::generate();
    let n = payload.len();
    payload[n - 32..].copy_from_slice(&attacker.public_key());
    let planted_keys = offsite_crypto::KeySet::from_bytes(&payload).expect("payload");
    let existing: Vec<String> = fs::read_dir(w.repo().join("keys"))
        .expect("keys dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut planted = String::new();
    for i in 0.. {
        let bytes = offsite_format::create_keyfile(
            &planted_keys,
            thief.config().id,
            THIEF_PASSWORD.as_bytes(),
            &offsite_crypto::KdfParams::for_tests(),
            &format!("2026-12-07T00:00:{:02}Z", i % 60),
        )
        .expect("key file");
        let id = offsite_crypto::sha256_hex(&bytes);
        if existing.iter().all(|k| id < *k) {
            planted = w.put(ObjectKind::Key, &bytes);
            break;
        }
    }
    // A laptop without a cache backs up with the stolen passphrase.
    w.write("a.txt", b"second");
    let out = w
        .cmd(&["--no-cache", "backup", &w.src_str()])
        .env("OFFSITE_PASSWORD", THIEF_PASSWORD)
        .output()
        .expect("run");
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("keys/{}", short(&planted))), "the planted key file is named:\n{text}");
    // The new snapshot is sealed to the owner, who reads it.
    let list = w.ok(&["snapshots", "--json"]);
    assert_eq!(list.lines().count(), 2, "{list}");
}

#[test]
fn a_snapshot_planted_by_the_storage_is_never_recorded_as_seen() {
    let w = World::init();
    w.write("a.txt", b"x");
    w.backup();
    w.add_backup_only_key();
    let laptop = |args: &[&str]| w.cmd(args).env("OFFSITE_PASSWORD", THIEF_PASSWORD).output().expect("run");
    // A record header and random bytes: all the storage can make without a key.
    let mut fake = b"OFS\x02\x03\x01".to_vec();
    fake.extend(pseudo_random(7, 400));
    let planted = w.put(ObjectKind::Snapshot, &fake);
    let out = laptop(&["backup", &w.src_str()]);
    assert!(!out.status.success(), "a snapshot no key holder wrote is refused:\n{}", show(&out));
    assert!(show(&out).contains(&format!("snapshots/{}", short(&planted))), "{}", show(&out));
    // The storage removes it again: the laptop backs up as before, no false alarm for ever.
    fs::remove_file(w.object(ObjectKind::Snapshot, &planted)).expect("remove");
    let out = laptop(&["backup", &w.src_str()]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_snapshot_naming_ids_that_never_existed_is_acknowledged_with_forget_missing() {
    let w = World::init();
    w.write("a.txt", b"x");
    w.backup();
    w.add_backup_only_key();
    // The thief writes a genuine-looking snapshot whose `seen` names a snapshot that never was.
    let thief = w.open_as_thief();
    let ghost = offsite_format::SnapshotId([0x42; 32]);
    let index = Index::load(&**thief.storage(), thief.keys()).expect("index");
    let tree = index.blobs().into_iter().find(|(_, l)| l.entry.ty == BlobType::Tree).expect("a tree").0;
    thief
        .save_snapshot(&offsite_format::Snapshot {
            version: offsite_format::FORMAT_VERSION,
            repository: thief.config().id,
            time: "2026-12-07T00:00:00Z".into(),
            host: "h".into(),
            user: "u".into(),
            paths: vec![],
            tags: vec![],
            tree,
            parent: None,
            seen: vec![ghost],
            summary: Default::default(),
            program: "thief".into(),
        })
        .expect("save");
    let (line, _) = w.refused(&mut w.cmd(&["snapshots"]));
    assert!(line.contains(&format!("snapshot {} is missing but was seen before", ghost.short())), "{line}");
    assert!(line.contains("offsite forget --missing"), "the error says the way out: {line}");
    // The thief's key may not acknowledge anything.
    let out = w
        .cmd(&["forget", "--missing", &ghost.short()])
        .env("OFFSITE_PASSWORD", THIEF_PASSWORD)
        .output()
        .expect("run");
    assert!(show(&out).contains("this key can only add backups"), "{}", show(&out));
    // The owner sees what is missing, acknowledges it, and every command works again.
    let shown = w.ok(&["forget", "--missing", &ghost.short(), "--dry-run"]);
    assert!(shown.contains(&ghost.short()), "{shown}");
    w.refused(&mut w.cmd(&["snapshots"]));
    w.ok(&["forget", "--missing", &ghost.short()]);
    assert_eq!(w.ok(&["snapshots", "--json"]).lines().count(), 2);
}

#[test]
fn key_files_planted_to_exhaust_the_kdf_are_bounded_and_named() {
    let w = World::init();
    w.write("a.txt", b"x");
    w.backup();
    let repo = w.open();
    // A key file asking for 4 GiB x 100 passes, named to be tried first.
    let mut kf: serde_json::Value = serde_json::from_slice(
        &offsite_format::create_keyfile(
            repo.keys(),
            repo.config().id,
            b"whatever",
            &offsite_crypto::KdfParams::for_tests(),
            "2026-12-07T00:00:00Z",
        )
        .expect("key file"),
    )
    .expect("json");
    kf["kdf"]["m_cost_kib"] = (4u32 * 1024 * 1024).into();
    kf["kdf"]["t_cost"] = 100.into();
    w.put(ObjectKind::Key, &serde_json::to_vec(&kf).expect("json"));
    // Opening is not held up by it (before the bound, this took minutes and 4 GiB).
    w.ok(&["--no-cache", "snapshots"]);
    // Nine key files the passphrase does not open, all sorting first: at most eight are tried,
    // the rest are named, and --key-id reaches the real one.
    let real = repo.key_id().to_hex();
    let mut planted = Vec::new();
    while planted.len() < 9 {
        let other = offsite_crypto::KeySet::generate();
        let bytes = offsite_format::create_keyfile(
            &other,
            repo.config().id,
            format!("x{}", planted.len()).as_bytes(),
            &offsite_crypto::KdfParams::for_tests(),
            "2026-12-07T00:00:00Z",
        )
        .expect("key file");
        if offsite_crypto::sha256_hex(&bytes) < real {
            planted.push(w.put(ObjectKind::Key, &bytes));
        }
    }
    let (line, _) = w.refused(&mut w.cmd(&["--no-cache", "snapshots"]));
    assert!(line.contains("--key-id"), "{line}");
    w.ok(&["--no-cache", "--key-id", &real[..8], "snapshots"]);
}

#[test]
fn a_client_without_history_is_told_so_and_can_pin_the_newest_snapshot() {
    let w = World::init();
    w.write("a.txt", b"first state\n");
    w.backup();
    let old = w.path("repo-as-it-was");
    copy_dir(&w.repo(), &old);
    w.write("a.txt", b"second state\n");
    let out = w.cmd(&["backup", &w.src_str()]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let state = text
        .lines()
        .find_map(|l| l.strip_prefix("repository state "))
        .expect("backup prints the repository state digest")
        .to_string();
    assert_eq!(state.len(), 16, "{state}");
    // `snapshots` prints the same digest for the same set of snapshots.
    let listed = w.cmd(&["snapshots"]).output().expect("run");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("repository state {state}")),
        "{}",
        show(&listed)
    );
    let newest = w.backup();

    // The server answers with the old state; a machine with no cache sees a consistent repository,
    // and is told it has nothing to compare with.
    fs::remove_dir_all(w.repo()).expect("rm repo");
    copy_dir(&old, &w.repo());
    let out = w.cmd(&["--no-cache", "snapshots"]).output().expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("offsite: notice: this client has no record of repository"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&state), "another state, another digest");
    // Pinned, it refuses the older state.
    let (line, _) = w.refused(&mut w.cmd(&["--no-cache", "--expect-latest", &newest[..8], "snapshots"]));
    assert!(
        line.contains(&format!("snapshot {} (--expect-latest) is not in repository", &newest[..8])),
        "{line}"
    );
    let (line, _) =
        w.refused(w.cmd(&["--no-cache", "backup", &w.src_str()]).env("OFFSITE_EXPECT_LATEST", &newest[..8]));
    assert!(line.contains("--expect-latest"), "{line}");
}

#[test]
fn forged_index_entries_listed_first_do_not_stop_a_restore_while_a_sound_copy_exists() {
    let w = World::init();
    let big = pseudo_random(3, 200_000);
    w.write("big.bin", &big);
    w.write("small.txt", b"a small file\n");
    let snap = w.backup();
    w.add_backup_only_key();
    // The thief lists every data and bundle blob again, first, at a wrong place with a wrong
    // length, in a pack that exists (the tree pack).
    let thief = w.open_as_thief();
    let index = Index::load(&**thief.storage(), thief.keys()).expect("index");
    let tree_pack = index.packs().into_iter().find(|p| {
        index.blobs().iter().any(|(_, l)| index.pack(l.pack).id == p.id && l.entry.ty == BlobType::Tree)
    });
    let tree_pack = tree_pack.expect("a tree pack");
    let forged: Vec<offsite_format::PackEntry> = index
        .blobs()
        .into_iter()
        .filter(|(_, l)| l.entry.ty != BlobType::Tree)
        .map(|(_, l)| offsite_format::PackEntry {
            offset: 0,
            length: 64,
            raw_length: l.entry.raw_length / 2,
            ..l.entry
        })
        .collect();
    assert!(forged.len() >= 2, "a data blob and a bundle");
    let record = offsite_format::IndexFile {
        packs: vec![offsite_format::IndexPack {
            id: tree_pack.id,
            eph: tree_pack.eph,
            size: tree_pack.size,
            blobs: forged,
        }],
        supersedes: vec![],
    };
    w.put(ObjectKind::Index, &sorted_first(&w, &thief, &record));
    let target = w.path("restored");
    w.ok(&["restore", &snap, "--target", target.to_str().expect("utf8")]);
    let restored_src = target.join(w.src().strip_prefix("/").expect("absolute"));
    assert_eq!(fs::read(restored_src.join("big.bin")).expect("read"), big);
    assert_eq!(fs::read(restored_src.join("small.txt")).expect("read"), b"a small file\n");
    let dumped = w.cmd(&["dump", &snap, &format!("{}/big.bin", w.src_str())]).output().expect("run");
    assert!(dumped.status.success(), "{}", show(&dumped));
    assert_eq!(dumped.stdout, big);
}
