//! `stemdeck serve`: the engine's queue, library, result cache and model store over HTTP
//! (`/api/v1`, described by `/api/v1/openapi.json`) and FL-BT's three routes for its
//! clients. A thin front end like the CLI and the app: every rule about jobs lives in the
//! engine.
//!
//! Secure by default: it listens on loopback; any other address needs a bearer token;
//! uploads are size-limited and streamed to disk; job creation is rate-limited per client;
//! no path is ever taken from a request; no CORS. The browser UI (the app's own `ui/`)
//! is served at `/`, on the same origin as the API.

mod api;
mod auth;
mod compat;
mod error;
mod events;
mod http;
mod metrics;
mod options;
mod state;
mod ui;
mod upload;
mod zip_stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stemdeck_engine::ModelStore;

pub use auth::TOKEN_FILE_NAME;
pub use error::ServeError;

/// The default address: this machine only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8765";

/// How `stemdeck serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// The library, settings, uploads, downloads and result cache.
    pub data_dir: PathBuf,
    /// Where stems are written; `<data dir>/stems` by default.
    pub output_dir: Option<PathBuf>,
    /// A file holding the bearer token; required (and generated when absent) off loopback.
    pub token_file: Option<PathBuf>,
    pub store: ModelStore,
    /// The yt-dlp links fall back to; `None` looks on `PATH`.
    pub ytdlp: Option<PathBuf>,
    pub max_upload_bytes: u64,
    /// A client must send its request headers within this time (slow clients are cut off).
    pub header_timeout: Duration,
    /// A request body (an upload) may pause this long between bytes.
    pub body_timeout: Duration,
    pub submit_limit: SubmitLimit,
    /// A shared queue that workers on other machines take the jobs from; without it, this
    /// server separates them itself.
    pub queue: Option<stemdeck_cluster::QueueConfig>,
}

/// How many jobs one client may create: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubmitLimit {
    pub burst: u32,
    pub per_minute: u32,
}

impl Default for SubmitLimit {
    fn default() -> Self {
        Self {
            burst: 30,
            per_minute: 60,
        }
    }
}

impl ServeConfig {
    pub fn new(bind: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            bind,
            data_dir,
            output_dir: None,
            token_file: None,
            store: ModelStore::from_env(),
            ytdlp: None,
            max_upload_bytes: 2 * 1024 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            submit_limit: SubmitLimit::default(),
            queue: None,
        }
    }
}

/// Runs the server until Ctrl-C or SIGTERM; then the running job is cancelled cleanly
/// and put back in the queue for the next start. Must run inside a tokio runtime.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    let token = auth::resolve_token(&config, local)?;
    let state = Arc::new(state::ServerState::open(&config, token.token)?);
    for notice in &state.notices {
        tracing::warn!("{notice}");
    }
    // Printed on stdout, once, so that a script can read where to connect.
    println!("Stemdeck is serving on http://{local}/");
    if let Some(queue) = &config.queue {
        println!(
            "Jobs go to the shared queue {} (results in {})",
            queue.url, queue.shared
        );
    }
    if let Some(generated) = token.generated {
        println!(
            "Clients need this token (kept in {}): {generated}",
            generated_path(&config).display()
        );
        // The part after # stays in the browser: it never reaches a log.
        println!("Open the UI in a browser at http://{local}/#token={generated}");
    }
    let app = api::router(state.clone(), &config);
    http::run(listener, app, &config, state.shutdown.clone()).await;
    tracing::info!("stopping: the running job goes back to the queue");
    state.queue.stop(Duration::from_secs(30)).await;
    Ok(())
}

fn generated_path(config: &ServeConfig) -> PathBuf {
    config
        .token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(TOKEN_FILE_NAME))
}
