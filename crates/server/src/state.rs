//! What the server keeps while it runs: the engine's queue (which owns the library), the
//! job defaults, the model store and its downloads, the metrics and the rate limiter.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use stemdeck_cluster::RedisRunner;
use stemdeck_engine::ModelStore;
use stemdeck_engine::input::source::{LinkSource, SourceOptions};
use stemdeck_engine::jobs::library::Library;
use stemdeck_engine::jobs::queue::{JobQueue, QueueSources};
use stemdeck_engine::jobs::settings::AppSettings;
use stemdeck_engine::models::status::ModelDownloads;
use stemdeck_engine::pipeline::cache::ResultCache;
use tokio::sync::watch;

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::{ServeConfig, SubmitLimit};

pub struct ServerState {
    pub queue: JobQueue,
    /// The shared queue the jobs are handed to, when workers run them.
    pub shared: Option<Arc<RedisRunner>>,
    /// What a job takes when a request leaves an option out (`settings.json`, as the app).
    pub settings: Mutex<AppSettings>,
    pub data_dir: PathBuf,
    /// Where uploads are kept: one random folder per upload.
    pub uploads_dir: PathBuf,
    pub store: ModelStore,
    pub downloads: Arc<ModelDownloads>,
    pub metrics: Metrics,
    pub limiter: DefaultKeyedRateLimiter<IpAddr>,
    pub token: Option<String>,
    pub max_upload_bytes: u64,
    /// Turns true when the server is stopping: event streams end.
    pub shutdown: watch::Sender<bool>,
    /// Start-up messages, such as a library that had to be set aside.
    pub notices: Vec<String>,
}

impl ServerState {
    /// Opens the library and settings in the data folder and starts the queue. Must run
    /// inside the tokio runtime, where the queue's worker runs.
    pub fn open(config: &ServeConfig, token: Option<String>) -> Result<Self, ServeError> {
        let data_dir = config.data_dir.clone();
        let own_stems = config
            .output_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("stems"));
        let shared = match &config.queue {
            Some(queue) => Some(Arc::new(RedisRunner::connect(
                queue.clone(),
                &data_dir,
                own_stems.clone(),
            )?)),
            None => None,
        };
        // Workers read uploads from a shared folder, so they are kept there.
        let uploads_dir = shared.as_ref().map_or_else(
            || data_dir.join("uploads"),
            |r| r.inputs_dir().to_path_buf(),
        );
        std::fs::create_dir_all(&uploads_dir).map_err(|source| ServeError::DataDir {
            path: uploads_dir.clone(),
            source,
        })?;
        let (library, warning) = Library::open(&data_dir);
        let settings = AppSettings::load(&data_dir);
        let output_root = shared
            .as_ref()
            .map_or(own_stems, |r| r.results_dir().to_path_buf());
        let links = LinkSource::standard(
            data_dir.join("downloads"),
            &SourceOptions {
                ytdlp_path: config.ytdlp.clone(),
            },
        );
        let sources = QueueSources {
            links,
            results: ResultCache::new(data_dir.join("results.json")),
        };
        let queue = match &shared {
            Some(runner) => JobQueue::start_handing_over(
                library,
                config.store.clone(),
                output_root,
                sources,
                runner.clone(),
            ),
            None => JobQueue::start(library, config.store.clone(), output_root, sources),
        };
        let metrics = Metrics::new();
        metrics.watch(&queue);
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            queue,
            shared,
            settings: Mutex::new(settings),
            data_dir,
            uploads_dir,
            store: config.store.clone(),
            downloads: Arc::default(),
            metrics,
            limiter: RateLimiter::keyed(quota(config.submit_limit)),
            token,
            max_upload_bytes: config.max_upload_bytes,
            shutdown,
            notices: warning.into_iter().collect(),
        })
    }

    pub fn settings(&self) -> AppSettings {
        self.settings.lock().expect("settings lock").clone()
    }
}

fn quota(limit: SubmitLimit) -> Quota {
    let per_minute = NonZeroU32::new(limit.per_minute.max(1)).expect("at least one");
    let burst = NonZeroU32::new(limit.burst.max(1)).expect("at least one");
    Quota::per_minute(per_minute).allow_burst(burst)
}
