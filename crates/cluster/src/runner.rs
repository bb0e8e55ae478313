//! The server's end: [`RedisRunner`] is the engine's [`RemoteRunner`] on Redis. It turns
//! a job into a ticket, reads each run's reports from where it left off, and puts the
//! shared folder's relative paths back under this machine's view of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use stemdeck_engine::jobs::library::{Job, JobSource};
use stemdeck_engine::jobs::remote::{RemoteError, RemoteNews, RemoteReport, RemoteRunner};
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::pipeline::run::Outcome;

use crate::protocol::{Report, Work, WorkInput, inside};
use crate::reconnect::Reconnecting;
use crate::{ClusterError, JobStream, Progress, Ticket, WorkerInfo, Workers};

/// Where the queue is and what it shares.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Keys are under `<namespace>:`, so that two installations can share one Redis.
    pub namespace: String,
    /// The folder every machine sees: uploads go in, stems come out.
    pub shared_dir: PathBuf,
    /// A ticket whose worker has not kept its claim for this long goes to another.
    pub claim_timeout: Duration,
    /// A worker not heard from for this long has left the list.
    pub worker_ttl: Duration,
}

impl QueueConfig {
    pub fn new(url: impl Into<String>, shared_dir: PathBuf) -> Self {
        Self {
            url: url.into(),
            namespace: "stemdeck".into(),
            shared_dir,
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

    /// Where the server keeps uploads, inside the shared folder.
    pub fn inputs_dir(&self) -> PathBuf {
        self.shared_dir.join(".stemdeck").join("inputs")
    }
}

pub struct RedisRunner {
    config: QueueConfig,
    stream: Mutex<Reconnecting<JobStream>>,
    workers: Mutex<Reconnecting<Workers>>,
    /// The progress connection and, per run, the last report read.
    progress: Mutex<(Reconnecting<Progress>, HashMap<u64, String>)>,
}

impl RedisRunner {
    /// Checks that the queue answers, so that a wrong address is said at start.
    pub fn connect(config: QueueConfig) -> crate::Result<Self> {
        let runner = Self {
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

    pub fn config(&self) -> &QueueConfig {
        &self.config
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

    fn work(&self, job: &Job) -> Result<Work, RemoteError> {
        let input = match &job.source {
            JobSource::File { path } => WorkInput::Shared {
                path: path
                    .strip_prefix(&self.config.shared_dir)
                    .ok()
                    .and_then(inside)
                    .map(Path::to_path_buf)
                    .ok_or_else(|| {
                        RemoteError(format!(
                            "{} is not in the shared folder {}, so no worker can read it",
                            path.display(),
                            self.config.shared_dir.display()
                        ))
                    })?,
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

    fn report(&self, report: Report) -> RemoteReport {
        let shared = &self.config.shared_dir;
        match report {
            Report::Progress(progress) => RemoteReport::Progress(progress),
            Report::Done(finished) => {
                let under = |p: &Path| match inside(p) {
                    Some(p) => Ok(shared.join(p)),
                    None => Err(p.display().to_string()),
                };
                let files = (|| {
                    let stems = finished
                        .stems
                        .iter()
                        .map(|s| {
                            Ok(StemFile {
                                name: s.name.clone(),
                                path: under(&s.path)?,
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    let mixes = finished
                        .mixes
                        .iter()
                        .map(|m| under(m))
                        .collect::<Result<Vec<_>, String>>()?;
                    Ok::<_, String>((under(&finished.folder)?, stems, mixes))
                })();
                match files {
                    Ok((dir, stems, mixes)) => RemoteReport::Done {
                        outcome: Box::new(Outcome {
                            title: finished.title,
                            dir,
                            stems,
                            mixes,
                            from_cache: false,
                            analysis: finished.analysis,
                        }),
                        timings: finished.timings,
                        elapsed_secs: finished.elapsed_secs,
                    },
                    Err(path) => RemoteReport::Failed {
                        error: format!(
                            "the worker reported a file outside the shared folder ({path})"
                        ),
                        can_retry: false,
                        elapsed_secs: finished.elapsed_secs,
                    },
                }
            }
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
        let work = self.work(job)?;
        // Random, like job ids: a retry is a new run whose keys nothing earlier touched.
        let run = rand::random_range(1..1u64 << 53);
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
                        report: self.report(report),
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
