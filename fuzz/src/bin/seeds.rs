//! Writes `seeds/<target>/<name>`: small valid encodings made by offsite's own encoders, laid
//! out as each harness in `src/lib.rs` reads its input, so the fuzzer starts from valid objects.
//!
//! Run from `fuzz/`: `cargo run --release --bin seeds`. Then e.g.
//! `cargo fuzz run record corpus/record seeds/record`.

use std::path::Path;

use offsite_format::{
    compress_payload, create_keyfile, seal_record, BlobId, BlobType, ChunkerSizes, Config, ContentItem,
    ForgetRecord, IndexFile, IndexPack, Lock, Node, NodeKind, PackBuilder, RawBytes, RecordType, RepoId,
    Snapshot, SnapshotId, Summary, Tree, Xattr,
};
use offsite_fuzz::{cheap_kdf, keys, PASSPHRASE};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create seeds dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: RawBytes(name.as_bytes().to_vec()),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: Some("u".into()),
        group: None,
        mtime: (1_763_000_000, 5),
        size: 0,
        inode: 0,
        dev: 0,
        links: 0,
        rdev: None,
        target: None,
        xattrs: vec![],
        content: None,
        subtree: None,
    }
}

fn tree() -> Tree {
    let mut file = node("a.txt", NodeKind::File);
    file.size = 4100;
    file.content = Some(vec![
        ContentItem::Blob(BlobId([1; 32])),
        ContentItem::Hole { hole: 4096 },
        ContentItem::Slice { bundle: BlobId([3; 32]), offset: 70_000, length: 4, id: BlobId([6; 32]) },
    ]);
    file.xattrs = vec![Xattr { name: RawBytes(b"user.x".to_vec()), value: RawBytes(vec![0, 255]) }];
    file.inode = 12;
    file.dev = 2049;
    file.links = 2;
    let mut dir = node("d", NodeKind::Dir);
    dir.subtree = Some(BlobId([2; 32]));
    let mut link = node("l", NodeKind::Symlink);
    link.target = Some(RawBytes(b"../a.txt".to_vec()));
    let mut dev = node("tty", NodeKind::Chardev);
    dev.rdev = Some(0x0501);
    Tree { nodes: vec![file, dir, link, dev, node("p", NodeKind::Fifo)] }
}

fn repo() -> RepoId {
    RepoId([1; 32])
}

fn config() -> Config {
    Config {
        version: 2,
        id: repo(),
        public_key: [8; 32],
        key_commitment: [4; 32],
        created: "2026-11-22T10:00:00Z".into(),
        chunker: ChunkerSizes { min: 524_288, avg: 1_048_576, max: 8_388_608 },
        compression: 3,
        pack_size: 16_777_216,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        version: 2,
        repository: repo(),
        time: "2026-11-22T10:00:00.123456789Z".into(),
        host: "h".into(),
        user: "u".into(),
        paths: vec![RawBytes(b"/home/u".to_vec())],
        tags: vec!["daily".into()],
        tree: BlobId([3; 32]),
        parent: Some(SnapshotId([4; 32])),
        seen: vec![SnapshotId([4; 32])],
        summary: Summary { files_new: 1, bytes_read: 10, ..Summary::default() },
        program: "offsite 0.1.0".into(),
    }
}

fn forget() -> ForgetRecord {
    ForgetRecord {
        version: 2,
        repository: repo(),
        time: "2026-11-22T10:00:00Z".into(),
        removed: vec![SnapshotId([4; 32])],
    }
}

fn lock() -> Lock {
    Lock {
        version: 2,
        repository: repo(),
        time: "2026-11-22T10:00:00Z".into(),
        host: "h".into(),
        pid: 42,
        exclusive: true,
    }
}

/// A pack of `n` small blobs of type `ty` (compressible and raw), and its index record.
fn pack(ty: BlobType, n: u32) -> (Vec<u8>, IndexFile) {
    let k = keys();
    let mut b = PackBuilder::new(&k.public_key());
    for i in 0..n {
        let data = if i % 2 == 0 { format!("blob {i} ").repeat(40).into_bytes() } else { vec![i as u8; 3] };
        b.add(ty, BlobId(k.blob_id(&data)), compress_payload(&data, 3), data.len() as u32);
    }
    let p = b.finish();
    let idx = IndexFile {
        packs: vec![IndexPack { id: p.id, eph: p.eph, size: p.bytes.len() as u64, blobs: p.entries.clone() }],
        supersedes: vec![],
    };
    (p.bytes, idx)
}

fn main() {
    let k = keys();
    let records: [(RecordType, Vec<u8>); 5] = [
        (RecordType::Config, json(&config())),
        (RecordType::Index, json(&pack(BlobType::Data, 3).1)),
        (RecordType::Snapshot, json(&snapshot())),
        (RecordType::ForgetRecord, json(&forget())),
        (RecordType::Lock, json(&lock())),
    ];
    for (i, (ty, j)) in records.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_slice(j).expect("own JSON parses");
        write("record", ty.name().replace(' ', "_").as_str(), &seal_record(*ty, k, &value));
        let sel = [0u8, 1, 2, 3, 4][i];
        write(
            "record_plaintext",
            &format!("{}_json", ty.name().replace(' ', "_")),
            &[&[sel][..], j].concat(),
        );
        // Bit 3: the rest is the record body as stored inside the AEAD: length, zstd frame.
        let z = offsite_fuzz::framed(&zstd::bulk::compress(j, 3).expect("zstd"));
        write(
            "record_plaintext",
            &format!("{}_zstd", ty.name().replace(' ', "_")),
            &[&[sel | 8][..], &z].concat(),
        );
    }
    write("snapshot_json", "snapshot", &json(&snapshot()));
    write("snapshot_json", "config", &json(&config()));
    write("snapshot_json", "forget", &json(&forget()));
    write("snapshot_json", "lock", &json(&lock()));
    write("tree_json", "tree", &json(&tree()));
    write("tree_json", "empty", b"{\"nodes\":[]}");

    let (data_pack, data_idx) = pack(BlobType::Data, 3);
    let (tree_pack, tree_idx) = pack(BlobType::Tree, 1);
    let (bundle_pack, bundle_idx) = pack(BlobType::Bundle, 2);
    write("pack", "data", &data_pack);
    write("pack", "tree", &tree_pack);
    write("pack", "bundle", &bundle_pack);
    write("index_json", "data", &json(&data_idx));
    write("index_json", "tree", &json(&tree_idx));
    write("index_json", "bundle", &json(&bundle_idx));

    // Header plaintexts: blob area length, count, entries, zero padding (as PackBuilder lays out).
    for (name, idx) in [("data", &data_idx), ("tree", &tree_idx), ("bundle", &bundle_idx)] {
        let entries = &idx.packs[0].blobs;
        let area: u32 = entries.iter().map(|e| e.length).sum();
        let mut h = area.to_le_bytes().to_vec();
        h.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            h.push(match e.ty {
                BlobType::Data => 0,
                BlobType::Tree => 1,
                BlobType::Bundle => 2,
            });
            h.extend_from_slice(&e.id.0);
            for v in [e.offset, e.length, e.raw_length, e.nonce] {
                h.extend_from_slice(&v.to_le_bytes());
            }
        }
        h.resize(4 + offsite_format::padme(h.len() as u64 - 4) as usize, 0);
        write("pack_header_plaintext", name, &h);
    }

    // Blobs: flags (bit 1 seal, bit 2 id of the payload after its flag, bit 4 bundle), raw length,
    // nonce, payload.
    let text = b"hello hello hello hello hello hello hello hello".repeat(20);
    for (name, flags, payload) in [
        ("raw", 6u8, compress_payload(b"raw bytes", 0)),
        ("zstd", 2u8, compress_payload(&text, 3)),
        ("tree_raw", 7u8, compress_payload(b"{\"nodes\":[]}", 0)),
        ("bundle_zstd", 18u8, compress_payload(&text, 3)),
    ] {
        let raw = if name.ends_with("zstd") { text.len() } else { payload.len() - 1 } as u32;
        let mut b = vec![flags];
        b.extend_from_slice(&raw.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&payload);
        write("blob", name, &b);
    }

    for (name, raw, payload) in
        [("zstd", text.len() as u32, compress_payload(&text, 3)), ("raw", 5, compress_payload(b"12345", 0))]
    {
        write("payload", name, &[&raw.to_le_bytes()[..], &payload].concat());
    }

    let full = k.to_bytes().to_vec();
    let bo = k.to_backup_only().to_bytes().to_vec();
    write("keyset", "full", &full);
    write("keyset", "backup_only", &bo);
    let kf = create_keyfile(k, repo(), PASSPHRASE, &cheap_kdf(), "2026-11-22T10:00:00Z").expect("cheap KDF");
    write("keyfile", "full_file", &[&[0u8][..], &kf].concat());
    let kf_bo = create_keyfile(&k.to_backup_only(), repo(), PASSPHRASE, &cheap_kdf(), "2026-11-22T10:00:00Z")
        .expect("cheap KDF");
    write("keyfile", "backup_only_file", &[&[0u8][..], &kf_bo].concat());
    write("keyfile", "full_secret", &[&[1u8][..], &full].concat());
    write("keyfile", "backup_only_secret", &[&[3u8][..], &bo].concat());

    for s in [
        "latest",
        "latest~2",
        "2026-11-01",
        "2026-11-01T08:59",
        "2026-11-10T12:00:00Z",
        "10D",
        "3W",
        "5M",
        "1y",
        "ab12",
    ] {
        write("selector", &s.replace(['~', ':'], "_"), s.as_bytes());
    }

    units_seeds();
    exclude_seeds();
    chunker_seeds();
}

/// Sizes, durations, percentages and a time, as typed on the command line.
fn units_seeds() {
    for (name, s) in [
        ("bytes", "1234"),
        ("kib", "500K"),
        ("mib", " 10 MiB "),
        ("gb", "2GB"),
        ("t_max", "16777215T"),
        ("u64_max", "18446744073709551615"),
        ("ms", "500ms"),
        ("s", "30s"),
        ("m", "10m"),
        ("h", "2h"),
        ("ms_max", "18446744073709551615ms"),
        ("percent", "10%"),
        ("fraction", "2.5"),
        ("time", "2026-11-22T10:00:00.123456789Z"),
        // Regression: a bare `iB` used to parse as bytes.
        ("crash_bare_ib", "5iB "),
    ] {
        write("units", name, s.as_bytes());
    }
}

/// Pattern lines, an empty line, then paths (see `offsite_fuzz::exclude`).
fn exclude_seeds() {
    for (name, s) in [
        ("plain", "/home/u/x.txt\n\n/home/u/x.txt\n/home/u/x.txt/y\n/home/u\n/x/home/u/x.txt\nhome/u/x.txt"),
        (
            "globs",
            concat!(
                "*.tmp\n!keep.tmp\n/var/**/log/\n/home/*/Downloads/\n**/target\n\n",
                "/a/b.tmp\n/a/keep.tmp\n/var/x/y/log\n/home/u/Downloads\n/w/target/x",
            ),
        ),
        ("classes", "/data/[a-c]?/*.{jpg,png}\n\\#literal\n\\!bang\n\n/data/b1/x.png\n/#literal\n/!bang"),
        ("invalid", "/a/[b\n/c/{d\n\n/a/[b"),
        ("bytes", "/a/\u{e9}\n\n/a/\u{e9}\n/a/\u{fffd}"),
    ] {
        write("exclude", name, s.as_bytes());
    }
    // A path that is not UTF-8.
    write("exclude", "latin1", b"/a/*\n\n/a/\xe9\n/a/\xff\xfe");
}

/// Deterministic pseudorandom bytes (xorshift64).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Header (avg, min, max, key, four read sizes; see `offsite_fuzz::chunker`) then data.
fn chunker_seeds() {
    let text = b"offsite chunks this text; ".repeat(400);
    for (name, header, data) in [
        ("avg64", [0u8, 0, 0, 7, 1, 200, 0, 33], noise(12_000, 1)),
        ("avg256", [2, 60, 40, 7, 130, 3, 255, 64], noise(12_000, 2)),
        ("avg1k", [4, 128, 128, 9, 255, 128, 1, 0], noise(12_000, 3)),
        ("avg4k", [6, 10, 0, 7, 17, 129, 250, 99], noise(16_000, 4)),
        ("min_eq_avg", [3, 255, 255, 1, 64, 64, 64, 64], noise(8_000, 5)),
        ("zeros", [2, 20, 50, 7, 100, 1, 200, 0], vec![0; 12_000]),
        ("text", [3, 0, 80, 7, 90, 140, 5, 0], text),
    ] {
        write("chunker", name, &[&header[..], &data].concat());
    }
}

/// Compact JSON of a record.
fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}
