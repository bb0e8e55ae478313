//! Every failure a job can end with. Each variant keeps its cause (the file system's,
//! the decoder's or the model's error) and words the whole message for a musician, so a
//! front end shows `to_string()` as it is.

use std::path::PathBuf;

use stemdeck_audio::AudioError;
use stemdeck_demucs::DemucsError;

use crate::device::DeviceChoice;
use crate::models::manifest::UnknownModel;
use crate::pipeline::options::OptionError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Audio(#[from] AudioError),

    #[error("{} is not a model Stemdeck can use: {source}", path.display())]
    NotACheckpoint {
        path: PathBuf,
        #[source]
        source: stemdeck_demucs::CheckpointError,
    },

    /// A checkpoint that reads but does not build the model it claims to be.
    #[error("{}: {source}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: DemucsError,
    },

    #[error(transparent)]
    Separation(#[from] DemucsError),

    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),

    #[error("model {model} does not have a source named {source_name:?} (it has {sources})")]
    UnknownSource {
        model: String,
        source_name: String,
        sources: String,
    },

    #[error("cannot make the mix \"{spec}\": {reason}")]
    BadMix { spec: String, reason: String },

    #[error("download of {url} failed: {problem}")]
    Download {
        url: String,
        #[source]
        problem: crate::models::download::DownloadProblem,
    },

    #[error(
        "downloaded {url} does not match its published checksum (expected SHA-256 {expected}..., got {actual}); the file was discarded"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    #[error(transparent)]
    Models(#[from] crate::models::manager::ModelManagerError),

    #[error(transparent)]
    ModelBusy(#[from] crate::models::status::DownloadRefused),

    #[error("no place to keep models: set STEMDECK_MODEL_DIR or a home directory")]
    NoModelDir,

    #[error("{device} is not available: {source}")]
    DeviceUnavailable {
        device: DeviceChoice,
        #[source]
        source: stemdeck_demucs::CandleError,
    },

    /// A choice no job can run with (also checked before any work starts).
    #[error(transparent)]
    Option(#[from] OptionError),

    #[error("{}: {}", path.display(), read_problem(source))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or folder the job needs that the system refused; `doing` says what failed,
    /// in words ("cannot write the file").
    #[error("{}: {doing} ({source})", path.display())]
    Io {
        path: PathBuf,
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: the job has no stems to export", path.display())]
    NothingToExport { path: PathBuf },

    #[error("{}: the mix needs one level per stem", path.display())]
    LevelsPerStem { path: PathBuf },

    #[error("{}: every stem is muted, so the mix would be silent", path.display())]
    SilentMix { path: PathBuf },

    #[error("“{title}” has no stems to play yet")]
    NothingToPlay { title: String },

    #[error(transparent)]
    PlaybackOutput(#[from] stemdeck_playback::OutputError),

    #[error(transparent)]
    PlaybackControl(#[from] stemdeck_playback::ControlError),

    /// Every download backend failed; the message names each one's reason.
    #[error("{message}")]
    LinkDownload {
        message: String,
        failures: Vec<crate::input::source::BackendFailure>,
    },

    #[error("cancelled")]
    Cancelled,
}

/// A file that cannot be read, as a musician would say it.
pub(crate) fn read_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".into(),
        _ => format!("cannot read the file ({e})"),
    }
}

impl EngineError {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| EngineError::Read { path, source }
    }

    pub fn io(
        path: impl Into<PathBuf>,
        doing: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| EngineError::Io {
            path,
            doing,
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        Self::io(path, "cannot write the file")
    }

    /// Whether running the same job again could succeed: a lost connection, a full disk or
    /// a busy device may be gone by then; a file that is not audio, a damaged file or a
    /// setting no model has will fail the same way.
    pub fn can_retry_help(&self) -> bool {
        match self {
            EngineError::Audio(e) => matches!(
                e,
                AudioError::NotFound { .. }
                    | AudioError::Unreadable { .. }
                    | AudioError::Write { .. }
                    | AudioError::Resample(_)
            ),
            EngineError::NotACheckpoint { .. }
            | EngineError::Weights { .. }
            | EngineError::UnknownModel(_)
            | EngineError::UnknownSource { .. }
            | EngineError::BadMix { .. }
            | EngineError::Option(_)
            | EngineError::NothingToExport { .. }
            | EngineError::LevelsPerStem { .. }
            | EngineError::SilentMix { .. }
            | EngineError::NothingToPlay { .. } => false,
            _ => true,
        }
    }

    /// The file the message starts with, when it is about one file.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            EngineError::Audio(e) => e.path(),
            EngineError::NotACheckpoint { path, .. }
            | EngineError::Weights { path, .. }
            | EngineError::Read { path, .. }
            | EngineError::Io { path, .. }
            | EngineError::NothingToExport { path }
            | EngineError::LevelsPerStem { path }
            | EngineError::SilentMix { path } => Some(path),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;
