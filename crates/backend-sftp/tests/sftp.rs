//! The SFTP backend against a real OpenSSH sshd: the shared conformance suite, host-key
//! pinning, authentication and a missing repository.

mod common;

use std::time::{Duration, Instant};

use offsite_backend::conformance::{self, id_of};
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_sftp::{SftpOptions, SftpStorage};

fn quick() -> RemoteOptions {
    RemoteOptions {
        idle_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        give_up_after: Duration::from_secs(20),
        concurrency: 4,
        ..RemoteOptions::default()
    }
}

#[test]
fn sftp_storage_passes_conformance() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    conformance::run_all(&|| {
        let dir = sshd.repo_dir("conformance");
        Box::new(SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage"))
    });
}

#[test]
fn sftp_storage_does_not_list_stray_files() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let dir = sshd.repo_dir("stray");
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    conformance::stray_files_are_not_listed(&s, &|path, bytes| {
        std::fs::write(dir.join(path), bytes).expect("plant stray file");
    });
}

#[test]
fn a_write_leaves_only_the_object_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let dir = sshd.repo_dir("only");
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    s.create().expect("create");
    let data = vec![5u8; 300_000];
    let id = id_of(&data);
    s.write(ObjectKind::Data, &id, &data).expect("write");
    let names: Vec<String> = std::fs::read_dir(dir.join("data").join(&id[..2]))
        .expect("data/xx exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![id.clone()], "no temp file may remain");
    let path = dir.join(ObjectKind::Data.relative_path(&id));
    assert_eq!(std::fs::read(&path).expect("read object"), data);
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o077, 0, "object is private");
    assert_eq!(std::fs::metadata(dir.join("data")).expect("meta").permissions().mode() & 0o077, 0);
}

#[test]
fn a_missing_repository_is_not_found_and_not_created() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let dir = sshd.repo_dir("missing");
    let url = sshd.url(sshd.port, &dir);
    let s = SftpStorage::new(&url, sshd.options(&kh, quick())).expect("storage");
    let id = id_of(b"x");
    let want = format!("repository {url} not found");
    let results = [
        s.list(ObjectKind::Snapshot).map(|_| ()),
        s.list(ObjectKind::Data).map(|_| ()),
        s.list(ObjectKind::Config).map(|_| ()),
        s.read(ObjectKind::Config, "", None).map(|_| ()),
        s.read(ObjectKind::Data, &id, Some((0, 1))).map(|_| ()),
        s.stat(ObjectKind::Key, &id).map(|_| ()),
        s.write(ObjectKind::Data, &id, b"x"),
        s.write(ObjectKind::Config, "", b"x"),
        s.delete(ObjectKind::Lock, &id),
    ];
    for r in results {
        let e = r.expect_err("no repository");
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.to_string(), want);
    }
    assert!(!dir.exists(), "failed calls must create nothing");
}

#[test]
fn a_missing_object_names_its_url() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let dir = sshd.repo_dir("noobj");
    let url = sshd.url(sshd.port, &dir);
    let s = SftpStorage::new(&url, sshd.options(&kh, quick())).expect("storage");
    s.create().expect("create");
    let id = id_of(b"nope");
    let e = s.read(ObjectKind::Snapshot, &id, None).expect_err("missing");
    assert_eq!(e.to_string(), format!("{url}/snapshots/{id} not found"));
}

fn unknown_or_changed(known_hosts_contents: &str) -> (StorageError, Duration, String) {
    let sshd = common::sshd().expect("checked by caller");
    let kh_dir = tempfile::tempdir().expect("tempdir");
    let kh = kh_dir.path().join("known_hosts");
    std::fs::write(&kh, known_hosts_contents).expect("known_hosts");
    let dir = sshd.repo_dir("hostkey");
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    let started = Instant::now();
    let e = s.create().expect_err("host key must be refused");
    let elapsed = started.elapsed();
    assert!(!dir.exists(), "nothing may happen on an unverified server");
    let after = std::fs::read_to_string(&kh).expect("known_hosts still there");
    assert_eq!(after, known_hosts_contents, "known_hosts must never be changed");
    (e, elapsed, format!("127.0.0.1:{}", sshd.port))
}

#[test]
fn an_unknown_host_key_is_refused_with_advice() {
    if common::sshd().is_none() {
        return;
    }
    let (e, elapsed, hp) = unknown_or_changed("");
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Permanent { .. }), "{e:?}");
    assert!(msg.contains(&format!("unknown host key for {hp} (ssh-ed25519 SHA256:")), "{msg}");
    assert!(msg.contains("add it to known_hosts (e.g. ssh-keyscan) or pass --ssh-known-hosts FILE"), "{msg}");
    assert!(!msg.contains('\n'));
    assert!(elapsed < Duration::from_secs(5), "a refused key is not retried: took {elapsed:?}");
}

#[test]
fn a_changed_host_key_is_refused_as_a_possible_attack() {
    let Some(sshd) = common::sshd() else { return };
    let other = tempfile::tempdir().expect("tempdir");
    common::keygen(&other.path().join("k"));
    let pubkey = std::fs::read_to_string(other.path().join("k.pub")).expect("pub");
    let line = pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let (e, elapsed, hp) = unknown_or_changed(&format!("[127.0.0.1]:{} {line}\n", sshd.port));
    let msg = e.to_string();
    assert!(msg.contains(&format!("host key for {hp} CHANGED")), "{msg}");
    assert!(msg.contains("possible man-in-the-middle"), "{msg}");
    assert!(elapsed < Duration::from_secs(5), "a refused key is not retried: took {elapsed:?}");
}

#[test]
fn a_hashed_known_hosts_entry_is_accepted() {
    let Some(sshd) = common::sshd() else { return };
    let (kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(hashed.status.success());
    let contents = std::fs::read_to_string(&kh).expect("read");
    assert!(contents.starts_with("|1|"), "{contents}");
    let dir = sshd.repo_dir("hashed");
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    s.create().expect("create with a hashed known_hosts entry");
    drop(kh_dir);
}

#[test]
fn a_wrong_identity_is_permission_denied() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let other = tempfile::tempdir().expect("tempdir");
    common::keygen(&other.path().join("stranger"));
    let dir = sshd.repo_dir("auth");
    let opts = SftpOptions { identity: Some(other.path().join("stranger")), ..sshd.options(&kh, quick()) };
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), opts).expect("storage");
    let started = Instant::now();
    let e = s.create().expect_err("key not authorized");
    assert!(matches!(e, StorageError::PermissionDenied { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("permission denied on sftp://"), "{msg}");
    assert!(msg.contains(&format!("authentication failed for {}@127.0.0.1", sshd.user)), "{msg}");
    assert!(msg.contains("stranger"), "names the key offered: {msg}");
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
}

#[test]
fn a_missing_identity_file_fails_at_construction() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let opts = SftpOptions { identity: Some("/nonexistent/id_ed25519".into()), ..sshd.options(&kh, quick()) };
    let e = SftpStorage::new(&sshd.url(sshd.port, &sshd.repo_dir("x")), opts).expect_err("no such key");
    let msg = e.to_string();
    assert!(msg.contains("cannot use SSH identity /nonexistent/id_ed25519"), "{msg}");
    assert!(!e.is_not_found(), "must not read as a missing repository");
}

#[test]
fn a_home_relative_url_lives_in_the_login_directory() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let home = std::process::Command::new("sh")
        .arg("-c")
        .arg("getent passwd \"$(id -un)\" | cut -d: -f6")
        .output()
        .expect("getent");
    let home = std::path::PathBuf::from(String::from_utf8_lossy(&home.stdout).trim());
    let name = format!(".offsite-sftp-test-{}", std::process::id());
    let url = format!("sftp://{}@127.0.0.1:{}/~/{name}/repo", sshd.user, sshd.port);
    let s = SftpStorage::new(&url, sshd.options(&kh, quick())).expect("storage");
    assert_eq!(s.location(), url);
    let result = s.create().and_then(|()| s.write(ObjectKind::Config, "", b"cfg"));
    let on_disk = std::fs::read(home.join(&name).join("repo").join("config"));
    let _ = std::fs::remove_dir_all(home.join(&name));
    result.expect("create and write");
    assert_eq!(on_disk.expect("config under the home directory"), b"cfg");
}

/// Session setup and a 64 MiB upload and download, timed (figures printed for the report).
#[test]
fn session_setup_and_64_mib_transfer_timings() {
    let Some(sshd) = common::sshd() else { return };
    let (_kh_dir, kh) = sshd.known_hosts_for(sshd.port);
    let dir = sshd.repo_dir("big");
    let s = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    s.create().expect("create");
    // Session setup: the first call of a fresh storage connects (TCP, SSH handshake, host-key
    // check, public-key auth, SFTP init) and then makes one stat.
    let fresh = SftpStorage::new(&sshd.url(sshd.port, &dir), sshd.options(&kh, quick())).expect("storage");
    let t = Instant::now();
    assert_eq!(fresh.list(ObjectKind::Config).expect("list config"), vec![]);
    let setup = t.elapsed();
    let data: Vec<u8> = (0..64u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let id = id_of(&data);
    let t = Instant::now();
    s.write(ObjectKind::Data, &id, &data).expect("64 MiB write");
    let up = t.elapsed();
    let t = Instant::now();
    let back = s.read(ObjectKind::Data, &id, None).expect("64 MiB read");
    let down = t.elapsed();
    assert!(back == data, "64 MiB object read back differs");
    let mib_s = |d: Duration| 64.0 / d.as_secs_f64();
    eprintln!(
        "sftp timings: session setup + first stat {:.3}s; 64 MiB upload {:.2}s ({:.0} MiB/s); download {:.2}s ({:.0} MiB/s)",
        setup.as_secs_f64(),
        up.as_secs_f64(),
        mib_s(up),
        down.as_secs_f64(),
        mib_s(down)
    );
}
