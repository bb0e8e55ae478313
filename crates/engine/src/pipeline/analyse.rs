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
