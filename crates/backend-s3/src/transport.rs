//! The HTTP transport under OpenDAL: reqwest with a timeout on *lack of progress*, and the
//! per-attempt state (last progress, last transient cause) that `S3Storage` hands to the shared
//! retry mechanism.
//!
//! OpenDAL's `TimeoutLayer` bounds each whole IO call, and a single-PUT upload is one call
//! (`Writer::close`), so it cannot tell a slow upload from a dead one. This transport can: the
//! request body is fed to hyper in 64 KiB frames and every frame taken (hyper takes the next
//! one only once the socket accepted the previous) moves a deadline `idle_timeout` ahead; so
//! does every chunk of the response body. The request fails, as a temporary (transient) error,
//! when the deadline passes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body::{Frame, SizeHint};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport};

/// Size of the request-body frames handed to hyper; the granularity of upload progress.
const FRAME: usize = 64 * 1024;

/// How much of an error answer's body is read to look for a full-storage code.
const ERROR_PEEK: usize = 64 * 1024;

tokio::task_local! {
    /// The state of the attempt the current task runs, set by `S3Storage::run`.
    pub(crate) static CALL: Arc<CallState>;
}

/// What one attempt of a storage call (which may make several HTTP requests) has seen so far.
#[derive(Debug)]
pub(crate) struct CallState {
    started: Instant,
    /// Milliseconds after `started` at which a byte last moved.
    last_progress_ms: AtomicU64,
    /// Whether the last attempt failed transiently, and why (one line).
    last: Mutex<Option<(bool, String)>>,
}

impl CallState {
    /// The state of an attempt (or, for the storage's link clock, of everything) starting now.
    pub(crate) fn new() -> Self {
        CallState { started: Instant::now(), last_progress_ms: AtomicU64::new(0), last: Mutex::new(None) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.store(ms, Ordering::Relaxed);
    }

    /// When a byte of this attempt last moved (its start if none did).
    pub(crate) fn last_progress(&self) -> Instant {
        self.started + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn record(&self, transient: bool, cause: String) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((transient, cause));
        }
    }

    /// The cause of the last attempt's failure, if it failed transiently.
    pub(crate) fn transient_cause(&self) -> Option<String> {
        let last = self.last.lock().ok()?;
        match &*last {
            Some((true, cause)) => Some(cause.clone()),
            _ => None,
        }
    }
}

/// A deadline that moves `idle` ahead whenever a byte moves.
struct Progress {
    base: Instant,
    idle: Duration,
    deadline_ms: AtomicU64,
    call: Option<Arc<CallState>>,
    link: Arc<CallState>,
}

impl Progress {
    fn new(idle: Duration, first: Duration, call: Option<Arc<CallState>>, link: Arc<CallState>) -> Self {
        let first = u64::try_from(first.as_millis()).unwrap_or(u64::MAX);
        Progress { base: Instant::now(), idle, deadline_ms: AtomicU64::new(first), call, link }
    }

    fn bump(&self) {
        self.bump_with(Duration::ZERO);
    }

    /// Move the deadline to `idle + extra` from now.
    fn bump_with(&self, extra: Duration) {
        let ms = u64::try_from((self.base.elapsed() + self.idle + extra).as_millis()).unwrap_or(u64::MAX);
        self.deadline_ms.store(ms, Ordering::Relaxed);
        self.link.touch();
        if let Some(call) = &self.call {
            call.touch();
        }
    }

    /// Completes once the deadline passed without a bump.
    async fn stalled(&self) {
        loop {
            let deadline = self.base + Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed));
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// OpenDAL's HTTP transport for one [`crate::S3Storage`].
pub(crate) struct IdleTransport {
    pub(crate) client: reqwest::Client,
    pub(crate) idle: Duration,
    pub(crate) connect: Duration,
    /// Touched whenever a byte of any request moves, including requests OpenDAL runs on tasks
    /// of their own (the parts of a multipart upload), which do not see [`CALL`].
    pub(crate) link: Arc<CallState>,
}

impl HttpTransport for IdleTransport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let call = CALL.try_with(Arc::clone).ok();
        if let Some(call) = &call {
            // Stays the cause if an outer timeout drops this request before it completes.
            call.record(true, format!("no answer within {} s", self.idle.as_secs_f64()));
        }
        let result = self.send(req, call.clone()).await;
        if let Some(call) = &call {
            match &result {
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                    call.record(true, format!("HTTP {}", resp.status()))
                }
                Ok(_) => call.record(false, String::new()),
                Err(e) => call.record(e.is_temporary(), e.message().to_string()),
            }
        }
        result
    }
}

impl IdleTransport {
    async fn send(
        &self,
        req: http::Request<Buffer>,
        call: Option<Arc<CallState>>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&uri.to_string())
            .map_err(|e| Error::new(ErrorKind::Unexpected, "request url is invalid").set_source(e))?;
        // Connecting has its own bound (reqwest's connect timeout); the idle clock starts after.
        let progress =
            Arc::new(Progress::new(self.idle, self.connect + self.idle, call.clone(), self.link.clone()));
        let mut builder =
            self.client.request(parts.method, url).headers(parts.headers).version(parts.version);
        if !body.is_empty() {
            let len = body.len() as u64;
            builder = builder.body(reqwest::Body::wrap(ProgressBody {
                len,
                parts: body,
                current: Bytes::new(),
                remaining: len,
                progress: progress.clone(),
            }));
        }
        let mut resp = tokio::select! {
            r = builder.send() => r.map_err(send_error)?,
            () = progress.stalled() => return Err(stalled_error(self.idle)),
        };
        progress.bump();

        let content_length = if is_head || parse_content_encoding(resp.headers())?.is_some() {
            None
        } else {
            parse_content_length(resp.headers())?
        };
        let status = resp.status();
        let mut response = http::Response::builder().status(status).version(resp.version()).extension(uri);
        if let Some(headers) = response.headers_mut() {
            std::mem::swap(headers, resp.headers_mut());
        }
        // The start of an error answer, checked for a full storage: that failure is final,
        // and OpenDAL would retry a 5xx until the call gives up.
        let mut peeked = Bytes::new();
        if status.as_u16() >= 400 && !is_head {
            let mut head = Vec::new();
            while head.len() < ERROR_PEEK {
                let chunk = tokio::select! {
                    c = resp.chunk() => c,
                    () = progress.stalled() => return Err(stalled_error(self.idle)),
                };
                match chunk {
                    Ok(Some(bytes)) => {
                        progress.bump();
                        head.extend_from_slice(&bytes);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(Error::new(
                            ErrorKind::Unexpected,
                            format!("reading the response: {}", root_cause(&e)),
                        )
                        .set_temporary())
                    }
                }
            }
            if let Some(why) = crate::errors::full_storage(status.as_u16(), &head) {
                return Err(Error::new(ErrorKind::Unexpected, why));
            }
            peeked = Bytes::from(head);
        }
        let stream = futures::stream::once(std::future::ready(Ok::<Bytes, reqwest::Error>(peeked)))
            .chain(resp.bytes_stream())
            .try_filter(|b| std::future::ready(!b.is_empty()))
            .map_ok(Buffer::from)
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("reading the response: {}", root_cause(&e)))
                    .set_temporary()
            });
        let body = HttpBody::new(
            IdleStream {
                inner: stream,
                idle: self.idle,
                sleep: Box::pin(tokio::time::sleep(self.idle)),
                call,
                link: self.link.clone(),
                done: false,
            },
            content_length,
        );
        response
            .body(body)
            .map_err(|e| Error::new(ErrorKind::Unexpected, "building the response").set_source(e))
    }
}

/// The error of a request (or, from `S3Storage`, an attempt) that moved no byte for `idle`.
pub(crate) fn stalled_error(idle: Duration) -> Error {
    Error::new(ErrorKind::Unexpected, format!("no byte moved for {} s", idle.as_secs_f64())).set_temporary()
}

/// The innermost cause of a reqwest error, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().replace('\n', " ")
}

/// Every failure to send a request or get its answer is worth retrying (connection refused
/// or reset, connect timeout, a broken TLS handshake on a flaky link) except a server
/// certificate rustls refused: no retry makes it trusted.
fn send_error(e: reqwest::Error) -> Error {
    if let Some(why) = crate::tls::refused_certificate(&e) {
        return Error::new(ErrorKind::Unexpected, why);
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    Error::new(ErrorKind::Unexpected, format!("{what}: {}", root_cause(&e))).set_temporary()
}

/// Most bytes the kernel's socket buffers (client send plus server receive) plausibly hold.
const BUFFERED_MAX: u64 = 4 * 1024 * 1024;
/// The slowest link an upload's tail is allowed for, in bytes per second.
const FLOOR_RATE: u64 = 32 * 1024;

/// How long, beyond the idle timeout, to wait for the answer to an upload of `len` bytes once
/// the last byte was handed to the socket: upload progress is seen when hyper takes a frame,
/// not when the server receives it, so up to [`BUFFERED_MAX`] bytes may still be on their way.
fn drain_allowance(len: u64) -> Duration {
    Duration::from_millis(len.min(BUFFERED_MAX) * 1000 / FLOOR_RATE)
}

/// The request body, in frames of at most [`FRAME`] bytes, bumping the progress deadline as
/// hyper takes each.
struct ProgressBody {
    len: u64,
    parts: Buffer,
    current: Bytes,
    remaining: u64,
    progress: Arc<Progress>,
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        while this.current.is_empty() {
            match Iterator::next(&mut this.parts) {
                Some(bytes) => this.current = bytes,
                None => return Poll::Ready(None),
            }
        }
        let frame = this.current.split_to(this.current.len().min(FRAME));
        this.remaining -= frame.len() as u64;
        if this.remaining == 0 {
            // The last frame went into socket buffers, which may hold a few MiB that a slow
            // link still has to carry before the server can answer: allow for that. (Not past
            // the give-up budget: `S3Storage` abandons an attempt that moved nothing for the
            // idle timeout once the budget is spent.)
            this.progress.bump_with(drain_allowance(this.len));
        } else {
            this.progress.bump();
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A response body that fails when no chunk arrived for `idle`.
struct IdleStream<S> {
    inner: S,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    call: Option<Arc<CallState>>,
    link: Arc<CallState>,
    done: bool,
}

impl<S> Stream for IdleStream<S>
where
    S: Stream<Item = opendal::Result<Buffer>> + Unpin,
{
    type Item = opendal::Result<Buffer>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                self.link.touch();
                if let Some(call) = &self.call {
                    call.touch();
                }
                if item.is_none() {
                    self.done = true;
                }
                Poll::Ready(item)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(stalled_error(self.idle))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
