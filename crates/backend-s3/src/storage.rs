//! [`S3Storage`]: the [`Storage`] trait over OpenDAL's S3 service.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use offsite_backend::{
    is_object_id, validate_id, ObjectKind, RemoteOptions, Storage, StorageError, StorageResult,
};
use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer};
use opendal::services::S3;
use opendal::{HttpTransporter, OperationContext, Operator};

use crate::errors::{self, Target};
use crate::location::{shown_endpoint, S3Url};
use crate::tls;
use crate::transport::{CallState, IdleTransport, CALL};

/// Objects larger than this are uploaded in parts of this size (multipart upload, `concurrency`
/// parts at once); smaller ones, packs included, with a single PUT.
pub const MULTIPART_CHUNK: usize = 16 * 1024 * 1024;

/// Region used when none is given; S3-compatible servers mostly accept any.
const DEFAULT_REGION: &str = "us-east-1";

/// Where and how to reach the bucket. The CLI fills these from `--s3-endpoint` /
/// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; this crate
/// reads no environment variable and no `~/.aws` file itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Timeouts, retry budget and upload concurrency.
    pub remote: RemoteOptions,
    /// The server, e.g. `http://127.0.0.1:9000` or `https://s3.example.com`; AWS (from the
    /// region) when `None`.
    pub endpoint: Option<String>,
    /// The region to sign requests for; `us-east-1` when `None`.
    pub region: Option<String>,
    /// Access key id; required, with the secret.
    pub access_key_id: Option<String>,
    /// Secret access key; required, with the key id. Never shown in messages or `Debug`.
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) rather than virtual-hosted ones
    /// (`bucket.endpoint/key`); `None` means path style when an endpoint is set (what
    /// self-hosted servers need) and virtual-hosted style for AWS.
    pub path_style: Option<bool>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("remote", &self.remote)
            .field("endpoint", &self.endpoint.as_deref().map(shown_endpoint))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// A repository under `prefix/` in an S3 bucket.
///
/// Owns a tokio runtime (two worker threads) and blocks on it in each call, so it must not be
/// called from inside an async runtime. Cheap calls (stat, list, delete, reads) and uploads use
/// two OpenDAL operators over the same service and transport: both retry transient errors, but
/// only the first has `TimeoutLayer`'s IO timeout, because for an upload that timeout would
/// bound the whole PUT; uploads rely on the transport's lack-of-progress timeout instead (see
/// the crate docs).
pub struct S3Storage {
    runtime: tokio::runtime::Runtime,
    op: Operator,
    upload_op: Operator,
    url: String,
    bucket: String,
    endpoint: String,
    remote: RemoteOptions,
    max_backoff: Duration,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The retry schedule: exponential from `give_up_after / 20` (100 ms to 1 s) up to a quarter
/// of `give_up_after` (at most 30 s) between attempts. The number of attempts is not the
/// bound; the deadline is (see [`S3Storage::run`]).
fn backoff(remote: &RemoteOptions) -> (Duration, Duration) {
    let min = (remote.give_up_after / 20).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let max = (remote.give_up_after / 4).clamp(min, Duration::from_secs(30));
    (min, max)
}

/// Log a retry on one line at debug level (`-vv`). OpenDAL's default logs every retry as a
/// warning with the error's whole multi-line context (and a backtrace under
/// `RUST_BACKTRACE`), which broke the one-line error output of a command that then gave up.
fn log_retry(event: RetryEvent<'_>) {
    tracing::debug!(
        "s3: retrying {:?} (attempt {}) in {:.1} s: {}",
        event.op,
        event.attempt,
        event.retry_after.as_secs_f64(),
        event.err.message().replace('\n', " ")
    );
}

fn setup_error(url: &str, why: impl fmt::Display) -> StorageError {
    StorageError::Permanent {
        what: url.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// The reqwest client: rustls with the ring provider (no process-wide crypto provider is
/// installed) and the platform's trust store, or only the certificates of `--cacert` for an
/// https endpoint; HTTP/1.1, connect timeout from `remote`.
fn http_client(remote: &RemoteOptions, https: bool, url: &str) -> StorageResult<reqwest::Client> {
    let tls = tls::client_config(remote, https, url)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(remote.connect_timeout)
        // Small requests (tree reads, HEADs) must not wait out Nagle plus delayed ACK (~40 ms).
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| setup_error(url, format!("http client setup: {e}")))
}

impl S3Storage {
    /// Open `s3://bucket/prefix` with `opts`. Checks the URL and the options and builds the
    /// client; sends nothing ([`Storage::create`] checks that the bucket exists).
    ///
    /// Fails with a Permanent error for a malformed URL, missing credentials, a
    /// [`RemoteOptions::ca_cert`] file that cannot be read or holds no valid certificate (for
    /// an https endpoint; the message names the file), or a TLS or runtime setup failure.
    pub fn new(url: &str, opts: S3Options) -> Result<S3Storage, StorageError> {
        let parsed = S3Url::parse(url)?;
        let canonical = parsed.url();
        let region = opts.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = opts.endpoint.as_deref().map(|e| e.trim_end_matches('/').to_string());
        let shown = match &endpoint {
            Some(e) => shown_endpoint(e),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let (Some(key_id), Some(secret)) = (&opts.access_key_id, &opts.secret_access_key) else {
            return Err(setup_error(
                &canonical,
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        };
        let path_style = opts.path_style.unwrap_or(endpoint.is_some());
        let remote = opts.remote.clone();

        let mut builder = S3::default()
            .bucket(&parsed.bucket)
            .root(&format!("/{}", parsed.prefix))
            .region(&region)
            .access_key_id(key_id)
            .secret_access_key(secret)
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(e) = &endpoint {
            builder = builder.endpoint(e);
        }
        if !path_style {
            builder = builder.enable_virtual_host_style();
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("offsite-s3")
            .enable_all()
            .build()
            .map_err(|e| setup_error(&canonical, format!("tokio runtime: {e}")))?;
        // AWS (no endpoint) is https; a self-hosted endpoint may be plain http.
        let https = endpoint.as_deref().is_none_or(|e| !e.to_ascii_lowercase().starts_with("http://"));
        let client = http_client(&remote, https, &canonical)?;
        let transport = HttpTransporter::new(IdleTransport {
            client,
            idle: remote.idle_timeout,
            connect: remote.connect_timeout,
        });
        let base = {
            let _guard = runtime.enter();
            Operator::new(builder)
                .map_err(|e| setup_error(&canonical, e.message()))?
                .with_context(OperationContext::new().with_http_transport(transport))
        };
        let (min_delay, max_delay) = backoff(&remote);
        let retry = RetryLayer::new()
            .with_min_delay(min_delay)
            .with_max_delay(max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(100_000)
            .with_notify(log_retry);
        let timeout = TimeoutLayer::new()
            .with_timeout(remote.connect_timeout + remote.idle_timeout)
            .with_io_timeout(remote.idle_timeout);
        let op = base.clone().layer(timeout).layer(retry.clone());
        let upload_op = base.layer(retry);
        Ok(S3Storage {
            runtime,
            op,
            upload_op,
            url: canonical,
            bucket: parsed.bucket,
            endpoint: shown,
            remote,
            max_backoff: max_delay,
        })
    }

    fn target(&self) -> Target<'_> {
        Target { url: &self.url, bucket: &self.bucket, endpoint: &self.endpoint }
    }

    fn name(&self, path: &str) -> String {
        format!("{}/{}", self.url, path)
    }

    /// Run one storage call to completion on the runtime.
    ///
    /// Once `give_up_after` has passed, the call's requests fail at once (so RetryLayer stops),
    /// while an attempt that is still moving bytes may finish. As a last resort, after the
    /// deadline the call is dropped once no byte moved for the connect timeout plus twice the
    /// idle timeout plus the longest backoff.
    fn run<T, F>(&self, what: &str, fut: F) -> StorageResult<T>
    where
        F: Future<Output = opendal::Result<T>>,
    {
        self.run_call(what, Arc::new(CallState::new()), fut)
    }

    /// [`S3Storage::run`] with the given call state ([`CallState::storing`] for uploads).
    fn run_call<T, F>(&self, what: &str, call: Arc<CallState>, fut: F) -> StorageResult<T>
    where
        F: Future<Output = opendal::Result<T>>,
    {
        let give_up = self.remote.give_up_after;
        let slack = self.remote.connect_timeout + self.remote.idle_timeout * 2 + self.max_backoff;
        let watch = call.clone();
        let watchdog = async move {
            tokio::time::sleep(give_up).await;
            watch.expire();
            let expired_at = Instant::now();
            loop {
                let limit = watch.last_progress().max(expired_at) + slack;
                if Instant::now() >= limit {
                    return;
                }
                tokio::time::sleep_until(limit.into()).await;
            }
        };
        let result = self.runtime.block_on(CALL.scope(call.clone(), async move {
            tokio::select! {
                r = fut => Some(r),
                () = watchdog => None,
            }
        }));
        match result {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(errors::map(&self.target(), self.name(what), &e, &call)),
            None => Err(errors::unreachable(&self.target(), &call, &self.name(what), "no answer")),
        }
    }

    fn stat_path(&self, path: &str) -> StorageResult<u64> {
        self.run(path, async { self.op.stat(path).await.map(|m| m.content_length()) })
    }
}

impl Storage for S3Storage {
    /// `s3://bucket/prefix (endpoint)`.
    fn location(&self) -> String {
        format!("{} ({})", self.url, self.endpoint)
    }

    fn transfers(&self) -> usize {
        self.remote.concurrency.max(1)
    }

    /// Lists the prefix once, which proves that the bucket exists and the credentials work
    /// (a missing bucket is "bucket B does not exist at ENDPOINT: create it first"), then
    /// refuses if a config is there. S3 has no directories, so nothing else is created.
    fn create(&self) -> StorageResult<()> {
        self.run("", async {
            let mut lister = self.op.lister_with("/").limit(1).await?;
            lister.try_next().await.map(|_| ())
        })?;
        match self.stat_path("config") {
            Ok(_) => Err(StorageError::AlreadyExists { what: self.name("config") }),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Lists `kind/` recursively (all pages: S3 returns at most 1,000 keys per page) and keeps
    /// only keys exactly at an object's place with a valid id.
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        if kind == ObjectKind::Config {
            return match self.stat_path("config") {
                Ok(size) => Ok(vec![(String::new(), size)]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = format!("{}/", kind.dir_name());
        let entries = self.run(&dir, async { self.op.list_with(&dir).recursive(true).await })?;
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(id) = path.rsplit('/').next() else { continue };
            if entry.metadata().is_file() && is_object_id(id) && kind.relative_path(id) == path {
                out.push((id.to_string(), entry.metadata().content_length()));
            }
        }
        Ok(out)
    }

    /// Reads the whole object, or the range with a ranged GET whose answer must have exactly
    /// `len` bytes (a short answer is a Permanent error, never returned as data).
    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        validate_id(kind, id)?;
        let path = kind.relative_path(id);
        let Some((start, len)) = range else {
            return self.run(&path, async { self.op.read(&path).await.map(|b| b.to_vec()) });
        };
        let past_end = |why: String| StorageError::Permanent {
            what: self.name(&path),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, why),
        };
        let Some(end) = start.checked_add(len) else {
            return Err(past_end(format!("range ({start}, {len}) overflows")));
        };
        if len == 0 {
            let size = self.stat_path(&path)?;
            return if start <= size {
                Ok(Vec::new())
            } else {
                Err(past_end(format!("offset {start} is past the end ({size} bytes)")))
            };
        }
        let data =
            self.run(&path, async { self.op.read_with(&path).range(start..end).await.map(|b| b.to_vec()) })?;
        if data.len() as u64 != len {
            return Err(past_end(format!("range ({start}, {len}) returned {} bytes", data.len())));
        }
        Ok(data)
    }

    /// Refuses with AlreadyExists if the object is there (checked with a HEAD first: no
    /// conditional create is relied on), then uploads it with one PUT, or in
    /// [`MULTIPART_CHUNK`] parts (`concurrency` at once) above that size. S3 makes an object
    /// visible only when its PUT or multipart upload completes.
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        validate_id(kind, id)?;
        let path = kind.relative_path(id);
        match self.stat_path(&path) {
            Ok(_) => return Err(StorageError::AlreadyExists { what: self.name(&path) }),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let body = bytes::Bytes::copy_from_slice(data);
        let concurrency = self.remote.concurrency.max(1);
        self.run_call(&path, Arc::new(CallState::storing()), async {
            self.upload_op
                .write_with(&path, body)
                .chunk(MULTIPART_CHUNK)
                .concurrent(concurrency)
                .await
                .map(|_| ())
        })
    }

    /// S3 deletes missing keys without complaint, so the object is looked up first to report
    /// NotFound.
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        validate_id(kind, id)?;
        let path = kind.relative_path(id);
        self.stat_path(&path)?;
        self.run(&path, async { self.op.delete(&path).await })
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        validate_id(kind, id)?;
        self.stat_path(&kind.relative_path(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> S3Options {
        S3Options {
            endpoint: Some("http://user:pw@127.0.0.1:1".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Options::default()
        }
    }

    #[test]
    fn location_names_url_and_endpoint_without_secrets() {
        let s = S3Storage::new("s3://bucket/some/prefix/", opts()).expect("valid");
        assert_eq!(s.location(), "s3://bucket/some/prefix (http://127.0.0.1:1)");
        let debug = format!("{s:?} {:?}", opts());
        assert!(!debug.contains("very-secret") && !debug.contains("pw@"), "{debug}");
    }

    #[test]
    fn missing_credentials_are_refused_up_front() {
        let e = S3Storage::new("s3://b/p", S3Options { secret_access_key: None, ..opts() })
            .expect_err("no secret");
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }

    #[test]
    fn backoff_scales_with_the_budget() {
        let r = |s| RemoteOptions { give_up_after: Duration::from_secs(s), ..RemoteOptions::default() };
        assert_eq!(backoff(&r(6)), (Duration::from_millis(300), Duration::from_millis(1500)));
        assert_eq!(backoff(&r(600)), (Duration::from_secs(1), Duration::from_secs(30)));
    }
}
