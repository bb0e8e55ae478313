//! Sample-rate conversion to the model's rate with rubato's FFT resampler.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};

use crate::buffer::AudioBuffer;
use crate::error::{AudioError, Result};

/// Converts `audio` to `target_rate`; the output has exactly
/// `round(frames * target_rate / source_rate)` frames and no added delay. Audio already at
/// that rate is handed back as it is, without a copy.
pub fn resample(audio: AudioBuffer, target_rate: u32) -> Result<AudioBuffer> {
    if audio.sample_rate == target_rate || audio.frames() == 0 {
        return Ok(AudioBuffer::new(target_rate, audio.channels));
    }
    let channels = audio.num_channels();
    let frames_in = audio.frames();
    let mut resampler = Fft::<f32>::new(
        audio.sample_rate as usize,
        target_rate as usize,
        1024,
        channels,
        FixedSync::Input,
    )
    .map_err(|e| AudioError::Resample(e.to_string()))?;
    let frames_out =
        (frames_in as f64 * target_rate as f64 / audio.sample_rate as f64).round() as usize;
    let needed = resampler.process_all_needed_output_len(frames_in);
    let mut output = vec![vec![0f32; needed]; channels];
    let input = SequentialSliceOfVecs::new(&audio.channels, channels, frames_in)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    let mut output_adapter = SequentialSliceOfVecs::new_mut(&mut output, channels, needed)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    let (_, written) = resampler
        .process_all_into_buffer(&input, &mut output_adapter, frames_in, None)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    for channel in output.iter_mut() {
        channel.truncate(written.min(frames_out));
        channel.resize(frames_out, 0.0);
    }
    Ok(AudioBuffer::new(target_rate, output))
}
