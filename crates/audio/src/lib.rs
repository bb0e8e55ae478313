//! Audio in and out for Stemdeck: decode any supported file (symphonia), trim encoder
//! delay and padding, map channels to stereo, resample (rubato), and write WAV (hound),
//! FLAC (flac-codec) or MP3 (LAME) with tags.

pub mod buffer;
pub mod channels;
pub mod decode;
pub mod encode;
pub mod error;
pub mod flac;
pub mod format;
pub mod gapless;
pub mod mp3;
pub mod peaks;
pub mod resample;
pub mod wav;

pub use buffer::AudioBuffer;
pub use decode::decode_file;
pub use encode::{ClipMode, normalize_peak, prevent_clip, write_atomically};
pub use error::{AudioError, Result};
pub use format::{
    DEFAULT_MP3_KBPS, FlacDepth, MP3_BITRATES_KBPS, OutputFormat, Tags, WavFormat, write_audio,
};
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
