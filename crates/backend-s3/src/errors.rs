//! Turning OpenDAL's S3 errors into [`StorageError`]s with one-line messages that say what to
//! do.

use std::io;

use offsite_backend::StorageError;
use opendal::ErrorKind;

use crate::tls::UNTRUSTED;
use crate::transport::{CallState, GAVE_UP};

/// Where the failing call went, for messages.
pub(crate) struct Target<'a> {
    /// `s3://bucket/prefix`.
    pub url: &'a str,
    /// The bucket name.
    pub bucket: &'a str,
    /// The endpoint as shown to users (no credentials).
    pub endpoint: &'a str,
}

/// S3 error codes that mean the storage is full or the object is too large for a quota.
const NO_SPACE: [&str; 5] =
    ["QuotaExceeded", "EntityTooLarge", "InsufficientStorage", "XMinioStorageFull", "StorageFull"];

/// How the transport's error for a full storage starts (see [`full_storage`]).
pub(crate) const STORAGE_FULL: &str = "the storage is full";

/// Phrases of error messages that mean a full disk or an exhausted quota (servers that pass
/// the operating system's error on, e.g. "No space left on device (os error 28)").
const NO_SPACE_TEXT: [&str; 4] = ["no space left", "disk full", "quota exceeded", "not enough space"];

/// If an error answer (`status`, the start of its body) says the storage is full, the one-line
/// error for it, starting with [`STORAGE_FULL`]: 507, a full-storage S3 code (MinIO's
/// XMinioStorageFull, Ceph's QuotaExceeded, ...) or a message that reads like ENOSPC.
pub(crate) fn full_storage(status: u16, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find('<')?;
        Some(one_line(&text[start..start + len]))
    };
    let code = tag("Code").unwrap_or_default();
    let message = tag("Message").unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    let full =
        status == 507 || NO_SPACE.contains(&code.as_str()) || NO_SPACE_TEXT.iter().any(|p| lower.contains(p));
    if !full {
        return None;
    }
    let detail = [code, message].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ");
    Some(if detail.is_empty() {
        format!("{STORAGE_FULL} (HTTP {status})")
    } else {
        format!("{STORAGE_FULL} (HTTP {status}: {detail})")
    })
}

/// S3 error codes that mean the access key or the secret is wrong.
const BAD_CREDENTIALS: [&str; 3] = ["InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"];

/// The S3 error code in an OpenDAL error message (`S3Error { code: "NoSuchKey", … }`).
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("code: \"")? + "code: \"".len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len]).filter(|c| !c.is_empty())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error for a bucket that does not exist.
pub(crate) fn no_bucket(t: &Target<'_>) -> StorageError {
    StorageError::Permanent {
        what: format!("bucket {} does not exist at {}", t.bucket, t.endpoint),
        source: io::Error::new(io::ErrorKind::NotFound, "create it first"),
    }
}

/// The error for a call on `object` (an `s3://…` name) that gave up on an unreachable or
/// failing storage. An upload the server kept failing with HTTP 500 says what that usually
/// means: s3s-fs, for one, answers a full disk with a bare "500 InternalError".
pub(crate) fn unreachable(t: &Target<'_>, call: &CallState, object: &str, fallback: &str) -> StorageError {
    let cause = call.transient_cause().unwrap_or_else(|| one_line(fallback));
    if call.storing && cause.starts_with("HTTP 500") {
        let path = object.strip_prefix(t.url).map_or(object, |p| p.trim_start_matches('/'));
        return StorageError::Transient {
            what: format!("{} at {} could not store {path}", t.url, t.endpoint),
            source: io::Error::other(format!(
                "the server kept answering {cause} (gave up after {:.1} s); a full disk or an \
                 exhausted quota on the server does this: free space there, then run the command again",
                call.elapsed().as_secs_f64()
            )),
        };
    }
    StorageError::Transient {
        what: format!("storage unreachable: {} at {}", t.url, t.endpoint),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{cause} (gave up after {:.1} s)", call.elapsed().as_secs_f64()),
        ),
    }
}

/// Classify the final error of a call on object `what` (an `s3://…` name).
pub(crate) fn map(t: &Target<'_>, what: String, e: &opendal::Error, call: &CallState) -> StorageError {
    let full = e.to_string();
    let code = s3_code(&full);
    if e.message().starts_with(STORAGE_FULL) {
        return StorageError::NoSpace { what };
    }
    if e.message().starts_with(UNTRUSTED) {
        return StorageError::Permanent {
            what: format!("TLS connection to {} at {}", t.url, t.endpoint),
            source: io::Error::new(io::ErrorKind::InvalidData, one_line(e.message())),
        };
    }
    match e.kind() {
        ErrorKind::ConfigInvalid if code == Some("NoSuchBucket") => no_bucket(t),
        ErrorKind::NotFound if code == Some("NoSuchBucket") => no_bucket(t),
        ErrorKind::NotFound => StorageError::NotFound { what },
        ErrorKind::AlreadyExists => StorageError::AlreadyExists { what },
        // Before PermissionDenied: Ceph answers an exhausted quota with 403 QuotaExceeded.
        _ if code.is_some_and(|c| NO_SPACE.contains(&c)) || full.contains("status: 507") => {
            StorageError::NoSpace { what }
        }
        ErrorKind::PermissionDenied => {
            let why = match code {
                Some(c) if BAD_CREDENTIALS.contains(&c) => {
                    format!("wrong credentials for {} at {}: {c}", t.url, t.endpoint)
                }
                Some(c) => format!("access to {} at {} refused: {c}", t.url, t.endpoint),
                // A HEAD answer has no body, so no code: name both likely causes.
                None => format!(
                    "wrong credentials for {} at {}, or the key lacks permission (HTTP 403)",
                    t.url, t.endpoint
                ),
            };
            StorageError::PermissionDenied { what: format!("{what} ({why})") }
        }
        ErrorKind::RangeNotSatisfied => StorageError::Permanent {
            what,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "range reaches past the end of the object"),
        },
        ErrorKind::RateLimited => unreachable(t, call, &what, e.message()),
        _ if e.message() == GAVE_UP
            || e.message().contains("timeout")
            || call.transient_cause().is_some() =>
        {
            unreachable(t, call, &what, e.message())
        }
        _ => StorageError::Permanent {
            what,
            source: io::Error::other(match code {
                Some(c) => format!("{c}: {}", one_line(e.message())),
                None => one_line(e.message()),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target { url: "s3://b/p", bucket: "b", endpoint: "http://127.0.0.1:9" }
    }

    fn s3_error(kind: ErrorKind, code: &str) -> opendal::Error {
        opendal::Error::new(kind, format!("S3Error {{ code: \"{code}\", message: \"m\", resource: \"\" }}"))
    }

    #[test]
    fn codes_are_found_in_opendal_messages() {
        assert_eq!(s3_code("S3Error { code: \"NoSuchKey\", message: \"x\" }"), Some("NoSuchKey"));
        assert_eq!(s3_code("plain"), None);
    }

    #[test]
    fn errors_map_to_their_class_with_clear_messages() {
        let call = CallState::new();
        let t = target();
        let m = |e: opendal::Error| map(&t, "s3://b/p/config".into(), &e, &call);
        assert!(m(opendal::Error::new(ErrorKind::NotFound, "")).is_not_found());
        let e = m(s3_error(ErrorKind::ConfigInvalid, "NoSuchBucket")).to_string();
        assert_eq!(e, "bucket b does not exist at http://127.0.0.1:9: create it first");
        let e = m(s3_error(ErrorKind::PermissionDenied, "SignatureDoesNotMatch")).to_string();
        assert!(e.contains("wrong credentials for s3://b/p at http://127.0.0.1:9"), "{e}");
        let e = m(s3_error(ErrorKind::Unexpected, "QuotaExceeded"));
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e}");
        let e = m(s3_error(ErrorKind::Unexpected, "InvalidArgument"));
        assert!(matches!(e, StorageError::Permanent { .. }), "{e}");
        let e = m(opendal::Error::new(ErrorKind::Unexpected, "io operation timeout reached"));
        assert!(e.is_transient() && e.to_string().starts_with("storage unreachable: s3://b/p at "), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = m(s3_error(ErrorKind::PermissionDenied, "QuotaExceeded"));
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e}");
        let e = m(opendal::Error::new(ErrorKind::Unexpected, format!("{STORAGE_FULL} (HTTP 507)")));
        assert_eq!(e.to_string(), "no space left on storage while writing s3://b/p/config");
        let e =
            m(opendal::Error::new(ErrorKind::Unexpected, "the server's TLS certificate is not trusted (x)"));
        assert!(matches!(e, StorageError::Permanent { .. }), "{e}");
        assert!(e.to_string().starts_with("TLS connection to s3://b/p at http://127.0.0.1:9: "), "{e}");
    }

    #[test]
    fn full_storage_answers_are_recognised() {
        let xml = |code: &str, msg: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{msg}</Message></Error>")
        };
        assert_eq!(
            full_storage(
                507,
                xml("XMinioStorageFull", "Storage backend has reached its minimum free drive threshold.")
                    .as_bytes()
            ),
            Some(
                "the storage is full (HTTP 507: XMinioStorageFull: Storage backend has reached its minimum \
                 free drive threshold.)"
                    .into()
            )
        );
        assert!(full_storage(403, xml("QuotaExceeded", "").as_bytes()).is_some());
        let garage = xml("InternalError", "Internal error: IO error: No space left on device (os error 28)");
        assert!(full_storage(500, garage.as_bytes()).is_some());
        assert_eq!(full_storage(507, b""), Some("the storage is full (HTTP 507)".into()));
        assert!(full_storage(500, xml("InternalError", "").as_bytes()).is_none());
        assert!(full_storage(404, xml("NoSuchKey", "The specified key does not exist.").as_bytes()).is_none());
    }

    #[test]
    fn an_upload_the_server_keeps_failing_suggests_a_full_disk() {
        let t = target();
        let call = CallState::storing();
        call.record(true, "HTTP 500 Internal Server Error".into());
        let e = unreachable(&t, &call, "s3://b/p/data/ab/abcd", "x");
        let msg = e.to_string();
        assert!(e.is_transient());
        assert!(
            msg.starts_with(
                "s3://b/p at http://127.0.0.1:9 could not store data/ab/abcd: the server kept answering \
                 HTTP 500 Internal Server Error (gave up after "
            ),
            "{msg}"
        );
        assert!(msg.ends_with("a full disk or an exhausted quota on the server does this: free space there, then run the command again"), "{msg}");
        // A read that keeps failing is still "unreachable".
        let call = CallState::new();
        call.record(true, "HTTP 500 Internal Server Error".into());
        let msg = unreachable(&t, &call, "s3://b/p/config", "x").to_string();
        assert!(msg.starts_with("storage unreachable: s3://b/p at http://127.0.0.1:9: HTTP 500"), "{msg}");
    }
}
