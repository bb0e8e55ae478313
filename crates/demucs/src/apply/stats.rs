//! The mix statistics `demucs.separate` normalises by, and a reader that applies them.

use super::Planar;
use super::stream::MixReader;
use crate::error::Result;

/// The mix statistics `demucs.separate` normalises by: mean and unbiased standard deviation
/// of the mono downmix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixStats {
    pub mean: f32,
    pub std: f32,
}

/// Frames read at a time for the statistics of a [`MixReader`].
pub(super) const STATS_BLOCK: usize = 1 << 16;

impl MixStats {
    pub fn of(mix: &[Vec<f32>]) -> Self {
        Self::of_reader(mix).expect("reading an in-memory mix cannot fail")
    }

    /// The statistics of a mix read in blocks, in two passes (the mean, then the spread
    /// around it), summed in `f64` frame by frame in order: the same values as
    /// [`MixStats::of`] gives for the same audio in memory.
    pub fn of_reader<R: MixReader + ?Sized>(mix: &R) -> Result<Self> {
        let n = mix.len();
        let channels = mix.channels();
        let divisor = channels.max(1) as f64;
        let mut block = Vec::new();
        let mut for_each_mono = |f: &mut dyn FnMut(f64)| -> Result<()> {
            let mut start = 0;
            while start < n {
                let len = STATS_BLOCK.min(n - start);
                block.resize(channels * len, 0.0);
                mix.read(start as isize, len, &mut block)?;
                for i in 0..len {
                    let sum = (0..channels)
                        .map(|c| block[c * len + i] as f64)
                        .sum::<f64>();
                    f(sum / divisor);
                }
                start += len;
            }
            Ok(())
        };
        let mut sum = -0.0f64;
        for_each_mono(&mut |m| sum += m)?;
        let mean = sum / n.max(1) as f64;
        let mut squares = -0.0f64;
        for_each_mono(&mut |m| squares += (m - mean).powi(2))?;
        let var = squares / (n.saturating_sub(1)).max(1) as f64;
        // Digital silence has no spread; leave it unscaled rather than divide by zero.
        let std = if var > 1e-20 { var.sqrt() } else { 1.0 };
        Ok(Self {
            mean: mean as f32,
            std: std as f32,
        })
    }

    pub fn normalise(&self, mix: &[Vec<f32>]) -> Planar {
        mix.iter()
            .map(|c| c.iter().map(|v| self.normalise_value(*v)).collect())
            .collect()
    }

    pub fn denormalise(&self, sources: &mut [Planar]) {
        for v in sources.iter_mut().flatten().flatten() {
            *v = *v * self.std + self.mean;
        }
    }

    pub(super) fn normalise_value(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }
}

/// A mix read through `stats`: what [`MixStats::normalise`] would give, a window at a time,
/// still zero outside the mix (as the normalised mix is padded).
pub(super) struct Normalised<'a, R: ?Sized> {
    pub(super) mix: &'a R,
    pub(super) stats: MixStats,
}

impl<R: MixReader + ?Sized> MixReader for Normalised<'_, R> {
    fn channels(&self) -> usize {
        self.mix.channels()
    }

    fn len(&self) -> usize {
        self.mix.len()
    }

    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> Result<()> {
        self.mix.read(start, len, out)?;
        let from = (-start).clamp(0, len as isize) as usize;
        let to = (self.len() as isize - start).clamp(from as isize, len as isize) as usize;
        for channel in out.chunks_exact_mut(len.max(1)) {
            for v in &mut channel[from..to] {
                *v = self.stats.normalise_value(*v);
            }
        }
        Ok(())
    }
}
