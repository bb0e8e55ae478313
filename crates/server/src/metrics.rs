//! `/metrics` in the Prometheus text format: jobs by state and the queue's depth (read from
//! the library at each scrape), and since the server started: separation and audio seconds,
//! real-time factors, finished jobs and model downloads.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use stemdeck_cluster::WorkerInfo;
use stemdeck_engine::jobs::library::JobStage;
use stemdeck_engine::jobs::queue::JobQueue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
    host: String,
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerResultLabel {
    worker: String,
    result: String,
}

/// The shared queue as one scrape sees it.
pub struct QueueView {
    pub workers: Vec<WorkerInfo>,
    /// Tickets no worker has taken, and tickets workers hold.
    pub waiting: u64,
    pub held: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    model: String,
    result: String,
}

pub struct Metrics {
    registry: Registry,
    jobs: Family<StageLabel, Gauge>,
    queue_depth: Gauge,
    finished: Family<StageLabel, Counter>,
    separation_seconds: Counter<f64, AtomicU64>,
    audio_seconds: Counter<f64, AtomicU64>,
    rtf: Histogram,
    downloads: Family<ResultLabel, Counter>,
    workers: Family<WorkerLabel, Gauge>,
    worker_jobs: Family<WorkerResultLabel, Gauge>,
    shared_queue: Family<StageLabel, Gauge>,
}

const STAGES: [JobStage; 11] = [
    JobStage::Queued,
    JobStage::Downloading,
    JobStage::LoadingModel,
    JobStage::Decoding,
    JobStage::Separating,
    JobStage::Writing,
    JobStage::Analysing,
    JobStage::Done,
    JobStage::Failed,
    JobStage::Cancelled,
    JobStage::Interrupted,
];

pub fn stage_name(stage: JobStage) -> String {
    serde_json::to_value(stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stemdeck");
        let jobs = Family::<StageLabel, Gauge>::default();
        registry.register("jobs", "Jobs in the library, by stage", jobs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs waiting to run, the running one not counted",
            queue_depth.clone(),
        );
        let finished = Family::<StageLabel, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs that finished since the server started, by how",
            finished.clone(),
        );
        let separation_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "separation_seconds",
            "Seconds spent on jobs that finished",
            separation_seconds.clone(),
        );
        let audio_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "audio_seconds",
            "Seconds of audio separated",
            audio_seconds.clone(),
        );
        let rtf = Histogram::new([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0]);
        registry.register(
            "rtf",
            "Real-time factor of each separation (seconds of work per second of audio)",
            rtf.clone(),
        );
        let downloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "model_downloads",
            "Model downloads, by model and result",
            downloads.clone(),
        );
        let workers = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "worker_busy",
            "Workers on the shared queue heard from lately: 1 while running a job, else 0",
            workers.clone(),
        );
        let worker_jobs = Family::<WorkerResultLabel, Gauge>::default();
        registry.register(
            "worker_jobs",
            "Jobs each worker has finished since it started, by result",
            worker_jobs.clone(),
        );
        let shared_queue = Family::<StageLabel, Gauge>::default();
        registry.register(
            "shared_queue_tickets",
            "Tickets on the shared queue: waiting for a worker, or held by one",
            shared_queue.clone(),
        );
        Self {
            workers,
            worker_jobs,
            shared_queue,
            registry,
            jobs,
            queue_depth,
            finished,
            separation_seconds,
            audio_seconds,
            rtf,
            downloads,
        }
    }

    /// Counts each job as it finishes.
    pub fn watch(&self, queue: &JobQueue) {
        let mut updates = queue.subscribe();
        let queue = queue.clone();
        let finished = self.finished.clone();
        let separation_seconds = self.separation_seconds.clone();
        let audio_seconds = self.audio_seconds.clone();
        let rtf = self.rtf.clone();
        tokio::spawn(async move {
            loop {
                let update = match updates.recv().await {
                    Ok(update) => update,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if !update.stage.is_finished() {
                    continue;
                }
                finished
                    .get_or_create(&StageLabel {
                        stage: stage_name(update.stage),
                    })
                    .inc();
                separation_seconds.inc_by(update.elapsed_secs);
                if update.stage == JobStage::Done
                    && let Some(timings) = queue.job(update.id).and_then(|j| j.timings)
                {
                    if let Some(audio) = timings.audio_secs {
                        audio_seconds.inc_by(audio);
                    }
                    if let Some(factor) = timings.rtf {
                        rtf.observe(factor);
                    }
                }
            }
        });
    }

    pub fn model_download(&self, model: &str, ok: bool) {
        self.downloads
            .get_or_create(&ResultLabel {
                model: model.to_owned(),
                result: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// The text a scrape gets.
    pub fn render(&self, queue: &JobQueue, shared: Option<QueueView>) -> String {
        if let Some(view) = shared {
            self.workers.clear();
            self.worker_jobs.clear();
            for worker in &view.workers {
                self.workers
                    .get_or_create(&WorkerLabel {
                        worker: worker.id.clone(),
                        host: worker.host.clone(),
                        device: worker.device.clone(),
                    })
                    .set(i64::from(worker.job.is_some()));
                for (result, count) in [("done", worker.jobs_done), ("failed", worker.jobs_failed)]
                {
                    self.worker_jobs
                        .get_or_create(&WorkerResultLabel {
                            worker: worker.id.clone(),
                            result: result.into(),
                        })
                        .set(count as i64);
                }
            }
            for (stage, count) in [("waiting", view.waiting), ("held", view.held)] {
                self.shared_queue
                    .get_or_create(&StageLabel {
                        stage: stage.into(),
                    })
                    .set(count as i64);
            }
        }
        let jobs = queue.jobs();
        for stage in STAGES {
            let count = jobs.iter().filter(|j| j.stage == stage).count();
            self.jobs
                .get_or_create(&StageLabel {
                    stage: stage_name(stage),
                })
                .set(count as i64);
        }
        let running = queue.running();
        let waiting = jobs
            .iter()
            .filter(|j| j.stage == JobStage::Queued && Some(j.id) != running)
            .count();
        self.queue_depth.set(waiting as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
