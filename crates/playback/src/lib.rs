//! Playing stems in sync: a pull-based mixer ([`mixer`]) fed a block at a time from a
//! [`StemSource`] (in memory, on disk, or still being separated) by its feeder thread, with
//! level meters; a thin cpal output ([`output`]) for real speakers; and a silent clock
//! ([`silent`]) that keeps the transport running on machines without one. Tests run the
//! renderer without any audio device.

pub mod click;
mod feeder;
pub mod meter;
pub mod mixer;
pub mod output;
pub mod rate;
pub mod silent;
pub mod source;
pub mod stretch;

pub use click::BeatGrid;
pub use feeder::BLOCK_FRAMES;
pub use meter::MeterLevel;
pub use mixer::{
    ControlError, EDGE_FADE_FRAMES, GAIN_RAMP_FRAMES, MixerControl, MixerRenderer, mixer, pan_gains,
};
pub use output::{AudioOutput, OutputDevice, OutputError, StartFailure};
pub use silent::SilentOutput;
pub use source::{MemoryStems, StemAudio, StemSource, check_read};
pub use stretch::{MAX_SEMITONES, MAX_TEMPO, MIN_TEMPO, TempoPitch};
