//! Audio in and out for Stemdeck: decode any supported file (symphonia), trim encoder
//! delay and padding, map channels to stereo, resample (rubato) and write WAV (hound).

pub mod buffer;
pub mod channels;
pub mod decode;
pub mod encode;
pub mod error;
pub mod gapless;
pub mod peaks;
pub mod resample;

pub use buffer::AudioBuffer;
pub use decode::decode_file;
pub use encode::{ClipMode, WavFormat, prevent_clip, write_atomically, write_wav};
pub use error::{AudioError, Result};
pub use peaks::waveform_peaks;
pub use resample::resample;

/// The rate every Stemdeck model runs at.
pub const MODEL_SAMPLE_RATE: u32 = 44_100;

/// Decodes `path`, maps it to stereo and resamples it to `sample_rate`: everything the
/// separator needs from a file.
pub fn load_for_model(path: &std::path::Path, sample_rate: u32) -> Result<AudioBuffer> {
    let decoded = decode_file(path)?;
    resample(decoded, sample_rate)
}
