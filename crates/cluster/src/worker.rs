//! The worker's end (`stemdeck worker`): take one ticket at a time, separate it into a
//! private staging folder in the shared folder, and publish the files only once this
//! attempt has won the job, so that each job's files appear exactly once and complete.
//!
//! While a job runs, the worker keeps its claim fresh and checks for a cancel four times a
//! second; a worker that stops on purpose hands its ticket back, and one that dies is
//! replaced when its claim goes quiet.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stemdeck_engine::input::source::LinkSource;
use stemdeck_engine::jobs::library::{JobStage, JobTimings};
use stemdeck_engine::jobs::progress::{DownloadBytes, ProgressEstimator, stage_of};
use stemdeck_engine::jobs::remote::RemoteProgress;
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::models::manifest;
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::pipeline::cache::ResultCache;
use stemdeck_engine::pipeline::run::{Input, Outcome, RunOptions, Sources, run_input};
use stemdeck_engine::{
    DeviceChoice, EngineError, JobEvent, JobListener, ModelChoice, ModelStore, Precision,
    Separator, StemsChunk,
};

use crate::protocol::{Finished, Report, Work, WorkInput, inputs_of, inside};
use crate::reconnect::Reconnecting;
use crate::runner::QueueConfig;
use crate::shared::{Bucket, SharedStore};
use crate::{Claim, JobStream, Progress, WorkerInfo};

/// How a worker runs.
pub struct WorkerConfig {
    pub queue: QueueConfig,
    /// Unique among the workers of one queue.
    pub id: String,
    pub host: String,
    pub device: DeviceChoice,
    pub store: ModelStore,
    pub links: LinkSource,
    /// The worker's own files: its record of results.
    pub data_dir: PathBuf,
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerTotals {
    pub done: u64,
    pub failed: u64,
}

/// How often a running job's claim is kept and its cancel flag read.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Puts the worker on the list at once, before it takes a job, so that it is listed as
/// soon as it says it is taking jobs.
pub fn announce(config: &WorkerConfig) -> crate::Result<()> {
    let info = WorkerInfo {
        id: config.id.clone(),
        host: config.host.clone(),
        device: config.device.name().to_owned(),
        job: None,
        jobs_done: 0,
        jobs_failed: 0,
        started_at: unix_now(),
    };
    config.queue.workers().with(|w| w.beat(&info))
}

/// Runs jobs until `stop` turns true; then the running job goes back to the queue.
pub fn run(config: &WorkerConfig, stop: &AtomicBool) -> WorkerTotals {
    let worker = Worker {
        config,
        stop,
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        current: Mutex::new(None),
        progress: Mutex::new(config.queue.progress()),
        separator: Mutex::new(None),
        results: ResultCache::new(config.data_dir.join("results.json")),
        started_at: unix_now(),
        changed: AtomicBool::new(false),
    };
    let quit_beating = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| worker.beat_until(&quit_beating));
        let mut stream = config.queue.stream();
        let mut unreachable_since: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            match stream.with(|s| s.next(&config.id, Duration::from_secs(1))) {
                Ok(Some(claim)) => {
                    unreachable_since = None;
                    worker.take(&mut stream, &claim);
                }
                Ok(None) => unreachable_since = None,
                Err(e) => {
                    if unreachable_since.is_none() {
                        tracing::warn!("waiting for the queue: {e}");
                    }
                    unreachable_since.get_or_insert_with(Instant::now);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        quit_beating.store(true, Ordering::SeqCst);
    });
    WorkerTotals {
        done: worker.done.load(Ordering::SeqCst),
        failed: worker.failed.load(Ordering::SeqCst),
    }
}

struct Worker<'a> {
    config: &'a WorkerConfig,
    stop: &'a AtomicBool,
    done: AtomicU64,
    failed: AtomicU64,
    /// The server's id of the job running now, for the heartbeat.
    current: Mutex<Option<u64>>,
    progress: Mutex<Reconnecting<Progress>>,
    separator: Mutex<Option<(LoadedAs, Arc<Separator>)>>,
    results: ResultCache,
    started_at: u64,
    /// Set when the heartbeat has news (a job taken or ended), so it beats at once.
    changed: AtomicBool,
}

type LoadedAs = (String, DeviceChoice, Precision);

/// How one attempt ended.
enum Ending {
    Published,
    /// Another attempt finished the job, or took it over: this one keeps nothing.
    Lost,
    Cancelled,
    /// The worker is stopping: the ticket goes back for another.
    Stopping,
    Failed {
        error: String,
        can_retry: bool,
    },
}

impl Worker<'_> {
    fn beat_until(&self, quit: &AtomicBool) {
        let mut workers = self.config.queue.workers();
        let every = (self.config.queue.worker_ttl / 3).max(Duration::from_millis(100));
        while !quit.load(Ordering::SeqCst) {
            let info = self.info();
            if let Err(e) = workers.with(|w| w.beat(&info)) {
                tracing::debug!("heartbeat not sent: {e}");
            }
            let until = Instant::now() + every;
            while Instant::now() < until
                && !quit.load(Ordering::SeqCst)
                && !self.changed.swap(false, Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = workers.with(|w| w.leave(&self.config.id));
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.config.id.clone(),
            host: self.config.host.clone(),
            device: self.config.device.name().to_owned(),
            job: *self.current.lock().expect("current lock"),
            jobs_done: self.done.load(Ordering::SeqCst),
            jobs_failed: self.failed.load(Ordering::SeqCst),
            started_at: self.started_at,
        }
    }

    /// Where an attempt writes its files: in the shared folder, so that publishing them
    /// is one rename there; with a bucket, in the worker's own folder until uploaded.
    fn staging(&self, run: u64, worker: &str) -> PathBuf {
        let root = match self.config.queue.shared.folder() {
            Some(folder) => folder.join(".stemdeck"),
            None => self.config.data_dir.clone(),
        };
        root.join("staging").join(format!("{run}-{worker}"))
    }

    /// Where a bucket's input is downloaded to for a run.
    fn local_input(&self, run: u64) -> PathBuf {
        self.config.data_dir.join("inputs").join(run.to_string())
    }

    /// Runs one ticket to its end, whatever that is.
    fn take(&self, stream: &mut Reconnecting<JobStream>, claim: &Claim) {
        let run = claim.ticket.job;
        let work: Work = match serde_json::from_value(claim.ticket.work.clone()) {
            Ok(work) => work,
            Err(e) => {
                self.end(run, &Ending::Failed {
                    error: format!("the job could not be read by this worker ({e}); is it an older Stemdeck?"),
                    can_retry: false,
                }, 0.0);
                self.retire(stream, claim);
                return;
            }
        };
        if stream.with(|s| s.is_cancelled(run)).unwrap_or(false) {
            self.end(run, &Ending::Cancelled, 0.0);
            self.sweep_staging(run);
            self.forget_input(run);
            self.retire(stream, claim);
            return;
        }
        if let Ok(Some(winner)) = stream.with(|s| s.winner(run)) {
            self.finish_publishing(stream, claim, &work, &winner);
            return;
        }
        *self.current.lock().expect("current lock") = Some(work.job);
        self.changed.store(true, Ordering::SeqCst);
        tracing::info!(
            job_id = work.job,
            run,
            reclaimed = claim.reclaimed,
            "job taken: {}",
            work.title
        );
        let started = Instant::now();
        let ending = self.attempt(stream, claim, &work, started);
        let elapsed = started.elapsed().as_secs_f64();
        match &ending {
            Ending::Published => {
                self.done.fetch_add(1, Ordering::SeqCst);
            }
            Ending::Lost => tracing::info!(run, "another worker has this job now; nothing kept"),
            Ending::Stopping => {
                if let Err(e) = stream.with(|s| s.hand_back(claim)) {
                    tracing::warn!("the job stays with this worker until its claim runs out: {e}");
                }
            }
            Ending::Cancelled => {
                self.end(run, &ending, elapsed);
                self.retire(stream, claim);
            }
            Ending::Failed { error, .. } => {
                tracing::warn!(job_id = work.job, "job failed: {error}");
                self.failed.fetch_add(1, Ordering::SeqCst);
                self.end(run, &ending, elapsed);
                self.retire(stream, claim);
            }
        }
        let _ = std::fs::remove_dir_all(self.local_input(run));
        if matches!(ending, Ending::Stopping | Ending::Lost) {
            let _ = std::fs::remove_dir_all(self.staging(run, &self.config.id));
        } else {
            self.sweep_staging(run);
            self.forget_input(run);
        }
        *self.current.lock().expect("current lock") = None;
        self.changed.store(true, Ordering::SeqCst);
    }

    /// A bucket's copy of an upload goes once its run has ended (the server keeps its own,
    /// and a retry is a new run).
    fn forget_input(&self, run: u64) {
        if let SharedStore::Bucket(bucket) = &self.config.queue.shared
            && let Err(e) = bucket.remove_folder(&inputs_of(run))
        {
            tracing::warn!("{e}");
        }
    }

    /// Once a run has ended, every attempt's staging folder goes, including those of
    /// workers that died in it.
    fn sweep_staging(&self, run: u64) {
        let Some(parent) = self
            .staging(run, &self.config.id)
            .parent()
            .map(Path::to_path_buf)
        else {
            return;
        };
        let prefix = format!("{run}-");
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn attempt(
        &self,
        stream: &mut Reconnecting<JobStream>,
        claim: &Claim,
        work: &Work,
        started: Instant,
    ) -> Ending {
        let run = claim.ticket.job;
        let staging = self.staging(run, &self.config.id);
        let _ = std::fs::remove_dir_all(&staging);
        if let Err(e) = std::fs::create_dir_all(&staging) {
            return Ending::Failed {
                error: format!(
                    "worker {} cannot write its staging folder {}: {e}",
                    self.config.id,
                    staging.display()
                ),
                can_retry: true,
            };
        }
        let flags = Flags::default();
        let listener = WorkerListener {
            worker: self,
            run,
            flags: &flags,
            started,
            now: Mutex::new((ProgressEstimator::default(), JobStage::Queued, None)),
            audio_secs: Mutex::new(None),
        };
        let finished = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            scope.spawn(|| self.watch(claim, &flags, &finished, &listener));
            let outcome = self.separate(work, &staging, &listener);
            finished.store(true, Ordering::SeqCst);
            outcome
        });
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) if flags.lost.load(Ordering::SeqCst) => return Ending::Lost,
            Err(_) if flags.cancelled.load(Ordering::SeqCst) => return Ending::Cancelled,
            Err(Failure::Engine(EngineError::Cancelled)) if self.stop.load(Ordering::SeqCst) => {
                return Ending::Stopping;
            }
            Err(Failure::Engine(e)) => {
                return Ending::Failed {
                    can_retry: e.can_retry_help(),
                    error: e.to_string(),
                };
            }
            Err(Failure::Worker(error)) => {
                return Ending::Failed {
                    error,
                    can_retry: true,
                };
            }
        };
        let audio_secs = *listener.audio_secs.lock().expect("audio lock");
        let elapsed = started.elapsed().as_secs_f64();
        let staged = Finished {
            title: outcome.title.clone(),
            folder: relative_to(&staging, &outcome.dir),
            stems: outcome
                .stems
                .iter()
                .map(|s| StemFile {
                    name: s.name.clone(),
                    path: relative_to(&staging, &s.path),
                })
                .collect(),
            mixes: outcome
                .mixes
                .iter()
                .map(|m| relative_to(&staging, m))
                .collect(),
            analysis: outcome.analysis.clone(),
            timings: JobTimings {
                worker: Some(self.config.id.clone()),
                model_sha256: self.loaded_sha256(),
                ..JobTimings::measured(
                    audio_secs,
                    elapsed,
                    self.config.device,
                    work.settings.precision,
                )
            },
            elapsed_secs: elapsed,
        };
        // Kept beside the files, so that a worker that takes over after this one won but
        // died can still publish them.
        let manifest = serde_json::to_vec(&staged).expect("finished is JSON");
        if let Err(e) =
            stemdeck_engine::audio::write_bytes_atomically(&staging.join(MANIFEST), &manifest)
        {
            return Ending::Failed {
                error: format!(
                    "worker {} cannot write to the shared folder: {e}",
                    self.config.id
                ),
                can_retry: true,
            };
        }
        // Asking again after winning still wins, so a Redis restart is waited out rather
        // than the finished work thrown away.
        loop {
            match stream.with(|s| s.win(&self.config.id, claim)) {
                Ok(true) => break,
                Ok(false) => return Ending::Lost,
                Err(e) if !self.stop.load(Ordering::SeqCst) => {
                    tracing::warn!("waiting for the queue to finish the job: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                // Nothing was won: another worker will take the job over.
                Err(_) => return Ending::Lost,
            }
        }
        match self.publish(&staging, staged, work.job) {
            Ok(finished) => {
                self.send(run, &Report::Done(Box::new(finished)));
                self.retire(stream, claim);
                Ending::Published
            }
            Err(error) => Ending::Failed {
                error,
                can_retry: true,
            },
        }
    }

    /// The claim is kept fresh and the cancel flag read until the separation ends; the
    /// progress bar moves on between the model's events.
    fn watch(
        &self,
        claim: &Claim,
        flags: &Flags,
        finished: &AtomicBool,
        listener: &WorkerListener,
    ) {
        let mut stream = self.config.queue.stream();
        let mut tick = 0u32;
        while !finished.load(Ordering::SeqCst) {
            match stream.with(|s| {
                Ok((
                    s.keep(&self.config.id, claim)?,
                    s.is_cancelled(claim.ticket.job)?,
                ))
            }) {
                Ok((kept, cancelled)) => {
                    if !kept {
                        flags.lost.store(true, Ordering::SeqCst);
                    }
                    if cancelled {
                        flags.cancelled.store(true, Ordering::SeqCst);
                    }
                }
                // Redis is away (restarting): the job goes on, and the claim is kept once
                // it is back.
                Err(e) => tracing::debug!("claim not kept: {e}"),
            }
            tick += 1;
            if tick.is_multiple_of(2) && listener.stage() == JobStage::Separating {
                listener.publish(None);
            }
            std::thread::sleep(CHECK_EVERY);
        }
    }

    fn separate(
        &self,
        work: &Work,
        staging: &Path,
        listener: &WorkerListener,
    ) -> Result<Outcome, Failure> {
        let settings = &work.settings;
        let input = match &work.input {
            WorkInput::Shared { path } => {
                let path = inside(path).ok_or_else(|| {
                    Failure::Worker(format!(
                        "the job names a file outside the shared folder ({})",
                        path.display()
                    ))
                })?;
                match &self.config.queue.shared {
                    SharedStore::Folder(folder) => Input::File(folder.join(path)),
                    SharedStore::Bucket(bucket) => {
                        let here = self.local_input(listener.run);
                        std::fs::create_dir_all(&here).map_err(|e| {
                            Failure::Worker(format!("cannot write {}: {e}", here.display()))
                        })?;
                        let file = here.join(path.file_name().unwrap_or(path.as_os_str()));
                        bucket.download(path, &file).map_err(|e| {
                            Failure::Worker(format!("worker {}: {e}", self.config.id))
                        })?;
                        Input::File(file)
                    }
                }
            }
            WorkInput::Link { video, .. } => Input::Video(video.clone()),
        };
        listener.on_event(JobEvent::LoadingModel);
        let separator = self.separator(settings, listener)?;
        let model = ModelChoice::Named(settings.model.clone());
        let apply = settings.apply_options();
        let output = settings.output_options().map_err(Failure::Engine)?;
        let folder_for = |title: &str| staging.join(title);
        let options = RunOptions {
            model: &model,
            precision: self.config.device.effective_precision(settings.precision),
            apply: &apply,
            output: &output,
            output_root: staging,
            folder_for: &folder_for,
            reuse_cached: false,
        };
        let sources = Sources {
            links: &self.config.links,
            results: &self.results,
        };
        let loaded = |_: &dyn JobListener| Ok(separator.clone());
        run_input(&input, &options, &sources, &loaded, listener).map_err(Failure::Engine)
    }

    /// The model the job asks for, loaded on this worker's device: downloaded when this
    /// machine lacks it, else refused with the reason.
    fn separator(
        &self,
        settings: &JobSettings,
        listener: &dyn JobListener,
    ) -> Result<Arc<Separator>, Failure> {
        let key: LoadedAs = (
            settings.model.clone(),
            self.config.device,
            settings.precision,
        );
        let mut cached = self.separator.lock().expect("separator lock");
        if let Some((loaded, separator)) = cached.as_ref()
            && *loaded == key
        {
            return Ok(separator.clone());
        }
        *cached = None;
        let who = format!("worker {} on {}", self.config.id, self.config.host);
        let info =
            manifest::find(&settings.model).map_err(|e| Failure::Worker(format!("{who}: {e}")))?;
        let missing: Vec<&str> = info
            .files
            .iter()
            .filter(|f| self.config.store.locate(f).is_none())
            .map(|f| f.name.as_str())
            .collect();
        let separator = Separator::load(
            &ModelChoice::Named(settings.model.clone()),
            self.config.device,
            settings.precision,
            &self.config.store,
            listener,
        )
        .map_err(|e| match e {
            EngineError::Cancelled => Failure::Engine(e),
            e if !missing.is_empty() => Failure::Worker(format!(
                "{who} has no model “{}” ({} not in {}) and could not download it: {e}",
                settings.model,
                missing.join(", "),
                self.config
                    .store
                    .dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            e => Failure::Worker(format!(
                "{who} cannot load the model “{}”: {e}",
                settings.model
            )),
        })?;
        let separator = Arc::new(separator);
        *cached = Some((key, separator.clone()));
        Ok(separator)
    }

    fn loaded_sha256(&self) -> Option<String> {
        self.separator
            .lock()
            .expect("separator lock")
            .as_ref()
            .and_then(|(_, s)| s.model_sha256().map(str::to_owned))
    }

    /// Moves the staged folder to its place in the shared store, named after the song
    /// (with the job's id when that name is taken), and returns it relative to there.
    fn publish(&self, staging: &Path, staged: Finished, job: u64) -> Result<Finished, String> {
        let shared = match &self.config.queue.shared {
            SharedStore::Folder(folder) => folder,
            SharedStore::Bucket(bucket) => return upload_staged(bucket, staging, staged, job),
        };
        let name = staged.folder.clone();
        let from = staging.join(&name);
        let plain = shared.join(&name);
        let numbered = shared.join(format!("{} (job {job})", name.display()));
        let placed = if from.is_dir() {
            // A rename onto an existing folder fails, so two songs of one title never mix.
            let first = if plain.exists() { &numbered } else { &plain };
            match std::fs::rename(&from, first) {
                Ok(()) => first.clone(),
                Err(_) if first != &numbered => std::fs::rename(&from, &numbered)
                    .map(|()| numbered.clone())
                    .map_err(|e| {
                        format!("cannot move the stems into {}: {e}", numbered.display())
                    })?,
                Err(e) => {
                    return Err(format!(
                        "cannot move the stems into {}: {e}",
                        first.display()
                    ));
                }
            }
        } else if staged
            .stems
            .iter()
            .all(|s| numbered.join(file_name(&s.path)).is_file())
        {
            numbered // moved by the attempt that died before saying so
        } else {
            plain
        };
        Ok(staged.moved_to(relative_to(shared, &placed)))
    }

    /// A ticket whose job was already won: the attempt that won died before it said so.
    /// Its staged files are published from here; the job is not run again.
    fn finish_publishing(
        &self,
        stream: &mut Reconnecting<JobStream>,
        claim: &Claim,
        work: &Work,
        winner: &str,
    ) {
        let run = claim.ticket.job;
        let ended = self
            .progress
            .lock()
            .expect("progress lock")
            .with(|p| p.latest(run))
            .ok()
            .flatten()
            .and_then(|entry| serde_json::from_value::<Report>(entry.update).ok())
            .is_some_and(|report| report.is_end());
        if !ended {
            let worker = winner.split(' ').next().unwrap_or_default();
            let staging = self.staging(run, worker);
            let staged = std::fs::read(staging.join(MANIFEST))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Finished>(&bytes).ok());
            let report = match staged.map(|staged| self.publish(&staging, staged, work.job)) {
                Some(Ok(finished)) => Report::Done(Box::new(finished)),
                Some(Err(error)) => self.failure(error, true, 0.0),
                None => self.failure(
                    format!("worker {worker} finished this song but stopped before its files were saved; retry to separate it again"),
                    true,
                    0.0,
                ),
            };
            self.send(run, &report);
        }
        self.sweep_staging(run);
        self.forget_input(run);
        self.retire(stream, claim);
    }

    fn failure(&self, error: String, can_retry: bool, elapsed_secs: f64) -> Report {
        Report::Failed {
            worker: self.config.id.clone(),
            error,
            can_retry,
            elapsed_secs,
        }
    }

    fn end(&self, run: u64, ending: &Ending, elapsed_secs: f64) {
        let report = match ending {
            Ending::Cancelled => Report::Cancelled {
                worker: self.config.id.clone(),
            },
            Ending::Failed { error, can_retry } => {
                self.failure(error.clone(), *can_retry, elapsed_secs)
            }
            _ => return,
        };
        self.send(run, &report);
    }

    /// Sends a run's last report, waiting out a Redis restart: the server must hear it.
    fn send(&self, run: u64, report: &Report) {
        loop {
            match self
                .progress
                .lock()
                .expect("progress lock")
                .with(|p| p.publish(run, report))
            {
                Ok(_) => return,
                Err(e) if !self.stop.load(Ordering::SeqCst) => {
                    tracing::warn!("waiting for the queue to report on the job: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::warn!("stopping without reporting on the job: {e}");
                    return;
                }
            }
        }
    }

    /// Takes the ticket off the queue for good, waiting out a Redis restart.
    fn retire(&self, stream: &mut Reconnecting<JobStream>, claim: &Claim) {
        while let Err(e) = stream.with(|s| s.done(claim)) {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            tracing::warn!("waiting for the queue to close the job: {e}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

const MANIFEST: &str = "finished.json";

#[derive(Default)]
struct Flags {
    cancelled: AtomicBool,
    lost: AtomicBool,
}

enum Failure {
    Engine(EngineError),
    /// This worker cannot run the job; the message says why, naming the worker.
    Worker(String),
}

/// Turns the pipeline's events into progress reports on the run's stream.
struct WorkerListener<'a> {
    worker: &'a Worker<'a>,
    run: u64,
    flags: &'a Flags,
    started: Instant,
    now: Mutex<(ProgressEstimator, JobStage, Option<String>)>,
    audio_secs: Mutex<Option<f64>>,
}

impl WorkerListener<'_> {
    fn stage(&self) -> JobStage {
        self.now.lock().expect("progress lock").1
    }

    fn publish(&self, download: Option<DownloadBytes>) {
        let (progress, eta_secs, stage, title) = {
            let now = self.now.lock().expect("progress lock");
            let (progress, eta) = now.0.estimate(Instant::now());
            (progress, eta, now.1, now.2.clone())
        };
        let report = Report::Progress(RemoteProgress {
            worker: self.worker.config.id.clone(),
            stage,
            progress,
            eta_secs,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            title,
            download,
        });
        // Progress is worth less than the job: a report lost to a Redis restart is skipped.
        if let Err(e) = self
            .worker
            .progress
            .lock()
            .expect("progress lock")
            .with(|p| p.publish(self.run, &report))
        {
            tracing::debug!("progress not reported: {e}");
        }
    }
}

impl JobListener for WorkerListener<'_> {
    fn on_event(&self, event: JobEvent) {
        if let JobEvent::SourceReady { title } = &event {
            self.now.lock().expect("progress lock").2 = Some(title.clone());
            self.publish(None);
            return;
        }
        let Some((stage, phase, download)) = stage_of(&event) else {
            return;
        };
        {
            let mut now = self.now.lock().expect("progress lock");
            now.0.update(phase, Instant::now());
            now.1 = stage;
        }
        self.publish(download);
    }

    fn is_cancelled(&self) -> bool {
        self.flags.cancelled.load(Ordering::Relaxed)
            || self.flags.lost.load(Ordering::Relaxed)
            || self.worker.stop.load(Ordering::Relaxed)
    }

    fn on_stems(&self, chunk: &StemsChunk<'_>) {
        self.audio_secs
            .lock()
            .expect("audio lock")
            .get_or_insert(chunk.total_frames as f64 / f64::from(chunk.sample_rate.max(1)));
    }
}

/// Uploads a staged folder to the bucket, file by file; each object appears whole. The
/// run is reported only once all of them are there.
fn upload_staged(
    bucket: &Bucket,
    staging: &Path,
    staged: Finished,
    job: u64,
) -> Result<Finished, String> {
    let name = staged.folder.clone();
    let folder = if bucket.has_folder(&name).map_err(|e| e.to_string())? {
        PathBuf::from(format!("{} (job {job})", name.display()))
    } else {
        name.clone()
    };
    for file in staged.stems.iter().map(|s| &s.path).chain(&staged.mixes) {
        bucket
            .upload(&staging.join(file), &folder.join(file_name(file)))
            .map_err(|e| e.to_string())?;
    }
    Ok(staged.moved_to(folder))
}

fn relative_to(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn file_name(path: &Path) -> &Path {
    path.file_name().map_or(path, Path::new)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
