//! Where the segments of one pass fall, and demucs' triangular blending weights.

use candle_core::{Device, Tensor};

use super::ApplyOptions;
use super::bag::{Pass, Rolling};
use super::stream::MixReader;
use crate::error::{DemucsError, Result};
use crate::model::HTDemucs;

/// The split of one model's passes into segments, with demucs' blending weights.
pub(super) struct SegmentPlan {
    pub(super) segment_length: usize,
    pub(super) stride: usize,
    pub(super) weight: Vec<f32>,
}

impl SegmentPlan {
    pub(super) fn new(model: &HTDemucs, opts: &ApplyOptions) -> Result<Self> {
        let cfg = model.config();
        let trained = cfg.segment.as_f64();
        let segment_length = match opts.segment {
            None => cfg.segment_samples(),
            Some(s) if s > 0.0 && s <= trained + 1e-9 => (s * cfg.samplerate as f64) as usize,
            Some(s) => {
                return Err(DemucsError::InvalidSetting(format!(
                    "segment must be between 0 and {trained:.2} s for this model (the length it was trained on), got {s}"
                )));
            }
        };
        if segment_length < 2 {
            return Err(DemucsError::InvalidSetting("segment is too short".into()));
        }
        let stride = (((1.0 - opts.overlap) * segment_length as f64) as usize).max(1);
        let half = segment_length / 2;
        let ramp: Vec<f64> = (1..=half)
            .map(|v| v as f64)
            .chain((1..=segment_length - half).rev().map(|v| v as f64))
            .collect();
        let max = ramp.iter().copied().fold(0.0, f64::max);
        let weight = ramp
            .iter()
            .map(|w| (w / max).powf(opts.transition_power) as f32)
            .collect();
        Ok(Self {
            segment_length,
            stride,
            weight,
        })
    }

    pub(super) fn segments(&self, view_len: usize) -> usize {
        view_len.div_ceil(self.stride)
    }

    /// The sum of the blending weights of a pass at frame `at` of its view, from the
    /// segments that cover it only (those starting in `(at - segment_length, at]`), added
    /// in segment order as demucs' `sum_weight` does. Every covering segment holds the
    /// frame: a pass's last segment is cut at the view's end, and `at` lies before it.
    pub(super) fn weight_sum(&self, at: usize) -> f32 {
        let first = (at + 1)
            .saturating_sub(self.segment_length)
            .div_ceil(self.stride);
        let mut sum = 0f32;
        for k in first..=at / self.stride {
            sum += self.weight[at - k * self.stride];
        }
        sum
    }

    /// Separates the next segment of `pass` as demucs' split pass does, and adds its
    /// share (`pass.scales[source]` times the blended result) to the frames of `estimates`
    /// that the mix covers.
    pub(super) fn run_segment(
        &self,
        model: &HTDemucs,
        mix: &dyn MixReader,
        pass: &Pass,
        estimates: &mut Rolling,
    ) -> Result<()> {
        let length = mix.len() as isize;
        let offset = pass.next;
        let chunk_len = (pass.view_len - offset).min(self.segment_length);
        // As demucs' TensorChunk.padded: centre the chunk in a full segment, taking the
        // neighbouring audio (or silence past the ends) as context.
        let delta = self.segment_length - chunk_len;
        let start = pass.origin + offset as isize - (delta / 2) as isize;
        let channels = mix.channels();
        let mut window = vec![0f32; channels * self.segment_length];
        mix.read(start, self.segment_length, &mut window)?;
        let input = Tensor::from_vec(window, (1, channels, self.segment_length), model.device())?;
        let separated = model
            .forward(&input)?
            .squeeze(0)?
            .narrow(2, delta / 2, chunk_len)?;
        let separated = separated.to_device(&Device::Cpu)?.to_vec3::<f32>()?;
        // The chunk's frames, in mix coordinates, clipped to the mix.
        let first = pass.origin + offset as isize;
        let skip = (-first).max(0) as usize;
        let keep = ((length - first).max(0) as usize).min(chunk_len);
        if skip >= keep {
            return Ok(());
        }
        let blend: Vec<f32> = (skip..keep)
            .map(|i| self.weight[i] / self.weight_sum(offset + i))
            .collect();
        estimates.add(
            (first + skip as isize) as usize,
            &separated,
            skip,
            &pass.scales,
            &blend,
        );
        Ok(())
    }
}
