//! The stem mixer as a pull-based renderer: the audio callback asks for N frames and gets
//! the mix of every audible stem at one shared play position, so stems cannot drift apart.
//!
//! Control and rendering are split so that the real-time side never blocks: a
//! [`MixerControl`] sends commands through a lock-free ring buffer, and the
//! [`MixerRenderer`] applies them at the start of each block and publishes its position,
//! levels and meters through atomics. The audio itself comes from a [`StemSource`] by way
//! of the feeder thread, a block at a time, so a song of any length plays in the same
//! small memory, and a song still being separated plays up to its separated edge. Tests
//! drive the renderer and the feeder directly, without any audio device.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::feeder::{Block, FeedShared, Feeder, QUEUE_BLOCKS, ReadRequest};
use crate::meter::{Meter, MeterLevel, SharedLevel};
use crate::source::StemSource;

/// Frames over which a full-scale gain change (volume, mute, solo, pan) is ramped, so
/// that toggling a stem never clicks. About 6 ms at 44.1 kHz.
pub const GAIN_RAMP_FRAMES: usize = 256;
const RAMP_STEP: f32 = 1.0 / GAIN_RAMP_FRAMES as f32;
/// Frames over which playback fades out just before the separated edge, and back in when
/// more audio is there, so that waiting for the separation never clicks.
pub const EDGE_FADE_FRAMES: usize = GAIN_RAMP_FRAMES;

/// The gains `[left, right]` for a pan position from -1 (left) to 1 (right), by the
/// constant-power law: the sum of their squares is always 2, so a stem keeps its loudness
/// wherever it is panned, and the centre leaves it unchanged.
pub fn pan_gains(pan: f32) -> [f32; 2] {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f32::consts::FRAC_PI_4;
    let unity = std::f32::consts::SQRT_2;
    [unity * angle.cos(), unity * angle.sin()]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Command {
    Play,
    Pause,
    Seek(u64),
    SetGain(usize, f32),
    SetMute(usize, bool),
    SetSolo(usize, bool),
    SetPan(usize, f32),
    SetLoop(Option<(u64, u64)>),
}

/// What the UI reads back: where playback is, whether it runs, and how loud.
struct Shared {
    position: AtomicU64,
    playing: AtomicBool,
    /// Playing, but held at the separated edge until more audio exists.
    waiting: AtomicBool,
    /// Each stem's gain as the renderer applies it now (after mute and solo), as f32 bits.
    levels: Vec<AtomicU32>,
    meters: Vec<SharedLevel>,
    master: SharedLevel,
    feed: Arc<FeedShared>,
}

/// The control side, for the UI thread. Cheap to call; never blocks on the audio.
pub struct MixerControl {
    commands: rtrb::Producer<Command>,
    shared: Arc<Shared>,
    frames: u64,
    sample_rate: u32,
    stems: usize,
    feeder: Option<JoinHandle<()>>,
}

/// Why a command was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("there is no stem number {0}")]
    NoSuchStem(usize),
    #[error("the loop must end after it starts")]
    EmptyLoop,
    #[error("the player is busy; try again")]
    Busy,
    #[error(
        "the new audio does not match the playing song ({stems} stems of {frames} frames expected)"
    )]
    SourceMismatch { stems: usize, frames: u64 },
}

impl MixerControl {
    fn send(&mut self, command: Command) -> Result<(), ControlError> {
        self.commands.push(command).map_err(|_| ControlError::Busy)
    }

    fn stem(&self, index: usize) -> Result<usize, ControlError> {
        if index < self.stems {
            Ok(index)
        } else {
            Err(ControlError::NoSuchStem(index))
        }
    }

    pub fn play(&mut self) -> Result<(), ControlError> {
        self.send(Command::Play)
    }

    pub fn pause(&mut self) -> Result<(), ControlError> {
        self.send(Command::Pause)
    }

    /// Moves the play position, no further than the audio that exists (the separated
    /// edge, or the end). Returns the frame it moves to.
    pub fn seek(&mut self, frame: u64) -> Result<u64, ControlError> {
        let to = frame.min(self.frames).min(self.edge());
        self.send(Command::Seek(to))?;
        Ok(to)
    }

    /// Linear gain of a stem (1.0 is unchanged).
    pub fn set_gain(&mut self, stem: usize, gain: f32) -> Result<(), ControlError> {
        let stem = self.stem(stem)?;
        self.send(Command::SetGain(stem, gain.max(0.0)))
    }

    pub fn set_mute(&mut self, stem: usize, muted: bool) -> Result<(), ControlError> {
        let stem = self.stem(stem)?;
        self.send(Command::SetMute(stem, muted))
    }

    pub fn set_solo(&mut self, stem: usize, soloed: bool) -> Result<(), ControlError> {
        let stem = self.stem(stem)?;
        self.send(Command::SetSolo(stem, soloed))
    }

    /// Pans a stem from -1 (left) through 0 (centre) to 1 (right); see [`pan_gains`].
    pub fn set_pan(&mut self, stem: usize, pan: f32) -> Result<(), ControlError> {
        let stem = self.stem(stem)?;
        let pan = if pan.is_finite() {
            pan.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        self.send(Command::SetPan(stem, pan))
    }

    /// Loops `[start, end)` while playing; `None` plays through.
    pub fn set_loop(&mut self, region: Option<(u64, u64)>) -> Result<(), ControlError> {
        let region = match region {
            Some((start, end)) if end.min(self.frames) <= start => {
                return Err(ControlError::EmptyLoop);
            }
            Some((start, end)) => Some((start, end.min(self.frames))),
            None => None,
        };
        self.send(Command::SetLoop(region))
    }

    /// Plays on from `source` instead (the finished files of a song that was playing while
    /// it separated). It must hold the same stems at the same length; the position, the
    /// blocks already read and every setting carry on as they are.
    pub fn set_source(&mut self, source: Arc<dyn StemSource>) -> Result<(), ControlError> {
        if source.stems() != self.stems || source.frames() != self.frames {
            return Err(ControlError::SourceMismatch {
                stems: self.stems,
                frames: self.frames,
            });
        }
        let old = std::mem::replace(
            &mut *self
                .shared
                .feed
                .source
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            source,
        );
        drop(old);
        Ok(())
    }

    /// The frame the renderer will play next.
    pub fn position(&self) -> u64 {
        self.shared.position.load(Ordering::Acquire)
    }

    pub fn is_playing(&self) -> bool {
        self.shared.playing.load(Ordering::Acquire)
    }

    /// True while playback is held at the separated edge, waiting for more audio.
    pub fn is_waiting(&self) -> bool {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// How many frames from the start exist now.
    pub fn edge(&self) -> u64 {
        let source = self
            .shared
            .feed
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.edge().min(self.frames)
    }

    /// The gain the renderer gives each stem, mute and solo included (0 is silent). It
    /// reflects commands once the renderer has taken them, at its next block.
    pub fn levels(&self) -> Vec<f32> {
        self.shared
            .levels
            .iter()
            .map(|l| f32::from_bits(l.load(Ordering::Acquire)))
            .collect()
    }

    /// Each stem's meter, after its gain, mute, solo and pan.
    pub fn meters(&self) -> Vec<MeterLevel> {
        self.shared.meters.iter().map(SharedLevel::load).collect()
    }

    /// The meter of the mix as it is heard.
    pub fn master_meter(&self) -> MeterLevel {
        self.shared.master.load()
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
}

impl Drop for MixerControl {
    fn drop(&mut self) {
        self.shared.feed.stop.store(true, Ordering::Relaxed);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

#[derive(Debug, Clone)]
struct StemState {
    gain: f32,
    muted: bool,
    soloed: bool,
    pan: f32,
    /// The `[left, right]` gains the last frame had, ramped towards the targets.
    current: [f32; 2],
    meter: Meter,
    /// This block's largest absolute sample and sum of squares (both channels).
    block_peak: f32,
    block_squares: f32,
}

/// The rendering side, owned by the audio callback (or a test).
pub struct MixerRenderer {
    commands: rtrb::Consumer<Command>,
    shared: Arc<Shared>,
    stems: Vec<StemState>,
    frames: u64,
    sample_rate: u32,
    position: u64,
    playing: bool,
    loop_region: Option<(u64, u64)>,
    /// Bumped whenever the position moves other than by playing on; see the feeder.
    generation: u64,
    blocks: rtrb::Consumer<Block>,
    recycle: rtrb::Producer<Vec<f32>>,
    block: Option<Block>,
    /// Blocks of the current generation passed over in a row without the play position.
    passed: usize,
    /// The fade at the separated edge: 1 plays, 0 is silent.
    flow: f32,
    master: Meter,
}

/// Builds a mixer over `source`, at `sample_rate`, with its feeder thread running.
pub fn mixer(source: Arc<dyn StemSource>, sample_rate: u32) -> (MixerControl, MixerRenderer) {
    let (mut control, renderer, feeder) = mixer_parts(source, sample_rate);
    control.feeder = feeder.spawn();
    (control, renderer)
}

/// [`mixer`] without starting the feeder, for tests that step it themselves.
pub(crate) fn mixer_parts(
    source: Arc<dyn StemSource>,
    sample_rate: u32,
) -> (MixerControl, MixerRenderer, Feeder) {
    let (producer, consumer) = rtrb::RingBuffer::new(1024);
    let (block_tx, block_rx) = rtrb::RingBuffer::new(QUEUE_BLOCKS);
    let (recycle_tx, recycle_rx) = rtrb::RingBuffer::new(QUEUE_BLOCKS + 4);
    let count = source.stems();
    let frames = source.frames();
    let feed = Arc::new(FeedShared {
        edge: AtomicU64::new(source.edge().min(frames)),
        source: Mutex::new(source),
        request: ReadRequest::new(),
        stop: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });
    let shared = Arc::new(Shared {
        position: AtomicU64::new(0),
        playing: AtomicBool::new(false),
        waiting: AtomicBool::new(false),
        levels: (0..count)
            .map(|_| AtomicU32::new(1.0f32.to_bits()))
            .collect(),
        meters: (0..count).map(|_| SharedLevel::default()).collect(),
        master: SharedLevel::default(),
        feed: feed.clone(),
    });
    let stems = (0..count)
        .map(|_| StemState {
            gain: 1.0,
            muted: false,
            soloed: false,
            pan: 0.0,
            current: pan_gains(0.0),
            meter: Meter::default(),
            block_peak: 0.0,
            block_squares: 0.0,
        })
        .collect();
    let control = MixerControl {
        commands: producer,
        shared: shared.clone(),
        frames,
        sample_rate,
        stems: count,
        feeder: None,
    };
    let renderer = MixerRenderer {
        commands: consumer,
        shared,
        stems,
        frames,
        sample_rate,
        position: 0,
        playing: false,
        loop_region: None,
        generation: 0,
        blocks: block_rx,
        recycle: recycle_tx,
        block: None,
        passed: 0,
        flow: 1.0,
        master: Meter::default(),
    };
    (control, renderer, Feeder::new(feed, block_tx, recycle_rx))
}

impl MixerRenderer {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Play => {
                if self.position >= self.frames {
                    self.position = self.loop_region.map_or(0, |(start, _)| start);
                    self.resync();
                }
                self.playing = true;
            }
            Command::Pause => self.playing = false,
            Command::Seek(frame) => {
                self.position = frame;
                self.resync();
            }
            Command::SetGain(i, gain) => self.stems[i].gain = gain,
            Command::SetMute(i, muted) => self.stems[i].muted = muted,
            Command::SetSolo(i, soloed) => self.stems[i].soloed = soloed,
            Command::SetPan(i, pan) => self.stems[i].pan = pan,
            Command::SetLoop(region) => {
                self.loop_region = region;
                self.resync();
            }
        }
    }

    /// Tells the feeder to read on from the current position with the current loop.
    fn resync(&mut self) {
        self.generation += 1;
        self.passed = 0;
        // What was read ahead is stale now; making room lets the feeder start at once.
        while let Ok(stale) = self.blocks.pop() {
            self.give_back(stale);
        }
        self.shared
            .feed
            .request
            .publish(self.generation, self.position, self.loop_region);
    }

    /// Applies the commands sent since the last block.
    pub(crate) fn take_commands(&mut self) {
        while let Ok(command) = self.commands.pop() {
            self.apply(command);
        }
    }

    /// The gain each stem should have now: soloed stems play alone (solo wins over mute),
    /// otherwise every unmuted stem plays.
    fn audible(&self) -> impl Iterator<Item = f32> + '_ {
        let any_solo = self.stems.iter().any(|s| s.soloed);
        self.stems.iter().map(move |s| {
            let audible = if any_solo { s.soloed } else { !s.muted };
            if audible { s.gain } else { 0.0 }
        })
    }

    /// Makes the block holding the play position current; false when it is not there yet
    /// (at the separated edge, or just after a seek).
    fn ensure_block(&mut self) -> bool {
        if self
            .block
            .as_ref()
            .is_some_and(|b| b.contains(self.position))
        {
            return true;
        }
        if let Some(old) = self.block.take() {
            self.give_back(old);
        }
        while let Ok(block) = self.blocks.pop() {
            if block.generation == self.generation {
                if block.contains(self.position) {
                    self.block = Some(block);
                    self.passed = 0;
                    return true;
                }
                // Read for a stretch already played (before a loop's wrap, say). Many in a
                // row mean the feeder is out of step: ask again from here.
                self.passed += 1;
                if self.passed > 2 * QUEUE_BLOCKS {
                    self.give_back(block);
                    self.passed = 0;
                    self.resync();
                    return false;
                }
            }
            self.give_back(block);
        }
        false
    }

    fn give_back(&mut self, block: Block) {
        // When the feeder is slow to take buffers back, this one is simply freed.
        let _ = self.recycle.push(block.samples);
    }

    /// Fills `out` (interleaved stereo) with the next `out.len() / 2` frames.
    pub fn render(&mut self, out: &mut [f32]) {
        self.take_commands();
        out.fill(0.0);
        let audible: Vec<f32> = self.audible().collect();
        let targets: Vec<[f32; 2]> = self
            .stems
            .iter()
            .zip(&audible)
            .map(|(s, gain)| pan_gains(s.pan).map(|g| g * gain))
            .collect();
        for stem in &mut self.stems {
            stem.block_peak = 0.0;
            stem.block_squares = 0.0;
        }
        let frames_out = out.len() / 2;
        let mut written = 0;
        let mut stalled = false;
        while written < frames_out && self.playing {
            // Play up to the loop end when inside or before the loop, else to the end.
            let stop = match self.loop_region {
                Some((_, end)) if self.position <= end => end,
                _ => self.frames,
            };
            if self.position >= stop {
                match self.loop_region {
                    Some((start, end)) if stop == end => {
                        self.position = start;
                        continue;
                    }
                    _ => {
                        self.playing = false;
                        break;
                    }
                }
            }
            if !self.ensure_block() {
                stalled = true;
                break;
            }
            let block_end = self.block.as_ref().map_or(self.position, Block::end);
            let n =
                (stop.min(block_end) - self.position).min((frames_out - written) as u64) as usize;
            self.mix_into(&mut out[written * 2..(written + n) * 2], &targets);
            self.position += n as u64;
            written += n;
        }
        if !self.playing {
            // Nothing sounds while stopped, so pending ramps have nothing to smooth.
            for (stem, target) in self.stems.iter_mut().zip(&targets) {
                stem.current = *target;
            }
        }
        self.publish(out, frames_out, stalled, &audible);
    }

    fn publish(&mut self, out: &[f32], frames: usize, stalled: bool, audible: &[f32]) {
        let rate = self.sample_rate;
        for (stem, shared) in self.stems.iter_mut().zip(&self.shared.meters) {
            let mean_square = stem.block_squares / (2 * frames.max(1)) as f32;
            stem.meter.take(stem.block_peak, mean_square, frames, rate);
            shared.store(stem.meter.level());
        }
        let peak = out.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mean_square = out.iter().map(|v| v * v).sum::<f32>() / out.len().max(1) as f32;
        self.master.take(peak, mean_square, frames, rate);
        self.shared.master.store(self.master.level());
        self.shared.position.store(self.position, Ordering::Release);
        self.shared.playing.store(self.playing, Ordering::Release);
        self.shared
            .waiting
            .store(stalled && self.playing, Ordering::Release);
        for (level, gain) in self.shared.levels.iter().zip(audible) {
            level.store(gain.to_bits(), Ordering::Release);
        }
    }

    /// Adds every stem's frames `[position, position + out.len()/2)` from the current
    /// block to `out`, moving each stem's gains towards their targets by at most
    /// [`RAMP_STEP`] per frame, then fades towards the separated edge.
    fn mix_into(&mut self, out: &mut [f32], targets: &[[f32; 2]]) {
        let Some(block) = self.block.as_ref() else {
            return;
        };
        let n = out.len() / 2;
        let offset = (self.position - block.start) as usize;
        for (s, (stem, target)) in self.stems.iter_mut().zip(targets).enumerate() {
            if stem.current == [0.0; 2] && *target == [0.0; 2] {
                continue;
            }
            let left = &block.samples[(s * 2) * block.frames + offset..][..n];
            let right = &block.samples[(s * 2 + 1) * block.frames + offset..][..n];
            let [mut gl, mut gr] = stem.current;
            let (mut peak, mut squares) = (stem.block_peak, stem.block_squares);
            for i in 0..n {
                gl = ramp(gl, target[0]);
                gr = ramp(gr, target[1]);
                let (l, r) = (gl * left[i], gr * right[i]);
                out[2 * i] += l;
                out[2 * i + 1] += r;
                peak = peak.max(l.abs()).max(r.abs());
                squares += l * l + r * r;
            }
            stem.current = [gl, gr];
            (stem.block_peak, stem.block_squares) = (peak, squares);
        }
        let edge = self.shared.feed.edge.load(Ordering::Acquire);
        if edge >= self.frames && self.flow == 1.0 {
            return;
        }
        for i in 0..n {
            let frame = self.position + i as u64;
            let near_edge = edge < self.frames && frame + EDGE_FADE_FRAMES as u64 >= edge;
            self.flow = ramp(self.flow, if near_edge { 0.0 } else { 1.0 });
            out[2 * i] *= self.flow;
            out[2 * i + 1] *= self.flow;
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The stems' rate, which every frame the renderer counts is at.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
}

fn ramp(gain: f32, target: f32) -> f32 {
    if gain < target {
        (gain + RAMP_STEP).min(target)
    } else if gain > target {
        (gain - RAMP_STEP).max(target)
    } else {
        gain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeder::BLOCK_FRAMES;
    use crate::source::{MemoryStems, StemAudio};

    const RATE: u32 = 44100;

    /// Three stems with distinct, non-repeating content.
    fn stems(frames: usize) -> Vec<StemAudio> {
        (0..3)
            .map(|s| StemAudio {
                name: format!("stem{s}"),
                left: (0..frames)
                    .map(|i| ((i * (s + 3)) % 97) as f32 / 97.0 - 0.5)
                    .collect(),
                right: (0..frames)
                    .map(|i| ((i * (s + 5)) % 89) as f32 / 89.0 - 0.5)
                    .collect(),
            })
            .collect()
    }

    /// Stems in memory whose separated edge the test moves.
    struct Growing {
        stems: MemoryStems,
        edge: AtomicU64,
    }

    impl StemSource for Growing {
        fn stems(&self) -> usize {
            self.stems.stems()
        }
        fn frames(&self) -> u64 {
            self.stems.frames()
        }
        fn edge(&self) -> u64 {
            self.edge.load(Ordering::Relaxed)
        }
        fn read(&self, start: u64, len: usize, out: &mut [f32]) -> std::io::Result<()> {
            crate::source::check_read(self, start, len, out)?;
            self.stems.read(start, len, out)
        }
    }

    /// A mixer whose feeder the test steps before every block it renders.
    struct Rig {
        control: MixerControl,
        renderer: MixerRenderer,
        feeder: Feeder,
    }

    impl Rig {
        fn new(source: Arc<dyn StemSource>) -> Self {
            let (control, renderer, feeder) = mixer_parts(source, RATE);
            Self {
                control,
                renderer,
                feeder,
            }
        }

        fn of(audio: &[StemAudio]) -> Self {
            Self::new(Arc::new(MemoryStems::new(audio.to_vec())))
        }

        /// Renders `frames` frames in device-sized pulls of at most one feeder block.
        fn render(&mut self, frames: usize) -> Vec<f32> {
            let mut out = vec![0f32; frames * 2];
            for pull in out.chunks_mut(2 * BLOCK_FRAMES.min(1024)) {
                self.renderer.take_commands();
                self.feeder.fill();
                self.renderer.render(pull);
            }
            out
        }

        /// One pull of exactly `frames` frames.
        fn pull(&mut self, frames: usize) -> Vec<f32> {
            let mut out = vec![0f32; frames * 2];
            self.renderer.take_commands();
            self.feeder.fill();
            self.renderer.render(&mut out);
            out
        }
    }

    /// The exact mix of `stems` with `gains` at frame `i`.
    fn mix_at(stems: &[StemAudio], gains: &[f32], i: usize) -> (f32, f32) {
        stems.iter().zip(gains).fold((0.0, 0.0), |(l, r), (s, g)| {
            (
                l + g * s.left.get(i).copied().unwrap_or(0.0),
                r + g * s.right.get(i).copied().unwrap_or(0.0),
            )
        })
    }

    fn assert_mix(out: &[f32], stems: &[StemAudio], gains: &[f32], first_frame: usize) {
        for (k, frame) in out.chunks(2).enumerate() {
            let (l, r) = mix_at(stems, gains, first_frame + k);
            assert!(
                (frame[0] - l).abs() < 1e-5 && (frame[1] - r).abs() < 1e-5,
                "frame {}: {frame:?} vs ({l}, {r})",
                first_frame + k
            );
        }
    }

    #[test]
    fn stems_sum_sample_exactly_whatever_the_block_sizes() {
        let audio = stems(30000);
        let mut rig = Rig::of(&audio);
        rig.control.play().unwrap();
        let mut position = 0;
        for block in [1, 7, 64, 333, 1024, 3, 4095, 4097, 512] {
            let out = rig.pull(block);
            assert_mix(&out, &audio, &[1.0; 3], position);
            position += block;
        }
        assert_eq!(rig.control.position(), position as u64);
        assert!(rig.control.is_playing());
    }

    #[test]
    fn gain_mute_and_solo_apply_after_a_short_click_free_ramp() {
        let audio = stems(20000);
        let mut rig = Rig::of(&audio);
        rig.control.play().unwrap();
        rig.control.set_gain(1, 0.5).unwrap();
        rig.render(GAIN_RAMP_FRAMES);
        assert_mix(&rig.render(500), &audio, &[1.0, 0.5, 1.0], GAIN_RAMP_FRAMES);

        rig.control.set_mute(0, true).unwrap();
        rig.render(GAIN_RAMP_FRAMES);
        let at = GAIN_RAMP_FRAMES * 2 + 500;
        assert_mix(&rig.render(500), &audio, &[0.0, 0.5, 1.0], at);

        // Solo plays the soloed stems alone, even a muted one.
        rig.control.set_solo(2, true).unwrap();
        rig.control.set_solo(0, true).unwrap();
        rig.render(GAIN_RAMP_FRAMES);
        let at = at + 500 + GAIN_RAMP_FRAMES;
        assert_mix(&rig.render(500), &audio, &[1.0, 0.0, 1.0], at);

        rig.control.set_solo(2, false).unwrap();
        rig.control.set_solo(0, false).unwrap();
        rig.render(GAIN_RAMP_FRAMES);
        let at = at + 500 + GAIN_RAMP_FRAMES;
        assert_mix(&rig.render(500), &audio, &[0.0, 0.5, 1.0], at);
    }

    fn dc(frames: usize) -> StemAudio {
        StemAudio {
            name: "dc".into(),
            left: vec![1.0; frames],
            right: vec![1.0; frames],
        }
    }

    fn biggest_step(out: &[f32]) -> f32 {
        let left: Vec<f32> = out.iter().step_by(2).copied().collect();
        left.windows(2)
            .map(|w| (w[0] - w[1]).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn muting_ramps_linearly_instead_of_clicking() {
        let mut rig = Rig::of(&[dc(2000)]);
        rig.control.play().unwrap();
        rig.render(10);
        rig.control.set_mute(0, true).unwrap();
        let out = rig.render(GAIN_RAMP_FRAMES + 10);
        let step = biggest_step(&out);
        assert!(step <= 1.0 / GAIN_RAMP_FRAMES as f32 + 1e-6, "step {step}");
        assert_eq!(out[2 * GAIN_RAMP_FRAMES], 0.0);
        assert_eq!(out[out.len() - 2], 0.0);
    }

    #[test]
    fn seek_moves_every_stem_together() {
        let audio = stems(10000);
        let mut rig = Rig::of(&audio);
        rig.control.play().unwrap();
        rig.render(100);
        assert_eq!(rig.control.seek(7777), Ok(7777));
        assert_mix(&rig.render(300), &audio, &[1.0; 3], 7777);
        rig.control.seek(12).unwrap();
        assert_mix(&rig.render(50), &audio, &[1.0; 3], 12);
        assert_eq!(rig.control.position(), 62);
    }

    #[test]
    fn a_loop_region_repeats_sample_exactly() {
        let audio = stems(10000);
        let mut rig = Rig::of(&audio);
        rig.control.set_loop(Some((1000, 1300))).unwrap();
        rig.control.seek(900).unwrap();
        rig.control.play().unwrap();
        let out = rig.render(100 + 300 * 3 + 17);
        for (k, frame) in out.chunks(2).enumerate() {
            let expected = if k < 100 {
                900 + k
            } else {
                1000 + (k - 100) % 300
            };
            let (l, r) = mix_at(&audio, &[1.0; 3], expected);
            assert!(
                (frame[0] - l).abs() < 1e-6 && (frame[1] - r).abs() < 1e-6,
                "output frame {k} should be source frame {expected}"
            );
        }
        rig.control.set_loop(None).unwrap();
        let out = rig.render(400);
        assert_mix(&out, &audio, &[1.0; 3], 1017);
        assert_eq!(
            rig.control.set_loop(Some((500, 500))),
            Err(ControlError::EmptyLoop)
        );
    }

    #[test]
    fn a_loop_set_while_blocks_are_read_ahead_still_wraps_exactly() {
        let audio = stems(40000);
        let mut rig = Rig::of(&audio);
        rig.control.play().unwrap();
        // The feeder is now several blocks past 5000.
        rig.render(5000);
        rig.control.set_loop(Some((2000, 6000))).unwrap();
        let out = rig.render(1000 + 4000 + 10);
        assert_mix(&out[..2000], &audio, &[1.0; 3], 5000);
        assert_mix(&out[2000..10000], &audio, &[1.0; 3], 2000);
        assert_mix(&out[10000..], &audio, &[1.0; 3], 2000);
    }

    #[test]
    fn pause_holds_the_position_and_the_end_stops_playback() {
        let audio = stems(1000);
        let mut rig = Rig::of(&audio);
        assert!(
            rig.render(64).iter().all(|v| *v == 0.0),
            "silent before play"
        );
        rig.control.play().unwrap();
        rig.render(600);
        rig.control.pause().unwrap();
        assert!(rig.render(64).iter().all(|v| *v == 0.0));
        assert_eq!(rig.control.position(), 600);
        rig.control.play().unwrap();
        let out = rig.pull(1000);
        assert_mix(&out[..800], &audio, &[1.0; 3], 600);
        assert!(
            out[800..].iter().all(|v| *v == 0.0),
            "silence after the end"
        );
        assert!(!rig.control.is_playing());
        assert_eq!(rig.control.position(), 1000);
        // Play at the end starts over.
        rig.control.play().unwrap();
        assert_mix(&rig.render(10), &audio, &[1.0; 3], 0);
    }

    #[test]
    fn commands_for_missing_stems_are_refused() {
        let rig = Rig::of(&stems(10));
        let mut control = rig.control;
        assert_eq!(control.set_gain(3, 1.0), Err(ControlError::NoSuchStem(3)));
        assert_eq!(control.set_mute(9, true), Err(ControlError::NoSuchStem(9)));
        assert_eq!(control.set_pan(3, 0.5), Err(ControlError::NoSuchStem(3)));
        assert_eq!(control.frames(), 10);
    }

    #[test]
    fn levels_report_what_the_renderer_applies_after_mute_and_solo() {
        let mut rig = Rig::of(&stems(1000));
        assert_eq!(rig.control.levels(), vec![1.0; 3]);
        rig.control.set_gain(0, 0.5).unwrap();
        rig.control.set_mute(1, true).unwrap();
        assert_eq!(
            rig.control.levels(),
            vec![1.0; 3],
            "not applied before a block"
        );
        rig.render(8);
        assert_eq!(rig.control.levels(), vec![0.5, 0.0, 1.0]);
        rig.control.set_solo(1, true).unwrap();
        rig.render(8);
        assert_eq!(
            rig.control.levels(),
            vec![0.0, 1.0, 0.0],
            "solo wins over mute"
        );
        rig.control.set_solo(1, false).unwrap();
        rig.control.set_mute(1, false).unwrap();
        rig.render(8);
        assert_eq!(rig.control.levels(), vec![0.5, 1.0, 1.0]);
    }

    /// The fade's value at `i` frames into a fade-in (or, mirrored, before the edge).
    fn fade(i: usize) -> f32 {
        ((i + 1) as f32 / EDGE_FADE_FRAMES as f32).min(1.0)
    }

    #[test]
    fn playback_waits_at_the_separated_edge_and_resumes_on_the_next_frame() {
        let audio = stems(30000);
        let growing = Arc::new(Growing {
            stems: MemoryStems::new(audio.clone()),
            edge: AtomicU64::new(5000),
        });
        let mut rig = Rig::new(growing.clone());
        rig.control.play().unwrap();
        let out = rig.render(8000);
        let fade_from = 5000 - EDGE_FADE_FRAMES;
        assert_mix(&out[..2 * fade_from], &audio, &[1.0; 3], 0);
        for (k, frame) in out[2 * fade_from..2 * 5000].chunks(2).enumerate() {
            let (l, r) = mix_at(&audio, &[1.0; 3], fade_from + k);
            let flow = 1.0 - fade(k);
            assert!(
                (frame[0] - flow * l).abs() < 1e-5 && (frame[1] - flow * r).abs() < 1e-5,
                "frame {} fades out: {frame:?}",
                fade_from + k
            );
        }
        assert!(
            out[2 * 5000..].iter().all(|v| *v == 0.0),
            "silence while waiting"
        );
        assert_eq!(rig.control.position(), 5000, "held at the edge");
        assert!(rig.control.is_waiting() && rig.control.is_playing());
        assert_eq!(rig.control.seek(9000), Ok(5000), "no seeking past the edge");

        growing.edge.store(30000, Ordering::Relaxed);
        let out = rig.render(3000);
        assert!(!rig.control.is_waiting());
        for (k, frame) in out.chunks(2).enumerate() {
            let (l, r) = mix_at(&audio, &[1.0; 3], 5000 + k);
            let flow = fade(k);
            assert!(
                (frame[0] - flow * l).abs() < 1e-5 && (frame[1] - flow * r).abs() < 1e-5,
                "output frame {k} is source frame {} (no frame lost or repeated)",
                5000 + k
            );
        }
        assert_eq!(rig.control.position(), 8000);
    }

    #[test]
    fn waiting_at_the_edge_never_clicks() {
        let growing = Arc::new(Growing {
            stems: MemoryStems::new(vec![dc(20000)]),
            edge: AtomicU64::new(3000),
        });
        let mut rig = Rig::new(growing.clone());
        rig.control.play().unwrap();
        let mut out = rig.render(4000);
        growing.edge.store(20000, Ordering::Relaxed);
        out.extend(rig.render(2000));
        let step = biggest_step(&out);
        assert!(step <= 1.0 / EDGE_FADE_FRAMES as f32 + 1e-6, "step {step}");
    }

    #[test]
    fn a_new_source_carries_on_at_the_same_position() {
        let live = stems(80000);
        let finished: Vec<StemAudio> = live
            .iter()
            .map(|s| StemAudio {
                name: s.name.clone(),
                left: s.left.iter().map(|v| v * 0.5).collect(),
                right: s.right.iter().map(|v| v * 0.5).collect(),
            })
            .collect();
        let mut rig = Rig::of(&live);
        rig.control.play().unwrap();
        rig.render(10000);
        rig.control
            .set_source(Arc::new(MemoryStems::new(finished.clone())))
            .unwrap();
        // The blocks already read (at most the queue's worth) play out, then the new source.
        let out = rig.render(50000);
        assert_eq!(rig.control.position(), 60000, "no gap and no jump");
        let switched = (0..50000)
            .find(|&k| {
                let (l, _) = mix_at(&finished, &[1.0; 3], 10000 + k);
                (out[2 * k] - l).abs() < 1e-6
                    && (l - mix_at(&live, &[1.0; 3], 10000 + k).0).abs() > 1e-3
            })
            .expect("the new source plays");
        assert!(switched <= QUEUE_BLOCKS * BLOCK_FRAMES + BLOCK_FRAMES);
        assert_mix(&out[..2 * switched], &live, &[1.0; 3], 10000);
        assert_mix(&out[2 * switched..], &finished, &[1.0; 3], 10000 + switched);
        assert!(matches!(
            rig.control.set_source(Arc::new(MemoryStems::new(stems(5)))),
            Err(ControlError::SourceMismatch { .. })
        ));
    }

    #[test]
    fn the_pan_law_keeps_power_constant_and_the_centre_unchanged() {
        assert_eq!(pan_gains(0.0).map(|g| (g * 1e6).round()), [1e6, 1e6]);
        let [l, r] = pan_gains(-1.0);
        assert!((l - 2f32.sqrt()).abs() < 1e-6 && r.abs() < 1e-6);
        for pan in [-1.0, -0.6, -0.1, 0.3, 0.9, 1.0] {
            let [l, r] = pan_gains(pan);
            assert!((l * l + r * r - 2.0).abs() < 1e-5, "pan {pan}");
        }

        let audio = vec![dc(5000)];
        let mut rig = Rig::of(&audio);
        rig.control.set_pan(0, 1.0).unwrap();
        rig.control.play().unwrap();
        rig.render(2 * GAIN_RAMP_FRAMES);
        let out = rig.render(100);
        for frame in out.chunks(2) {
            assert!(
                frame[0].abs() < 1e-6 && (frame[1] - 2f32.sqrt()).abs() < 1e-5,
                "{frame:?}"
            );
        }
    }

    #[test]
    fn meters_read_each_stem_after_its_gain_and_the_mix() {
        let frames = RATE as usize * 2;
        let sine: Vec<f32> = (0..frames)
            .map(|i| 0.8 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / RATE as f32).sin())
            .collect();
        let audio = vec![
            StemAudio {
                name: "sine".into(),
                left: sine.clone(),
                right: sine,
            },
            StemAudio {
                name: "silence".into(),
                left: vec![0.0; frames],
                right: vec![0.0; frames],
            },
        ];
        let mut rig = Rig::of(&audio);
        rig.control.set_gain(0, 0.5).unwrap();
        rig.control.play().unwrap();
        for _ in 0..RATE / 512 {
            rig.pull(512);
        }
        let meters = rig.control.meters();
        assert!((meters[0].peak - 0.4).abs() < 0.01, "{meters:?}");
        assert!(
            (meters[0].rms - 0.4 / 2f32.sqrt()).abs() < 0.01,
            "{meters:?}"
        );
        assert_eq!(meters[1].peak, 0.0);
        let master = rig.control.master_meter();
        assert!((master.peak - 0.4).abs() < 0.01, "{master:?}");
    }
}
