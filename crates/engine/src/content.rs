//! A file's content items checked against the index, the one place that decides what a content
//! item may name (docs/FORMAT.md §8): a blob id must name a data blob, a slice a bundle that
//! holds all of its bytes. Restore, dump and check each word the refusal for their own report.

use offsite_format::{BlobId, BlobType, ContentItem};
use offsite_repo::{BlobLocation, Index};

/// Where one content item's bytes come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    /// `len` zero bytes
    Hole(u64),
    /// `len` bytes at `within` in the plaintext of the blob at `loc` (a whole data blob:
    /// `within` 0 and `len` its length); for a slice of a bundle, `id` is the keyed id its
    /// bytes must have (checked before use: a bundle's own id binds nothing)
    Blob { loc: BlobLocation, within: u64, len: u64, id: Option<BlobId> },
}

/// Why a content item cannot be used.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refused {
    /// the blob it names is not in the index
    Missing(BlobId),
    /// the blob is indexed with another type than the item needs
    WrongType { id: BlobId, want: BlobType, found: BlobType },
    /// the slice runs past the end of its bundle (`raw` bytes long)
    PastEnd { loc: BlobLocation, offset: u64, length: u64, raw: u64 },
}

/// Resolve one content item against the index.
pub(crate) fn resolve(index: &Index, item: &ContentItem) -> Result<Source, Refused> {
    let (id, want) = match item {
        ContentItem::Hole { hole } => return Ok(Source::Hole(*hole)),
        ContentItem::Blob(id) => (id, BlobType::Data),
        ContentItem::Slice { bundle, .. } => (bundle, BlobType::Bundle),
    };
    // The first copy indexed with the type the item needs: a forged entry listed first with
    // another type must not make a sound copy unusable.
    let copies = index.copies(id);
    let first = copies.first().ok_or(Refused::Missing(*id))?;
    let loc = *copies
        .iter()
        .find(|l| l.entry.ty == want)
        .ok_or(Refused::WrongType { id: *id, want, found: first.entry.ty })?;
    let raw = u64::from(loc.entry.raw_length);
    match item {
        ContentItem::Slice { offset, length, id, .. } => {
            let (offset, length) = (u64::from(*offset), u64::from(*length));
            if offset.checked_add(length).is_none_or(|end| end > raw) {
                return Err(Refused::PastEnd { loc, offset, length, raw });
            }
            Ok(Source::Blob { loc, within: offset, len: length, id: Some(*id) })
        }
        _ => Ok(Source::Blob { loc, within: 0, len: raw, id: None }),
    }
}

/// `len` bytes at `within` of a blob's plaintext, if it holds them.
pub(crate) fn slice_of(plain: &[u8], within: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(within).ok()?;
    plain.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// Whether `bytes` are what a slice with keyed id `id` names (`KeySet::blob_id`).
pub(crate) fn slice_matches(keys: &offsite_crypto::KeySet, bytes: &[u8], id: &BlobId) -> bool {
    keys.blob_id(bytes) == id.0
}
