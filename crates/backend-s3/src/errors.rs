//! Turning OpenDAL's S3 errors into [`StorageError`]s with one-line messages that say what to
//! do.

use std::io;

use offsite_backend::StorageError;
use opendal::ErrorKind;

use crate::tls::UNTRUSTED;
use offsite_backend::retry::GaveUp;

use crate::transport::CallState;

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

impl Target<'_> {
    /// `s3://bucket/prefix at ENDPOINT`: the storage as give-up messages name it.
    pub(crate) fn location(&self) -> String {
        format!("{} at {}", self.url, self.endpoint)
    }
}

/// A transient failure of one attempt on the storage: the cause the transport recorded (one
/// line), else `fallback`. A cause that is a timeout (no byte moved, no answer) has
/// [`io::ErrorKind::TimedOut`], so the retry budget counts it from when the link stopped.
pub(crate) fn transient(t: &Target<'_>, call: &CallState, fallback: &str) -> StorageError {
    let cause = call.transient_cause().unwrap_or_else(|| one_line(fallback));
    let lower = cause.to_ascii_lowercase();
    let stalled =
        ["no byte moved", "no answer within", "timeout", "timed out"].iter().any(|p| lower.contains(p));
    let kind = if stalled { io::ErrorKind::TimedOut } else { io::ErrorKind::Other };
    StorageError::Transient { what: t.location(), source: io::Error::new(kind, cause) }
}

/// The error of an upload that gave up while the server kept answering HTTP 500, saying what
/// that usually means (s3s-fs, for one, answers a full disk with a bare "500 InternalError");
/// `None` for other give-ups.
pub(crate) fn kept_failing_upload(t: &Target<'_>, object: &str, e: &StorageError) -> Option<StorageError> {
    let gave_up = GaveUp::of(e)?;
    if !gave_up.cause.starts_with("HTTP 500") {
        return None;
    }
    let path = object.strip_prefix(t.url).map_or(object, |p| p.trim_start_matches('/'));
    Some(StorageError::Transient {
        what: format!("{} at {} could not store {path}", t.url, t.endpoint),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server kept answering {} ({}); a full disk or an exhausted quota on the server \
                 does this: free space there, then run the command again",
                gave_up.cause,
                gave_up.summary()
            ),
        ),
    })
}

/// Classify the error of one attempt on object `what` (an `s3://…` name): a definite answer
/// (not found, no space, refused...) or a [`transient`] failure for the retry mechanism.
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
        ErrorKind::RateLimited => transient(t, call, e.message()),
        _ if e.is_temporary() || e.message().contains("timeout") || call.transient_cause().is_some() => {
            transient(t, call, e.message())
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
    use std::time::Duration;

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
        assert_eq!(e.to_string(), "s3://b/p at http://127.0.0.1:9: io operation timeout reached");
        assert!(
            matches!(&e, StorageError::Transient { source, .. } if source.kind() == io::ErrorKind::TimedOut)
        );
        let e = m(opendal::Error::new(ErrorKind::Unexpected, "connection reset").set_temporary());
        assert!(
            matches!(&e, StorageError::Transient { source, .. } if source.kind() == io::ErrorKind::Other)
        );
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
        let call = CallState::new();
        call.record(true, "HTTP 500 Internal Server Error".into());
        let last = transient(&t, &call, "x");
        assert_eq!(last.to_string(), "s3://b/p at http://127.0.0.1:9: HTTP 500 Internal Server Error");
        let gave_up = |cause: &str| {
            GaveUp {
                cause: cause.into(),
                elapsed: Duration::from_millis(6100),
                give_up_after: Duration::from_secs(6),
            }
            .into_error(&t.location())
        };
        let e = kept_failing_upload(&t, "s3://b/p/data/ab/abcd", &gave_up("HTTP 500 Internal Server Error"))
            .expect("a 500 give-up");
        let msg = e.to_string();
        assert!(e.is_transient());
        assert_eq!(
            msg,
            "s3://b/p at http://127.0.0.1:9 could not store data/ab/abcd: the server kept answering HTTP 500 \
             Internal Server Error (gave up after 6.1s of failures (--give-up-after 6s)); a full disk or an \
             exhausted quota on the server does this: free space there, then run the command again"
        );
        // Other give-ups, and errors that are not give-ups, stay as they are.
        assert!(kept_failing_upload(&t, "s3://b/p/config", &gave_up("no byte moved for 2 s")).is_none());
        assert!(kept_failing_upload(&t, "s3://b/p/config", &last).is_none());
    }
}
