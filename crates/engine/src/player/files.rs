//! A finished job's stem files, decoded into a [`StemStore`] on a background thread, all
//! stems in step, so that playback starts at once and the overview draws as it goes.

use std::path::Path;
use std::sync::{Arc, Weak};

use stemdeck_audio::ModelStream;

use crate::error::Result;
use crate::pipeline::StemFile;

use super::store::StemStore;

/// Frames decoded ahead for each stem before the common stretch is stored.
const STEP_FRAMES: usize = 1 << 16;

/// Opens every stem file now (so that a missing or unreadable one fails here), then
/// decodes them into a new store inside `parent` at `rate`. The song is `frames` long when
/// given (the length of the separation that wrote the files), else as the files announce.
/// The decoding stops early when the store is dropped.
pub fn load_stem_files(
    stems: &[StemFile],
    parent: &Path,
    rate: u32,
    frames: Option<u64>,
) -> Result<Arc<StemStore>> {
    let mut streams = stems
        .iter()
        .map(|s| stemdeck_audio::open_for_model(&s.path, rate))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let frames = match frames {
        Some(frames) => frames,
        None => match streams
            .iter()
            .map(ModelStream::announced_frames)
            .collect::<Option<Vec<_>>>()
        {
            Some(announced) => announced.into_iter().max().unwrap_or(0),
            None => count_frames(stems, rate)?,
        },
    };
    let names = stems.iter().map(|s| s.name.clone()).collect();
    let store = Arc::new(StemStore::create(parent, names, rate, frames)?);
    let weak = Arc::downgrade(&store);
    std::thread::Builder::new()
        .name("stemdeck-stem-decoder".into())
        .spawn(move || {
            if let Err(e) = decode_into(&mut streams, &weak) {
                tracing::warn!("playing silence for the rest of the song: {e}");
                if let Some(store) = weak.upgrade() {
                    let _ = store.pad_to_end();
                }
            }
        })
        .map_err(|e| crate::EngineError::io(parent, "cannot start reading the stems")(e))?;
    Ok(store)
}

/// Decodes every stream in step into the store until the song's end or the store's drop.
fn decode_into(streams: &mut [ModelStream], store: &Weak<StemStore>) -> Result<()> {
    let mut pending: Vec<Vec<Vec<f32>>> = streams
        .iter()
        .map(|_| vec![Vec::new(), Vec::new()])
        .collect();
    let mut finished = vec![false; streams.len()];
    loop {
        for ((stream, buffer), done) in streams.iter_mut().zip(&mut pending).zip(&mut finished) {
            while !*done && buffer[0].len() < STEP_FRAMES {
                match stream.next_block()? {
                    Some(block) => {
                        let right = block.get(1).unwrap_or(&block[0]).clone();
                        buffer[0].extend_from_slice(&block[0]);
                        buffer[1].extend_from_slice(&right);
                    }
                    None => *done = true,
                }
            }
        }
        let Some(store) = store.upgrade() else {
            return Ok(());
        };
        let all_done = finished.iter().all(|d| *d);
        // A stem that ended early is silent from there on.
        let ready = pending
            .iter()
            .zip(&finished)
            .filter(|(_, done)| !**done)
            .map(|(b, _)| b[0].len())
            .min()
            .unwrap_or_else(|| pending.iter().map(|b| b[0].len()).max().unwrap_or(0));
        if ready > 0 {
            let chunk: Vec<Vec<Vec<f32>>> = pending
                .iter_mut()
                .map(|buffer| {
                    buffer
                        .iter_mut()
                        .map(|c| {
                            c.resize(c.len().max(ready), 0.0);
                            c.drain(..ready).collect()
                        })
                        .collect()
                })
                .collect();
            store.append(&chunk)?;
        }
        if store.is_complete() || (all_done && pending.iter().all(|b| b[0].is_empty())) {
            return store.pad_to_end();
        }
    }
}

/// Frames in the longest stem, by decoding it: for files that do not announce a length.
fn count_frames(stems: &[StemFile], rate: u32) -> Result<u64> {
    let mut longest = 0;
    for stem in stems {
        let mut stream = stemdeck_audio::open_for_model(&stem.path, rate)?;
        let mut frames = 0;
        while let Some(block) = stream.next_block()? {
            frames += block[0].len() as u64;
        }
        longest = longest.max(frames);
    }
    Ok(longest)
}
