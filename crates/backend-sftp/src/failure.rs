//! How one attempt at a storage call can fail, and the mapping of SFTP answers onto
//! [`StorageError`].

use std::future::Future;
use std::io;
use std::time::Duration;

use offsite_backend::StorageError;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The link is broken, refused or stalled (no progress within the idle timeout): drop the
    /// connection, reconnect and retry until the call's retry budget is spent. Holds the
    /// cause for the final "storage unreachable" message.
    Link(String),
    /// Like [`Failure::Link`], found by a timeout: nothing moved for the idle timeout (or
    /// connecting took longer than the connect timeout). The retry budget counts it from when
    /// the link stopped moving, not from when the timeout noticed.
    Stall(String),
    /// A definite answer from the server (not found, permission denied, a bad range...) or a
    /// local error that retrying cannot fix: returned to the caller as it is.
    Final(StorageError),
}

/// True if a server's failure message reads like a full disk or an exhausted quota. OpenSSH
/// sends only the generic "Failure" for ENOSPC and EDQUOT; other servers pass strerror on.
pub(crate) fn mentions_no_space(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    ["no space", "disk full", "quota", "insufficient storage", "not enough space"]
        .iter()
        .any(|p| m.contains(p))
}

/// A permanent error on `what` with a one-line explanation.
pub(crate) fn permanent(what: &str, kind: io::ErrorKind, msg: impl Into<String>) -> Failure {
    Failure::Final(StorageError::Permanent {
        what: what.to_string(),
        source: io::Error::new(kind, msg.into()),
    })
}

impl Failure {
    /// The error a failed attempt gives the retry mechanism: final failures as they are, link
    /// failures as [`StorageError::Transient`] errors about `location` (a stall with
    /// [`io::ErrorKind::TimedOut`]).
    pub(crate) fn into_storage_error(self, location: &str) -> StorageError {
        let transient = |kind, cause| StorageError::Transient {
            what: location.to_string(),
            source: io::Error::new(kind, cause),
        };
        match self {
            Failure::Final(e) => e,
            Failure::Link(cause) => transient(io::ErrorKind::ConnectionAborted, cause),
            Failure::Stall(cause) => transient(io::ErrorKind::TimedOut, cause),
        }
    }
}

/// Classify an SFTP client error that happened on `what`.
pub(crate) fn from_sftp(what: &str, e: SftpError) -> Failure {
    let what_s = what.to_string();
    match e {
        SftpError::Status(st) => match st.status_code {
            StatusCode::NoSuchFile => Failure::Final(StorageError::NotFound { what: what_s }),
            StatusCode::PermissionDenied => Failure::Final(StorageError::PermissionDenied { what: what_s }),
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                Failure::Link(format!("{what}: {}", st.status_code))
            }
            StatusCode::Failure if mentions_no_space(&st.error_message) => {
                Failure::Final(StorageError::NoSpace { what: what_s })
            }
            StatusCode::OpUnsupported => permanent(
                what,
                io::ErrorKind::Unsupported,
                format!("the SFTP server does not support this operation ({})", st.error_message),
            ),
            code => permanent(
                what,
                io::ErrorKind::Other,
                format!("sftp server answered {code}: {}", st.error_message),
            ),
        },
        SftpError::Limited(m) => {
            permanent(what, io::ErrorKind::InvalidInput, format!("sftp server limit: {m}"))
        }
        // Time-outs, I/O errors on the channel, a closed session, a desynchronised reply:
        // the connection cannot be trusted any more.
        SftpError::Timeout => Failure::Stall(format!("{what}: no reply from the server")),
        SftpError::IO(m) => Failure::Link(format!("{what}: {m}")),
        SftpError::UnexpectedPacket => Failure::Link(format!("{what}: unexpected reply from the server")),
        SftpError::UnexpectedBehavior(m) => Failure::Link(format!("{what}: {m}")),
    }
}

/// Run one request-sized step with the idle timeout: if it does not complete within `idle`,
/// nothing moved for that long and the connection is treated as lost.
pub(crate) async fn step<T, F>(idle: Duration, what: &str, doing: &str, fut: F) -> Result<T, Failure>
where
    F: Future<Output = Result<T, SftpError>>,
{
    match tokio::time::timeout(idle, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(from_sftp(what, e)),
        Err(_) => Err(stalled(idle, what, doing)),
    }
}

/// The failure of a step that made no progress for `idle`.
pub(crate) fn stalled(idle: Duration, what: &str, doing: &str) -> Failure {
    Failure::Stall(format!("no progress for {} while {doing} {what}", human(idle)))
}

/// A duration for messages: "2s", "1.5s", "10 min".
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() == 0 && secs >= 120 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else if d.subsec_millis() == 0 {
        format!("{secs}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    fn status(code: StatusCode, msg: &str) -> SftpError {
        SftpError::Status(Status {
            id: 1,
            status_code: code,
            error_message: msg.into(),
            language_tag: "en".into(),
        })
    }

    #[test]
    fn status_codes_map_to_storage_errors() {
        let w = "sftp://u@h:22/r/keys/x";
        assert!(matches!(
            from_sftp(w, status(StatusCode::NoSuchFile, "")),
            Failure::Final(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            from_sftp(w, status(StatusCode::PermissionDenied, "")),
            Failure::Final(StorageError::PermissionDenied { .. })
        ));
        assert!(matches!(
            from_sftp(w, status(StatusCode::Failure, "No space left on device")),
            Failure::Final(StorageError::NoSpace { .. })
        ));
        assert!(matches!(
            from_sftp(w, status(StatusCode::Failure, "Disk quota exceeded")),
            Failure::Final(StorageError::NoSpace { .. })
        ));
        assert!(matches!(
            from_sftp(w, status(StatusCode::Failure, "Failure")),
            Failure::Final(StorageError::Permanent { .. })
        ));
        assert!(matches!(from_sftp(w, status(StatusCode::ConnectionLost, "")), Failure::Link(_)));
        assert!(matches!(from_sftp(w, SftpError::Timeout), Failure::Stall(_)));
        assert!(matches!(stalled(Duration::from_secs(1), w, "reading"), Failure::Stall(_)));
        assert!(matches!(
            from_sftp(w, SftpError::UnexpectedBehavior("session closed".into())),
            Failure::Link(_)
        ));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(6)), "6s");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
