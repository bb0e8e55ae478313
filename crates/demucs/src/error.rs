/// Everything that can go wrong inside the separation core, worded for the person who
/// chose the file or the model.
#[derive(Debug, thiserror::Error)]
pub enum DemucsError {
    #[error("this model uses a Demucs option Stemdeck does not support: {0}")]
    Unsupported(String),

    #[error("model weights do not fit the model: {0}")]
    WeightMismatch(String),

    #[error("invalid separation setting: {0}")]
    InvalidSetting(String),

    #[error("the audio is empty")]
    EmptyAudio,

    #[error("separation cancelled")]
    Cancelled,

    #[error("compute error: {0}")]
    Compute(#[from] candle_core::Error),

    /// A failure of the caller's [`MixReader`](crate::apply::MixReader) or
    /// [`StemSink`](crate::apply::StemSink) (a file that cannot be read or written),
    /// passed through as it was raised.
    #[error("{0}")]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
}

pub type Result<T> = std::result::Result<T, DemucsError>;
