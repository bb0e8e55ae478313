//! The feeder: a thread that reads the stems a block at a time just ahead of the play
//! position and hands the blocks to the renderer through a lock-free queue, so that the
//! audio callback never touches a file and memory holds well under a second of audio.
//!
//! The renderer owns the play position. Whenever it moves the position other than by
//! playing on (a seek, a new loop, a restart), it publishes a new *generation* with the
//! frame to read from and the loop; the feeder follows it, reading on from there exactly
//! as the renderer will play: up to the loop end and back to its start, or to the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::source::StemSource;

/// Frames per block: about 93 ms at 44.1 kHz.
pub const BLOCK_FRAMES: usize = 4096;
/// Blocks read ahead of the renderer: about 0.75 s.
pub const QUEUE_BLOCKS: usize = 8;
/// `loop_end` when there is no loop.
pub(crate) const NO_LOOP: u64 = u64::MAX;

/// A stretch of every stem, planar: channel `c` of stem `s` at
/// `samples[(s * 2 + c) * frames ..][..frames]`.
pub(crate) struct Block {
    pub generation: u64,
    pub start: u64,
    pub frames: usize,
    pub samples: Vec<f32>,
}

impl Block {
    pub fn end(&self) -> u64 {
        self.start + self.frames as u64
    }

    pub fn contains(&self, frame: u64) -> bool {
        self.start <= frame && frame < self.end()
    }
}

/// What the renderer asks the feeder for; written by the renderer only.
#[derive(Debug, Default)]
pub(crate) struct ReadRequest {
    generation: AtomicU64,
    from: AtomicU64,
    loop_start: AtomicU64,
    loop_end: AtomicU64,
}

impl ReadRequest {
    pub fn new() -> Self {
        let request = Self::default();
        request.loop_end.store(NO_LOOP, Ordering::Relaxed);
        request
    }

    /// Publishes generation `generation`: read from `from`, looping `region`.
    pub fn publish(&self, generation: u64, from: u64, region: Option<(u64, u64)>) {
        let (start, end) = region.unwrap_or((0, NO_LOOP));
        self.from.store(from, Ordering::Relaxed);
        self.loop_start.store(start, Ordering::Relaxed);
        self.loop_end.store(end, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Release);
    }

    /// The latest request, read consistently even while the renderer publishes.
    fn latest(&self) -> (u64, u64, Option<(u64, u64)>) {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let from = self.from.load(Ordering::Relaxed);
            let start = self.loop_start.load(Ordering::Relaxed);
            let end = self.loop_end.load(Ordering::Relaxed);
            if self.generation.load(Ordering::Acquire) == generation {
                let region = (end != NO_LOOP).then_some((start, end));
                return (generation, from, region);
            }
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// What the feeder shares with the control side and the renderer.
pub(crate) struct FeedShared {
    pub source: Mutex<Arc<dyn StemSource>>,
    pub request: ReadRequest,
    /// The source's edge as of the feeder's last look; no block reaches past it.
    pub edge: AtomicU64,
    pub stop: AtomicBool,
    /// Set once a read failed, so the failure is logged once, not every block.
    pub failed: AtomicBool,
}

/// What one [`Feeder::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A block went to the renderer.
    Fed,
    /// The queue is full, the edge is reached, or playback is at the end: nothing to do.
    Idle,
}

pub(crate) struct Feeder {
    shared: Arc<FeedShared>,
    blocks: rtrb::Producer<Block>,
    recycled: rtrb::Consumer<Vec<f32>>,
    generation: Option<u64>,
    cursor: u64,
    region: Option<(u64, u64)>,
}

impl Feeder {
    pub fn new(
        shared: Arc<FeedShared>,
        blocks: rtrb::Producer<Block>,
        recycled: rtrb::Consumer<Vec<f32>>,
    ) -> Self {
        Self {
            shared,
            blocks,
            recycled,
            generation: None,
            cursor: 0,
            region: None,
        }
    }

    /// Reads the next block the renderer will need, if there is room and audio for it.
    pub fn step(&mut self) -> Step {
        let (generation, from, region) = self.shared.request.latest();
        if self.generation != Some(generation) {
            self.generation = Some(generation);
            self.cursor = from;
            self.region = region;
        }
        let source = self
            .shared
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let edge = source.edge().min(source.frames());
        self.shared.edge.store(edge, Ordering::Release);
        if self.blocks.slots() == 0 {
            return Step::Idle;
        }
        let Some((from, end)) = next_range(self.cursor, self.region, source.frames()) else {
            return Step::Idle;
        };
        let len = (end - from)
            .min(edge.saturating_sub(from))
            .min(BLOCK_FRAMES as u64) as usize;
        if len == 0 {
            return Step::Idle;
        }
        let mut samples = self.recycled.pop().unwrap_or_default();
        samples.resize(source.stems() * 2 * len, 0.0);
        if let Err(e) = source.read(from, len, &mut samples) {
            if !self.shared.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!("cannot read the stems for playback: {e}");
            }
            return Step::Idle;
        }
        if self.shared.request.generation() != generation {
            // The renderer moved while this was read; what it wants now comes next.
            return Step::Fed;
        }
        let block = Block {
            generation,
            start: from,
            frames: len,
            samples,
        };
        if self.blocks.push(block).is_ok() {
            self.cursor = from + len as u64;
        }
        Step::Fed
    }

    /// Steps until there is nothing to do; tests drive the feeder this way.
    #[cfg(test)]
    pub fn fill(&mut self) {
        while self.step() == Step::Fed {}
    }

    /// Runs on its own thread until `stop` is set.
    pub fn spawn(mut self) -> Option<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("stemdeck-feeder".into())
            .spawn(move || {
                while !self.shared.stop.load(Ordering::Relaxed) {
                    if self.step() == Step::Idle {
                        std::thread::sleep(Duration::from_millis(3));
                    }
                }
            })
            .map_err(|e| tracing::warn!("cannot start the playback reader: {e}"))
            .ok()
    }
}

/// The frames the renderer plays next from `cursor`, as `[from, end)`: on to the loop end
/// (then from the loop start) while inside or before the loop, else on to the end of the
/// song. `None` at the end of the song.
pub(crate) fn next_range(
    cursor: u64,
    region: Option<(u64, u64)>,
    frames: u64,
) -> Option<(u64, u64)> {
    match region {
        Some((start, end)) if cursor <= end => {
            let end = end.min(frames);
            if cursor >= end {
                (start < end).then_some((start, end))
            } else {
                Some((cursor, end))
            }
        }
        _ => (cursor < frames).then_some((cursor, frames)),
    }
}
