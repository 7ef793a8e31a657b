//! An offsite repository in an S3 bucket (AWS, Garage, Ceph, MinIO, R2, B2, s3s-fs …), through
//! Apache OpenDAL's S3 service.
//!
//! `s3://bucket/prefix` stores the repository's objects under `prefix/` in `bucket`, in the
//! same layout as every other backend (`config`, `keys/<id>`, `data/<xx>/<id>`, `index/<id>`,
//! `snapshots/<id>`, `locks/<id>`). [`S3Storage`] implements the blocking
//! [`offsite_backend::Storage`] trait by owning a small tokio runtime and blocking on it inside
//! each call.
//!
//! # Timeouts and retries
//!
//! Every HTTP request runs through this crate's own transport (reqwest, rustls with ring), which
//! fails a request when no byte moved for [`RemoteOptions::idle_timeout`] in either direction
//! (request body sent, response headers or body received) and bounds connecting by
//! [`RemoteOptions::connect_timeout`]. A transfer that keeps moving is never cut, however long
//! it takes. On top of that, OpenDAL's `TimeoutLayer` bounds control requests and every
//! streamed read step. Retries are not OpenDAL's (no `RetryLayer`): each call runs through
//! [`offsite_backend::retry::Retrier`], the mechanism every remote storage shares, so transient
//! failures (connection errors, timeouts, 5xx, 429) are retried with exponential backoff under
//! one give-up budget for all calls and threads of the storage. Once the storage has failed for
//! [`RemoteOptions::give_up_after`] (counted from when the link stopped moving), calls fail with
//! [`offsite_backend::StorageError::Transient`], "storage unreachable: s3://… at ENDPOINT:
//! CAUSE; gave up after 7.2s of failures (--give-up-after 6s)". An attempt that moved nothing
//! for give-up-after + connect + idle timeouts (an upload waiting for its answer, which the
//! transport lets wait longer than the idle timeout) is abandoned then, as failing since it
//! stopped moving.
//!
//! # HTTPS
//!
//! The server's certificate is checked against the platform's trust store, or, when
//! [`RemoteOptions::ca_cert`] (`--cacert`) is set and the endpoint is https, against exactly
//! the certificates of that PEM file. A certificate that is not trusted fails the call at once,
//! without retries: "TLS connection to s3://… at ENDPOINT: the server's TLS certificate is not
//! trusted (…)".
//!
//! # No overwrite, without conditional writes
//!
//! S3 has no create-if-absent that every server honours (`If-None-Match: *` is ignored by
//! Garage, for one), so `write` asks for the object first and refuses with AlreadyExists if it
//! is there. Two writers racing for the same name both upload; since names are content hashes
//! (and the config is written once, by `init`), they write identical bytes.
//!
//! [`RemoteOptions::idle_timeout`]: offsite_backend::RemoteOptions::idle_timeout
//! [`RemoteOptions::connect_timeout`]: offsite_backend::RemoteOptions::connect_timeout
//! [`RemoteOptions::give_up_after`]: offsite_backend::RemoteOptions::give_up_after
//! [`RemoteOptions::ca_cert`]: offsite_backend::RemoteOptions::ca_cert

mod errors;
mod location;
mod storage;
mod tls;
mod transport;

pub use location::S3Url;
pub use storage::{S3Options, S3Storage};
