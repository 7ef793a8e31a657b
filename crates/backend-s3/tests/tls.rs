//! S3Storage over HTTPS: s3s-fs behind a TLS-terminating proxy whose certificate a private
//! test CA signed (made by `openssl` at test time). Trusted with `RemoteOptions::ca_cert`
//! (`--cacert`), refused at once (no retries) with the platform's roots or another CA.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::tls::TlsProxy;
use offsite_backend::conformance::run_all;
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_s3::S3Storage;
use offsite_testkit::certs::for_test as certs;

/// Patient timeouts, trusting `ca` (the platform's roots when None).
fn trusting(ca: Option<&std::path::Path>) -> RemoteOptions {
    RemoteOptions { ca_cert: ca.map(|p| p.to_path_buf()), ..common::patient() }
}

#[test]
fn conformance_suite_passes_over_https_with_the_ca_file() {
    let Some(server) = common::start() else { return };
    let Some(c) = certs() else { return };
    let proxy = TlsProxy::start(&c.cert, &c.key, server.addr);
    let bucket = server.bucket("tls");
    let endpoint = proxy.endpoint();
    let n = AtomicUsize::new(0);
    let make = || -> Box<dyn Storage> {
        let url = format!("s3://{bucket}/run-{}", n.fetch_add(1, Ordering::Relaxed));
        Box::new(S3Storage::new(&url, common::options(&endpoint, trusting(Some(&c.ca)))).expect("storage"))
    };
    run_all(&make);
}

/// With the platform's roots and with an unrelated CA, the first call fails with a Permanent
/// one-line error that says the certificate is not trusted and names --cacert, long before
/// the give-up budget (60 s): no retries.
#[test]
fn an_untrusted_certificate_fails_at_once_and_points_to_cacert() {
    let Some(server) = common::start() else { return };
    let Some(c) = certs() else { return };
    let proxy = TlsProxy::start(&c.cert, &c.key, server.addr);
    let bucket = server.bucket("tls");
    for ca in [None, Some(c.other_ca.as_path())] {
        let s = S3Storage::new(&format!("s3://{bucket}/r"), common::options(&proxy.endpoint(), trusting(ca)))
            .expect("storage");
        let started = Instant::now();
        let err = s.create().expect_err("untrusted");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: retried?", started.elapsed());
        assert!(matches!(err, StorageError::Permanent { .. }), "{ca:?}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "TLS connection to s3://{bucket}/r at {}: the server's TLS certificate is not trusted",
                proxy.endpoint()
            )),
            "{msg}"
        );
        assert!(msg.contains("--cacert") && !msg.contains('\n'), "{msg}");
        let err = s.read(ObjectKind::Config, "", None).expect_err("untrusted");
        assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    }
}

#[test]
fn an_unusable_ca_file_fails_when_the_storage_is_made_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate at all\n").expect("write");
    let err = S3Storage::new("s3://b/r", common::options("https://127.0.0.1:1", trusting(Some(&garbage))))
        .expect_err("garbage CA file");
    assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "CA certificate file {} (--cacert): no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            garbage.display()
        )
    );
    // AWS (no endpoint) is https too.
    let mut opts = common::options("x", trusting(Some(&garbage)));
    opts.endpoint = None;
    assert!(S3Storage::new("s3://b/r", opts).is_err());
    // A plain http endpoint never reads it.
    S3Storage::new("s3://b/r", common::options("http://127.0.0.1:1", trusting(Some(&garbage))))
        .expect("http");
}
