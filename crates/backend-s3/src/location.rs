//! Parsing `s3://bucket/prefix` repository URLs and showing endpoints without secrets.

use std::io;

use offsite_backend::StorageError;

/// A parsed `s3://bucket/prefix` URL: the bucket and the key prefix under which the
/// repository lives (no leading or trailing slash; empty for the bucket's root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix, '/'-separated, without leading or trailing '/'.
    pub prefix: String,
}

impl S3Url {
    /// Parse `s3://bucket` or `s3://bucket/some/prefix`. Repeated and trailing slashes in the
    /// prefix are dropped; a missing bucket, a bucket with characters S3 never allows, or a
    /// prefix with `.`/`..` segments is a Permanent error naming the URL.
    pub fn parse(url: &str) -> Result<S3Url, StorageError> {
        let bad = |why: &str| StorageError::Permanent {
            what: format!("repository url {url:?}"),
            source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
        };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name (expected s3://bucket/prefix)"));
        }
        let bucket_ok = bucket.len() <= 255
            && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !bucket_ok {
            return Err(bad("bucket names hold only letters, digits, '-', '.' and '_'"));
        }
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(bad("prefix must not contain '.' or '..' segments"));
        }
        if prefix.chars().any(|c| c.is_control()) {
            return Err(bad("prefix must not contain control characters"));
        }
        Ok(S3Url { bucket: bucket.to_string(), prefix: segments.join("/") })
    }

    /// The URL in canonical form, `s3://bucket` or `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// An endpoint URL fit for messages: any `user:password@` part is removed.
pub(crate) fn shown_endpoint(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => endpoint.rsplit_once('@').map_or(endpoint, |(_, h)| h).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_bucket_and_prefix() {
        let u = S3Url::parse("s3://backups/laptop/repo/").expect("valid");
        assert_eq!(u, S3Url { bucket: "backups".into(), prefix: "laptop/repo".into() });
        assert_eq!(u.url(), "s3://backups/laptop/repo");
        let u = S3Url::parse("s3://backups").expect("valid");
        assert_eq!(u.prefix, "");
        assert_eq!(u.url(), "s3://backups");
        assert_eq!(S3Url::parse("s3://b//x//y").expect("valid").prefix, "x/y");
    }

    #[test]
    fn bad_urls_are_refused_with_the_url_named() {
        for bad in ["s3://", "s3:///prefix", "http://b/p", "s3://bu cket/p", "s3://b/../p", "s3://a@b/p"] {
            let e = S3Url::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn endpoints_are_shown_without_credentials() {
        assert_eq!(shown_endpoint("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(shown_endpoint("https://key:secret@host:1/x"), "https://host:1/x");
        assert_eq!(shown_endpoint("key:secret@host"), "host");
    }
}
