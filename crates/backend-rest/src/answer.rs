//! Turning HTTP failures (transport errors, error statuses, bodies cut short) into classified
//! [`StorageError`]s.

use std::io::{self, Read};

use offsite_backend::StorageError;

/// One request as messages name it: method, the object's URL as shown to people, and the
/// repository URL for "wrong credentials" messages.
pub(crate) struct Call<'a> {
    pub method: &'a str,
    /// The object's URL, without password.
    pub object: &'a str,
    /// The repository's URL, without password.
    pub repo: &'a str,
    /// The path below the repository ("config", "data/<id>"), for retry messages.
    pub path: &'a str,
}

impl Call<'_> {
    /// A failure retrying may fix (the link, a busy server).
    pub fn transient(&self, source: io::Error) -> StorageError {
        let path = if self.path.is_empty() { "/" } else { self.path };
        StorageError::Transient { what: format!("{} {path}", self.method), source }
    }

    /// A failure retrying will not fix; `why` is one line.
    pub fn permanent(&self, why: String) -> StorageError {
        StorageError::Permanent {
            what: format!("{} {}", self.method, self.object),
            source: io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }

    /// Classify a transport-level failure: connection, DNS and I/O trouble (timeouts and
    /// resets included) is transient; a bad URL, a bad header, a redirect loop or a server
    /// certificate rustls refused is not.
    pub fn transport(&self, t: &ureq::Transport) -> StorageError {
        use ureq::ErrorKind as K;
        if let Some(why) = crate::tls::refused_certificate(t) {
            // Retrying cannot make a certificate trusted.
            return StorageError::Permanent {
                what: format!("TLS connection to {}", self.repo),
                source: io::Error::new(io::ErrorKind::InvalidData, why),
            };
        }
        // ureq often repeats the kind as the message ("Network Error: Network Error: ...").
        let mut msg = t.kind().to_string();
        let parts = [t.message().map(str::to_string), std::error::Error::source(t).map(|e| e.to_string())];
        for part in parts.into_iter().flatten() {
            if part.starts_with(&msg) {
                msg = part;
            } else if !msg.ends_with(&part) {
                msg = format!("{msg}: {part}");
            }
        }
        match t.kind() {
            K::Dns | K::ConnectionFailed | K::Io | K::BadStatus | K::ProxyConnect => {
                // A socket timeout (EAGAIN from SO_RCVTIMEO/SO_SNDTIMEO reads as WouldBlock) is
                // a link that stopped moving: TimedOut, which the retry budget counts from
                // the idle timeout before it was noticed.
                let kind = match io_kind(t) {
                    Some(io::ErrorKind::WouldBlock) => io::ErrorKind::TimedOut,
                    kind => kind.unwrap_or(io::ErrorKind::Other),
                };
                self.transient(io::Error::new(kind, msg))
            }
            _ => self.permanent(msg),
        }
    }

    /// Classify an error status. `body` is read for a short excerpt in permanent errors.
    pub fn status(&self, code: u16, resp: ureq::Response) -> StorageError {
        let text = resp.status_text().to_string();
        let what = self.object.to_string();
        match code {
            401 => StorageError::PermissionDenied {
                what: format!("{what} (wrong credentials for {})", self.repo),
            },
            403 if self.method == "DELETE" => StorageError::PermissionDenied {
                what: format!("{what} (the server refuses deletes: is it append-only?)"),
            },
            403 if self.method == "POST" => {
                StorageError::PermissionDenied { what: format!("{what} (the server refuses the upload)") }
            }
            403 => StorageError::PermissionDenied {
                what: format!("{what} (wrong credentials for {}, or no access)", self.repo),
            },
            404 => StorageError::NotFound { what },
            409 => StorageError::AlreadyExists { what },
            413 | 507 => StorageError::NoSpace { what },
            408 | 429 | 500 | 502..=504 | 509..=599 => {
                // Servers that pass the OS error on ("no space left on device") say it here.
                if code >= 500 && mentions_no_space(&excerpt(resp)) {
                    return StorageError::NoSpace { what };
                }
                self.transient(io::Error::other(format!("the server answered {code} {text}")))
            }
            416 => self.permanent("range not satisfiable (past the end of the object)".into()),
            _ => self.permanent(format!("unexpected answer {code} {text}: {}", excerpt(resp))),
        }
    }
}

/// True if an error body reads like a full disk or an exhausted quota.
fn mentions_no_space(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    ["no space left", "disk full", "quota exceeded", "insufficient storage", "not enough space"]
        .iter()
        .any(|p| b.contains(p))
}

/// The I/O error kind under a transport error, if there is one.
fn io_kind(t: &ureq::Transport) -> Option<io::ErrorKind> {
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(err) = e {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        e = err.source();
    }
    None
}

/// The first bytes of an error body on one line, for messages.
pub(crate) fn excerpt(resp: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(160).read_to_end(&mut buf);
    one_line(&buf)
}

/// `bytes` as printable text on one line, at most 160 characters.
pub(crate) fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(160).map(|c| if c.is_control() { ' ' } else { c }).collect();
    s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_bodies_are_recognised() {
        assert!(mentions_no_space("write /srv/r/data/ab: No space left on device"));
        assert!(mentions_no_space("Disk quota exceeded"));
        assert!(mentions_no_space("507 Insufficient Storage"));
        assert!(!mentions_no_space("Internal Server Error"));
        assert!(!mentions_no_space("(empty body)"));
    }
}
