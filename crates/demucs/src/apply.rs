//! `demucs.apply.apply_model` and the normalisation of `demucs.separate`: cut the track
//! into overlapping segments, run the model on each, and blend them back with demucs'
//! triangular weights; optionally average random time shifts and a bag of models.
//!
//! The apply streams. The mix is read one segment window at a time from a [`MixReader`],
//! and finished audio goes to a [`StemSink`] as soon as no later segment can add to it.
//! Besides the model's own working set, memory is one window of input and a rolling buffer
//! of about one segment of `sources x channels` frames, whatever the track's length. The
//! in-memory entry points ([`separate`], [`BagOfModels::apply`]) collect that stream.

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
    fn check_planar(&self, mix: &[Vec<f32>]) -> Result<()> {
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
    fn stream(
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
struct ByRef<'a, R: ?Sized>(&'a R);

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
struct Pass {
    model: usize,
    origin: isize,
    view_len: usize,
    /// Offset in the view of the next segment to run.
    next: usize,
    /// Share of each source's estimate this pass contributes.
    scales: Vec<f32>,
}

impl Pass {
    /// Where the next segment's frames start in mix coordinates; `None` once done.
    fn next_start(&self) -> Option<isize> {
        (self.next < self.view_len).then_some(self.origin + self.next as isize)
    }
}

/// The frames that segments are still adding to: `sources x channels`, from frame `start`
/// of the mix on. Holds about one segment, since frames leave once final.
struct Rolling {
    start: usize,
    data: Vec<Planar>,
}

impl Rolling {
    fn new(sources: usize, channels: usize) -> Self {
        Self {
            start: 0,
            data: vec![vec![Vec::new(); channels]; sources],
        }
    }

    /// Adds `scales[source] * blend[i] * separated[source][channel][skip + i]` to frame
    /// `first + i`, for `i` in `0..blend.len()`.
    fn add(
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
    fn take_until(&mut self, until: usize) -> Vec<Planar> {
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

    /// The sum of the blending weights of a pass at frame `at` of its view, from the
    /// segments that cover it only (those starting in `(at - segment_length, at]`), added
    /// in segment order as demucs' `sum_weight` does. Every covering segment holds the
    /// frame: a pass's last segment is cut at the view's end, and `at` lies before it.
    fn weight_sum(&self, at: usize) -> f32 {
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
    fn run_segment(
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

/// A mix that the apply reads one window at a time: an in-memory buffer, or a file.
///
/// `len` counts frames (for `[Vec<f32>]`, the slice's own `len()` counts channels; call
/// `MixReader::len(mix)` there).
pub trait MixReader {
    /// Number of channels.
    fn channels(&self) -> usize;

    /// Length in frames.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `out` (channel-major: `channels() * len` values, channel `c` at
    /// `out[c * len..(c + 1) * len]`) with the frames `[start, start + len)`, with zeros
    /// for the frames outside `[0, self.len())`.
    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> Result<()>;
}

impl MixReader for [Vec<f32>] {
    fn channels(&self) -> usize {
        <[Vec<f32>]>::len(self)
    }

    fn len(&self) -> usize {
        self.first().map_or(0, Vec::len)
    }

    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> Result<()> {
        check_read_buffer(self.channels(), len, out)?;
        for (channel, out) in self.iter().zip(out.chunks_exact_mut(len.max(1))) {
            zero_pad_copy(channel, start, &mut out[..len]);
        }
        Ok(())
    }
}

impl MixReader for Vec<Vec<f32>> {
    fn channels(&self) -> usize {
        self.as_slice().channels()
    }

    fn len(&self) -> usize {
        MixReader::len(self.as_slice())
    }

    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> Result<()> {
        self.as_slice().read(start, len, out)
    }
}

fn check_read_buffer(channels: usize, len: usize, out: &[f32]) -> Result<()> {
    if out.len() != channels * len {
        return Err(DemucsError::InvalidSetting(format!(
            "a read of {len} frames of {channels} channels needs {} values, got {}",
            channels * len,
            out.len()
        )));
    }
    Ok(())
}

/// Copies `channel[start..start + out.len()]` into `out`, zeros where it runs off either end.
fn zero_pad_copy(channel: &[f32], start: isize, out: &mut [f32]) {
    let len = out.len();
    let from = start.max(0) as usize;
    let to = ((start + len as isize).max(0) as usize).min(channel.len());
    out.fill(0.0);
    if from < to {
        let dst = (from as isize - start) as usize;
        out[dst..dst + (to - from)].copy_from_slice(&channel[from..to]);
    }
}

/// Where the apply hands finished audio.
pub trait StemSink {
    /// Receives the frames `[start_frame, start_frame + n)` of every source,
    /// `stems[source][channel][i]` (`n` frames in each channel). Calls come in order of
    /// `start_frame`, each starting where the last one ended, and together cover the mix
    /// exactly once. An error stops the separation and is returned from it.
    fn write(&mut self, start_frame: usize, stems: &[Planar]) -> Result<()>;
}

impl<F: FnMut(usize, &[Planar]) -> Result<()>> StemSink for F {
    fn write(&mut self, start_frame: usize, stems: &[Planar]) -> Result<()> {
        self(start_frame, stems)
    }
}

/// A sink that keeps everything: `sources x channels x length`, the in-memory result.
#[derive(Debug, Default)]
pub struct CollectStems {
    stems: Vec<Planar>,
    frames: usize,
}

impl CollectStems {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink with room for `frames` frames of each source and channel up front.
    pub fn with_capacity(sources: usize, channels: usize, frames: usize) -> Self {
        Self {
            stems: vec![(0..channels).map(|_| Vec::with_capacity(frames)).collect(); sources],
            frames: 0,
        }
    }

    /// Frames received so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn into_stems(self) -> Vec<Planar> {
        self.stems
    }
}

impl StemSink for CollectStems {
    fn write(&mut self, start_frame: usize, stems: &[Planar]) -> Result<()> {
        if start_frame != self.frames {
            return Err(DemucsError::InvalidSetting(format!(
                "audio arrived for frame {start_frame}, expected frame {}",
                self.frames
            )));
        }
        if self.stems.is_empty() {
            self.stems = stems.iter().map(|s| vec![Vec::new(); s.len()]).collect();
        }
        for (dst, src) in self.stems.iter_mut().zip(stems) {
            for (d, s) in dst.iter_mut().zip(src) {
                d.extend_from_slice(s);
            }
        }
        self.frames += stems.first().and_then(|s| s.first()).map_or(0, Vec::len);
        Ok(())
    }
}

/// The mix statistics `demucs.separate` normalises by: mean and unbiased standard deviation
/// of the mono downmix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixStats {
    pub mean: f32,
    pub std: f32,
}

/// Frames read at a time for the statistics of a [`MixReader`].
const STATS_BLOCK: usize = 1 << 16;

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

    fn normalise_value(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }
}

/// A mix read through `stats`: what [`MixStats::normalise`] would give, a window at a time,
/// still zero outside the mix (as the normalised mix is padded).
struct Normalised<'a, R: ?Sized> {
    mix: &'a R,
    stats: MixStats,
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

/// The whole `demucs.separate` recipe: normalise the mix by its mono statistics, apply the
/// bag, undo the normalisation. Returns `sources x channels x length`.
pub fn separate(
    bag: &BagOfModels,
    mix: &[Vec<f32>],
    opts: &ApplyOptions,
    listener: &dyn SeparationListener,
) -> Result<Vec<Planar>> {
    bag.check_planar(mix)?;
    let mut out = CollectStems::with_capacity(bag.sources().len(), mix.len(), MixReader::len(mix));
    separate_streaming(bag, mix, MixStats::of(mix), opts, listener, &mut out)?;
    Ok(out.into_stems())
}

/// [`separate`] as a stream: `stats` are the mix's (from [`MixStats::of_reader`], say),
/// each window of `mix` is normalised as it is read, and each finished chunk is
/// denormalised before it goes to `sink`.
pub fn separate_streaming<R: MixReader + ?Sized>(
    bag: &BagOfModels,
    mix: &R,
    stats: MixStats,
    opts: &ApplyOptions,
    listener: &dyn SeparationListener,
    sink: &mut dyn StemSink,
) -> Result<()> {
    let normalised = Normalised { mix, stats };
    let offsets = bag.shift_offsets(opts);
    bag.stream(
        &normalised,
        opts,
        &offsets,
        listener,
        &mut |start, mut chunk| {
            stats.denormalise(&mut chunk);
            sink.write(start, &chunk)
        },
    )
}
