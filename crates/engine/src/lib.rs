//! The Stemdeck engine: everything a front end (the CLI, the desktop app, a server) does,
//! with no UI in it, grouped by concern: where audio comes from (`input`), the model store
//! (`models`), jobs and their queue and library (`jobs`), the separation pipeline
//! (`pipeline`), what is made from stems (`outputs`) and the stem player (`player`).
//! Audio I/O is `stemdeck-audio`; the model `stemdeck-demucs`.

mod device;
mod error;
mod events;
pub(crate) mod hash;
pub mod input;
pub mod jobs;
pub mod memory;
pub mod models;
pub mod outputs;
pub mod pipeline;
pub mod player;

pub use device::DeviceChoice;
pub use error::{EngineError, Result};
pub use events::{JobEvent, JobListener, StemsChunk};
pub use models::store::ModelStore;
pub use pipeline::options::{FileFormat, OptionError, OutputOptions, SampleFormat, SettingChoices};
pub use pipeline::separate::{ModelChoice, Separator};
/// Decoding and writing audio files, for front ends that store what they are sent.
pub use stemdeck_audio as audio;
pub use stemdeck_audio::{ClipMode, OutputFormat, Tags};
pub use stemdeck_demucs::{ApplyOptions, Precision};

/// Tempo, key and loudness of a separated song.
pub use stemdeck_analysis as analysis;
