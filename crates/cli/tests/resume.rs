//! Resuming interrupted backups with the real `offsite` binary: a backup of ~400 MiB of
//! incompressible data is interrupted (kill -9, Ctrl-C, a link cut by [`FaultProxy`]) once the
//! repository holds most of its packs and some index checkpoints, then the same command is run
//! again. The rerun must complete, store only what the interrupted run left unindexed (the issue's
//! bound: re-sent bytes <= what was written since the last checkpoint plus the packs in flight,
//! at most 128 MiB with the defaults), and leave a repository that `check --read-data` passes and
//! that restores byte for byte.
//!
//! "Re-sent" is measured twice, independently: as the packs `check` reports as named by no index
//! (stored by the interrupted run but never indexed, so their blobs were stored again), and as
//! the repository's final data size minus that of an uninterrupted backup of the same source.
//!
//! The tests run one at a time (they time a give-up and a kill point on a shared machine); the
//! source is generated once under the target's tmp directory and reused. Each prints `resume:`
//! lines with the measured bytes and timings on stderr (see them with `--nocapture`).

mod remote_support;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use offsite_testkit::FaultProxy;
use remote_support::World;

const MIB: u64 = 1 << 20;
/// Files in the source, each of [`FILE_SIZE`] pseudo-random bytes.
const FILES: u64 = 8;
const FILE_SIZE: u64 = 50 * MIB;
const SOURCE_SIZE: u64 = FILES * FILE_SIZE;
/// The repository's default pack size: every data pack but the last is at least this big.
const PACK_SIZE: u64 = 8 * MIB;
/// The writer's default: an index checkpoint names (at least) this many packs.
const CHECKPOINT_PACKS: u64 = 8;
/// The bound on re-sent bytes: the packs since the last checkpoint plus those in flight.
const RESEND_BOUND: u64 = 128 * MIB;
/// Interrupt once the repository holds index checkpoints naming at least 4 * 8 packs = 256 MiB
/// (64% of the source, so a rerun that re-sent everything would be far above the "at most half
/// a full upload" line)...
const KILL_INDEXES: u64 = 4;
/// ...and 3 packs more (~70% of the ~48 packs of a full backup), which no index names yet:
/// the rerun has something it must store again, and no more.
const KILL_PACKS: u64 = KILL_INDEXES * CHECKPOINT_PACKS + 3;
/// How often the repository is looked at while waiting for the kill point.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for the kill point.
const KILL_POINT_DEADLINE: Duration = Duration::from_secs(120);
/// Longest wait for a signalled process to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Remote settings of the link-cut test: give up after 4 s without the server.
const REMOTE_FLAGS: [&str; 6] = ["--idle-timeout", "2s", "--connect-timeout", "2s", "--give-up-after", "4s"];
/// A backup through a cut link must fail within this long.
const GIVE_UP_DEADLINE: Duration = Duration::from_secs(30);

/// Serializes the tests: each runs 400 MiB backups and times them.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A stored object's name: exactly 64 lowercase hex characters (temp files are not).
fn is_object_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------- the source and the reference

/// The source every test backs up, and what an uninterrupted backup of it stores.
struct Fixture {
    /// `FILES` files of incompressible bytes.
    src: PathBuf,
    /// Data packs of an uninterrupted backup into a fresh local repository.
    reference: Tally,
    /// How long that backup took.
    reference_secs: f64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let src = source();
        let mut w = World::new();
        let repo = w.path("repo");
        w.location = utf8(&repo).to_string();
        w.ok(&["init"]);
        let started = Instant::now();
        w.ok(&["backup", utf8(&src)]);
        let reference_secs = started.elapsed().as_secs_f64();
        let reference = Tally::of(&data_objects(&repo));
        eprintln!(
            "resume: reference: uninterrupted backup of {} MiB stored {} packs, {} bytes in {reference_secs:.2}s",
            SOURCE_SIZE / MIB,
            reference.count,
            reference.bytes
        );
        Fixture { src, reference, reference_secs }
    })
}

/// The source directory under the target's tmp directory, generated unless a complete copy is
/// there (a marker file, written last, says so).
fn source() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume-source");
    let (src, marker) = (base.join("src"), base.join("complete-v1"));
    if !marker.is_file() {
        let started = Instant::now();
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&src).expect("mkdir source");
        for i in 0..FILES {
            write_random(&src.join(format!("file-{i}.bin")), FILE_SIZE, 0x5EED_0000 + i);
        }
        fs::write(&marker, b"").expect("marker");
        eprintln!(
            "resume: generated {} MiB of source in {:.2}s",
            SOURCE_SIZE / MIB,
            started.elapsed().as_secs_f64()
        );
    }
    src.canonicalize().expect("canonical source")
}

/// `len` incompressible bytes (xorshift64*, 8 bytes a step) written in 1 MiB blocks.
fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = fs::File::create(path).expect("create source file");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; MIB as usize];
    for _ in 0..len / MIB {
        for word in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        f.write_all(&block).expect("write source file");
    }
}

// ---------------------------------------------------------------- looking at a repository

/// A count of objects and their bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    count: u64,
    bytes: u64,
}

impl Tally {
    fn of(objects: &[(String, u64)]) -> Tally {
        Tally { count: objects.len() as u64, bytes: objects.iter().map(|(_, n)| n).sum() }
    }
}

/// Files directly in `dir` named like stored objects, with their sizes. Temp files (and
/// files that vanish while listed) are left out; a missing `dir` holds nothing.
fn objects_in(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !is_object_id(&name) {
                return None;
            }
            let meta = e.metadata().ok()?;
            meta.is_file().then_some((name, meta.len()))
        })
        .collect()
}

/// The packs of the repository whose root (restic layout) is `root`: `root/data/xx/<id>`.
fn data_objects(root: &Path) -> Vec<(String, u64)> {
    let Ok(dirs) = fs::read_dir(root.join("data")) else { return Vec::new() };
    dirs.filter_map(Result::ok).flat_map(|d| objects_in(&d.path())).collect()
}

/// Files under `root/data` that are not stored objects (temp files left behind).
fn leftovers(root: &Path) -> Tally {
    let mut t = Tally::default();
    let Ok(dirs) = fs::read_dir(root.join("data")) else { return t };
    for d in dirs.filter_map(Result::ok) {
        let Ok(files) = fs::read_dir(d.path()) else { continue };
        for f in files.filter_map(Result::ok) {
            if !f.file_name().to_str().is_some_and(is_object_id) {
                t.count += 1;
                t.bytes += f.metadata().map_or(0, |m| m.len());
            }
        }
    }
    t
}

// ---------------------------------------------------------------- driving the binary

/// Start `offsite ARGS` with stdout and stderr going to `root/NAME.out` and `root/NAME.err`.
fn spawn(w: &World, args: &[&str], name: &str) -> Child {
    let out = fs::File::create(w.path(&format!("{name}.out"))).expect("stdout file");
    let err = fs::File::create(w.path(&format!("{name}.err"))).expect("stderr file");
    w.cmd(args).stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().expect("start offsite")
}

/// What a spawned run printed, for failure messages.
fn printed(w: &World, name: &str) -> String {
    let read = |ext: &str| fs::read_to_string(w.path(&format!("{name}.{ext}"))).unwrap_or_default();
    format!("--- stdout\n{}\n--- stderr\n{}", read("out"), read("err"))
}

/// The repository when the interrupted backup was interrupted.
#[derive(Debug)]
struct KillPoint {
    packs: Tally,
    indexes: u64,
    after: Duration,
}

/// Poll the repository rooted at `root` until it holds [`KILL_PACKS`] packs and
/// [`KILL_INDEXES`] index objects; panics if the backup ends first or the deadline passes.
fn wait_for_kill_point(child: &mut Child, root: &Path, w: &World, name: &str, started: Instant) -> KillPoint {
    loop {
        if let Some(status) = child.try_wait().expect("wait for offsite") {
            panic!(
                "the backup ended ({status}) before the kill point ({KILL_PACKS} packs, {KILL_INDEXES} \
                 index objects): {} packs, {} index objects\n{}",
                data_objects(root).len(),
                objects_in(&root.join("index")).len(),
                printed(w, name)
            );
        }
        let packs = Tally::of(&data_objects(root));
        let indexes = objects_in(&root.join("index")).len() as u64;
        if packs.count >= KILL_PACKS && indexes >= KILL_INDEXES {
            return KillPoint { packs, indexes, after: started.elapsed() };
        }
        assert!(
            started.elapsed() < KILL_POINT_DEADLINE,
            "no kill point after {KILL_POINT_DEADLINE:?}: {} packs, {indexes} index objects",
            packs.count
        );
        std::thread::sleep(POLL); // polling the repository, not guessing a delay
    }
}

/// Poll `child` until it exits or `deadline` passes (then None, the child still running).
fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for offsite") {
            return Some(status);
        }
        if started.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    kill(pid, sig).expect("signal offsite");
}

/// `offsite FLAGS check --read-data` must pass; returns the bytes of the packs it reports as
/// named by no index (stored by an interrupted run, never indexed), looked up in `packs`.
fn check_read_data(w: &World, flags: &[&str], packs: &[(String, u64)]) -> Tally {
    let mut args = flags.to_vec();
    args.extend(["check", "--read-data"]);
    let out = w.cmd(&args).output().expect("run offsite check");
    let shown = remote_support::show(&out);
    assert!(out.status.success(), "check --read-data failed ({}):\n{shown}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no problems found"), "{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut t = Tally::default();
    for line in stderr.lines().filter(|l| l.contains("pack is in no index")) {
        let short = line
            .strip_prefix("offsite: warning: data/")
            .and_then(|r| r.split(':').next())
            .unwrap_or_else(|| panic!("unexpected warning: {line}"));
        let found: Vec<u64> = packs.iter().filter(|(id, _)| id.starts_with(short)).map(|(_, n)| *n).collect();
        assert_eq!(found.len(), 1, "pack {short} of {line:?} is not one stored pack");
        t.count += 1;
        t.bytes += found[0];
    }
    t
}

/// Restore the latest snapshot and compare it with the source byte for byte.
fn assert_restores(w: &World, src: &Path) {
    let target = w.path("restored");
    let out = w.ok(&["restore", "latest", "--target", utf8(&target)]);
    assert!(out.contains("restored snapshot"), "{out}");
    let restored = target.join(src.strip_prefix("/").expect("absolute source"));
    assert_eq!(remote_support::assert_same_tree(src, &restored), FILES as usize);
    fs::remove_dir_all(&target).expect("remove the restored copy");
}

/// The rerun's numbers, checked against the bounds.
struct Resumed {
    label: &'static str,
    at_kill: KillPoint,
    /// packs stored when the rerun started
    before: Tally,
    /// packs stored when it ended
    after: Tally,
    /// packs named by no index after the rerun
    unreferenced: Tally,
    rerun_secs: f64,
}

impl Resumed {
    fn assert_bounds(&self, fx: &Fixture) {
        let Resumed { label, at_kill, before, after, unreferenced, rerun_secs } = self;
        let full = fx.reference.bytes;
        let indexed_min = at_kill.indexes * CHECKPOINT_PACKS * PACK_SIZE;
        let added = after.bytes - before.bytes;
        let over_reference = after.bytes.saturating_sub(full);
        eprintln!(
            "resume: {label}: interrupted after {:.2}s at {} packs ({} bytes) and {} index objects \
             (>= {indexed_min} bytes indexed); {} packs ({} bytes) stored when the rerun started",
            at_kill.after.as_secs_f64(),
            at_kill.packs.count,
            at_kill.packs.bytes,
            at_kill.indexes,
            before.count,
            before.bytes
        );
        eprintln!(
            "resume: {label}: rerun in {rerun_secs:.2}s (uninterrupted: {:.2}s) added {} packs, {added} bytes \
             ({:.1}% of a full backup's {full}); re-sent: {} unindexed packs, {} bytes; final size - \
             uninterrupted size = {over_reference} bytes",
            fx.reference_secs,
            after.count - before.count,
            100.0 * added as f64 / full as f64,
            unreferenced.count,
            unreferenced.bytes
        );
        assert!(
            unreferenced.bytes <= RESEND_BOUND,
            "{label}: {} bytes were stored by the interrupted run and stored again by the rerun \
             (more than the {RESEND_BOUND} bytes since the last checkpoint and in flight)",
            unreferenced.bytes
        );
        assert!(
            over_reference <= RESEND_BOUND + MIB,
            "{label}: the repository holds {} bytes of packs, {over_reference} more than an \
             uninterrupted backup's {full}",
            after.bytes
        );
        assert!(
            unreferenced.bytes <= before.bytes.saturating_sub(indexed_min),
            "{label}: {} bytes were stored again, more than the {} bytes not yet indexed at the kill",
            unreferenced.bytes,
            before.bytes.saturating_sub(indexed_min)
        );
        assert!(
            added <= full.saturating_sub(indexed_min) + RESEND_BOUND,
            "{label}: the rerun stored {added} bytes; with {indexed_min} bytes indexed before the \
             interruption it should store at most {}",
            full.saturating_sub(indexed_min) + RESEND_BOUND
        );
        assert!(
            added <= full / 2,
            "{label}: the rerun stored {added} bytes, more than half of a full backup ({full}), \
             although {indexed_min} bytes were indexed before the interruption"
        );
    }
}

// ---------------------------------------------------------------- local repository, signals

/// Back up the source into a local repository, send `sig` at the kill point, rerun the same
/// command and check what it stored, the repository and the restore.
fn local_backup_interrupted_by(sig: Signal, label: &'static str) {
    let _serial = serial();
    let fx = fixture();
    let mut w = World::new();
    let repo = w.path("repo");
    w.location = utf8(&repo).to_string();
    w.ok(&["init"]);
    let src = utf8(&fx.src);

    let started = Instant::now();
    let mut child = spawn(&w, &["backup", src], "interrupted");
    let at_kill = wait_for_kill_point(&mut child, &repo, &w, "interrupted", started);
    signal(&child, sig);
    let signalled = Instant::now();
    let status = wait_exit(&mut child, EXIT_DEADLINE);
    let exit_time = signalled.elapsed();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{label}: offsite still ran {EXIT_DEADLINE:?} after {sig}");
    };
    eprintln!("resume: {label}: exited {status} {:.3}s after {sig}", exit_time.as_secs_f64());
    assert!(!status.success(), "{label}: an interrupted backup exited successfully");
    assert!(
        objects_in(&repo.join("snapshots")).is_empty(),
        "{label}: the interrupted backup wrote a snapshot: it was not interrupted\n{}",
        printed(&w, "interrupted")
    );

    let before = Tally::of(&data_objects(&repo));
    let temp = leftovers(&repo);
    let rerun = Instant::now();
    w.ok(&["backup", src]);
    let rerun_secs = rerun.elapsed().as_secs_f64();
    let packs = data_objects(&repo);
    let after = Tally::of(&packs);
    let unreferenced = check_read_data(&w, &[], &packs);
    eprintln!(
        "resume: {label}: {} temp files ({} bytes) left by the interrupted run, {} after the rerun",
        temp.count,
        temp.bytes,
        leftovers(&repo).count
    );
    Resumed { label, at_kill, before, after, unreferenced, rerun_secs }.assert_bounds(fx);
    let snapshots = w.ok(&["snapshots", "--json"]);
    assert_eq!(snapshots.lines().count(), 1, "{label}: one snapshot expected: {snapshots}");
    assert_restores(&w, &fx.src);
}

#[test]
fn local_backup_killed_with_sigkill_resumes_without_resending() {
    local_backup_interrupted_by(Signal::SIGKILL, "local kill -9");
}

#[test]
fn local_backup_interrupted_with_ctrl_c_resumes_without_resending() {
    local_backup_interrupted_by(Signal::SIGINT, "local Ctrl-C");
}

// ---------------------------------------------------------------- REST repository, link cut

#[test]
fn rest_backup_through_a_cut_link_gives_up_then_resumes_without_resending() {
    let _serial = serial();
    let fx = fixture();
    let Some(rest) = remote_support::rclone_rest(&[]) else { return };
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], rest.port)));
    let served = rest.dir.path().join("data");
    let mut w = World::new();
    let url = format!("http://{}/", proxy.addr());
    w.location = format!("rest:{url}");
    let src = utf8(&fx.src);
    let mut args: Vec<&str> = REMOTE_FLAGS.to_vec();
    args.extend(["backup", src]);
    let mut init: Vec<&str> = REMOTE_FLAGS.to_vec();
    init.push("init");
    w.ok(&init);

    let started = Instant::now();
    let mut child = spawn(&w, &args, "interrupted");
    let at_kill = wait_for_kill_point(&mut child, &served, &w, "interrupted", started);
    proxy.blackhole(true);
    let cut = Instant::now();
    let status = wait_exit(&mut child, GIVE_UP_DEADLINE);
    let gave_up = cut.elapsed();
    let Some(status) = status else {
        let stats = proxy.stats();
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "rest link cut: offsite still ran {GIVE_UP_DEADLINE:?} after the link was cut \
             (give-up-after 4s, idle timeout 2s); proxy: {stats:?}\n{}",
            printed(&w, "interrupted")
        );
    };
    eprintln!("resume: rest link cut: exited {status} {:.2}s after the link was cut", gave_up.as_secs_f64());
    let shown = printed(&w, "interrupted");
    assert_eq!(status.code(), Some(1), "{shown}");
    let stderr = fs::read_to_string(w.path("interrupted.err")).expect("stderr of the backup");
    let line = remote_support::error_line(&stderr);
    assert!(line.contains("storage unreachable"), "{line}");
    assert!(line.contains(&url), "does not name the repository: {line}");
    assert!(gave_up < GIVE_UP_DEADLINE, "took {gave_up:?} to give up on a cut link: {line}");
    assert!(objects_in(&served.join("snapshots")).is_empty(), "a snapshot was written: {shown}");

    // The server ends the requests the proxy swallowed once their client is gone; wait for
    // that (so partial uploads are settled) before measuring what is stored.
    let settled = proxy.wait_until(Duration::from_secs(20), |s| s.open == 0);
    proxy.heal();
    let before = Tally::of(&data_objects(&served));
    eprintln!(
        "resume: rest link cut: connections closed: {settled}; {} partial/temp files on the server",
        leftovers(&served).count
    );
    let rerun = Instant::now();
    w.ok(&args);
    let rerun_secs = rerun.elapsed().as_secs_f64();
    let packs = data_objects(&served);
    let after = Tally::of(&packs);
    let unreferenced = check_read_data(&w, &REMOTE_FLAGS, &packs);
    Resumed { label: "rest link cut", at_kill, before, after, unreferenced, rerun_secs }.assert_bounds(fx);
    assert_restores(&w, &fx.src);
}
