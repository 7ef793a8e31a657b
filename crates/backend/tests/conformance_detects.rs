//! The conformance suite fails a backend that breaks the contract.

use offsite_backend::{conformance, LocalStorage, ObjectKind, Storage, StorageResult};

/// Answers a range past the end with the bytes that exist instead of an error.
#[derive(Debug)]
struct ShortRanges(LocalStorage);

impl Storage for ShortRanges {
    fn location(&self) -> String {
        self.0.location()
    }
    fn create(&self) -> StorageResult<()> {
        self.0.create()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        self.0.list(kind)
    }
    fn read(&self, k: ObjectKind, id: &str, r: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        let all = self.0.read(k, id, None)?;
        Ok(match r {
            None => all,
            Some((start, len)) => all.into_iter().skip(start as usize).take(len as usize).collect(),
        })
    }
    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        self.0.write(kind, id, data)
    }
    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        self.0.delete(kind, id)
    }
    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        self.0.stat(kind, id)
    }
}

#[test]
#[should_panic(expected = "storage conformance check `range_reads` failed")]
fn short_range_reads_fail_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::range_reads(&|| Box::new(ShortRanges(LocalStorage::new(dir.path()))));
}
