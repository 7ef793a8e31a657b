//! Clear errors for bad credentials, a missing bucket and an unreachable server.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use offsite_backend::{ObjectKind, Storage, StorageError};
use offsite_backend_s3::S3Storage;

#[test]
fn wrong_secret_key_says_wrong_credentials() {
    let Some(server) = common::start() else { return };
    let bucket = server.bucket("creds");
    let mut opts = common::options(&server.endpoint(), common::patient());
    opts.secret_access_key = Some("not-the-secret".into());
    let s = S3Storage::new(&format!("s3://{bucket}/repo"), opts).expect("storage");
    let e = s.create().expect_err("wrong secret must fail");
    assert!(matches!(e, StorageError::PermissionDenied { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("wrong credentials for s3://{bucket}/repo at {}", server.endpoint())),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret") && !msg.contains('\n'), "{msg}");
    // A HEAD (no error body) still names credentials as the likely cause.
    let e = s.stat(ObjectKind::Config, "").expect_err("stat with wrong secret");
    assert!(e.to_string().contains("wrong credentials"), "{e}");
}

#[test]
fn missing_bucket_says_create_it_first() {
    let Some(server) = common::start() else { return };
    let s = S3Storage::new("s3://nosuchbucket/repo", common::options(&server.endpoint(), common::patient()))
        .expect("storage");
    let e = s.create().expect_err("missing bucket must fail");
    assert_eq!(
        e.to_string(),
        format!("bucket nosuchbucket does not exist at {}: create it first", server.endpoint())
    );
    assert!(!e.is_transient());
    // (s3s-fs creates a missing bucket directory on PUT, so a write is not checked here.)
}

#[test]
fn location_shows_url_and_endpoint() {
    let s = S3Storage::new("s3://b/x/y", common::options("http://127.0.0.1:9", common::patient()))
        .expect("storage");
    assert_eq!(s.location(), "s3://b/x/y (http://127.0.0.1:9)");
}

fn assert_unreachable(e: &StorageError, url: &str, endpoint: &str) {
    assert!(e.is_transient(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("storage unreachable: {url} at {endpoint}: ")), "{msg}");
    assert!(msg.contains("gave up after"), "{msg}");
}

#[test]
fn refused_connections_give_up_in_bounded_time() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let s = S3Storage::new("s3://b/r", common::options(&endpoint, common::impatient())).expect("storage");
    let t = Instant::now();
    let e = s.read(ObjectKind::Config, "", None).expect_err("nothing listens");
    let took = t.elapsed();
    assert_unreachable(&e, "s3://b/r", &endpoint);
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(10), "gave up after {took:?}");
}

#[test]
fn a_server_that_never_answers_gives_up_in_bounded_time() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let s = S3Storage::new("s3://b/r", common::options(&endpoint, common::impatient())).expect("storage");
    let t = Instant::now();
    let e = s.stat(ObjectKind::Config, "").expect_err("no answer");
    let took = t.elapsed();
    assert_unreachable(&e, "s3://b/r", &endpoint);
    assert!(took < Duration::from_secs(6 + 5), "gave up after {took:?}");
}
