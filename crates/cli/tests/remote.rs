//! End-to-end tests of the `offsite` binary against real remote repositories: OpenSSH sshd
//! (sftp://), s3s-fs (s3://), `rclone serve restic` (rest:) and rclone's local backend
//! (rclone:), each started by the test on a free port of 127.0.0.1 and killed when it ends.
//! Without a server binary a test is skipped with a note, or fails when `CI=true`.
//!
//! Each round trip prints a `timing:` line on stderr (see it with `--nocapture`).

mod remote_support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use remote_support::{World, ACCESS_KEY, SECRET_KEY};
use serde_json::Value;

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

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// init, backup, snapshots --json, an unchanged second backup, restore latest compared byte
/// for byte with the source, check --read-data: all against `w.location`.
fn round_trip(backend: &str, w: &World, startup: Duration) {
    let started = Instant::now();
    w.populate();
    let src = w.path("src");
    let src_s = utf8(&src);

    let out = w.ok(&["init"]);
    // rest: repositories are named by their URL alone (`created repository … at http://…`).
    let named = w.location.strip_prefix("rest:").unwrap_or(&w.location);
    assert!(out.contains("created repository") && out.contains(named), "{out}");

    let lines = json_lines(&w.ok(&["backup", "--json", src_s]));
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["type"], "summary", "{summary}");
    assert_eq!(summary["files_new"], 3, "{summary}");
    assert!(summary["errors"].as_array().expect("errors").is_empty(), "{summary}");
    let id = summary["snapshot"].as_str().expect("snapshot id").to_string();

    let snaps = json_lines(&w.ok(&["snapshots", "--json"]));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["type"], "snapshot");
    assert_eq!(snaps[0]["id"], id);
    assert_eq!(snaps[0]["paths"][0], src_s);

    let out = w.ok(&["backup", src_s]);
    assert!(out.contains("Files: 0 new, 0 changed, 3 unchanged"), "{out}");
    assert_eq!(json_lines(&w.ok(&["snapshots", "--json"])).len(), 2);

    let target = w.path("restored");
    let out = w.ok(&["restore", "latest", "--target", utf8(&target)]);
    assert!(out.contains("restored snapshot"), "{out}");
    let restored = target.join(src.strip_prefix("/").expect("absolute source"));
    // hello.txt, docs, docs/notes.md, data, data/blob.bin, link
    assert_eq!(remote_support::assert_same_tree(&src, &restored), 6);
    assert_eq!(fs::read_link(restored.join("link")).expect("symlink"), Path::new("hello.txt"));

    let out = w.ok(&["check", "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");
    eprintln!(
        "timing: {backend}: server ready in {:.2}s, init..check --read-data in {:.2}s",
        startup.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- round trips

#[test]
fn sftp_round_trip() {
    let Some(sshd) = remote_support::sshd() else { return };
    let mut w = World::new();
    w.location = sshd.url(&w.path("repo"));
    w.set("OFFSITE_SSH_IDENTITY", &sshd.client_key);
    w.set("OFFSITE_SSH_KNOWN_HOSTS", &sshd.known_hosts);
    round_trip("sftp", &w, sshd.server.startup);
    assert!(w.path("repo/config").is_file(), "the repository is not where the URL says");
}

#[test]
fn s3_round_trip() {
    let Some(s3) = remote_support::s3s_fs() else { return };
    remote_support::s3_bucket(&s3, "bucket");
    let mut w = World::new();
    w.location = "s3://bucket/prefix".into();
    w.set("AWS_ENDPOINT_URL", format!("http://{}", s3.addr()));
    w.set("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    w.set("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    w.set("AWS_REGION", "us-east-1");
    round_trip("s3", &w, s3.startup);
    assert!(s3.dir.path().join("root/bucket/prefix/config").is_file(), "config not under the prefix");
}

#[test]
fn rest_round_trip() {
    let Some(rest) = remote_support::rclone_rest(&[]) else { return };
    let mut w = World::new();
    w.location = format!("rest:http://{}/", rest.addr());
    round_trip("rest", &w, rest.startup);
    assert!(rest.dir.path().join("data/config").is_file(), "config not in the served directory");
}

#[test]
fn rclone_round_trip() {
    if !remote_support::rclone_available() {
        return;
    }
    let mut w = World::new();
    let repo = w.path("rrepo");
    w.location = format!("rclone:{}", repo.display());
    round_trip("rclone", &w, Duration::ZERO);
    assert!(repo.join("config").is_file(), "config not in the rclone remote path");
}

// ---------------------------------------------------------------- errors

#[test]
fn sftp_unknown_host_key_is_refused() {
    let Some(sshd) = remote_support::sshd() else { return };
    let mut w = World::new();
    let empty = w.path("known_hosts");
    fs::write(&empty, "").expect("empty known_hosts");
    w.location = sshd.url(&w.path("repo"));
    w.set("OFFSITE_SSH_IDENTITY", &sshd.client_key);
    w.set("OFFSITE_SSH_KNOWN_HOSTS", &empty);
    let line = w.fails(&mut w.cmd(&["init"]));
    assert!(line.contains("unknown host key"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{}", sshd.server.port)), "does not name the server: {line}");
    assert!(line.contains(&w.location), "does not name the repository: {line}");
    assert!(!w.path("repo").exists(), "something was written to an unverified server");
}

#[test]
fn s3_wrong_secret_says_wrong_credentials() {
    let Some(s3) = remote_support::s3s_fs() else { return };
    remote_support::s3_bucket(&s3, "bucket");
    let mut w = World::new();
    w.location = "s3://bucket/prefix".into();
    w.set("AWS_ENDPOINT_URL", format!("http://{}", s3.addr()));
    w.set("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    w.set("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    w.set("AWS_REGION", "us-east-1");
    let line = w.fails(&mut w.cmd(&["init"]));
    assert!(line.contains("wrong credentials"), "{line}");
    assert!(line.contains("s3://bucket/prefix"), "does not name the repository: {line}");
    assert!(!line.contains("not-the-secret"), "the secret leaked into the message: {line}");
}

#[test]
fn rest_closed_port_gives_up_with_storage_unreachable() {
    let port = remote_support::free_port(); // its listener is gone: connections are refused
    let mut w = World::new();
    w.location = format!("rest:http://127.0.0.1:{port}/");
    let started = Instant::now();
    let line = w.fails(&mut w.cmd(&["--connect-timeout", "1s", "--give-up-after", "3s", "snapshots"]));
    let elapsed = started.elapsed();
    assert!(line.contains("storage unreachable"), "{line}");
    assert!(line.contains(&format!("http://127.0.0.1:{port}/")), "does not name the repository: {line}");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?} to give up");
    eprintln!("timing: rest unreachable: gave up after {:.2}s", elapsed.as_secs_f64());
}

#[test]
fn unknown_scheme_is_refused() {
    let mut w = World::new();
    w.location = "ftp://x".into();
    let line = w.fails(&mut w.cmd(&["snapshots"]));
    assert!(line.contains("unknown repository URL scheme"), "{line}");
    assert!(line.contains("ftp://x"), "does not name the repository: {line}");
}

// ---------------------------------------------------------------- append-only

#[test]
fn rest_append_only_server_takes_init_and_backups() {
    let Some(rest) = remote_support::rclone_rest(&["--append-only"]) else { return };
    let mut w = World::new();
    w.location = format!("rest:http://{}/", rest.addr());
    w.populate();
    let src = w.path("src");
    w.ok(&["init"]);
    let out = w.ok(&["backup", utf8(&src)]);
    assert!(out.contains("Files: 3 new, 0 changed, 0 unchanged"), "{out}");
    let out = w.ok(&["backup", utf8(&src)]);
    assert!(out.contains("Files: 0 new, 0 changed, 3 unchanged"), "{out}");
    assert_eq!(json_lines(&w.ok(&["snapshots", "--json"])).len(), 2);
}
