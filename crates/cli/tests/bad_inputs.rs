//! Suite 4, bad inputs where the exit code matters: an unreadable directory is skipped, named,
//! and makes the backup exit 3 with the rest saved; a restore into a target it cannot write
//! exits 1 with an error naming the target. Permissions do not bind root, so when the tests
//! run as root the binary runs as `nobody` (uid 65534) over files that user owns.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "bad inputs passphrase";
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// A world the binary can use as an ordinary user.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        fs::create_dir_all(root.join("src")).expect("mkdir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        World { _dir: dir, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        p
    }

    /// As root: hand everything under the world to `nobody`, who runs the binary.
    fn give_away(&self) {
        if is_root() {
            chown_all(&self.root);
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_offsite"));
        for var in ["OFFSITE_PASSWORD_FILE", "OFFSITE_PASSWORD_COMMAND", "OFFSITE_LOG", "OFFSITE_REPOSITORY"]
        {
            c.env_remove(var);
        }
        c.env("OFFSITE_REPOSITORY", self.path("repo"))
            .env("OFFSITE_PASSWORD", PASSWORD)
            .env("OFFSITE_CACHE_DIR", self.path("cache"))
            .env("OFFSITE_INSECURE_FAST_KDF", "testing-only-keys-are-crackable")
            .env("HOME", &self.root)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .args(args);
        if is_root() {
            c.uid(NOBODY).gid(NOBODY);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run offsite")
    }
}

fn chown_all(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).expect("chown");
    if fs::symlink_metadata(p).expect("stat").is_dir() {
        for e in fs::read_dir(p).expect("read_dir") {
            chown_all(&e.expect("entry").path());
        }
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An unreadable file is named and the backup exits 3. As root the binary runs as `nobody`
/// (root reads every file, so this path of backup would otherwise never run in CI).
#[test]
fn an_unreadable_file_is_named_and_exits_3() {
    let w = World::new();
    w.write("src/ok.txt", b"fine\n");
    let secret = w.write("src/secret.txt", b"no\n");
    w.give_away();
    let out = w.run(&["init"]);
    assert!(out.status.success(), "{}", show(&out));
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).expect("chmod");
    let src = w.path("src");
    let out = w.run(&["backup", src.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("offsite: warning: cannot read {}", secret.display())), "{stderr}");
    let out = w.run(&["dump", "latest", src.join("ok.txt").to_str().expect("utf8")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\n", "{}", show(&out));
}

#[test]
fn an_unreadable_directory_is_skipped_named_and_exits_3() {
    let w = World::new();
    w.write("src/ok.txt", b"fine\n");
    w.write("src/locked/secret.txt", b"unseen\n");
    w.write("src/locked/deeper/more.txt", b"unseen\n");
    w.write("src/after/z.txt", b"after\n");
    w.give_away();
    let out = w.run(&["init"]);
    assert!(out.status.success(), "{}", show(&out));
    let locked = w.path("src/locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");

    let src = w.path("src");
    let out = w.run(&["backup", src.to_str().expect("utf8")]);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("cannot read")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains(&locked.display().to_string()), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"), "{}", show(&out));

    // The rest is saved; nothing under the locked directory is.
    for (f, want) in [("ok.txt", "fine\n"), ("after/z.txt", "after\n")] {
        let out = w.run(&["dump", "latest", src.join(f).to_str().expect("utf8")]);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    let out = w.run(&["ls", "latest", src.to_str().expect("utf8")]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("ok.txt") && !listing.contains("secret.txt"), "{listing}");
    let out = w.run(&["dump", "latest", locked.join("secret.txt").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // JSON: the skipped directory is in the summary's errors.
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = w.run(&["backup", "--json", src.to_str().expect("utf8")]);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("summary")).expect("json");
    let errors = summary["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{stdout}");
    assert_eq!(errors[0]["path"], locked.display().to_string());
}

#[test]
fn a_target_that_cannot_be_written_exits_1_naming_it() {
    let w = World::new();
    w.write("src/f.txt", b"x\n");
    w.give_away();
    let out = w.run(&["init"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.run(&["backup", w.path("src").to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", show(&out));
    // Owned by root (or, not as root, by us without write permission).
    let target = w.path("readonly");
    fs::create_dir(&target).expect("mkdir");
    if is_root() {
        std::os::unix::fs::lchown(&target, Some(0), Some(0)).expect("chown");
    }
    fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).expect("chmod");
    for t in [target.clone(), target.join("sub")] {
        let out = w.run(&["restore", "latest", "--target", t.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let fast_kdf = "offsite: warning: OFFSITE_INSECURE_FAST_KDF";
        assert_eq!(stderr.lines().filter(|l| !l.starts_with(fast_kdf)).count(), 1, "{stderr}");
        assert!(stderr.contains(&target.display().to_string()), "{stderr}");
        assert_eq!(fs::read_dir(&target).expect("list").count(), 0);
    }
}
