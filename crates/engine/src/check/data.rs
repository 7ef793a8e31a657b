//! Reading data: each selected pack is read whole, once, by one worker (memory is one pack per
//! worker); its name must be the SHA-256 of its bytes, its own header must list exactly the
//! blobs the index lists for it, and every blob must decrypt to its recorded length and (data
//! and tree blobs) hash to its id. A bundle's id is random, not a hash: each slice a file names
//! in it must hold bytes with the slice's keyed content id (a backup-only key can store a
//! bundle under an existing bundle's id; only the slices' ids tell the copies apart).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use offsite_backend::ObjectKind;
use offsite_format::{decode_pack, storage_id, BlobId, BlobOpener, IndexPack, PackEntry};
use offsite_repo::Repository;
use rayon::prelude::*;

use super::objects::LoadedIndex;
use super::{Findings, ReadData};
use crate::content::{slice_matches, slice_of};
use crate::events::{Event, Reporter};

/// At most this many failing blobs are described per pack; the rest are counted.
const BLOB_MESSAGES: usize = 5;

/// What reading one pack found.
struct PackOutcome {
    short: String,
    /// what is wrong with the pack as a whole
    issues: Vec<String>,
    /// blobs that failed, each with why
    bad_blobs: Vec<(BlobId, String)>,
    /// blobs lost with the pack (it could not be read at all)
    lost: Vec<BlobId>,
    blobs_ok: u64,
}

/// Read the packs `selection` picks; returns (packs read, blobs verified).
pub(crate) fn read_data(
    repo: &Repository,
    loaded: &LoadedIndex,
    selection: ReadData,
    found: &mut Findings,
    reporter: &dyn Reporter,
) -> (u64, u64) {
    let mut packs: Vec<&IndexPack> = loaded.packs.values().collect();
    packs.sort_by_key(|p| p.id);
    let packs = select(packs, selection);
    let items_total = packs.len() as u64;
    let bytes_total: u64 = packs.iter().map(|p| p.size).sum();
    let (done, bytes_done) = (AtomicU64::new(0), AtomicU64::new(0));
    let readable: Vec<&IndexPack> = packs.into_iter().filter(|p| !found.unusable.contains(&p.id)).collect();
    let outcomes: Vec<PackOutcome> = readable
        .par_iter()
        .map(|p| {
            let out = check_pack(repo, p, &found.slices);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            let b = bytes_done.fetch_add(p.size, Ordering::Relaxed) + p.size;
            if reporter.wants_progress() {
                reporter.report(Event::Progress {
                    phase: "check",
                    items_done: d,
                    bytes_done: b,
                    items_total: Some(items_total),
                    bytes_total: Some(bytes_total),
                    current: Some(format!("data/{}", p.id.short())),
                });
            }
            out
        })
        .collect();
    let mut blobs = 0;
    for o in outcomes.iter() {
        blobs += o.blobs_ok;
        // Blobs already reported (trees that did not read in the structure walk) are not
        // described twice.
        let fresh: Vec<&(BlobId, String)> =
            o.bad_blobs.iter().filter(|(b, _)| !found.bad.contains_key(b)).collect();
        let mut messages = o.issues.clone();
        messages.extend(fresh.iter().take(BLOB_MESSAGES).map(|(_, m)| m.clone()));
        if fresh.len() > BLOB_MESSAGES {
            messages.push(format!("... and {} more damaged blobs", fresh.len() - BLOB_MESSAGES));
        }
        if messages.is_empty() {
            continue;
        }
        let object = format!("data/{}", o.short);
        let mut idx = None;
        for m in messages {
            idx = Some(found.problems.add(object.clone(), m));
        }
        if let Some(idx) = idx {
            for b in fresh.iter().map(|(b, _)| b).chain(&o.lost) {
                found.mark(*b, idx);
            }
        }
    }
    (outcomes.len() as u64, blobs)
}

/// All packs in id order, or a random `pct` percent of them (rounded up) in id order.
fn select(mut packs: Vec<&IndexPack>, selection: ReadData) -> Vec<&IndexPack> {
    let ReadData::Subset(pct) = selection else {
        return packs;
    };
    let want = ((packs.len() as f64) * pct / 100.0).ceil() as usize;
    let mut state = u64::from_le_bytes(offsite_crypto::random_bytes::<8>());
    // Fisher-Yates with splitmix64: uniform enough to spread reads over check runs.
    for i in (1..packs.len()).rev() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        packs.swap(i, (z % (i as u64 + 1)) as usize);
    }
    packs.truncate(want.min(packs.len()));
    packs.sort_by_key(|p| p.id);
    packs
}

fn check_pack(
    repo: &Repository,
    p: &IndexPack,
    slices: &HashMap<BlobId, Vec<(u64, u64, BlobId)>>,
) -> PackOutcome {
    let mut out = PackOutcome {
        short: p.id.short(),
        issues: Vec::new(),
        bad_blobs: Vec::new(),
        lost: Vec::new(),
        blobs_ok: 0,
    };
    let bytes = match repo.storage().read(ObjectKind::Data, &p.id.to_hex(), None) {
        Ok(b) => b,
        Err(e) => {
            out.issues.push(format!("cannot be read: {e}"));
            out.lost = p.blobs.iter().map(|e| e.id).collect();
            return out;
        }
    };
    if storage_id(&bytes) != p.id.0 {
        out.issues.push("its content does not match its name".into());
    }
    match decode_pack(repo.keys(), &bytes) {
        Err(e) => out.issues.push(format!("its header does not decode: {e}")),
        Ok((eph, entries)) => {
            if eph != p.eph {
                out.issues.push("its trailer key differs from the one in the index".into());
            }
            if let Some(m) = compare_entries(entries, &p.blobs) {
                out.issues.push(m);
            }
        }
    }
    let opener = match BlobOpener::new(repo.keys(), &p.eph) {
        Ok(o) => o,
        Err(e) => {
            out.issues.push(format!("its key does not open: {e}"));
            out.lost = p.blobs.iter().map(|e| e.id).collect();
            return out;
        }
    };
    for e in &p.blobs {
        let (start, end) = (e.offset as usize, e.offset as usize + e.length as usize);
        let what = format!("{} blob {}", e.ty, e.id.short());
        match bytes.get(start..end) {
            None => out.bad_blobs.push((e.id, format!("{what} lies outside the pack"))),
            Some(ct) => match opener.open(repo.keys(), e, ct) {
                Ok(plain) => {
                    let wrong = slices.get(&e.id).map_or(0, |named| {
                        named
                            .iter()
                            .filter(|(within, len, id)| {
                                !slice_of(&plain, *within, *len)
                                    .is_some_and(|b| slice_matches(repo.keys(), b, id))
                            })
                            .count()
                    });
                    if wrong == 0 {
                        out.blobs_ok += 1;
                    } else {
                        out.bad_blobs.push((
                            e.id,
                            format!(
                                "{what} does not hold the bytes {wrong} file slice(s) name: this copy is forged or damaged"
                            ),
                        ));
                    }
                }
                Err(err) => out.bad_blobs.push((e.id, format!("{what}: {err}"))),
            },
        }
    }
    out
}

/// `None` when the pack's own header lists the same blobs at the same places as the index.
fn compare_entries(mut header: Vec<PackEntry>, index: &[PackEntry]) -> Option<String> {
    let mut index = index.to_vec();
    header.sort_by_key(|e| e.offset);
    index.sort_by_key(|e| e.offset);
    if header.len() != index.len() {
        return Some(format!("its header lists {} blobs, the index {}", header.len(), index.len()));
    }
    header.iter().zip(&index).find(|(h, i)| h != i).map(|(h, _)| {
        format!("its header and the index disagree about the blob at offset {} ({})", h.offset, h.id.short())
    })
}
