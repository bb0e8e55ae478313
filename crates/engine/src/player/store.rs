//! The player's audio on disk: each stem as raw stereo `f32` frames in a temporary file,
//! appended a chunk at a time (by a running separation, or by decoding the finished
//! files) and read back by the mixer's feeder a block at a time. Memory holds only the
//! waveform overview, whatever the song's length; the folder goes when the last user of
//! the store does.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use stemdeck_audio::PeakBuilder;
use stemdeck_playback::{StemSource, check_read};

use crate::error::{EngineError, Result};

const FRAME_BYTES: usize = 2 * std::mem::size_of::<f32>();

/// Waveform buckets per stem: enough for a full-width row on a large screen.
pub const PEAK_BUCKETS: usize = 1600;

/// A song's stems as the player reads them, possibly still growing.
pub struct StemStore {
    dir: tempfile::TempDir,
    names: Vec<String>,
    sample_rate: u32,
    frames: u64,
    /// Frames written to every stem so far.
    edge: AtomicU64,
    files: Vec<Mutex<File>>,
    peaks: Mutex<Vec<PeakBuilder>>,
    /// Bumped on every append, so that a UI redraws the overviews only when they grew.
    version: AtomicU64,
}

impl StemStore {
    /// An empty store for `names` stems of `frames` frames at `sample_rate`, in a hidden
    /// folder inside `parent`.
    pub fn create(
        parent: &Path,
        names: Vec<String>,
        sample_rate: u32,
        frames: u64,
    ) -> Result<Self> {
        let fail = |e| EngineError::io(parent, "cannot make a folder for the player's audio")(e);
        std::fs::create_dir_all(parent).map_err(fail)?;
        let dir = tempfile::Builder::new()
            .prefix(&crate::pipeline::leftovers::player_prefix())
            .suffix(".partial")
            .tempdir_in(parent)
            .map_err(fail)?;
        let files = (0..names.len())
            .map(|i| {
                let path = dir.path().join(format!("stem{i}.f32"));
                File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map(Mutex::new)
                    .map_err(|e| EngineError::io(&path, "cannot use a temporary file")(e))
            })
            .collect::<Result<_>>()?;
        let peaks = names
            .iter()
            .map(|_| PeakBuilder::new(frames, PEAK_BUCKETS))
            .collect();
        Ok(Self {
            dir,
            names,
            sample_rate,
            frames,
            edge: AtomicU64::new(0),
            files,
            peaks: Mutex::new(peaks),
            version: AtomicU64::new(0),
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn is_complete(&self) -> bool {
        self.edge.load(Ordering::Acquire) >= self.frames
    }

    /// Appends the next stretch of every stem (`stems[stem][channel][frame]`, one or two
    /// channels, all of one length). Frames beyond the song's length are dropped.
    pub fn append(&self, stems: &[Vec<Vec<f32>>]) -> Result<()> {
        let start = self.edge.load(Ordering::Acquire);
        let len = stems
            .iter()
            .flat_map(|s| s.iter().map(Vec::len))
            .min()
            .unwrap_or(0)
            .min((self.frames - start) as usize);
        if stems.len() != self.names.len() || stems.iter().any(|s| s.is_empty()) {
            return Err(EngineError::io(
                self.dir.path(),
                "cannot store the audio to play",
            )(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a chunk must hold every stem",
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(len * FRAME_BYTES);
        for (stem, file) in stems.iter().zip(&self.files) {
            let (left, right) = (&stem[0], stem.get(1).unwrap_or(&stem[0]));
            bytes.clear();
            for i in 0..len {
                bytes.extend_from_slice(&left[i].to_le_bytes());
                bytes.extend_from_slice(&right[i].to_le_bytes());
            }
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.seek(SeekFrom::Start(start * FRAME_BYTES as u64))
                .and_then(|_| file.write_all(&bytes))
                .map_err(|e| {
                    EngineError::io(self.dir.path(), "cannot store the audio to play")(e)
                })?;
        }
        {
            let mut peaks = self.peaks.lock().unwrap_or_else(|e| e.into_inner());
            for (builder, stem) in peaks.iter_mut().zip(stems) {
                let trimmed: Vec<Vec<f32>> = stem.iter().map(|c| c[..len].to_vec()).collect();
                builder.add(start, &trimmed);
            }
        }
        self.edge.store(start + len as u64, Ordering::Release);
        self.version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Fills the rest of the song with silence: a decoder that came up short of the length
    /// its file announced still ends exactly at the song's end.
    pub fn pad_to_end(&self) -> Result<()> {
        while !self.is_complete() {
            let left = (self.frames - self.edge.load(Ordering::Acquire)).min(1 << 16) as usize;
            let silence = vec![vec![vec![0f32; left]; 2]; self.names.len()];
            self.append(&silence)?;
        }
        Ok(())
    }

    /// Each stem's `[min, max]` per bucket, as far as the audio exists.
    pub fn peaks(&self) -> Vec<Vec<[f32; 2]>> {
        self.peaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|b| b.peaks().iter().map(|&(lo, hi)| [lo, hi]).collect())
            .collect()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl StemSource for StemStore {
    fn stems(&self) -> usize {
        self.names.len()
    }

    fn frames(&self) -> u64 {
        self.frames
    }

    fn edge(&self) -> u64 {
        self.edge.load(Ordering::Acquire)
    }

    fn read(&self, start: u64, len: usize, out: &mut [f32]) -> io::Result<()> {
        check_read(self, start, len, out)?;
        let mut bytes = vec![0u8; len * FRAME_BYTES];
        for (s, file) in self.files.iter().enumerate() {
            {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                file.seek(SeekFrom::Start(start * FRAME_BYTES as u64))?;
                file.read_exact(&mut bytes)?;
            }
            let (left, right) = out[s * 2 * len..][..2 * len].split_at_mut(len);
            for (i, frame) in bytes.chunks_exact(FRAME_BYTES).enumerate() {
                left[i] = f32::from_le_bytes(frame[..4].try_into().expect("four bytes"));
                right[i] = f32::from_le_bytes(frame[4..].try_into().expect("four bytes"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use stemdeck_playback::{MemoryStems, StemAudio};

    use super::*;

    fn stem(frames: usize, seed: usize) -> StemAudio {
        StemAudio {
            name: format!("stem{seed}"),
            left: (0..frames)
                .map(|i| ((i * (seed + 3)) % 97) as f32 / 97.0 - 0.5)
                .collect(),
            right: (0..frames)
                .map(|i| ((i * (seed + 7)) % 89) as f32 / 89.0 - 0.5)
                .collect(),
        }
    }

    #[test]
    fn a_store_filled_in_chunks_reads_back_like_the_stems_in_memory() {
        let parent = tempfile::tempdir().unwrap();
        let frames = 50_000;
        let audio: Vec<StemAudio> = (0..3).map(|s| stem(frames, s)).collect();
        let names = audio.iter().map(|s| s.name.clone()).collect();
        let store =
            Arc::new(StemStore::create(parent.path(), names, 44100, frames as u64).unwrap());
        let mut start = 0;
        for len in [3000, 1, 17_000, 40_000] {
            let end = (start + len).min(frames);
            let chunk: Vec<Vec<Vec<f32>>> = audio
                .iter()
                .map(|s| vec![s.left[start..end].to_vec(), s.right[start..end].to_vec()])
                .collect();
            store.append(&chunk).unwrap();
            start = end;
            assert_eq!(store.edge(), end as u64);
        }
        assert!(store.is_complete());
        let memory = MemoryStems::new(audio.clone());
        for (from, len) in [(0, 4096), (2999, 2), (12_345, 4096), (frames - 10, 10)] {
            let mut ours = vec![0f32; 3 * 2 * len];
            let mut theirs = vec![0f32; 3 * 2 * len];
            store.read(from as u64, len, &mut ours).unwrap();
            memory.read(from as u64, len, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "frames {from}..{}", from + len);
        }
        let whole = stemdeck_audio::AudioBuffer::new(
            44100,
            vec![audio[1].left.clone(), audio[1].right.clone()],
        );
        let expected: Vec<[f32; 2]> = stemdeck_audio::waveform_peaks(&whole, PEAK_BUCKETS)
            .into_iter()
            .map(|(lo, hi)| [lo, hi])
            .collect();
        assert_eq!(
            store.peaks()[1],
            expected,
            "the overview comes from the same pass"
        );
        let dir = store.dir.path().to_owned();
        drop(store);
        assert!(!dir.exists(), "the store's files go with it");
    }

    #[test]
    fn reading_past_the_edge_is_refused_and_padding_ends_at_the_song_end() {
        let parent = tempfile::tempdir().unwrap();
        let store = StemStore::create(parent.path(), vec!["a".into()], 44100, 1000).unwrap();
        store.append(&[vec![vec![0.5; 300]]]).unwrap();
        let mut out = vec![0f32; 2 * 400];
        assert!(store.read(0, 400, &mut out).is_err());
        store.read(0, 300, &mut out[..600]).unwrap();
        assert!(
            out[..600].iter().all(|v| *v == 0.5),
            "mono is played on both sides"
        );
        store.pad_to_end().unwrap();
        assert_eq!(store.edge(), 1000);
        store.append(&[vec![vec![1.0; 10]]]).unwrap();
        assert_eq!(store.edge(), 1000, "nothing past the song's end");
    }
}
