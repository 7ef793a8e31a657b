//! Suite 4, bad inputs: hostile or unstable sources and targets, and hostile repository content,
//! end to end through backup and restore. (Covered elsewhere: an unreadable file, exit 3, in
//! `crates/cli/tests/cli.rs`; unreadable directories, exit 3, in `crates/cli/tests/bad_inputs.rs`;
//! restore of deep paths, planted symlinks, a full disk, unsafe entries and devices in
//! `tests/restore.rs`.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offsite_backend::LocalStorage;
use offsite_crypto::KdfParams;
use offsite_engine::{
    backup, dump, restore, BackupOptions, BackupOutcome, CollectReporter, EngineError, Event, NullReporter,
    RestoreOptions, RestoreSummary,
};
use offsite_format::{ChunkerSizes, Snapshot};
use offsite_repo::{BlobReader, CacheSetting, Index, InitOptions, Repository};

/// A repository and a scratch directory.
struct Env {
    dir: tempfile::TempDir,
    repo: Arc<Repository>,
}

impl Env {
    fn new() -> Env {
        Env::with_chunker(ChunkerSizes { min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 })
    }

    fn with_chunker(chunker: ChunkerSizes) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let opts = InitOptions { kdf: KdfParams::for_tests(), chunker, ..Default::default() };
        let repo = Arc::new(Repository::init(storage, b"pw", &opts, &CacheSetting::Disabled).unwrap());
        Env { dir, repo }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join(rel)
    }

    fn backup(&self, src: &Path) -> (BackupOutcome, Vec<Event>) {
        let r = CollectReporter::default();
        let opts = BackupOptions { paths: vec![src.to_path_buf()], force: true, ..Default::default() };
        let out = backup(self.repo.clone(), &opts, &r).unwrap();
        let events = std::mem::take(&mut *r.0.lock());
        (out, events)
    }

    fn reader(&self) -> BlobReader {
        let index = Arc::new(Index::load(&**self.repo.storage(), self.repo.keys()).unwrap());
        BlobReader::new(self.repo.clone(), index).unwrap()
    }

    fn restore(&self, snap: &Snapshot, target: &Path) -> Result<RestoreSummary, EngineError> {
        restore(
            &self.reader(),
            snap,
            &RestoreOptions { target: target.to_path_buf(), ..Default::default() },
            &NullReporter,
        )
    }
}

/// `target` + an absolute source path.
fn under(target: &Path, abs: &Path) -> PathBuf {
    target.join(abs.strip_prefix("/").unwrap())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn errors_and_warnings(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error { path, message } | Event::Warning { path, message } => {
                Some((path.clone(), message.clone()))
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sources that change while they are read

/// Sets the flag when dropped, so a failed assertion still stops the mutating thread.
struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

const BLOCK: usize = 4096;

/// A block of version `v`: `v` and the block number, then `v` repeated.
fn block(v: u8, n: u32) -> Vec<u8> {
    let mut b = vec![v; BLOCK];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b
}

fn version_file(v: u8, blocks: u32) -> Vec<u8> {
    (0..blocks).flat_map(|n| block(v, n)).collect()
}

/// `Some(version)` when `data` is `blocks` whole blocks of one version, numbered in order.
fn one_version(data: &[u8]) -> Option<u8> {
    if data.is_empty() || data.len() % BLOCK != 0 {
        return None;
    }
    let v = data[4];
    for (n, b) in data.chunks(BLOCK).enumerate() {
        if b[..4] != (n as u32).to_le_bytes() || b[4..].iter().any(|x| *x != v) {
            return None;
        }
    }
    Some(v)
}

#[test]
fn files_changed_during_backup_are_stored_consistently_or_reported() {
    const BLOCKS: u32 = 2048; // 8 MiB
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let names = ["rewritten", "appended", "truncated", "replaced"];
    for n in names {
        fs::write(src.join(n), version_file(0, BLOCKS)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let mut checked = 0;
    let mut reported = 0;
    std::thread::scope(|s| {
        // Rewrite in place block by block with the next version; append blocks; truncate to
        // half and write back whole; replace by a new file (unlink, create).
        s.spawn(|| {
            let mut v = 0u8;
            while !stop.load(Ordering::Relaxed) {
                v = v.wrapping_add(1).max(1);
                let f = fs::OpenOptions::new().write(true).open(src.join("rewritten")).unwrap();
                for n in 0..BLOCKS {
                    f.write_all_at(&block(v, n), u64::from(n) * BLOCK as u64).unwrap();
                }
                let f = fs::OpenOptions::new().append(true).open(src.join("appended")).unwrap();
                let len = f.metadata().unwrap().len();
                let n = (len / BLOCK as u64) as u32;
                let more: Vec<u8> = (n..n + 64).flat_map(|i| block(0, i)).collect();
                std::io::Write::write_all(&mut &f, &more).unwrap();
                if len > 64 << 20 {
                    fs::write(src.join("appended"), version_file(0, BLOCKS)).unwrap();
                }
                let f = fs::OpenOptions::new().write(true).open(src.join("truncated")).unwrap();
                f.set_len(u64::from(BLOCKS / 2) * BLOCK as u64).unwrap();
                f.write_all_at(&version_file(v, BLOCKS), 0).unwrap();
                let _ = fs::remove_file(src.join("replaced"));
                fs::write(src.join("replaced"), version_file(v, BLOCKS)).unwrap();
            }
        });
        let _stop = StopOnDrop(&stop);
        let deadline = Instant::now() + Duration::from_secs(60);
        while (reported < 6 || checked < 6) && Instant::now() < deadline {
            let (out, events) = env.backup(&src);
            let reader = env.reader();
            let warned: Vec<String> = errors_and_warnings(&events).into_iter().map(|(p, _)| p).collect();
            for n in names {
                let p = src.join(n);
                let shown = p.display().to_string();
                if warned.contains(&shown) {
                    reported += 1;
                    continue;
                }
                let mut data = Vec::new();
                match dump(&reader, &out.snapshot, p.as_os_str().as_bytes(), &mut data) {
                    // Listed while it was being replaced (unlinked, not yet created): absent,
                    // as the directory was.
                    Err(EngineError::NotInSnapshot(_)) if n == "replaced" => continue,
                    r => r.unwrap(),
                };
                let v = one_version(&data);
                assert!(v.is_some(), "{n}: a mix of versions stored without a report ({} bytes)", data.len());
                checked += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("changing files: {checked} stored as one version, {reported} reported as changed");
    assert!(reported >= 3, "the mutations never overlapped a read: the test proved nothing");
}

#[test]
fn a_directory_swapped_for_a_symlink_during_backup_reads_nothing_outside() {
    let env = Env::with_chunker(ChunkerSizes { min: 4096, avg: 16384, max: 65536 });
    let src = env.path("src");
    let outside = env.path("outside");
    let canary = b"CANARY-outside-the-source-7f3a91".to_vec();
    // Outside: files named like the ones inside (so a path through a swapped directory finds
    // one), and subdirectories.
    const DIRS: usize = 16;
    for i in 0..20 {
        fs::create_dir_all(outside.join(format!("sub{i:02}"))).unwrap();
        fs::write(outside.join(format!("f{i:02}")), &canary).unwrap();
        fs::write(outside.join(format!("sub{i:02}/canary")), &canary).unwrap();
        for d in 0..DIRS {
            fs::create_dir_all(src.join(format!("d{d:02}"))).unwrap();
            fs::write(src.join(format!("d{d:02}/f{i:02}")), format!("inside {i}")).unwrap();
        }
    }
    let stop = AtomicBool::new(false);
    let mut snaps = Vec::new();
    let mut errors = 0;
    std::thread::scope(|s| {
        // Swap every directory for a symlink to `outside`, then every one back, over and
        // over: each is a symlink about half of the time.
        s.spawn(|| {
            let pair = |d: usize| (src.join(format!("d{d:02}")), src.join(format!("d{d:02}.away")));
            while !stop.load(Ordering::Relaxed) {
                for d in 0..DIRS {
                    let (dir, away) = pair(d);
                    fs::rename(&dir, &away).unwrap();
                    std::os::unix::fs::symlink(&outside, &dir).unwrap();
                }
                for d in 0..DIRS {
                    let (dir, away) = pair(d);
                    fs::remove_file(&dir).unwrap();
                    fs::rename(&away, &dir).unwrap();
                }
            }
        });
        let _stop = StopOnDrop(&stop);
        for _ in 0..20 {
            let (out, _) = env.backup(&src);
            errors += out.errors.len();
            snaps.push(out.snapshot);
        }
    });
    eprintln!("swapped directories: {errors} entries reported as unreadable");
    // The repository is encrypted: restore everything and scan the plaintext.
    let mut files = 0;
    for (i, snap) in snaps.iter().enumerate() {
        let t = env.path(&format!("t{i}"));
        env.restore(snap, &t).unwrap();
        let mut all = Vec::new();
        walk(&t, &mut all);
        for f in all {
            let m = fs::symlink_metadata(&f).unwrap();
            if m.is_file() {
                files += 1;
                let data = fs::read(&f).unwrap();
                assert!(!data.windows(canary.len()).any(|w| w == canary), "{f:?} holds the canary");
            }
            assert!(
                !f.to_string_lossy().contains("canary") && !f.to_string_lossy().contains("/sub"),
                "{f:?}"
            );
        }
        fs::remove_dir_all(&t).unwrap();
    }
    assert!(files > 0);
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names and paths

#[test]
fn names_with_every_byte_round_trip() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // Every byte 0x01-0xff but '/' in one name (254 bytes), and each alone ('.' only inside
    // a longer name: "." names the directory itself).
    let all: Vec<u8> = (1..=255u8).filter(|b| *b != b'/').collect();
    let mut names: Vec<Vec<u8>> = vec![all.clone()];
    names.extend(all.iter().filter(|b| **b != b'.').map(|b| vec![*b]));
    names.push(b"..x".to_vec());
    names.push(vec![b'.', 0xff]);
    fs::create_dir(src.join(OsStr::from_bytes(&all[..100]))).unwrap();
    for (i, n) in names.iter().enumerate() {
        fs::write(src.join(OsStr::from_bytes(n)), format!("content {i}")).unwrap();
    }
    fs::write(src.join(OsStr::from_bytes(&all[..100])).join(OsStr::from_bytes(&all[100..])), b"nested")
        .unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(&all), src.join("link")).unwrap();
    let (out, events) = env.backup(&src);
    assert!(out.errors.is_empty() && errors_and_warnings(&events).is_empty(), "{events:?}");
    let t = env.path("t");
    let s = env.restore(&out.snapshot, &t).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let back = under(&t, &src);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            fs::read(back.join(OsStr::from_bytes(n))).unwrap(),
            format!("content {i}").as_bytes(),
            "{n:?}"
        );
    }
    assert_eq!(
        fs::read(back.join(OsStr::from_bytes(&all[..100])).join(OsStr::from_bytes(&all[100..]))).unwrap(),
        b"nested"
    );
    assert_eq!(fs::read_link(back.join("link")).unwrap().as_os_str().as_bytes(), &all[..]);
    let count = fs::read_dir(&back).unwrap().count();
    assert_eq!(count, names.len() + 2);
}

/// Create `levels` nested directories named `name` under `base` (relative to descriptors: the
/// full path is longer than PATH_MAX) and a file `leaf` at the bottom.
fn deep_tree(base: &Path, name: &[u8], levels: usize, leaf: &[u8]) {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let mut dir = fs::File::open(base).unwrap();
    for _ in 0..levels {
        mkdirat(Some(dir.as_raw_fd()), OsStr::from_bytes(name), Mode::from_bits_truncate(0o755)).unwrap();
        let fd = openat(
            Some(dir.as_raw_fd()),
            OsStr::from_bytes(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        dir = fs::File::from(unsafe_free_fd(fd));
    }
    let fd = openat(
        Some(dir.as_raw_fd()),
        "leaf",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let f = fs::File::from(unsafe_free_fd(fd));
    f.write_all_at(leaf, 0).unwrap();
}

/// nix 0.29 returns raw descriptors; `/proc/self/fd/N` reopens one as an owned `File` without
/// `unsafe`, and the raw one is closed.
fn unsafe_free_fd(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(fs::metadata(format!("/proc/self/fd/{fd}")).is_ok_and(|m| m.is_file()))
        .open(format!("/proc/self/fd/{fd}"))
        .unwrap();
    nix::unistd::close(fd).unwrap();
    f.into()
}

/// Read `leaf` at the bottom of `levels` directories `name` under `base`, through descriptors.
fn read_deep(base: &Path, name: &[u8], levels: usize) -> Vec<u8> {
    let mut dir = fs::File::open(base).unwrap();
    for _ in 0..levels {
        dir = fs::File::open(
            Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(OsStr::from_bytes(name)),
        )
        .unwrap();
    }
    fs::read(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join("leaf")).unwrap()
}

#[test]
fn a_path_longer_than_path_max_round_trips() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let name = vec![b'n'; 250];
    let levels = 24; // 24 * 251 = 6024 bytes below the source, well over PATH_MAX (4096)
    deep_tree(&src, &name, levels, b"at the bottom");
    let (out, events) = env.backup(&src);
    assert!(out.errors.is_empty() && errors_and_warnings(&events).is_empty(), "{events:?}");
    assert_eq!(out.snapshot.summary.files_new, 1);
    let t = env.path("t");
    let s = env.restore(&out.snapshot, &t).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files, 1);
    assert_eq!(read_deep(&under(&t, &src), &name, levels), b"at the bottom");
}

// ---------------------------------------------------------------------------------------------
// Sparse files, FIFOs, devices

#[test]
fn a_one_tib_sparse_file_costs_its_data_not_its_size() {
    const TIB: u64 = 1 << 40;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let f = fs::File::create(src.join("huge")).unwrap();
    f.set_len(TIB).unwrap();
    let extents: [(u64, u8); 4] = [(0, 1), (300 << 30, 2), (700 << 30, 3), (TIB - (1 << 20), 4)];
    for (at, v) in extents {
        f.write_all_at(&vec![v; 1 << 20], at).unwrap();
    }
    drop(f);
    let started = Instant::now();
    let (out, events) = env.backup(&src);
    assert!(errors_and_warnings(&events).is_empty(), "{events:?}");
    let sum = &out.snapshot.summary;
    eprintln!(
        "sparse backup: {:?}, read {} bytes, added {}",
        started.elapsed(),
        sum.bytes_read,
        sum.bytes_added
    );
    assert_eq!(sum.bytes_total, TIB);
    // Data extents are found at filesystem block granularity: 4 MiB of data, read once.
    assert!(sum.bytes_read >= 4 << 20 && sum.bytes_read <= 8 << 20, "read {} bytes", sum.bytes_read);
    assert!(sum.bytes_added <= 8 << 20, "stored {} bytes", sum.bytes_added);

    let t = env.path("t");
    let s = env.restore(&out.snapshot, &t).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let back = fs::File::open(under(&t, &src).join("huge")).unwrap();
    let m = back.metadata().unwrap();
    assert_eq!(m.len(), TIB);
    assert!(m.blocks() * 512 <= 16 << 20, "restored file allocates {} bytes", m.blocks() * 512);
    for (at, v) in extents {
        let mut buf = vec![0u8; 1 << 20];
        back.read_exact_at(&mut buf, at).unwrap();
        assert!(buf.iter().all(|b| *b == v), "extent at {at}");
        // The bytes just before each extent (after the first) are a hole of zeros.
        if at > 0 {
            let mut z = vec![1u8; 4096];
            back.read_exact_at(&mut z, at - 4096).unwrap();
            assert!(z.iter().all(|b| *b == 0));
        }
    }
    // Where the data is, as the filesystem sees it: only at the extents.
    let mut pos = 0u64;
    let mut data_at = Vec::new();
    while let Ok(d) = nix::unistd::lseek(back.as_raw_fd(), pos as i64, nix::unistd::Whence::SeekData) {
        let h = nix::unistd::lseek(back.as_raw_fd(), d, nix::unistd::Whence::SeekHole).unwrap();
        data_at.push((d as u64, h as u64));
        pos = h as u64;
        if pos >= TIB {
            break;
        }
    }
    assert_eq!(data_at.len(), extents.len(), "{data_at:?}");
}

/// Run `f` on a thread; fail if it does not finish within `secs` (it would block forever on a
/// FIFO it opened). `unblock` is called on a timeout so the thread can end.
fn with_deadline<T: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> T + Send + 'static,
    unblock: impl Fn(),
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => {
            unblock();
            panic!("did not finish within {secs} s: it blocked on something it opened");
        }
    }
}

#[test]
fn fifos_and_devices_are_never_opened() {
    let env = Arc::new(Env::new());
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"plain").unwrap();
    nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Devices of an unassigned major number: opening one fails (ENXIO), so an archiver that
    // opened it would report an error.
    let devices = is_root();
    if devices {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(&src.join("chr"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), makedev(240, 7)).unwrap();
        mknod(&src.join("blk"), SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(240, 8)).unwrap();
        assert!(fs::File::open(src.join("chr")).is_err());
    } else {
        eprintln!("note: not root, device nodes not created");
    }
    let fifo = src.join("fifo");
    let (e2, s2) = (env.clone(), src.clone());
    let (out, events) = with_deadline(
        60,
        move || e2.backup(&s2),
        move || {
            let _ = fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&fifo);
        },
    );
    assert!(out.errors.is_empty() && errors_and_warnings(&events).is_empty(), "{events:?}");
    assert_eq!(out.snapshot.summary.others, if devices { 3 } else { 1 });
    let t = env.path("t");
    let (e3, snap, t2) = (env.clone(), out.snapshot.clone(), t.clone());
    let s = with_deadline(60, move || e3.restore(&snap, &t2).unwrap(), || {});
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let back = under(&t, &src);
    assert!(fs::symlink_metadata(back.join("fifo")).unwrap().file_type().is_fifo());
    if devices {
        let c = fs::symlink_metadata(back.join("chr")).unwrap();
        assert!(c.file_type().is_char_device());
        assert_eq!(c.rdev(), nix::sys::stat::makedev(240, 7));
        assert!(fs::symlink_metadata(back.join("blk")).unwrap().file_type().is_block_device());
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}
impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

// ---------------------------------------------------------------------------------------------
// Restore targets

/// A read-only filesystem (a tmpfs mounted read-only), unmounted on drop.
struct ReadOnlyFs(tempfile::TempDir);
impl ReadOnlyFs {
    fn mount() -> Option<ReadOnlyFs> {
        let d = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(d.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(ReadOnlyFs(d))
    }
}
impl Drop for ReadOnlyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_read_only_target_is_a_clear_error_naming_it() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let (out, _) = env.backup(&src);
    // As root, permissions do not stop writes: use a read-only mount. Otherwise a directory
    // without write permission.
    let ro = if is_root() { ReadOnlyFs::mount() } else { None };
    let base = match &ro {
        Some(m) => m.0.path().to_path_buf(),
        None if !is_root() => {
            let p = env.path("ro");
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
            p
        }
        None => {
            offsite_testkit::prereq::missing("root without mount: read-only target not checked");
            return;
        }
    };
    for target in [base.clone(), base.join("sub/dir")] {
        let err = env.restore(&out.snapshot, &target).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EngineError::Io { .. }), "{msg}");
        assert!(msg.contains(&base.display().to_string()), "does not name the target: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(fs::read_dir(&base).unwrap().count(), 0, "something was written");
    }
}

#[test]
fn restore_over_symlinks_pointing_outside_writes_nothing_outside() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("f"), b"restored f").unwrap();
    fs::write(src.join("d/g"), b"restored g").unwrap();
    let (out, _) = env.backup(&src);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"precious").unwrap();
    let before = listing(&outside);
    // Symlinks where the snapshot has a file, a directory, and a directory on the way to the
    // source path (so `t/<src>` itself leads outside).
    let t = env.path("t");
    let back = under(&t, &src);
    fs::create_dir_all(&back).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), back.join("f")).unwrap();
    std::os::unix::fs::symlink(&outside, back.join("d")).unwrap();
    let s = env.restore(&out.snapshot, &t).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(fs::read(back.join("f")).unwrap(), b"restored f");
    assert_eq!(fs::read(back.join("d/g")).unwrap(), b"restored g");
    assert!(fs::symlink_metadata(back.join("d")).unwrap().is_dir());
    let t2 = env.path("t2");
    let parent = under(&t2, src.parent().unwrap());
    fs::create_dir_all(parent.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &parent).unwrap();
    let _ = env.restore(&out.snapshot, &t2);
    assert_eq!(listing(&outside), before);
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"precious");
}

fn listing(p: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = Vec::new();
    walk(p, &mut all);
    all.into_iter().map(|f| (f.clone(), fs::read(&f).unwrap_or_default())).collect()
}

// ---------------------------------------------------------------------------------------------
// Decompression bombs

/// A zstd frame of `total` zero bytes made of RLE blocks (128 KiB each, 4 bytes each in the
/// frame), declaring its content size or not.
fn rle_bomb(total: u64, declare: bool) -> Vec<u8> {
    const B: u64 = 128 * 1024;
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    if declare {
        f.extend_from_slice(&[0xc0, 0x38]); // 8-byte content size; window 128 KiB
        f.extend_from_slice(&total.to_le_bytes());
    } else {
        f.extend_from_slice(&[0x00, 0x38]); // no content size; window 128 KiB
    }
    let mut left = total;
    while left > 0 {
        let n = left.min(B);
        left -= n;
        let header = u32::from(left == 0) | (1 << 1) | ((n as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

/// Peak resident memory of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The part of the bomb test run in a child process of its own, so that no other test's
/// allocations move the peak. Returns the growth of the peak resident memory.
fn bombs_in_this_process() -> u64 {
    use offsite_format::{
        open_record, seal_record, storage_id, BlobId, BlobOpener, BlobType, IndexFile, IndexPack,
        PackBuilder, RecordType,
    };
    let env = Env::new();
    let keys = env.repo.keys();
    const BIG: u64 = 4 << 30; // 4 GiB of plaintext, 8 times the limit
    let bombs = [rle_bomb(BIG, true), rle_bomb(BIG, false)];
    // zstd itself agrees that these frames hold 4 GiB (checked on a small one: 1 MiB).
    assert_eq!(zstd::decode_all(&rle_bomb(1 << 20, false)[..]).unwrap(), vec![0u8; 1 << 20]);

    // Authentic records (index key, index type) whose JSON is a bomb.
    let records: Vec<Vec<u8>> = bombs
        .iter()
        .map(|frame| {
            let nonce: [u8; 12] = offsite_crypto::random_bytes();
            let mut ad = b"offsite record v2".to_vec();
            ad.extend_from_slice(&[RecordType::Index as u8, 0]);
            let mut r = b"OFS\x02".to_vec();
            r.extend_from_slice(&[RecordType::Index as u8, 0]);
            r.extend_from_slice(&nonce);
            let key = offsite_crypto::Key32::from_bytes(*keys.index_key().as_bytes());
            // The record body: the frame's length, the frame (FORMAT.md §5).
            let mut body = (frame.len() as u32).to_le_bytes().to_vec();
            body.extend_from_slice(frame);
            r.extend(offsite_crypto::Aead::new(&key).seal(&nonce, &ad, &body));
            r
        })
        .collect();
    // Authentic blobs whose compressed payload is a bomb: one recording a plausible chunk
    // length (1 MiB), one an absurd length.
    let mut pack = PackBuilder::new(&keys.public_key());
    let mut ids = Vec::new();
    for (i, frame) in bombs.iter().enumerate() {
        for raw in [1u32 << 20, u32::MAX] {
            let id = BlobId(keys.blob_id(&[i as u8, raw as u8]));
            let mut payload = vec![1u8];
            payload.extend_from_slice(frame);
            pack.add(BlobType::Data, id, payload, raw);
            ids.push(id);
        }
    }
    let pack = pack.finish();
    let storage = env.repo.storage();
    storage.write(offsite_backend::ObjectKind::Data, &pack.id.to_hex(), &pack.bytes).unwrap();
    let index = IndexFile {
        packs: vec![IndexPack {
            id: pack.id,
            eph: pack.eph,
            size: pack.bytes.len() as u64,
            blobs: pack.entries.clone(),
        }],
        ..Default::default()
    };
    let bytes = seal_record(RecordType::Index, keys, &index);
    storage.write(offsite_backend::ObjectKind::Index, &hex::encode(storage_id(&bytes)), &bytes).unwrap();
    let reader = env.reader();

    let _ = fs::write("/proc/self/clear_refs", "5"); // reset the peak where the kernel allows
    let before = vm_hwm();
    for r in &records {
        let e = open_record::<IndexFile>(RecordType::Index, keys, r).unwrap_err();
        assert!(e.to_string().contains("larger") || e.to_string().contains("limit"), "{e}");
    }
    let opener = BlobOpener::new(keys, &pack.eph).unwrap();
    for e in &pack.entries {
        let ct = &pack.bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert!(opener.open(keys, e, ct).is_err());
    }
    for id in &ids {
        assert!(reader.read(id, "test").is_err());
    }
    // Through storage: the bomb records as index objects refuse the index load.
    for r in &records {
        let name = hex::encode(storage_id(r));
        storage.write(offsite_backend::ObjectKind::Index, &name, r).unwrap();
        let err = Index::load(&**storage, keys).unwrap_err().to_string();
        assert!(err.contains(&name[..8]), "{err}");
        storage.delete(offsite_backend::ObjectKind::Index, &name).unwrap();
    }
    vm_hwm().saturating_sub(before)
}

#[test]
fn zstd_bombs_are_refused_without_allocating_them() {
    const CHILD: &str = "OFFSITE_BOMB_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let grew = bombs_in_this_process();
        println!("bomb-peak-growth={grew}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zstd_bombs_are_refused_without_allocating_them",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let grew: u64 = stdout
        .split("bomb-peak-growth=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no measurement in {stdout}"))
        .parse()
        .unwrap();
    eprintln!("zstd bombs: peak resident memory grew by {} KiB", grew / 1024);
    // The bound of the suite is 512 MiB (the plaintext limit); nothing near it is held: the
    // plaintexts are never materialized.
    assert!(grew < 64 << 20, "peak resident memory grew by {grew} bytes");
}
