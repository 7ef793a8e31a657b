//! Restore as root into a target other users can write: between two of restore's steps another
//! user (a thread whose filesystem identity is `nobody`, see [`as_other_user`]) or, for the
//! checks behind the first defence, root itself swaps a name restore is working on. The swap
//! happens at a named step of restore (`offsite_engine::restore::hook`), so every run hits the
//! window. Nothing outside the target may change, and restore either restores what the
//! snapshot holds or names the entry it refused.
//!
//! These tests need root (chown, device nodes, `setfsuid`); without it they print a note and
//! pass, unless CI=true, where they fail.
#![allow(clippy::unwrap_used)]

mod fixture_repo;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fixture_repo::{file, noise, Fixture, Spec};
use offsite_engine::restore::hook::{set_step_hook, Step};
use offsite_engine::restore::TMP_PREFIX;
use offsite_engine::{restore, NullReporter, RestoreOptions, RestoreSummary};
use offsite_format::{BlobId, ContentItem, Node, NodeKind, RawBytes, Snapshot};
use offsite_repo::BlobReader;
use tempfile::TempDir;

/// The other user.
const NOBODY: u32 = 65534;
/// Owner of the restored entries (not root, so a chown shows).
const OWNER: u32 = 4242;

/// The hook is one per process: these tests take turns.
static TURN: Mutex<()> = Mutex::new(());

/// Whether the tests can run here (root); outside CI a note explains the skip.
fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and these tests need root");
    eprintln!("NOTE: skipping: restore race tests need root");
    false
}

/// A node of `name` owned by [`OWNER`].
fn owned(name: &str, kind: NodeKind) -> Node {
    Node { uid: OWNER, gid: OWNER, mtime: (1_600_000_000, 5), ..fixture_repo::node(name.as_bytes(), kind) }
}

/// A base directory holding the target and the "outside" world on the same filesystem (so hard
/// links between them are possible), with a root-only secret outside; and a repository.
struct World {
    base: TempDir,
    fx: Fixture,
}

impl World {
    /// `target_mode`: 0o777 for a target every user can write into.
    fn new(target_mode: u32) -> World {
        let base = tempfile::tempdir().unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(base.path().join("target")).unwrap();
        fs::set_permissions(base.path().join("target"), fs::Permissions::from_mode(target_mode)).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        fs::write(base.path().join("outside/secret"), b"root:secret\n").unwrap();
        fs::set_permissions(base.path().join("outside/secret"), fs::Permissions::from_mode(0o600)).unwrap();
        World { base, fx: Fixture::new() }
    }

    /// A snapshot of `entries` (see `fixture_repo`: 64 KiB packs), and a reader.
    fn snapshot(&self, entries: &[(&str, Spec)]) -> (BlobReader, Snapshot) {
        let (_, snap) = self.fx.snapshot("2026-01-01T00:00:00Z", entries);
        (self.fx.reader(), snap)
    }

    fn target(&self) -> PathBuf {
        self.base.path().join("target")
    }

    fn secret(&self) -> PathBuf {
        self.base.path().join("outside/secret")
    }

    /// Owner, mode, mtime, link-independent content of the secret.
    fn secret_state(&self) -> (u32, u32, i64, i64, Vec<u8>) {
        let m = fs::metadata(self.secret()).unwrap();
        (m.uid(), m.mode(), m.mtime(), m.mtime_nsec(), fs::read(self.secret()).unwrap())
    }

    fn restore(&self, reader: &BlobReader, snap: &Snapshot) -> RestoreSummary {
        let o = RestoreOptions { target: self.target(), threads: 2, ..Default::default() };
        restore(reader, snap, &o, &NullReporter).unwrap()
    }
}

/// Run `f` on a thread whose filesystem identity is `nobody`: the kernel checks its file
/// operations as that user's and drops root's capabilities to override them (setfsuid(2): the
/// change is per thread and ends with it), so it can do just what another local user could.
fn as_other_user<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(NOBODY));
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(NOBODY));
            f()
        })
        .join()
        .unwrap()
    })
}

/// The other user's move: every temporary name restore has in `dir` (not a directory) is moved
/// aside and `plant` puts something else under it. Returns how many were swapped.
fn swap_temporaries(dir: &Path, plant: &(dyn Fn(&Path) + Sync)) -> usize {
    as_other_user(|| {
        let mut n = 0;
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let tmp = e.file_name().as_bytes().starts_with(TMP_PREFIX.as_bytes())
                && e.file_name().len() == TMP_PREFIX.len() + 16;
            if tmp && !e.file_type().unwrap().is_dir() {
                let mut aside = e.path().into_os_string();
                aside.push(".moved");
                fs::rename(e.path(), aside).unwrap();
                plant(&e.path());
                n += 1;
            }
        }
        n
    })
}

/// Sets the step hook for one test (taking the turn) and removes it when dropped.
struct Hooked {
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Hooked {
    /// Run `f` at every step under `target`.
    fn new(target: PathBuf, f: impl Fn(&Step<'_>) + Send + Sync + 'static) -> Hooked {
        let turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set_step_hook(Some(Arc::new(move |s: &Step<'_>| {
            if s.dir.starts_with(&target) {
                f(s)
            }
        })));
        Hooked { _turn: turn }
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        set_step_hook(None);
    }
}

fn errors_of<'a>(s: &'a RestoreSummary, path: &str) -> Vec<&'a str> {
    s.errors.iter().filter(|(p, _)| p == path).map(|(_, m)| m.as_str()).collect()
}

/// Another user swaps the temporary names of a FIFO and a device node for symlinks to a root-only
/// file right after restore creates them. Restore used to set their modes with a chmod that
/// follows symlinks, in the shared directory: the secret became readable by all. Every other
/// kind (symlink, file, hard link) is restored in the same shared target too.
#[test]
fn another_user_cannot_redirect_the_modes_of_fifos_and_devices() {
    if !root() {
        return;
    }
    let w = World::new(0o777);
    let fifo = Node { mode: 0o646, ..owned("fifo", NodeKind::Fifo) };
    let null =
        Node { mode: 0o604, rdev: Some(nix::sys::stat::makedev(1, 3)), ..owned("null", NodeKind::Chardev) };
    let link = Node { target: Some(RawBytes(b"fifo".to_vec())), ..owned("link", NodeKind::Symlink) };
    // Two names of one file, whose content is the blob of `x`.
    let hello = BlobId(w.fx.repo.keys().blob_id(b"hello"));
    let linked = |name| {
        let content = Some(vec![ContentItem::Blob(hello)]);
        Spec::Raw(Box::new(Node {
            size: 5,
            content,
            inode: 7,
            dev: 1,
            links: 2,
            ..owned(name, NodeKind::File)
        }))
    };
    let (reader, snap) = w.snapshot(&[
        ("/fifo", Spec::Raw(Box::new(fifo))),
        ("/null", Spec::Raw(Box::new(null))),
        ("/link", Spec::Raw(Box::new(link))),
        ("/x", file(b"hello")),
        ("/h1", linked("h1")),
        ("/h2", linked("h2")),
    ]);
    let before = w.secret_state();
    let crossed = Arc::new(AtomicUsize::new(0));
    let (c, secret) = (crossed.clone(), w.secret());
    let hook = Hooked::new(w.target(), move |s| {
        if s.site == "restore.other_created" {
            c.fetch_add(1, Ordering::SeqCst);
            swap_temporaries(s.dir, &|p| std::os::unix::fs::symlink(&secret, p).unwrap());
        }
    });
    let sum = w.restore(&reader, &snap);
    drop(hook);
    assert_eq!(w.secret_state(), before, "the file outside the target changed");
    assert_eq!(crossed.load(Ordering::SeqCst), 3);
    assert!(sum.errors.is_empty(), "{:?}", sum.errors);
    let t = w.target();
    let m = fs::symlink_metadata(t.join("fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o646, OWNER));
    let m = fs::symlink_metadata(t.join("null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!((m.mode() & 0o7777, m.uid(), m.rdev()), (0o604, OWNER, nix::sys::stat::makedev(1, 3)));
    let m = fs::symlink_metadata(t.join("link")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(
        (fs::read_link(t.join("link")).unwrap(), m.uid(), m.mtime()),
        ("fifo".into(), OWNER, 1_600_000_000)
    );
    let (h1, h2) = (fs::metadata(t.join("h1")).unwrap(), fs::metadata(t.join("h2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink(), h1.uid()), (h2.ino(), 2, OWNER));
    assert_eq!(fs::read(t.join("h2")).unwrap(), b"hello");
    let mut names: Vec<_> = fs::read_dir(&t).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["fifo", "h1", "h2", "link", "null", "x"], "left in the target");
}

/// Behind the first defence: even when the FIFO's temporary is replaced by a hard link to a
/// root-only file (here by root itself, where it lies), restore sets nothing on it. Restore
/// used to chown, chmod and touch whatever the name held.
#[test]
fn a_fifo_replaced_before_its_metadata_is_refused_not_chowned() {
    if !root() {
        return;
    }
    let w = World::new(0o700);
    let fifo = Node { mode: 0o666, ..owned("fifo", NodeKind::Fifo) };
    let (reader, snap) = w.snapshot(&[("/fifo", Spec::Raw(Box::new(fifo)))]);
    let before = w.secret_state();
    let secret = w.secret();
    let hook = Hooked::new(w.target(), move |s| {
        if s.site == "restore.other_created" {
            fs::remove_file(s.at).unwrap();
            fs::hard_link(&secret, s.at).unwrap();
        }
    });
    let sum = w.restore(&reader, &snap);
    drop(hook);
    assert_eq!(w.secret_state(), before, "the file outside the target changed");
    let errs = errors_of(&sum, "/fifo");
    assert!(errs.len() == 1 && errs[0].contains("replaced"), "{:?}", sum.errors);
}

/// 200,000 bytes in 32 KiB blobs over 64 KiB packs: restore writes the file in one run per pack
/// and opens its temporary again by name for each run after the first.
fn big() -> Vec<u8> {
    noise(3, 200_000)
}

/// Another user replaces a file's temporary with a hard link to a file of their own before
/// restore opens it again: restore used to write the snapshot's content into it and chown it.
#[test]
fn another_user_cannot_receive_a_file_through_its_reopened_temporary() {
    if !root() {
        return;
    }
    let w = World::new(0o777);
    let (reader, snap) = w.snapshot(&[("/big", file(&big()))]);
    let mine = w.base.path().join("outside/mine");
    fs::set_permissions(w.base.path().join("outside"), fs::Permissions::from_mode(0o777)).unwrap();
    as_other_user(|| fs::write(&mine, b"mine").unwrap());
    let crossed = Arc::new(AtomicUsize::new(0));
    let (c, m) = (crossed.clone(), mine.clone());
    let hook = Hooked::new(w.target(), move |s| {
        // Once: the first reopen is enough.
        if s.site == "restore.tmp_reopen" && c.fetch_add(1, Ordering::SeqCst) == 0 {
            swap_temporaries(s.dir, &|p| fs::hard_link(&m, p).unwrap());
        }
    });
    let sum = w.restore(&reader, &snap);
    drop(hook);
    assert!(crossed.load(Ordering::SeqCst) >= 1, "the temporary was not opened again");
    let (bytes, meta) = (fs::read(&mine).unwrap(), fs::metadata(&mine).unwrap());
    assert!(bytes == b"mine", "root wrote {} bytes into the other user's file", bytes.len());
    assert_eq!(meta.uid(), NOBODY, "root chowned the other user's file");
    assert!(sum.errors.is_empty(), "{:?}", sum.errors);
    assert!(fs::read(w.target().join("big")).unwrap() == big());
}

/// Behind the first defence: a temporary replaced by another file before it is opened again (by
/// root, where it lies) is refused by its device and inode, and the other file is not written.
/// The temporary is moved aside, not deleted: a deleted file's inode number can be given to the
/// next file at once, which no check by number can tell (one reason temporaries are made where
/// no one else can write).
#[test]
fn a_temporary_replaced_before_its_reopen_is_refused() {
    if !root() {
        return;
    }
    let w = World::new(0o700);
    let (reader, snap) = w.snapshot(&[("/big", file(&big()))]);
    let keep = w.base.path().join("outside/keep");
    let (k, done) = (keep.clone(), AtomicBool::new(false));
    let hook = Hooked::new(w.target(), move |s| {
        if s.site == "restore.tmp_reopen" && !done.swap(true, Ordering::SeqCst) {
            let mut aside = s.at.as_os_str().to_owned();
            aside.push(".moved");
            fs::rename(s.at, aside).unwrap();
            fs::write(s.at, b"other").unwrap();
            fs::hard_link(s.at, &k).unwrap();
        }
    });
    let sum = w.restore(&reader, &snap);
    drop(hook);
    let bytes = fs::read(&keep).unwrap();
    assert!(bytes == b"other", "the file put in the temporary's place was written ({} bytes)", bytes.len());
    let errs = errors_of(&sum, "/big");
    assert!(errs.len() == 1 && errs[0].contains("replaced"), "{:?}", sum.errors);
    assert!(!w.target().join("big").exists());
}

/// Another user swaps a directory restore created for one of their own, right before restore
/// opens it by name: the first time (just after creating it) or again (after letting its
/// descriptor go: 200 subdirectories overflow the cache of open ones). Restore used to go on
/// in the other user's directory and at the end chown and chmod it as the snapshot says.
#[test]
fn another_user_cannot_swap_a_directory_between_its_opens() {
    if !root() {
        return;
    }
    for k in [1, 2] {
        let w = World::new(0o777);
        let names: Vec<String> = (0..200).map(|i| format!("/d/s{i:03}")).collect();
        let mut entries: Vec<(&str, Spec)> = names.iter().map(|n| (n.as_str(), Spec::EmptyDir)).collect();
        entries.push(("/d/f", file(b"f")));
        let (reader, snap) = w.snapshot(&entries);
        let crossed = Arc::new(AtomicUsize::new(0));
        let c = crossed.clone();
        let hook = Hooked::new(w.target(), move |s| {
            if s.site == "restore.dir_open" && s.name == b"d" && c.fetch_add(1, Ordering::SeqCst) + 1 == k {
                let parent = s.dir.to_path_buf();
                as_other_user(|| {
                    fs::rename(parent.join("d"), parent.join("d.moved")).unwrap();
                    fs::create_dir(parent.join("d")).unwrap();
                });
            }
        });
        let sum = w.restore(&reader, &snap);
        drop(hook);
        assert!(crossed.load(Ordering::SeqCst) >= k, "crossing {k} of d never came");
        let m = fs::metadata(w.target().join("d")).unwrap();
        assert_eq!(m.uid(), NOBODY, "crossing {k}: the other user's directory was chowned");
        let errs = errors_of(&sum, "/d");
        assert!(
            !errs.is_empty() && errs.iter().all(|e| e.contains("replaced")),
            "crossing {k}: {:?}",
            sum.errors
        );
    }
}

/// A private place a crashed restore left (ours, closed to others, holding temporaries) is
/// removed by the next restore into that directory; a directory with such a name that another
/// user made is left alone.
#[test]
fn private_places_left_by_a_crash_are_removed_and_others_are_not() {
    if !root() {
        return;
    }
    let w = World::new(0o777);
    let (reader, snap) = w.snapshot(&[("/f", file(b"f"))]);
    let ours = w.target().join(format!("{TMP_PREFIX}00000000000000aa"));
    fs::create_dir(&ours).unwrap();
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(ours.join(format!("{TMP_PREFIX}00000000000000bb")), b"half").unwrap();
    let theirs = w.target().join(format!("{TMP_PREFIX}00000000000000cc"));
    as_other_user(|| fs::create_dir(&theirs).unwrap());
    let sum = w.restore(&reader, &snap);
    assert!(sum.errors.is_empty(), "{:?}", sum.errors);
    assert!(!ours.exists(), "the crashed restore's private place is still there");
    assert!(theirs.is_dir(), "another user's directory was removed");
}
