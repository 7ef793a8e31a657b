//! Wrappers that add behaviour around any [`crate::Storage`]: retries, counting, and fault
//! injection for tests. They compose: `RetryStorage::new(CountingStorage::new(local))`.

mod counting;
mod fault;
mod retry;

pub use counting::{CountingStorage, StorageStats};
pub use fault::{FaultPlan, FaultStorage, InjectedError, ListOrder, ObjectName};
pub use retry::{RetryPolicy, RetryStorage};
