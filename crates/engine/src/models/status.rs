//! Whether each model can be used now, and downloads that report it as they go: what the
//! app's settings and the server's `/models` both show.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::models::manager::{self, PresenceState};
use crate::models::manifest::ModelInfo;
use crate::models::store::ModelStore;

/// A model and whether it can be used right now.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelStatus {
    pub name: String,
    pub description: String,
    pub sources: Vec<String>,
    /// Download size, when the manifest knows it.
    pub bytes: Option<u64>,
    /// Separation time compared with htdemucs (4 for the htdemucs_ft bag).
    pub relative_time: f64,
    /// What its files here take on disk; `None` when none is here.
    pub disk_bytes: Option<u64>,
    /// Its files here are an imported copy, not the official download.
    pub imported: bool,
    #[serde(flatten)]
    pub availability: Availability,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Availability {
    Ready,
    Missing,
    Downloading { fraction: Option<f64> },
}

/// Why a download was not started.
#[derive(Debug, thiserror::Error)]
pub enum DownloadRefused {
    #[error("{0} is already downloading")]
    AlreadyDownloading(String),
    #[error("{0} is downloading; wait for the download to finish before removing it")]
    Busy(String),
}

/// The models being downloaded now, with bytes so far and the total.
#[derive(Default)]
pub struct ModelDownloads {
    running: Mutex<HashMap<String, (u64, Option<u64>)>>,
}

impl ModelDownloads {
    pub fn status(&self, store: &ModelStore, model: &ModelInfo) -> ModelStatus {
        let downloading = self
            .running
            .lock()
            .expect("downloads lock")
            .get(&model.name)
            .copied();
        let here = manager::presence(store, model);
        let availability = match downloading {
            Some((done, total)) => Availability::Downloading {
                fraction: total.filter(|t| *t > 0).map(|t| done as f64 / t as f64),
            },
            None if here.state() == PresenceState::Ready => Availability::Ready,
            // Part of a bag counts as missing: downloading it fetches only the rest.
            None => Availability::Missing,
        };
        ModelStatus {
            name: model.name.clone(),
            description: model.description.clone(),
            sources: model.sources.clone(),
            bytes: model.files.iter().map(|f| f.bytes).sum(),
            relative_time: model.relative_time,
            disk_bytes: here.disk_bytes(),
            imported: here.imported(),
            availability,
        }
    }

    pub fn is_downloading(&self, name: &str) -> bool {
        self.running
            .lock()
            .expect("downloads lock")
            .contains_key(name)
    }

    /// Claims `model` for one download; refused while another runs.
    pub fn begin(&self, model: &ModelInfo) -> std::result::Result<(), DownloadRefused> {
        let mut running = self.running.lock().expect("downloads lock");
        if running.contains_key(&model.name) {
            return Err(DownloadRefused::AlreadyDownloading(model.name.clone()));
        }
        running.insert(model.name.clone(), (0, None));
        Ok(())
    }

    /// Downloads a model claimed with [`begin`](Self::begin) into the store (blocking),
    /// calling `on_progress` with its status about ten times a second, and releases it.
    pub fn run(
        &self,
        store: &ModelStore,
        model: &ModelInfo,
        on_progress: &(dyn Fn(ModelStatus) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<ModelStatus> {
        // A whole-model percent only when every file's size is known; otherwise the
        // current file's own total is the best there is.
        let known_total: Option<u64> = model.files.iter().map(|f| f.bytes).sum();
        let last = Mutex::new(Instant::now() - Duration::from_secs(1));
        let result = store.ensure(
            model,
            &|file, bytes, total| {
                {
                    let mut last = last.lock().expect("last lock");
                    if last.elapsed() < Duration::from_millis(100) && total != Some(bytes) {
                        return;
                    }
                    *last = Instant::now();
                }
                let earlier: u64 = model
                    .files
                    .iter()
                    .take_while(|f| f.name != file.name)
                    .filter_map(|f| f.bytes)
                    .sum();
                let progress = match known_total {
                    Some(whole) => (earlier + bytes, Some(whole)),
                    None => (bytes, total),
                };
                self.running
                    .lock()
                    .expect("downloads lock")
                    .insert(model.name.clone(), progress);
                on_progress(self.status(store, model));
            },
            cancelled,
        );
        self.running
            .lock()
            .expect("downloads lock")
            .remove(&model.name);
        result.map(|_| self.status(store, model))
    }

    /// Deletes a model's files, unless it is downloading.
    pub fn remove(&self, store: &ModelStore, model: &ModelInfo) -> Result<ModelStatus> {
        if self.is_downloading(&model.name) {
            return Err(DownloadRefused::Busy(model.name.clone()).into());
        }
        manager::remove_model(store, model)?;
        Ok(self.status(store, model))
    }
}
