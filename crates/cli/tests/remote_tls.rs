//! `--cacert` through the real `offsite` binary: a `rest:https://` repository on
//! `rclone serve restic --cert --key`, whose certificate a private CA made by `openssl` at test
//! time signed. Without `openssl` or `rclone` a test is skipped with a note, or fails when
//! `CI=true`.

mod remote_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remote_support::{Server, World};

/// A test CA, a server certificate it signed for 127.0.0.1, and an unrelated CA.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Make [`Certs`] with the `openssl` command, or None when it is missing (and not CI).
fn certs() -> Option<Certs> {
    if !Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return remote_support::unavailable("openssl is not runnable (apt-get install -y openssl)");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for name in ["ca", "other-ca"] {
        let (key, pem, subj) =
            (format!("{name}.key"), format!("{name}.pem"), format!("/CN=offsite test {name}"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    run(&args);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    Some(Certs {
        ca: d.join("ca.pem"),
        other_ca: d.join("other-ca.pem"),
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        _dir: dir,
    })
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `rclone serve restic` over HTTPS with the test CA's server certificate, and a world whose
/// repository is `rest:https://127.0.0.1:PORT/repo`.
fn https_world() -> Option<(Certs, Server, World)> {
    let c = certs()?;
    let server = remote_support::rclone_rest(&["--cert", utf8(&c.cert), "--key", utf8(&c.key)])?;
    let mut w = World::new();
    w.location = format!("rest:https://127.0.0.1:{}/repo", server.port);
    Some((c, server, w))
}

#[test]
fn cacert_makes_a_private_ca_https_server_work_end_to_end() {
    let Some((c, _server, mut w)) = https_world() else { return };
    w.populate();
    let src = w.path("src");
    let out = w.ok(&["init", "--cacert", utf8(&c.ca)]);
    assert!(out.contains("created repository"), "{out}");
    // The environment variable works as well as the flag.
    w.set("OFFSITE_CACERT", &c.ca);
    let out = w.ok(&["backup", utf8(&src)]);
    assert!(out.contains("snapshot") && out.contains("saved"), "{out}");
    let target = w.path("restored");
    w.ok(&["restore", "latest", "--target", utf8(&target)]);
    let restored = target.join(src.strip_prefix("/").expect("absolute source"));
    assert_eq!(remote_support::assert_same_tree(&src, &restored), 6);
    let out = w.ok(&["check", "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");
}

/// Without --cacert (the built-in roots) and with another CA's certificate, a command fails
/// at once, long before `--give-up-after`, with one line that says the server's certificate
/// is not trusted and how to trust it.
#[test]
fn an_untrusted_certificate_is_one_line_pointing_to_cacert() {
    let Some((c, _server, w)) = https_world() else { return };
    let location = w.location.clone();
    for extra in [vec![], vec!["--cacert", utf8(&c.other_ca)]] {
        let mut args = vec!["init", "--give-up-after", "60s"];
        args.extend(&extra);
        let started = Instant::now();
        let line = w.fails(&mut w.cmd(&args));
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: retried?", started.elapsed());
        assert!(line.contains("the server's TLS certificate is not trusted"), "{extra:?}: {line}");
        assert!(line.contains("--cacert FILE"), "{line}");
        assert!(line.contains(&format!("{location}/")), "does not name the repository: {line}");
    }
}

#[test]
fn a_garbage_or_missing_ca_file_is_one_clear_line_naming_it() {
    let Some((_c, _server, w)) = https_world() else { return };
    let garbage = w.path("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("garbage file");
    let line = w.fails(&mut w.cmd(&["init", "--cacert", utf8(&garbage)]));
    assert!(
        line.ends_with(&format!(
            "CA certificate file {} (--cacert): no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            garbage.display()
        )),
        "{line}"
    );
    let missing = w.path("missing.pem");
    let line = w.fails(&mut w.cmd(&["snapshots", "--cacert", utf8(&missing)]));
    assert!(
        line.contains(&format!("CA certificate file {} (--cacert): cannot read it: ", missing.display())),
        "{line}"
    );
}
