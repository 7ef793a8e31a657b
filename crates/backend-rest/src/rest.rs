//! [`RestStorage`]: a blocking client for restic's REST backend API v2.

use std::io::Read;
use std::sync::{Condvar, Mutex};

use offsite_backend::retry::{GaveUp, Retrier};
use offsite_backend::{
    is_object_id, validate_id, ObjectKind, RemoteOptions, Storage, StorageError, StorageResult,
};

use crate::answer::{one_line, Call};
use crate::endpoint::{self, Endpoint};
use crate::tls;

/// The media type that selects API version 2 (listings with sizes).
const API_V2: &str = "application/vnd.x.restic.rest.v2";
/// A listing larger than this is not a listing.
const MAX_LISTING: u64 = 1 << 30;

/// A repository on a server speaking restic's REST backend API v2 (rest-server,
/// `rclone serve restic`, `offsite serve`), over HTTP or HTTPS (rustls; the webpki roots, or
/// exactly the certificates of [`RemoteOptions::ca_cert`] when it is set). A server
/// certificate that is not trusted fails a call at once (Permanent, "the server's TLS
/// certificate is not trusted (...)"), without retries.
///
/// Every call is retried through transient failures (connection refused or reset, timeouts,
/// 408, 429, 5xx) by [`offsite_backend::retry::Retrier`]: exponential backoff, and one give-up
/// budget ([`RemoteOptions::give_up_after`]) shared by all calls and threads of this storage;
/// once it is spent, calls fail with "storage unreachable: <url>: <cause>; gave up after
/// <seconds>s of failures (--give-up-after <budget>)". Connecting is
/// bounded by [`RemoteOptions::connect_timeout`]; each socket read and write by
/// [`RemoteOptions::idle_timeout`], so a slow transfer that keeps moving is never cut, and a
/// dead one is noticed within the idle timeout. At most [`RemoteOptions::concurrency`]
/// requests are in flight at once; further calls wait for a free slot.
///
/// The REST API lets a plain server overwrite on POST, so [`Storage::write`] asks first (HEAD)
/// and answers AlreadyExists for an existing name; two writers racing on one new name can
/// both pass that check (the second body replaces the first; for content-addressed objects
/// both bodies are the same). A write retried after a transient failure accepts an object
/// already there only if it holds exactly the bytes being written.
///
/// Credentials in the URL go into an `Authorization: Basic` header; [`Storage::location`],
/// `Debug` and every message show the URL without the password.
pub struct RestStorage {
    agent: ureq::Agent,
    endpoint: Endpoint,
    opts: RemoteOptions,
    retry: Retrier,
    free_slots: Mutex<usize>,
    slot_freed: Condvar,
}

impl std::fmt::Debug for RestStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestStorage").field("url", &self.endpoint.shown).finish_non_exhaustive()
    }
}

/// Holds one of the concurrency slots until dropped.
struct Slot<'a>(&'a RestStorage);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free_slots.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.slot_freed.notify_one();
    }
}

impl RestStorage {
    /// A client for the repository at `url` (`http[s]://[user[:pass]@]host[:port]/path`,
    /// without the `rest:` prefix). Touches nothing on the server; fails only for a URL that
    /// is not http(s) with a host (Permanent, the password not echoed), or, for an https URL,
    /// a [`RemoteOptions::ca_cert`] file that cannot be read or holds no valid certificate
    /// (Permanent, naming the file).
    pub fn new(url: &str, opts: RemoteOptions) -> StorageResult<RestStorage> {
        let mut endpoint = endpoint::parse(url)?;
        // Name the repository as the user writes it, so a printed location can be pasted back
        // into --repo.
        endpoint.shown = format!("rest:{}", endpoint.shown);
        let slots = opts.concurrency.max(1);
        let mut builder = ureq::AgentBuilder::new();
        if endpoint.base.starts_with("https:") {
            if let Some(config) = tls::client_config(&opts)? {
                builder = builder.tls_config(config);
            }
        }
        let agent = builder
            .timeout_connect(opts.connect_timeout)
            .timeout_read(opts.idle_timeout)
            .timeout_write(opts.idle_timeout)
            // No connection reuse: ureq 2 clears a pooled socket's read and write timeouts and
            // does not set them again when it reuses the socket, so a request on a kept-alive
            // connection over a dead link waited for its status line forever (found by
            // crates/cli/tests/resume.rs). A fresh connection per request always has both.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .redirects(0)
            .user_agent(concat!("offsite/", env!("CARGO_PKG_VERSION")))
            .build();
        let retry = Retrier::for_remote(endpoint.shown.clone(), &opts);
        Ok(RestStorage {
            agent,
            endpoint,
            opts,
            retry,
            free_slots: Mutex::new(slots),
            slot_freed: Condvar::new(),
        })
    }

    /// Show `shown` instead of the URL in `location()` and messages (rclone repositories name
    /// their remote, not the local port).
    pub(crate) fn shown_as(mut self, shown: String) -> Self {
        self.retry = self.retry.with_location(shown.clone());
        self.endpoint.shown = shown;
        self
    }

    fn slot(&self) -> Slot<'_> {
        let mut free = self.free_slots.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.slot_freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }

    /// One attempt of one request, no retries: the response if the status is 2xx, a
    /// classified error otherwise.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> StorageResult<ureq::Response> {
        self.attempt(method, path, headers, body).map_err(|(e, _)| e)
    }

    /// [`RestStorage::send`], with the HTTP status of a failure when the server answered one.
    fn attempt(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ureq::Response, (StorageError, Option<u16>)> {
        let object = format!("{}{path}", self.endpoint.shown);
        let call = Call { method, object: &object, repo: &self.endpoint.shown, path };
        let mut req = self.agent.request(method, &format!("{}{path}", self.endpoint.base));
        if let Some(auth) = &self.endpoint.auth {
            req = req.set("Authorization", auth);
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match body {
            Some(bytes) => req.set("Content-Type", "application/octet-stream").send_bytes(bytes),
            None => req.call(),
        };
        match result {
            Ok(resp) if (200..300).contains(&resp.status()) => Ok(resp),
            Ok(resp) => {
                let code = resp.status();
                Err((call.permanent(format!("unexpected answer {code} {}", resp.status_text())), Some(code)))
            }
            Err(ureq::Error::Status(code, resp)) => Err((call.status(code, resp), Some(code))),
            Err(ureq::Error::Transport(t)) => Err((call.transport(&t), None)),
        }
    }

    /// The body of `resp`, at most `limit` bytes; a body shorter than its Content-Length
    /// (the connection broke) is a transient error.
    fn body(&self, method: &str, path: &str, resp: ureq::Response, limit: u64) -> StorageResult<Vec<u8>> {
        let object = format!("{}{path}", self.endpoint.shown);
        let call = Call { method, object: &object, repo: &self.endpoint.shown, path };
        let expected = resp.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
        let mut out = Vec::with_capacity(expected.unwrap_or(0).min(limit).min(1 << 26) as usize);
        resp.into_reader().take(limit).read_to_end(&mut out).map_err(|e| call.transient(e))?;
        match expected {
            Some(n) if (out.len() as u64) < n.min(limit) => Err(call.transient(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("body cut short after {} of {n} bytes", out.len()),
            ))),
            _ => Ok(out),
        }
    }

    /// Size of the object at `path` (HEAD), NotFound if missing.
    fn head(&self, path: &str) -> StorageResult<u64> {
        let resp = self.send("HEAD", path, &[], None)?;
        let object = format!("{}{path}", self.endpoint.shown);
        let call = Call { method: "HEAD", object: &object, repo: &self.endpoint.shown, path };
        resp.header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| call.permanent("the server sent no Content-Length".into()))
    }

    fn get_whole(&self, path: &str) -> StorageResult<Vec<u8>> {
        let resp = self.send("GET", path, &[], None)?;
        self.body("GET", path, resp, u64::MAX)
    }

    /// Bytes `[start, end)` of the object at `path`, checking that the server answered
    /// exactly that range (206 with that Content-Range and length), or slicing a 200 whole
    /// object. A range past the end is Permanent.
    fn get_range(&self, path: &str, start: u64, end: u64) -> StorageResult<Vec<u8>> {
        let object = format!("{}{path}", self.endpoint.shown);
        let call = Call { method: "GET", object: &object, repo: &self.endpoint.shown, path };
        let range = format!("bytes={start}-{}", end - 1);
        let resp = self.send("GET", path, &[("Range", &range)], None)?;
        let len = end - start;
        match resp.status() {
            206 => {
                let got_range = resp.header("Content-Range").map(str::to_string);
                let body = self.body("GET", path, resp, len + 1)?;
                if let Some(cr) = got_range {
                    if !cr.starts_with(&format!("bytes {start}-{}/", end - 1)) {
                        return Err(call.permanent(format!(
                            "asked for {range}, the server answered {cr} (past the end of the object?)"
                        )));
                    }
                }
                if body.len() as u64 != len {
                    return Err(call.permanent(format!(
                        "asked for {range}, the server answered {} bytes (past the end of the object?)",
                        body.len()
                    )));
                }
                Ok(body)
            }
            200 => {
                let whole = self.body("GET", path, resp, u64::MAX)?;
                let size = whole.len() as u64;
                if end > size {
                    return Err(call.permanent(format!("asked for {range} of a {size}-byte object")));
                }
                Ok(whole[start as usize..end as usize].to_vec())
            }
            other => Err(call.permanent(format!("unexpected answer {other} to a range request"))),
        }
    }

    fn list_dir(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        let path = format!("{}/", kind.dir_name());
        let resp = self.send("GET", &path, &[("Accept", API_V2)], None)?;
        let content_type = resp.content_type().to_string();
        let body = self.body("GET", &path, resp, MAX_LISTING)?;
        let object = format!("{}{path}", self.endpoint.shown);
        let call = Call { method: "GET", object: &object, repo: &self.endpoint.shown, path: &path };
        parse_listing(&body).map_err(|why| {
            call.permanent(format!("{why} (content-type {content_type:?}, body: {})", one_line(&body)))
        })
    }
}

/// The REST path of an object: `config`, or `<type>/<id>` (data is flat in the API; the
/// server shards it).
fn rest_path(kind: ObjectKind, id: &str) -> String {
    match kind {
        ObjectKind::Config => "config".into(),
        _ => format!("{}/{id}", kind.dir_name()),
    }
}

/// A v2 listing, `[{"name": ..., "size": ...}]`, with names that are not object ids skipped.
fn parse_listing(body: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the server's listing is not JSON".to_string())?;
    let items = value.as_array().ok_or("the server's listing is not a JSON array")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.is_string() {
            return Err("the server speaks REST API v1 only (names without sizes); v2 is needed".into());
        }
        let name = item.get("name").and_then(|n| n.as_str());
        let size = item.get("size").and_then(|n| n.as_u64());
        let (Some(name), Some(size)) = (name, size) else {
            return Err("the server's listing is not a list of {name, size}".into());
        };
        if is_object_id(name) {
            out.push((name.to_string(), size));
        }
    }
    Ok(out)
}

impl Storage for RestStorage {
    fn location(&self) -> String {
        self.endpoint.shown.clone()
    }

    fn transfers(&self) -> usize {
        self.opts.concurrency.max(1)
    }

    fn create(&self) -> StorageResult<()> {
        self.retry.run(|_| {
            let _slot = self.slot();
            match self.head("config") {
                Ok(_) => Err(StorageError::AlreadyExists { what: format!("{}config", self.endpoint.shown) }),
                Err(e) if e.is_not_found() => self.send("POST", "?create=true", &[], Some(b"")).map(drop),
                Err(e) => Err(e),
            }
        })
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.retry.run(|_| {
            let _slot = self.slot();
            if kind != ObjectKind::Config {
                return self.list_dir(kind);
            }
            match self.head("config") {
                Ok(size) => Ok(vec![(String::new(), size)]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        validate_id(kind, id)?;
        let path = rest_path(kind, id);
        self.retry.run(|_| {
            let _slot = self.slot();
            let Some((start, len)) = range else { return self.get_whole(&path) };
            let object = format!("{}{path}", self.endpoint.shown);
            let call = Call { method: "GET", object: &object, repo: &self.endpoint.shown, path: &path };
            match start.checked_add(len) {
                None => Err(call.permanent(format!("range ({start}, {len}) is past any object's end"))),
                Some(_) if len == 0 => match self.head(&path)? {
                    size if start <= size => Ok(Vec::new()),
                    size => Err(call.permanent(format!("empty range at {start} of a {size}-byte object"))),
                },
                Some(end) => self.get_range(&path, start, end),
            }
        })
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        validate_id(kind, id)?;
        let path = rest_path(kind, id);
        let exists = || StorageError::AlreadyExists { what: format!("{}{path}", self.endpoint.shown) };
        let no_space = || StorageError::NoSpace { what: format!("{}{path}", self.endpoint.shown) };
        // Whether the last attempt's POST failed, and whether the server answered it with 500.
        let (mut post_failed, mut server_error) = (false, false);
        // Attempts that found an empty object left at the name by the previous attempt's POST.
        let mut empties = 0;
        let result = self.retry.run(|retried| {
            let after_failed_post = std::mem::take(&mut post_failed);
            server_error = false;
            let _slot = self.slot();
            match self.head(&path) {
                Ok(0) if after_failed_post && !data.is_empty() => {
                    // The POST failed and an empty object is still at its name after the backoff:
                    // the server left it, which is what `rclone serve restic` does on a full disk
                    // (it answers a bare 500, often before reading the body, so the client sees a
                    // broken connection). Remove it and try once more; the same failure again is
                    // a full disk.
                    empties += 1;
                    let deleted = self.send("DELETE", &path, &[], None);
                    match deleted {
                        _ if empties >= 2 => return Err(no_space()),
                        // An append-only server keeps it: no way to try again.
                        Err(StorageError::PermissionDenied { .. }) => return Err(no_space()),
                        Err(e) => {
                            // Still the leftover of a failed POST: look again next attempt.
                            empties -= 1;
                            post_failed = true;
                            return Err(e);
                        }
                        Ok(_) => {}
                    }
                }
                Ok(size) if retried && size == data.len() as u64 => {
                    // An earlier attempt may have landed; accept it only if it is ours.
                    return if self.get_whole(&path)? == data { Ok(()) } else { Err(exists()) };
                }
                Ok(_) if retried => {
                    // A partial upload of an earlier attempt that the server has yet to remove.
                    let object = format!("{}{path}", self.endpoint.shown);
                    let call =
                        Call { method: "POST", object: &object, repo: &self.endpoint.shown, path: &path };
                    return Err(
                        call.transient(std::io::Error::other("a partial earlier upload is still there"))
                    );
                }
                Ok(_) => return Err(exists()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            match self.attempt("POST", &path, &[], Some(data)) {
                Ok(_) => Ok(()),
                // Append-only servers refuse an existing name with 403, others may say 409.
                Err((
                    e @ (StorageError::PermissionDenied { .. } | StorageError::AlreadyExists { .. }),
                    _,
                )) => match self.head(&path) {
                    Ok(_) => Err(exists()),
                    Err(_) => Err(e),
                },
                Err((e, status)) => {
                    post_failed = true;
                    server_error = status == Some(500);
                    Err(e)
                }
            }
        });
        match result {
            // Gave up while the server kept failing the upload: say what that usually means.
            Err(e @ StorageError::Transient { .. }) if server_error => {
                let gave_up = GaveUp::of(&e).map(GaveUp::summary).unwrap_or_else(|| e.to_string());
                Err(StorageError::Transient {
                    what: format!("{} could not store {path}", self.endpoint.shown),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the server kept answering 500 Internal Server Error ({gave_up}); a full \
                             disk or an exhausted quota on the server does this: free space there, then \
                             run the command again"
                        ),
                    ),
                })
            }
            other => other,
        }
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        validate_id(kind, id)?;
        let path = rest_path(kind, id);
        self.retry.run(|retried| {
            let _slot = self.slot();
            match self.send("DELETE", &path, &[], None) {
                // The earlier attempt may have deleted it before the link broke.
                Err(e) if retried && e.is_not_found() => Ok(()),
                other => other.map(drop),
            }
        })
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        validate_id(kind, id)?;
        let path = rest_path(kind, id);
        self.retry.run(|_| {
            let _slot = self.slot();
            self.head(&path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_keep_object_ids_and_reject_garbage() {
        let id = "a".repeat(64);
        let body = format!(r#"[{{"name":"{id}","size":5}},{{"name":".tmp-x","size":1}}]"#);
        assert_eq!(parse_listing(body.as_bytes()).unwrap(), vec![(id.clone(), 5)]);
        assert!(parse_listing(b"<html>hi</html>").unwrap_err().contains("not JSON"));
        assert!(parse_listing(b"{}").unwrap_err().contains("not a JSON array"));
        assert!(parse_listing(format!(r#"["{id}"]"#).as_bytes()).unwrap_err().contains("v1"));
        assert!(parse_listing(br#"[{"name":"x"}]"#).unwrap_err().contains("{name, size}"));
    }

    #[test]
    fn data_is_flat_in_rest_paths() {
        let id = "ab".repeat(32);
        assert_eq!(rest_path(ObjectKind::Data, &id), format!("data/{id}"));
        assert_eq!(rest_path(ObjectKind::Config, ""), "config");
        assert_eq!(rest_path(ObjectKind::Lock, &id), format!("locks/{id}"));
    }

    #[test]
    fn debug_and_location_never_show_the_password() {
        let s = RestStorage::new("http://bob:hunter2@127.0.0.1:1/r", RemoteOptions::default()).unwrap();
        assert_eq!(s.location(), "rest:http://bob@127.0.0.1:1/r/");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
