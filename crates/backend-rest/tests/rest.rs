//! RestStorage against a real REST server (`rclone serve restic`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Server;
use offsite_backend::conformance::{self, id_of};
use offsite_backend::{ObjectKind, RemoteOptions, Storage, StorageError};
use offsite_backend_rest::RestStorage;

#[test]
fn conformance_suite_passes() {
    require_rclone!();
    let server = Server::start(&[]);
    let n = AtomicUsize::new(0);
    let make = || -> Box<dyn Storage> {
        let name = format!("repo-{}", n.fetch_add(1, Ordering::SeqCst));
        Box::new(RestStorage::new(&server.url("", &name), RemoteOptions::default()).unwrap())
    };
    conformance::run_all(&make);
}

#[test]
fn stray_files_in_the_server_directory_are_not_listed() {
    require_rclone!();
    let server = Server::start(&[]);
    let s = RestStorage::new(&server.url("", "stray"), RemoteOptions::default()).unwrap();
    conformance::stray_files_are_not_listed(&s, &|rel, bytes| {
        let path = server.path_in("stray", rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    });
}

#[test]
fn append_only_server_keeps_data_and_refuses_deletes() {
    require_rclone!();
    let server = Server::start(&["--append-only"]);
    let s = RestStorage::new(&server.url("", "ao"), RemoteOptions::default()).unwrap();
    s.create().unwrap();
    let data = b"pack bytes".to_vec();
    let id = id_of(&data);
    s.write(ObjectKind::Data, &id, &data).unwrap();

    let err = s.delete(ObjectKind::Data, &id).unwrap_err();
    assert!(matches!(err, StorageError::PermissionDenied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("data/{id}")) && msg.contains("append-only"), "{msg}");
    assert_eq!(s.read(ObjectKind::Data, &id, None).unwrap(), data, "refused delete removed the object");

    let err = s.write(ObjectKind::Data, &id, b"other bytes").unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err:?}");
    // Locks come and go even on an append-only server.
    s.write(ObjectKind::Lock, &id, &data).unwrap();
    s.delete(ObjectKind::Lock, &id).unwrap();
}

#[test]
fn wrong_password_is_permission_denied_naming_the_url_not_the_password() {
    require_rclone!();
    let server = Server::start(&["--user", "alice", "--pass", "right-pass"]);
    let s = RestStorage::new(&server.url("alice:hunter2@", "auth"), RemoteOptions::default()).unwrap();
    let err = s.create().unwrap_err();
    assert!(matches!(err, StorageError::PermissionDenied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("wrong credentials for rest:{}", server.url("alice@", "auth"))), "{msg}");
    assert!(!msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{msg}");

    let s = RestStorage::new(&server.url("alice:right-pass@", "auth"), RemoteOptions::default()).unwrap();
    s.create().unwrap();
    s.write(ObjectKind::Config, "", b"cfg").unwrap();
    assert_eq!(s.read(ObjectKind::Config, "", None).unwrap(), b"cfg");
}

/// A server that answers every request with an HTML page (a captive portal, a misconfigured
/// proxy) gives a permanent error that shows what it said, at once.
#[test]
fn a_server_answering_html_to_a_listing_is_a_clear_permanent_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before sending its request");
            req.extend_from_slice(&buf[..n]);
        }
        let body = "<html><body>Welcome to the hotel wifi</body></html>";
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body.as_bytes()).unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    let s = RestStorage::new(&format!("http://{addr}/repo"), RemoteOptions::default()).unwrap();
    let err = s.list(ObjectKind::Snapshot).unwrap_err();
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /repo/snapshots/ HTTP/1.1"), "{request}");
    assert!(request.to_lowercase().contains("accept: application/vnd.x.restic.rest.v2"), "{request}");
    assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not JSON") && msg.contains("text/html") && msg.contains("hotel wifi"), "{msg}");
}
