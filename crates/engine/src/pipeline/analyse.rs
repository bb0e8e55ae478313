//! A finished job's stems, measured: tempo and beats, key, and loudness. The written
//! files are read back a block at a time, all stems in step, so a song of any length is
//! analysed in the same small memory.

use stemdeck_analysis::{Analysis, SongAnalyzer};
use stemdeck_audio::MODEL_SAMPLE_RATE;

use crate::error::{EngineError, Result};
use crate::events::{JobEvent, JobListener};
use crate::pipeline::StemFile;

/// Measures `stems`; cancellable between blocks.
pub fn analyse_stems(stems: &[StemFile], listener: &dyn JobListener) -> Result<Analysis> {
    listener.on_event(JobEvent::Analysing);
    let mut streams = stems
        .iter()
        .map(|s| stemdeck_audio::open_for_model(&s.path, MODEL_SAMPLE_RATE))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let names: Vec<String> = stems.iter().map(|s| s.name.clone()).collect();
    let mut analyzer = SongAnalyzer::new(&names, 2, MODEL_SAMPLE_RATE);
    // Blocks arrive in each decoder's own sizes; what one stem is ahead waits here.
    let mut pending: Vec<Vec<Vec<f32>>> = vec![vec![Vec::new(), Vec::new()]; streams.len()];
    let mut ended = vec![false; streams.len()];
    loop {
        if listener.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        for (s, stream) in streams.iter_mut().enumerate() {
            while !ended[s] && pending[s][0].len() < BLOCK {
                match stream.next_block()? {
                    Some(block) => {
                        for (c, channel) in pending[s].iter_mut().enumerate() {
                            channel.extend_from_slice(&block[c.min(block.len() - 1)]);
                        }
                    }
                    None => ended[s] = true,
                }
            }
        }
        let common = pending.iter().map(|p| p[0].len()).min().unwrap_or(0);
        let take = if ended.iter().all(|e| *e) {
            common
        } else {
            common.min(BLOCK)
        };
        if take == 0 {
            break;
        }
        let block: Vec<Vec<Vec<f32>>> = pending
            .iter_mut()
            .map(|p| p.iter_mut().map(|c| c.drain(..take).collect()).collect())
            .collect();
        analyzer.push(&block);
        if ended.iter().all(|e| *e) && pending.iter().all(|p| p[0].is_empty()) {
            break;
        }
    }
    Ok(analyzer.finish())
}

/// Frames analysed at a time.
const BLOCK: usize = 65_536;

/// The stems analysed while they are separated: a thread of its own takes each finished
/// stretch as the separation hands it on, so the measurement overlaps the model's work
/// instead of reading the written files back after it.
pub struct AnalysisAlongside {
    blocks: Option<std::sync::mpsc::SyncSender<Vec<Vec<Vec<f32>>>>>,
    thread: Option<std::thread::JoinHandle<Analysis>>,
}

impl AnalysisAlongside {
    /// Starts the analysing thread for stems named `names`; `None` if no thread can be
    /// started (the files are then analysed after they are written).
    pub fn start(names: &[String], channels: usize, sample_rate: u32) -> Option<Self> {
        // Two stretches in flight: the separation never waits unless the analysis falls
        // a whole segment behind, and memory holds at most two segments' worth.
        let (blocks, arriving) = std::sync::mpsc::sync_channel::<Vec<Vec<Vec<f32>>>>(2);
        let mut analyzer = SongAnalyzer::new(names, channels, sample_rate);
        let thread = std::thread::Builder::new()
            .name("stemdeck-analysis".into())
            .spawn(move || {
                let mut pending: Vec<Vec<Vec<f32>>> = Vec::new();
                for stretch in arriving {
                    push_in_blocks(&mut analyzer, &mut pending, stretch, false);
                }
                push_in_blocks(&mut analyzer, &mut pending, Vec::new(), true);
                analyzer.finish()
            })
            .map_err(|e| tracing::warn!("cannot analyse alongside the separation: {e}"))
            .ok()?;
        Some(Self {
            blocks: Some(blocks),
            thread: Some(thread),
        })
    }

    /// The next stretch of every stem (`stems[stem][channel][frame]`), in order.
    pub fn push(&self, stems: &[Vec<Vec<f32>>]) {
        if let Some(blocks) = &self.blocks {
            // A thread that is gone has panicked; `finish` reports that.
            let _ = blocks.send(stems.to_vec());
        }
    }

    /// The analysis of everything pushed; `None` if the thread failed.
    pub fn finish(mut self) -> Option<Analysis> {
        self.blocks.take();
        let thread = self.thread.take()?;
        thread
            .join()
            .map_err(|_| tracing::warn!("the analysis alongside the separation failed"))
            .ok()
    }
}

impl Drop for AnalysisAlongside {
    fn drop(&mut self) {
        // A job that fails or is cancelled still ends its thread before it returns.
        self.blocks.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Feeds `analyzer` whole blocks of [`BLOCK`] frames, as [`analyse_stems`] reads the files,
/// so that both see the same blocks: `stretch` joins what is `pending`, and what does not
/// fill a block waits for the next stretch, or goes as it is at the `end`.
fn push_in_blocks(
    analyzer: &mut SongAnalyzer,
    pending: &mut Vec<Vec<Vec<f32>>>,
    stretch: Vec<Vec<Vec<f32>>>,
    end: bool,
) {
    if pending.is_empty() {
        *pending = stretch;
    } else {
        for (held, more) in pending.iter_mut().zip(stretch) {
            for (channel, values) in held.iter_mut().zip(more) {
                channel.extend_from_slice(&values);
            }
        }
    }
    let frames = |p: &Vec<Vec<Vec<f32>>>| p.first().and_then(|s| s.first()).map_or(0, Vec::len);
    while frames(pending) >= BLOCK || (end && frames(pending) > 0) {
        let take = frames(pending).min(BLOCK);
        let block: Vec<Vec<Vec<f32>>> = pending
            .iter_mut()
            .map(|stem| stem.iter_mut().map(|c| c.drain(..take).collect()).collect())
            .collect();
        analyzer.push(&block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kick every half second over a sustained A minor chord: enough for a tempo and a key.
    fn song(frames: usize) -> Vec<Vec<Vec<f32>>> {
        let rate = MODEL_SAMPLE_RATE as f32;
        let kick = |i: usize| {
            let t = (i % (MODEL_SAMPLE_RATE as usize / 2)) as f32 / rate;
            (-t * 40.0).exp() * (t * 60.0 * std::f32::consts::TAU).sin()
        };
        let chord = |i: usize| {
            let t = i as f32 / rate;
            [220.0f32, 261.63, 329.63]
                .iter()
                .map(|f| 0.1 * (t * f * std::f32::consts::TAU).sin())
                .sum::<f32>()
        };
        let drums: Vec<f32> = (0..frames).map(kick).collect();
        let other: Vec<f32> = (0..frames).map(chord).collect();
        vec![vec![drums.clone(), drums], vec![other.clone(), other]]
    }

    /// Frames `start..end` of every stem.
    fn stretch(stems: &[Vec<Vec<f32>>], start: usize, end: usize) -> Vec<Vec<Vec<f32>>> {
        stems
            .iter()
            .map(|s| s.iter().map(|c| c[start..end].to_vec()).collect())
            .collect()
    }

    #[test]
    fn analysing_alongside_in_odd_stretches_measures_what_the_files_would() {
        let names = vec!["drums".to_string(), "other".to_string()];
        let frames = MODEL_SAMPLE_RATE as usize * 12 + 777;
        let stems = song(frames);
        let mut whole = SongAnalyzer::new(&names, 2, MODEL_SAMPLE_RATE);
        for start in (0..frames).step_by(BLOCK) {
            whole.push(&stretch(&stems, start, (start + BLOCK).min(frames)));
        }
        let expected = whole.finish();
        assert!(expected.tempo.is_some(), "the test song has a tempo");

        let alongside = AnalysisAlongside::start(&names, 2, MODEL_SAMPLE_RATE).unwrap();
        // Stretches the size of a separation's segments and smaller, none a whole block.
        let mut start = 0;
        for len in [100_003, 1, 258_111, 31_999].into_iter().cycle() {
            if start >= frames {
                break;
            }
            let end = (start + len).min(frames);
            alongside.push(&stretch(&stems, start, end));
            start = end;
        }
        assert_eq!(alongside.finish(), Some(expected));
    }
}
