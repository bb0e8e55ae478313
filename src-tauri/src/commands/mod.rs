//! Every command the UI can call, grouped by what it is about. Each is a thin wrapper: it
//! reads the app state, calls into the engine and maps the result to [`AppError`].
//!
//! [`AppError`]: crate::error::AppError

pub mod export;
pub mod library;
pub mod player;
pub mod settings;
