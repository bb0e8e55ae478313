//! The one error every command returns. It reaches the UI as a plain sentence, worded for
//! a musician, never as a debug dump.

use serde::{Serialize, Serializer};
use stemdeck_engine::EngineError;
use stemdeck_engine::app::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Queue(#[from] QueueError),

    #[error(transparent)]
    Engine(#[from] EngineError),

    #[error("nothing is loaded in the player; open a finished job first")]
    NoPlayer,

    #[error("{0}")]
    Invalid(String),

    #[error("the file manager could not be opened ({0})")]
    Reveal(String),

    #[error("Stemdeck's background work stopped unexpectedly ({0}); please try again")]
    Background(String),
}

impl Serialize for AppError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let message = self.to_string();
        // A sentence starts with a capital letter in the UI.
        let mut chars = message.chars();
        let sentence = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => message,
        };
        serializer.serialize_str(&sentence)
    }
}

impl From<tauri::Error> for AppError {
    fn from(e: tauri::Error) -> Self {
        AppError::Background(e.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;
