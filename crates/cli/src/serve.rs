//! `stemdeck serve`: the command line of the server in `stemdeck-server`.
//!
//! Exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 it could not start (the reason is printed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stemdeck_cluster::{QueueConfig, SharedStore};
use stemdeck_server::{DEFAULT_BIND, ServeConfig, SubmitLimit};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on; anything but loopback requires a token.
    #[arg(long, default_value = DEFAULT_BIND, value_name = "ADDR:PORT")]
    bind: SocketAddr,
    /// Folder for the library, settings, uploads and caches [default: the user's data
    /// folder, stemdeck/server].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Folder the stems are written to [default: <data dir>/stems].
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// File holding the bearer token clients must send. With it, even loopback needs the
    /// token; off loopback without it, one is made in the data folder.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The yt-dlp program to fall back to for links (default: yt-dlp on PATH).
    #[arg(long, value_name = "PATH")]
    yt_dlp: Option<PathBuf>,
    /// Largest upload accepted, in megabytes.
    #[arg(long, value_name = "MB", default_value_t = 2048)]
    max_upload_mb: u64,
    /// New jobs one client may create at once...
    #[arg(long, value_name = "JOBS", default_value_t = 30)]
    submit_burst: u32,
    /// ...and then per minute.
    #[arg(long, value_name = "JOBS", default_value_t = 60)]
    submit_per_minute: u32,
    /// Seconds a client has to send its request headers.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    header_timeout: u64,
    /// Hand the jobs to `stemdeck worker`s through this Redis queue
    /// (`redis://HOST:PORT/DB`) instead of separating them here; needs --results.
    #[arg(long, value_name = "URL", requires = "results")]
    queue: Option<String>,
    /// With --queue: the folder every machine shares, where uploads are put for the
    /// workers and their stems come out; or an S3-compatible bucket, `s3://BUCKET/PREFIX`
    /// (keys and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT, AWS_ALLOW_HTTP), from which the stems are downloaded to --output-dir.
    #[arg(long, value_name = "DIR OR S3 URL", requires = "queue")]
    results: Option<String>,
    /// With --queue: key prefix on the queue, so that two installations can share one Redis.
    #[arg(long, value_name = "NAME", default_value = "stemdeck")]
    namespace: String,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let Some(data_dir) = args.data_dir.or_else(|| {
        directories::ProjectDirs::from("", "", "stemdeck").map(|d| d.data_dir().join("server"))
    }) else {
        eprintln!("error: no data folder: pass --data-dir");
        return ExitCode::from(2);
    };
    let mut config = ServeConfig::new(args.bind, data_dir);
    config.output_dir = args.output_dir;
    config.token_file = args.token_file;
    config.ytdlp = args.yt_dlp;
    config.max_upload_bytes = args.max_upload_mb.saturating_mul(1024 * 1024);
    config.header_timeout = Duration::from_secs(args.header_timeout.max(1));
    config.submit_limit = SubmitLimit {
        burst: args.submit_burst,
        per_minute: args.submit_per_minute,
    };
    if let (Some(url), Some(results)) = (args.queue, args.results) {
        let shared = match SharedStore::parse(&results) {
            Ok(shared) => shared,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if shared.folder().is_some() && config.output_dir.is_some() {
            eprintln!(
                "error: --output-dir is where a bucket's stems are brought; with a shared folder they are in --results"
            );
            return ExitCode::from(2);
        }
        let mut queue = QueueConfig::new(url, shared);
        queue.namespace = args.namespace;
        config.queue = Some(queue);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stemdeck_server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
