//! Settings every remote backend (SFTP, S3, REST, rclone) honours, so that no call can hang and
//! no slow link is cut for being slow.

use std::time::Duration;

/// Timeouts, retry budget and concurrency of a remote backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Give up on a transfer when no byte moved for this long (not a limit on its length).
    pub idle_timeout: Duration,
    /// Give up on establishing a connection after this long.
    pub connect_timeout: Duration,
    /// Stop retrying transient failures of one call after this long, and fail with a clear
    /// "storage unreachable" error.
    pub give_up_after: Duration,
    /// Parallel requests (uploads, downloads) the backend allows at once.
    pub concurrency: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            give_up_after: Duration::from_secs(600),
            concurrency: 4,
        }
    }
}
