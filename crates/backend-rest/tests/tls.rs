//! RestStorage over HTTPS against a real server (`rclone serve restic --cert --key`) whose
//! certificate a private test CA signed (made by `openssl` at test time): trusted with
//! `RemoteOptions::ca_cert`, refused at once (no retries) without it or with another CA.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use offsite_backend::conformance;
use offsite_backend::{RemoteOptions, Storage, StorageError};
use offsite_backend_rest::RestStorage;
use offsite_testkit::certs::{for_test as certs, Certs};

/// rclone serving HTTPS with the test CA's server certificate.
fn https_server(c: &Certs) -> Server {
    Server::start(&["--cert", c.cert.to_str().unwrap(), "--key", c.key.to_str().unwrap()])
}

fn https_url(server: &Server, name: &str) -> String {
    format!("https://127.0.0.1:{}/{name}/", server.addr.port())
}

/// Options trusting `ca`, with a give-up budget far above what a refused certificate may take.
fn trusting(ca: Option<&std::path::Path>) -> RemoteOptions {
    RemoteOptions {
        ca_cert: ca.map(|p| p.to_path_buf()),
        give_up_after: Duration::from_secs(60),
        ..RemoteOptions::default()
    }
}

#[test]
fn conformance_suite_passes_over_https_with_the_ca_file() {
    require_rclone!();
    let Some(c) = certs() else { return };
    let server = https_server(&c);
    let n = AtomicUsize::new(0);
    let make = || -> Box<dyn Storage> {
        let name = format!("repo-{}", n.fetch_add(1, Ordering::SeqCst));
        Box::new(RestStorage::new(&https_url(&server, &name), trusting(Some(&c.ca))).unwrap())
    };
    conformance::run_all(&make);
}

/// Without the CA file (the built-in roots) and with an unrelated CA, the first call fails
/// with a Permanent one-line error that says the certificate is not trusted and names
/// --cacert, long before the give-up budget (no retries).
#[test]
fn an_untrusted_certificate_fails_at_once_and_points_to_cacert() {
    require_rclone!();
    let Some(c) = certs() else { return };
    let server = https_server(&c);
    for ca in [None, Some(c.other_ca.as_path())] {
        let s = RestStorage::new(&https_url(&server, "r"), trusting(ca)).unwrap();
        let started = Instant::now();
        let err = s.create().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}: retried?", started.elapsed());
        assert!(matches!(err, StorageError::Permanent { .. }), "{ca:?}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "TLS connection to rest:{}: the server's TLS certificate is not trusted (",
                https_url(&server, "r")
            )),
            "{msg}"
        );
        assert!(msg.contains("UnknownIssuer") && msg.contains("--cacert"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    // Nothing reached the server's storage.
    assert!(!server.path_in("r", "config").exists());
}

#[test]
fn an_unusable_ca_file_fails_when_the_client_is_made_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate at all\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, why) in [
        (&garbage, "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"),
        (&missing, "cannot read it: No such file or directory (os error 2)"),
    ] {
        let err = RestStorage::new("https://127.0.0.1:1/r", trusting(Some(path))).unwrap_err();
        assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("CA certificate file {} (--cacert): {why}", path.display()));
    }
    // Plain http never reads it.
    RestStorage::new("http://127.0.0.1:1/r", trusting(Some(&garbage))).unwrap();
}
