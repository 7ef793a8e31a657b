//! Parsing `sftp://user@host[:port]/path` repository URLs.

use offsite_backend::StorageError;

/// Where an SFTP repository lives: who logs in where, and the repository's directory on the
/// server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpTarget {
    /// Login name on the server.
    pub user: String,
    /// Host name or IP address, without brackets for IPv6.
    pub host: String,
    /// TCP port, 22 unless the URL names one.
    pub port: u16,
    /// The repository directory as sent to the server: absolute (`/srv/backup`) or, for URLs
    /// of the form `sftp://user@host/~/backup`, relative to the login directory (`backup`;
    /// `.` for `sftp://user@host/~`).
    pub path: String,
}

impl SftpTarget {
    /// `host:port`, with brackets around an IPv6 address, as shown in messages.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path as written in a URL: absolute paths as they are, home-relative ones as `~/…`.
    pub fn url_path(&self) -> String {
        if self.path.starts_with('/') {
            self.path.clone()
        } else if self.path == "." {
            "/~".to_string()
        } else {
            format!("/~/{}", self.path)
        }
    }

    /// `sftp://user@host:port/path`, the storage's location in messages.
    pub fn location(&self) -> String {
        format!("sftp://{}@{}{}", self.user, self.host_port(), self.url_path())
    }

    /// `sftp://host:port/path`, the form used in "storage unreachable" messages.
    pub fn endpoint(&self) -> String {
        format!("sftp://{}{}", self.host_port(), self.url_path())
    }
}

fn bad(url: &str, why: &str) -> StorageError {
    StorageError::Permanent {
        what: format!("repository URL {url:?}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// Decode `%XX` escapes (a path may hold spaces or `#` written as `%20`, `%23`).
fn percent_decode(url: &str, s: &str) -> Result<String, StorageError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad(url, "truncated %-escape"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad(url, "bad %-escape"))?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| bad(url, "bad %-escape"))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(url, "the path is not UTF-8 after %-decoding"))
}

/// Parse `sftp://[user@]host[:port]/path`.
///
/// - The user defaults to `$USER` (then `$LOGNAME`); the port to 22. An IPv6 host is written
///   in brackets: `sftp://u@[::1]:2222/srv`.
/// - The path is absolute on the server: `sftp://u@h/srv/backup` is `/srv/backup`.
/// - `sftp://u@h/~/backup` is `backup` relative to the login directory (where the server
///   starts the SFTP session, normally the home directory); `sftp://u@h/~` is that directory.
/// - `%XX` escapes in user and path are decoded. A query (`?`) or fragment (`#`) is refused,
///   as is a missing path (`sftp://u@h` or `sftp://u@h/`: a repository at `/` is never meant).
pub fn parse_sftp_url(url: &str) -> Result<SftpTarget, StorageError> {
    let rest = url.strip_prefix("sftp://").ok_or_else(|| bad(url, "it does not start with sftp://"))?;
    if rest.contains(['?', '#']) {
        return Err(bad(url, "a query or fragment is not allowed (write '?' and '#' as %3F and %23)"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rfind('@') {
        Some(i) => (Some(percent_decode(url, &authority[..i])?), &authority[i + 1..]),
        None => (None, authority),
    };
    let user = match user {
        Some(u) if !u.is_empty() => u,
        Some(_) => return Err(bad(url, "the user name is empty")),
        None => std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                bad(url, "no user in the URL and $USER is not set: write sftp://USER@HOST/PATH")
            })?,
    };
    if user.contains(':') {
        return Err(bad(url, "passwords in the URL are not supported: use a key or ssh-agent"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad(url, "unclosed '[' in the host"))?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad(url, "unexpected characters after the IPv6 address")),
        };
        (v6[..end].to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad(url, "the host is empty"));
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad(url, "the port is not a number from 1 to 65535")),
        },
    };
    let path = percent_decode(url, path)?;
    let path = if path == "/~" || path == "/~/" {
        ".".to_string()
    } else if let Some(rel) = path.strip_prefix("/~/") {
        rel.trim_end_matches('/').to_string()
    } else {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(bad(url, "the repository path is missing (sftp://user@host/PATH)"));
        }
        trimmed.to_string()
    };
    if path.split('/').any(|c| c == "..") {
        return Err(bad(url, "'..' is not allowed in the repository path"));
    }
    Ok(SftpTarget { user, host, port, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> SftpTarget {
        parse_sftp_url(url).expect(url)
    }

    #[test]
    fn absolute_paths_with_and_without_port() {
        let a = t("sftp://alice@backup.example:2222/srv/repo/");
        assert_eq!(
            (a.user.as_str(), a.host.as_str(), a.port, a.path.as_str()),
            ("alice", "backup.example", 2222, "/srv/repo")
        );
        assert_eq!(a.location(), "sftp://alice@backup.example:2222/srv/repo");
        assert_eq!(a.endpoint(), "sftp://backup.example:2222/srv/repo");
        let b = t("sftp://bob@h/r");
        assert_eq!((b.port, b.path.as_str()), (22, "/r"));
    }

    #[test]
    fn home_relative_paths() {
        let a = t("sftp://u@h/~/backups/laptop");
        assert_eq!(a.path, "backups/laptop");
        assert_eq!(a.location(), "sftp://u@h:22/~/backups/laptop");
        let home = t("sftp://u@h/~");
        assert_eq!(home.path, ".");
    }

    #[test]
    fn ipv6_and_escapes() {
        let a = t("sftp://u@[::1]:2200/a%20b");
        assert_eq!((a.host.as_str(), a.port, a.path.as_str()), ("::1", 2200, "/a b"));
        assert_eq!(a.host_port(), "[::1]:2200");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, why) in [
            ("http://u@h/p", "sftp://"),
            ("sftp://u@h", "path is missing"),
            ("sftp://u@h/", "path is missing"),
            ("sftp://u@h:0/p", "port"),
            ("sftp://u@h:x/p", "port"),
            ("sftp://u@/p", "host is empty"),
            ("sftp://u:pw@h/p", "passwords"),
            ("sftp://u@h/p?x=1", "query"),
            ("sftp://u@h/a/../b", "'..'"),
        ] {
            let e = parse_sftp_url(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
