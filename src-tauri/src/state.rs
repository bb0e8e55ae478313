//! What the app keeps while it runs: the job queue (which owns the library), the settings,
//! the model store, and the player for the job being listened to.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use stemdeck_engine::ModelStore;
use stemdeck_engine::input::source::{LinkSource, SourceOptions};
use stemdeck_engine::jobs::library::Library;
use stemdeck_engine::jobs::queue::{JobQueue, QueueSources};
use stemdeck_engine::jobs::settings::AppSettings;
use stemdeck_engine::models::status::ModelDownloads;
use stemdeck_engine::pipeline::cache::ResultCache;
use stemdeck_engine::player::StemPlayer;

/// Overrides the app data folder (library and settings); tests use a fresh one.
pub const DATA_DIR_ENV: &str = "STEMDECK_DATA_DIR";

pub struct AppState {
    pub queue: JobQueue,
    pub settings: Mutex<AppSettings>,
    pub data_dir: PathBuf,
    /// Where the player keeps the audio it reads (finished files decoded for playback).
    pub playback_dir: PathBuf,
    pub store: ModelStore,
    pub player: Arc<Mutex<Option<StemPlayer>>>,
    /// Bumped whenever a new watcher subscribes, so that the previous one stops.
    pub job_watch: Arc<AtomicU64>,
    pub player_watch: Arc<AtomicU64>,
    /// Models being downloaded from the settings.
    pub downloads: Arc<ModelDownloads>,
    /// Messages for the user from start-up, such as a library that had to be set aside.
    pub notices: Vec<String>,
}

impl AppState {
    /// Opens the library and settings in `data_dir` and starts the queue. Must be called
    /// inside the async runtime, where the queue's worker runs.
    pub fn open(data_dir: &Path, store: ModelStore) -> Self {
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            tracing::warn!("cannot create {}: {e}", data_dir.display());
        }
        let playback_dir = data_dir.join("playback");
        // Whatever is here is from a run that ended without cleaning up.
        let _ = std::fs::remove_dir_all(&playback_dir);
        let (library, warning) = Library::open(data_dir);
        let settings = AppSettings::load(data_dir);
        let queue = JobQueue::start(
            library,
            store.clone(),
            settings.output_dir_or_default(),
            QueueSources {
                links: link_source(data_dir, &settings),
                results: ResultCache::new(data_dir.join("results.json")),
            },
        );
        Self {
            queue,
            settings: Mutex::new(settings),
            data_dir: data_dir.to_owned(),
            playback_dir,
            store,
            player: Arc::new(Mutex::new(None)),
            job_watch: Arc::new(AtomicU64::new(0)),
            player_watch: Arc::new(AtomicU64::new(0)),
            downloads: Arc::default(),
            notices: warning.into_iter().collect(),
        }
    }

    pub fn settings(&self) -> AppSettings {
        self.settings.lock().expect("settings lock").clone()
    }
}

/// Links' audio is kept with the library (the songs a user separated are worth keeping),
/// fetched by the built-in downloader, then the configured or installed yt-dlp.
pub fn link_source(data_dir: &Path, settings: &AppSettings) -> LinkSource {
    LinkSource::standard(
        data_dir.join("downloads"),
        &SourceOptions {
            ytdlp_path: settings.ytdlp_path.clone(),
        },
    )
}
