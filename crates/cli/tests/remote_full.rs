//! A storage that fills up during a backup, through the real `offsite` binary against real
//! servers: OpenSSH sshd (sftp://), `rclone serve restic` (rest:) and s3s-fs (s3://), each
//! storing the repository on its own 24 MiB tmpfs.
//!
//! Each test backs up a small tree, fills the tmpfs with a filler file until only
//! [`HEADROOM`] is left, then backs up 12 MiB more, which cannot fit. It asserts: exit 1 with
//! one stderr line that says the storage is full and names the repository (and nothing else
//! on stderr but `offsite:` lines); the repository still opens with only the earlier snapshot;
//! `offsite check` passes; after the filler is deleted, the same backup command succeeds,
//! `check --read-data` passes and the restored tree equals the source.
//!
//! Mounting needs root: without it a test is skipped with a note, or fails when `CI=true`
//! (as does a missing server binary).

mod remote_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use remote_support::{pseudo_random, World, ACCESS_KEY, SECRET_KEY};
use serde_json::Value;

/// Size of each server's storage.
const TMPFS_SIZE: &str = "size=24m";
/// Free space left on the storage once the filler is written.
const HEADROOM: u64 = 4 << 20;
/// Size of the file that does not fit.
const BIG: usize = 12 << 20;

/// A tmpfs mounted on a directory for the length of a test; lazily unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a [`TMPFS_SIZE`] tmpfs on `dir`, or None (skip; a failure under `CI=true`) when
    /// mounting is not permitted.
    fn mount(dir: &Path) -> Option<Tmpfs> {
        fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"]).arg(dir).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir: dir.to_path_buf() }),
            Ok(o) => remote_support::unavailable(&format!(
                "cannot mount a tmpfs on {} (root needed): {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => remote_support::unavailable(&format!("cannot run mount: {e}")),
        }
    }

    /// Bytes free on the tmpfs.
    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        s.blocks_available() * s.fragment_size()
    }

    /// Write a file of real bytes (not sparse) that leaves only [`HEADROOM`] free; its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut left = self.free().saturating_sub(HEADROOM);
        let mut f = fs::File::create(&path).expect("filler");
        let block = vec![0x5a_u8; 1 << 20];
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n]).expect("write filler");
            left -= n as u64;
        }
        f.sync_all().expect("sync filler");
        let free = self.free();
        assert!(free <= HEADROOM + (1 << 20), "the filler left {free} bytes free");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Snapshot ids in `offsite snapshots --json`, oldest first.
fn snapshot_ids(w: &World) -> Vec<String> {
    w.ok(&["snapshots", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["type"] == "snapshot")
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect()
}

/// Every object at a final name under `repo` (a file named by 64 hex characters) holds exactly
/// the bytes its name is the SHA-256 of: no partial upload is visible. Temporary files (other
/// names) are allowed; the listing ignores them. Returns the number of objects.
fn assert_no_partial_objects(repo: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                let bytes = fs::read(&path).expect("read object");
                assert_eq!(
                    offsite_crypto::sha256_hex(&bytes),
                    name,
                    "{} is not whole ({} bytes): a partial upload is visible",
                    path.display(),
                    bytes.len()
                );
                n += 1;
            }
        }
    }
    n
}

/// The whole scenario on `w` (initialised here), whose repository lives on `fs` in directory
/// `repo`. `full_args` are extra flags for the backup that runs out of space; `full_words` are
/// the phrases (any one) its error line must hold besides `named`, the repository as messages
/// name it.
fn fill_up_and_recover(
    backend: &str,
    w: &World,
    fs: &Tmpfs,
    repo: &Path,
    full_args: &[&str],
    full_words: &[&str],
    named: &str,
) {
    let started = Instant::now();
    w.populate();
    let src = w.path("src");
    w.ok(&["init"]);
    w.ok(&["backup", utf8(&src)]);
    let before = snapshot_ids(w);
    assert_eq!(before.len(), 1, "{before:?}");

    let filler = fs.fill();
    fs::write(src.join("big.bin"), pseudo_random(BIG, 11)).expect("big file");
    let mut args = vec!["backup", utf8(&src)];
    args.extend_from_slice(full_args);
    let t = Instant::now();
    let out = w.cmd(&args).output().expect("run offsite");
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "backup into a full storage:\n{}", remote_support::show(&out));
    for l in stderr.lines() {
        assert!(l.starts_with("offsite: "), "stray stderr line {l:?} in:\n{stderr}");
    }
    let line = remote_support::error_line(&stderr);
    let lower = line.to_lowercase();
    assert!(full_words.iter().any(|p| lower.contains(p)), "does not say the storage is full: {line}");
    assert!(line.contains(named), "does not name the repository {named}: {line}");
    assert!(lower.contains("free space"), "does not say what to do: {line}");

    // Untouched: no partial object, it opens, holds the earlier snapshot only, checks clean.
    assert!(assert_no_partial_objects(repo) >= 5, "no objects found under {}", repo.display());
    assert_eq!(snapshot_ids(w), before, "snapshots changed by the failed backup");
    let out = w.ok(&["check"]);
    assert!(out.contains("no problems found"), "{out}");

    // Room again: the same command succeeds.
    fs::remove_file(&filler).expect("delete the filler");
    w.ok(&["backup", utf8(&src)]);
    let after = snapshot_ids(w);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0]);
    let out = w.ok(&["check", "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");
    let target = w.path("restored");
    w.ok(&["restore", "latest", "--target", utf8(&target)]);
    let restored = target.join(src.strip_prefix("/").expect("absolute source"));
    // hello.txt, docs, docs/notes.md, data, data/blob.bin, link, big.bin
    assert_eq!(remote_support::assert_same_tree(&src, &restored), 7);
    eprintln!(
        "timing: {backend}: full backup failed in {:.2}s ({line}); whole test {:.2}s",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The failure is recognised, not retried until the give-up budget.
    if !full_args.contains(&"--give-up-after") {
        assert!(took < Duration::from_secs(30), "took {took:?}: retried instead of failing at once?");
    }
}

#[test]
fn sftp_full_disk_stops_the_backup_with_the_repository_intact() {
    let Some(sshd) = remote_support::sshd() else { return };
    let mut w = World::new();
    let Some(fs) = Tmpfs::mount(&w.path("store")) else { return };
    w.location = sshd.url(&fs.dir.join("repo"));
    w.set("OFFSITE_SSH_IDENTITY", &sshd.client_key);
    w.set("OFFSITE_SSH_KNOWN_HOSTS", &sshd.known_hosts);
    w.set("OFFSITE_GIVE_UP_AFTER", "60s");
    let named = w.location.clone();
    fill_up_and_recover("sftp", &w, &fs, &fs.dir.join("repo"), &[], &["no space left", "full"], &named);
}

#[test]
fn rest_full_disk_stops_the_backup_with_the_repository_intact() {
    let Some(rest) = remote_support::rclone_rest(&[]) else { return };
    // rclone serves this directory by name, so a tmpfs mounted on it now is what it writes to.
    let Some(fs) = Tmpfs::mount(&rest.dir.path().join("data")) else { return };
    let mut w = World::new();
    w.location = format!("rest:http://{}/repo", rest.addr());
    w.set("OFFSITE_GIVE_UP_AFTER", "60s");
    let named = w.location.clone();
    fill_up_and_recover("rest", &w, &fs, &fs.dir.join("repo"), &[], &["no space left", "full"], &named);
}

#[test]
fn s3_full_disk_stops_the_backup_with_the_repository_intact() {
    let Some(s3) = remote_support::s3s_fs() else { return };
    // The whole s3s-fs root: it writes temporary files there and renames them into buckets.
    let Some(fs) = Tmpfs::mount(&s3.dir.path().join("root")) else { return };
    remote_support::s3_bucket(&s3, "bucket");
    let mut w = World::new();
    w.location = "s3://bucket/repo".into();
    w.set("AWS_ENDPOINT_URL", format!("http://{}", s3.addr()));
    w.set("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    w.set("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    w.set("AWS_REGION", "us-east-1");
    // s3s-fs answers a full disk with a bare "500 InternalError", which is retried (S3 says
    // so) until the budget is spent; a short one keeps the test fast.
    let repo = fs.dir.join("bucket/repo");
    fill_up_and_recover("s3", &w, &fs, &repo, &["--give-up-after", "3s"], &["full disk"], "s3://bucket/repo");
}
