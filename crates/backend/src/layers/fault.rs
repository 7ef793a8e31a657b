//! A fault injector for whole-system tests.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::error::{StorageError, StorageResult};
use crate::kind::ObjectKind;
use crate::storage::Storage;

/// The error a failed write reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InjectedError {
    /// A [`StorageError::Transient`] error (a retry would succeed).
    #[default]
    Transient,
    /// A [`StorageError::NoSpace`] error (the disk is full).
    NoSpace,
}

/// An object's kind and id (id "" for the config), as [`FaultPlan`] names objects.
pub type ObjectName = (ObjectKind, String);

/// The order [`FaultStorage`] lists objects in. Storages promise no order; code that
/// depends on one shows up when a test lists in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// As the wrapped storage lists them.
    #[default]
    AsStored,
    /// Sorted by id, ascending.
    Ascending,
    /// Sorted by id, descending.
    Descending,
}

/// Which faults [`FaultStorage`] injects next. Tests change it while the system runs through
/// the handle from [`FaultStorage::plan`]; counters go down as faults are injected.
///
/// Besides failing calls, it can play a hostile storage: drop acknowledged writes, leave
/// objects out of listings, list objects that do not exist, and serve one object's bytes
/// under another's name. Everything random is derived from a seed, so a failing test replays.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail this many of the next writes (nothing is stored) with `fail_writes_with`.
    pub fail_writes: u32,
    /// The error those failed writes report.
    pub fail_writes_with: InjectedError,
    /// Report success for this many of the next writes but store nothing (a lost write).
    pub lose_writes: u32,
    /// When set, only writes of this kind are lost (and counted by `lose_writes`); writes of
    /// other kinds are stored.
    pub lose_writes_of: Option<ObjectKind>,
    /// When set, only writes whose length is in this range are lost (e.g. a big data pack
    /// rather than the small tree pack written beside it).
    pub lose_writes_sized: Option<std::ops::RangeInclusive<u64>>,
    /// Every write that was acknowledged but dropped, in order (filled by the wrapper).
    pub lost: Vec<ObjectName>,
    /// Flip one bit in the middle of the bytes returned by this many of the next non-empty
    /// reads (the stored object is untouched).
    pub corrupt_reads: u32,
    /// Once this many calls have been made, fail every further call with a Transient
    /// error, as if the link were gone for good.
    pub fail_after_calls: Option<u64>,
    /// Calls made so far (every method but `location`), counted by the wrapper.
    pub calls: u64,
    /// Objects left out of every listing, as by a stale or truncated listing. Reading them
    /// still works: the objects are there, the listing just does not show them.
    pub omit: HashSet<ObjectName>,
    /// Invented objects (kind, id, size) added to every listing of their kind. Reading or
    /// stat-ing them fails with NotFound, as the wrapped storage does not hold them.
    pub phantoms: Vec<(ObjectKind, String, u64)>,
    /// Substitutions: reads and stats of the key object are answered with the value object's
    /// bytes and size (ranges apply to the served object), and listings show the served size,
    /// as if the storage had swapped the objects' contents under their names.
    pub substitute: HashMap<ObjectName, ObjectName>,
    /// The order of every listing.
    pub list_order: ListOrder,
}

impl FaultPlan {
    /// Add `count` invented objects of `kind` to every listing: ids and sizes derived from
    /// `seed`, so the same seed invents the same objects. Returns the invented ids.
    pub fn add_phantoms(&mut self, kind: ObjectKind, count: usize, seed: u64) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count as u64 {
            let digest = Sha256::new()
                .chain_update(b"offsite fault phantom")
                .chain_update(seed.to_le_bytes())
                .chain_update(kind.dir_name().as_bytes())
                .chain_update(i.to_le_bytes())
                .finalize();
            let id = hex::encode(digest);
            let size = 1 + u64::from(u32::from_le_bytes([digest[0], digest[1], digest[2], 0]));
            self.phantoms.push((kind, id.clone(), size));
            ids.push(id);
        }
        ids
    }

    /// Serve `a`'s bytes under `b`'s name and `b`'s under `a`'s (both of `kind`).
    pub fn swap(&mut self, kind: ObjectKind, a: &str, b: &str) {
        self.substitute.insert((kind, a.to_string()), (kind, b.to_string()));
        self.substitute.insert((kind, b.to_string()), (kind, a.to_string()));
    }
}

/// Wraps a real storage and injects faults into it: failed writes, lost writes, corrupted
/// reads, a storage that stops answering, listings that omit or invent objects, objects
/// served under another's name. It is a fault injector, not a mock: every call that is not
/// faulted reaches the wrapped storage and returns its real answer.
#[derive(Debug)]
pub struct FaultStorage<S> {
    inner: S,
    plan: Arc<Mutex<FaultPlan>>,
}

impl<S: Storage> FaultStorage<S> {
    /// Wrap `inner` with an empty plan (no faults until the test sets some).
    pub fn new(inner: S) -> Self {
        FaultStorage { inner, plan: Arc::default() }
    }

    /// The shared plan; lock it to inject faults or read the call count.
    pub fn plan(&self) -> Arc<Mutex<FaultPlan>> {
        Arc::clone(&self.plan)
    }

    fn lock(&self) -> MutexGuard<'_, FaultPlan> {
        // A test that panicked while holding the lock leaves a usable plan.
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a call and fail it if the storage is "gone".
    fn enter(&self, what: &str) -> StorageResult<MutexGuard<'_, FaultPlan>> {
        let mut plan = self.lock();
        plan.calls += 1;
        match plan.fail_after_calls {
            Some(limit) if plan.calls > limit => Err(StorageError::Transient {
                what: what.to_string(),
                source: io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "injected fault: storage unreachable",
                ),
            }),
            _ => Ok(plan),
        }
    }
}

fn name(kind: ObjectKind, id: &str) -> String {
    format!("{}/{}", kind.dir_name(), id)
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> StorageResult<()> {
        drop(self.enter("create")?);
        self.inner.create()
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<(String, u64)>> {
        drop(self.enter(kind.dir_name())?);
        let mut listed = self.inner.list(kind)?;
        let plan = self.lock().clone();
        listed.retain(|(id, _)| !plan.omit.contains(&(kind, id.clone())));
        for (id, size) in &mut listed {
            if let Some((k, other)) = plan.substitute.get(&(kind, id.clone())) {
                if let Ok(s) = self.inner.stat(*k, other) {
                    *size = s;
                }
            }
        }
        listed.extend(plan.phantoms.iter().filter(|p| p.0 == kind).map(|(_, id, size)| (id.clone(), *size)));
        match plan.list_order {
            ListOrder::AsStored => {}
            ListOrder::Ascending => listed.sort(),
            ListOrder::Descending => listed.sort_by(|a, b| b.cmp(a)),
        }
        Ok(listed)
    }

    fn read(&self, kind: ObjectKind, id: &str, range: Option<(u64, u64)>) -> StorageResult<Vec<u8>> {
        let plan = self.enter(&name(kind, id))?;
        let (kind, id) = match plan.substitute.get(&(kind, id.to_string())) {
            Some((k, other)) => (*k, other.clone()),
            None => (kind, id.to_string()),
        };
        drop(plan);
        let mut data = self.inner.read(kind, &id, range)?;
        let mut plan = self.lock();
        if plan.corrupt_reads > 0 && !data.is_empty() {
            plan.corrupt_reads -= 1;
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
        }
        Ok(data)
    }

    fn write(&self, kind: ObjectKind, id: &str, data: &[u8]) -> StorageResult<()> {
        let what = name(kind, id);
        let mut plan = self.enter(&what)?;
        if plan.fail_writes > 0 {
            plan.fail_writes -= 1;
            return Err(match plan.fail_writes_with {
                InjectedError::NoSpace => StorageError::NoSpace { what },
                InjectedError::Transient => StorageError::Transient {
                    what,
                    source: io::Error::new(io::ErrorKind::TimedOut, "injected fault"),
                },
            });
        }
        let chosen = plan.lose_writes_of.is_none_or(|k| k == kind)
            && plan.lose_writes_sized.as_ref().is_none_or(|r| r.contains(&(data.len() as u64)));
        if plan.lose_writes > 0 && chosen {
            plan.lose_writes -= 1;
            plan.lost.push((kind, id.to_string()));
            return Ok(());
        }
        drop(plan);
        self.inner.write(kind, id, data)
    }

    fn delete(&self, kind: ObjectKind, id: &str) -> StorageResult<()> {
        drop(self.enter(&name(kind, id))?);
        self.inner.delete(kind, id)
    }

    fn stat(&self, kind: ObjectKind, id: &str) -> StorageResult<u64> {
        let plan = self.enter(&name(kind, id))?;
        let served = plan.substitute.get(&(kind, id.to_string())).cloned();
        drop(plan);
        match served {
            Some((k, other)) => self.inner.stat(k, &other),
            None => self.inner.stat(kind, id),
        }
    }
}
