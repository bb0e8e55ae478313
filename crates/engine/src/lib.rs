//! The Stemdeck engine: everything both front ends (the `stemdeck` CLI and the desktop
//! app) do, with no UI in it. Models come from the store, audio from `stemdeck-audio`,
//! separation from `stemdeck-demucs`.

pub mod cache;
pub mod download;
pub mod error;
pub mod export;
pub mod intake;
pub mod library;
pub mod link;
pub mod manifest;
pub mod memory;
pub mod mix;
pub mod models;
pub mod player;
pub mod progress;
pub mod queue;
pub mod run;
pub mod separate;
pub mod settings;
pub mod source;
pub mod spill;
pub mod store;

pub use error::{EngineError, Result};
pub use separate::{
    DeviceChoice, JobEvent, JobListener, ModelChoice, OutputOptions, Separator, StemsChunk,
    two_stems,
};
pub use stemdeck_audio::{
    ClipMode, DEFAULT_MP3_KBPS, FlacDepth, MP3_BITRATES_KBPS, OutputFormat, Tags, WavFormat,
};
pub use stemdeck_demucs::{ApplyOptions, Precision};
pub use store::ModelStore;
