//! The one error every command returns. Each variant keeps its cause; it reaches the UI
//! as a plain sentence, worded for a musician, never as a debug dump.

use serde::{Serialize, Serializer};
use stemdeck_engine::EngineError;
use stemdeck_engine::jobs::queue::QueueError;
use stemdeck_engine::jobs::settings::SettingsError;
use stemdeck_engine::models::manifest::UnknownModel;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Queue(#[from] QueueError),

    #[error(transparent)]
    Engine(#[from] EngineError),

    #[error(transparent)]
    Settings(#[from] SettingsError),

    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),

    #[error("nothing is loaded in the player; open a finished job first")]
    NoPlayer,

    /// A request the UI should not have made in this state, in our own words.
    #[error("{0}")]
    Invalid(String),

    #[error("the file manager could not be opened ({0})")]
    Reveal(#[from] tauri_plugin_opener::Error),

    #[error("the dialog closed without an answer; please try again")]
    DialogGone,

    /// The runtime's own failure (a background task that panicked, a window gone).
    #[error(transparent)]
    Tauri(#[from] tauri::Error),
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

pub type AppResult<T> = Result<T, AppError>;
