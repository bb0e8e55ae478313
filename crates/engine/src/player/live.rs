//! A running job's stems as they are separated, for listening before the job is done: the
//! queue appends each finished chunk, and a player reads up to the separated edge. When
//! the job ends, the player learns how: its final files to carry on from, or why nothing
//! was kept.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::events::StemsChunk;
use crate::pipeline::StemFile;

use super::store::StemStore;

/// How a job that could be listened to ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEnd {
    /// Still separating.
    Running,
    /// Done: its files, which the player switches to.
    Done(Vec<StemFile>),
    /// Cancelled or failed: nothing was kept, for this reason.
    Gone(String),
}

/// The stems of a job being separated.
pub struct LiveStems {
    job_id: u64,
    store: Arc<StemStore>,
    end: Mutex<LiveEnd>,
}

impl LiveStems {
    /// Starts a store for the job that sent `first`, in a hidden folder inside `parent`.
    pub fn start(job_id: u64, parent: &Path, first: &StemsChunk<'_>) -> Result<Self> {
        let store = StemStore::create(
            parent,
            first.names.to_vec(),
            first.sample_rate,
            first.total_frames as u64,
        )?;
        Ok(Self {
            job_id,
            store: Arc::new(store),
            end: Mutex::new(LiveEnd::Running),
        })
    }

    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// Takes the next chunk; chunks arrive in order, without gaps.
    pub fn append(&self, chunk: &StemsChunk<'_>) -> Result<()> {
        self.store.append(chunk.stems)
    }

    pub fn store(&self) -> &Arc<StemStore> {
        &self.store
    }

    /// Seconds separated so far.
    pub fn separated_secs(&self) -> f64 {
        use stemdeck_playback::StemSource;
        self.store.edge() as f64 / self.store.sample_rate().max(1) as f64
    }

    pub fn end(&self) -> LiveEnd {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The job is done and wrote `stems`.
    pub fn finish(&self, stems: Vec<StemFile>) {
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = LiveEnd::Done(stems);
    }

    /// The job ended without stems, for `reason`.
    pub fn abandon(&self, reason: String) {
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = LiveEnd::Gone(reason);
    }
}
