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
pub use decode::{DecodeStream, decode_file};
pub use encode::{
    ClipMode, LevelGain, fold_peak, normalize_peak, prevent_clip, temp_name, write_atomically,
    write_bytes_atomically,
};
pub use error::{AudioError, Result};
pub use format::{
    AudioWriter, DEFAULT_MP3_KBPS, FlacDepth, MP3_BITRATES_KBPS, OutputFormat, Tags, WavFormat,
    write_audio,
};
pub use peaks::{PeakBuilder, waveform_peaks};
pub use resample::{StreamResampler, resample};

/// The rate every Stemdeck model runs at.
pub const MODEL_SAMPLE_RATE: u32 = 44_100;

/// Decodes `path`, maps it to stereo and resamples it to `sample_rate`: everything the
/// separator needs from a file.
pub fn load_for_model(path: &std::path::Path, sample_rate: u32) -> Result<AudioBuffer> {
    let decoded = decode_file(path)?;
    resample(decoded, sample_rate)
}

/// [`load_for_model`] as a stream, for files too long to hold: blocks of stereo audio at
/// `sample_rate`, whose concatenation is exactly what [`load_for_model`] gives.
pub fn open_for_model(path: &std::path::Path, sample_rate: u32) -> Result<ModelStream> {
    let decode = decode::open(path)?;
    let resampler = StreamResampler::new(decode.sample_rate(), sample_rate, 2)?;
    Ok(ModelStream {
        decode,
        resampler,
        finished: false,
    })
}

/// A file decoded and resampled block by block; see [`open_for_model`].
pub struct ModelStream {
    decode: DecodeStream,
    resampler: StreamResampler,
    finished: bool,
}

impl ModelStream {
    /// The rate of the file itself.
    pub fn source_rate(&self) -> u32 {
        self.decode.sample_rate()
    }

    /// The rate of the blocks.
    pub fn sample_rate(&self) -> u32 {
        self.resampler.target_rate()
    }

    /// Frames the container announces, at the blocks' rate, when it does. Gapless trims
    /// can make the decoded audio a little shorter.
    pub fn announced_frames(&self) -> Option<u64> {
        let (from, to) = (
            self.source_rate().max(1) as u128,
            self.sample_rate() as u128,
        );
        self.decode
            .announced_frames()
            .map(|frames| (frames as u128 * to / from) as u64)
    }

    /// The next block (planar stereo, never empty), `None` after the last.
    pub fn next_block(&mut self) -> Result<Option<Vec<Vec<f32>>>> {
        while !self.finished {
            let out = match self.decode.next_block()? {
                Some(block) => self.resampler.process(block.channels)?,
                None => {
                    self.finished = true;
                    self.resampler.finish()?
                }
            };
            if out.first().is_some_and(|c| !c.is_empty()) {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }
}
