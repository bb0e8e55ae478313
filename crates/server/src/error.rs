//! Why the server could not start, and what a refused request answers: JSON
//! `{"error": code, "message": sentence}` with the HTTP status that fits.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stemdeck_engine::EngineError;
use stemdeck_engine::jobs::queue::QueueError;
use stemdeck_engine::jobs::settings::SettingsError;
use stemdeck_engine::models::manifest::UnknownModel;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the data folder {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the token file {}: {source}", path.display())]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {} is empty; put a token in it, or delete it to have one made", path.display())]
    EmptyToken { path: PathBuf },
    #[error("cannot write the token file {}: {source}", path.display())]
    WriteToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Queue(#[from] stemdeck_cluster::ClusterError),
}

/// A request that could not be done, as the client hears it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable and machine-readable: `not_found`, `invalid_option`, …
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: sentence(message.into()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn no_job(id: &str) -> Self {
        Self::not_found(format!("there is no job {id}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// Messages read as sentences, as in the app.
fn sentence(message: String) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => message,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::NoSuchJob(_) => StatusCode::NOT_FOUND,
            QueueError::FileNotFound(_) | QueueError::Unsupported(..) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            QueueError::NotRetryable(_) | QueueError::RetryCannotHelp { .. } => {
                StatusCode::CONFLICT
            }
            QueueError::Library(_) => StatusCode::INTERNAL_SERVER_ERROR,
            QueueError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let code = match &e {
            QueueError::NoSuchJob(_) => "not_found",
            QueueError::FileNotFound(_) | QueueError::Unsupported(..) => "unsupported_audio",
            QueueError::NotRetryable(_) => "not_retryable",
            QueueError::RetryCannotHelp { .. } => "retry_cannot_help",
            QueueError::Library(_) => "library",
            QueueError::Unreachable(_) => "queue_unreachable",
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Save(_) => Self::internal(e.to_string()),
            _ => Self::new(StatusCode::BAD_REQUEST, "invalid_option", e.to_string()),
        }
    }
}

impl From<UnknownModel> for ApiError {
    fn from(e: UnknownModel) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_model", e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::ModelBusy(_) => (StatusCode::CONFLICT, "busy"),
            EngineError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            EngineError::Option(_) | EngineError::BadMix { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_option")
            }
            EngineError::NothingToExport { .. } => (StatusCode::CONFLICT, "no_stems"),
            EngineError::Download { .. }
            | EngineError::ChecksumMismatch { .. }
            | EngineError::LinkDownload { .. } => (StatusCode::BAD_GATEWAY, "download_failed"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
