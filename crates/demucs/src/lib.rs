//! HTDemucs (Demucs v4) on Candle: the model, its checkpoints and the chunked apply.
//!
//! This crate does no file or network I/O: checkpoints arrive as bytes, audio as planar
//! `f32` buffers, and progress and cancellation go through [`SeparationListener`].

pub mod apply;
pub mod config;
pub mod error;
pub mod inventory;
pub mod kernels;
pub mod layers;
pub mod model;
pub mod nn;
pub mod precision;
pub mod profile;
pub mod stft;
pub mod transformer;
pub mod weights;

pub use apply::{
    ApplyOptions, BagOfModels, CollectStems, MixReader, MixStats, Planar, Progress,
    SeparationListener, Silent, StemSink, separate, separate_streaming,
};
pub use candle_core::{Device, Error as CandleError};
pub use config::HTDemucsConfig;
pub use error::{DemucsError, Result};
pub use inventory::{TensorProblem, parameter_shapes, tensor_problems};
pub use model::HTDemucs;
pub use precision::Precision;
pub use weights::{Checkpoint, CheckpointError};
