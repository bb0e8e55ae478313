//! The bag of models and its streaming apply: one pass per model and shift over the
//! mix, segments blended into a rolling buffer that hands on each frame once final.

use rand::{Rng, SeedableRng};

use super::plan::SegmentPlan;
use super::stream::{CollectStems, MixReader, StemSink};
use super::{ApplyOptions, Planar, Progress, SeparationListener};
use crate::error::{DemucsError, Result};
use crate::model::HTDemucs;

/// One or more HTDemucs models whose outputs are averaged with per-source weights
/// (`demucs.apply.BagOfModels`). A single model is a bag of one.
#[derive(Debug)]
pub struct BagOfModels {
    pub(super) models: Vec<HTDemucs>,
    pub(super) weights: Vec<Vec<f64>>,
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

    /// The shift offsets `apply` draws from `opts.seed`: `opts.shifts` values in
    /// `0..=samplerate/2`, as `apply_model` draws them.
    pub fn shift_offsets(&self, opts: &ApplyOptions) -> Vec<usize> {
        let max_shift = self.samplerate() / 2;
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        (0..opts.shifts)
            .map(|_| rng.random_range(0..=max_shift))
            .collect()
    }

    /// Separates `mix` (`channels x length`, already normalised) into
    /// `sources x channels x length`, as `apply_model(bag, mix, split=True, ...)`.
    pub fn apply(
        &self,
        mix: &[Vec<f32>],
        opts: &ApplyOptions,
        listener: &dyn SeparationListener,
    ) -> Result<Vec<Planar>> {
        self.apply_with_shift_offsets(mix, opts, &self.shift_offsets(opts), listener)
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
        self.check_planar(mix)?;
        let mut out =
            CollectStems::with_capacity(self.sources().len(), mix.len(), MixReader::len(mix));
        self.apply_streaming_with_shift_offsets(mix, opts, offsets, listener, &mut out)?;
        Ok(out.into_stems())
    }

    /// [`BagOfModels::apply`] as a stream: reads windows of `mix` (already normalised) as
    /// the segments need them and hands finished frames to `sink`, in order.
    pub fn apply_streaming<R: MixReader + ?Sized>(
        &self,
        mix: &R,
        opts: &ApplyOptions,
        listener: &dyn SeparationListener,
        sink: &mut dyn StemSink,
    ) -> Result<()> {
        let offsets = self.shift_offsets(opts);
        self.apply_streaming_with_shift_offsets(mix, opts, &offsets, listener, sink)
    }

    /// [`BagOfModels::apply_streaming`] with the shift offsets given, as
    /// [`BagOfModels::apply_with_shift_offsets`].
    pub fn apply_streaming_with_shift_offsets<R: MixReader + ?Sized>(
        &self,
        mix: &R,
        opts: &ApplyOptions,
        offsets: &[usize],
        listener: &dyn SeparationListener,
        sink: &mut dyn StemSink,
    ) -> Result<()> {
        self.stream(&ByRef(mix), opts, offsets, listener, &mut |start, chunk| {
            sink.write(start, &chunk)
        })
    }

    /// An in-memory mix has one equally long channel per model channel, and some audio.
    pub(super) fn check_planar(&self, mix: &[Vec<f32>]) -> Result<()> {
        let length = MixReader::len(mix);
        if length == 0 {
            return Err(DemucsError::EmptyAudio);
        }
        if mix.len() != self.audio_channels() || mix.iter().any(|c| c.len() != length) {
            return Err(DemucsError::InvalidSetting(format!(
                "the model expects {} equally long channels, got {}",
                self.audio_channels(),
                mix.len()
            )));
        }
        Ok(())
    }

    /// The streaming apply. Every model of the bag makes one pass over the mix per shift
    /// offset (one pass without shifts); each pass is a stream of segments. The segment that
    /// starts earliest among all streams runs next (ties in bag, then pass order), so that all
    /// streams move through the track together: segment `i` of every pass and model before
    /// segment `i + 1` of any when they share a stride. A frame is final once every stream's
    /// next segment starts after it; `emit` then receives it, `sources x channels x frames`.
    pub(super) fn stream(
        &self,
        mix: &dyn MixReader,
        opts: &ApplyOptions,
        offsets: &[usize],
        listener: &dyn SeparationListener,
        emit: &mut dyn FnMut(usize, Vec<Planar>) -> Result<()>,
    ) -> Result<()> {
        let channels = mix.channels();
        let length = mix.len();
        if length == 0 {
            return Err(DemucsError::EmptyAudio);
        }
        if channels != self.audio_channels() {
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
        // each pass starts `offset` frames into that padding. Every pass ends where the mix
        // does.
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
        let totals: Vec<f64> = (0..sources)
            .map(|s| self.weights.iter().map(|w| w[s]).sum())
            .collect();
        let mut streams = Vec::with_capacity(self.models.len() * passes.len());
        for (model, weights) in self.weights.iter().enumerate() {
            // Each pass adds its share straight into the estimates: the model's weight for
            // the source, over the source's total weight and the number of passes.
            let scales: Vec<f32> = weights
                .iter()
                .zip(&totals)
                .map(|(w, total)| (w / total / passes.len() as f64) as f32)
                .collect();
            for &(origin, view_len) in &passes {
                streams.push(Pass {
                    model,
                    origin,
                    view_len,
                    next: 0,
                    scales: scales.clone(),
                });
            }
        }
        let mut estimates = Rolling::new(sources, channels);
        while let Some(i) = streams
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.next_start().map(|start| (start, i)))
            .min()
            .map(|(_, i)| i)
        {
            counter.check_cancel()?;
            let pass = &mut streams[i];
            let plan = &plans[pass.model];
            plan.run_segment(&self.models[pass.model], mix, pass, &mut estimates)?;
            pass.next += plan.stride;
            counter.segment_done();
            let settled = streams
                .iter()
                .filter_map(Pass::next_start)
                .min()
                .unwrap_or(length as isize)
                .clamp(0, length as isize) as usize;
            if settled > estimates.start {
                let start = estimates.start;
                emit(start, estimates.take_until(settled))?;
            }
        }
        debug_assert_eq!(estimates.start, length, "every frame was handed on");
        Ok(())
    }
}

/// A `MixReader` behind a reference, so that unsized readers (`[Vec<f32>]`) can be passed
/// on as `&dyn MixReader`.
pub(super) struct ByRef<'a, R: ?Sized>(&'a R);

impl<R: MixReader + ?Sized> MixReader for ByRef<'_, R> {
    fn channels(&self) -> usize {
        self.0.channels()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> Result<()> {
        self.0.read(start, len, out)
    }
}

/// One pass of one model over the mix: the frames `[origin, origin + view_len)` (zeros
/// outside the mix), cut into segments every `stride` frames.
pub(super) struct Pass {
    pub(super) model: usize,
    pub(super) origin: isize,
    pub(super) view_len: usize,
    /// Offset in the view of the next segment to run.
    pub(super) next: usize,
    /// Share of each source's estimate this pass contributes.
    pub(super) scales: Vec<f32>,
}

impl Pass {
    /// Where the next segment's frames start in mix coordinates; `None` once done.
    pub(super) fn next_start(&self) -> Option<isize> {
        (self.next < self.view_len).then_some(self.origin + self.next as isize)
    }
}

/// The frames that segments are still adding to: `sources x channels`, from frame `start`
/// of the mix on. Holds about one segment, since frames leave once final.
pub(super) struct Rolling {
    pub(super) start: usize,
    pub(super) data: Vec<Planar>,
}

impl Rolling {
    pub(super) fn new(sources: usize, channels: usize) -> Self {
        Self {
            start: 0,
            data: vec![vec![Vec::new(); channels]; sources],
        }
    }

    /// Adds `scales[source] * blend[i] * separated[source][channel][skip + i]` to frame
    /// `first + i`, for `i` in `0..blend.len()`.
    pub(super) fn add(
        &mut self,
        first: usize,
        separated: &[Planar],
        skip: usize,
        scales: &[f32],
        blend: &[f32],
    ) {
        debug_assert!(
            first >= self.start,
            "a segment adds to frames already handed on"
        );
        let from = first - self.start;
        let n = blend.len();
        for ((estimate, chunk), scale) in self.data.iter_mut().zip(separated).zip(scales) {
            for (out, values) in estimate.iter_mut().zip(chunk) {
                if out.len() < from + n {
                    out.resize(from + n, 0.0);
                }
                for ((acc, v), b) in out[from..from + n]
                    .iter_mut()
                    .zip(&values[skip..skip + n])
                    .zip(blend)
                {
                    *acc += scale * b * v;
                }
            }
        }
    }

    /// Removes and returns the frames `[start, until)`.
    pub(super) fn take_until(&mut self, until: usize) -> Vec<Planar> {
        let n = until - self.start;
        self.start = until;
        self.data
            .iter_mut()
            .map(|source| {
                source
                    .iter_mut()
                    .map(|channel| {
                        let rest = channel.split_off(n.min(channel.len()));
                        let mut done = std::mem::replace(channel, rest);
                        done.resize(n, 0.0);
                        done
                    })
                    .collect()
            })
            .collect()
    }
}

pub(super) struct Counter<'a> {
    pub(super) done: usize,
    pub(super) total: usize,
    pub(super) listener: &'a dyn SeparationListener,
}

impl Counter<'_> {
    pub(super) fn check_cancel(&self) -> Result<()> {
        if self.listener.is_cancelled() {
            Err(DemucsError::Cancelled)
        } else {
            Ok(())
        }
    }

    pub(super) fn segment_done(&mut self) {
        self.done += 1;
        self.report();
    }

    pub(super) fn report(&self) {
        self.listener.on_progress(Progress {
            segments_done: self.done,
            segments_total: self.total,
        });
    }
}
