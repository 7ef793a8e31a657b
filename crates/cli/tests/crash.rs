//! Crash consistency of the real `offsite` binary (issue 4, suite 1).
//!
//! Crashes are made two ways: named failpoints (`OFFSITE_FAILPOINT=<site>:<k>` aborts the
//! process at the k-th crossing of a durable step, see `offsite_backend::failpoint`), whose
//! crossings a traced run enumerates, and SIGKILL at random moments. After every crash:
//!
//! - `offsite check` passes without repair (packs named by no index are allowed: they are the
//!   expected leftovers of an interrupted backup, which `check` reports as warnings);
//! - every snapshot acknowledged before the crash (its command exited 0) is listed and restores
//!   identical to the tree it was taken of; only the in-flight snapshot may be missing, and when
//!   it is there it restores identical too;
//! - rerunning the interrupted command succeeds, without storing again what the interrupted run
//!   had stored: packs an index checkpoint names are deduplicated against, and the rest were
//!   journaled in the client cache before their upload (`offsite_repo::PackJournal`) and are
//!   adopted by the rerun; only uploads cut in flight are lost.
//!
//! For key commands the repository must open after a crash with the old passphrase or, only once
//! the command's step that makes the new key visible completed, the new one: never with neither.
//!
//! A crashed `init` either left no config, and then rerunning `init` completes it (a key file
//! written before the crash is adopted when the same passphrase opens it and nothing else is
//! stored; otherwise `init` refuses and names the key files to remove, since they might belong
//! to a repository whose config was lost), or it left a config, and then the repository opens,
//! passes `check`, and a rerun of `init` says it already exists. It never leaves a repository
//! that opens but is broken.
//!
//! The tests run one at a time (they time backups on a shared machine). Each prints `crash:`
//! lines on stderr with its counts and timings (see them with `--nocapture`). Settings:
//! `OFFSITE_CRASH_KILLS` (kills of [`sigkill_at_random_moments`], default 100),
//! `OFFSITE_CRASH_SEED` (its seed, printed by every run so a failure replays) and
//! `OFFSITE_CRASH_BIG_MIB` (the source size of
//! [`one_backup_interrupted_ten_times_restores_identical_within_the_upload_bound`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use offsite_testkit::tree::{self, Rng, Spec};
use serde_json::Value;

const PASSWORD: &str = "crash test passphrase";
/// The passphrase of the key `key add` adds.
const SECOND_PASSWORD: &str = "the added key's passphrase";
/// The passphrase `key passwd` changes to.
const NEW_PASSWORD: &str = "the changed passphrase";
const MIB: u64 = 1 << 20;
/// The writer's default: an index checkpoint names this many packs.
const CHECKPOINT_PACKS: u64 = 8;
/// The writer's default number of upload threads: packs stored but not yet in a checkpoint's
/// list, or partly written as temp files, when a process dies.
const UPLOADERS: u64 = 2;
/// Every failpoint site of the product (`offsite_backend::failpoint` explains them).
const SITES: [&str; 12] = [
    "local.temp_synced",
    "local.linked",
    "local.published",
    "local.removed",
    "init.layout_created",
    "init.config_written",
    "key.written",
    "key.removed",
    "key.old_removed",
    "writer.pack_stored",
    "writer.checkpoint_written",
    "snapshot.written",
];

/// Serializes the tests: each times backups, and they share two cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// stdout and stderr of a run, for failure messages.
fn show(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------- repository states

/// A repository with its client cache (`dir/repo`, `dir/cache`: the cache holds the files
/// cache and the snapshots this client saw, so it is part of the state a command starts from).
#[derive(Debug)]
struct State {
    dir: PathBuf,
}

impl State {
    fn new(dir: PathBuf) -> State {
        fs::create_dir_all(&dir).expect("mkdir state");
        State { dir }
    }

    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// A copy of everything this state holds at `dir` (replaced if it exists).
    fn copy_to(&self, dir: &Path) -> State {
        if dir.exists() {
            fs::remove_dir_all(dir).expect("remove an old copy");
        }
        let out = Command::new("cp").arg("-a").arg(&self.dir).arg(dir).output().expect("run cp");
        assert!(out.status.success(), "cp -a {} {}:\n{}", self.dir.display(), dir.display(), show(&out));
        State { dir: dir.to_path_buf() }
    }

    /// `offsite ARGS` on this state, opened with `pass`: no inherited OFFSITE_* settings,
    /// cheap key derivation, stdin not a terminal, run in the state's directory.
    fn cmd(&self, pass: &str, args: &[&str]) -> Command {
        // OFFSITE_TEST_BIN runs a copy of the binary (scripts/reliability.sh snapshots it so
        // that builds during a long run do not change what is tested).
        let bin =
            std::env::var_os("OFFSITE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_offsite").into());
        let mut c = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OFFSITE_") {
                c.env_remove(&k);
            }
        }
        c.env("OFFSITE_REPOSITORY", self.repo())
            .env("OFFSITE_CACHE_DIR", self.dir.join("cache"))
            .env("OFFSITE_PASSWORD", pass)
            .env("OFFSITE_INSECURE_FAST_KDF", "testing-only-keys-are-crackable")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, pass: &str, args: &[&str]) -> Output {
        self.cmd(pass, args).output().expect("run offsite")
    }

    /// Run; Ok(stdout) on exit 0, else Err naming the command with its output.
    fn ok(&self, pass: &str, args: &[&str]) -> Result<String, String> {
        let out = self.run(pass, args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("offsite {} failed ({}):\n{}", args.join(" "), out.status, show(&out)))
        }
    }

    /// Run; require exit 1 with `want` in the error; panics otherwise.
    fn fails_with(&self, pass: &str, args: &[&str], want: &str, ctx: &str) {
        let out = self.run(pass, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && stderr.contains(want),
            "{ctx}: offsite {} should fail saying {want:?}, but exited {}:\n{}",
            args.join(" "),
            out.status,
            show(&out)
        );
    }
}

/// `c` run through `sh -c 'ulimit -c 0; exec ...'`: the same process (exec keeps the pid and
/// the exit status), but an abort leaves no core file wherever core dumps are on.
fn without_core_dump(c: &Command) -> Command {
    let mut w = Command::new("sh");
    w.arg("-c").arg("ulimit -c 0; exec \"$0\" \"$@\"").arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(d) = c.get_current_dir() {
        w.current_dir(d);
    }
    w.stdin(Stdio::null());
    w
}

// ---------------------------------------------------------------- looking at a repository

fn is_object_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The packs stored in `repo` (`data/xx/<id>`), by name, with their sizes. Temp files (and
/// files that vanish while listed) are left out; a missing directory holds nothing.
fn packs(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dirs) = fs::read_dir(repo.join("data")) else { return out };
    for d in dirs.filter_map(Result::ok) {
        let Ok(files) = fs::read_dir(d.path()) else { continue };
        for f in files.filter_map(Result::ok) {
            let Ok(name) = f.file_name().into_string() else { continue };
            if is_object_id(&name) {
                if let Ok(m) = f.metadata() {
                    out.insert(name, m.len());
                }
            }
        }
    }
    out
}

fn total(packs: &BTreeMap<String, u64>) -> u64 {
    packs.values().sum()
}

/// Temp files (`.tmp-*`, writes cut short) anywhere in the repository: count and bytes.
fn temp_files(repo: &Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.filter_map(Result::ok) {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if e.file_name().as_bytes().starts_with(b".tmp-") {
                n += 1;
                bytes += m.len();
            }
        }
    }
    (n, bytes)
}

/// Sizes of the packs of `packs` whose names start with one of the `short` ids.
fn named(packs: &BTreeMap<String, u64>, short: &[String]) -> BTreeMap<String, u64> {
    packs
        .iter()
        .filter(|(id, _)| short.iter().any(|s| id.starts_with(s)))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

// ---------------------------------------------------------------- the invariants

/// `offsite check` must exit 0 saying "no problems found". Returns the short ids of the packs
/// it warns are named by no index (left by an interrupted backup; not a problem).
fn check(st: &State, pass: &str) -> Result<Vec<String>, String> {
    let out = st.run(pass, &["check"]);
    if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("no problems found") {
        return Err(format!("check failed ({}):\n{}", out.status, show(&out)));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut unindexed = Vec::new();
    let fast_kdf = "offsite: warning: OFFSITE_INSECURE_FAST_KDF";
    for line in stderr.lines().filter(|l| l.starts_with("offsite: warning: ") && !l.starts_with(fast_kdf)) {
        let short = line
            .strip_prefix("offsite: warning: data/")
            .filter(|_| line.contains("pack is in no index"))
            .and_then(|r| r.split(':').next())
            .ok_or_else(|| format!("check printed an unexpected warning: {line}"))?;
        unindexed.push(short.to_string());
    }
    Ok(unindexed)
}

/// The snapshot ids `offsite snapshots --json` lists; Err with the output when it fails.
fn snapshot_ids(st: &State, pass: &str) -> Result<Vec<String>, String> {
    let stdout = st.ok(pass, &["snapshots", "--json"])?;
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).map_err(|e| format!("bad JSON line {l:?}: {e}"))?;
            v["id"].as_str().map(str::to_string).ok_or_else(|| format!("no id in {l}"))
        })
        .collect()
}

/// Whether the repository opens with `pass`: true when `snapshots` works, false when it says
/// the passphrase is wrong; anything else (a repository that does not open for another reason)
/// is an Err.
fn opens(st: &State, pass: &str) -> Result<bool, String> {
    let out = st.run(pass, &["snapshots"]);
    if out.status.success() {
        return Ok(true);
    }
    if out.status.code() == Some(1) && String::from_utf8_lossy(&out.stderr).contains("wrong passphrase") {
        return Ok(false);
    }
    Err(format!("the repository neither opens nor refuses the passphrase ({}):\n{}", out.status, show(&out)))
}

/// The snapshot id in the summary line of `backup --json` output.
fn summary_snapshot(stdout: &str) -> Option<String> {
    let last: Value = serde_json::from_str(stdout.lines().last()?).ok()?;
    (last["type"] == "summary").then(|| last["snapshot"].as_str().map(str::to_string))?
}

/// `backup --json EXTRA SRC`: the id of the snapshot it saved.
fn backup(st: &State, src: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["backup", "--json"];
    args.extend_from_slice(extra);
    args.push(utf8(src));
    let stdout = st.ok(PASSWORD, &args)?;
    summary_snapshot(&stdout).ok_or_else(|| format!("no snapshot id in the backup's output:\n{stdout}"))
}

/// Restore snapshot `id` (a backup of `src`) into `scratch` and compare what lands at
/// `scratch/<src>` with `expected` (content, metadata, hard links, holes).
fn restores_identical(
    st: &State,
    pass: &str,
    id: &str,
    src: &Path,
    expected: &Path,
    scratch: &Path,
) -> Result<(), String> {
    if scratch.exists() {
        fs::remove_dir_all(scratch).map_err(|e| format!("cannot clear {}: {e}", scratch.display()))?;
    }
    st.ok(pass, &["restore", id, "--target", utf8(scratch)])?;
    let restored = scratch.join(src.strip_prefix("/").expect("absolute source"));
    let result = tree::compare(expected, &restored)
        .map_err(|d| format!("snapshot {} does not restore identical to its source:\n{d}", &id[..8]));
    let _ = fs::remove_dir_all(scratch);
    result
}

// ---------------------------------------------------------------- enumerated failpoints

/// One failpoint crossing of a traced run: the site, which crossing of it this was, and its
/// position among all the run's crossings.
#[derive(Clone, Debug)]
struct Crossing {
    site: String,
    k: u64,
    pos: usize,
}

impl std::fmt::Display for Crossing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.site, self.k)
    }
}

/// Position of crossing `k` of `site` in `trace` (k = 0: the last crossing).
fn pos_of(trace: &[Crossing], site: &str, k: u64) -> usize {
    let mut of_site = trace.iter().filter(|c| c.site == site);
    let c = if k == 0 { of_site.next_back() } else { of_site.find(|c| c.k == k) };
    c.unwrap_or_else(|| panic!("the trace has no crossing {site}:{k}: {trace:?}")).pos
}

/// Run `args` once on `st` (it must succeed) with the trace on; returns stdout and every
/// crossing, in order.
fn traced(
    st: &State,
    pass: &str,
    args: &[&str],
    env: &[(&str, &str)],
    trace: &Path,
) -> (String, Vec<Crossing>) {
    let _ = fs::remove_file(trace);
    let mut c = st.cmd(pass, args);
    c.envs(env.iter().copied()).env("OFFSITE_FAILPOINT_TRACE", trace);
    let out = c.output().expect("run offsite");
    assert!(
        out.status.success(),
        "traced offsite {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        show(&out)
    );
    let text = fs::read_to_string(trace).expect("the trace file was written");
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let crossings: Vec<Crossing> = text
        .lines()
        .enumerate()
        .map(|(pos, site)| {
            assert!(SITES.contains(&site), "unknown failpoint site {site:?} in the trace");
            let k = counts.entry(site).or_default();
            *k += 1;
            Crossing { site: site.to_string(), k: *k, pos }
        })
        .collect();
    assert!(!crossings.is_empty(), "offsite {} crossed no failpoint", args.join(" "));
    (String::from_utf8_lossy(&out.stdout).into_owned(), crossings)
}

/// Copy `start` to `work` and run `args` there with `OFFSITE_FAILPOINT` set to crossing `c`:
/// the process must die of SIGABRT saying so. Returns the crashed state.
fn crash_at(
    start: &State,
    work: &Path,
    pass: &str,
    args: &[&str],
    env: &[(&str, &str)],
    c: &Crossing,
) -> State {
    let st = start.copy_to(work);
    let mut cmd = st.cmd(pass, args);
    cmd.envs(env.iter().copied()).env("OFFSITE_FAILPOINT", c.to_string());
    let out = without_core_dump(&cmd).output().expect("run offsite");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "offsite {} with OFFSITE_FAILPOINT={c} did not abort ({}):\n{}",
        args.join(" "),
        out.status,
        show(&out)
    );
    let line = format!("offsite: failpoint {c} reached, aborting");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&line), "no {line:?} in\n{}", show(&out));
    st
}

/// Where the enumerated test keeps its trees and scratch directories.
struct Bench {
    root: PathBuf,
    /// the source every backup reads (first the tree of snapshot 1, then that of snapshot 2)
    src: PathBuf,
    /// snapshots acknowledged so far, with a directory holding the tree each was taken of
    acked: Vec<(String, PathBuf)>,
}

impl Bench {
    fn work(&self) -> PathBuf {
        self.root.join("crashed")
    }

    fn scratch(&self) -> PathBuf {
        self.root.join("restore")
    }

    /// Every acknowledged snapshot is listed and restores identical to its tree.
    fn assert_acked_restore(&self, st: &State, pass: &str, ctx: &str) {
        let ids = snapshot_ids(st, pass).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        for (id, tree) in &self.acked {
            assert!(ids.contains(id), "{ctx}: acknowledged snapshot {id} is not listed: {ids:?}");
            restores_identical(st, pass, id, &self.src, tree, &self.scratch())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
    }
}

/// A crashed `init`: either no config (then `init` reruns and completes) or a repository that
/// opens and passes `check` (then `init` says it exists). Either way it then holds exactly one
/// key and takes a backup that restores.
fn replay_init(b: &Bench, start: &State, trace: &[Crossing]) {
    let tiny = b.root.join("tiny");
    tree::generate(&tiny, &Spec { seed: 2, files: 10, big_files: 0, big_size: 0, edge_cases: false })
        .expect("generate the tiny tree");
    // The key is the first object written, the config the second.
    let config_from = pos_of(trace, "local.temp_synced", 2);
    for c in trace {
        let ctx = format!("init crashed at {c}");
        let st = crash_at(start, &b.work(), PASSWORD, &["init"], &[], c);
        let config_visible = c.pos > config_from;
        assert_eq!(st.repo().join("config").exists(), config_visible, "{ctx}: config present?");
        if config_visible {
            assert!(opens(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}")), "{ctx}: does not open");
            check(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            st.fails_with(PASSWORD, &["init"], "already exists", &ctx);
        } else {
            st.fails_with(PASSWORD, &["snapshots"], "no repository at", &ctx);
            st.ok(PASSWORD, &["init"]).unwrap_or_else(|e| panic!("{ctx}: rerun: {e}"));
            check(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: after the rerun: {e}"));
        }
        let keys = st.ok(PASSWORD, &["key", "list", "--json"]).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(keys.lines().count(), 1, "{ctx}: one key expected:\n{keys}");
        let id = backup(&st, &tiny, &[]).unwrap_or_else(|e| panic!("{ctx}: backup: {e}"));
        restores_identical(&st, PASSWORD, &id, &tiny, &tiny, &b.scratch())
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

/// A crashed `backup EXTRA SRC` (see the module doc); `golden_added` is what the
/// uninterrupted run stored.
fn replay_backup(b: &Bench, start: &State, trace: &[Crossing], extra: &[&str], golden_added: u64) {
    let mut args = vec!["backup"];
    args.extend_from_slice(extra);
    args.push(utf8(&b.src));
    let start_packs = packs(&start.repo());
    // The snapshot is the last object written, after the last index.
    let snapshot_from = pos_of(trace, "local.temp_synced", 0);
    let indexed_from = pos_of(trace, "writer.checkpoint_written", 0);
    let slack = golden_added / 20 + 256 * 1024;
    for c in trace {
        let ctx = format!("backup crashed at {c}");
        let st = crash_at(start, &b.work(), PASSWORD, &args, &[], c);
        let crashed = packs(&st.repo());
        let unindexed = check(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            unindexed.len() as u64 <= CHECKPOINT_PACKS + UPLOADERS,
            "{ctx}: {} packs are in no index, more than the checkpoint interval plus those in flight",
            unindexed.len()
        );
        b.assert_acked_restore(&st, PASSWORD, &ctx);
        let ids = snapshot_ids(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let new: Vec<&String> = ids.iter().filter(|id| !b.acked.iter().any(|(a, _)| a == *id)).collect();
        let snapshot_visible = c.pos > snapshot_from;
        assert_eq!(new.len(), usize::from(snapshot_visible), "{ctx}: snapshots not acknowledged: {new:?}");
        for id in new {
            // The in-flight snapshot, once visible, is whole.
            restores_identical(&st, PASSWORD, id, &b.src, &b.src, &b.scratch())
                .unwrap_or_else(|e| panic!("{ctx}: the crashed run's snapshot: {e}"));
        }

        let id = backup(&st, &b.src, extra).unwrap_or_else(|e| panic!("{ctx}: rerun: {e}"));
        let after = packs(&st.repo());
        let added = total(&after) - total(&crashed);
        let stored_by_crash: BTreeMap<String, u64> = crashed
            .iter()
            .filter(|(k, _)| !start_packs.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert!(
            added <= (golden_added + slack).saturating_sub(total(&stored_by_crash)),
            "{ctx}: the rerun stored {added} bytes of packs; an uninterrupted run stores {golden_added} and \
             {} were already stored (indexed or journaled)",
            total(&stored_by_crash)
        );
        if c.pos >= indexed_from {
            // Only the trees of the source's ancestors (whose times the test's own directories
            // change) may be new.
            assert!(added <= 256 * 1024, "{ctx}: everything was indexed, yet the rerun stored {added} bytes");
        }
        let unindexed_after = check(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: after the rerun: {e}"));
        let left = named(&stored_by_crash, &unindexed_after);
        assert!(left.is_empty(), "{ctx}: the rerun did not adopt the crashed run's packs {left:?}");
        restores_identical(&st, PASSWORD, &id, &b.src, &b.src, &b.scratch())
            .unwrap_or_else(|e| panic!("{ctx}: the rerun's snapshot: {e}"));
    }
}

/// A crashed `key add`: the old passphrase opens; the new one exactly once its key file is
/// visible; a rerun adds the key.
fn replay_key_add(b: &Bench, start: &State, trace: &[Crossing]) {
    let env = [("OFFSITE_NEW_PASSWORD", SECOND_PASSWORD)];
    let visible_from = pos_of(trace, "local.temp_synced", 1);
    for c in trace {
        let ctx = format!("key add crashed at {c}");
        let st = crash_at(start, &b.work(), PASSWORD, &["key", "add"], &env, c);
        let opens_with = |p| opens(&st, p).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(opens_with(PASSWORD), "{ctx}: the old passphrase no longer opens");
        assert_eq!(opens_with(SECOND_PASSWORD), c.pos > visible_from, "{ctx}: does the new key open?");
        check(&st, PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        b.assert_acked_restore(&st, PASSWORD, &ctx);
        let mut rerun = st.cmd(PASSWORD, &["key", "add"]);
        let out = rerun.envs(env).output().expect("run offsite");
        assert!(out.status.success(), "{ctx}: rerun failed:\n{}", show(&out));
        assert!(opens_with(SECOND_PASSWORD), "{ctx}: the added key does not open after the rerun");
        check(&st, SECOND_PASSWORD).unwrap_or_else(|e| panic!("{ctx}: after the rerun: {e}"));
    }
}

/// A crashed `key passwd`: the old passphrase opens until the old key file is removed, the new
/// one once its key file is visible, never neither; a rerun completes the change (or, when the
/// old key was already removed, fails on the old passphrase: the change is complete).
fn replay_key_passwd(b: &Bench, start: &State, trace: &[Crossing]) {
    let env = [("OFFSITE_NEW_PASSWORD", NEW_PASSWORD)];
    let visible_from = pos_of(trace, "local.temp_synced", 1);
    let removed_from = pos_of(trace, "local.removed", 1);
    for c in trace {
        let ctx = format!("key passwd crashed at {c}");
        let st = crash_at(start, &b.work(), PASSWORD, &["key", "passwd"], &env, c);
        let opens_with = |p| opens(&st, p).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let (old, new) = (opens_with(PASSWORD), opens_with(NEW_PASSWORD));
        assert!(old || new, "{ctx}: the repository opens with neither the old nor the new passphrase");
        assert_eq!(old, c.pos < removed_from, "{ctx}: does the old passphrase open?");
        assert_eq!(new, c.pos > visible_from, "{ctx}: does the new passphrase open?");
        assert!(opens_with(SECOND_PASSWORD), "{ctx}: another key stopped opening");
        let pass = if old { PASSWORD } else { NEW_PASSWORD };
        check(&st, pass).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        b.assert_acked_restore(&st, pass, &ctx);
        if old {
            let out = st.cmd(PASSWORD, &["key", "passwd"]).envs(env).output().expect("run offsite");
            assert!(out.status.success(), "{ctx}: rerun failed:\n{}", show(&out));
            assert!(!opens_with(PASSWORD), "{ctx}: the old passphrase still opens after the rerun");
        } else {
            st.fails_with(PASSWORD, &["key", "passwd"], "wrong passphrase", &ctx);
        }
        assert!(opens_with(NEW_PASSWORD), "{ctx}: the new passphrase does not open after the rerun");
        check(&st, NEW_PASSWORD).unwrap_or_else(|e| panic!("{ctx}: after the rerun: {e}"));
    }
}

/// A crashed `key remove`: the removed key opens until its file is removed, the key in use
/// always; a rerun removes it (or says no key matches, once it is gone).
fn replay_key_remove(b: &Bench, start: &State, trace: &[Crossing], id: &str) {
    let removed_from = pos_of(trace, "local.removed", 1);
    for c in trace {
        let ctx = format!("key remove crashed at {c}");
        let st = crash_at(start, &b.work(), NEW_PASSWORD, &["key", "remove", id], &[], c);
        let opens_with = |p| opens(&st, p).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(opens_with(NEW_PASSWORD), "{ctx}: the key in use no longer opens");
        let removed = c.pos >= removed_from;
        assert_eq!(opens_with(SECOND_PASSWORD), !removed, "{ctx}: does the removed key open?");
        check(&st, NEW_PASSWORD).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        b.assert_acked_restore(&st, NEW_PASSWORD, &ctx);
        if removed {
            st.fails_with(NEW_PASSWORD, &["key", "remove", id], "no key matches", &ctx);
        } else {
            st.ok(NEW_PASSWORD, &["key", "remove", id]).unwrap_or_else(|e| panic!("{ctx}: rerun: {e}"));
        }
        assert!(!opens_with(SECOND_PASSWORD), "{ctx}: the removed key still opens after the rerun");
        check(&st, NEW_PASSWORD).unwrap_or_else(|e| panic!("{ctx}: after the rerun: {e}"));
    }
}

/// The small tree of the enumerated test: a few hundred files, ~20 MiB stored in several
/// packs (half of the big files are incompressible), and every edge case.
fn small_spec() -> Spec {
    Spec { seed: 41, files: 300, big_files: 6, big_size: 5 * MIB as usize, edge_cases: true }
}

/// Every failpoint crossing of `init`, a first and a second backup, `key add`, `key passwd`
/// and `key remove` is crashed at, and the invariants of the module doc are checked after each.
#[test]
fn every_failpoint_crossing_is_crash_safe() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let src = root.join("src");
    tree::generate(&src, &small_spec()).expect("generate the source");
    let first_tree = root.join("tree-1");
    tree::generate(&first_tree, &small_spec()).expect("generate the first tree");
    let mut b = Bench { root: root.clone(), src: src.clone(), acked: Vec::new() };
    let golden = State::new(root.join("golden"));
    let mut seen: HashSet<String> = HashSet::new();
    let mut counts: Vec<(String, usize, f64)> = Vec::new();
    let mut step = |name: &str, trace: &[Crossing], t: Instant, seen: &mut HashSet<String>| {
        seen.extend(trace.iter().map(|c| c.site.clone()));
        counts.push((name.to_string(), trace.len(), t.elapsed().as_secs_f64()));
    };
    // --threads 1: the same packs every run, so every crossing number of the trace is reached.
    let extra = ["--threads", "1"];
    let backup_args = ["backup", "--json", extra[0], extra[1], utf8(&src)];

    let t = Instant::now();
    let start = golden.copy_to(&root.join("start"));
    let (_, trace) = traced(&golden, PASSWORD, &["init"], &[], &root.join("trace"));
    replay_init(&b, &start, &trace);
    step("init", &trace, t, &mut seen);

    for (n, tree) in [(1, first_tree.clone()), (2, src.clone())] {
        if n == 2 {
            tree::mutate(&src, 1).expect("mutate the source");
        }
        let t = Instant::now();
        let start = golden.copy_to(&root.join("start"));
        let before = total(&packs(&golden.repo()));
        let (stdout, trace) = traced(&golden, PASSWORD, &backup_args, &[], &root.join("trace"));
        let golden_added = total(&packs(&golden.repo())) - before;
        let id = summary_snapshot(&stdout).unwrap_or_else(|| panic!("no snapshot id in {stdout}"));
        assert!(
            trace.iter().filter(|c| c.site == "writer.pack_stored").count() >= 2,
            "backup {n} stored fewer than 2 packs: {trace:?}"
        );
        replay_backup(&b, &start, &trace, &extra, golden_added);
        b.acked.push((id, tree));
        step(&format!("backup {n}"), &trace, t, &mut seen);
    }

    let t = Instant::now();
    let start = golden.copy_to(&root.join("start"));
    let env = [("OFFSITE_NEW_PASSWORD", SECOND_PASSWORD)];
    let (stdout, trace) = traced(&golden, PASSWORD, &["key", "add", "--json"], &env, &root.join("trace"));
    let added: Value = serde_json::from_str(stdout.trim()).expect("key add --json prints one line");
    let second_id = added["id"].as_str().expect("the added key's id").to_string();
    replay_key_add(&b, &start, &trace);
    step("key add", &trace, t, &mut seen);

    let t = Instant::now();
    let start = golden.copy_to(&root.join("start"));
    let env = [("OFFSITE_NEW_PASSWORD", NEW_PASSWORD)];
    let (_, trace) = traced(&golden, PASSWORD, &["key", "passwd"], &env, &root.join("trace"));
    replay_key_passwd(&b, &start, &trace);
    step("key passwd", &trace, t, &mut seen);

    let t = Instant::now();
    let start = golden.copy_to(&root.join("start"));
    let (_, trace) = traced(&golden, NEW_PASSWORD, &["key", "remove", &second_id], &[], &root.join("trace"));
    replay_key_remove(&b, &start, &trace, &second_id);
    step("key remove", &trace, t, &mut seen);

    let all: usize = counts.iter().map(|(_, n, _)| n).sum();
    for (name, n, secs) in &counts {
        eprintln!("crash: enumerated: {name}: {n} crossings replayed in {secs:.1}s");
    }
    eprintln!("crash: enumerated: {all} crossings, elapsed={:.1}s", started.elapsed().as_secs_f64());
    let missed: Vec<_> = SITES.iter().filter(|s| !seen.contains(**s)).collect();
    assert!(missed.is_empty(), "failpoint sites no command crossed: {missed:?}");
}

// ---------------------------------------------------------------- SIGKILL at random moments

/// Kills per repository (`OFFSITE_CRASH_EPOCH_KILLS` overrides it): a longer run starts a fresh
/// repository every this many kills, so the cost of a kill (and the disk used) stays flat however
/// many kills are asked for.
const EPOCH_KILLS: u64 = 500;
/// Backups started between two acknowledged backups (all but the last are killed, unless they
/// finish before their kill, which acknowledges them too).
const ATTEMPTS_PER_ACK: u64 = 5;
/// Every this many kills, the snapshots acknowledged since the last time are restored.
const VERIFY_EVERY: u64 = 10;

/// The corpus of the SIGKILL test: 1,000 small files, four 6 MiB files, every edge case.
fn corpus_spec(seed: u64) -> Spec {
    Spec { seed, files: 1000, big_files: 4, big_size: 6 * MIB as usize, edge_cases: true }
}

/// Every entry's mtime (the root's under the empty path).
fn mtimes(root: &Path) -> HashMap<PathBuf, (i64, i64)> {
    let mut out = HashMap::new();
    let listing = tree::listing(root).expect("list the tree");
    for p in std::iter::once(PathBuf::new()).chain(listing) {
        let m = fs::symlink_metadata(root.join(&p)).expect("stat");
        out.insert(p, (m.mtime(), m.mtime_nsec()));
    }
    out
}

/// Mutation `step` of a tree made from `seed`: [`tree::mutate`], then every entry it gave a
/// fresh ("now") mtime gets one that follows from the step and the path, so replaying the
/// same mutations on a fresh copy gives the same tree, times included.
fn mutate_step(root: &Path, seed: u64, step: u64) {
    let before = mtimes(root);
    tree::mutate(root, seed.wrapping_mul(1000).wrapping_add(step)).expect("mutate the tree");
    for (p, now) in mtimes(root) {
        if before.get(&p) != Some(&now) {
            let hash = p
                .as_os_str()
                .as_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
            let secs = 1_700_000_000 + i64::try_from(step).expect("step fits") * 60;
            let t = filetime::FileTime::from_unix_time(secs, (hash % 1_000_000_000) as u32);
            filetime::set_symlink_file_times(root.join(&p), t, t).expect("set mtime");
        }
    }
}

/// The expected tree at a given mutation step, rebuilt from the seed: generated, then mutated
/// forward one step at a time.
struct Replay {
    dir: PathBuf,
    seed: u64,
    step: u64,
}

impl Replay {
    fn new(dir: PathBuf, seed: u64) -> Replay {
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("remove the old replay");
        }
        tree::generate(&dir, &corpus_spec(seed)).expect("generate the replay");
        Replay { dir, seed, step: 0 }
    }

    fn advance_to(&mut self, step: u64) {
        assert!(step >= self.step, "replays only go forward");
        while self.step < step {
            self.step += 1;
            mutate_step(&self.dir, self.seed, self.step);
        }
    }
}

/// Counters of the SIGKILL test.
#[derive(Default)]
struct Totals {
    kills: u64,
    /// backups that finished before their kill (acknowledged like the others)
    finished_first: u64,
    acknowledged: u64,
    checks: u64,
    restores: u64,
    violations: Vec<String>,
    /// seconds spent in backups (killed or not), checks, and restores with their comparison
    backup_secs: f64,
    check_secs: f64,
    restore_secs: f64,
}

impl Totals {
    fn violation(&mut self, what: String) {
        eprintln!("crash: VIOLATION: {what}");
        self.violations.push(what);
    }
}

/// One repository's share of the kills: a corpus from `seed`, an initial backup, then backups
/// killed at random moments (a new mutation before each acknowledged one), with the
/// invariants checked after each kill.
fn sigkill_epoch(dir: &Path, seed: u64, kills: u64, rng: &mut Rng, t: &mut Totals) {
    let src = dir.join("src");
    tree::generate(&src, &corpus_spec(seed)).expect("generate the corpus");
    let st = State::new(dir.join("state"));
    st.ok(PASSWORD, &["init"]).expect("init");
    let scratch = dir.join("restore");
    let (out, err) = (dir.join("backup.out"), dir.join("backup.err"));
    // (snapshot id, mutation step of the tree it was taken of)
    let mut acks: Vec<(String, u64)> = Vec::new();
    let started = Instant::now();
    let first = backup(&st, &src, &[]).expect("the first backup");
    let mut duration = started.elapsed();
    t.backup_secs += duration.as_secs_f64();
    acks.push((first, 0));
    t.acknowledged += 1;
    let mut step = 1;
    mutate_step(&src, seed, step);
    let mut replay = Replay::new(dir.join("replay"), seed);
    let mut verified = 0;
    // Restore the acknowledged snapshots not restored yet, each against its rebuilt tree.
    let mut verify = |acks: &[(String, u64)], ctx: &str, t: &mut Totals| {
        for (id, s) in &acks[verified..] {
            replay.advance_to(*s);
            let started = Instant::now();
            t.restores += 1;
            if let Err(e) = restores_identical(&st, PASSWORD, id, &src, &replay.dir, &scratch) {
                t.violation(format!("{ctx}: step {s}: {e}"));
            }
            t.restore_secs += started.elapsed().as_secs_f64();
        }
        verified = acks.len();
    };
    let (mut killed, mut attempts) = (0, 0);
    while killed < kills {
        attempts += 1;
        if attempts == ATTEMPTS_PER_ACK {
            // Let this one finish: a new acknowledged snapshot, and the time a backup takes now.
            attempts = 0;
            let started = Instant::now();
            let result = backup(&st, &src, &[]);
            t.backup_secs += started.elapsed().as_secs_f64();
            match result {
                Ok(id) => {
                    duration = started.elapsed();
                    acks.push((id, step));
                    t.acknowledged += 1;
                    step += 1;
                    mutate_step(&src, seed, step);
                }
                Err(e) => t.violation(format!("an uninterrupted backup failed: {e}")),
            }
            continue;
        }
        let delay = Duration::from_micros(rng.range(0, duration.as_micros() as u64 + 1));
        let started = Instant::now();
        let mut child = st
            .cmd(PASSWORD, &["backup", "--json", utf8(&src)])
            .stdout(fs::File::create(&out).expect("stdout file"))
            .stderr(fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start offsite");
        std::thread::sleep(delay);
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let _ = kill(pid, Signal::SIGKILL); // it may have exited already: then its status says so
        let status = child.wait().expect("wait for offsite");
        t.backup_secs += started.elapsed().as_secs_f64();
        if status.success() {
            // It finished before its kill: acknowledged like any other.
            let stdout = fs::read_to_string(&out).unwrap_or_default();
            match summary_snapshot(&stdout) {
                Some(id) => {
                    acks.push((id, step));
                    t.finished_first += 1;
                    t.acknowledged += 1;
                    step += 1;
                    mutate_step(&src, seed, step);
                }
                None => t.violation(format!("a backup exited 0 without a snapshot id:\n{stdout}")),
            }
            continue;
        }
        if status.signal() != Some(libc::SIGKILL) {
            let stderr = fs::read_to_string(&err).unwrap_or_default();
            t.violation(format!("a backup failed on its own ({status}) before its kill:\n{stderr}"));
            continue;
        }
        killed += 1;
        t.kills += 1;
        let ctx = format!("after kill {} ({:.3}s into a backup)", t.kills, delay.as_secs_f64());
        let started = Instant::now();
        t.checks += 1;
        if let Err(e) = check(&st, PASSWORD) {
            t.violation(format!("{ctx}: {e}"));
        }
        match snapshot_ids(&st, PASSWORD) {
            Ok(ids) => {
                for (id, s) in &acks {
                    if !ids.contains(id) {
                        t.violation(format!("{ctx}: snapshot {id} (step {s}) is no longer listed"));
                    }
                }
            }
            Err(e) => t.violation(format!("{ctx}: {e}")),
        }
        t.check_secs += started.elapsed().as_secs_f64();
        if t.kills % VERIFY_EVERY == 0 {
            verify(&acks, &ctx, t);
        }
    }
    verify(&acks, "at the end", t);
    // And the oldest snapshot once more, now that every later backup and kill has happened.
    let oldest = Replay::new(dir.join("replay-0"), seed);
    let started = Instant::now();
    t.restores += 1;
    if let Err(e) = restores_identical(&st, PASSWORD, &acks[0].0, &src, &oldest.dir, &scratch) {
        t.violation(format!("at the end: the first snapshot: {e}"));
    }
    t.restore_secs += started.elapsed().as_secs_f64();
    let (temps, temp_bytes) = temp_files(&st.repo());
    let unindexed = check(&st, PASSWORD).map(|u| u.len()).unwrap_or_default();
    eprintln!(
        "crash: sigkill: repository {}: {} kills, {} acknowledged snapshots, {} packs ({} MiB), {unindexed} in \
         no index, {temps} temp files ({} MiB)",
        dir.display(),
        kills,
        acks.len(),
        packs(&st.repo()).len(),
        total(&packs(&st.repo())) / MIB,
        temp_bytes / MIB
    );
}

/// Backups of a corpus (tens of MB: 1,000 small files, four bigger ones, every edge case)
/// killed with SIGKILL after a random delay in [0, the duration of the last uninterrupted
/// backup]. Every [`ATTEMPTS_PER_ACK`]th backup is let finish (acknowledged), with a new
/// mutation before the next. After each kill `check` must pass and every acknowledged snapshot
/// be listed; every 10th kill the snapshots acknowledged since the last time are restored and
/// compared with their tree (rebuilt from the seed); at the end every acknowledged snapshot is.
/// `OFFSITE_CRASH_KILLS` kills (default 100; a fresh repository every 500, or every
/// `OFFSITE_CRASH_EPOCH_KILLS`), seed from `OFFSITE_CRASH_SEED` or the clock, printed first.
///
/// The default 100 kills take about 70 s on two idle cores. The full run:
/// `OFFSITE_CRASH_KILLS=10000 cargo test --release -p offsite-cli --test crash --
/// sigkill_at_random_moments --nocapture` (20 repositories of 500 kills; a few hours).
#[test]
fn sigkill_at_random_moments() {
    let _serial = serial();
    let kills = env_u64("OFFSITE_CRASH_KILLS").unwrap_or(100);
    let epoch_kills = env_u64("OFFSITE_CRASH_EPOCH_KILLS").unwrap_or(EPOCH_KILLS).max(1);
    let seed = env_u64("OFFSITE_CRASH_SEED").unwrap_or_else(|| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
        now.as_nanos() as u64 % 1_000_000_007
    });
    eprintln!("crash: sigkill: seed={seed} kills={kills} (replay with OFFSITE_CRASH_SEED={seed})");
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let mut rng = Rng::new(seed);
    let mut t = Totals::default();
    let mut epoch = 0;
    while t.kills < kills {
        let edir = root.join(format!("epoch-{epoch}"));
        sigkill_epoch(&edir, seed.wrapping_add(epoch), (kills - t.kills).min(epoch_kills), &mut rng, &mut t);
        fs::remove_dir_all(&edir).expect("remove the epoch's directory");
        epoch += 1;
    }
    eprintln!(
        "crash: kills={} checks={} restores={} violations={} elapsed={:.1}s",
        t.kills,
        t.checks,
        t.restores,
        t.violations.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "crash: sigkill: {} acknowledged snapshots ({} by backups that finished before their kill); time in \
         backups {:.1}s, checks {:.1}s, restores {:.1}s; seed={seed}",
        t.acknowledged, t.finished_first, t.backup_secs, t.check_secs, t.restore_secs
    );
    assert!(
        t.violations.is_empty(),
        "{} invariant violations (seed {seed}):\n{}",
        t.violations.len(),
        t.violations.join("\n")
    );
}

// ---------------------------------------------------------------- one backup, ten interruptions

/// Write `mib` MiB of incompressible files (64 MiB each, the last smaller) under `dir`.
fn big_source(dir: &Path, mib: u64) {
    fs::create_dir_all(dir).expect("mkdir source");
    let mut left = mib * MIB;
    let mut i = 0u64;
    while left > 0 {
        let len = left.min(64 * MIB);
        fs::write(dir.join(format!("part-{i:04}.bin")), tree::pseudo_random(0xB16_0000 + i, len as usize))
            .expect("write source file");
        left -= len;
        i += 1;
    }
}

/// One backup of a larger source, killed (SIGKILL) 10 times in a row at spread points (run i
/// is killed once it has stored a twelfth of an uninterrupted backup's bytes), then run to the
/// end: the restore equals the source, and the bytes uploaded across all runs (the packs in
/// the repository at the end, indexed or not, since nothing deletes, plus the temp files of the
/// uploads the kills cut) are compared with an uninterrupted backup of the same source.
///
/// Every pack is journaled in the client cache before its upload, and the next run adopts the
/// journaled packs the storage holds, so a kill loses only the uploads in flight: the temp
/// files, at most `UPLOADERS` partial packs. After the last run no pack is in no index, and the
/// upload exceeds the uninterrupted one by at most 10 kills x `UPLOADERS` x the largest pack
/// (plus a pack of slack, as pack boundaries differ). Both are asserted at every size, and so is
/// the "at most 1.1x": the bound implies it from a source of ~1.8 GiB; below that it
/// holds because a kill lands in the middle of a pack's upload only for the milliseconds a
/// local pack write takes (the ratio and temp bytes are printed). The source size is
/// `OFFSITE_CRASH_BIG_MIB` (default 1024, what CI affords: ~11 packs stored per run, so every
/// run crosses a checkpoint; ~2.5 GiB of disk at peak). Before the journal (8-pack
/// checkpoints only) this measured 1.23x at 1 GiB.
#[test]
fn one_backup_interrupted_ten_times_restores_identical_within_the_upload_bound() {
    const KILLS: u64 = 10;
    let _serial = serial();
    let started = Instant::now();
    let mib = env_u64("OFFSITE_CRASH_BIG_MIB").unwrap_or(1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let src = root.join("big-src");
    big_source(&src, mib);

    // The uninterrupted reference; only its numbers are kept.
    let reference = State::new(root.join("reference"));
    reference.ok(PASSWORD, &["init"]).expect("init");
    let t = Instant::now();
    backup(&reference, &src, &[]).expect("the uninterrupted backup");
    let reference_secs = t.elapsed().as_secs_f64();
    let ref_packs = packs(&reference.repo());
    let (ref_bytes, max_pack) = (total(&ref_packs), ref_packs.values().copied().max().unwrap_or(0));
    fs::remove_dir_all(&reference.dir).expect("remove the reference repository");
    eprintln!(
        "crash: interrupted: {mib} MiB source; uninterrupted backup: {} packs, {ref_bytes} bytes, largest pack \
         {max_pack}, {reference_secs:.2}s",
        ref_packs.len()
    );

    let st = State::new(root.join("state"));
    st.ok(PASSWORD, &["init"]).expect("init");
    let (out, err) = (root.join("backup.out"), root.join("backup.err"));
    let kill_after = ref_bytes / 12;
    let deadline = Duration::from_secs(60) + Duration::from_secs_f64(10.0 * reference_secs);
    // (packs each run created, temp files each run left)
    let mut created: Vec<BTreeMap<String, u64>> = Vec::new();
    let mut temps_left = Vec::new();
    for run in 1..=KILLS {
        let before = packs(&st.repo());
        let temps_before = temp_files(&st.repo());
        let mut child = st
            .cmd(PASSWORD, &["backup", utf8(&src)])
            .stdout(fs::File::create(&out).expect("stdout file"))
            .stderr(fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start offsite");
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for offsite") {
                panic!(
                    "run {run} ended ({status}) before its kill point ({kill_after} bytes stored):\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            if total(&packs(&st.repo())).saturating_sub(total(&before)) >= kill_after {
                break;
            }
            assert!(t.elapsed() < deadline, "run {run} did not reach its kill point within {deadline:?}");
            std::thread::sleep(Duration::from_millis(5)); // polling the repository for the kill point
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        kill(pid, Signal::SIGKILL).expect("kill offsite");
        let status = child.wait().expect("wait for offsite");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "run {run} was not killed: {status}");
        let now = packs(&st.repo());
        let new: BTreeMap<String, u64> = now.into_iter().filter(|(k, _)| !before.contains_key(k)).collect();
        let temps = temp_files(&st.repo());
        eprintln!(
            "crash: interrupted: run {run} killed after {:.2}s having stored {} packs ({} MiB), {} temp files left",
            t.elapsed().as_secs_f64(),
            new.len(),
            total(&new) / MIB,
            temps.0 - temps_before.0
        );
        temps_left.push(temps.0 - temps_before.0);
        created.push(new);
    }
    let t = Instant::now();
    let id = backup(&st, &src, &[]).expect("the backup after 10 interruptions");
    let last_secs = t.elapsed().as_secs_f64();
    let unindexed = check(&st, PASSWORD).expect("check after the last run");
    restores_identical(&st, PASSWORD, &id, &src, &src, &root.join("restore")).expect("restore");

    let (temps, temp_bytes) = temp_files(&st.repo());
    let uploaded = total(&packs(&st.repo())) + temp_bytes;
    let bound = KILLS * UPLOADERS * max_pack;
    let ratio = uploaded as f64 / ref_bytes as f64;
    eprintln!(
        "crash: interrupted: last run {last_secs:.2}s; uploaded {uploaded} bytes in all = {ratio:.3}x the \
         uninterrupted {ref_bytes}; {} packs in no index ({} bytes; bound {bound}); {temps} temp files \
         ({temp_bytes} bytes); elapsed={:.1}s",
        unindexed.len(),
        total(&named(&packs(&st.repo()), &unindexed)),
        started.elapsed().as_secs_f64()
    );
    assert!(
        unindexed.is_empty(),
        "packs in no index after the last run: {unindexed:?} (the journal lost them)"
    );
    for (run, new) in created.iter().enumerate() {
        assert!(!new.is_empty(), "run {} stored nothing before its kill", run + 1);
        assert!(temps_left[run] <= UPLOADERS + 1, "run {} left {} temp files", run + 1, temps_left[run]);
    }
    // Pack boundaries differ between the runs and the reference: one pack of slack.
    assert!(
        uploaded <= ref_bytes + bound + max_pack,
        "uploaded {uploaded} bytes, more than the uninterrupted {ref_bytes} plus the bound {bound}"
    );
    assert!(ratio <= 1.1, "uploaded {ratio:.3}x an uninterrupted backup");
}
