//! The job queue: jobs run one at a time on a background tokio task, their heavy work on
//! a blocking thread, with progress broadcast to any number of listeners (the app's
//! windows). The queue owns the library and saves it after every change of state.
//!
//! With a shared queue ([`JobQueue::start_handing_over`]) the jobs run on other machines
//! instead: each is handed over as it is queued, any number run at once, and their news
//! comes back through the same library and broadcast.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use stemdeck_demucs::Precision;

use crate::device::DeviceChoice;
use crate::error::EngineError;
use crate::events::{JobEvent, JobListener, StemsChunk};
use crate::input::intake::Refused;
use crate::input::link::VideoLink;
use crate::input::source::LinkSource;
use crate::jobs::library::{Job, JobSource, JobStage, JobTimings, Library, LibraryError};
use crate::jobs::progress::{Phase, ProgressEstimator, stage_of};
use crate::jobs::remote::{RemoteNews, RemoteProgress, RemoteReport, RemoteRunner};
use crate::jobs::settings::JobSettings;
use crate::models::store::ModelStore;
use crate::pipeline::cache::ResultCache;
use crate::pipeline::run::{Input, Outcome, RunOptions, Sources, run_input};
use crate::pipeline::separate::{ModelChoice, Separator};
use crate::player::{LiveStems, MixSettings};

/// What the UI hears about a job while it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobUpdate {
    pub id: u64,
    /// The job's title, which becomes the video's title once a link is fetched.
    pub title: String,
    pub stage: JobStage,
    /// 0 to 1 over the whole job.
    pub progress: f64,
    pub eta_secs: Option<f64>,
    pub elapsed_secs: f64,
    pub error: Option<String>,
    /// Whether a Retry is offered: only where running the job again could help.
    pub can_retry: bool,
    /// For a download (the song's audio, or the model): bytes so far and the total.
    pub download: Option<(u64, Option<u64>)>,
    /// True when the stems were reused from an earlier identical job.
    pub from_cache: bool,
    /// True once a running job has separated audio that can be listened to.
    pub listenable: bool,
}

impl JobUpdate {
    /// A job as the library has it, between runs or before one: its progress is 1 when
    /// done, else 0.
    pub fn at_rest(job: &Job) -> Self {
        Self {
            id: job.id,
            title: job.title.clone(),
            stage: job.stage,
            progress: if job.stage == JobStage::Done {
                1.0
            } else {
                0.0
            },
            eta_secs: None,
            elapsed_secs: job.elapsed_secs,
            error: job.error.clone(),
            can_retry: job.stage.is_finished() && job.stage != JobStage::Done && job.can_retry,
            download: None,
            from_cache: job.from_cache,
            listenable: false,
        }
    }
}

/// Why a queue command was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("there is no job {0}")]
    NoSuchJob(u64),
    #[error("{0}: file not found")]
    FileNotFound(PathBuf),
    #[error("{0}: not a file Stemdeck can separate ({1})")]
    Unsupported(PathBuf, String),
    #[error("job {0} can only be retried once it has failed, been cancelled or been interrupted")]
    NotRetryable(u64),
    #[error("retrying “{title}” would fail the same way: {reason}")]
    RetryCannotHelp { title: String, reason: String },
    #[error("the shared queue cannot be reached: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Library(#[from] LibraryError),
}

/// What a job handed over by an earlier run says when this run keeps no shared queue.
pub const STRANDED: &str = "Interrupted: this job was handed to the shared queue, and Stemdeck now runs without it. Retry to run it here.";

struct Shared {
    library: Mutex<Library>,
    wake: Notify,
    updates: broadcast::Sender<JobUpdate>,
    running: Mutex<Option<(u64, Arc<AtomicBool>)>>,
    store: ModelStore,
    /// What a job takes when it starts; changing it does not move a running job.
    places: Mutex<Places>,
    separator: Mutex<Option<(LoadedAs, Arc<Separator>)>>,
    results: ResultCache,
    /// The running job's stems as far as they are separated, once it has some.
    live: Mutex<Option<Arc<LiveStems>>>,
    /// Running jobs' latest progress, for whoever asks rather than listens.
    latest: Mutex<HashMap<u64, JobUpdate>>,
    /// Set by [`JobQueue::stop`]: no job starts, and the running one goes back to the queue.
    stopping: AtomicBool,
    /// The shared queue jobs are handed to, when other machines run them.
    remote: Option<Arc<dyn RemoteRunner>>,
}

/// Where jobs write their stems and fetch their links.
#[derive(Clone)]
struct Places {
    output_root: PathBuf,
    links: Arc<LinkSource>,
}

/// Where a queue's jobs find linked audio and earlier results.
pub struct QueueSources {
    pub links: LinkSource,
    pub results: ResultCache,
}

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    shared: Arc<Shared>,
}

impl JobQueue {
    /// Starts the worker on the current tokio runtime.
    pub fn start(
        mut library: Library,
        store: ModelStore,
        output_root: PathBuf,
        sources: QueueSources,
    ) -> Self {
        // Jobs handed to a shared queue by an earlier run cannot be followed from here.
        let stranded: Vec<u64> = library
            .handed_over()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in stranded {
            if let Some(job) = library.get_mut(id) {
                job.stage = JobStage::Interrupted;
                job.error = Some(STRANDED.into());
                job.can_retry = true;
                job.remote_run = None;
            }
        }
        let queue = Self::open(library, store, output_root, sources, None);
        tokio::spawn(worker(queue.shared.clone()));
        queue
    }

    /// Starts a queue whose jobs other machines run: each job is handed to `remote` as it
    /// is queued (jobs handed over before a restart are followed again), and its progress
    /// and end come back into the library. Must run inside a tokio runtime.
    pub fn start_handing_over(
        library: Library,
        store: ModelStore,
        output_root: PathBuf,
        sources: QueueSources,
        remote: Arc<dyn RemoteRunner>,
    ) -> Self {
        let queue = Self::open(library, store, output_root, sources, Some(remote.clone()));
        tokio::spawn(hand_over(queue.shared.clone(), remote.clone()));
        let follower = queue.shared.clone();
        std::thread::Builder::new()
            .name("remote-jobs".into())
            .spawn(move || follow(&follower, remote.as_ref()))
            .expect("a thread starts");
        queue
    }

    fn open(
        library: Library,
        store: ModelStore,
        output_root: PathBuf,
        sources: QueueSources,
        remote: Option<Arc<dyn RemoteRunner>>,
    ) -> Self {
        // A run that was killed left working files under temporary names: clear them
        // before anything new is written (the library already marks its jobs interrupted).
        crate::pipeline::leftovers::sweep(&output_root, 1);
        let mut flat = vec![
            library.dir(),
            sources.links.cache_dir(),
            sources.results.dir(),
        ];
        // The app keeps its library and result cache in one folder: sweep it once.
        flat.sort();
        flat.dedup();
        for dir in flat {
            crate::pipeline::leftovers::sweep(dir, 0);
        }
        let (updates, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            library: Mutex::new(library),
            wake: Notify::new(),
            updates,
            running: Mutex::new(None),
            store,
            places: Mutex::new(Places {
                output_root,
                links: Arc::new(sources.links),
            }),
            separator: Mutex::new(None),
            results: sources.results,
            live: Mutex::new(None),
            latest: Mutex::default(),
            stopping: AtomicBool::new(false),
            remote,
        });
        Self { shared }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobUpdate> {
        self.shared.updates.subscribe()
    }

    /// Every job, with the stems of finished ones checked against the disk (a user may
    /// have moved or deleted them).
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = self
            .shared
            .library
            .lock()
            .expect("library lock")
            .jobs()
            .to_vec();
        jobs.iter_mut().for_each(Job::check_stems);
        jobs
    }

    pub fn job(&self, id: u64) -> Option<Job> {
        let mut job = self
            .shared
            .library
            .lock()
            .expect("library lock")
            .get(id)
            .cloned()?;
        job.check_stems();
        Some(job)
    }

    /// The latest progress of job `id` while it runs.
    pub fn progress(&self, id: u64) -> Option<JobUpdate> {
        self.shared
            .latest
            .lock()
            .expect("latest lock")
            .get(&id)
            .cloned()
    }

    /// The job running now, if any.
    pub fn running(&self) -> Option<u64> {
        self.shared
            .running
            .lock()
            .expect("running lock")
            .as_ref()
            .map(|(id, _)| *id)
    }

    /// Stops the queue for shutdown: no further job starts, and the running one is
    /// cancelled (leaving no partial file) and put back in the queue, so that it runs
    /// again at the next start. Returns once it has stopped, or after `patience`.
    pub async fn stop(&self, patience: std::time::Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some((_, flag)) = self.shared.running.lock().expect("running lock").as_ref() {
            flag.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + patience;
        while self.running().is_some() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The stems separated so far of job `id`, while it runs and has some.
    pub fn live(&self, id: u64) -> Option<Arc<LiveStems>> {
        self.shared.live_of(id)
    }

    /// Remembers the mixer's settings for job `id`, for the next time it is opened.
    pub fn remember_mix(&self, id: u64, mix: MixSettings) -> Result<(), QueueError> {
        let mut library = self.shared.library.lock().expect("library lock");
        let job = library.get_mut(id).ok_or(QueueError::NoSuchJob(id))?;
        if job.mix.as_ref() == Some(&mix) {
            return Ok(());
        }
        job.mix = Some(mix);
        save(&library)
    }

    pub fn set_output_root(&self, root: PathBuf) {
        self.shared.places.lock().expect("places lock").output_root = root;
    }

    /// Queues a file, probed by its content. Folders are the caller's to expand (or use
    /// [`JobQueue::add_paths`]).
    pub fn add_file(&self, path: &Path, settings: JobSettings) -> Result<Job, QueueError> {
        if let Some(reason) = crate::input::intake::audio_file_problem(path) {
            return Err(if path.exists() {
                QueueError::Unsupported(path.to_owned(), reason)
            } else {
                QueueError::FileNotFound(path.to_owned())
            });
        }
        self.add_probed(path, settings)
    }

    /// Queues what the user dropped or picked: folders expanded, every file probed once by
    /// [`expand_paths`](crate::input::intake::expand_paths), and the rest refused beside
    /// its name.
    pub fn add_paths(&self, paths: &[PathBuf], settings: JobSettings) -> (Vec<Job>, Vec<Refused>) {
        let (files, mut refused) = crate::input::intake::expand_paths(paths);
        let mut added = Vec::new();
        for file in files {
            match self.add_probed(&file, settings.clone()) {
                Ok(job) => added.push(job),
                Err(e) => refused.push(Refused::path(&file, e.to_string())),
            }
        }
        (added, refused)
    }

    fn add_probed(&self, path: &Path, settings: JobSettings) -> Result<Job, QueueError> {
        let title = crate::pipeline::separate::output_folder_name(path);
        self.add(
            title,
            JobSource::File {
                path: path.to_owned(),
            },
            settings,
        )
    }

    /// Changes where links are downloaded from (a new yt-dlp path); running jobs keep
    /// the source they started with.
    pub fn set_link_source(&self, links: LinkSource) {
        self.shared.places.lock().expect("places lock").links = Arc::new(links);
    }

    /// Queues a video. Its title is the video's own when it was downloaded before, else
    /// the link until the download reveals it.
    pub fn add_link(&self, link: &VideoLink, settings: JobSettings) -> Result<Job, QueueError> {
        let links = self
            .shared
            .places
            .lock()
            .expect("places lock")
            .links
            .clone();
        let title = links
            .cached(&link.id)
            .map_or_else(|| link.text.clone(), |audio| audio.title);
        self.add(
            title,
            JobSource::Link {
                video: link.id.clone(),
                url: link.text.clone(),
            },
            settings,
        )
    }

    fn add(
        &self,
        title: String,
        source: JobSource,
        settings: JobSettings,
    ) -> Result<Job, QueueError> {
        let job = {
            let mut library = self.shared.library.lock().expect("library lock");
            let job = library.add(title, source, settings);
            save(&library)?;
            job
        };
        self.shared.send(&job, 0.0, None);
        self.shared.wake.notify_one();
        Ok(job)
    }

    /// Stops a running job within one segment, or takes a queued one off the queue.
    /// A job on the shared queue is asked to stop; one no worker has taken yet ends now.
    pub fn cancel(&self, id: u64) -> Result<(), QueueError> {
        if let Some((running, flag)) = self.shared.running.lock().expect("running lock").as_ref()
            && *running == id
        {
            flag.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(remote) = &self.shared.remote {
            let handed = {
                let library = self.shared.library.lock().expect("library lock");
                let job = library.get(id).ok_or(QueueError::NoSuchJob(id))?;
                job.remote_run
                    .filter(|_| !job.stage.is_finished())
                    .map(|run| (run, job.stage))
            };
            if let Some((run, stage)) = handed {
                remote
                    .cancel(run)
                    .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                if stage != JobStage::Queued {
                    // The worker stops within a second and says so.
                    return Ok(());
                }
            }
        }
        self.shared
            .finish(id, JobStage::Cancelled, None, None, 0.0, None)
            .ok_or(QueueError::NoSuchJob(id))
    }

    pub fn retry(&self, id: u64) -> Result<(), QueueError> {
        {
            let mut library = self.shared.library.lock().expect("library lock");
            let job = library.get_mut(id).ok_or(QueueError::NoSuchJob(id))?;
            job.check_stems();
            // A finished job whose stems were moved or deleted can be separated again.
            let stems_gone = job.stage == JobStage::Done && !job.missing_stems.is_empty();
            if !stems_gone
                && !matches!(
                    job.stage,
                    JobStage::Failed | JobStage::Cancelled | JobStage::Interrupted
                )
            {
                return Err(QueueError::NotRetryable(id));
            }
            if !job.can_retry {
                return Err(QueueError::RetryCannotHelp {
                    title: job.title.clone(),
                    reason: job.error.clone().unwrap_or_default(),
                });
            }
            job.stage = JobStage::Queued;
            job.error = None;
            job.remote_run = None;
            job.stems.clear();
            job.mixes.clear();
            job.missing_stems.clear();
            let job = job.clone();
            save(&library)?;
            self.shared.send(&job, 0.0, None);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Removes a job from the library (its stem files stay where they are).
    pub fn remove(&self, id: u64) -> Result<Job, QueueError> {
        let _ = self.cancel(id);
        let mut library = self.shared.library.lock().expect("library lock");
        let job = library.remove(id).ok_or(QueueError::NoSuchJob(id))?;
        save(&library)?;
        Ok(job)
    }
}

impl Shared {
    fn next_queued(&self) -> Option<Job> {
        self.library
            .lock()
            .expect("library lock")
            .next_queued()
            .cloned()
    }

    fn live_of(&self, id: u64) -> Option<Arc<LiveStems>> {
        self.live
            .lock()
            .expect("live lock")
            .as_ref()
            .filter(|live| live.job_id() == id)
            .cloned()
    }

    fn send(&self, job: &Job, progress: f64, eta: Option<f64>) {
        let _ = self.updates.send(JobUpdate {
            progress,
            eta_secs: eta,
            ..JobUpdate::at_rest(job)
        });
    }

    fn set_stage(&self, id: u64, stage: JobStage) {
        let mut library = self.library.lock().expect("library lock");
        if let Some(job) = library.get_mut(id) {
            job.stage = stage;
            let _ = save(&library);
        }
    }

    /// Ends a job in `stage`; `None` when there is no such job.
    fn finish(
        &self,
        id: u64,
        stage: JobStage,
        error: Option<&EngineError>,
        result: Option<Outcome>,
        elapsed: f64,
        timings: Option<JobTimings>,
    ) -> Option<()> {
        let mut library = self.library.lock().expect("library lock");
        let job = library.get_mut(id)?;
        if job.stage.is_finished() && stage == JobStage::Cancelled {
            return Some(());
        }
        job.stage = stage;
        job.error = error.map(ToString::to_string);
        job.can_retry = error.is_none_or(EngineError::can_retry_help);
        job.elapsed_secs = elapsed;
        job.from_cache = false;
        if timings.is_some() {
            job.timings = timings;
        }
        if let Some(outcome) = result {
            job.title = outcome.title;
            job.output_dir = Some(outcome.dir);
            job.stems = outcome.stems;
            job.mixes = outcome
                .mixes
                .into_iter()
                .map(crate::pipeline::StemFile::from_path)
                .collect();
            job.from_cache = outcome.from_cache;
            job.analysis = outcome.analysis;
        }
        let job = job.clone();
        let _ = save(&library);
        drop(library);
        tracing::info!(
            job_id = job.id,
            stage = ?job.stage,
            elapsed_secs = elapsed,
            audio_secs = job.timings.as_ref().and_then(|t| t.audio_secs),
            rtf = job.timings.as_ref().and_then(|t| t.rtf),
            error = job.error.as_deref(),
            "job finished"
        );
        self.send(&job, if stage == JobStage::Done { 1.0 } else { 0.0 }, None);
        Some(())
    }

    /// The loaded model for `settings`, loading (and downloading) it when it changed.
    fn separator(
        &self,
        settings: &JobSettings,
        listener: &dyn JobListener,
    ) -> crate::Result<Arc<Separator>> {
        let mut cached = self.separator.lock().expect("separator lock");
        let key: LoadedAs = (settings.model.clone(), settings.device, settings.precision);
        if let Some((loaded, separator)) = cached.as_ref()
            && *loaded == key
        {
            return Ok(separator.clone());
        }
        *cached = None;
        let separator = Arc::new(Separator::load(
            &ModelChoice::Named(settings.model.clone()),
            settings.device,
            settings.precision,
            &self.store,
            listener,
        )?);
        *cached = Some((key, separator.clone()));
        Ok(separator)
    }
}

/// What a loaded model was loaded as: a job with other settings needs another.
type LoadedAs = (String, DeviceChoice, Precision);

/// Saves the library: the one way every change is kept. A failure is logged here, and
/// returned so that a command the user gave can tell them; the change stays in memory
/// and the next save writes it.
fn save(library: &Library) -> Result<(), QueueError> {
    library.save().map_err(|e| {
        tracing::warn!("{e}");
        QueueError::from(e)
    })
}

async fn worker(shared: Arc<Shared>) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let next = shared.next_queued();
        match next {
            None => shared.wake.notified().await,
            Some(job) => {
                let job_id = job.id;
                let cancel = Arc::new(AtomicBool::new(false));
                *shared.running.lock().expect("running lock") = Some((job.id, cancel.clone()));
                let runner = shared.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || run(&runner, &job, &cancel)).await;
                *shared.running.lock().expect("running lock") = None;
                shared.latest.lock().expect("latest lock").remove(&job_id);
                if let Err(e) = outcome {
                    tracing::error!("a job panicked: {e}");
                }
            }
        }
    }
}

/// Hands each newly queued job to the shared queue. A job that cannot be handed over
/// stays queued and is tried again: the queue may be restarting.
async fn hand_over(shared: Arc<Shared>, remote: Arc<dyn RemoteRunner>) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let next = shared.next_queued();
        let Some(job) = next else {
            shared.wake.notified().await;
            continue;
        };
        let runner = remote.clone();
        let handed = tokio::task::spawn_blocking({
            let job = job.clone();
            move || runner.hand_over(&job)
        })
        .await;
        match handed {
            Ok(Ok(run)) => {
                let mut library = shared.library.lock().expect("library lock");
                // Cancelled or removed meanwhile: the run is told to stop before it starts.
                match library.get_mut(job.id) {
                    Some(current) if current.stage == JobStage::Queued => {
                        current.remote_run = Some(run);
                        let _ = save(&library);
                        tracing::info!(job_id = job.id, run, "job handed to the shared queue");
                    }
                    _ => {
                        drop(library);
                        let _ = remote.cancel(run);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(job_id = job.id, "cannot hand the job over yet: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => tracing::error!("handing a job over panicked: {e}"),
        }
    }
}

/// Follows every handed-over job until it ends, on its own thread: news from the shared
/// queue becomes stages, progress and finished jobs here.
fn follow(shared: &Shared, remote: &dyn RemoteRunner) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let handed = shared.library.lock().expect("library lock").handed_over();
        if handed.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let runs: Vec<u64> = handed.iter().map(|&(_, run)| run).collect();
        let news = match remote.news(&runs, Duration::from_millis(500)) {
            Ok(news) => news,
            Err(e) => {
                tracing::warn!("cannot follow the shared queue yet: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for RemoteNews { run, report } in news {
            if let Some(&(id, _)) = handed.iter().find(|&&(_, r)| r == run) {
                shared.take_news(id, report);
            }
        }
    }
}

impl Shared {
    fn take_news(&self, id: u64, report: RemoteReport) {
        match report {
            RemoteReport::Progress(RemoteProgress {
                worker,
                stage,
                progress,
                eta_secs,
                elapsed_secs,
                title,
                download,
            }) => {
                let update = {
                    let mut library = self.library.lock().expect("library lock");
                    let Some(job) = library.get_mut(id) else {
                        return;
                    };
                    if job.stage.is_finished() {
                        return;
                    }
                    let changed =
                        job.stage != stage || title.as_ref().is_some_and(|t| *t != job.title);
                    job.stage = stage;
                    if let Some(title) = title {
                        job.title = title;
                    }
                    job.elapsed_secs = elapsed_secs;
                    let update = JobUpdate {
                        progress,
                        eta_secs,
                        download,
                        ..JobUpdate::at_rest(job)
                    };
                    if changed {
                        tracing::info!(job_id = id, stage = ?stage, worker, "job stage");
                        let _ = save(&library);
                    }
                    update
                };
                self.latest
                    .lock()
                    .expect("latest lock")
                    .insert(id, update.clone());
                let _ = self.updates.send(update);
            }
            RemoteReport::Done {
                outcome,
                timings,
                elapsed_secs,
            } => {
                self.latest.lock().expect("latest lock").remove(&id);
                self.finish(
                    id,
                    JobStage::Done,
                    None,
                    Some(*outcome),
                    elapsed_secs,
                    Some(timings),
                );
            }
            RemoteReport::Failed {
                error,
                can_retry,
                elapsed_secs,
            } => {
                self.latest.lock().expect("latest lock").remove(&id);
                self.finish_failed(id, error, can_retry, elapsed_secs);
            }
            RemoteReport::Cancelled => {
                self.latest.lock().expect("latest lock").remove(&id);
                self.finish(id, JobStage::Cancelled, None, None, 0.0, None);
            }
        }
    }

    /// Ends a job that failed elsewhere, with the reason its worker gave.
    fn finish_failed(&self, id: u64, error: String, can_retry: bool, elapsed: f64) {
        let job = {
            let mut library = self.library.lock().expect("library lock");
            let Some(job) = library.get_mut(id) else {
                return;
            };
            if job.stage.is_finished() {
                return;
            }
            job.stage = JobStage::Failed;
            job.error = Some(error);
            job.can_retry = can_retry;
            job.elapsed_secs = elapsed;
            let job = job.clone();
            let _ = save(&library);
            job
        };
        tracing::info!(job_id = id, error = job.error.as_deref(), "job failed");
        self.send(&job, 0.0, None);
    }
}

/// Feeds job events into the library, the estimator and the broadcast.
struct QueueListener<'a> {
    shared: &'a Shared,
    id: u64,
    started: Instant,
    cancel: &'a AtomicBool,
    now: Mutex<Progressing>,
    /// Where the separated audio is kept for listening: beside the stems.
    live_parent: PathBuf,
    /// Set when the audio cannot be kept for listening; the job itself goes on.
    live_failed: AtomicBool,
    /// The song's length, known once the separation hands over its first stems.
    audio_secs: Mutex<Option<f64>>,
    /// What the loaded model's files hash to, once it is loaded.
    model_sha256: Mutex<Option<String>>,
}

/// What a running job has reported so far.
struct Progressing {
    estimator: ProgressEstimator,
    stage: JobStage,
    title: String,
}

impl QueueListener<'_> {
    fn publish(&self, download: Option<(u64, Option<u64>)>) {
        let (progress, eta, stage, title) = {
            let now = self.now.lock().expect("progress lock");
            let (progress, eta) = now.estimator.estimate(Instant::now());
            (progress, eta, now.stage, now.title.clone())
        };
        let update = JobUpdate {
            id: self.id,
            title,
            stage,
            progress,
            eta_secs: eta,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            error: None,
            can_retry: false,
            download,
            from_cache: false,
            listenable: self.shared.live_of(self.id).is_some(),
        };
        self.shared
            .latest
            .lock()
            .expect("latest lock")
            .insert(self.id, update.clone());
        let _ = self.shared.updates.send(update);
    }

    fn enter(&self, stage: JobStage, phase: Phase) {
        let changed = {
            let mut now = self.now.lock().expect("progress lock");
            now.estimator.update(phase, Instant::now());
            std::mem::replace(&mut now.stage, stage) != stage
        };
        if changed {
            tracing::info!(
                job_id = self.id,
                stage = ?stage,
                elapsed_secs = self.started.elapsed().as_secs_f64(),
                "job stage"
            );
            self.shared.set_stage(self.id, stage);
        }
    }
}

impl JobListener for QueueListener<'_> {
    fn on_event(&self, event: JobEvent) {
        if let JobEvent::SourceReady { title } = &event {
            self.now.lock().expect("progress lock").title = title.clone();
            let mut library = self.shared.library.lock().expect("library lock");
            if let Some(job) = library.get_mut(self.id) {
                job.title = title.clone();
                let _ = save(&library);
            }
            drop(library);
            self.publish(None);
            return;
        }
        let Some((stage, phase, download)) = stage_of(&event) else {
            return;
        };
        self.enter(stage, phase);
        self.publish(download);
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn on_stems(&self, chunk: &StemsChunk<'_>) {
        self.audio_secs
            .lock()
            .expect("audio lock")
            .get_or_insert(chunk.total_frames as f64 / f64::from(chunk.sample_rate.max(1)));
        if self.live_failed.load(Ordering::Relaxed) {
            return;
        }
        let (live, first) = {
            let mut slot = self.shared.live.lock().expect("live lock");
            match slot.as_ref().filter(|l| l.job_id() == self.id) {
                Some(live) => (live.clone(), false),
                None => match LiveStems::start(self.id, &self.live_parent, chunk) {
                    Ok(live) => {
                        let live = Arc::new(live);
                        *slot = Some(live.clone());
                        (live, true)
                    }
                    Err(e) => {
                        tracing::warn!("cannot keep the separated audio for listening: {e}");
                        self.live_failed.store(true, Ordering::Relaxed);
                        return;
                    }
                },
            }
        };
        if let Err(e) = live.append(chunk) {
            tracing::warn!("cannot keep the separated audio for listening: {e}");
            self.live_failed.store(true, Ordering::Relaxed);
            live.abandon(format!(
                "listening stopped because the separated audio cannot be stored ({e}); the stems will still be written"
            ));
            *self.shared.live.lock().expect("live lock") = None;
            return;
        }
        if first {
            self.publish(None);
        }
    }
}

fn run(shared: &Shared, job: &Job, cancel: &AtomicBool) {
    let live_parent = shared
        .places
        .lock()
        .expect("places lock")
        .output_root
        .clone();
    let listener = QueueListener {
        live_parent,
        live_failed: AtomicBool::new(false),
        audio_secs: Mutex::new(None),
        model_sha256: Mutex::new(None),
        shared,
        id: job.id,
        started: Instant::now(),
        cancel,
        now: Mutex::new(Progressing {
            estimator: ProgressEstimator::default(),
            stage: JobStage::Queued,
            title: job.title.clone(),
        }),
    };
    let ticker_stop = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        // Between segment events the bar keeps moving at the measured pace.
        scope.spawn(|| {
            while !ticker_stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if listener.now.lock().expect("progress lock").stage == JobStage::Separating {
                    listener.publish(None);
                }
            }
        });
        let outcome = run_job(shared, job, &listener);
        ticker_stop.store(true, Ordering::Relaxed);
        outcome
    });
    let elapsed = listener.started.elapsed().as_secs_f64();
    let live = shared.live.lock().expect("live lock").take();
    if let Some(live) = live.filter(|l| l.job_id() == job.id) {
        let title = listener.now.lock().expect("progress lock").title.clone();
        match &outcome {
            Ok(result) => live.finish(result.stems.clone()),
            Err(EngineError::Cancelled) => {
                live.abandon(format!("“{title}” was cancelled, so none of it was kept"))
            }
            Err(e) => live.abandon(format!("“{title}” could not be separated: {e}")),
        }
    }
    let audio_secs = *listener.audio_secs.lock().expect("audio lock");
    let timings = JobTimings {
        model_sha256: outcome
            .as_ref()
            .ok()
            .filter(|o| !o.from_cache)
            .and_then(|_| listener.model_sha256.lock().expect("model lock").clone()),
        ..JobTimings::measured(
            audio_secs,
            elapsed,
            job.settings.device,
            job.settings.precision,
        )
    };
    match outcome {
        Ok(result) => shared.finish(
            job.id,
            JobStage::Done,
            None,
            Some(result),
            elapsed,
            Some(timings),
        ),
        // Stopped for shutdown: it runs again at the next start.
        Err(EngineError::Cancelled) if shared.stopping.load(Ordering::SeqCst) => {
            shared.set_stage(job.id, JobStage::Queued);
            if let Some(job) = shared.library.lock().expect("library lock").get(job.id) {
                shared.send(job, 0.0, None);
            }
            Some(())
        }
        Err(EngineError::Cancelled) => {
            shared.finish(job.id, JobStage::Cancelled, None, None, elapsed, None)
        }
        Err(e) => shared.finish(job.id, JobStage::Failed, Some(&e), None, elapsed, None),
    };
}

fn run_job(shared: &Shared, job: &Job, listener: &QueueListener) -> crate::Result<Outcome> {
    let input = match &job.source {
        JobSource::File { path } => Input::File(path.clone()),
        JobSource::Link { video, .. } => Input::Video(video.clone()),
    };
    let Places {
        output_root: root,
        links,
    } = shared.places.lock().expect("places lock").clone();
    let model = ModelChoice::Named(job.settings.model.clone());
    let apply = job.settings.apply_options();
    let output = job.settings.output_options()?;
    let folder_for = |title: &str| unique_dir(&root, title, job.id);
    let options = RunOptions {
        model: &model,
        precision: job
            .settings
            .device
            .effective_precision(job.settings.precision),
        apply: &apply,
        output: &output,
        output_root: &root,
        folder_for: &folder_for,
        reuse_cached: true,
    };
    let sources = Sources {
        links: &links,
        results: &shared.results,
    };
    let separator = |events: &dyn JobListener| {
        events.on_event(JobEvent::LoadingModel);
        let separator = shared.separator(&job.settings, events)?;
        *listener.model_sha256.lock().expect("model lock") =
            separator.model_sha256().map(str::to_owned);
        Ok(separator)
    };
    run_input(&input, &options, &sources, &separator, listener)
}

/// `<root>/<name>`, or `<root>/<name> (job N)` when another job's stems are already there.
/// `name` is already safe as a folder name.
fn unique_dir(root: &Path, name: &str, id: u64) -> PathBuf {
    let plain = root.join(name);
    if plain.exists() {
        root.join(format!("{name} (job {id})"))
    } else {
        plain
    }
}
