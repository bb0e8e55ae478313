//! The Stemdeck engine: everything a front end (the CLI, the desktop app, a server) does,
//! with no UI in it: models, inputs, the separation pipeline and its rules and errors, and
//! the app's library and queue. Audio I/O is `stemdeck-audio`; the model `stemdeck-demucs`.

pub mod app;
mod device;
mod error;
mod events;
pub(crate) mod hash;
pub mod input;
pub mod memory;
pub mod models;
pub mod pipeline;

pub use device::DeviceChoice;
pub use error::{EngineError, Result};
pub use events::{JobEvent, JobListener, StemsChunk};
pub use models::store::ModelStore;
pub use pipeline::options::{FileFormat, OptionError, OutputOptions, SampleFormat, SettingChoices};
pub use pipeline::separate::{ModelChoice, Separator};
pub use stemdeck_audio::{ClipMode, OutputFormat, Tags};
pub use stemdeck_demucs::{ApplyOptions, Precision};

/// Tempo, key and loudness of a separated song.
pub use stemdeck_analysis as analysis;
