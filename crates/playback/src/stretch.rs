//! Tempo and pitch, independently: the mix goes through Signalsmith Stretch, which plays
//! it faster or slower without changing its pitch, and transposes it without changing
//! its speed. The same stretcher serves playback (a block at a time, the settings free to
//! change between blocks) and export (a whole song, offline, at the same quality).

use signalsmith_stretch::Stretch;

/// Tempo as a share of the original speed.
pub const MIN_TEMPO: f32 = 0.5;
pub const MAX_TEMPO: f32 = 1.5;
/// Transposition in semitones (fractions are cents).
pub const MAX_SEMITONES: f32 = 12.0;

/// What the practice controls ask of the audio: neutral is the song as it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempoPitch {
    /// 1.0 is the original speed.
    pub tempo: f32,
    /// 0.0 is the original key.
    pub semitones: f32,
}

impl Default for TempoPitch {
    fn default() -> Self {
        Self {
            tempo: 1.0,
            semitones: 0.0,
        }
    }
}

impl TempoPitch {
    /// Within the supported range, with nonsense (NaN, infinities) taken as neutral.
    pub fn clamped(self) -> Self {
        let tempo = if self.tempo.is_finite() {
            self.tempo.clamp(MIN_TEMPO, MAX_TEMPO)
        } else {
            1.0
        };
        let semitones = if self.semitones.is_finite() {
            self.semitones.clamp(-MAX_SEMITONES, MAX_SEMITONES)
        } else {
            0.0
        };
        Self { tempo, semitones }
    }

    /// True when the audio plays as recorded, so the stretcher can be left out entirely.
    pub fn is_neutral(self) -> bool {
        (self.tempo - 1.0).abs() < 1e-4 && self.semitones.abs() < 1e-3
    }
}

/// A stereo stretcher over interleaved frames.
pub struct Stretcher {
    inner: Stretch,
    semitones: f32,
}

impl Stretcher {
    pub fn new(sample_rate: u32) -> Self {
        Self {
            inner: Stretch::preset_default(2, sample_rate),
            semitones: 0.0,
        }
    }

    /// Input frames the stretcher holds before the point it is playing.
    pub fn input_latency(&self) -> usize {
        self.inner.input_latency()
    }

    /// Output frames between input going in and coming out.
    pub fn output_latency(&self) -> usize {
        self.inner.output_latency()
    }

    pub fn set_semitones(&mut self, semitones: f32) {
        if semitones != self.semitones {
            self.semitones = semitones;
            self.inner.set_transpose_factor_semitones(semitones, None);
        }
    }

    /// Forgets everything and starts over with `preroll` (interleaved, ideally
    /// [`Self::input_latency`] frames) as the audio before the next input: what comes out
    /// next is then the start of `preroll`, after [`Self::output_latency`] frames.
    pub fn restart(&mut self, preroll: &[f32], tempo: f32) {
        self.inner.reset();
        self.inner
            .set_transpose_factor_semitones(self.semitones, None);
        self.inner.seek(preroll, tempo as f64);
    }

    /// Stretches `input` into `output` (both interleaved stereo): their lengths set the
    /// tempo of this block.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        self.inner.process(input, output);
    }
}

/// A whole song through the stretcher, offline: `next` fills the buffer it is given with
/// the next interleaved input frames and returns how many it wrote (0 at the end); `emit`
/// receives the output, which is the input's length divided by the tempo, with the
/// stretcher's latency removed at both ends.
pub fn stretch_stream(
    sample_rate: u32,
    settings: TempoPitch,
    input_frames: u64,
    mut next: impl FnMut(&mut [f32]) -> usize,
    mut emit: impl FnMut(&[f32]) -> Result<(), std::io::Error>,
) -> Result<(), std::io::Error> {
    const CHUNK: usize = 4096;
    let settings = settings.clamped();
    let tempo = settings.tempo as f64;
    let mut stretcher = Stretcher::new(sample_rate);
    stretcher.set_semitones(settings.semitones);
    let total_out = (input_frames as f64 / tempo).round() as u64;
    let (in_latency, out_latency) = (stretcher.input_latency(), stretcher.output_latency());

    // Read one interleaved chunk, padding with silence past the end.
    let mut read = |buffer: &mut Vec<f32>, frames: usize| {
        buffer.clear();
        buffer.resize(frames * 2, 0.0);
        let mut filled = 0;
        while filled < frames {
            let got = next(&mut buffer[filled * 2..]);
            if got == 0 {
                break;
            }
            filled += got;
        }
    };
    let mut input = Vec::new();
    read(&mut input, in_latency);
    stretcher.restart(&input, settings.tempo);

    let mut output = vec![0f32; CHUNK * 2];
    let mut to_skip = out_latency as u64;
    let mut emitted = 0u64;
    let mut consumed = 0f64;
    let mut produced = 0u64;
    while emitted < total_out {
        let out_frames = CHUNK;
        // Input for this chunk, keeping the running ratio exact over the whole song.
        produced += out_frames as u64;
        let wanted = (produced as f64 * tempo).round() - consumed;
        let in_frames = wanted.max(0.0) as usize;
        consumed += in_frames as f64;
        read(&mut input, in_frames);
        stretcher.process(&input, &mut output[..out_frames * 2]);
        let mut chunk = &output[..out_frames * 2];
        let skip = to_skip.min(out_frames as u64) as usize;
        to_skip -= skip as u64;
        chunk = &chunk[skip * 2..];
        let keep = ((total_out - emitted) as usize).min(chunk.len() / 2);
        if keep > 0 {
            emit(&chunk[..keep * 2])?;
            emitted += keep as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RATE: u32 = 44_100;

    fn sine_stereo(hz: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (std::f32::consts::TAU * hz * i as f32 / RATE as f32).sin() * 0.5;
                [v, v]
            })
            .collect()
    }

    /// The frequency of the strongest DFT bin of the left channel, to within 1 Hz.
    pub(crate) fn dominant_hz(interleaved: &[f32]) -> f32 {
        let left: Vec<f32> = interleaved.iter().step_by(2).copied().collect();
        let n = left.len().min(RATE as usize);
        let left = &left[left.len() / 2 - n / 2..][..n];
        let mut best = (0.0, 0f32);
        for hz in (100..2000).map(|h| h as f32) {
            let (mut re, mut im) = (0f32, 0f32);
            for (i, v) in left.iter().enumerate() {
                let phase = std::f32::consts::TAU * hz * i as f32 / RATE as f32;
                re += v * phase.cos();
                im += v * phase.sin();
            }
            let power = re * re + im * im;
            if power > best.1 {
                best = (hz, power);
            }
        }
        best.0
    }

    fn offline(input: &[f32], settings: TempoPitch) -> Vec<f32> {
        let mut at = 0;
        let mut out = Vec::new();
        stretch_stream(
            RATE,
            settings,
            (input.len() / 2) as u64,
            |buffer| {
                let n = (buffer.len() / 2).min(input.len() / 2 - at);
                buffer[..n * 2].copy_from_slice(&input[at * 2..(at + n) * 2]);
                at += n;
                n
            },
            |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn offline_tempo_sets_the_length_and_keeps_the_pitch() {
        let input = sine_stereo(440.0, 4 * RATE as usize);
        let slow = offline(
            &input,
            TempoPitch {
                tempo: 0.8,
                semitones: 0.0,
            },
        );
        assert_eq!(slow.len() / 2, 5 * RATE as usize);
        assert!((dominant_hz(&slow) - 440.0).abs() <= 2.0);
    }

    #[test]
    fn offline_transposition_moves_the_pitch_and_keeps_the_length() {
        let input = sine_stereo(440.0, 3 * RATE as usize);
        let down = offline(
            &input,
            TempoPitch {
                tempo: 1.0,
                semitones: -2.0,
            },
        );
        assert_eq!(down.len(), input.len());
        let expected = 440.0 * 2f32.powf(-2.0 / 12.0);
        assert!(
            (dominant_hz(&down) - expected).abs() <= 2.0,
            "{}",
            dominant_hz(&down)
        );
        // Latency removed: the tone is there from the start, not after a silent gap.
        let first = &down[..2 * 2048];
        assert!(first.iter().any(|v| v.abs() > 0.1));
    }

    #[test]
    fn out_of_range_settings_are_clamped_and_nonsense_is_neutral() {
        let wild = TempoPitch {
            tempo: 9.0,
            semitones: -40.0,
        }
        .clamped();
        assert_eq!((wild.tempo, wild.semitones), (MAX_TEMPO, -MAX_SEMITONES));
        let nan = TempoPitch {
            tempo: f32::NAN,
            semitones: f32::INFINITY,
        }
        .clamped();
        assert!(nan.is_neutral());
    }
}
