//! Many machines separating one queue: the job protocol between `stemdeck serve` and its
//! workers, over Redis Streams, and both of its ends: [`RedisRunner`] is the engine's
//! [`RemoteRunner`](stemdeck_engine::jobs::remote::RemoteRunner) for the server, and
//! [`worker::run`] is `stemdeck worker`. The engine stays unaware of Redis; everything
//! crosses as JSON ([`protocol`]), with paths relative to the folder all machines share.
//!
//! - A job is a [`Ticket`] added to one stream; workers read it through one consumer group,
//!   one at a time each ([`JobStream`]).
//! - A worker keeps its claim fresh while it works; a ticket whose worker went quiet past
//!   the idle limit is claimed by another (`XAUTOCLAIM`) and the job starts again.
//! - Only one attempt may finish a job: the first to [`JobStream::win`] it publishes its
//!   files; any other attempt discards its own.
//! - Progress and the end of each job travel on a per-job stream ([`Progress`]); cancel is
//!   a flag the worker checks between blocks.
//! - Workers announce themselves with an expiring heartbeat ([`Workers`]).

mod error;
mod keys;
mod progress;
pub mod protocol;
mod reconnect;
mod runner;
mod shared;
mod stream;
pub mod worker;
mod workers;

pub use error::ClusterError;
pub use progress::{Progress, ProgressEntry};
pub use runner::{QueueConfig, RedisRunner};
pub use shared::{Bucket, SharedStore, StoreError};
pub use stream::{Claim, JobStream, Ticket};
pub use worker::{WorkerConfig, WorkerTotals};
pub use workers::{WorkerInfo, Workers};

pub type Result<T> = std::result::Result<T, ClusterError>;

/// Opens a connection to the Redis named by `url` (`redis://HOST:PORT/DB`).
pub fn connect(url: &str) -> Result<redis::Connection> {
    let client = redis::Client::open(url).map_err(|source| ClusterError::Address {
        url: url.to_owned(),
        source,
    })?;
    client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(|source| ClusterError::Unreachable {
            url: url.to_owned(),
            source,
        })
}
