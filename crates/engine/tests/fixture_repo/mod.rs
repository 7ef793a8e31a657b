//! Repositories built by hand for the check and browse tests: files given by absolute path are
//! stored as data blobs (32 KiB chunks, incompressible), directories built bottom-up as tree
//! blobs, and a snapshot saved over them. Bundles (small files end to end, random ids) are
//! stored with [`Fixture::bundle`] and named by [`raw_file`] nodes.
#![allow(dead_code, clippy::unwrap_used)]

#[path = "../slice_ids/mod.rs"]
mod slice_ids;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use offsite_backend::layers::CountingStorage;
use offsite_backend::{LocalStorage, ObjectKind, Storage};
use offsite_format::{
    BlobId, BlobType, ContentItem, Node, NodeKind, RawBytes, Snapshot, SnapshotId, Summary, Tree,
};
use offsite_repo::{BlobReader, BlobWriter, CacheSetting, Index, InitOptions, Repository, WriterOptions};
use slice_ids::{register, slice_id};

pub const CHUNK: usize = 32 * 1024;

/// A repository in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub counting: Arc<CountingStorage<LocalStorage>>,
    pub repo: Arc<Repository>,
}

/// One piece of a file.
#[derive(Clone, Debug)]
pub enum Piece {
    Data(Vec<u8>),
    Hole(u64),
}

/// What a path holds. Directories leading to a path are made implicitly.
#[derive(Clone, Debug)]
pub enum Spec {
    File {
        pieces: Vec<Piece>,
        mode: u32,
        mtime: i64,
    },
    Symlink(Vec<u8>),
    EmptyDir,
    /// a node written as given (bad names, wrong sizes)
    Raw(Box<Node>),
}

/// A regular file with this content, mode 0644.
pub fn file(data: &[u8]) -> Spec {
    Spec::File { pieces: vec![Piece::Data(data.to_vec())], mode: 0o644, mtime: 1_700_000_000 }
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

pub fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: RawBytes(name.to_vec()),
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
        uid: 1000,
        gid: 1000,
        user: None,
        group: None,
        mtime: (1_700_000_000, 0),
        size: 0,
        inode: 0,
        dev: 0,
        links: 0,
        rdev: None,
        target: None,
        xattrs: Vec::new(),
        content: None,
        subtree: None,
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(CountingStorage::new(LocalStorage::new(dir.path().join("repo"))));
        let opts = InitOptions {
            kdf: offsite_crypto::KdfParams::for_tests(),
            pack_size: 64 * 1024,
            ..Default::default()
        };
        let repo = Repository::init(counting.clone(), b"pw", &opts, &CacheSetting::Disabled).unwrap();
        Fixture { dir, counting, repo: Arc::new(repo) }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Where an object is on disk.
    pub fn object_path(&self, kind: ObjectKind, id: &str) -> PathBuf {
        self.root().join(kind.relative_path(id))
    }

    pub fn index(&self) -> Arc<Index> {
        Arc::new(Index::load(&**self.repo.storage(), self.repo.keys()).unwrap())
    }

    pub fn reader(&self) -> BlobReader {
        BlobReader::new(self.repo.clone(), self.index()).unwrap()
    }

    /// Store the entries and save a snapshot (at `time`) naming every snapshot listed now.
    pub fn snapshot(&self, time: &str, entries: &[(&str, Spec)]) -> (SnapshotId, Snapshot) {
        let writer = BlobWriter::new(self.repo.clone(), self.index(), WriterOptions::default());
        let mut root = Dir::default();
        for (path, spec) in entries {
            let comps: Vec<&[u8]> = path.as_bytes().split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
            root.insert(&comps, spec.clone());
        }
        let tree = root.store(&writer);
        writer.finish().unwrap();
        let seen = self.repo.snapshot_set().unwrap().ids;
        let snap = Snapshot {
            version: 1,
            repository: self.repo.config().id,
            time: time.to_string(),
            host: "host".into(),
            user: "u".into(),
            paths: vec![RawBytes(b"/home/u".to_vec())],
            tags: vec![],
            tree,
            parent: None,
            seen,
            summary: Summary::default(),
            program: "test".into(),
        };
        let id = self.repo.save_snapshot(&snap).unwrap();
        (id, snap)
    }

    /// Store `data` as a bundle blob under a fresh random id (in a pack of its own) and return
    /// the id.
    pub fn bundle(&self, data: &[u8]) -> BlobId {
        let id = BlobId(offsite_crypto::random_bytes::<32>());
        let writer = BlobWriter::new(self.repo.clone(), self.index(), WriterOptions::default());
        writer.add_bundle(id, data).unwrap();
        writer.finish().unwrap();
        register(id, self.repo.keys(), data);
        id
    }

    /// Flip one bit of a stored object at `offset` (negative: from the end).
    pub fn flip(&self, kind: ObjectKind, id: &str, offset: i64) {
        flip_file(&self.object_path(kind, id), offset);
    }

    /// Ids of stored objects of a kind, sorted.
    pub fn list(&self, kind: ObjectKind) -> Vec<String> {
        let mut v: Vec<String> =
            self.repo.storage().list(kind).unwrap().into_iter().map(|(i, _)| i).collect();
        v.sort();
        v
    }

    /// The pack (hex id) and entry holding a blob.
    pub fn locate(&self, blob: &BlobId) -> (String, offsite_format::PackEntry) {
        let index = self.index();
        let loc = index.get(blob).unwrap();
        (index.pack(loc.pack).id.to_hex(), loc.entry)
    }
}

pub fn flip_file(path: &Path, offset: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = if offset < 0 { bytes.len() - offset.unsigned_abs() as usize } else { offset as usize };
    bytes[at] ^= 0x01;
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[derive(Default)]
struct Dir {
    children: BTreeMap<Vec<u8>, Child>,
}

enum Child {
    Leaf(Spec),
    Dir(Dir),
}

impl Dir {
    fn insert(&mut self, comps: &[&[u8]], spec: Spec) {
        match comps {
            [] => {}
            [name] => {
                if let Spec::EmptyDir = spec {
                    self.children.entry(name.to_vec()).or_insert_with(|| Child::Dir(Dir::default()));
                } else {
                    self.children.insert(name.to_vec(), Child::Leaf(spec));
                }
            }
            [name, rest @ ..] => {
                let child = self.children.entry(name.to_vec()).or_insert_with(|| Child::Dir(Dir::default()));
                match child {
                    Child::Dir(d) => d.insert(rest, spec),
                    Child::Leaf(_) => panic!("{:?} is a file", String::from_utf8_lossy(name)),
                }
            }
        }
    }

    fn store(&self, w: &BlobWriter) -> BlobId {
        let mut nodes = Vec::new();
        for (name, child) in &self.children {
            nodes.push(match child {
                Child::Dir(d) => {
                    let mut n = node(name, NodeKind::Dir);
                    n.subtree = Some(d.store(w));
                    n
                }
                Child::Leaf(Spec::Raw(n)) => (**n).clone(),
                Child::Leaf(Spec::Symlink(t)) => {
                    let mut n = node(name, NodeKind::Symlink);
                    n.mode = 0o777;
                    n.target = Some(RawBytes(t.clone()));
                    n
                }
                Child::Leaf(Spec::EmptyDir) => unreachable!("empty dirs are stored as Dir"),
                Child::Leaf(Spec::File { pieces, mode, mtime }) => {
                    let mut n = node(name, NodeKind::File);
                    n.mode = *mode;
                    n.mtime = (*mtime, 0);
                    let mut content = Vec::new();
                    for p in pieces {
                        match p {
                            Piece::Hole(h) => {
                                content.push(ContentItem::Hole { hole: *h });
                                n.size += h;
                            }
                            Piece::Data(d) => {
                                for chunk in d.chunks(CHUNK) {
                                    let (id, _) = w.add(BlobType::Data, chunk).unwrap();
                                    content.push(ContentItem::Blob(id));
                                }
                                n.size += d.len() as u64;
                            }
                        }
                    }
                    n.content = Some(content);
                    n
                }
            });
        }
        let tree = Tree { nodes };
        w.add(BlobType::Tree, &serde_json::to_vec(&tree).unwrap()).unwrap().0
    }
}

/// A file named `name` of `size` bytes with exactly this content list (slices, blobs, holes).
pub fn raw_file(name: &[u8], size: u64, content: Vec<ContentItem>) -> Spec {
    let mut n = node(name, NodeKind::File);
    n.size = size;
    n.content = Some(content);
    Spec::Raw(Box::new(n))
}

/// A slice of `length` bytes at `offset` in `bundle`, with the keyed id of those bytes when
/// the bundle was stored by [`Fixture::bundle`] (else an id no bytes have).
pub fn slice(bundle: BlobId, offset: u32, length: u32) -> ContentItem {
    ContentItem::Slice { bundle, offset, length, id: slice_id(bundle, offset.into(), length.into()) }
}

/// The content blob ids (data blobs and bundles) of the file at `path`.
pub fn blobs_of(reader: &BlobReader, snap: &Snapshot, path: &[u8]) -> Vec<BlobId> {
    let n = offsite_engine::find_node(reader, snap, path).unwrap();
    n.content
        .unwrap()
        .into_iter()
        .filter_map(|c| match c {
            ContentItem::Blob(b) | ContentItem::Slice { bundle: b, .. } => Some(b),
            ContentItem::Hole { .. } => None,
        })
        .collect()
}

/// The subtree id of the directory at `path`.
pub fn tree_of(reader: &BlobReader, snap: &Snapshot, path: &[u8]) -> BlobId {
    offsite_engine::find_node(reader, snap, path).unwrap().subtree.unwrap()
}
