//! Parsing a REST repository URL into the address requests go to, the credentials they carry
//! and the form shown to people (never with the password).

use std::io;

use base64::Engine as _;
use offsite_backend::{StorageError, StorageResult};

/// Where a REST repository lives, split so that the password never reaches a message.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host:port/path/`, without user or password, always ending in '/'.
    pub base: String,
    /// What messages and `location()` show: the base with the user name, never the password.
    pub shown: String,
    /// The `Authorization` header value, if the URL carried credentials.
    pub auth: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.shown).finish_non_exhaustive()
    }
}

/// Parse `http[s]://[user[:pass]@]host[:port][/path]`; user and password may be
/// percent-encoded. Errors never echo the password.
pub(crate) fn parse(url: &str) -> StorageResult<Endpoint> {
    let bad = |why: String| StorageError::Permanent {
        what: format!("invalid REST url {}", redact(url)),
        source: io::Error::new(io::ErrorKind::InvalidInput, why),
    };
    let mut u = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("expected http:// or https://".into()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed".into()));
    }
    if !u.path().ends_with('/') {
        let path = format!("{}/", u.path());
        u.set_path(&path);
    }
    let user = percent_decode(u.username());
    let pass = u.password().map(percent_decode);
    let auth = (!user.is_empty() || pass.is_some()).then(|| {
        let pair = format!("{user}:{}", pass.unwrap_or_default());
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    });
    let _ = u.set_password(None);
    let shown = u.to_string();
    let _ = u.set_username("");
    Ok(Endpoint { base: u.to_string(), shown, auth })
}

/// `url` with anything between "://" and '@' after the first ':' replaced, for messages about
/// a URL that did not parse.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let Some(at) = url[start..].find('@').map(|i| start + i) else { return url.to_string() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..]),
        None => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(&[v]) = b.get(i + 1..i + 3).and_then(|h| hex::decode(h).ok()).as_deref() {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_to_the_header_and_never_to_shown_urls() {
        let e = parse("https://alice:s%40cret@backup.example:8000/repo").unwrap();
        assert_eq!(e.base, "https://backup.example:8000/repo/");
        assert_eq!(e.shown, "https://alice@backup.example:8000/repo/");
        let want = base64::engine::general_purpose::STANDARD.encode("alice:s@cret");
        assert_eq!(e.auth.as_deref(), Some(format!("Basic {want}").as_str()));
        assert!(!format!("{e:?}").contains("cret"));
    }

    #[test]
    fn plain_urls_get_a_trailing_slash_and_no_auth() {
        let e = parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:8000/");
        assert_eq!(e.shown, e.base);
        assert!(e.auth.is_none());
    }

    #[test]
    fn bad_urls_are_permanent_and_hide_the_password() {
        for url in ["ftp://h/x", "http://u:hunter2@/x", "not a url", "http://h/x?y=1"] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, StorageError::Permanent { .. }), "{url}: {err:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert_eq!(redact("http://u:pw@h/"), "http://u:***@h/");
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
