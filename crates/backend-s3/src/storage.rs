//! [`S3Storage`]: the [`Storage`] trait over OpenDAL's S3 service.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use offsite_backend::retry::{GiveUpBudget, Retrier};
use offsite_backend::{
    is_object_id, validate_id, ObjectKind, RemoteOptions, Storage, StorageError, StorageResult,
};
use opendal::layers::TimeoutLayer;
use opendal::services::S3;
use opendal::{HttpTransporter, OperationContext, Operator};

use crate::errors::{self, Target};
use crate::location::{shown_endpoint, S3Url};
use crate::tls;
use crate::transport::{stalled_error, CallState, IdleTransport, CALL};

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
/// two OpenDAL operators over the same service and transport; only the first has
/// `TimeoutLayer`'s IO timeout, because for an upload that timeout would bound the whole PUT;
/// uploads rely on the transport's lack-of-progress timeout instead (see the crate docs).
/// Neither retries: every call runs through [`Retrier`], the retry mechanism all remote
/// storages share, with one give-up budget for all calls and threads of this storage.
pub struct S3Storage {
    runtime: tokio::runtime::Runtime,
    op: Operator,
    upload_op: Operator,
    url: String,
    bucket: String,
    endpoint: String,
    remote: RemoteOptions,
    retry: Retrier,
    /// When a byte of any request of this storage last moved.
    link: Arc<CallState>,
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
        let link = Arc::new(CallState::new());
        let transport = HttpTransporter::new(IdleTransport {
            client,
            idle: remote.idle_timeout,
            connect: remote.connect_timeout,
            link: link.clone(),
        });
        let base = {
            let _guard = runtime.enter();
            Operator::new(builder)
                .map_err(|e| setup_error(&canonical, e.message()))?
                .with_context(OperationContext::new().with_http_transport(transport))
        };
        // No OpenDAL RetryLayer: its retries would run inside one attempt of ours, each with a
        // budget of its own, where the shared budget must see every failure (see `run`).
        let timeout = TimeoutLayer::new()
            .with_timeout(remote.connect_timeout + remote.idle_timeout)
            .with_io_timeout(remote.idle_timeout);
        let op = base.clone().layer(timeout);
        let upload_op = base;
        let retry = Retrier::new(format!("{canonical} at {shown}"), GiveUpBudget::for_remote(&remote));
        Ok(S3Storage {
            runtime,
            op,
            upload_op,
            url: canonical,
            bucket: parsed.bucket,
            endpoint: shown,
            remote,
            retry,
            link,
        })
    }

    fn target(&self) -> Target<'_> {
        Target { url: &self.url, bucket: &self.bucket, endpoint: &self.endpoint }
    }

    fn name(&self, path: &str) -> String {
        format!("{}/{}", self.url, path)
    }

    /// Run one storage call on the runtime: `attempt()` makes one attempt (OpenDAL calls over
    /// this crate's transport), which this storage's [`Retrier`] repeats through transient
    /// failures under the shared give-up budget.
    ///
    /// An attempt that moved no byte for the idle timeout may still be waiting legitimately
    /// (an upload's last bytes draining from socket buffers, see the transport), so it is not cut
    /// then; but once nothing moved for give-up-after + connect + idle timeouts (as long as an
    /// attempt started when the budget ran out may take), or for the idle timeout once the
    /// storage has failed for give-up-after, it is abandoned as failing since it stopped moving:
    /// a frozen link cannot hold a call past the give-up bound. A failed attempt starts its
    /// OpenDAL call over (a multipart upload from its first part).
    fn run<T, F, Fut>(&self, what: &str, attempt: F) -> StorageResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        let name = self.name(what);
        let target = self.target();
        let (target, name, attempt) = (&target, name.as_str(), &attempt);
        let one = |_retried| async move {
            let call = Arc::new(CallState::new());
            let guarded = async {
                tokio::select! {
                    r = attempt() => r,
                    () = self.stalled_past_bound(&call) => Err(stalled_error(self.no_progress_limit())),
                }
            };
            match CALL.scope(call.clone(), guarded).await {
                Ok(v) => Ok(v),
                Err(e) => Err(errors::map(target, name.to_string(), &e, &call)),
            }
        };
        self.runtime.block_on(self.retry.run_async(one, tokio::time::sleep))
    }

    /// How long an attempt may move nothing before it is abandoned: as long as an attempt started
    /// when the give-up budget ran out may take.
    fn no_progress_limit(&self) -> Duration {
        let r = &self.remote;
        r.give_up_after + r.connect_timeout + r.idle_timeout
    }

    /// Completes when neither the attempt of `call` nor any other request of this storage (the
    /// attempt's own requests may run on tasks of their own) moved a byte for give-up-after +
    /// connect + idle timeouts, or for the idle timeout once the storage has failed for
    /// give-up-after (other calls gave up: the link is gone); then the give-up budget learns that
    /// the link has been still since the last byte moved.
    async fn stalled_past_bound(&self, call: &CallState) {
        let limit = self.no_progress_limit();
        let idle = self.remote.idle_timeout;
        let budget = self.retry.budget();
        let give_up = budget.give_up_after();
        loop {
            let last = call.last_progress().max(self.link.last_progress());
            let now = Instant::now();
            let still = now.saturating_duration_since(last);
            let failing = budget.failing_for();
            if still >= limit || (still >= idle && failing.is_some_and(|f| f >= give_up)) {
                let cause = format!("no byte moved for {:.1} s", still.as_secs_f64());
                budget.stalled(last, &cause);
                return;
            }
            // Look again when the limit is reached, when the idle timeout is, when the budget
            // runs out, and at least every idle timeout (a run of failures may start).
            let mut next = (last + limit).min(now + idle);
            if still < idle {
                next = next.min(last + idle);
            }
            if let Some(f) = failing.filter(|f| *f < give_up) {
                next = next.min(now + (give_up - f));
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }

    fn stat_path(&self, path: &str) -> StorageResult<u64> {
        self.run(path, || async { self.op.stat(path).await.map(|m| m.content_length()) })
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
        self.run("", || async {
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
        let entries = self.run(&dir, || async { self.op.list_with(&dir).recursive(true).await })?;
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
            return self.run(&path, || async { self.op.read(&path).await.map(|b| b.to_vec()) });
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
        let data = self
            .run(&path, || async { self.op.read_with(&path).range(start..end).await.map(|b| b.to_vec()) })?;
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
        let stored = self.run(&path, || async {
            self.upload_op
                .write_with(&path, body.clone())
                .chunk(MULTIPART_CHUNK)
                .concurrent(concurrency)
                .await
                .map(|_| ())
        });
        match stored {
            Err(e) => Err(errors::kept_failing_upload(&self.target(), &self.name(&path), &e).unwrap_or(e)),
            ok => ok,
        }
    }

    /// S3 deletes missing keys without complaint, so the object is looked up first to report
    /// NotFound.
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        validate_id(kind, id)?;
        let path = kind.relative_path(id);
        self.stat_path(&path)?;
        self.run(&path, || async { self.op.delete(&path).await })
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
}
