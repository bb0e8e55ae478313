//! FL-BT's three routes, so that its clients work unchanged: submit a YouTube video by ID,
//! poll its Celery-style status (`PENDING`, `RUNNING`, `SUCCESS`, `FAILURE`), download
//! the stems as a ZIP. They take the same token and rate limit as `/api/v1`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use stemdeck_engine::jobs::library::JobStage;

use crate::api::{self, find_job};
use crate::auth;
use crate::error::ApiError;
use crate::state::ServerState;

pub fn router(state: Arc<ServerState>) -> Router<Arc<ServerState>> {
    Router::new()
        .route(
            "/submit/{video_id}",
            post(submit.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                api::rate_limit,
            ))),
        )
        .route("/status/{task_id}", get(status))
        .route("/download/{task_id}", get(download))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ))
}

#[derive(Serialize)]
struct Submitted {
    video_id: String,
    task_id: String,
    status: &'static str,
}

#[derive(Serialize)]
struct Status {
    task_id: String,
    status: &'static str,
    error: Option<String>,
}

fn celery_status(stage: JobStage) -> &'static str {
    match stage {
        JobStage::Queued => "PENDING",
        JobStage::Done => "SUCCESS",
        JobStage::Failed | JobStage::Cancelled | JobStage::Interrupted => "FAILURE",
        _ => "RUNNING",
    }
}

async fn submit(
    State(state): State<Arc<ServerState>>,
    Path(video_id): Path<String>,
) -> Result<Json<Submitted>, ApiError> {
    let job = api::add_link(&state, &video_id, state.settings().job)?;
    let video_id = match &job.source {
        stemdeck_engine::jobs::library::JobSource::Link { video, .. } => video.as_str().to_owned(),
        _ => video_id,
    };
    Ok(Json(Submitted {
        video_id,
        task_id: job.id.to_string(),
        status: celery_status(job.stage),
    }))
}

async fn status(
    State(state): State<Arc<ServerState>>,
    Path(task_id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    let job = find_job(&state, &task_id)?;
    Ok(Json(Status {
        task_id,
        status: celery_status(job.stage),
        error: job.error,
    }))
}

/// FL-BT answers 404 until the result exists; so does this, with its `detail` field.
async fn download(State(state): State<Arc<ServerState>>, Path(task_id): Path<String>) -> Response {
    let job = match find_job(&state, &task_id) {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    match api::zip_response(&job) {
        Ok(response) => response,
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "detail": "Result not available",
                "error": e.code,
                "message": e.message,
            })),
        )
            .into_response(),
    }
}
