//! Playing stems in sync: a pull-based mixer ([`mixer`]) that tests run without a device,
//! and a thin cpal output ([`output`]) for real speakers.

pub mod mixer;
pub mod output;

pub use mixer::{ControlError, GAIN_RAMP_FRAMES, MixerControl, MixerRenderer, StemAudio, mixer};
pub use output::{AudioOutput, OutputDevice, OutputError};
