//! The keyed ids slices need (format 2, docs/FORMAT.md §8.2) for repositories tests build blob
//! by blob: each test fixture registers the bundles it stores, and its `slice` helper asks.
#![allow(dead_code)]

use offsite_format::BlobId;

/// Bytes of the bundles (and data blobs) tests stored, with the keys of their repository, so
/// that [`slice`] can give a slice the keyed id of its bytes (format 2, docs/FORMAT.md §8).
/// A slice of a blob not registered gets an id no bytes have.
pub static STORED: std::sync::Mutex<Vec<(BlobId, offsite_crypto::KeySet, Vec<u8>)>> =
    std::sync::Mutex::new(Vec::new());

pub fn register(id: BlobId, keys: &offsite_crypto::KeySet, bytes: &[u8]) {
    STORED.lock().unwrap().push((id, keys.clone(), bytes.to_vec()));
}

/// The keyed id a slice of `length` bytes at `offset` in `bundle` must carry.
pub fn slice_id(bundle: BlobId, offset: u64, length: u64) -> BlobId {
    let stored = STORED.lock().unwrap();
    stored
        .iter()
        .find(|(id, _, _)| *id == bundle)
        .and_then(|(_, keys, bytes)| {
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(length).ok()?)?;
            bytes.get(start..end).map(|b| BlobId(keys.blob_id(b)))
        })
        .unwrap_or(BlobId([0xee; 32]))
}
