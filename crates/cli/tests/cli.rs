//! End-to-end tests of the `offsite` binary: each test gets a fresh directory with a
//! repository location, a passphrase, a cache directory and cheap key derivation, and drives
//! the binary as a user or a script would.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";
/// The one value of OFFSITE_INSECURE_FAST_KDF that `init` and `key add`/`key passwd` accept.
const FAST_KDF: &str = "testing-only-keys-are-crackable";

/// One test's world: `root/repo` (repository), `root/src` (files to back up), `root/cache`.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        fs::create_dir_all(root.join("src")).expect("mkdir src");
        World { _dir: dir, root }
    }

    /// A world with an initialized repository.
    fn init() -> World {
        let w = World::new();
        w.ok(&["init"]);
        w
    }

    fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A ready `offsite` command: repository, passphrase, cache and fast KDF from the
    /// environment, no inherited OFFSITE_* settings, stdin not a terminal.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_offsite"));
        self.setup(&mut c);
        c.args(args);
        c
    }

    /// The test environment on any command.
    fn setup(&self, c: &mut Command) {
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
            .env("OFFSITE_CACHE_DIR", self.root.join("cache"))
            .env("OFFSITE_INSECURE_FAST_KDF", FAST_KDF)
            .current_dir(&self.root)
            .stdin(Stdio::null());
    }

    fn run(&self, c: &mut Command) -> Output {
        c.output().expect("run offsite")
    }

    /// Run, require exit 0, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_cmd(&mut self.cmd(args))
    }

    fn ok_cmd(&self, c: &mut Command) -> String {
        let out = self.run(c);
        assert!(out.status.success(), "{c:?} failed ({}):\n{}", out.status, show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run, require exit `code`, return stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        self.fails_cmd(&mut self.cmd(args), code)
    }

    fn fails_cmd(&self, c: &mut Command, code: i32) -> String {
        let out = self.run(c);
        assert_eq!(out.status.code(), Some(code), "{c:?}:\n{}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `backup --json ARGS`; returns the snapshot id from the summary line.
    fn backup(&self, args: &[&str]) -> String {
        let mut a = vec!["backup", "--json"];
        a.extend_from_slice(args);
        let lines = json_lines(&self.ok(&a));
        let summary = lines.last().expect("a summary line");
        assert_eq!(summary["type"], "summary");
        summary["snapshot"].as_str().expect("snapshot id").to_string()
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write");
        p
    }

    /// A small tree: two text files, a binary file of several chunks' worth, a symlink.
    fn populate(&self) {
        self.write("src/hello.txt", b"hello, world\n");
        self.write("src/docs/notes.md", b"# notes\nsecret plans\n");
        self.write("src/data/blob.bin", &pseudo_random(3 << 20, 7));
        std::os::unix::fs::symlink("hello.txt", self.root.join("src/link")).expect("symlink");
    }

    /// Number of objects stored in the repository (every file under it).
    fn repo_files(&self) -> usize {
        count_files(&self.repo())
    }
}

fn show(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

/// Parse stdout as JSON lines, each an object with a "type".
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v["type"].is_string(), "no type field: {l}");
            v
        })
        .collect()
}

/// The one-line error of a failed run.
fn error_line(stderr: &str) -> &str {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("offsite: error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"));
    assert_eq!(stderr.lines().filter(|l| l.starts_with("offsite: error: ")).count(), 1, "{stderr}");
    line
}

// ---------------------------------------------------------------- repository and errors

#[test]
fn init_prints_id_and_location() {
    let w = World::new();
    let out = w.ok(&["init"]);
    assert!(out.contains("created repository"), "{out}");
    assert!(out.contains(&w.repo().display().to_string()), "{out}");
    assert!(w.repo().join("config").is_file());

    let w2 = World::new();
    let lines = json_lines(&w2.ok(&["init", "--json"]));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "init");
    assert_eq!(lines[0]["id"].as_str().expect("id").len(), 64);
    assert_eq!(lines[0]["location"], w2.repo().display().to_string());
}

#[test]
fn init_twice_fails_with_already_exists() {
    let w = World::init();
    let err = w.fails(&["init"], 1);
    assert!(error_line(&err).contains("already exists"), "{err}");
}

#[test]
fn wrong_passphrase_is_one_line_naming_the_passphrase() {
    let w = World::init();
    let err = w.fails_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "wrong"), 1);
    let line = error_line(&err);
    assert!(line.contains("wrong passphrase"), "{err}");
    assert!(line.contains("OFFSITE_PASSWORD"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn missing_repository_says_how_to_create_one() {
    let w = World::new();
    let err = w.fails(&["snapshots"], 1);
    let line = error_line(&err);
    assert!(line.contains(&format!("no repository at {}", w.repo().display())), "{err}");
    assert!(line.contains("offsite init"), "{err}");
}

#[test]
fn no_repository_given() {
    let w = World::new();
    let err = w.fails_cmd(w.cmd(&["snapshots"]).env_remove("OFFSITE_REPOSITORY"), 1);
    assert!(error_line(&err).contains("no repository given: use --repo or set OFFSITE_REPOSITORY"), "{err}");
}

#[test]
fn unknown_url_scheme_is_refused() {
    let w = World::new();
    let err = w.fails(&["--repo", "xyz://host/path", "init"], 1);
    assert!(error_line(&err).contains("unknown repository URL scheme"), "{err}");
}

#[test]
fn repo_flag_works_after_the_subcommand_and_beats_the_environment() {
    let w = World::new();
    let other = w.path("other");
    w.ok(&["init", "--repo", other.to_str().expect("utf8")]);
    assert!(other.join("config").is_file());
    assert!(!w.repo().exists());
}

#[test]
fn no_passphrase_without_a_terminal() {
    let w = World::init();
    let err = w.fails_cmd(w.cmd(&["snapshots"]).env_remove("OFFSITE_PASSWORD"), 1);
    assert!(error_line(&err).contains("no passphrase: set OFFSITE_PASSWORD_FILE"), "{err}");
}

#[test]
fn passphrase_from_file_command_and_key_file() {
    let w = World::init();
    let pw_file = w.write("pw", format!("{PASSWORD}\nignored second line\n").as_bytes());
    // --password-file takes precedence over OFFSITE_PASSWORD (which is wrong here).
    w.ok_cmd(w.cmd(&["snapshots", "--password-file"]).arg(&pw_file).env("OFFSITE_PASSWORD", "wrong"));
    w.ok_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD_FILE", &pw_file).env_remove("OFFSITE_PASSWORD"));
    // The command beats OFFSITE_PASSWORD.
    w.ok_cmd(
        w.cmd(&["snapshots"])
            .env("OFFSITE_PASSWORD_COMMAND", format!("echo '{PASSWORD}'"))
            .env("OFFSITE_PASSWORD", "x"),
    );
    let err = w.fails_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD_COMMAND", "exit 4"), 1);
    assert!(error_line(&err).contains("OFFSITE_PASSWORD_COMMAND failed"), "{err}");

    // A key file is used whole, newlines included.
    let k = World::new();
    let key_file = k.write("keyfile", b"line one\nline two\n");
    k.ok_cmd(k.cmd(&["init", "--key-file"]).arg(&key_file).env_remove("OFFSITE_PASSWORD"));
    k.ok_cmd(k.cmd(&["snapshots", "--key-file"]).arg(&key_file).env_remove("OFFSITE_PASSWORD"));
    k.ok_cmd(k.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "line one\nline two\n"));
    k.fails_cmd(k.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "line one"), 1);
}

#[test]
fn help_and_version() {
    let w = World::new();
    let help = w.ok(&["--help"]);
    for cmd in ["init", "backup", "snapshots", "ls", "diff", "dump", "restore", "check", "key"] {
        assert!(help.contains(cmd), "{cmd} missing from --help:\n{help}");
    }
    assert!(!w.ok(&["-h"]).contains("insecure-fast-kdf"));
    assert!(help.contains("TEST ONLY"), "{help}");
    assert!(w.ok(&["backup", "--help"]).contains("--exclude-larger-than"));
    assert!(w.ok(&["key", "add", "--help"]).contains("--backup-only"));
    assert!(w.ok(&["--version"]).starts_with("offsite "));
}

#[test]
fn usage_errors_exit_1() {
    let w = World::new();
    w.fails(&["backup"], 1);
    w.fails(&["no-such-command"], 1);
}

// ---------------------------------------------------------------- keys

#[test]
fn key_add_list_remove_passwd() {
    let w = World::init();
    let listed = json_lines(&w.ok(&["key", "list", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["type"], "key");
    assert_eq!(listed[0]["kind"], "full");
    assert_eq!(listed[0]["current"], true);

    let added = json_lines(&w.ok_cmd(w.cmd(&["key", "add", "--json"]).env("OFFSITE_NEW_PASSWORD", "second")));
    assert_eq!(added[0]["type"], "key_added");
    let second = added[0]["id"].as_str().expect("id").to_string();
    w.ok_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "second"));

    let text = w.ok(&["key", "list"]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with('*')).count(), 1, "{text}");
    assert!(text.contains(&second[..8]), "{text}");

    // The key in use cannot be removed; another one can.
    let err = w.fails_cmd(w.cmd(&["key", "remove", &second[..8]]).env("OFFSITE_PASSWORD", "second"), 1);
    assert!(error_line(&err).contains("in use"), "{err}");
    let out = w.ok(&["key", "remove", &second[..10]]);
    assert!(out.contains(&second[..8]), "{out}");
    w.fails_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "second"), 1);

    // passwd from a file: the old passphrase stops working, the new one works.
    let new_pw = w.write("newpw", b"brand new\n");
    w.ok_cmd(w.cmd(&["key", "passwd", "--new-password-file"]).arg(&new_pw));
    let err = w.fails(&["snapshots"], 1);
    assert!(error_line(&err).contains("wrong passphrase"), "{err}");
    w.ok_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "brand new"));
    assert_eq!(
        json_lines(&w.ok_cmd(w.cmd(&["key", "list", "--json"]).env("OFFSITE_PASSWORD", "brand new"))).len(),
        1
    );
}

#[test]
fn key_add_without_a_new_passphrase_source_fails() {
    let w = World::init();
    let err = w.fails(&["key", "add"], 1);
    assert!(error_line(&err).contains("no new passphrase"), "{err}");
}

// ---------------------------------------------------------------- backup and browsing

#[test]
fn backup_snapshots_ls_dump_diff_restore_round_trip() {
    let w = World::init();
    w.populate();
    let src = w.src();
    let src_s = src.to_str().expect("utf8");

    let out = w.ok(&["backup", src_s]);
    assert!(out.contains("Files: 3 new, 0 changed, 0 unchanged"), "{out}");
    assert!(out.contains("Dirs: "), "{out}");
    assert!(out.contains("Read: 3.00 MiB"), "{out}");
    assert!(out.contains("Added to the repository: "), "{out}");
    assert!(out.contains("Duration: "), "{out}");
    let first = out.lines().find_map(|l| l.strip_prefix("snapshot ")).expect("snapshot line").to_string();
    assert!(first.ends_with(" saved"), "{out}");
    let first = first.trim_end_matches(" saved").to_string();

    let table = w.ok(&["snapshots"]);
    assert!(table.contains(&first), "{table}");
    assert!(table.contains(src_s), "{table}");

    let listing = w.ok(&["ls", "latest"]);
    let hello = src.join("hello.txt");
    let hello_line =
        listing.lines().find(|l| l.ends_with(hello.to_str().expect("utf8"))).expect("hello listed");
    assert!(hello_line.starts_with("-rw"), "{hello_line}");
    assert!(hello_line.contains(" 13 "), "{hello_line}");
    assert!(listing.lines().any(|l| l.starts_with('d') && l.ends_with("/src/docs")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with('l') && l.contains("/src/link -> hello.txt")), "{listing}");
    let sub = w.ok(&["ls", "latest", src.join("docs").to_str().expect("utf8")]);
    assert!(sub.contains("notes.md") && !sub.contains("hello.txt"), "{sub}");

    let dumped = w.run(&mut w.cmd(&["dump", "latest", src.join("data/blob.bin").to_str().expect("utf8")]));
    assert!(dumped.status.success(), "{}", show(&dumped));
    assert!(dumped.stdout == fs::read(src.join("data/blob.bin")).expect("read"), "dump differs");

    // Change one file, add one, remove one; back up again.
    w.write("src/hello.txt", b"hello, changed world\n");
    w.write("src/new.txt", b"new\n");
    fs::remove_file(src.join("docs/notes.md")).expect("rm");
    let out = w.ok(&["backup", src_s]);
    assert!(out.contains("1 new, 1 changed, 1 unchanged"), "{out}");

    let diff = w.ok(&["diff", "latest~1", "latest"]);
    let has = |prefix: &str, path: &str| diff.lines().any(|l| l.starts_with(prefix) && l.ends_with(path));
    assert!(has("+", "/src/new.txt"), "{diff}");
    assert!(has("M", "/src/hello.txt"), "{diff}");
    assert!(has("-", "/src/docs/notes.md"), "{diff}");
    assert!(!diff.contains("blob.bin"), "unchanged file in diff:\n{diff}");
    assert!(diff.lines().any(|l| l == format!("+       4 {}", src.join("new.txt").display())), "{diff}");

    // Restore the first snapshot by id prefix; compare with what was backed up.
    let target = w.path("restored");
    let out = w.ok(&["restore", &first, "--target", target.to_str().expect("utf8")]);
    assert!(out.contains("restored snapshot"), "{out}");
    let r = target.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(fs::read(r.join("hello.txt")).expect("restored"), b"hello, world\n");
    assert_eq!(fs::read(r.join("docs/notes.md")).expect("restored"), b"# notes\nsecret plans\n");
    assert!(
        fs::read(r.join("data/blob.bin")).expect("restored")
            == fs::read(src.join("data/blob.bin")).expect("src")
    );
    assert_eq!(fs::read_link(r.join("link")).expect("symlink"), Path::new("hello.txt"));
    assert!(!r.join("new.txt").exists());

    // Restore only some paths of the latest.
    let part = w.path("part");
    w.ok(&["restore", "latest", "--target", part.to_str().expect("utf8"), "--include", "**/new.txt"]);
    let pr = part.join(src.strip_prefix("/").expect("absolute"));
    assert!(pr.join("new.txt").is_file());
    assert!(!pr.join("data/blob.bin").exists());

    w.ok(&["check"]).contains("no problems found").then_some(()).expect("check clean");
}

#[test]
fn snapshot_selectors_and_filters() {
    let w = World::init();
    w.write("src/a", b"1");
    let src_s = w.src().to_str().expect("utf8").to_string();
    let first = w.backup(&[&src_s, "--tag", "one", "--host", "alpha"]);
    w.write("src/a", b"22");
    let second = w.backup(&[&src_s, "--tag", "two", "--host", "beta"]);

    let dump = |sel: &str, extra: &[&str]| {
        let path = w.src().join("a");
        let mut args = vec!["dump", sel, path.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        w.ok(&args)
    };
    assert_eq!(dump("latest", &[]), "22");
    assert_eq!(dump("latest~1", &[]), "1");
    assert_eq!(dump(&first[..8], &[]), "1");
    assert_eq!(dump(&second[..12], &[]), "22");
    assert_eq!(dump("latest", &["--host", "alpha"]), "1");
    assert_eq!(dump("latest", &["--tag", "one"]), "1");
    assert_eq!(dump("latest", &["--path", &src_s]), "22");
    assert_eq!(dump("2099-01-01", &[]), "22");
    let err = w.fails(&["ls", "1h"], 1);
    assert!(error_line(&err).contains("no snapshot matches"), "as of an hour ago there was none: {err}");

    let err = w.fails(&["ls", "latest~2"], 1);
    assert!(error_line(&err).contains("no snapshot matches"), "{err}");
    let err = w.fails(&["ls", "not-a-selector!"], 1);
    assert!(error_line(&err).contains("invalid snapshot selector"), "{err}");

    let listed = json_lines(&w.ok(&["snapshots", "--json", "--tag", "two"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], second);
    assert_eq!(listed[0]["host"], "beta");
}

#[test]
fn json_outputs_are_json_lines_with_types() {
    let w = World::init();
    w.populate();
    let src_s = w.src().to_str().expect("utf8").to_string();

    let lines = json_lines(&w.ok(&["backup", "--json", &src_s]));
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    for field in
        ["files_new", "files_changed", "files_unchanged", "dirs", "bytes_read", "bytes_added", "duration_ms"]
    {
        assert!(summary[field].is_u64(), "{field} in {summary}");
    }
    assert_eq!(summary["files_new"], 3);
    assert!(summary["errors"].as_array().expect("errors").is_empty());
    let id = summary["snapshot"].as_str().expect("id").to_string();

    let snaps = json_lines(&w.ok(&["snapshots", "--json"]));
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["type"], "snapshot");
    assert_eq!(snaps[0]["id"], id);
    assert_eq!(snaps[0]["paths"][0], src_s);
    assert!(snaps[0]["summary"]["files_new"].is_u64());
    assert!(snaps[0]["tree"].as_str().is_some_and(|t| t.len() == 64));

    let entries = json_lines(&w.ok(&["ls", "--json", "latest"]));
    assert!(entries.iter().all(|e| e["type"] == "entry"));
    let hello = entries.iter().find(|e| e["path"] == format!("{src_s}/hello.txt")).expect("hello");
    assert_eq!(hello["kind"], "file");
    assert_eq!(hello["size"], 13);

    w.write("src/hello.txt", b"changed\n");
    w.ok(&["backup", &src_s]);
    let diff = json_lines(&w.ok(&["diff", "--json", "latest~1", "latest"]));
    let change = diff.iter().find(|e| e["type"] == "change").expect("a change");
    assert_eq!(change["change"], "M");
    assert_eq!(change["path"], format!("{src_s}/hello.txt"));
    assert_eq!(diff.last().expect("summary")["type"], "summary");

    let check = json_lines(&w.ok(&["check", "--json", "--read-data"]));
    let last = check.last().expect("summary");
    assert_eq!(last["type"], "summary");
    assert_eq!(last["problems"], 0);

    let restore =
        json_lines(&w.ok(&["restore", "--json", "latest", "--target", w.path("t").to_str().expect("utf8")]));
    assert_eq!(restore.last().expect("summary")["type"], "summary");
    assert_eq!(restore.last().expect("summary")["files"], 3);
}

#[test]
fn dry_run_stores_nothing_and_itemizes_plaintext_names() {
    let w = World::init();
    w.populate();
    let before = w.repo_files();
    let src = w.src();
    let out = w.ok(&["backup", "--dry-run", src.to_str().expect("utf8")]);
    assert_eq!(w.repo_files(), before, "dry run wrote to the repository");
    let hello = format!("+ {} (", src.join("hello.txt").display());
    assert!(out.lines().any(|l| l.starts_with(&hello)), "{out}");
    assert!(out.lines().any(|l| l.starts_with('+') && l.contains("docs/notes.md")), "{out}");
    assert!(out.contains("dry run: nothing was saved"), "{out}");
    assert!(json_lines(&w.ok(&["snapshots", "--json"])).is_empty());

    let lines = json_lines(&w.ok(&["backup", "--dry-run", "--json", src.to_str().expect("utf8")]));
    assert_eq!(w.repo_files(), before);
    assert!(lines.iter().any(|l| l["type"] == "change"
        && l["change"] == "+"
        && l["path"] == src.join("hello.txt").display().to_string()));
    assert_eq!(lines.last().expect("summary")["snapshot"], Value::Null);
}

#[test]
fn missing_path_is_named_and_exits_3_while_the_rest_is_saved() {
    let w = World::init();
    w.write("src/a.txt", b"kept\n");
    let missing = w.path("does-not-exist");
    let out =
        w.run(&mut w.cmd(&["backup", w.src().to_str().expect("utf8"), missing.to_str().expect("utf8")]));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("offsite: warning: cannot read {}: ", missing.display())), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"), "{}", show(&out));
    assert_eq!(w.ok(&["dump", "latest", w.src().join("a.txt").to_str().expect("utf8")]), "kept\n");

    // JSON: the error is in the summary.
    let out = w.run(&mut w.cmd(&[
        "backup",
        "--json",
        w.src().to_str().expect("utf8"),
        missing.to_str().expect("utf8"),
    ]));
    assert_eq!(out.status.code(), Some(3));
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    let errors = lines.last().expect("summary")["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["path"], missing.display().to_string());

    // Nothing that exists: a failure, not a partial backup.
    let err = w.fails(&["backup", missing.to_str().expect("utf8")], 1);
    assert!(error_line(&err).contains("nothing to back up"), "{err}");
}

#[test]
fn excludes_and_size_limit() {
    let w = World::init();
    w.write("src/small.txt", b"small");
    w.write("src/big.bin", &vec![1u8; 4096]);
    w.write("src/skip.log", b"log");
    let src_s = w.src().to_str().expect("utf8").to_string();
    w.ok(&["backup", &src_s, "--exclude-larger-than", "1K", "--exclude", "*.log"]);
    let listing = w.ok(&["ls", "latest"]);
    assert!(listing.contains("small.txt"), "{listing}");
    assert!(!listing.contains("big.bin"), "{listing}");
    assert!(!listing.contains("skip.log"), "{listing}");

    let err = w.fails(&["backup", &src_s, "--exclude-larger-than", "10X"], 1);
    assert!(error_line(&err).contains("--exclude-larger-than: invalid size \"10X\""), "{err}");
}

#[test]
fn backup_only_key_adds_backups_but_reads_nothing() {
    let w = World::init();
    w.populate();
    let src_s = w.src().to_str().expect("utf8").to_string();
    w.backup(&[&src_s]);
    let out = w.ok_cmd(w.cmd(&["key", "add", "--backup-only"]).env("OFFSITE_NEW_PASSWORD", "laptop"));
    assert!(out.contains("backup-only"), "{out}");
    let listed = json_lines(&w.ok(&["key", "list", "--json"]));
    assert!(listed.iter().any(|k| k["kind"] == "backup-only"), "{listed:?}");

    let laptop = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("OFFSITE_PASSWORD", "laptop");
        c
    };
    w.write("src/from-laptop.txt", b"laptop data\n");
    w.ok_cmd(&mut laptop(&["backup", &src_s]));

    let target = w.path("t");
    let file = w.src().join("hello.txt");
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["dump", "latest", file.to_str().expect("utf8")],
        vec!["restore", "latest", "--target", target.to_str().expect("utf8")],
        vec!["check"],
        vec!["diff", "latest~1", "latest"],
    ] {
        let err = w.fails_cmd(&mut laptop(&args), 1);
        assert!(error_line(&err).contains("this key can only add backups"), "{args:?}: {err}");
    }
    assert!(!target.exists());

    // The full key sees the laptop's snapshot.
    assert_eq!(json_lines(&w.ok(&["snapshots", "--json"])).len(), 2);
    assert_eq!(
        w.ok(&["dump", "latest", w.src().join("from-laptop.txt").to_str().expect("utf8")]),
        "laptop data\n"
    );
}

#[test]
fn check_reports_damaged_data_and_exits_1() {
    let w = World::init();
    w.populate();
    w.backup(&[w.src().to_str().expect("utf8")]);
    assert!(w.ok(&["check", "--read-data"]).contains("no problems found"));
    // Damage one data pack (flip a byte in the middle).
    let pack = find_first_file(&w.repo().join("data")).expect("a pack");
    let mut bytes = fs::read(&pack).expect("read pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&pack, &bytes).expect("write pack");
    let out = w.run(&mut w.cmd(&["check", "--read-data"]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let name = pack.file_name().expect("name").to_str().expect("utf8");
    assert!(stdout.contains(&name[..8]), "problem does not name the pack:\n{}", show(&out));
    assert!(error_line(&String::from_utf8_lossy(&out.stderr)).contains("problem"));

    let err = w.fails(&["check", "--read-data-subset", "0%"], 1);
    assert!(error_line(&err).contains("invalid percentage"), "{err}");
}

fn find_first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if let Some(f) = find_first_file(&p) {
                return Some(f);
            }
        } else {
            return Some(p);
        }
    }
    None
}

#[test]
fn closed_stdout_is_success() {
    let w = World::init();
    for i in 0..1500 {
        w.write(&format!("src/d{}/file-with-a-fairly-long-name-{i:05}.txt", i % 10), b"x");
    }
    w.backup(&[w.src().to_str().expect("utf8")]);
    let bin = env!("CARGO_BIN_EXE_offsite");
    let mut sh = Command::new("bash");
    w.setup(&mut sh);
    sh.args(["-c", &format!("set -o pipefail; '{bin}' ls latest | head -n 1")]);
    let out = sh.output().expect("bash");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", show(&out));
}

#[test]
fn restore_overwrite_never_keeps_existing_files() {
    let w = World::init();
    w.write("src/f.txt", b"from backup\n");
    w.backup(&[w.src().to_str().expect("utf8")]);
    let target = w.path("t");
    let existing = target.join(w.src().strip_prefix("/").expect("abs")).join("f.txt");
    fs::create_dir_all(existing.parent().expect("parent")).expect("mkdir");
    fs::write(&existing, b"local edit\n").expect("write");
    w.ok(&["restore", "latest", "--target", target.to_str().expect("utf8"), "--overwrite", "never"]);
    assert_eq!(fs::read(&existing).expect("read"), b"local edit\n");
    w.ok(&["restore", "latest", "--target", target.to_str().expect("utf8"), "--overwrite", "always"]);
    assert_eq!(fs::read(&existing).expect("read"), b"from backup\n");
}

#[test]
fn unchanged_files_are_not_read_again() {
    let w = World::init();
    w.populate();
    let src_s = w.src().to_str().expect("utf8").to_string();
    w.backup(&[&src_s]);
    let lines = json_lines(&w.ok(&["backup", "--json", &src_s]));
    let s = lines.last().expect("summary");
    assert_eq!(s["files_unchanged"], 3, "{s}");
    assert_eq!(s["bytes_read"], 0, "{s}");
}

// ---------------------------------------------------------------- hygiene

/// Stored strings (file names, symlink targets, host, tags) reach the terminal escaped: a
/// name holding ESC [ 2 J (clear screen) or a carriage return cannot rewrite what the user
/// sees. `--json` keeps the exact names.
#[test]
fn control_characters_in_stored_names_are_escaped_in_human_output() {
    let w = World::init();
    let evil = "evil\x1b[2J\rname";
    let file = w.write(&format!("src/{evil}.txt"), b"one\n");
    let dir = w.src().join(format!("{evil}-dir"));
    fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::symlink(format!("\x1b]0;{evil}\x07"), w.src().join("link")).expect("symlink");
    let src_s = w.src().to_str().expect("utf8").to_string();
    let missing = w.path(&format!("{evil}-missing"));
    let tagged = ["--host", "host\x1b[31m", "--tag", "tag\r\x1b[1A"];
    let mut runs = Vec::new();
    let mut backup = w.cmd(&["backup", "-v", &src_s]);
    runs.push(w.run(backup.arg(&missing).args(tagged)));
    assert_eq!(runs[0].status.code(), Some(3), "{}", show(&runs[0]));
    w.write(&format!("src/{evil}.txt"), b"two\n");
    runs.push(w.run(w.cmd(&["backup", "-v", &src_s]).args(tagged)));
    runs.push(w.run(&mut w.cmd(&["ls", "latest"])));
    runs.push(w.run(&mut w.cmd(&["diff", "latest~1", "latest"])));
    runs.push(w.run(&mut w.cmd(&["snapshots"])));
    runs.push(w.run(&mut w.cmd(&["dump", "latest", dir.to_str().expect("utf8")])));
    assert_eq!(runs[5].status.code(), Some(1), "{}", show(&runs[5]));
    runs.push(w.run(&mut w.cmd(&["restore", "latest", "--target", file.to_str().expect("utf8")])));
    for out in &runs {
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            for raw in [0x1b, b'\r', 0x07] {
                assert!(!bytes.contains(&raw), "raw {raw:#04x} on {what}:\n{}", show(out));
            }
        }
    }
    let shown = "evil\\x1b[2J\\rname";
    let text = |i: usize| String::from_utf8_lossy(&runs[i].stdout).into_owned();
    let err = |i: usize| String::from_utf8_lossy(&runs[i].stderr).into_owned();
    assert!(
        text(0).lines().any(|l| l.starts_with('+') && l.contains(&format!("{shown}.txt"))),
        "{}",
        text(0)
    );
    assert!(err(0).contains(&format!("cannot read {}/{shown}-missing", w.root.display())), "{}", err(0));
    assert!(text(1).lines().any(|l| l.starts_with('M') && l.contains(shown)), "{}", text(1));
    assert!(text(2).contains(&format!("/link -> \\x1b]0;{shown}\\x07")), "{}", text(2));
    assert!(
        text(3).lines().any(|l| l.starts_with('M') && l.ends_with(&format!("/{shown}.txt"))),
        "{}",
        text(3)
    );
    assert!(text(4).contains("host\\x1b[31m") && text(4).contains("tag\\r\\x1b[1A"), "{}", text(4));
    assert!(error_line(&err(5)).contains(&format!("{shown}-dir is a directory")), "{}", err(5));
    // A backslash is escaped too, so the escaped form of a name cannot be forged by another.
    let slashed = w.write("src/back\\slash", b"");
    let out = w.ok(&["backup", "-v", &src_s]);
    assert!(out.contains("back\\\\slash"), "{out}");
    assert!(slashed.exists());

    // --json holds the exact names.
    let entries = json_lines(&w.ok(&["ls", "--json", "latest"]));
    assert!(entries.iter().any(|e| e["path"] == format!("{src_s}/{evil}.txt")), "{entries:?}");
    assert!(entries.iter().any(|e| e["target"] == format!("\x1b]0;{evil}\x07")), "{entries:?}");
    let diff = json_lines(&w.ok(&["diff", "--json", "latest~2", "latest~1"]));
    assert!(diff.iter().any(|e| e["path"] == format!("{src_s}/{evil}.txt")), "{diff:?}");
    let snaps = json_lines(&w.ok(&["snapshots", "--json"]));
    assert_eq!(snaps[0]["host"], "host\x1b[31m");
    assert_eq!(snaps[0]["tags"][0], "tag\r\x1b[1A");
}

/// The password command and rclone are children of offsite: they must not find the
/// passphrases of OFFSITE_PASSWORD or OFFSITE_NEW_PASSWORD in their environment.
#[test]
fn the_password_command_does_not_inherit_the_passphrases() {
    let w = World::init();
    let seen = w.path("child-env");
    let command = format!("env > '{}'; echo '{PASSWORD}'", seen.display());
    w.ok_cmd(
        w.cmd(&["key", "add"])
            .env("OFFSITE_PASSWORD_COMMAND", &command)
            .env("OFFSITE_PASSWORD", "old-secret-in-env")
            .env("OFFSITE_NEW_PASSWORD", "new-secret-in-env"),
    );
    let env = fs::read_to_string(&seen).expect("the command ran");
    let offsite: Vec<&str> = env.lines().filter(|l| l.starts_with("OFFSITE_")).collect();
    assert!(env.contains("OFFSITE_PASSWORD_COMMAND="), "control: the environment was written: {offsite:?}");
    assert!(env.contains("OFFSITE_REPOSITORY="), "other settings stay: {offsite:?}");
    for secret in ["old-secret-in-env", "new-secret-in-env", "OFFSITE_PASSWORD=", "OFFSITE_NEW_PASSWORD="] {
        assert!(!env.contains(secret), "the password command saw {secret}: {offsite:?}");
    }
    w.ok_cmd(w.cmd(&["snapshots"]).env("OFFSITE_PASSWORD", "new-secret-in-env"));
}

/// OFFSITE_INSECURE_FAST_KDF makes key files whose passphrase is cheap to guess: `init`,
/// `key add` and `key passwd` refuse it unless it says so in its value, and every command that
/// creates or opens a key file under it says so on stderr.
#[test]
fn the_insecure_fast_kdf_must_be_confirmed_and_is_loud() {
    let w = World::new();
    let warned = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.starts_with("offsite: warning: OFFSITE_INSECURE_FAST_KDF") && l.contains("crack"))
    };
    for value in ["1", "true", "testing-only", " testing-only-keys-are-crackable"] {
        let err = w.fails_cmd(w.cmd(&["init"]).env("OFFSITE_INSECURE_FAST_KDF", value), 1);
        let line = error_line(&err);
        assert!(line.contains("OFFSITE_INSECURE_FAST_KDF") && line.contains(FAST_KDF), "{err}");
        assert!(line.contains("unset"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!w.repo().exists(), "init under {value:?} created the repository");
    }
    let out = w.run(&mut w.cmd(&["init"]));
    assert!(out.status.success(), "{}", show(&out));
    assert!(warned(&String::from_utf8_lossy(&out.stderr)), "{}", show(&out));
    let out = w.run(&mut w.cmd(&["snapshots"]));
    assert!(out.status.success() && warned(&String::from_utf8_lossy(&out.stderr)), "{}", show(&out));
    // Unset: silent, and it opens the same repository.
    let out = w.run(w.cmd(&["snapshots"]).env_remove("OFFSITE_INSECURE_FAST_KDF"));
    assert!(out.status.success() && out.stderr.is_empty(), "{}", show(&out));

    for args in [&["key", "add"][..], &["key", "passwd"][..]] {
        let err = w.fails_cmd(
            w.cmd(args).env("OFFSITE_INSECURE_FAST_KDF", "1").env("OFFSITE_NEW_PASSWORD", "other"),
            1,
        );
        assert!(error_line(&err).contains(FAST_KDF), "{args:?}: {err}");
    }
    assert_eq!(json_lines(&w.ok(&["key", "list", "--json"])).len(), 1, "no key was added");
    let out = w.run(w.cmd(&["key", "add"]).env("OFFSITE_NEW_PASSWORD", "other"));
    assert!(out.status.success() && warned(&String::from_utf8_lossy(&out.stderr)), "{}", show(&out));
    // Other commands make no key file: any value only warns.
    let out = w.run(w.cmd(&["snapshots"]).env("OFFSITE_INSECURE_FAST_KDF", "1"));
    assert!(out.status.success() && warned(&String::from_utf8_lossy(&out.stderr)), "{}", show(&out));
}
