//! Jobs that other machines run: with a shared queue (`stemdeck serve --queue`), the
//! [`JobQueue`](crate::jobs::queue::JobQueue) hands each job over and follows it to its
//! end instead of running it. What carries the jobs (Redis, in `stemdeck-cluster`) is
//! behind [`RemoteRunner`], so the engine knows nothing of it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::library::{Job, JobStage, JobTimings};
use crate::jobs::progress::DownloadBytes;
use crate::pipeline::run::Outcome;

/// The shared queue, as the job queue uses it. Every call may block on the network; the
/// queue calls them off its async tasks.
pub trait RemoteRunner: Send + Sync + 'static {
    /// Puts `job` on the shared queue; returns the run it became. Each hand-over is a new
    /// run, so that news of an earlier run (before a retry) is never taken for this one.
    fn hand_over(&self, job: &Job) -> Result<u64, RemoteError>;

    /// What happened to `runs` since the last call, waiting up to `wait` when nothing
    /// has. A run's news comes in the order it happened.
    fn news(&self, runs: &[u64], wait: Duration) -> Result<Vec<RemoteNews>, RemoteError>;

    /// Asks whoever runs `run` to stop; a run no worker has taken yet never starts.
    fn cancel(&self, run: u64) -> Result<(), RemoteError>;
}

/// The shared queue could not be reached, or answered with something it should not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteNews {
    pub run: u64,
    pub report: RemoteReport,
}

/// A run going on, on `worker`. A run that starts again on another worker (its first
/// went quiet) reports from the start again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteProgress {
    pub worker: String,
    pub stage: JobStage,
    /// 0 to 1 over the whole job.
    pub progress: f64,
    pub eta_secs: Option<f64>,
    pub elapsed_secs: f64,
    /// The song's title once the worker knows it (a video's, after its download).
    pub title: Option<String>,
    pub download: Option<DownloadBytes>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteReport {
    Progress(RemoteProgress),
    /// Its files are complete, where `outcome` says (on this machine's view of the shared
    /// folder).
    Done {
        outcome: Box<Outcome>,
        timings: JobTimings,
        elapsed_secs: f64,
    },
    Failed {
        error: String,
        can_retry: bool,
        elapsed_secs: f64,
    },
    Cancelled,
}
