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

/// Resolve one content item against the index: its first candidate (see [`candidates`]).
pub(crate) fn resolve(index: &Index, item: &ContentItem) -> Result<Source, Refused> {
    Ok(candidates(index, item)?[0])
}

/// Every indexed copy that could serve the item, in index order: of the type it needs and,
/// for a slice, holding all of its bytes. A forged entry listed first (another type, a short
/// length) must not make a sound copy unusable; the readers verify whichever they use.
pub(crate) fn candidates(index: &Index, item: &ContentItem) -> Result<Vec<Source>, Refused> {
    let (id, want) = match item {
        ContentItem::Hole { hole } => return Ok(vec![Source::Hole(*hole)]),
        ContentItem::Blob(id) => (id, BlobType::Data),
        ContentItem::Slice { bundle, .. } => (bundle, BlobType::Bundle),
    };
    let copies = index.copies(id);
    let first = copies.first().ok_or(Refused::Missing(*id))?;
    let typed: Vec<BlobLocation> = copies.iter().filter(|l| l.entry.ty == want).copied().collect();
    let loc = *typed.first().ok_or(Refused::WrongType { id: *id, want, found: first.entry.ty })?;
    match item {
        ContentItem::Slice { offset, length, id, .. } => {
            let (offset, length) = (u64::from(*offset), u64::from(*length));
            let holds = |l: &BlobLocation| {
                offset.checked_add(length).is_some_and(|end| end <= u64::from(l.entry.raw_length))
            };
            let out: Vec<Source> = typed
                .iter()
                .filter(|l| holds(l))
                .map(|l| Source::Blob { loc: *l, within: offset, len: length, id: Some(*id) })
                .collect();
            if out.is_empty() {
                return Err(Refused::PastEnd { loc, offset, length, raw: u64::from(loc.entry.raw_length) });
            }
            Ok(out)
        }
        _ => Ok(typed
            .iter()
            .map(|l| Source::Blob { loc: *l, within: 0, len: u64::from(l.entry.raw_length), id: None })
            .collect()),
    }
}

/// The length a source covers.
pub(crate) fn source_len(s: &Source) -> u64 {
    match s {
        Source::Hole(n) => *n,
        Source::Blob { len, .. } => *len,
    }
}

/// One source per item whose lengths add up to `size`: the first candidate of each, or, when a
/// forged entry listed first gives an item the wrong length, the first single substitution of
/// another candidate that makes the sum right. `None` when the first candidates do not add up
/// and no single substitution helps (the readers then report the sum).
pub(crate) fn choose_sources(all: &[Vec<Source>], size: u64) -> Option<Vec<Source>> {
    let mut chosen: Vec<Source> = all.iter().map(|c| c[0]).collect();
    let sum = |c: &[Source]| c.iter().try_fold(0u64, |acc, s| acc.checked_add(source_len(s)));
    if sum(&chosen) == Some(size) {
        return Some(chosen);
    }
    for (i, cands) in all.iter().enumerate() {
        for alt in cands.iter().skip(1) {
            let keep = chosen[i];
            chosen[i] = *alt;
            if sum(&chosen) == Some(size) {
                return Some(chosen);
            }
            chosen[i] = keep;
        }
    }
    None
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
