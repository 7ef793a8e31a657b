//! The pack journal: a local, append-only list of the packs this client stored that no index
//! object names yet, so that a backup interrupted between two index checkpoints (kill -9,
//! power cut, dropped link) does not upload those packs again when it is rerun.
//!
//! The journal lives in the repository's cache directory (`pack-journal`) and is never
//! uploaded. Layout (docs/FORMAT.md §12.1): the header line `offsite pack journal 1\n`, then one
//! record per pack: `u32 LE length ‖ SHA-256(body) ‖ body`, where the body is the pack's index
//! entry as JSON ([`IndexPack`], exactly what an index object would hold). A record is appended
//! before the pack's upload starts (so every pack the storage may hold is listed); after an
//! index checkpoint the journal is rewritten with the packs still unnamed.
//!
//! Reading stops at the first record that is short or fails its checksum (a torn append), so a
//! damaged journal costs re-uploads, never a wrong index entry. A recovered pack is used only
//! if the storage still holds an object of that name and size ([`crate::BlobWriter`] checks),
//! and its blobs are authenticated when read, like every pack's.
//!
//! One process uses a journal at a time: it holds an exclusive lock on the file. A second
//! concurrent backup through the same cache runs without one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use offsite_format::IndexPack;

use crate::error::{RepoError, RepoResult};

/// The journal's file name in the repository's cache directory.
pub const JOURNAL_FILE: &str = "pack-journal";
const HEADER: &[u8] = b"offsite pack journal 1\n";
/// Records above this are not believed (a pack entry is a few KiB; 64 MiB is far above any).
const MAX_RECORD: usize = 64 << 20;

/// A local, locked, append-only file of checksummed records after a header line: the frame of
/// the pack journal, and of the engine's bundle log. Record: `u32 LE length ‖ SHA-256(body) ‖
/// body`. Appends are single unsynced `write` calls: a lost or torn record is only work done
/// again, and reading stops at the first record that is short or fails its checksum.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    header: &'static [u8],
    /// the file, locked (`flock`) until dropped
    file: Flock<File>,
}

impl RecordLog {
    /// Open (or create) the log at `path` with this header line and lock it. Returns the log
    /// and the bodies of its intact records (none if the header differs), or `None` when
    /// another process holds it. The file is left as read: call [`RecordLog::rewrite`] to
    /// keep only some records.
    pub fn open(path: &Path, header: &'static [u8]) -> RepoResult<Option<(RecordLog, Vec<Vec<u8>>)>> {
        let err = |source| RepoError::Cache { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(err(e.into())),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(err)?;
        let bodies = decode_records(&bytes, header).into_iter().map(<[u8]>::to_vec).collect();
        Ok(Some((RecordLog { path: path.to_path_buf(), header, file }, bodies)))
    }

    /// Append one record.
    pub fn append(&mut self, body: &[u8]) -> RepoResult<()> {
        let record = encode_record(body);
        self.file.seek(SeekFrom::End(0)).and_then(|_| self.file.write_all(&record)).map_err(|e| self.err(e))
    }

    /// Replace the log's records with these.
    pub fn rewrite<'b>(&mut self, bodies: impl IntoIterator<Item = &'b [u8]>) -> RepoResult<()> {
        let mut bytes = self.header.to_vec();
        for b in bodies {
            bytes.extend_from_slice(&encode_record(b));
        }
        let f = &mut self.file;
        f.set_len(0)
            .and_then(|_| f.seek(SeekFrom::Start(0)))
            .and_then(|_| f.write_all(&bytes))
            .map_err(|e| self.err(e))
    }

    fn err(&self, source: std::io::Error) -> RepoError {
        RepoError::Cache { path: self.path.display().to_string(), source }
    }
}

fn encode_record(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 32 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&offsite_crypto::sha256(body));
    out.extend_from_slice(body);
    out
}

/// The record bodies of a log's bytes, up to the first damaged or torn record. A file without
/// the header (empty, or another format) has none.
fn decode_records<'b>(bytes: &'b [u8], header: &[u8]) -> Vec<&'b [u8]> {
    let mut out = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(header) else {
        return out;
    };
    while rest.len() >= 36 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_RECORD || rest.len() - 36 < len {
            break;
        }
        let (sum, body) = (&rest[4..36], &rest[36..36 + len]);
        if offsite_crypto::sha256(body) != sum {
            break;
        }
        out.push(body);
        rest = &rest[36 + len..];
    }
    out
}

/// An open, locked pack journal.
#[derive(Debug)]
pub struct PackJournal(RecordLog);

impl PackJournal {
    /// Open (or create) the journal at `path` and lock it. Returns the journal and the packs it
    /// lists, or `None` when another process holds it.
    pub fn open(path: &Path) -> RepoResult<Option<(PackJournal, Vec<IndexPack>)>> {
        let Some((log, bodies)) = RecordLog::open(path, HEADER)? else { return Ok(None) };
        let packs = parse(bodies.iter().map(Vec::as_slice));
        let mut journal = PackJournal(log);
        journal.rewrite(&packs)?;
        Ok(Some((journal, packs)))
    }

    /// Add a stored pack. The record is written with one `write` call and not synced: a lost
    /// or torn record only means the pack is uploaded again.
    pub fn append(&mut self, pack: &IndexPack) -> RepoResult<()> {
        self.0.append(&serde_json::to_vec(pack).unwrap_or_default())
    }

    /// Replace the journal's contents with these packs (after an index object named the rest).
    pub fn rewrite(&mut self, packs: &[IndexPack]) -> RepoResult<()> {
        let bodies: Vec<Vec<u8>> = packs.iter().map(|p| serde_json::to_vec(p).unwrap_or_default()).collect();
        self.0.rewrite(bodies.iter().map(Vec::as_slice))
    }
}

/// The packs of record bodies, up to the first that is not a pack entry.
fn parse<'b>(bodies: impl IntoIterator<Item = &'b [u8]>) -> Vec<IndexPack> {
    bodies.into_iter().map_while(|b| serde_json::from_slice::<IndexPack>(b).ok()).collect()
}

/// The packs of a journal's bytes, up to the first damaged or torn record. A file without the
/// header (empty, or another format) lists nothing.
#[cfg(test)]
fn decode(bytes: &[u8]) -> Vec<IndexPack> {
    parse(decode_records(bytes, HEADER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_format::{BlobId, BlobType, PackEntry, PackId};

    fn pack(n: u8) -> IndexPack {
        IndexPack {
            id: PackId([n; 32]),
            eph: [n ^ 0xff; 32],
            size: 1000 + u64::from(n),
            blobs: vec![PackEntry {
                id: BlobId([n; 32]),
                ty: BlobType::Data,
                offset: 0,
                length: 100,
                raw_length: 90,
                nonce: 0,
            }],
        }
    }

    #[test]
    fn appended_packs_are_listed_by_the_next_open_and_a_rewrite_replaces_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c").join(JOURNAL_FILE);
        let (mut j, packs) = PackJournal::open(&path).expect("open").expect("not locked");
        assert!(packs.is_empty());
        j.append(&pack(1)).expect("append");
        j.append(&pack(2)).expect("append");
        drop(j);
        let (mut j, packs) = PackJournal::open(&path).expect("open").expect("not locked");
        assert_eq!(packs, [pack(1), pack(2)]);
        j.rewrite(&[pack(2)]).expect("rewrite");
        j.append(&pack(3)).expect("append");
        drop(j);
        let (_, packs) = PackJournal::open(&path).expect("open").expect("not locked");
        assert_eq!(packs, [pack(2), pack(3)]);
    }

    #[test]
    fn a_second_open_while_one_holds_the_journal_gets_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL_FILE);
        let (mut held, _) = PackJournal::open(&path).expect("open").expect("not locked");
        held.append(&pack(1)).expect("append");
        assert!(PackJournal::open(&path).expect("open").is_none());
        drop(held);
        assert_eq!(PackJournal::open(&path).expect("open").expect("free again").1, [pack(1)]);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_list_and_nothing_after_it_is_believed() {
        let mut bytes = HEADER.to_vec();
        for n in 1..=3 {
            bytes.extend_from_slice(&encode_record(&serde_json::to_vec(&pack(n)).unwrap_or_default()));
        }
        assert_eq!(decode(&bytes).len(), 3);
        // Every truncation keeps exactly the whole records before the cut.
        let ends: Vec<usize> = (1..=3)
            .scan(HEADER.len(), |at, n| {
                *at += encode_record(&serde_json::to_vec(&pack(n)).unwrap_or_default()).len();
                Some(*at)
            })
            .collect();
        for cut in 0..bytes.len() {
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(
                decode(&bytes[..cut]),
                (1..=whole as u8).map(pack).collect::<Vec<_>>(),
                "cut at {cut}"
            );
        }
        // A flipped byte in the second record drops it and the third.
        let mut flipped = bytes.clone();
        flipped[ends[0] + 40] ^= 1;
        assert_eq!(decode(&flipped), [pack(1)]);
        // Another file format lists nothing.
        assert!(decode(b"not a journal").is_empty());
    }
}
