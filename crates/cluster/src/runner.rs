//! The server's end: [`RedisRunner`] is the engine's [`RemoteRunner`] on Redis. It turns
//! a job into a ticket, reads each run's reports from where it left off, and puts the
//! shared folder's relative paths back under this machine's view of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use stemdeck_engine::jobs::library::{Job, JobSource};
use stemdeck_engine::jobs::remote::{RemoteError, RemoteNews, RemoteReport, RemoteRunner};
use stemdeck_engine::pipeline::run::Outcome;

use crate::protocol::{Finished, Report, Work, WorkInput, inputs_of, inside};
use crate::reconnect::Reconnecting;
use crate::shared::SharedStore;
use crate::{ClusterError, JobStream, Progress, Ticket, WorkerInfo, Workers};

/// Where the queue is and what it shares.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Keys are under `<namespace>:`, so that two installations can share one Redis.
    pub namespace: String,
    /// What every machine sees: uploads go in, stems come out.
    pub shared: SharedStore,
    /// A ticket whose worker has not kept its claim for this long goes to another.
    pub claim_timeout: Duration,
    /// A worker not heard from for this long has left the list.
    pub worker_ttl: Duration,
}

impl QueueConfig {
    pub fn new(url: impl Into<String>, shared: SharedStore) -> Self {
        Self {
            url: url.into(),
            namespace: "stemdeck".into(),
            shared,
            claim_timeout: Duration::from_secs(60),
            worker_ttl: Duration::from_secs(15),
        }
    }

    pub(crate) fn stream(&self) -> Reconnecting<JobStream> {
        let (url, namespace, idle) = (self.url.clone(), self.namespace.clone(), self.claim_timeout);
        Reconnecting::new(move || JobStream::open(crate::connect(&url)?, &namespace, idle))
    }

    pub(crate) fn progress(&self) -> Reconnecting<Progress> {
        let (url, namespace) = (self.url.clone(), self.namespace.clone());
        Reconnecting::new(move || Ok(Progress::open(crate::connect(&url)?, &namespace)))
    }

    pub(crate) fn workers(&self) -> Reconnecting<Workers> {
        let (url, namespace, ttl) = (self.url.clone(), self.namespace.clone(), self.worker_ttl);
        Reconnecting::new(move || Ok(Workers::open(crate::connect(&url)?, &namespace, ttl)))
    }
}

pub struct RedisRunner {
    config: QueueConfig,
    /// Where uploads wait on this machine: in the shared folder, or (with a bucket) in
    /// the server's own folder until handed over.
    inputs_dir: PathBuf,
    /// Where finished stems are on this machine: the shared folder, or (with a bucket)
    /// where the server downloads them to.
    results_dir: PathBuf,
    stream: Mutex<Reconnecting<JobStream>>,
    workers: Mutex<Reconnecting<Workers>>,
    /// The progress connection and, per run, the last report read.
    progress: Mutex<(Reconnecting<Progress>, HashMap<u64, String>)>,
}

impl RedisRunner {
    /// Checks that the queue answers, so that a wrong address is said at start. With a
    /// bucket, uploads wait in `<data_dir>/uploads` and stems are downloaded to
    /// `local_results`.
    pub fn connect(
        config: QueueConfig,
        data_dir: &Path,
        local_results: PathBuf,
    ) -> crate::Result<Self> {
        let (inputs_dir, results_dir) = match config.shared.folder() {
            Some(folder) => (
                folder.join(".stemdeck").join("inputs"),
                folder.to_path_buf(),
            ),
            None => (data_dir.join("uploads"), local_results),
        };
        let runner = Self {
            inputs_dir,
            results_dir,
            stream: Mutex::new(config.stream()),
            workers: Mutex::new(config.workers()),
            progress: Mutex::new((config.progress(), HashMap::new())),
            config,
        };
        runner
            .stream
            .lock()
            .expect("stream lock")
            .with(|_| Ok(()))?;
        Ok(runner)
    }

    pub fn inputs_dir(&self) -> &Path {
        &self.inputs_dir
    }

    pub fn results_dir(&self) -> &Path {
        &self.results_dir
    }

    /// The workers heard from lately.
    pub fn workers(&self) -> crate::Result<Vec<WorkerInfo>> {
        self.workers
            .lock()
            .expect("workers lock")
            .with(Workers::list)
    }

    /// Tickets waiting for a worker, and tickets workers hold.
    pub fn depth(&self) -> crate::Result<(u64, u64)> {
        self.stream
            .lock()
            .expect("stream lock")
            .with(JobStream::depth)
    }

    fn work(&self, job: &Job, run: u64) -> Result<Work, RemoteError> {
        let input = match &job.source {
            JobSource::File { path } => WorkInput::Shared {
                path: self.share_input(path, run)?,
            },
            JobSource::Link { video, url } => WorkInput::Link {
                video: video.clone(),
                url: url.clone(),
            },
        };
        Ok(Work {
            job: job.id,
            title: job.title.clone(),
            input,
            settings: job.settings.clone(),
        })
    }

    /// The upload's path in the shared store, uploading it first to a bucket.
    fn share_input(&self, path: &Path, run: u64) -> Result<PathBuf, RemoteError> {
        match &self.config.shared {
            SharedStore::Folder(folder) => path
                .strip_prefix(folder)
                .ok()
                .and_then(inside)
                .map(Path::to_path_buf)
                .ok_or_else(|| {
                    RemoteError(format!(
                        "{} is not in the shared folder {}, so no worker can read it",
                        path.display(),
                        folder.display()
                    ))
                }),
            SharedStore::Bucket(bucket) => {
                let key = inputs_of(run).join(path.file_name().unwrap_or(path.as_os_str()));
                bucket
                    .upload(path, &key)
                    .map_err(|e| RemoteError(e.to_string()))?;
                Ok(key)
            }
        }
    }

    /// A finished run's folder on this machine: the shared folder's own, or downloaded
    /// from the bucket (under a temporary name until every file is in).
    fn local_folder(&self, finished: &Finished, run: u64) -> Result<PathBuf, String> {
        let folder = inside(&finished.folder).ok_or_else(|| {
            format!(
                "a folder outside the shared store ({})",
                finished.folder.display()
            )
        })?;
        let SharedStore::Bucket(bucket) = &self.config.shared else {
            return Ok(self.results_dir.join(folder));
        };
        let incoming = self.results_dir.join(format!(".stemdeck-incoming-{run}"));
        let _ = std::fs::remove_dir_all(&incoming);
        std::fs::create_dir_all(&incoming).map_err(|e| format!("{}: {e}", incoming.display()))?;
        let files = finished
            .stems
            .iter()
            .map(|s| &s.path)
            .chain(&finished.mixes);
        for file in files {
            let name = file.file_name().ok_or("a file without a name")?;
            if let Err(e) = bucket.download(file, &incoming.join(name)) {
                let _ = std::fs::remove_dir_all(&incoming);
                return Err(e.to_string());
            }
        }
        let name = folder.file_name().ok_or("a folder without a name")?;
        let plain = self.results_dir.join(name);
        let placed = if plain.exists() {
            self.results_dir
                .join(format!("{} (run {run})", name.to_string_lossy()))
        } else {
            plain
        };
        std::fs::rename(&incoming, &placed).map_err(|e| {
            let _ = std::fs::remove_dir_all(&incoming);
            format!("cannot move the stems into {}: {e}", placed.display())
        })?;
        Ok(placed)
    }

    fn report(&self, report: Report, run: u64) -> RemoteReport {
        match report {
            Report::Progress(progress) => RemoteReport::Progress(progress),
            Report::Done(finished) => match self.local_folder(&finished, run) {
                Ok(dir) => {
                    let finished = finished.moved_to(dir);
                    RemoteReport::Done {
                        outcome: Box::new(Outcome {
                            title: finished.title,
                            dir: finished.folder,
                            stems: finished.stems,
                            mixes: finished.mixes,
                            from_cache: false,
                            analysis: finished.analysis,
                        }),
                        timings: finished.timings,
                        elapsed_secs: finished.elapsed_secs,
                    }
                }
                Err(error) => RemoteReport::Failed {
                    error: format!("the stems could not be brought here: {error}"),
                    can_retry: true,
                    elapsed_secs: finished.elapsed_secs,
                },
            },
            Report::Failed {
                error,
                can_retry,
                elapsed_secs,
                ..
            } => RemoteReport::Failed {
                error,
                can_retry,
                elapsed_secs,
            },
            Report::Cancelled { .. } => RemoteReport::Cancelled,
        }
    }
}

fn unreachable(e: ClusterError) -> RemoteError {
    RemoteError(e.to_string())
}

impl RemoteRunner for RedisRunner {
    fn hand_over(&self, job: &Job) -> Result<u64, RemoteError> {
        // Random, like job ids: a retry is a new run whose keys nothing earlier touched.
        let run = rand::random_range(1..1u64 << 53);
        let work = self.work(job, run)?;
        let ticket = Ticket {
            job: run,
            work: serde_json::to_value(&work).expect("work is JSON"),
        };
        self.stream
            .lock()
            .expect("stream lock")
            .with(|stream| stream.submit(&ticket))
            .map_err(unreachable)?;
        Ok(run)
    }

    fn news(&self, runs: &[u64], wait: Duration) -> Result<Vec<RemoteNews>, RemoteError> {
        let mut guard = self.progress.lock().expect("progress lock");
        let (progress, cursors) = &mut *guard;
        cursors.retain(|run, _| runs.contains(run));
        let mut news = Vec::new();
        // One read covers a few hundred runs; more are read in turns without waiting.
        let chunks: Vec<Vec<(u64, String)>> = runs
            .chunks(400)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|run| {
                        (
                            *run,
                            cursors.get(run).cloned().unwrap_or_else(|| "0".into()),
                        )
                    })
                    .collect()
            })
            .collect();
        let block = if chunks.len() == 1 {
            wait
        } else {
            Duration::from_millis(1)
        };
        for chunk in &chunks {
            let entries = progress
                .with(|p| p.read_many(chunk, block))
                .map_err(unreachable)?;
            for (run, entry) in entries {
                cursors.insert(run, entry.id.clone());
                match serde_json::from_value::<Report>(entry.update) {
                    Ok(report) => news.push(RemoteNews {
                        run,
                        report: self.report(report, run),
                    }),
                    Err(e) => tracing::warn!(run, "a report that cannot be read: {e}"),
                }
            }
        }
        if news.is_empty() && chunks.len() > 1 {
            std::thread::sleep(wait);
        }
        Ok(news)
    }

    fn cancel(&self, run: u64) -> Result<(), RemoteError> {
        self.stream
            .lock()
            .expect("stream lock")
            .with(|stream| stream.cancel(run))
            .map_err(unreachable)
    }
}
