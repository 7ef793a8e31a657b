//! The behaviour every [`Storage`] backend must show, as a suite each backend's tests run.
//!
//! This is test code shipped in the library so that every backend crate or module (local
//! files, SFTP, S3, REST) runs the same checks: call [`run_all`] with a function that
//! returns a fresh, empty, *not yet created* storage each time. A failed check panics with
//! the check's name, the storage location and what was wrong.
//!
//! Stray files (temp files, foreign names) cannot be made through the trait, so
//! [`stray_files_are_not_listed`] takes a backend-specific way to plant them and is called
//! separately.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::kind::ObjectKind;
use crate::storage::Storage;

/// Makes a fresh, empty storage for one check.
pub type MakeStorage<'a> = &'a dyn Fn() -> Box<dyn Storage>;

/// The id of `data`: lowercase hex SHA-256, as the repository names objects.
pub fn id_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn fail(check: &str, s: &dyn Storage, msg: std::fmt::Arguments<'_>) -> ! {
    panic!("storage conformance check `{check}` failed on {}: {msg}", s.location())
}

macro_rules! ensure {
    ($cond:expr, $check:expr, $s:expr, $($msg:tt)+) => {
        if !$cond {
            fail($check, $s, format_args!($($msg)+));
        }
    };
}

/// Unwrap a result the check needs, failing the check with the error otherwise.
fn ok<T>(r: Result<T, StorageError>, check: &str, s: &dyn Storage, doing: &str) -> T {
    r.unwrap_or_else(|e| fail(check, s, format_args!("{doing}: unexpected error: {e}")))
}

fn created(make: MakeStorage<'_>, check: &str) -> Box<dyn Storage> {
    let s = make();
    ok(s.create(), check, &*s, "create");
    s
}

/// Run every check below, each on a fresh storage from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Storage>) {
    create_refuses_existing_config(make);
    round_trip_every_kind(make);
    range_reads(make);
    write_never_overwrites(make);
    stat_reports_size(make);
    delete_removes(make);
    list_many_objects(make);
    config_round_trip(make);
    invalid_ids_rejected(make);
    concurrent_writers(make);
}

/// `create` on a repository that has a config fails with AlreadyExists.
pub fn create_refuses_existing_config(make: MakeStorage<'_>) {
    const C: &str = "create_refuses_existing_config";
    let s = created(make, C);
    ok(s.write(ObjectKind::Config, "", b"config v1"), C, &*s, "write config");
    let r = s.create();
    ensure!(
        matches!(r, Err(StorageError::AlreadyExists { .. })),
        C,
        &*s,
        "second create returned {r:?}, expected AlreadyExists"
    );
}

/// Every kind stores and returns bytes unchanged, and kinds do not see each other's objects.
pub fn round_trip_every_kind(make: MakeStorage<'_>) {
    const C: &str = "round_trip_every_kind";
    let s = created(make, C);
    for (i, kind) in ObjectKind::ALL.into_iter().enumerate().skip(1) {
        let data: Vec<u8> = (0..1000 + i).map(|b| (b * 7 + i) as u8).collect();
        let id = id_of(&data);
        ok(s.write(kind, &id, &data), C, &*s, "write");
        let back = ok(s.read(kind, &id, None), C, &*s, "read");
        ensure!(back == data, C, &*s, "{kind:?} object read back differs");
        let listed = ok(s.list(kind), C, &*s, "list");
        ensure!(
            listed == vec![(id.clone(), data.len() as u64)],
            C,
            &*s,
            "list({kind:?}) returned {listed:?}, expected only the object just written"
        );
    }
    let empty = id_of(b"");
    ok(s.write(ObjectKind::Index, &empty, b""), C, &*s, "write empty");
    let back = ok(s.read(ObjectKind::Index, &empty, None), C, &*s, "read empty");
    ensure!(back.is_empty(), C, &*s, "empty object read back as {back:?}");
}

/// Ranges at the start, in the middle and ending exactly at the end return those bytes; a
/// range past the end is an error, not a short answer.
pub fn range_reads(make: MakeStorage<'_>) {
    const C: &str = "range_reads";
    let s = created(make, C);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let id = id_of(&data);
    ok(s.write(ObjectKind::Data, &id, &data), C, &*s, "write");
    for (start, len) in [(0u64, 10u64), (500, 100), (990, 10), (0, 1000), (999, 1)] {
        let got = ok(s.read(ObjectKind::Data, &id, Some((start, len))), C, &*s, "range read");
        let want = &data[start as usize..(start + len) as usize];
        ensure!(
            got == want,
            C,
            &*s,
            "range ({start}, {len}) returned {} bytes that differ from the object's",
            got.len()
        );
    }
    for (start, len) in [(995u64, 10u64), (1000, 1), (2000, 5), (u64::MAX, 2)] {
        let r = s.read(ObjectKind::Data, &id, Some((start, len)));
        ensure!(
            matches!(&r, Err(e) if !e.is_transient() && !e.is_not_found()),
            C,
            &*s,
            "range ({start}, {len}) past the end of a 1000-byte object returned {:?}, expected a permanent error",
            r.map(|v| v.len())
        );
    }
}

/// Writing an existing name fails with AlreadyExists and keeps the stored bytes.
pub fn write_never_overwrites(make: MakeStorage<'_>) {
    const C: &str = "write_never_overwrites";
    let s = created(make, C);
    let data = b"first version".to_vec();
    let id = id_of(&data);
    ok(s.write(ObjectKind::Snapshot, &id, &data), C, &*s, "write");
    let r = s.write(ObjectKind::Snapshot, &id, &data);
    ensure!(
        matches!(r, Err(StorageError::AlreadyExists { .. })),
        C,
        &*s,
        "second write of a snapshot returned {r:?}, expected AlreadyExists"
    );
    // Config is not content-addressed, so a different body under the same name is legal to
    // attempt; it must not replace the first.
    ok(s.write(ObjectKind::Config, "", b"config one"), C, &*s, "write config");
    let r = s.write(ObjectKind::Config, "", b"config two, longer");
    ensure!(
        matches!(r, Err(StorageError::AlreadyExists { .. })),
        C,
        &*s,
        "overwriting config returned {r:?}, expected AlreadyExists"
    );
    let back = ok(s.read(ObjectKind::Config, "", None), C, &*s, "read config");
    ensure!(back == b"config one", C, &*s, "config was replaced");
    let back = ok(s.read(ObjectKind::Snapshot, &id, None), C, &*s, "read");
    ensure!(back == data, C, &*s, "snapshot changed after refused write");
}

/// `stat` gives the size of an object and NotFound for a missing one.
pub fn stat_reports_size(make: MakeStorage<'_>) {
    const C: &str = "stat_reports_size";
    let s = created(make, C);
    let data = vec![42u8; 12345];
    let id = id_of(&data);
    let r = s.stat(ObjectKind::Data, &id);
    ensure!(matches!(&r, Err(e) if e.is_not_found()), C, &*s, "stat of a missing object returned {r:?}");
    ok(s.write(ObjectKind::Data, &id, &data), C, &*s, "write");
    let size = ok(s.stat(ObjectKind::Data, &id), C, &*s, "stat");
    ensure!(size == 12345, C, &*s, "stat returned {size}, expected 12345");
}

/// After `delete` the object is gone from read, stat and list; deleting it again is
/// NotFound.
pub fn delete_removes(make: MakeStorage<'_>) {
    const C: &str = "delete_removes";
    let s = created(make, C);
    let data = b"lock".to_vec();
    let id = id_of(&data);
    ok(s.write(ObjectKind::Lock, &id, &data), C, &*s, "write");
    ok(s.delete(ObjectKind::Lock, &id), C, &*s, "delete");
    let r = s.read(ObjectKind::Lock, &id, None);
    ensure!(
        matches!(&r, Err(e) if e.is_not_found()),
        C,
        &*s,
        "read after delete returned {:?}, expected NotFound",
        r.map(|v| v.len())
    );
    let r = s.stat(ObjectKind::Lock, &id);
    ensure!(matches!(&r, Err(e) if e.is_not_found()), C, &*s, "stat after delete: {r:?}");
    let listed = ok(s.list(ObjectKind::Lock), C, &*s, "list");
    ensure!(listed.is_empty(), C, &*s, "deleted object still listed: {listed:?}");
    let r = s.delete(ObjectKind::Lock, &id);
    ensure!(matches!(&r, Err(e) if e.is_not_found()), C, &*s, "second delete: {r:?}");
}

/// A listing of 1,100 objects (more than one page of most object stores) names each once,
/// with its size.
pub fn list_many_objects(make: MakeStorage<'_>) {
    const C: &str = "list_many_objects";
    let s = created(make, C);
    let objects: Vec<Vec<u8>> = (0..1100u32)
        .map(|i| {
            let mut v = i.to_le_bytes().to_vec();
            v.resize(4 + (i % 37) as usize, 0xa5);
            v
        })
        .collect();
    let want: HashMap<String, u64> = objects.iter().map(|o| (id_of(o), o.len() as u64)).collect();
    let s_ref: &dyn Storage = &*s;
    std::thread::scope(|scope| {
        for part in objects.chunks(138) {
            scope.spawn(move || {
                for o in part {
                    ok(s_ref.write(ObjectKind::Data, &id_of(o), o), C, s_ref, "write");
                }
            });
        }
    });
    let listed = ok(s.list(ObjectKind::Data), C, &*s, "list");
    ensure!(listed.len() == want.len(), C, &*s, "listed {} objects, expected {}", listed.len(), want.len());
    let mut seen = HashMap::new();
    for (id, size) in listed {
        ensure!(
            want.get(&id) == Some(&size),
            C,
            &*s,
            "listed {id} with size {size}, expected {:?}",
            want.get(&id)
        );
        ensure!(seen.insert(id.clone(), size).is_none(), C, &*s, "{id} listed twice");
    }
}

/// The config object (id "") round-trips, and is listed as a single entry with id "".
pub fn config_round_trip(make: MakeStorage<'_>) {
    const C: &str = "config_round_trip";
    let s = created(make, C);
    let listed = ok(s.list(ObjectKind::Config), C, &*s, "list config");
    ensure!(listed.is_empty(), C, &*s, "new repository lists a config: {listed:?}");
    let r = s.read(ObjectKind::Config, "", None);
    ensure!(
        matches!(&r, Err(e) if e.is_not_found()),
        C,
        &*s,
        "reading a missing config returned {:?}, expected NotFound",
        r.map(|v| v.len())
    );
    let body = b"{\"version\":1} (encrypted in real life)";
    ok(s.write(ObjectKind::Config, "", body), C, &*s, "write config");
    let back = ok(s.read(ObjectKind::Config, "", None), C, &*s, "read config");
    ensure!(back == body, C, &*s, "config read back differs");
    let size = ok(s.stat(ObjectKind::Config, ""), C, &*s, "stat config");
    ensure!(size == body.len() as u64, C, &*s, "config stat {size}");
    let listed = ok(s.list(ObjectKind::Config), C, &*s, "list config");
    ensure!(listed == vec![(String::new(), body.len() as u64)], C, &*s, "list(Config) returned {listed:?}");
}

/// Invalid ids are rejected with InvalidName by every method, for every kind, and nothing
/// is written.
pub fn invalid_ids_rejected(make: MakeStorage<'_>) {
    const C: &str = "invalid_ids_rejected";
    let s = created(make, C);
    let good = id_of(b"x");
    let bad_ids = [
        "../etc".to_string(),
        good.to_uppercase(),
        good[..63].to_string(),
        format!("{good}0"),
        String::new(),
        format!("../{}", &good[3..]),
    ];
    for kind in ObjectKind::ALL {
        for id in &bad_ids {
            if kind == ObjectKind::Config && id.is_empty() {
                continue;
            }
            let results = [
                ("read", s.read(kind, id, None).map(|_| ())),
                ("read range", s.read(kind, id, Some((0, 1))).map(|_| ())),
                ("write", s.write(kind, id, b"x")),
                ("delete", s.delete(kind, id)),
                ("stat", s.stat(kind, id).map(|_| ())),
            ];
            for (method, r) in results {
                ensure!(
                    matches!(r, Err(StorageError::InvalidName { .. })),
                    C,
                    &*s,
                    "{method}({kind:?}, {id:?}) returned {r:?}, expected InvalidName"
                );
            }
        }
        if kind == ObjectKind::Config {
            let r = s.write(kind, &good, b"x");
            ensure!(
                matches!(r, Err(StorageError::InvalidName { .. })),
                C,
                &*s,
                "config with a non-empty id was accepted: {r:?}"
            );
        }
        let listed = ok(s.list(kind), C, &*s, "list");
        ensure!(listed.is_empty(), C, &*s, "rejected writes left {listed:?}");
    }
}

/// Eight threads writing distinct objects at once all succeed, and every object is
/// visible afterwards.
pub fn concurrent_writers(make: MakeStorage<'_>) {
    const C: &str = "concurrent_writers";
    let s = created(make, C);
    let s_ref: &dyn Storage = &*s;
    let per_thread = 25u32;
    std::thread::scope(|scope| {
        for t in 0..8u32 {
            scope.spawn(move || {
                for i in 0..per_thread {
                    let data = format!("thread {t} object {i}").into_bytes();
                    ok(s_ref.write(ObjectKind::Index, &id_of(&data), &data), C, s_ref, "write");
                }
            });
        }
    });
    let listed = ok(s.list(ObjectKind::Index), C, &*s, "list");
    for t in 0..8u32 {
        for i in 0..per_thread {
            let data = format!("thread {t} object {i}").into_bytes();
            let id = id_of(&data);
            ensure!(
                listed.iter().any(|(l, n)| *l == id && *n == data.len() as u64),
                C,
                &*s,
                "object {i} of thread {t} is not listed"
            );
            let back = ok(s.read(ObjectKind::Index, &id, None), C, &*s, "read");
            ensure!(back == data, C, &*s, "object {i} of thread {t} differs");
        }
    }
    ensure!(listed.len() == 8 * per_thread as usize, C, &*s, "listed {} objects", listed.len());
}

/// Files that are not objects (a leftover temp file `.tmp-xyz`, a name that is not 64
/// lowercase hex) are not listed. `plant(path, bytes)` must create a raw file at `path`,
/// '/'-separated and relative to the repository root, bypassing the [`Storage`] trait.
pub fn stray_files_are_not_listed(s: &dyn Storage, plant: &dyn Fn(&str, &[u8])) {
    const C: &str = "stray_files_are_not_listed";
    ok(s.create(), C, s, "create");
    let real = b"real".to_vec();
    let id = id_of(&real);
    for kind in [ObjectKind::Data, ObjectKind::Snapshot] {
        ok(s.write(kind, &id, &real), C, s, "write");
        let dir = match kind {
            ObjectKind::Data => format!("data/{}", &id[..2]),
            _ => kind.dir_name().to_string(),
        };
        plant(&format!("{dir}/.tmp-xyz"), b"half a pack");
        plant(&format!("{dir}/{}", id.to_uppercase()), b"x");
        plant(&format!("{dir}/README"), b"x");
        let listed = ok(s.list(kind), C, s, "list");
        ensure!(
            listed == vec![(id.clone(), real.len() as u64)],
            C,
            s,
            "list({kind:?}) with stray files returned {listed:?}"
        );
    }
}
