//! `/api/v1`: jobs (create by upload or link, list, watch, cancel, retry, remove, fetch
//! stems and ZIPs), models, the job defaults, health, metrics and the OpenAPI document.
//! Each handler turns a request into one engine call and its answer into JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stemdeck_engine::jobs::library::{Job, JobSource, JobStage};
use stemdeck_engine::jobs::queue::JobUpdate;
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::models::manifest;
use stemdeck_engine::models::status::ModelStatus;
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::{Precision, SettingChoices};
use tower::ServiceExt;
use tower_http::services::ServeFile;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::error::{ApiError, ApiResult};
use crate::events::{self, EventStream};
use crate::metrics::QueueView;
use crate::options::JobOptions;
use crate::state::ServerState;
use crate::{ServeConfig, auth, compat, upload, zip_stream};

/// The OpenAPI 3.1 description of every route, served as written.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(state: Arc<ServerState>, config: &ServeConfig) -> Router {
    let limited = || middleware::from_fn_with_state(state.clone(), rate_limit);
    let v1 = Router::new()
        .route(
            "/jobs",
            get(list_jobs).post(
                create_job
                    .layer(limited())
                    // Uploads are limited by `max_upload_bytes` while they stream to disk.
                    .layer(axum::extract::DefaultBodyLimit::disable()),
            ),
        )
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/jobs/{id}/stems/{name}", get(stem_file))
        .route("/jobs/{id}/zip", get(job_zip))
        .route("/events", get(all_events))
        .route("/models", get(list_models))
        .route("/models/{name}", axum::routing::delete(remove_model))
        .route("/models/{name}/download", post(download_model))
        .route("/settings", get(get_settings).put(put_settings))
        .route("/metrics", get(metrics))
        .route("/workers", get(list_workers))
        .route("/openapi.json", get(openapi))
        .fallback(no_route)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Health answers without a token, so that a load balancer can ask.
        .route("/health", get(health));
    let compat = compat::router(state.clone());
    Router::new()
        .nest("/api/v1", v1)
        .nest("/api", compat)
        .fallback(crate::ui::page)
        .layer(middleware::from_fn(close_after_refused_body))
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
}

/// A request refused with its body unread (no token, too large, too many) leaves the rest
/// of that body on the connection, so the connection cannot carry another request: say
/// so, rather than let the client send its next request into a closing socket.
async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0");
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Creating jobs is limited per client address; the answer says when to try again.
pub async fn rate_limit(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match state.limiter.check_key(&peer.ip()) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many new jobs from this address; try again in {wait} s"),
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&wait.to_string()).expect("digits"),
            );
            response
        }
    }
}

async fn no_route() -> ApiError {
    ApiError::not_found("there is no such route; the API is described at /api/v1/openapi.json")
}

/// A job as the API shows it: the library's record with its live progress, and where its
/// files are. Paths on the server are not shown: a stem's `path` is its URL.
#[derive(Debug, Serialize)]
pub struct ApiJob {
    #[serde(flatten)]
    pub job: Job,
    /// 0 to 1 over the whole job.
    pub progress: f64,
    pub eta_secs: Option<f64>,
    /// For a download (the song's audio, or the model): bytes so far and the total.
    pub download: Option<(u64, Option<u64>)>,
    pub events_url: String,
    /// The ZIP of every stem and mix, once the job is done.
    pub zip_url: Option<String>,
}

pub fn job_url(id: u64) -> String {
    format!("/api/v1/jobs/{id}")
}

pub fn api_job(state: &ServerState, mut job: Job) -> ApiJob {
    let live = state.queue.progress(job.id);
    let progress = match job.stage {
        JobStage::Done => 1.0,
        _ => live.as_ref().map_or(0.0, |u| u.progress),
    };
    let base = job_url(job.id);
    for file in job.stems.iter_mut().chain(job.mixes.iter_mut()) {
        file.path = PathBuf::from(format!("{base}/stems/{}", file.name));
    }
    if let JobSource::File { path } = &mut job.source {
        *path = path.file_name().map(PathBuf::from).unwrap_or_default();
    }
    job.output_dir = None;
    let done = job.stage == JobStage::Done;
    ApiJob {
        progress,
        eta_secs: live.as_ref().and_then(|u| u.eta_secs),
        download: live.and_then(|u| u.download),
        events_url: format!("{base}/events"),
        zip_url: done.then(|| format!("{base}/zip")),
        job,
    }
}

/// Finds a job by the id in a path; any other text is simply no job.
pub fn find_job(state: &ServerState, id: &str) -> ApiResult<Job> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| state.queue.job(id))
        .ok_or_else(|| ApiError::no_job(id))
}

async fn list_jobs(State(state): State<Arc<ServerState>>) -> Json<Vec<ApiJob>> {
    let jobs = state.queue.jobs();
    Json(jobs.into_iter().map(|j| api_job(&state, j)).collect())
}

async fn get_job(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiJob>> {
    let job = find_job(&state, &id)?;
    Ok(Json(api_job(&state, job)))
}

/// `POST /jobs`: a multipart upload (field `file`, options as fields), or JSON with a
/// `link` (a YouTube link or video ID) and options.
async fn create_job(
    State(state): State<Arc<ServerState>>,
    request: Request,
) -> ApiResult<Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let job = if content_type.starts_with("multipart/form-data") {
        create_from_upload(&state, request).await?
    } else if content_type.starts_with("application/json") {
        create_from_json(&state, request).await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send a song as multipart/form-data (field “file”), or JSON with a “link”",
        ));
    };
    tracing::info!(job_id = job.id, title = %job.title, "job added");
    let location = job_url(job.id);
    let mut response = (StatusCode::CREATED, Json(api_job(&state, job))).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ascii"),
    );
    Ok(response)
}

async fn create_from_upload(state: &Arc<ServerState>, request: Request) -> ApiResult<Job> {
    let limit = state.max_upload_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The form's own lines add a little to the file; refuse at once what cannot fit.
    if declared.is_some_and(|len| len > limit.saturating_add(1 << 20)) {
        return Err(upload::too_large(limit));
    }
    let form = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::bad_request(format!("the upload is not a form: {}", e.body_text()))
    })?;
    let received = upload::receive(form, &state.uploads_dir, limit).await?;
    let settings = JobOptions::from_form(received.fields)
        .and_then(|options| options.settings(state.settings().job));
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            upload::discard(&state.uploads_dir, &received.file);
            return Err(e);
        }
    };
    let queue = state.queue.clone();
    let file = received.file.clone();
    // Probing reads the file's first packets: off the async threads.
    let added = tokio::task::spawn_blocking(move || queue.add_file(&file, settings))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    added.map_err(|e| {
        upload::discard(&state.uploads_dir, &received.file);
        // The upload's own name, not where the server kept it.
        let name = received
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut error = ApiError::from(e);
        let kept = received.file.display().to_string();
        error.message = error.message.replace(&kept, &name);
        error
    })
}

async fn create_from_json(state: &Arc<ServerState>, request: Request) -> ApiResult<Job> {
    let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request("the JSON body is too long or was cut off"))?;
    let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not a JSON object: {e}")))?;
    let link = ["link", "url", "video_id"]
        .iter()
        .find_map(|key| fields.remove(*key))
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| {
            ApiError::bad_request(
                "the JSON needs a “link”: a YouTube link or video ID (to upload a file, send multipart/form-data)",
            )
        })?;
    let options: JobOptions = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("the job's options: {e}")))?;
    let settings = options.settings(state.settings().job)?;
    add_link(state, &link, settings)
}

pub fn add_link(state: &ServerState, text: &str, settings: JobSettings) -> ApiResult<Job> {
    let link = stemdeck_engine::input::link::parse_video_link(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_link", e.to_string()))?;
    Ok(state.queue.add_link(&link, settings)?)
}

/// Cancels a queued or running job; removes a finished one from the library (its files
/// stay, except an uploaded song, which only this job used).
async fn delete_job(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = find_job(&state, &id)?;
    if !job.stage.is_finished() {
        let job = cancel(&state, job).await?;
        return Ok(Json(api_job(&state, job)).into_response());
    }
    let removed = state.queue.remove(job.id)?;
    if let JobSource::File { path } = &removed.source {
        upload::discard(&state.uploads_dir, path);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn cancel_job(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiJob>> {
    let job = find_job(&state, &id)?;
    Ok(Json(api_job(&state, cancel(&state, job).await?)))
}

/// Cancels `job` and answers once it has stopped: a running job stops within a segment,
/// so a few seconds at most (after which it is answered as it is).
async fn cancel(state: &ServerState, job: Job) -> ApiResult<Job> {
    state.queue.cancel(job.id)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = state.queue.job(job.id).unwrap_or_else(|| job.clone());
        if now.stage.is_finished() || std::time::Instant::now() > deadline {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn retry_job(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiJob>> {
    let job = find_job(&state, &id)?;
    state.queue.retry(job.id)?;
    let job = state.queue.job(job.id).unwrap_or(job);
    Ok(Json(api_job(&state, job)))
}

/// The job's state now, then each change, ending once it has finished.
async fn job_events(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<EventStream> {
    let job = find_job(&state, &id)?;
    let id = job.id;
    let snapshot_state = state.clone();
    let stream = events::job_updates(
        &state,
        move || {
            let job = snapshot_state.queue.job(id);
            job.map(|job| snapshot(&snapshot_state, &job))
                .into_iter()
                .collect()
        },
        Some(id),
    );
    Ok(events::sse(stream))
}

/// Every job change, for the browser UI's queue.
async fn all_events(State(state): State<Arc<ServerState>>) -> EventStream {
    events::sse(events::job_updates(&state, Vec::new, None))
}

/// A job as one update, as its event stream starts.
pub fn snapshot(state: &ServerState, job: &Job) -> JobUpdate {
    state
        .queue
        .progress(job.id)
        .unwrap_or_else(|| JobUpdate::at_rest(job))
}

/// A stem (or mix) by its name, `vocals` or `vocals.wav`, with HTTP Range.
async fn stem_file(
    State(state): State<Arc<ServerState>>,
    Path((id, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let job = find_job(&state, &id)?;
    let file = job
        .stems
        .iter()
        .chain(&job.mixes)
        .find(|f| f.name == name || f.path.file_name().is_some_and(|n| *n == *name))
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = job.stems.iter().map(|s| s.name.as_str()).collect();
            ApiError::not_found(if names.is_empty() {
                format!("“{}” has no stems yet", job.title)
            } else {
                format!(
                    "“{}” has no stem “{name}”; it has {}",
                    job.title,
                    names.join(", ")
                )
            })
        })?;
    if !file.path.is_file() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "moved",
            format!(
                "the {} stem of “{}” was moved or deleted on the server; retry the job to separate it again",
                file.name, job.title
            ),
        ));
    }
    let mut response = ServeFile::new(&file.path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(Body::new);
    let download_name = format!("{} - {}", job.title, file_name(&file));
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        disposition("inline", &download_name),
    );
    Ok(response)
}

fn file_name(file: &StemFile) -> String {
    file.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.name.clone())
}

/// `inline`/`attachment` with the name twice: plain for old clients, UTF-8 for the rest.
pub fn disposition(kind: &str, name: &str) -> HeaderValue {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Every stem and mix of a finished job, as one streamed ZIP.
async fn job_zip(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = find_job(&state, &id)?;
    zip_response(&job)
}

pub fn zip_response(job: &Job) -> ApiResult<Response> {
    if job.stage != JobStage::Done {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_done",
            format!(
                "“{}” is not separated yet ({}); its ZIP is ready once it is done",
                job.title,
                crate::metrics::stage_name(job.stage)
            ),
        ));
    }
    if !job.missing_stems.is_empty() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "moved",
            format!(
                "stems of “{}” were moved or deleted on the server ({}); retry the job to separate it again",
                job.title,
                job.missing_stems.join(", ")
            ),
        ));
    }
    let folder = stemdeck_engine::pipeline::run::safe_folder_name(&job.title);
    let files = job
        .stems
        .iter()
        .chain(&job.mixes)
        .map(|f| (file_name(f), f.path.clone()))
        .collect();
    let mut response = zip_stream::zip_body(folder.clone(), files).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &format!("{folder}.zip")),
    );
    Ok(response)
}

async fn list_models(State(state): State<Arc<ServerState>>) -> Json<Vec<ModelStatus>> {
    Json(
        manifest::models()
            .iter()
            .map(|m| state.downloads.status(&state.store, m))
            .collect(),
    )
}

/// Starts downloading a model and streams its progress (`progress` events), then its
/// final status (`done`) or why it failed (`error`). The download goes on if the client
/// leaves.
async fn download_model(
    State(state): State<Arc<ServerState>>,
    Path(name): Path<String>,
) -> ApiResult<EventStream> {
    let model = manifest::find(&name)?;
    state
        .downloads
        .begin(&model)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = state.clone();
    tokio::task::spawn_blocking(move || {
        let result = worker.downloads.run(
            &worker.store,
            &model,
            &|status| {
                let _ = tx.send(events::event("progress", &status));
            },
            &|| false,
        );
        worker.metrics.model_download(&model.name, result.is_ok());
        let last = match result {
            Ok(status) => events::event("done", &status),
            Err(e) => events::event(
                "error",
                &serde_json::json!({"error": "download_failed", "message": e.to_string()}),
            ),
        };
        let _ = tx.send(last);
    });
    Ok(events::sse(
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
    ))
}

async fn remove_model(
    State(state): State<Arc<ServerState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<ModelStatus>> {
    let model = manifest::find(&name)?;
    Ok(Json(state.downloads.remove(&state.store, &model)?))
}

/// What new jobs take when a request leaves an option out, and what may be chosen.
#[derive(Serialize)]
struct SettingsView {
    job: JobSettings,
    choices: SettingChoices,
    fast_precision_available: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    job: JobSettings,
}

async fn get_settings(State(state): State<Arc<ServerState>>) -> Json<SettingsView> {
    Json(settings_view(state.settings().job))
}

fn settings_view(job: JobSettings) -> SettingsView {
    SettingsView {
        job,
        choices: SettingChoices::of_this_build(),
        fast_precision_available: Precision::fast_is_available(),
    }
}

/// Changes the job defaults (only those: where files go and which programs run is the
/// server's own business, never a request's).
async fn put_settings(
    State(state): State<Arc<ServerState>>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SettingsView>> {
    let update: SettingsUpdate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the settings: {e}")))?;
    update.job.validate()?;
    let mut settings = state.settings.lock().expect("settings lock");
    let mut changed = settings.clone();
    changed.job = update.job;
    changed.save(&state.data_dir)?;
    *settings = changed;
    Ok(Json(settings_view(settings.job.clone())))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    running: Option<u64>,
    queued: usize,
}

async fn health(State(state): State<Arc<ServerState>>) -> Json<Health> {
    let queued = state
        .queue
        .jobs()
        .iter()
        .filter(|j| j.stage == JobStage::Queued)
        .count();
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        running: state.queue.running(),
        queued,
    })
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    // A scrape still answers while the shared queue is away, without its part.
    let shared = shared_view(&state).await.ok().flatten();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.queue, shared),
    )
        .into_response()
}

/// The shared queue's workers and tickets, read off the async threads; `None` when this
/// server runs its jobs itself.
async fn shared_view(state: &Arc<ServerState>) -> ApiResult<Option<QueueView>> {
    let Some(runner) = state.shared.clone() else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        let workers = runner.workers()?;
        let (waiting, held) = runner.depth()?;
        Ok::<_, stemdeck_cluster::ClusterError>(QueueView {
            workers,
            waiting,
            held,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the shared queue: {e}")))?
    .map(Some)
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unreachable",
            e.to_string(),
        )
    })
}

#[derive(Serialize)]
struct WorkersView {
    /// False when this server separates its jobs itself (no `--queue`).
    shared_queue: bool,
    /// Tickets no worker has taken yet, and tickets workers hold.
    waiting: u64,
    held: u64,
    workers: Vec<stemdeck_cluster::WorkerInfo>,
}

async fn list_workers(State(state): State<Arc<ServerState>>) -> ApiResult<Json<WorkersView>> {
    Ok(Json(match shared_view(&state).await? {
        Some(view) => WorkersView {
            shared_queue: true,
            waiting: view.waiting,
            held: view.held,
            workers: view.workers,
        },
        None => WorkersView {
            shared_queue: false,
            waiting: 0,
            held: 0,
            workers: Vec::new(),
        },
    }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
