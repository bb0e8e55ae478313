use std::path::PathBuf;

/// Problems with an audio file, worded for the person who chose it.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },

    #[error("{path}: cannot read the file ({reason})")]
    Unreadable { path: PathBuf, reason: String },

    #[error("{path}: the file is empty")]
    EmptyFile { path: PathBuf },

    #[error(
        "{path}: not an audio file Stemdeck can read (WAV, AIFF, CAF, FLAC, MP3, Ogg Vorbis or Opus, AAC/ALAC in M4A, WebM/MKV, MP4/MOV video)"
    )]
    NotAudio { path: PathBuf },

    #[error("{path}: the file has video but no audio track")]
    NoAudioTrack { path: PathBuf },

    #[error("{path}: the audio codec is not supported ({codec})")]
    UnsupportedCodec { path: PathBuf, codec: String },

    #[error("{path}: the file is truncated or damaged ({reason})")]
    Damaged { path: PathBuf, reason: String },

    #[error("{path}: the file contains no audio samples")]
    NoSamples { path: PathBuf },

    #[error("cannot resample audio: {0}")]
    Resample(String),

    #[error("{0}")]
    Unsupported(String),

    #[error("{path}: cannot write the file ({source})")]
    Write {
        path: PathBuf,
        #[source]
        source: WriteFailure,
    },
}

/// What stopped a write: the file system's error, or the encoder's.
pub type WriteFailure = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T> = std::result::Result<T, AudioError>;

impl AudioError {
    /// The message without the file's path in front: for a list that shows the name
    /// beside it.
    pub fn reason(&self) -> String {
        let message = self.to_string();
        match self.path() {
            Some(path) => message
                .strip_prefix(&format!("{}: ", path.display()))
                .map_or_else(|| message.clone(), str::to_string),
            None => message,
        }
    }

    /// The file the message starts with, when it is about one file.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            AudioError::NotFound { path }
            | AudioError::Unreadable { path, .. }
            | AudioError::EmptyFile { path }
            | AudioError::NotAudio { path }
            | AudioError::NoAudioTrack { path }
            | AudioError::UnsupportedCodec { path, .. }
            | AudioError::Damaged { path, .. }
            | AudioError::NoSamples { path }
            | AudioError::Write { path, .. } => Some(path),
            AudioError::Resample(_) | AudioError::Unsupported(_) => None,
        }
    }
}
