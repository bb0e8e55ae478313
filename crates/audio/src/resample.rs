//! Sample-rate conversion to the model's rate with rubato's FFT resampler.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Indexing, Resampler};

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

/// [`resample`] a block at a time, for audio too long to hold: the same resampler, fed the
/// same chunks, trimmed the same way, so that the concatenated output is exactly what
/// [`resample`] gives for the whole (rubato's `process_all_into_buffer`, spelled out).
/// Audio already at the target rate passes through untouched.
pub struct StreamResampler {
    /// `None` when the rates match.
    resampler: Option<Fft<f32>>,
    source_rate: u32,
    target_rate: u32,
    channels: usize,
    /// Input not yet handed to the resampler.
    pending: Vec<Vec<f32>>,
    /// The resampler's output for one call.
    scratch: Vec<Vec<f32>>,
    /// Output frames still to drop: the resampler's delay.
    to_trim: usize,
    /// Frames the resampler has produced, counting the delay.
    produced: usize,
    frames_in: u64,
    /// Frames handed out by `process`.
    emitted: u64,
}

impl StreamResampler {
    pub fn new(source_rate: u32, target_rate: u32, channels: usize) -> Result<Self> {
        let resampler = if source_rate == target_rate {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    source_rate as usize,
                    target_rate as usize,
                    1024,
                    channels,
                    FixedSync::Input,
                )
                .map_err(|e| AudioError::Resample(e.to_string()))?,
            )
        };
        let (to_trim, scratch_len) = resampler
            .as_ref()
            .map_or((0, 0), |r| (r.output_delay(), r.output_frames_max()));
        Ok(Self {
            resampler,
            source_rate,
            target_rate,
            channels,
            pending: vec![Vec::new(); channels],
            scratch: vec![vec![0f32; scratch_len]; channels],
            to_trim,
            produced: 0,
            frames_in: 0,
            emitted: 0,
        })
    }

    pub fn target_rate(&self) -> u32 {
        self.target_rate
    }

    /// Takes `block` (planar, `channels` channels) and returns the output frames that are
    /// ready, possibly none.
    pub fn process(&mut self, block: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if block.len() != self.channels {
            return Err(AudioError::Resample(format!(
                "a block of {} channels for a resampler of {}",
                block.len(),
                self.channels
            )));
        }
        self.frames_in += block.first().map_or(0, Vec::len) as u64;
        let Some(chunk) = self.resampler.as_ref().map(|r| r.input_frames_next()) else {
            return Ok(block);
        };
        for (pending, new) in self.pending.iter_mut().zip(block) {
            pending.extend(new);
        }
        let mut out = vec![Vec::new(); self.channels];
        let mut consumed = 0;
        // As process_all_into_buffer: full chunks while more than a chunk is left, so that
        // the last chunk, full or not, goes in as the partial one at the end.
        while self.pending.first().map_or(0, Vec::len) - consumed > chunk {
            self.run(consumed, None, &mut out)?;
            consumed += chunk;
        }
        for pending in self.pending.iter_mut() {
            pending.drain(..consumed);
        }
        self.emitted += out.first().map_or(0, Vec::len) as u64;
        Ok(out)
    }

    /// The last output frames. The whole stream then has exactly
    /// `round(frames_in * target_rate / source_rate)` frames, as [`resample`] gives.
    pub fn finish(&mut self) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); self.channels];
        let Some(resampler) = self.resampler.as_ref() else {
            return Ok(out);
        };
        if self.frames_in == 0 {
            return Ok(out);
        }
        let expected = (resampler.resample_ratio() * self.frames_in as f64).ceil() as u64;
        let delay = resampler.output_delay() as u64;
        let left = self.pending.first().map_or(0, Vec::len);
        if left > 0 {
            self.run(0, Some(left), &mut out)?;
            self.pending.iter_mut().for_each(Vec::clear);
        }
        // Silence pumps the resampler until the clip's last frame is out.
        while (self.produced as u64) < expected + delay {
            self.run(0, Some(0), &mut out)?;
        }
        let frames_out = (self.frames_in as f64 * self.target_rate as f64 / self.source_rate as f64)
            .round() as u64;
        // The whole-clip output is the first `expected` frames, cut or padded with silence
        // to `frames_out`; what went out before the end lies within both.
        let keep = expected.min(frames_out);
        debug_assert!(
            self.emitted <= keep,
            "output before the end is within the clip"
        );
        for channel in out.iter_mut() {
            channel.truncate(keep.saturating_sub(self.emitted) as usize);
            channel.resize(frames_out.saturating_sub(self.emitted) as usize, 0.0);
        }
        self.emitted = frames_out;
        Ok(out)
    }

    /// One call of the resampler on `pending[from..]` (`partial` as rubato's `partial_len`),
    /// appending its output, less any delay still to trim, to `out`.
    fn run(&mut self, from: usize, partial: Option<usize>, out: &mut [Vec<f32>]) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
        let resampler = self
            .resampler
            .as_mut()
            .expect("only called with a resampler");
        let frames = self.pending.first().map_or(0, Vec::len);
        let input = SequentialSliceOfVecs::new(&self.pending, self.channels, frames)
            .map_err(|e| err(&e))?;
        let scratch_len = self.scratch.first().map_or(0, Vec::len);
        let mut output =
            SequentialSliceOfVecs::new_mut(&mut self.scratch, self.channels, scratch_len)
                .map_err(|e| err(&e))?;
        let indexing = Indexing {
            input_offset: from,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, written) = resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| err(&e))?;
        self.produced += written;
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        for (dst, src) in out.iter_mut().zip(&self.scratch) {
            dst.extend_from_slice(&src[skip..written]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(frames: usize) -> Vec<Vec<f32>> {
        (0..2)
            .map(|c| {
                (0..frames)
                    .map(|i| {
                        ((i * (c + 3)) as f32 * 0.013).sin() * 0.5
                            + ((i * 7919) % 97) as f32 / 400.0
                    })
                    .collect()
            })
            .collect()
    }

    /// Feeds `audio` in blocks of the given sizes (cycled) and collects the stream.
    fn streamed(audio: &AudioBuffer, target: u32, blocks: &[usize]) -> Vec<Vec<f32>> {
        let mut stream = StreamResampler::new(audio.sample_rate, target, 2).unwrap();
        let mut out = vec![Vec::new(); 2];
        let mut at = 0;
        for &size in blocks.iter().cycle() {
            if at >= audio.frames() {
                break;
            }
            let end = (at + size).min(audio.frames());
            let block = audio.channels.iter().map(|c| c[at..end].to_vec()).collect();
            for (o, b) in out.iter_mut().zip(stream.process(block).unwrap()) {
                o.extend(b);
            }
            at = end;
        }
        for (o, b) in out.iter_mut().zip(stream.finish().unwrap()) {
            o.extend(b);
        }
        out
    }

    #[test]
    fn the_stream_gives_exactly_the_whole_clip_resample() {
        for (rate, frames) in [
            (48000, 96000),
            (48000, 1),
            (48000, 1119),
            (48000, 1120),
            (48000, 1121),
            (22050, 30011),
            (96000, 200_003),
            (32000, 5000),
        ] {
            let audio = AudioBuffer::new(rate, signal(frames));
            let whole = resample(audio.clone(), 44100).unwrap();
            for blocks in [&[frames][..], &[1152], &[1, 4096, 333], &[100_000]] {
                let stream = streamed(&audio, 44100, blocks);
                assert_eq!(
                    stream[0].len(),
                    whole.frames(),
                    "{rate} Hz, {frames} frames"
                );
                assert!(
                    stream == whole.channels,
                    "{rate} Hz, {frames} frames in blocks of {blocks:?} differ"
                );
            }
        }
    }

    #[test]
    fn the_model_rate_passes_through() {
        let audio = AudioBuffer::new(44100, signal(5000));
        assert_eq!(streamed(&audio, 44100, &[777]), audio.channels);
    }
}
