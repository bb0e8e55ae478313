use std::path::PathBuf;

use stemdeck_audio::AudioError;
use stemdeck_demucs::DemucsError;

/// Every failure a Stemdeck job can end with, worded for a musician.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Audio(#[from] AudioError),

    #[error("{path}: {source}")]
    Weights {
        path: PathBuf,
        source: stemdeck_demucs::CheckpointError,
    },

    #[error("{0}")]
    Separation(#[from] DemucsError),

    #[error("unknown model {name:?}; available: {available}")]
    UnknownModel { name: String, available: String },

    #[error("model {model} does not have a source named {source_name:?} (it has {sources})")]
    UnknownSource {
        model: String,
        source_name: String,
        sources: String,
    },

    #[error("cannot make the mix \"{spec}\": {reason}")]
    BadMix { spec: String, reason: String },

    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    #[error(
        "downloaded {url} does not match its published checksum (expected SHA-256 {expected}..., got {actual}); the file was discarded"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    #[error(transparent)]
    Models(#[from] crate::models::ModelManagerError),

    #[error("no place to keep models: set STEMDECK_MODEL_DIR or a home directory")]
    NoModelDir,

    #[error("{device} is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },

    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },

    #[error("{0}")]
    Playback(String),

    /// Every download backend failed; the message names each one's reason.
    #[error("{message}")]
    LinkDownload {
        message: String,
        failures: Vec<crate::source::BackendFailure>,
    },

    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, EngineError>;
