//! The SFTP requests behind each storage call, on one connection, every step bounded by the
//! idle timeout.

use std::io;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use offsite_backend::{is_object_id, StorageError};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use crate::conn::Conn;
use crate::failure::{from_sftp, mentions_no_space, permanent, stalled, step, Failure};

/// Bytes per SFTP write request; OpenSSH accepts up to 255 KiB.
const WRITE_CHUNK: usize = 64 * 1024;
/// Bytes per SFTP read request.
const READ_CHUNK: u64 = 64 * 1024;
/// Requests in flight per transfer (pipelining hides the round-trip time).
const IN_FLIGHT: usize = 16;
/// Directory listings in flight while listing `data/<xx>/`.
const LIST_IN_FLIGHT: usize = 8;

/// Context of the operations on one repository: how to name things and how long to wait.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// `sftp://user@host:port/path`, prefix of every object's name in messages.
    pub(crate) location: String,
    /// The repository directory as sent to the server.
    pub(crate) root: String,
    pub(crate) idle: Duration,
}

impl Ctx {
    /// Server path of a '/'-separated path inside the repository.
    pub(crate) fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else if self.root == "/" {
            format!("/{rel}")
        } else if self.root == "." {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// The name of a path inside the repository in messages.
    pub(crate) fn what(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.location.clone()
        } else {
            format!("{}/{rel}", self.location)
        }
    }

    fn missing_repo(&self) -> Failure {
        Failure::Final(StorageError::NotFound { what: format!("repository {}", self.location) })
    }
}

fn mode(bits: u32) -> FileAttributes {
    FileAttributes { permissions: Some(bits), ..FileAttributes::empty() }
}

fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Attributes of `rel`, or None if it does not exist.
async fn stat_opt(c: &Conn, ctx: &Ctx, rel: &str) -> Result<Option<FileAttributes>, Failure> {
    let what = ctx.what(rel);
    match tokio::time::timeout(ctx.idle, c.sftp.stat(ctx.path(rel))).await {
        Err(_) => Err(stalled(ctx.idle, &what, "checking")),
        Ok(Ok(attrs)) => Ok(Some(attrs.attrs)),
        Ok(Err(e)) => match from_sftp(&what, e) {
            Failure::Final(StorageError::NotFound { .. }) => Ok(None),
            f => Err(f),
        },
    }
}

/// Turn a NotFound on an object into "repository … not found" when the root is missing.
async fn refine_not_found(c: &Conn, ctx: &Ctx, f: Failure) -> Failure {
    match f {
        Failure::Final(StorageError::NotFound { .. }) => match stat_opt(c, ctx, "").await {
            Ok(Some(a)) if a.is_dir() => f,
            Ok(_) => ctx.missing_repo(),
            Err(link) => link,
        },
        f => f,
    }
}

/// Create directory `rel` if it is missing; an existing directory is fine.
async fn ensure_dir(c: &Conn, ctx: &Ctx, rel: &str) -> Result<(), Failure> {
    let what = ctx.what(rel);
    match step(ctx.idle, &what, "creating directory", c.sftp.mkdir(ctx.path(rel), mode(0o700))).await {
        Ok(_) => Ok(()),
        // OpenSSH answers a generic failure for EEXIST: look before deciding.
        Err(f @ Failure::Final(_)) => match stat_opt(c, ctx, rel).await? {
            Some(a) if a.is_dir() => Ok(()),
            _ => Err(f),
        },
        Err(f) => Err(f),
    }
}

/// `create`: the repository directory (with missing parents) and the kind directories.
pub(crate) async fn create(c: &Conn, ctx: &Ctx, kind_dirs: &[&str]) -> Result<(), Failure> {
    if stat_opt(c, ctx, "config").await?.is_some() {
        return Err(Failure::Final(StorageError::AlreadyExists {
            what: format!("repository config {}", ctx.what("config")),
        }));
    }
    // The root and its missing parents, shortest first.
    let root = ctx.root.clone();
    let mut prefixes = Vec::new();
    if root != "." && root != "/" {
        for (i, ch) in root.char_indices() {
            if ch == '/' && i > 0 {
                prefixes.push(root[..i].to_string());
            }
        }
        prefixes.push(root.clone());
    }
    for p in prefixes {
        let what = format!("{} (creating {p})", ctx.location);
        let exists = match tokio::time::timeout(ctx.idle, c.sftp.stat(p.clone())).await {
            Err(_) => return Err(stalled(ctx.idle, &what, "checking")),
            Ok(Ok(a)) if a.attrs.is_dir() => true,
            Ok(Ok(_)) => {
                return Err(permanent(&what, io::ErrorKind::AlreadyExists, format!("{p} is not a directory")))
            }
            Ok(Err(e)) => match from_sftp(&what, e) {
                Failure::Final(StorageError::NotFound { .. }) => false,
                f => return Err(f),
            },
        };
        if !exists {
            step(ctx.idle, &what, "creating directory", c.sftp.mkdir(p.clone(), mode(0o700))).await?;
        }
    }
    for d in kind_dirs {
        ensure_dir(c, ctx, d).await?;
    }
    Ok(())
}

/// Entries of directory `rel` as (name, attributes); None if the directory does not exist.
async fn read_dir(c: &Conn, ctx: &Ctx, rel: &str) -> Result<Option<Vec<(String, FileAttributes)>>, Failure> {
    let what = ctx.what(rel);
    let handle = match step(ctx.idle, &what, "opening directory", c.sftp.opendir(ctx.path(rel))).await {
        Ok(h) => h.handle,
        Err(Failure::Final(StorageError::NotFound { .. })) => return Ok(None),
        Err(f) => return Err(f),
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(ctx.idle, c.sftp.readdir(handle.as_str())).await {
            Err(_) => return Err(stalled(ctx.idle, &what, "listing")),
            Ok(Ok(name)) => out.extend(name.files.into_iter().map(|f| (f.filename, f.attrs))),
            Ok(Err(russh_sftp::client::error::Error::Status(st))) if st.status_code == StatusCode::Eof => {
                break
            }
            Ok(Err(e)) => return Err(from_sftp(&what, e)),
        }
    }
    step(ctx.idle, &what, "closing directory", c.sftp.close(handle)).await?;
    Ok(Some(out))
}

/// Objects (64-hex names of regular files) in directory `rel`, with sizes.
async fn list_objects(
    c: &Conn,
    ctx: &Ctx,
    rel: &str,
    prefix: Option<&str>,
) -> Result<Option<Vec<(String, u64)>>, Failure> {
    let Some(entries) = read_dir(c, ctx, rel).await? else { return Ok(None) };
    let mut out = Vec::new();
    for (name, attrs) in entries {
        if !is_object_id(&name) || prefix.is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        // Servers that return no attributes in listings get a stat per object.
        let attrs = if attrs.permissions.is_none() || attrs.size.is_none() {
            match stat_opt(c, ctx, &format!("{rel}/{name}")).await? {
                Some(a) => a,
                None => continue, // deleted meanwhile
            }
        } else {
            attrs
        };
        if attrs.is_regular() {
            out.push((name, attrs.len()));
        }
    }
    Ok(Some(out))
}

/// `list` of a kind stored in one directory (`keys`, `index`, `snapshots`, `locks`).
pub(crate) async fn list_flat(c: &Conn, ctx: &Ctx, dir: &str) -> Result<Vec<(String, u64)>, Failure> {
    match list_objects(c, ctx, dir, None).await? {
        Some(v) => Ok(v),
        None => match stat_opt(c, ctx, "").await? {
            Some(a) if a.is_dir() => Ok(Vec::new()),
            _ => Err(ctx.missing_repo()),
        },
    }
}

/// `list` of data: the 256 `data/<xx>` directories, several listed at once.
pub(crate) async fn list_data(c: &Conn, ctx: &Ctx) -> Result<Vec<(String, u64)>, Failure> {
    let Some(entries) = read_dir(c, ctx, "data").await? else {
        return match stat_opt(c, ctx, "").await? {
            Some(a) if a.is_dir() => Ok(Vec::new()),
            _ => Err(ctx.missing_repo()),
        };
    };
    let subdirs: Vec<String> = entries
        .into_iter()
        .filter(|(n, a)| {
            n.len() == 2 && is_object_id(&n.repeat(32)) && (a.permissions.is_none() || a.is_dir())
        })
        .map(|(n, _)| n)
        .collect();
    let mut listings = stream::iter(subdirs)
        .map(|xx| async move { list_objects(c, ctx, &format!("data/{xx}"), Some(&xx)).await })
        .buffer_unordered(LIST_IN_FLIGHT);
    let mut out = Vec::new();
    // Each listing is itself bounded step by step; this loop only gathers them.
    while let Some(r) = listings.next().await {
        out.extend(r?.unwrap_or_default());
    }
    Ok(out)
}

/// `list` of the config: `[("", size)]` or empty.
pub(crate) async fn list_config(c: &Conn, ctx: &Ctx) -> Result<Vec<(String, u64)>, Failure> {
    match stat_opt(c, ctx, "config").await? {
        Some(a) => Ok(vec![(String::new(), a.len())]),
        None => match stat_opt(c, ctx, "").await? {
            Some(a) if a.is_dir() => Ok(Vec::new()),
            _ => Err(ctx.missing_repo()),
        },
    }
}

/// `stat`: the size of a regular file.
pub(crate) async fn stat(c: &Conn, ctx: &Ctx, rel: &str) -> Result<u64, Failure> {
    let what = ctx.what(rel);
    match stat_opt(c, ctx, rel).await? {
        None => Err(refine_not_found(c, ctx, Failure::Final(StorageError::NotFound { what })).await),
        Some(a) if !a.is_regular() => Err(permanent(&what, io::ErrorKind::InvalidData, "not a regular file")),
        Some(a) => {
            a.size.ok_or_else(|| permanent(&what, io::ErrorKind::InvalidData, "the server reported no size"))
        }
    }
}

/// `delete`.
pub(crate) async fn delete(c: &Conn, ctx: &Ctx, rel: &str) -> Result<(), Failure> {
    let what = ctx.what(rel);
    match step(ctx.idle, &what, "deleting", c.sftp.remove(ctx.path(rel))).await {
        Ok(_) => Ok(()),
        Err(f) => Err(refine_not_found(c, ctx, f).await),
    }
}

/// `read`: the whole object or `[start, start+len)`, checked against the size the server
/// reports for the open file, and the bytes received counted.
pub(crate) async fn read(
    c: &Conn,
    ctx: &Ctx,
    rel: &str,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, Failure> {
    let what = ctx.what(rel);
    let handle = match step(
        ctx.idle,
        &what,
        "opening",
        c.sftp.open(ctx.path(rel), OpenFlags::READ, FileAttributes::empty()),
    )
    .await
    {
        Ok(h) => h.handle,
        Err(f) => return Err(refine_not_found(c, ctx, f).await),
    };
    let result = read_open(c, ctx, &what, &handle, range).await;
    match result {
        Ok(buf) => {
            step(ctx.idle, &what, "closing", c.sftp.close(handle)).await?;
            Ok(buf)
        }
        Err(f @ Failure::Final(_)) => {
            let _ = tokio::time::timeout(ctx.idle, c.sftp.close(handle)).await;
            Err(f)
        }
        Err(f) => Err(f),
    }
}

async fn read_open(
    c: &Conn,
    ctx: &Ctx,
    what: &str,
    handle: &str,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, Failure> {
    let attrs = step(ctx.idle, what, "checking", c.sftp.fstat(handle)).await?.attrs;
    let size = attrs
        .size
        .ok_or_else(|| permanent(what, io::ErrorKind::InvalidData, "the server reported no size"))?;
    let (start, len) = range.unwrap_or((0, size));
    if start.checked_add(len).is_none_or(|end| end > size) {
        return Err(permanent(
            what,
            io::ErrorKind::UnexpectedEof,
            format!("range of {len} bytes at offset {start} is past the end of the {size}-byte object"),
        ));
    }
    let total = usize::try_from(len)
        .map_err(|_| permanent(what, io::ErrorKind::InvalidInput, "range too large for this platform"))?;
    let mut buf = vec![0u8; total];
    let pieces: Vec<(u64, &mut [u8])> = buf
        .chunks_mut(READ_CHUNK as usize)
        .enumerate()
        .map(|(i, piece)| (start + i as u64 * READ_CHUNK, piece))
        .collect();
    let mut reads = stream::iter(pieces)
        .map(|(offset, piece)| async move {
            // A server may answer with fewer bytes than asked: ask again for the rest.
            let mut filled = 0usize;
            while filled < piece.len() {
                let want = (piece.len() - filled) as u32;
                match c.sftp.read(handle, offset + filled as u64, want).await {
                    Ok(data) if data.data.is_empty() => break,
                    Ok(data) => {
                        let n = data.data.len().min(piece.len() - filled);
                        piece[filled..filled + n].copy_from_slice(&data.data[..n]);
                        filled += n;
                    }
                    Err(russh_sftp::client::error::Error::Status(st))
                        if st.status_code == StatusCode::Eof =>
                    {
                        break
                    }
                    Err(e) => return Err(from_sftp(what, e)),
                }
            }
            Ok(filled)
        })
        .buffered(IN_FLIGHT);
    let mut received = 0usize;
    loop {
        match tokio::time::timeout(ctx.idle, reads.next()).await {
            Err(_) => return Err(stalled(ctx.idle, what, "reading")),
            Ok(None) => break,
            Ok(Some(r)) => received += r?,
        }
    }
    drop(reads);
    if received != total {
        return Err(permanent(
            what,
            io::ErrorKind::UnexpectedEof,
            format!("short read: got {received} of {total} bytes (the object shrank while being read?)"),
        ));
    }
    Ok(buf)
}

/// Does `rel` exist (as anything)?
pub(crate) async fn exists(c: &Conn, ctx: &Ctx, rel: &str) -> Result<bool, Failure> {
    Ok(stat_opt(c, ctx, rel).await?.is_some())
}

/// Remove a temp file, best effort (a failure leaves a `.tmp-` file that listings skip).
pub(crate) async fn remove_quietly(c: &Conn, ctx: &Ctx, rel: &str) {
    let _ = tokio::time::timeout(ctx.idle, c.sftp.remove(ctx.path(rel))).await;
}

/// `write`: upload to `<dir>/.tmp-<random>`, fsync it (`fsync@openssh.com`), close, then
/// publish under the final name without replacing anything: a hard link
/// (`hardlink@openssh.com`, fails if the name exists) then removal of the temp name, or,
/// without hard links, a check that the name is free followed by `posix-rename@openssh.com`
/// (racy only against a writer of the same content-addressed name, whose bytes are the same).
///
/// `tmp_rel` is the temp file's path; `parents` the directories to create if the temp file
/// cannot be created because they are missing (`data/<xx>` lazily).
pub(crate) async fn write(
    c: &Conn,
    ctx: &Ctx,
    rel: &str,
    tmp_rel: &str,
    parents: &[String],
    data: &[u8],
) -> Result<(), Failure> {
    let what = ctx.what(rel);
    if exists(c, ctx, rel).await? {
        return Err(Failure::Final(StorageError::AlreadyExists { what }));
    }
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
    let tmp_path = ctx.path(tmp_rel);
    let handle =
        match step(ctx.idle, &what, "creating", c.sftp.open(tmp_path.clone(), flags, mode(0o600))).await {
            Ok(h) => h.handle,
            Err(Failure::Final(StorageError::NotFound { .. })) => {
                // First object in its directory (lazy data/<xx>), or no repository at all.
                if !exists(c, ctx, "").await? {
                    return Err(ctx.missing_repo());
                }
                for p in parents {
                    ensure_dir(c, ctx, p).await?;
                }
                step(ctx.idle, &what, "creating", c.sftp.open(tmp_path, flags, mode(0o600))).await?.handle
            }
            Err(f) => return Err(f),
        };
    let uploaded = upload(c, ctx, &what, &handle, data).await;
    let uploaded = match uploaded {
        Ok(()) => step(ctx.idle, &what, "closing", c.sftp.close(handle)).await.map(|_| ()),
        Err(f) => {
            if let Failure::Final(_) = f {
                let _ = tokio::time::timeout(ctx.idle, c.sftp.close(handle)).await;
            }
            Err(f)
        }
    };
    let result = match uploaded {
        Ok(()) => publish(c, ctx, &what, rel, tmp_rel).await,
        Err(f) => Err(f),
    };
    match result {
        Err(Failure::Final(e)) => {
            remove_quietly(c, ctx, tmp_rel).await;
            Err(Failure::Final(no_space_if_full(c, ctx, &what, e, data.len() as u64).await))
        }
        other => other,
    }
}

/// Write all of `data` with up to [`IN_FLIGHT`] requests outstanding, then fsync.
async fn upload(c: &Conn, ctx: &Ctx, what: &str, handle: &str, data: &[u8]) -> Result<(), Failure> {
    let mut writes = stream::iter(data.chunks(WRITE_CHUNK).enumerate())
        .map(|(i, chunk)| c.sftp.write(handle, (i * WRITE_CHUNK) as u64, chunk.to_vec()))
        .buffer_unordered(IN_FLIGHT);
    loop {
        match tokio::time::timeout(ctx.idle, writes.next()).await {
            Err(_) => return Err(stalled(ctx.idle, what, "uploading")),
            Ok(None) => break,
            Ok(Some(r)) => {
                r.map_err(|e| from_sftp(what, e))?;
            }
        }
    }
    drop(writes);
    if c.features.fsync {
        step(ctx.idle, what, "syncing", c.sftp.fsync(handle)).await?;
    }
    Ok(())
}

async fn publish(c: &Conn, ctx: &Ctx, what: &str, rel: &str, tmp_rel: &str) -> Result<(), Failure> {
    let (from, to) = (ctx.path(tmp_rel), ctx.path(rel));
    if c.features.hardlink {
        match step(ctx.idle, what, "publishing", c.sftp.hardlink(from.clone(), to.clone())).await {
            Ok(_) => {
                remove_quietly(c, ctx, tmp_rel).await;
                return Ok(());
            }
            Err(Failure::Final(e)) => {
                if exists(c, ctx, rel).await? {
                    remove_quietly(c, ctx, tmp_rel).await;
                    return Err(Failure::Final(StorageError::AlreadyExists { what: what.to_string() }));
                }
                // Hard links refused (a file system without them): fall back to rename.
                if !matches!(e, StorageError::PermissionDenied { .. } | StorageError::Permanent { .. }) {
                    return Err(Failure::Final(e));
                }
            }
            Err(f) => return Err(f),
        }
    }
    if exists(c, ctx, rel).await? {
        remove_quietly(c, ctx, tmp_rel).await;
        return Err(Failure::Final(StorageError::AlreadyExists { what: what.to_string() }));
    }
    if c.features.posix_rename {
        let mut body = Vec::new();
        ssh_string(&mut body, &from);
        ssh_string(&mut body, &to);
        match step(ctx.idle, what, "publishing", c.sftp.extended("posix-rename@openssh.com", body)).await? {
            Packet::Status(st) if st.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(st) => Err(from_sftp(what, russh_sftp::client::error::Error::Status(st))),
            _ => Err(Failure::Link(format!("{what}: unexpected reply to posix-rename"))),
        }
    } else {
        // Plain SFTP rename: OpenSSH refuses to replace an existing name with it.
        step(ctx.idle, what, "publishing", c.sftp.rename(from, to)).await.map(|_| ())
    }
}

/// OpenSSH reports ENOSPC and EDQUOT as a generic failure: when a write failed that way, ask
/// `statvfs@openssh.com` whether the file system has room for the object, and report a full
/// disk as [`StorageError::NoSpace`].
async fn no_space_if_full(c: &Conn, ctx: &Ctx, what: &str, e: StorageError, len: u64) -> StorageError {
    let generic =
        matches!(&e, StorageError::Permanent { source, .. } if source.kind() == io::ErrorKind::Other);
    if !generic || !c.features.statvfs {
        return e;
    }
    match tokio::time::timeout(ctx.idle, c.sftp.statvfs(ctx.path(""))).await {
        Ok(Ok(vfs)) if vfs.blocks_avail.saturating_mul(vfs.fragment_size.max(1)) < len.max(1) => {
            StorageError::NoSpace { what: what.to_string() }
        }
        Ok(Err(russh_sftp::client::error::Error::Status(st))) if mentions_no_space(&st.error_message) => {
            StorageError::NoSpace { what: what.to_string() }
        }
        _ => e,
    }
}
