//! `stemdeck worker`: separate jobs from a shared Redis queue, for `stemdeck serve --queue`
//! on this or another machine (the protocol is `stemdeck-cluster`'s).
//!
//! Exit codes: 0 stopped by Ctrl-C or SIGTERM (the running job goes back to the queue);
//! 1 it could not start (the reason is printed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stemdeck_cluster::{QueueConfig, SharedStore, WorkerConfig};
use stemdeck_engine::input::source::{LinkSource, SourceOptions};
use stemdeck_engine::{DeviceChoice, ModelStore};

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The queue, as `redis://HOST:PORT/DB`.
    #[arg(long, value_name = "URL")]
    queue: String,
    /// The folder every machine shares (NFS/SMB), where uploads are read and stems
    /// written (under temporary names until complete); or an S3-compatible bucket,
    /// `s3://BUCKET/PREFIX` (keys and endpoint from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP).
    #[arg(long, value_name = "DIR OR S3 URL")]
    results: String,
    /// This worker's name, unique on the queue [default: HOST-PID].
    #[arg(long, value_name = "NAME")]
    id: Option<String>,
    /// Where this worker separates, whatever device a job was queued with; each job
    /// records it.
    #[arg(long, default_value = "cpu", value_parser = crate::device_parser())]
    device: DeviceChoice,
    /// CPU threads a separation uses [default: every core].
    #[arg(short, long, value_name = "THREADS")]
    jobs: Option<usize>,
    /// The worker's own folder: downloaded songs and its record of results [default: the
    /// user's data folder, stemdeck/worker].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The yt-dlp program to fall back to for links (default: yt-dlp on PATH).
    #[arg(long, value_name = "PATH")]
    yt_dlp: Option<PathBuf>,
    /// Seconds after which a job whose worker went quiet is taken over by another (the
    /// same value on every worker).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    claim_timeout: u64,
    /// Key prefix on the queue, so that two installations can share one Redis.
    #[arg(long, value_name = "NAME", default_value = "stemdeck")]
    namespace: String,
}

pub fn run(args: WorkerArgs) -> ExitCode {
    if let Err(code) = crate::use_threads(args.jobs) {
        return code;
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let id = args
        .id
        .unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    let Some(data_dir) = args.data_dir.or_else(|| {
        directories::ProjectDirs::from("", "", "stemdeck").map(|d| d.data_dir().join("worker"))
    }) else {
        eprintln!("error: no data folder: pass --data-dir");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("error: cannot create {}: {e}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let shared = match SharedStore::parse(&args.results) {
        Ok(shared) => shared,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut queue = QueueConfig::new(args.queue, shared);
    queue.namespace = args.namespace;
    queue.claim_timeout = Duration::from_secs(args.claim_timeout.max(1));
    // Said at start: a wrong address should not look like an idle worker.
    if let Err(e) = stemdeck_cluster::connect(&queue.url) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let config = WorkerConfig {
        links: LinkSource::standard(
            data_dir.join("downloads"),
            &SourceOptions {
                ytdlp_path: args.yt_dlp,
            },
        ),
        queue,
        id,
        host,
        device: args.device,
        store: ModelStore::from_env(),
        data_dir,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    if let Err(e) = stemdeck_cluster::worker::announce(&config) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "Worker {} is taking jobs from {} (results in {})",
        config.id, config.queue.url, config.queue.shared
    );
    let totals = stemdeck_cluster::worker::run(&config, &stop);
    println!(
        "Worker {} stopped: {} done, {} failed",
        config.id, totals.done, totals.failed
    );
    ExitCode::SUCCESS
}
