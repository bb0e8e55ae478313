//! Playing stems in sync: a pull-based mixer ([`mixer`]) that tests run without a device,
//! a thin cpal output ([`output`]) for real speakers, and a silent clock ([`silent`]) that
//! keeps the transport running on machines without one.

pub mod mixer;
pub mod output;
pub mod silent;

pub use mixer::{ControlError, GAIN_RAMP_FRAMES, MixerControl, MixerRenderer, StemAudio, mixer};
pub use output::{AudioOutput, OutputDevice, OutputError, StartFailure};
pub use silent::SilentOutput;
