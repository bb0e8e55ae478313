//! `demucs.apply.apply_model` and the normalisation of `demucs.separate`: cut the track
//! into overlapping segments, run the model on each, and blend them back with demucs'
//! triangular weights; optionally average random time shifts and a bag of models.
//!
//! Memory: besides the model's own working set for one segment, this holds the input, one
//! output buffer of `sources x channels x length`, and one weight sum per frame of a pass.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::error::{DemucsError, Result};
use crate::model::HTDemucs;

/// How a track is cut and blended.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// Segment length in seconds; `None` uses the length the model was trained on.
    pub segment: Option<f64>,
    /// Fraction of each segment shared with the next one, in `[0, 1)`.
    pub overlap: f64,
    /// Number of random time shifts to average (0 runs the track once, deterministically).
    pub shifts: usize,
    /// Seed for the shifts, so that a run can be repeated exactly.
    pub seed: u64,
    /// Exponent of the blending weights (demucs' `transition_power`).
    pub transition_power: f64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            segment: None,
            overlap: 0.25,
            shifts: 0,
            seed: 0,
            transition_power: 1.0,
        }
    }
}

/// Where the separation is, reported after each segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub segments_done: usize,
    pub segments_total: usize,
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        if self.segments_total == 0 {
            1.0
        } else {
            self.segments_done as f64 / self.segments_total as f64
        }
    }
}

/// Receives progress and is asked, between segments, whether to stop.
pub trait SeparationListener {
    fn on_progress(&self, _progress: Progress) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// A listener that ignores everything.
pub struct Silent;
impl SeparationListener for Silent {}

/// Planar audio: one `Vec` per channel, all the same length.
pub type Planar = Vec<Vec<f32>>;

/// One or more HTDemucs models whose outputs are averaged with per-source weights
/// (`demucs.apply.BagOfModels`). A single model is a bag of one.
#[derive(Debug)]
pub struct BagOfModels {
    models: Vec<HTDemucs>,
    weights: Vec<Vec<f64>>,
}

impl BagOfModels {
    pub fn single(model: HTDemucs) -> Self {
        let sources = model.config().num_sources();
        Self {
            models: vec![model],
            weights: vec![vec![1.0; sources]],
        }
    }

    /// `weights[m][s]` weighs model `m`'s estimate of source `s`; `None` weighs all equally.
    pub fn new(models: Vec<HTDemucs>, weights: Option<Vec<Vec<f64>>>) -> Result<Self> {
        let first = models
            .first()
            .ok_or_else(|| DemucsError::InvalidSetting("a bag needs at least one model".into()))?;
        let (sources, rate, channels) = (
            first.config().sources.clone(),
            first.config().samplerate,
            first.config().audio_channels,
        );
        for m in &models {
            let c = m.config();
            if c.sources != sources || c.samplerate != rate || c.audio_channels != channels {
                return Err(DemucsError::InvalidSetting(
                    "the models in a bag must share sources, rate and channels".into(),
                ));
            }
        }
        let weights = weights.unwrap_or_else(|| vec![vec![1.0; sources.len()]; models.len()]);
        if weights.len() != models.len() || weights.iter().any(|w| w.len() != sources.len()) {
            return Err(DemucsError::InvalidSetting(
                "bag weights need one row per model and one value per source".into(),
            ));
        }
        for s in 0..sources.len() {
            if weights.iter().map(|w| w[s]).sum::<f64>() <= 0.0 {
                return Err(DemucsError::InvalidSetting(format!(
                    "no model in the bag weighs source {}",
                    sources[s]
                )));
            }
        }
        Ok(Self { models, weights })
    }

    pub fn sources(&self) -> &[String] {
        &self.models[0].config().sources
    }

    pub fn samplerate(&self) -> usize {
        self.models[0].config().samplerate
    }

    pub fn audio_channels(&self) -> usize {
        self.models[0].config().audio_channels
    }

    pub fn models(&self) -> &[HTDemucs] {
        &self.models
    }

    /// The longest segment every model accepts, in seconds.
    pub fn max_segment(&self) -> f64 {
        self.models
            .iter()
            .map(|m| m.config().segment.as_f64())
            .fold(f64::INFINITY, f64::min)
    }

    /// Separates `mix` (`channels x length`, already normalised) into
    /// `sources x channels x length`, as `apply_model(bag, mix, split=True, ...)`.
    pub fn apply(
        &self,
        mix: &[Vec<f32>],
        opts: &ApplyOptions,
        listener: &dyn SeparationListener,
    ) -> Result<Vec<Planar>> {
        let max_shift = self.samplerate() / 2;
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let offsets: Vec<usize> = (0..opts.shifts)
            .map(|_| rng.random_range(0..=max_shift))
            .collect();
        self.apply_with_shift_offsets(mix, opts, &offsets, listener)
    }

    /// [`BagOfModels::apply`] with the shift offsets given (each in `0..=samplerate/2`)
    /// instead of drawn from `opts.seed`: one pass per offset, a single pass for none.
    pub fn apply_with_shift_offsets(
        &self,
        mix: &[Vec<f32>],
        opts: &ApplyOptions,
        offsets: &[usize],
        listener: &dyn SeparationListener,
    ) -> Result<Vec<Planar>> {
        let channels = mix.len();
        let length = mix.first().map_or(0, Vec::len);
        if length == 0 {
            return Err(DemucsError::EmptyAudio);
        }
        if channels != self.audio_channels() || mix.iter().any(|c| c.len() != length) {
            return Err(DemucsError::InvalidSetting(format!(
                "the model expects {} equally long channels, got {channels}",
                self.audio_channels()
            )));
        }
        if !(0.0..1.0).contains(&opts.overlap) {
            return Err(DemucsError::InvalidSetting(format!(
                "overlap must be in [0, 1), got {}",
                opts.overlap
            )));
        }
        if opts.transition_power < 1.0 {
            return Err(DemucsError::InvalidSetting(
                "transition power must be at least 1".into(),
            ));
        }
        let max_shift = self.samplerate() / 2;
        if let Some(bad) = offsets.iter().find(|&&o| o > max_shift) {
            return Err(DemucsError::InvalidSetting(format!(
                "shift offset {bad} is beyond {max_shift}"
            )));
        }
        let plans: Vec<SegmentPlan> = self
            .models
            .iter()
            .map(|m| SegmentPlan::new(m, opts))
            .collect::<Result<_>>()?;
        // As apply_model: the mix is padded with half a second of silence on both sides, and
        // each pass starts `offset` frames into that padding.
        let passes: Vec<(isize, usize)> = if offsets.is_empty() {
            vec![(0, length)]
        } else {
            offsets
                .iter()
                .map(|&o| (o as isize - max_shift as isize, length + max_shift - o))
                .collect()
        };
        let total = plans
            .iter()
            .map(|p| {
                passes
                    .iter()
                    .map(|(_, len)| p.segments(*len))
                    .sum::<usize>()
            })
            .sum();
        let mut counter = Counter {
            done: 0,
            total,
            listener,
        };
        // Listeners learn the total, and when the work started, before the first segment.
        counter.report();

        let sources = self.sources().len();
        let mut estimates = vec![vec![vec![0f32; length]; channels]; sources];
        let totals: Vec<f64> = (0..sources)
            .map(|s| self.weights.iter().map(|w| w[s]).sum())
            .collect();
        for ((model, plan), weights) in self.models.iter().zip(&plans).zip(&self.weights) {
            // Each pass adds its share straight into the estimates: the model's weight for
            // the source, over the source's total weight and the number of passes.
            let scales: Vec<f32> = weights
                .iter()
                .zip(&totals)
                .map(|(w, total)| (w / total / passes.len() as f64) as f32)
                .collect();
            for &(origin, view_len) in &passes {
                plan.run(
                    model,
                    mix,
                    origin,
                    view_len,
                    &scales,
                    &mut estimates,
                    &mut counter,
                )?;
            }
        }
        Ok(estimates)
    }
}

struct Counter<'a> {
    done: usize,
    total: usize,
    listener: &'a dyn SeparationListener,
}

impl Counter<'_> {
    fn check_cancel(&self) -> Result<()> {
        if self.listener.is_cancelled() {
            Err(DemucsError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn segment_done(&mut self) {
        self.done += 1;
        self.report();
    }

    fn report(&self) {
        self.listener.on_progress(Progress {
            segments_done: self.done,
            segments_total: self.total,
        });
    }
}

/// The split of one model's passes into segments, with demucs' blending weights.
struct SegmentPlan {
    segment_length: usize,
    stride: usize,
    weight: Vec<f32>,
}

impl SegmentPlan {
    fn new(model: &HTDemucs, opts: &ApplyOptions) -> Result<Self> {
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

    fn segments(&self, view_len: usize) -> usize {
        view_len.div_ceil(self.stride)
    }

    /// The sum of the blending weights over a pass of `view_len` frames, per frame.
    fn weight_sums(&self, view_len: usize) -> Vec<f32> {
        let mut sums = vec![0f32; view_len];
        for offset in (0..view_len).step_by(self.stride) {
            let chunk_len = (view_len - offset).min(self.segment_length);
            for (acc, w) in sums[offset..offset + chunk_len]
                .iter_mut()
                .zip(&self.weight)
            {
                *acc += w;
            }
        }
        sums
    }

    /// Separates the frames `[origin, origin + view_len)` of `mix` (zeros outside it) as
    /// demucs' split pass does, and adds `scales[source]` times the result to the frames of
    /// `estimates` that the mix covers.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        model: &HTDemucs,
        mix: &[Vec<f32>],
        origin: isize,
        view_len: usize,
        scales: &[f32],
        estimates: &mut [Planar],
        counter: &mut Counter,
    ) -> Result<()> {
        let length = mix[0].len() as isize;
        let sums = self.weight_sums(view_len);
        for offset in (0..view_len).step_by(self.stride) {
            counter.check_cancel()?;
            let chunk_len = (view_len - offset).min(self.segment_length);
            // As demucs' TensorChunk.padded: centre the chunk in a full segment, taking the
            // neighbouring audio (or silence past the ends) as context.
            let delta = self.segment_length - chunk_len;
            let start = origin + offset as isize - (delta / 2) as isize;
            let input = window(mix, start, self.segment_length, model.device())?;
            let separated = model
                .forward(&input)?
                .squeeze(0)?
                .narrow(2, delta / 2, chunk_len)?;
            let separated = separated.to_device(&Device::Cpu)?.to_vec3::<f32>()?;
            // The chunk's frames, in mix coordinates, clipped to the mix.
            let first = origin + offset as isize;
            let skip = (-first).max(0) as usize;
            let keep = ((length - first).max(0) as usize).min(chunk_len);
            if skip >= keep {
                counter.segment_done();
                continue;
            }
            let blend: Vec<f32> = (skip..keep)
                .map(|i| self.weight[i] / sums[offset + i])
                .collect();
            let dst = (first + skip as isize) as usize;
            for ((estimate, chunk), scale) in estimates.iter_mut().zip(&separated).zip(scales) {
                for (out, values) in estimate.iter_mut().zip(chunk) {
                    for ((acc, v), b) in out[dst..dst + (keep - skip)]
                        .iter_mut()
                        .zip(&values[skip..keep])
                        .zip(&blend)
                    {
                        *acc += scale * b * v;
                    }
                }
            }
            counter.segment_done();
        }
        Ok(())
    }
}

/// `[1, channels, len]` of `mix` starting at frame `start`, zero where it runs off either end.
fn window(mix: &[Vec<f32>], start: isize, len: usize, device: &Device) -> Result<Tensor> {
    let channels = mix.len();
    let mut data = vec![0f32; channels * len];
    for (c, channel) in mix.iter().enumerate() {
        let from = start.max(0) as usize;
        let to = ((start + len as isize).max(0) as usize).min(channel.len());
        if from < to {
            let dst = (from as isize - start) as usize;
            data[c * len + dst..c * len + dst + (to - from)].copy_from_slice(&channel[from..to]);
        }
    }
    Ok(Tensor::from_vec(data, (1, channels, len), device)?)
}

/// The mix statistics `demucs.separate` normalises by: mean and unbiased standard deviation
/// of the mono downmix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixStats {
    pub mean: f32,
    pub std: f32,
}

impl MixStats {
    pub fn of(mix: &[Vec<f32>]) -> Self {
        let n = mix.first().map_or(0, Vec::len);
        let channels = mix.len().max(1) as f64;
        let mono = |i: usize| mix.iter().map(|c| c[i] as f64).sum::<f64>() / channels;
        let mean = (0..n).map(mono).sum::<f64>() / n.max(1) as f64;
        let var = (0..n).map(|i| (mono(i) - mean).powi(2)).sum::<f64>()
            / (n.saturating_sub(1)).max(1) as f64;
        // Digital silence has no spread; leave it unscaled rather than divide by zero.
        let std = if var > 1e-20 { var.sqrt() } else { 1.0 };
        Self {
            mean: mean as f32,
            std: std as f32,
        }
    }

    pub fn normalise(&self, mix: &[Vec<f32>]) -> Planar {
        mix.iter()
            .map(|c| c.iter().map(|v| (v - self.mean) / self.std).collect())
            .collect()
    }

    pub fn denormalise(&self, sources: &mut [Planar]) {
        for v in sources.iter_mut().flatten().flatten() {
            *v = *v * self.std + self.mean;
        }
    }
}

/// The whole `demucs.separate` recipe: normalise the mix by its mono statistics, apply the
/// bag, undo the normalisation. Returns `sources x channels x length`.
pub fn separate(
    bag: &BagOfModels,
    mix: &[Vec<f32>],
    opts: &ApplyOptions,
    listener: &dyn SeparationListener,
) -> Result<Vec<Planar>> {
    let stats = MixStats::of(mix);
    let normalised = stats.normalise(mix);
    let mut sources = bag.apply(&normalised, opts, listener)?;
    stats.denormalise(&mut sources);
    Ok(sources)
}
