//! Turning OpenDAL's S3 errors into [`StorageError`]s with one-line messages that say what to
//! do.

use std::io;

use offsite_backend::StorageError;
use opendal::ErrorKind;

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

/// S3 error codes (or statuses) that mean the storage is full or the object is too large for
/// a quota.
const NO_SPACE: [&str; 6] = [
    "QuotaExceeded",
    "EntityTooLarge",
    "InsufficientStorage",
    "XMinioStorageFull",
    "StorageFull",
    "status: 507",
];

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

/// The error for a call that gave up on an unreachable or failing storage.
pub(crate) fn unreachable(t: &Target<'_>, call: &CallState, fallback: &str) -> StorageError {
    let cause = call.transient_cause().unwrap_or_else(|| one_line(fallback));
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
    match e.kind() {
        ErrorKind::ConfigInvalid if code == Some("NoSuchBucket") => no_bucket(t),
        ErrorKind::NotFound if code == Some("NoSuchBucket") => no_bucket(t),
        ErrorKind::NotFound => StorageError::NotFound { what },
        ErrorKind::AlreadyExists => StorageError::AlreadyExists { what },
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
        _ if NO_SPACE.iter().any(|c| full.contains(c)) => StorageError::NoSpace { what },
        ErrorKind::RateLimited => unreachable(t, call, e.message()),
        _ if e.message() == GAVE_UP
            || e.message().contains("timeout")
            || call.transient_cause().is_some() =>
        {
            unreachable(t, call, e.message())
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
    }
}
