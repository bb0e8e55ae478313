//! `demucs.apply.apply_model` and the normalisation of `demucs.separate`: cut the track
//! into overlapping segments, run the model on each, and blend them back with demucs'
//! triangular weights; optionally average random time shifts and a bag of models.
//!
//! The apply streams. The mix is read one segment window at a time from a [`MixReader`],
//! and finished audio goes to a [`StemSink`] as soon as no later segment can add to it.
//! Besides the model's own working set, memory is one window of input and a rolling buffer
//! of about one segment of `sources x channels` frames, whatever the track's length. The
//! in-memory entry points ([`separate`], [`BagOfModels::apply`]) collect that stream.

mod bag;
mod plan;
mod stats;
mod stream;

pub use bag::BagOfModels;
pub use stats::MixStats;
pub use stream::{CollectStems, MixReader, StemSink};

use stats::Normalised;

use crate::error::Result;

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
