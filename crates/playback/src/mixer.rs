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

use std::collections::VecDeque;

use crate::click::{BEATS_PER_BAR, BeatGrid, Click};
use crate::feeder::{Block, FeedShared, Feeder, QUEUE_BLOCKS, ReadRequest};
use crate::meter::{Meter, MeterLevel, SharedLevel};
use crate::source::StemSource;
use crate::stretch::{Stretcher, TempoPitch};

/// Frames over which a full-scale gain change (volume, mute, solo, pan) is ramped, so
/// that toggling a stem never clicks. About 6 ms at 44.1 kHz.
pub const GAIN_RAMP_FRAMES: usize = 256;
const RAMP_STEP: f32 = 1.0 / GAIN_RAMP_FRAMES as f32;
/// Frames over which playback fades out just before the separated edge, and back in when
/// more audio is there, so that waiting for the separation never clicks.
pub const EDGE_FADE_FRAMES: usize = GAIN_RAMP_FRAMES;
/// Output frames stretched per call, so a large device buffer needs no larger scratch.
const MAX_STRETCH_PULL: usize = 2048;
/// Song frames the scratch holds: the most a stretched pull or a priming can ask for.
const SCRATCH_FRAMES: usize = 3 * MAX_STRETCH_PULL + 16_384;

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
    SetTempoPitch(TempoPitch),
    SetClick { on: bool, volume: f32 },
    SetCountIn(bool),
}

/// Where playback is in its own sequence of events.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Playing,
    /// A bar of clicks before the music; the position waits.
    CountIn {
        left: usize,
    },
    /// The song (or a loop pass) is all in the stretcher; what it holds plays out first.
    Draining {
        left: usize,
        then: AfterDrain,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AfterDrain {
    Stop,
    /// Count in, then play from this frame (the loop's start).
    CountIn(u64),
}

/// Why the unstretched mix stopped filling a buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DryEnd {
    More,
    Stalled,
    SongEnd,
    /// The loop's end, with a count-in due before the pass from this start frame.
    LoopEnd(u64),
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
    /// The tempo and pitch the renderer plays at now, as f32 bits.
    tempo: AtomicU32,
    semitones: AtomicU32,
    counting_in: AtomicBool,
    beats: Mutex<Option<Arc<BeatGrid>>>,
    beats_version: AtomicU64,
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

    /// Plays at `tempo` (0.5 to 1.5 of the original speed) and `semitones` away from the
    /// original key (-12 to 12, fractions are cents), each without changing the other.
    pub fn set_tempo_pitch(&mut self, settings: TempoPitch) -> Result<(), ControlError> {
        self.send(Command::SetTempoPitch(settings.clamped()))
    }

    /// The song's beats, for the click and the count-in.
    pub fn set_beats(&mut self, grid: Option<BeatGrid>) {
        let mut slot = self.shared.beats.lock().unwrap_or_else(|e| e.into_inner());
        *slot = grid.map(Arc::new);
        self.shared.beats_version.fetch_add(1, Ordering::AcqRel);
    }

    /// A click on every beat, at `volume` (linear, 1.0 is full).
    pub fn set_click(&mut self, on: bool, volume: f32) -> Result<(), ControlError> {
        let volume = if volume.is_finite() {
            volume.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.send(Command::SetClick { on, volume })
    }

    /// A bar of clicks before playback starts and before every pass of the loop.
    pub fn set_count_in(&mut self, on: bool) -> Result<(), ControlError> {
        self.send(Command::SetCountIn(on))
    }

    /// The tempo and pitch the renderer applies now.
    pub fn tempo_pitch(&self) -> TempoPitch {
        TempoPitch {
            tempo: f32::from_bits(self.shared.tempo.load(Ordering::Acquire)),
            semitones: f32::from_bits(self.shared.semitones.load(Ordering::Acquire)),
        }
    }

    /// True during a count-in.
    pub fn is_counting_in(&self) -> bool {
        self.shared.counting_in.load(Ordering::Acquire)
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
    /// The song frame being heard: the position, less what the stretcher holds.
    heard: u64,
    phase: Phase,
    practice: TempoPitch,
    stretcher: Stretcher,
    /// The mix goes through the stretcher (tempo or pitch is changed).
    engaged: bool,
    /// The stretcher must be started at the position before it plays.
    needs_prime: bool,
    /// Back to neutral: the stretcher fades out at the next block.
    disengaging: bool,
    /// Song frames fed to the stretcher since it was started, and which song frames
    /// they were (`(fed, song, len)`, in order), to know what is being heard.
    fed: u64,
    history: VecDeque<(u64, u64, u64)>,
    /// The fraction of a song frame the tempo owes the next block.
    carry: f64,
    scratch: Vec<f32>,
    settle_buffer: Vec<f32>,
    crossfade: Option<Vec<f32>>,
    crossfade_buffer: Vec<f32>,
    click: Click,
    click_on: bool,
    click_volume: f32,
    count_in: bool,
    beats: Option<Arc<BeatGrid>>,
    beats_version: u64,
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
        tempo: AtomicU32::new(1.0f32.to_bits()),
        semitones: AtomicU32::new(0.0f32.to_bits()),
        counting_in: AtomicBool::new(false),
        beats: Mutex::new(None),
        beats_version: AtomicU64::new(0),
    });
    let stretcher = Stretcher::new(sample_rate);
    let settle_frames = stretcher.output_latency();
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
        heard: 0,
        phase: Phase::Playing,
        practice: TempoPitch::default(),
        stretcher,
        engaged: false,
        needs_prime: false,
        disengaging: false,
        fed: 0,
        history: VecDeque::with_capacity(256),
        carry: 0.0,
        scratch: vec![0.0; SCRATCH_FRAMES * 2],
        settle_buffer: vec![0.0; settle_frames * 2],
        crossfade: None,
        crossfade_buffer: Vec::with_capacity(GAIN_RAMP_FRAMES * 2),
        click: Click::new(sample_rate),
        click_on: false,
        click_volume: 0.5,
        count_in: false,
        beats: None,
        beats_version: 0,
    };
    (control, renderer, Feeder::new(feed, block_tx, recycle_rx))
}

impl MixerRenderer {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Play => {
                if self.playing {
                    return;
                }
                if self.heard >= self.frames {
                    self.heard = self.loop_region.map_or(0, |(start, _)| start);
                }
                self.move_to(self.heard);
                self.playing = true;
                self.start_count_in();
            }
            Command::Pause => {
                self.playing = false;
                // The stretcher's read-ahead is not heard yet: pausing holds what is.
                self.move_to(self.heard);
            }
            Command::Seek(frame) => self.move_to(frame),
            Command::SetTempoPitch(settings) => self.set_practice(settings),
            Command::SetClick { on, volume } => {
                self.click_on = on;
                self.click_volume = volume;
                if !on {
                    self.click.silence();
                }
            }
            Command::SetCountIn(on) => {
                self.count_in = on;
                if !on && matches!(self.phase, Phase::CountIn { .. }) {
                    self.phase = Phase::Playing;
                }
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

    /// Plays on from `frame`: the stretcher (if in use) starts over there, and any
    /// count-in or drain under way is dropped.
    fn move_to(&mut self, frame: u64) {
        self.heard = frame;
        if matches!(self.phase, Phase::Draining { .. }) {
            self.phase = Phase::Playing;
        }
        if frame != self.position || self.engaged {
            self.position = frame;
            self.resync();
        }
        self.engaged_restart();
    }

    fn set_practice(&mut self, settings: TempoPitch) {
        let was_neutral = self.practice.is_neutral();
        self.practice = settings;
        self.stretcher.set_semitones(settings.semitones);
        match (was_neutral, settings.is_neutral()) {
            (true, false) => {
                // Start the stretcher where playback is, unless it is still leaving.
                self.disengaging = false;
                if !self.engaged {
                    self.engaged = true;
                    self.needs_prime = true;
                }
            }
            (false, true) if self.engaged => {
                if self.playing && !self.needs_prime {
                    self.disengaging = true;
                } else {
                    self.engaged = false;
                    self.needs_prime = false;
                    self.move_to(self.heard);
                }
            }
            _ => {}
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
        self.take_beats();
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

    /// Fills `out` (interleaved stereo) with the next `out.len() / 2` frames: the count-in,
    /// the mix (through the stretcher when tempo or pitch is changed) and the click.
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
        let heard_before = self.heard;
        let mut done = 0;
        let mut stalled = false;
        let mut counted = 0;
        while done < frames_out && self.playing {
            let rest = &mut out[done * 2..];
            match self.phase {
                Phase::CountIn { left } => {
                    let k = left.min(frames_out - done);
                    self.count_in_clicks(left, k, done);
                    counted += k;
                    self.phase = if k == left {
                        Phase::Playing
                    } else {
                        Phase::CountIn { left: left - k }
                    };
                    done += k;
                }
                Phase::Draining { left, then } => {
                    let k = left.min(frames_out - done).min(MAX_STRETCH_PULL);
                    self.stretch_silence(&mut rest[..k * 2]);
                    done += k;
                    if k < left {
                        self.phase = Phase::Draining {
                            left: left - k,
                            then,
                        };
                    } else {
                        self.phase = Phase::Playing;
                        self.engaged_restart();
                        match then {
                            AfterDrain::Stop => {
                                self.playing = false;
                                self.heard = self.frames;
                            }
                            AfterDrain::CountIn(start) => {
                                self.position = start;
                                self.heard = start;
                                self.resync();
                                self.start_count_in();
                            }
                        }
                    }
                }
                Phase::Playing if !self.engaged => {
                    let wanted = frames_out - done;
                    let (k, end) = self.render_dry(&mut rest[..wanted * 2], &targets);
                    done += k;
                    self.heard = self.position;
                    match end {
                        DryEnd::More => {}
                        DryEnd::Stalled => {
                            stalled = true;
                            break;
                        }
                        DryEnd::LoopEnd(start) => {
                            self.position = start;
                            self.heard = start;
                            self.start_count_in();
                        }
                        DryEnd::SongEnd => self.playing = false,
                    }
                }
                Phase::Playing => {
                    if self.needs_prime && !self.prime(&targets) {
                        stalled = true;
                        break;
                    }
                    let k = (frames_out - done).min(MAX_STRETCH_PULL);
                    let end = self.render_stretched(&mut rest[..k * 2], &targets);
                    done += k;
                    if self.disengaging {
                        self.finish_disengaging(&mut rest[..k * 2]);
                        continue;
                    }
                    match end {
                        DryEnd::More => {}
                        DryEnd::Stalled => {
                            stalled = true;
                            break;
                        }
                        DryEnd::LoopEnd(start) => {
                            self.phase = Phase::Draining {
                                left: self.drain_frames(),
                                then: AfterDrain::CountIn(start),
                            }
                        }
                        DryEnd::SongEnd => {
                            self.phase = Phase::Draining {
                                left: self.drain_frames(),
                                then: AfterDrain::Stop,
                            }
                        }
                    }
                }
            }
        }
        if !self.playing {
            // Nothing sounds while stopped, so pending ramps have nothing to smooth.
            for (stem, target) in self.stems.iter_mut().zip(&targets) {
                stem.current = *target;
            }
        }
        if self.click_on {
            self.song_clicks(heard_before, counted, frames_out);
        }
        let volume = self.click_volume;
        self.click.mix_into(out, volume);
        self.publish(out, frames_out, stalled, &audible);
    }

    /// Mixes the stems into `out` from the play position, through loop wraps, until `out`
    /// is full or something stops it: the separated edge, the song's end, or (with a
    /// count-in for every pass) the loop's end.
    fn render_dry(&mut self, out: &mut [f32], targets: &[[f32; 2]]) -> (usize, DryEnd) {
        let frames_out = out.len() / 2;
        let mut written = 0;
        while written < frames_out {
            // Play up to the loop end when inside or before the loop, else to the end.
            let stop = match self.loop_region {
                Some((_, end)) if self.position <= end => end,
                _ => self.frames,
            };
            if self.position >= stop {
                match self.loop_region {
                    Some((start, end)) if stop == end => {
                        if self.count_in && self.beat_len().is_some() {
                            return (written, DryEnd::LoopEnd(start));
                        }
                        self.position = start;
                        continue;
                    }
                    _ => return (written, DryEnd::SongEnd),
                }
            }
            if !self.ensure_block() {
                return (written, DryEnd::Stalled);
            }
            let block_end = self.block.as_ref().map_or(self.position, Block::end);
            let n =
                (stop.min(block_end) - self.position).min((frames_out - written) as u64) as usize;
            self.mix_into(&mut out[written * 2..(written + n) * 2], targets);
            if self.engaged {
                self.note_fed(self.position, n);
            }
            self.position += n as u64;
            written += n;
        }
        (written, DryEnd::More)
    }

    /// `out.len() / 2` frames at the current tempo and pitch, from as many song frames as
    /// the tempo takes.
    fn render_stretched(&mut self, out: &mut [f32], targets: &[[f32; 2]]) -> DryEnd {
        let k = out.len() / 2;
        let m = self.song_frames_for(k);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch[..m * 2].fill(0.0);
        let (got, end) = self.render_dry(&mut scratch[..m * 2], targets);
        // What could not be read (the edge, the end) goes in as silence.
        self.fed += (m - got) as u64;
        self.stretcher.process(&scratch[..m * 2], out);
        self.scratch = scratch;
        if let Some(dry) = self.crossfade.take() {
            let n = (dry.len() / 2).min(k);
            for i in 0..n {
                let wet = (i as f32 + 0.5) / n as f32;
                for c in 0..2 {
                    out[i * 2 + c] = out[i * 2 + c] * wet + dry[i * 2 + c] * (1.0 - wet);
                }
            }
            self.crossfade_buffer = dry;
        }
        self.heard = self.heard_now();
        end
    }

    /// Song frames that `k` output frames take at the current tempo, the fraction left over
    /// carried to the next block so the ratio holds over the whole song.
    fn song_frames_for(&mut self, k: usize) -> usize {
        let exact = k as f64 * self.practice.tempo as f64 + self.carry;
        let m = (exact.floor() as usize).min(self.scratch.len() / 2);
        self.carry = exact - m as f64;
        m
    }

    /// Feeds silence through the stretcher, to let out what it still holds.
    fn stretch_silence(&mut self, out: &mut [f32]) {
        let m = self.song_frames_for(out.len() / 2);
        self.scratch[..m * 2].fill(0.0);
        self.fed += m as u64;
        self.stretcher.process(&self.scratch[..m * 2], out);
        self.heard = self.heard_now();
    }

    /// Starts the stretcher at the play position: its latency is filled with the song, and
    /// what it gives first is that position, faded in from the unstretched mix. False
    /// when the audio there is not read yet.
    fn prime(&mut self, targets: &[[f32; 2]]) -> bool {
        if !self.ensure_block() {
            return false;
        }
        let (in_latency, out_latency) = (
            self.stretcher.input_latency(),
            self.stretcher.output_latency(),
        );
        let settle = (out_latency as f64 * self.practice.tempo as f64).round() as usize;
        let start = self.position;
        self.history.clear();
        self.fed = 0;
        self.carry = 0.0;
        let mut scratch = std::mem::take(&mut self.scratch);
        let frames = (in_latency + settle).min(scratch.len() / 2);
        scratch[..frames * 2].fill(0.0);
        let (got, _) = self.render_dry(&mut scratch[..frames * 2], targets);
        self.fed += (frames - got) as u64;
        let preroll = in_latency.min(frames);
        self.stretcher
            .restart(&scratch[..preroll * 2], self.practice.tempo);
        let mut settled = std::mem::take(&mut self.settle_buffer);
        settled.resize(out_latency * 2, 0.0);
        self.stretcher
            .process(&scratch[preroll * 2..frames * 2], &mut settled[..]);
        self.settle_buffer = settled;
        // The unstretched mix from the position, to cross-fade from.
        let mut dry = std::mem::take(&mut self.crossfade_buffer);
        let n = (dry.capacity() / 2).min(preroll);
        dry.clear();
        dry.extend_from_slice(&scratch[..n * 2]);
        self.crossfade = Some(dry);
        self.scratch = scratch;
        self.needs_prime = false;
        self.heard = start;
        true
    }

    /// Records that song frames `[song, song + n)` went into the stretcher next.
    fn note_fed(&mut self, song: u64, n: usize) {
        if let Some(last) = self.history.back_mut()
            && last.0 + last.2 == self.fed
            && last.1 + last.2 == song
        {
            last.2 += n as u64;
        } else {
            if self.history.len() == self.history.capacity() {
                self.history.pop_front();
            }
            self.history.push_back((self.fed, song, n as u64));
        }
        self.fed += n as u64;
    }

    /// The song frame being heard now, through the stretcher's latency.
    fn heard_now(&self) -> u64 {
        let lag = self.stretcher.input_latency() as f64
            + self.stretcher.output_latency() as f64 * self.practice.tempo as f64;
        let at = (self.fed as f64 - lag).max(0.0) as u64;
        let mut heard = self.history.front().map_or(self.heard, |s| s.1);
        for &(fed, song, len) in &self.history {
            if at < fed {
                break;
            }
            heard = song + (at - fed).min(len);
        }
        heard.min(self.frames)
    }

    /// Output frames until the stretcher has let out the last song frame fed to it.
    fn drain_frames(&self) -> usize {
        let tempo = self.practice.tempo as f64;
        (self.stretcher.input_latency() as f64 / tempo) as usize + self.stretcher.output_latency()
    }

    /// After a drain, the stretcher starts afresh from wherever playing goes on.
    fn engaged_restart(&mut self) {
        if self.engaged {
            self.needs_prime = true;
        }
    }

    /// Leaves the stretcher: this block fades out, and the unstretched mix resumes (fading
    /// in) from the frame that was being heard.
    fn finish_disengaging(&mut self, out: &mut [f32]) {
        let n = out.len() / 2;
        let fade = n.min(GAIN_RAMP_FRAMES);
        for (i, frame) in out.chunks_mut(2).enumerate() {
            let gain = if i < fade {
                1.0 - (i as f32 + 1.0) / fade as f32
            } else {
                0.0
            };
            frame[0] *= gain;
            frame[1] *= gain;
        }
        self.disengaging = false;
        self.engaged = false;
        self.position = self.heard;
        self.flow = 0.0;
        self.resync();
    }

    /// Frames of the output one beat of the song lasts at the current tempo.
    fn beat_len(&self) -> Option<usize> {
        let bpm = self.beats.as_ref().map(|b| b.bpm).filter(|b| *b > 0.0)?;
        let frames = 60.0 / bpm * self.sample_rate as f64 / self.practice.tempo as f64;
        Some(frames.round() as usize)
    }

    fn start_count_in(&mut self) {
        if !self.count_in {
            return;
        }
        if let Some(beat) = self.beat_len() {
            self.phase = Phase::CountIn {
                left: beat * BEATS_PER_BAR,
            };
            self.engaged_restart();
        }
    }

    /// Schedules the count-in's clicks among its next `k` frames (`left` remain), which
    /// start `offset` frames into this block.
    fn count_in_clicks(&mut self, left: usize, k: usize, offset: usize) {
        let Some(beat) = self.beat_len() else {
            return;
        };
        let total = beat * BEATS_PER_BAR;
        let elapsed = total - left;
        for n in 0..BEATS_PER_BAR {
            let at = n * beat;
            if at >= elapsed && at < elapsed + k {
                self.click.trigger(n == 0, offset + at - elapsed);
            }
        }
    }

    /// Schedules a click for every beat the song passed in this block: the heard position
    /// went from `before` to `self.heard` over the block's frames after the first
    /// `counted` (which were count-in).
    fn song_clicks(&mut self, before: u64, counted: usize, frames: usize) {
        let Some(grid) = self.beats.clone() else {
            return;
        };
        let after = self.heard;
        let span = frames.saturating_sub(counted);
        if span == 0 {
            return;
        }
        let tempo = self.practice.tempo as f64;
        if after >= before {
            let moved = (after - before).max(1) as f64;
            grid.each_between(before, after, |i, frame| {
                let at = counted + ((frame - before) as f64 / moved * span as f64) as usize;
                self.click
                    .trigger(i % BEATS_PER_BAR == 0, at.min(frames - 1));
            });
        } else {
            // A loop wrapped (or playback moved): place the new pass's beats back from now.
            let start = self.loop_region.map_or(0, |(s, _)| s);
            grid.each_between(start, after, |i, frame| {
                let back = ((after - frame) as f64 / tempo) as usize;
                let at = frames.saturating_sub(back + 1).max(counted);
                self.click.trigger(i % BEATS_PER_BAR == 0, at);
            });
        }
    }

    /// Picks up a beat grid the control side has set since the last block.
    fn take_beats(&mut self) {
        let version = self.shared.beats_version.load(Ordering::Acquire);
        if version == self.beats_version {
            return;
        }
        // Never wait on the control thread; try again next block if it holds the lock.
        if let Ok(slot) = self.shared.beats.try_lock() {
            self.beats = slot.clone();
            self.beats_version = version;
        }
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
        self.shared.position.store(self.heard, Ordering::Release);
        self.shared
            .tempo
            .store(self.practice.tempo.to_bits(), Ordering::Release);
        self.shared
            .semitones
            .store(self.practice.semitones.to_bits(), Ordering::Release);
        self.shared.counting_in.store(
            self.playing && matches!(self.phase, Phase::CountIn { .. }),
            Ordering::Release,
        );
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

    /// The song frame being heard (the stretcher holds a little more than that).
    pub fn position(&self) -> u64 {
        self.heard
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

    // Tempo, pitch, click and count-in.

    fn sine_stems(hz: f32, secs: f32, amplitude: f32) -> Vec<StemAudio> {
        let frames = (secs * RATE as f32) as usize;
        let tone: Vec<f32> = (0..frames)
            .map(|i| (std::f32::consts::TAU * hz * i as f32 / RATE as f32).sin() * amplitude)
            .collect();
        vec![StemAudio {
            name: "tone".into(),
            left: tone.clone(),
            right: tone,
        }]
    }

    /// Renders until playback stops (at most `limit` frames), in 512-frame pulls.
    fn play_out(rig: &mut Rig, limit: usize) -> Vec<f32> {
        let mut out = Vec::new();
        while rig.renderer.is_playing() && out.len() / 2 < limit {
            out.extend(rig.pull(512));
        }
        out
    }

    fn practice(tempo: f32, semitones: f32) -> TempoPitch {
        TempoPitch { tempo, semitones }
    }

    #[test]
    fn at_three_quarter_tempo_ten_seconds_play_for_thirteen_and_a_third() {
        let mut rig = Rig::of(&sine_stems(440.0, 10.0, 0.5));
        rig.control.set_tempo_pitch(practice(0.75, 0.0)).unwrap();
        rig.control.play().unwrap();
        rig.pull(512);
        let out = play_out(&mut rig, 20 * RATE as usize);
        let secs = (out.len() / 2 + 512) as f64 / RATE as f64;
        assert!((secs - 13.333).abs() / 13.333 < 0.01, "played {secs:.3} s");
        assert_eq!(rig.control.tempo_pitch(), practice(0.75, 0.0));
        let hz = crate::stretch::tests::dominant_hz(&out);
        assert!((hz - 440.0).abs() <= 2.0, "pitch kept: {hz} Hz");
    }

    #[test]
    fn an_octave_up_moves_440_hz_to_880_and_keeps_the_duration() {
        let mut rig = Rig::of(&sine_stems(440.0, 3.0, 0.5));
        rig.control.set_tempo_pitch(practice(1.0, 12.0)).unwrap();
        rig.control.play().unwrap();
        let mut out = rig.pull(512);
        out.extend(play_out(&mut rig, 10 * RATE as usize));
        let secs = out.len() as f64 / 2.0 / RATE as f64;
        assert!((secs - 3.0).abs() / 3.0 < 0.01, "played {secs:.3} s");
        let hz = crate::stretch::tests::dominant_hz(&out);
        assert!((hz - 880.0).abs() <= 3.0, "{hz} Hz");
    }

    #[test]
    fn changing_tempo_and_pitch_while_playing_never_clicks() {
        let amplitude = 0.5;
        let mut rig = Rig::of(&sine_stems(220.0, 20.0, amplitude));
        rig.control.play().unwrap();
        let mut out = rig.render(RATE as usize);
        for settings in [
            practice(0.8, 0.0),
            practice(0.8, -2.0),
            practice(1.3, 3.5),
            practice(1.0, 0.0),
            practice(0.6, 0.0),
            practice(1.0, 0.0),
        ] {
            rig.control.set_tempo_pitch(settings).unwrap();
            out.extend(rig.render(RATE as usize / 2));
        }
        // A 220 Hz sine (or its transposition up to 3.5 semitones) never moves further
        // between samples than this; a click would.
        let hz = 220.0 * 2f32.powf(3.5 / 12.0);
        let own_step = std::f32::consts::TAU * hz / RATE as f32 * amplitude;
        let step = biggest_step(&out);
        assert!(
            step < 1.5 * own_step,
            "a step of {step} against the tone's {own_step}"
        );
        assert!(out.iter().all(|v| v.abs() <= 1.2 * amplitude));
    }

    #[test]
    fn stems_stay_sample_synchronised_through_tempo_and_pitch() {
        // Two stems that cancel exactly: any drift between them would be heard.
        let tone = sine_stems(330.0, 6.0, 0.5).remove(0);
        let inverted = StemAudio {
            name: "inverted".into(),
            left: tone.left.iter().map(|v| -v).collect(),
            right: tone.right.iter().map(|v| -v).collect(),
        };
        let mut rig = Rig::of(&[tone, inverted]);
        rig.control.set_tempo_pitch(practice(0.7, -5.0)).unwrap();
        rig.control.play().unwrap();
        let mut out = rig.render(RATE as usize);
        rig.control.set_tempo_pitch(practice(1.2, 2.0)).unwrap();
        out.extend(rig.render(RATE as usize));
        assert!(out.iter().all(|v| v.abs() < 1e-5), "{}", biggest_step(&out));
    }

    #[test]
    fn the_position_advances_at_the_tempo_in_song_frames() {
        let mut rig = Rig::of(&sine_stems(440.0, 20.0, 0.5));
        rig.control.set_tempo_pitch(practice(0.8, -2.0)).unwrap();
        rig.control.play().unwrap();
        rig.render(RATE as usize);
        let before = rig.control.position();
        rig.render(4 * RATE as usize);
        let moved = rig.control.position() - before;
        let expected = 0.8 * 4.0 * RATE as f64;
        assert!((moved as f64 - expected).abs() < 600.0, "{moved} frames");
        // Pausing holds what is heard, and playing on continues from there.
        rig.control.pause().unwrap();
        rig.pull(512);
        let held = rig.control.position();
        rig.pull(512);
        assert_eq!(rig.control.position(), held);
    }

    fn grid(bpm: f64, frames: u64) -> BeatGrid {
        let period = 60.0 / bpm * RATE as f64;
        BeatGrid {
            bpm,
            frames: (0..)
                .map(|i| (i as f64 * period).round() as u64)
                .take_while(|f| *f < frames)
                .collect(),
        }
    }

    /// Frames where a click starts: the first sound after at least 0.1 s of silence.
    fn click_starts(out: &[f32]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut quiet = usize::MAX;
        for (i, frame) in out.chunks(2).enumerate() {
            if frame[0].abs() > 1e-4 {
                if quiet >= RATE as usize / 10 {
                    starts.push(i);
                }
                quiet = 0;
            } else {
                quiet = quiet.saturating_add(1);
            }
        }
        starts
    }

    fn silent_stems(secs: f32) -> Vec<StemAudio> {
        sine_stems(100.0, secs, 0.0)
    }

    #[test]
    fn the_click_falls_on_the_beat_grid_and_follows_the_tempo() {
        for tempo in [1.0f32, 0.8] {
            let mut rig = Rig::of(&silent_stems(10.0));
            rig.control.set_beats(Some(grid(120.0, 10 * RATE as u64)));
            rig.control.set_click(true, 0.8).unwrap();
            rig.control.set_tempo_pitch(practice(tempo, 0.0)).unwrap();
            rig.control.play().unwrap();
            let out = rig.render(4 * RATE as usize);
            let starts = click_starts(&out);
            assert!(starts.len() >= 6, "{starts:?}");
            let beat = 22_050.0 / tempo as f64;
            for pair in starts.windows(2) {
                let gap = (pair[1] - pair[0]) as f64;
                assert!((gap - beat).abs() <= 513.0, "tempo {tempo}: {starts:?}");
            }
            if tempo == 1.0 {
                // Unstretched, every click is on its beat to the pull.
                for (n, start) in starts.iter().enumerate() {
                    let due = n * 22_050;
                    assert!(start.abs_diff(due) <= 512, "{starts:?}");
                }
            }
        }
    }

    #[test]
    fn a_count_in_plays_a_bar_before_the_song_and_before_each_loop_pass() {
        let mut rig = Rig::of(&sine_stems(440.0, 10.0, 0.3));
        rig.control.set_beats(Some(grid(120.0, 10 * RATE as u64)));
        rig.control.set_count_in(true).unwrap();
        let loop_end = 2 * RATE as u64;
        rig.control.set_loop(Some((RATE as u64, loop_end))).unwrap();
        rig.control.seek(RATE as u64).unwrap();
        rig.control.play().unwrap();
        rig.pull(512);
        assert!(rig.control.is_counting_in());
        // Four beats at 120 BPM: two seconds of clicks, the song waiting at the loop start.
        let bar = rig.render(2 * RATE as usize - 1024);
        assert_eq!(rig.control.position(), RATE as u64);
        let later: Vec<usize> = click_starts(&bar).into_iter().filter(|s| *s > 0).collect();
        assert_eq!(
            later.len(),
            3,
            "beats 2, 3 and 4 after the first pull's: {later:?}"
        );
        rig.render(2048);
        assert!(!rig.control.is_counting_in());
        assert!(rig.control.position() > RATE as u64);
        // One pass of the loop (a second), then the count-in again at its start.
        rig.render(RATE as usize);
        assert!(
            rig.control.is_counting_in(),
            "counting in before the next pass"
        );
        assert_eq!(rig.control.position(), RATE as u64);
    }
}
