//! A streaming short-time spectrum: mono samples go in a block at a time, and each full
//! window comes out as magnitudes. Onset detection and chroma both read songs this way,
//! so an hour-long song is analysed in the memory of one window.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub(crate) struct Spectrum {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    hop: usize,
    /// Samples not yet consumed by a full window.
    pending: Vec<f32>,
    frame: Vec<f32>,
    bins: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    magnitudes: Vec<f32>,
}

impl Spectrum {
    /// Windows of `size` samples every `hop` samples. The first window is centred on the
    /// first sample (half a window of silence before it), so frame `t` is centred on
    /// sample `t * hop`.
    pub(crate) fn new(size: usize, hop: usize) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(size);
        let window = (0..size)
            .map(|i| {
                let phase = std::f32::consts::TAU * i as f32 / size as f32;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        let bins = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Self {
            window,
            hop,
            pending: vec![0.0; size / 2],
            frame: vec![0.0; size],
            magnitudes: vec![0.0; bins.len()],
            bins,
            scratch,
            fft,
        }
    }

    pub(crate) fn bins(&self) -> usize {
        self.magnitudes.len()
    }

    /// Adds `samples`, calling `each` with the magnitudes of every window completed.
    pub(crate) fn push(&mut self, samples: &[f32], mut each: impl FnMut(&[f32])) {
        self.pending.extend_from_slice(samples);
        let size = self.window.len();
        let mut start = 0;
        while self.pending.len() - start >= size {
            for ((f, s), w) in self
                .frame
                .iter_mut()
                .zip(&self.pending[start..start + size])
                .zip(&self.window)
            {
                *f = s * w;
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.bins, &mut self.scratch)
                .expect("buffers are the planner's own sizes");
            for (m, b) in self.magnitudes.iter_mut().zip(&self.bins) {
                *m = b.norm();
            }
            each(&self.magnitudes);
            start += self.hop;
        }
        self.pending.drain(..start);
    }
}

/// Averages the channels of a planar block into one.
pub(crate) fn mono_into(channels: &[&[f32]], out: &mut Vec<f32>) {
    out.clear();
    let Some(first) = channels.first() else {
        return;
    };
    let scale = 1.0 / channels.len() as f32;
    out.extend(first.iter().map(|s| s * scale));
    for channel in &channels[1..] {
        for (o, s) in out.iter_mut().zip(channel.iter()) {
            *o += s * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_peaks_in_its_bin_and_frames_are_centred() {
        let rate = 8000.0;
        let size = 1024;
        let mut spectrum = Spectrum::new(size, 256);
        let tone: Vec<f32> = (0..4096)
            .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / rate).sin())
            .collect();
        let mut frames = 0;
        // Fed in odd-sized pieces, as blocks of a decoder arrive.
        for piece in tone.chunks(333) {
            spectrum.push(piece, |m| {
                frames += 1;
                let peak = (0..m.len()).max_by(|&a, &b| m[a].total_cmp(&m[b])).unwrap();
                assert_eq!(peak, 128, "1 kHz at 8 kHz in 1024 bins");
            });
        }
        // Centred frames: t * 256 + 512 <= 4096 + 512 - 1, so frames 0..=13 are complete.
        assert_eq!(frames, 1 + (4096 + 512 - size) / 256);
    }
}
