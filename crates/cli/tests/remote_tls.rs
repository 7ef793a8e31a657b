//! `--cacert` through the real `offsite` binary: a `rest:https://` repository on
//! `rclone serve restic --cert --key`, whose certificate a private CA made by `openssl` at test
//! time signed. Without `openssl` or `rclone` a test is skipped with a note, or fails when
//! `CI=true`.

mod remote_support;

use std::path::Path;
use std::time::{Duration, Instant};

use remote_support::{Server, World};

use offsite_testkit::certs::Certs;

/// Make [`Certs`], or None when `openssl` is missing (and not CI).
fn certs() -> Option<Certs> {
    match offsite_testkit::certs::make() {
        Ok(c) => Some(c),
        Err(why) => remote_support::unavailable(&why),
    }
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
