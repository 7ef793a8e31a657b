//! The storage layers: retry, fault injection, counting, and their composition.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offsite_backend::conformance::id_of;
use offsite_backend::layers::{
    CountingStorage, FaultStorage, InjectedError, RetryPolicy, RetryStorage, StorageStats,
};
use offsite_backend::{LocalStorage, ObjectKind, Storage, StorageError, StorageResult};

fn local(dir: &tempfile::TempDir) -> LocalStorage {
    let s = LocalStorage::new(dir.path());
    s.create().expect("create");
    s
}

/// A retry layer over `inner` that records its waits instead of sleeping.
fn retrying<S: Storage>(inner: S) -> (RetryStorage<S>, Arc<Mutex<Vec<Duration>>>) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&waits);
    let s = RetryStorage::new(inner).with_sleep(move |d| rec.lock().expect("lock").push(d));
    (s, waits)
}

#[test]
fn retry_recovers_from_transient_write_failures_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(local(&dir));
    let plan = faulty.plan();
    plan.lock().expect("lock").fail_writes = 2;
    let (s, waits) = retrying(faulty);
    let id = id_of(b"pack");
    s.write(ObjectKind::Data, &id, b"pack").expect("third try succeeds");
    assert_eq!(s.read(ObjectKind::Data, &id, None).expect("read"), b"pack");
    assert_eq!(*waits.lock().expect("lock"), [Duration::from_millis(100), Duration::from_millis(200)]);
}

#[test]
fn retry_gives_up_after_max_tries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(local(&dir));
    let plan = faulty.plan();
    plan.lock().expect("lock").fail_after_calls = Some(0);
    let (s, waits) = retrying(faulty);
    let e = s.list(ObjectKind::Snapshot).expect_err("storage gone");
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(plan.lock().expect("lock").calls, 5);
    let ms: Vec<u128> = waits.lock().expect("lock").iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800]);
}

#[test]
fn retry_passes_permanent_errors_through_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(local(&dir));
    let plan = faulty.plan();
    {
        let mut p = plan.lock().expect("lock");
        p.fail_writes = 1;
        p.fail_writes_with = InjectedError::NoSpace;
    }
    let (s, waits) = retrying(faulty);
    let id = id_of(b"x");
    let e = s.write(ObjectKind::Data, &id, b"x").expect_err("disk full");
    assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
    let e = s.read(ObjectKind::Data, &id, None).expect_err("never written");
    assert!(e.is_not_found());
    assert_eq!(plan.lock().expect("lock").calls, 2);
    assert!(waits.lock().expect("lock").is_empty());
}

#[test]
fn retry_delays_are_capped() {
    let p = RetryPolicy {
        max_tries: 40,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    assert_eq!(p.delay_after(1), Duration::from_millis(100));
    assert_eq!(p.delay_after(4), Duration::from_millis(800));
    assert_eq!(p.delay_after(5), Duration::from_secs(1));
    assert_eq!(p.delay_after(39), Duration::from_secs(1));
}

/// Stores the first write, then reports it as a transient failure (the reply was lost).
#[derive(Debug)]
struct LandsThenFails<S> {
    inner: S,
    failed: AtomicBool,
}

impl<S: Storage> Storage for LandsThenFails<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> StorageResult<()> {
        self.inner.create()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn read(&self, k: ObjectKind, id: &str, r: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        self.inner.read(k, id, r)
    }
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.inner.write(kind, id, data)?;
        if self.failed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        Err(StorageError::Transient {
            what: id.to_string(),
            source: io::Error::from(io::ErrorKind::ConnectionReset),
        })
    }
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        self.inner.delete(kind, id)?;
        if self.failed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        Err(StorageError::Transient {
            what: id.to_string(),
            source: io::Error::from(io::ErrorKind::ConnectionReset),
        })
    }
    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.inner.stat(kind, id)
    }
}

#[test]
fn a_retried_write_that_had_landed_succeeds_only_if_the_bytes_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lands = |s| LandsThenFails { inner: s, failed: AtomicBool::new(false) };
    let (s, _) = retrying(lands(local(&dir)));
    let id = id_of(b"pack");
    s.write(ObjectKind::Data, &id, b"pack").expect("landed write is ours");

    assert_eq!(s.read(ObjectKind::Data, &id, None).expect("read"), b"pack");

    // Someone else's config is there; our first attempt fails before reaching storage.
    let other = tempfile::tempdir().expect("tempdir");
    let base = local(&other);
    base.write(ObjectKind::Config, "", b"theirs").expect("write");
    let faulty = FaultStorage::new(base);
    faulty.plan().lock().expect("lock").fail_writes = 1;
    let (s, _) = retrying(faulty);
    let e = s.write(ObjectKind::Config, "", b"ours").expect_err("not ours");
    assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e:?}");
    assert_eq!(s.read(ObjectKind::Config, "", None).expect("read"), b"theirs");
}

#[test]
fn a_retried_delete_that_had_landed_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = local(&dir);
    let id = id_of(b"lock");
    base.write(ObjectKind::Lock, &id, b"lock").expect("write");
    let (s, _) = retrying(LandsThenFails { inner: base, failed: AtomicBool::new(false) });
    s.delete(ObjectKind::Lock, &id).expect("delete landed");
    assert!(s.stat(ObjectKind::Lock, &id).expect_err("gone").is_not_found());
}

#[test]
fn fault_lost_write_reports_success_but_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    s.plan().lock().expect("lock").lose_writes = 1;
    let (a, b) = (id_of(b"a"), id_of(b"b"));
    s.write(ObjectKind::Index, &a, b"a").expect("lost write looks fine");
    s.write(ObjectKind::Index, &b, b"b").expect("real write");
    assert!(s.stat(ObjectKind::Index, &a).expect_err("lost").is_not_found());
    assert_eq!(s.stat(ObjectKind::Index, &b).expect("stored"), 1);
}

#[test]
fn fault_corrupts_one_byte_of_the_next_reads_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let data: Vec<u8> = (0..100).collect();
    let id = id_of(&data);
    s.write(ObjectKind::Data, &id, &data).expect("write");
    s.plan().lock().expect("lock").corrupt_reads = 1;
    let bad = s.read(ObjectKind::Data, &id, None).expect("read");
    assert_eq!(bad.len(), data.len());
    assert_eq!(bad.iter().zip(&data).filter(|(x, y)| x != y).count(), 1);
    assert_eq!(s.read(ObjectKind::Data, &id, None).expect("read"), data);
}

#[test]
fn fault_fails_every_call_after_k_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let plan = s.plan();
    plan.lock().expect("lock").fail_after_calls = Some(2);
    let id = id_of(b"x");
    s.write(ObjectKind::Key, &id, b"x").expect("call 1");
    s.stat(ObjectKind::Key, &id).expect("call 2");
    for _ in 0..3 {
        let e = s.read(ObjectKind::Key, &id, None).expect_err("gone");
        assert!(e.is_transient(), "{e:?}");
    }
    plan.lock().expect("lock").fail_after_calls = None;
    assert_eq!(s.read(ObjectKind::Key, &id, None).expect("back"), b"x");
}

#[test]
fn counting_counts_calls_and_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = CountingStorage::new(local(&dir));
    let id = id_of(b"hello");
    s.write(ObjectKind::Data, &id, b"hello").expect("write");
    s.write(ObjectKind::Data, &id, b"hello").expect_err("exists");
    s.read(ObjectKind::Data, &id, Some((1, 3))).expect("read");
    s.read(ObjectKind::Data, &id, None).expect("read");
    s.list(ObjectKind::Data).expect("list");
    s.delete(ObjectKind::Data, &id).expect("delete");
    assert_eq!(
        s.stats(),
        StorageStats { writes: 2, bytes_written: 5, reads: 2, bytes_read: 8, lists: 1, deletes: 1 }
    );
    s.reset();
    assert_eq!(s.stats(), StorageStats::default());
}

#[test]
fn layers_compose_over_arc_and_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared: Arc<dyn Storage> = Arc::new(local(&dir));
    let counting = Arc::new(CountingStorage::new(Arc::clone(&shared)));
    let stack: Box<dyn Storage> = Box::new(RetryStorage::new(Arc::clone(&counting)));
    let id = id_of(b"x");
    stack.write(ObjectKind::Snapshot, &id, b"x").expect("write");
    assert_eq!(shared.read(ObjectKind::Snapshot, &id, None).expect("read"), b"x");
    assert_eq!(counting.stats().writes, 1);
    assert_eq!(stack.location(), dir.path().display().to_string());
}

#[test]
fn fault_loses_only_writes_of_the_chosen_kind_and_records_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let plan = s.plan();
    {
        let mut p = plan.lock().expect("lock");
        p.lose_writes = 1;
        p.lose_writes_of = Some(ObjectKind::Snapshot);
    }
    let (pack, snap, snap2) = (id_of(b"pack"), id_of(b"snap"), id_of(b"snap2"));
    s.write(ObjectKind::Data, &pack, b"pack").expect("pack stored");
    s.write(ObjectKind::Snapshot, &snap, b"snap").expect("lost write looks fine");
    s.write(ObjectKind::Snapshot, &snap2, b"snap2").expect("stored");
    assert_eq!(s.stat(ObjectKind::Data, &pack).expect("pack is there"), 4);
    assert!(s.stat(ObjectKind::Snapshot, &snap).expect_err("lost").is_not_found());
    assert_eq!(s.stat(ObjectKind::Snapshot, &snap2).expect("stored"), 5);
    assert_eq!(plan.lock().expect("lock").lost, [(ObjectKind::Snapshot, snap.clone())]);

    // By size: the big pack is lost, the small one beside it stored.
    {
        let mut p = plan.lock().expect("lock");
        p.lose_writes = 1;
        p.lose_writes_of = Some(ObjectKind::Data);
        p.lose_writes_sized = Some(10..=u64::MAX);
    }
    let (small, big) = (id_of(b"tree pack"), id_of(b"a much bigger data pack"));
    s.write(ObjectKind::Data, &small, b"tree pack").expect("stored");
    s.write(ObjectKind::Data, &big, b"a much bigger data pack").expect("lost write looks fine");
    assert!(s.stat(ObjectKind::Data, &small).is_ok());
    assert!(s.stat(ObjectKind::Data, &big).expect_err("lost").is_not_found());
    assert_eq!(plan.lock().expect("lock").lost, [(ObjectKind::Snapshot, snap), (ObjectKind::Data, big)]);
}

#[test]
fn fault_omits_listed_objects_but_still_serves_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let (a, b) = (id_of(b"a"), id_of(b"b"));
    s.write(ObjectKind::Index, &a, b"a").expect("write");
    s.write(ObjectKind::Index, &b, b"b").expect("write");
    s.write(ObjectKind::Snapshot, &a, b"a").expect("write");
    s.plan().lock().expect("lock").omit.insert((ObjectKind::Index, a.clone()));
    let listed: Vec<String> =
        s.list(ObjectKind::Index).expect("list").into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, [b]);
    // Only that kind's listing is affected, and the object itself is still there.
    assert_eq!(s.list(ObjectKind::Snapshot).expect("list"), [(a.clone(), 1)]);
    assert_eq!(s.read(ObjectKind::Index, &a, None).expect("read"), b"a");
}

#[test]
fn fault_phantoms_are_listed_replayably_and_are_not_found_in_the_order_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let real = id_of(b"real");
    s.write(ObjectKind::Snapshot, &real, b"real").expect("write");
    let ids = s.plan().lock().expect("lock").add_phantoms(ObjectKind::Snapshot, 3, 42);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| offsite_backend::is_object_id(id)), "{ids:?}");
    let mut listed: Vec<String> =
        s.list(ObjectKind::Snapshot).expect("list").into_iter().map(|(id, _)| id).collect();
    listed.sort();
    let mut want = ids.clone();
    want.push(real);
    want.sort();
    assert_eq!(listed, want);
    for id in &ids {
        assert!(s.read(ObjectKind::Snapshot, id, None).expect_err("phantom").is_not_found());
        assert!(s.stat(ObjectKind::Snapshot, id).expect_err("phantom").is_not_found());
    }
    assert!(s.list(ObjectKind::Index).expect("list").is_empty(), "other kinds get none");
    // The same seed invents the same objects; another seed others.
    // Listings come in the order asked for.
    s.plan().lock().expect("lock").list_order = offsite_backend::layers::ListOrder::Descending;
    let desc: Vec<String> =
        s.list(ObjectKind::Snapshot).expect("list").into_iter().map(|(id, _)| id).collect();
    assert_eq!(desc, want.iter().rev().cloned().collect::<Vec<_>>());
    s.plan().lock().expect("lock").list_order = offsite_backend::layers::ListOrder::Ascending;
    let asc: Vec<String> =
        s.list(ObjectKind::Snapshot).expect("list").into_iter().map(|(id, _)| id).collect();
    assert_eq!(asc, want);
    let mut again = offsite_backend::layers::FaultPlan::default();
    assert_eq!(again.add_phantoms(ObjectKind::Snapshot, 3, 42), ids);
    let other = again.add_phantoms(ObjectKind::Snapshot, 3, 43);
    assert!(other.iter().all(|id| !ids.contains(id)));
}

#[test]
fn fault_swap_serves_each_object_under_the_others_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FaultStorage::new(local(&dir));
    let (one, two): (&[u8], &[u8]) = (b"first pack", b"second, longer pack");
    let (a, b) = (id_of(one), id_of(two));
    s.write(ObjectKind::Data, &a, one).expect("write");
    s.write(ObjectKind::Data, &b, two).expect("write");
    s.plan().lock().expect("lock").swap(ObjectKind::Data, &a, &b);
    assert_eq!(s.read(ObjectKind::Data, &a, None).expect("read"), two);
    assert_eq!(s.read(ObjectKind::Data, &b, Some((6, 4))).expect("range"), b"pack");
    assert_eq!(s.stat(ObjectKind::Data, &a).expect("stat"), two.len() as u64);
    let mut listed = s.list(ObjectKind::Data).expect("list");
    listed.sort();
    let mut want = vec![(a.clone(), two.len() as u64), (b.clone(), one.len() as u64)];
    want.sort();
    assert_eq!(listed, want);
    // The stored objects are untouched.
    s.plan().lock().expect("lock").substitute.clear();
    assert_eq!(s.read(ObjectKind::Data, &a, None).expect("read"), one);
}
