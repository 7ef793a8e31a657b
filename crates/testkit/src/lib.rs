//! Test helpers shared by offsite's test suites:
//! - [`FaultProxy`] (module [`proxy`]): a TCP proxy that breaks the link on command, so a
//!   backend's timeouts and retries are tested against a real server;
//! - [`freeze`]: freezing a storage's link (or its server process) under several threads'
//!   calls, and measuring how long the calls take to give up;
//! - [`certs`]: a test CA and a server certificate for HTTPS tests (made by `openssl`);
//! - [`prereq`]: skip a test whose prerequisite is missing, except under `CI=true` (fail);
//! - [`tree`]: a generator of source trees holding every edge case the archiver records, a
//!   deterministic mutator, and a comparer of two trees (content, metadata, hard links, holes).

pub mod certs;
pub mod freeze;
pub mod prereq;
pub mod proxy;
pub mod tree;

pub use proxy::{FaultProxy, ProxyStats};
