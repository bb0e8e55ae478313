//! STFT and inverse STFT exactly as `torch.stft`/`torch.istft` compute them for demucs
//! (`spec.py`): periodic Hann window, `normalized=True`, `center=True` with reflect padding,
//! plus HTDemucs' own padding and cropping around them (`HTDemucs._spec` / `_ispec`).

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// A complex spectrogram of one signal: `bins x frames`, bin-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub bins: usize,
    pub frames: usize,
    pub data: Vec<Complex32>,
}

impl Spectrogram {
    pub fn zeros(bins: usize, frames: usize) -> Self {
        Self {
            bins,
            frames,
            data: vec![Complex32::new(0.0, 0.0); bins * frames],
        }
    }

    pub fn at(&self, bin: usize, frame: usize) -> Complex32 {
        self.data[bin * self.frames + frame]
    }

    pub fn set(&mut self, bin: usize, frame: usize, value: Complex32) {
        self.data[bin * self.frames + frame] = value;
    }
}

pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .finish()
    }
}

impl Stft {
    pub fn new(n_fft: usize, hop: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        // torch.hann_window is periodic by default.
        let window = (0..n_fft)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / n_fft as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        Self {
            n_fft,
            hop,
            window,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        }
    }

    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// `torch.stft(x, n_fft, hop, window=hann, normalized=True, center=True, pad_mode='reflect')`.
    pub fn stft(&self, signal: &[f32]) -> Spectrogram {
        let half = self.n_fft / 2;
        let padded = reflect_pad(signal, half, half);
        let frames = 1 + (padded.len() - self.n_fft) / self.hop;
        let bins = half + 1;
        let scale = 1.0 / (self.n_fft as f32).sqrt();
        let mut out = Spectrogram::zeros(bins, frames);
        let mut frame_buf = self.forward.make_input_vec();
        let mut spectrum = self.forward.make_output_vec();
        let mut scratch = self.forward.make_scratch_vec();
        for f in 0..frames {
            let start = f * self.hop;
            for (i, v) in frame_buf.iter_mut().enumerate() {
                *v = padded[start + i] * self.window[i];
            }
            self.forward
                .process_with_scratch(&mut frame_buf, &mut spectrum, &mut scratch)
                .expect("buffer sizes come from the plan");
            for (bin, value) in spectrum.iter().enumerate() {
                out.set(bin, f, value * scale);
            }
        }
        out
    }

    /// `torch.istft(z, n_fft, hop, window=hann, normalized=True, center=True, length=length)`.
    pub fn istft(&self, spec: &Spectrogram, length: usize) -> Vec<f32> {
        let half = self.n_fft / 2;
        assert_eq!(spec.bins, half + 1, "istft needs n_fft/2+1 bins");
        let full_len = self.n_fft + self.hop * (spec.frames.saturating_sub(1));
        let mut signal = vec![0f32; full_len];
        let mut envelope = vec![0f32; full_len];
        let mut spectrum = self.inverse.make_input_vec();
        let mut frame_buf = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let scale = 1.0 / (self.n_fft as f32).sqrt();
        for f in 0..spec.frames {
            for (bin, v) in spectrum.iter_mut().enumerate() {
                *v = spec.at(bin, f);
            }
            // A real signal's DC and Nyquist bins are real; torch ignores their imaginary part.
            spectrum[0].im = 0.0;
            spectrum[half].im = 0.0;
            self.inverse
                .process_with_scratch(&mut spectrum, &mut frame_buf, &mut scratch)
                .expect("buffer sizes come from the plan");
            let start = f * self.hop;
            for i in 0..self.n_fft {
                let w = self.window[i];
                signal[start + i] += frame_buf[i] * scale * w;
                envelope[start + i] += w * w;
            }
        }
        (0..length)
            .map(|i| {
                let j = half + i;
                if j < full_len && envelope[j] > 1e-11 {
                    signal[j] / envelope[j]
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// `HTDemucs._spec`: pads by `hop/2*3` on the left and up to a whole number of hops on
    /// the right (reflect), takes the STFT, drops the Nyquist bin and keeps frames
    /// `[2, 2 + ceil(len/hop))`.
    pub fn model_spec(&self, signal: &[f32]) -> Spectrogram {
        let hop = self.hop;
        let le = signal.len().div_ceil(hop);
        let pad = hop / 2 * 3;
        let padded = pad1d_reflect(signal, pad, pad + le * hop - signal.len());
        let full = self.stft(&padded);
        debug_assert_eq!(full.frames, le + 4);
        let bins = full.bins - 1;
        let mut out = Spectrogram::zeros(bins, le);
        for bin in 0..bins {
            for f in 0..le {
                out.set(bin, f, full.at(bin, f + 2));
            }
        }
        out
    }

    /// `HTDemucs._ispec`: the inverse of [`Stft::model_spec`], returning `length` samples.
    pub fn model_ispec(&self, spec: &Spectrogram, length: usize) -> Vec<f32> {
        let hop = self.hop;
        let mut full = Spectrogram::zeros(spec.bins + 1, spec.frames + 4);
        for bin in 0..spec.bins {
            for f in 0..spec.frames {
                full.set(bin, f + 2, spec.at(bin, f));
            }
        }
        let pad = hop / 2 * 3;
        let le = hop * length.div_ceil(hop) + 2 * pad;
        let signal = self.istft(&full, le);
        signal[pad..pad + length].to_vec()
    }
}

/// Reflect padding (the edge sample is not repeated), as `F.pad(mode='reflect')`.
fn reflect_pad(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let n = x.len();
    assert!(
        n > left.max(right),
        "reflect padding needs more samples than the padding"
    );
    let mut out = Vec::with_capacity(n + left + right);
    out.extend((1..=left).rev().map(|i| x[i]));
    out.extend_from_slice(x);
    out.extend((1..=right).map(|i| x[n - 1 - i]));
    out
}

/// demucs' `pad1d`: reflect padding that first zero-extends inputs too short to reflect.
fn pad1d_reflect(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let n = x.len();
    let max_pad = left.max(right);
    if n > max_pad {
        return reflect_pad(x, left, right);
    }
    let extra = max_pad - n + 1;
    let extra_right = right.min(extra);
    let extra_left = extra - extra_right;
    let mut widened = vec![0f32; extra_left];
    widened.extend_from_slice(x);
    widened.extend(std::iter::repeat_n(0f32, extra_right));
    reflect_pad(&widened, left - extra_left, right - extra_right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_pad_mirrors_without_repeating_the_edge() {
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2, 3),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
        );
    }

    #[test]
    fn pad1d_zero_extends_short_inputs_before_reflecting() {
        // demucs: extra = 3 - 2 + 1 = 2 zeros, all on the right, then reflect by (3, 1).
        assert_eq!(
            pad1d_reflect(&[1.0, 2.0], 3, 3),
            vec![0.0, 0.0, 2.0, 1.0, 2.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn istft_inverts_stft() {
        let stft = Stft::new(64, 16);
        let signal: Vec<f32> = (0..500)
            .map(|i| ((i as f32) * 0.37).sin() + 0.1 * ((i * i) as f32 * 0.001).cos())
            .collect();
        let back = stft.istft(&stft.stft(&signal), signal.len());
        let err = signal
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "round trip error {err}");
        // HTDemucs drops the Nyquist bin and the two outer frames on each side, so only
        // the interior comes back (nearly) unchanged.
        let model_back = stft.model_ispec(&stft.model_spec(&signal), signal.len());
        let interior = 64..signal.len() - 64;
        let err = signal[interior.clone()]
            .iter()
            .zip(&model_back[interior])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-2, "model round trip error {err}");
    }
}
