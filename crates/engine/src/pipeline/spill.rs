//! Temporary files of raw `f32` frames, so that a job holds a track of any length in
//! bounded memory: the decoded mix, which the separator reads back a window at a time, and
//! each output before its level is finished (which needs the whole output's peak).
//!
//! They live in a hidden folder inside the job's output folder, on the disk the stems go
//! to (not in the system temp folder, which may be memory), and go when the job ends,
//! however it ends.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use stemdeck_audio::fold_peak;
use stemdeck_demucs::{DemucsError, MixReader};

use crate::error::{EngineError, Result};

const SAMPLE_BYTES: usize = std::mem::size_of::<f32>();

/// The folder a job spills into; removed, with everything in it, when dropped.
pub struct SpillDir {
    dir: tempfile::TempDir,
}

impl SpillDir {
    /// A new hidden folder inside `parent`, which is created if needed.
    pub fn new(parent: &Path) -> Result<Self> {
        let fail = |e| EngineError::io(parent, "cannot make a folder for temporary files")(e);
        std::fs::create_dir_all(parent).map_err(fail)?;
        let dir = tempfile::Builder::new()
            .prefix(&super::leftovers::spill_prefix())
            .suffix(".partial")
            .tempdir_in(parent)
            .map_err(fail)?;
        Ok(Self { dir })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new spill file of `channels` channels.
    pub fn create(&self, name: &str, channels: usize) -> Result<SpillWriter> {
        let path = self.dir.path().join(format!("{name}.f32"));
        let file = File::create(&path).map_err(|e| spill_error(&path, e))?;
        Ok(SpillWriter {
            file: BufWriter::with_capacity(1 << 18, file),
            path,
            channels,
            frames: 0,
            peak: 0.0,
            bytes: Vec::new(),
        })
    }
}

fn spill_error(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::io(path, "cannot use a temporary file")(e)
}

/// A spill file being written: interleaved frames, appended block by block, with the
/// largest absolute sample so far.
pub struct SpillWriter {
    file: BufWriter<File>,
    path: PathBuf,
    channels: usize,
    frames: u64,
    peak: f32,
    bytes: Vec<u8>,
}

impl SpillWriter {
    /// Appends `block` (planar, `channels` equally long channels).
    pub fn write(&mut self, block: &[Vec<f32>]) -> Result<()> {
        let frames = block.first().map_or(0, Vec::len);
        if block.len() != self.channels || block.iter().any(|c| c.len() != frames) {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a block needs {} equally long channels", self.channels),
            );
            return Err(spill_error(&self.path, e));
        }
        for channel in block {
            self.peak = fold_peak(self.peak, channel);
        }
        self.bytes.clear();
        self.bytes.reserve(frames * self.channels * SAMPLE_BYTES);
        for i in 0..frames {
            for channel in block {
                self.bytes.extend_from_slice(&channel[i].to_le_bytes());
            }
        }
        self.file
            .write_all(&self.bytes)
            .map_err(|e| spill_error(&self.path, e))?;
        self.frames += frames as u64;
        Ok(())
    }

    /// Completes the file and opens it for reading.
    pub fn finish(self) -> Result<SpillFile> {
        let Self {
            file,
            path,
            channels,
            frames,
            peak,
            ..
        } = self;
        let mut file = file
            .into_inner()
            .map_err(|e| spill_error(&path, e.into_error()))?;
        file.flush().map_err(|e| spill_error(&path, e))?;
        drop(file);
        let file = File::open(&path).map_err(|e| spill_error(&path, e))?;
        Ok(SpillFile {
            file: Mutex::new(file),
            path,
            channels,
            frames,
            peak,
        })
    }
}

/// A finished spill file, read back in blocks or, by the separator, in windows.
pub struct SpillFile {
    file: Mutex<File>,
    path: PathBuf,
    channels: usize,
    frames: u64,
    peak: f32,
}

impl SpillFile {
    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The largest absolute sample in the file.
    pub fn peak(&self) -> f32 {
        self.peak
    }

    /// The frames `[start, start + len)`, planar; they must lie in the file.
    pub fn read_block(&self, start: u64, len: usize) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![0f32; self.channels * len];
        self.read_into(start, len, len, 0, &mut out)?;
        Ok(out
            .chunks_exact(len.max(1))
            .take(self.channels)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Reads the frames `[start, start + len)` into `out`, channel `c` of frame `i` at
    /// `out[c * stride + offset + i]`.
    fn read_into(
        &self,
        start: u64,
        len: usize,
        stride: usize,
        offset: usize,
        out: &mut [f32],
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; len * self.channels * SAMPLE_BYTES];
        {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.seek(SeekFrom::Start(
                start * (self.channels * SAMPLE_BYTES) as u64,
            ))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| spill_error(&self.path, e))?;
        }
        for (i, frame) in bytes.chunks_exact(self.channels * SAMPLE_BYTES).enumerate() {
            for (c, sample) in frame.chunks_exact(SAMPLE_BYTES).enumerate() {
                out[c * stride + offset + i] =
                    f32::from_le_bytes(sample.try_into().expect("four bytes"));
            }
        }
        Ok(())
    }

    /// Deletes the file now, to give its disk space back before the job ends.
    pub fn discard(self) {
        let Self { file, path, .. } = self;
        drop(file);
        let _ = std::fs::remove_file(path);
    }
}

impl MixReader for SpillFile {
    fn channels(&self) -> usize {
        self.channels
    }

    fn len(&self) -> usize {
        self.frames as usize
    }

    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> stemdeck_demucs::Result<()> {
        if out.len() != self.channels * len {
            return Err(DemucsError::InvalidSetting(format!(
                "a read of {len} frames of {} channels needs {} values, got {}",
                self.channels,
                self.channels * len,
                out.len()
            )));
        }
        out.fill(0.0);
        let from = start.max(0);
        let to = (start + len as isize).min(self.frames as isize);
        if from < to {
            self.read_into(
                from as u64,
                (to - from) as usize,
                len,
                (from - start) as usize,
                out,
            )
            .map_err(|e| DemucsError::External(Box::new(e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_reads_back_as_written_with_silence_around_it() {
        let parent = tempfile::tempdir().unwrap();
        let spill = SpillDir::new(&parent.path().join("out")).unwrap();
        let mut writer = spill.create("mix", 2).unwrap();
        let left: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let right: Vec<f32> = (0..1000).map(|i| -(i as f32) / 2000.0).collect();
        writer
            .write(&[left[..300].to_vec(), right[..300].to_vec()])
            .unwrap();
        writer
            .write(&[left[300..].to_vec(), right[300..].to_vec()])
            .unwrap();
        let file = writer.finish().unwrap();
        assert_eq!((file.frames(), file.peak()), (1000, 999.0));
        assert_eq!(
            file.read_block(10, 3).unwrap(),
            vec![vec![10.0, 11.0, 12.0], vec![-0.005, -0.0055, -0.006]]
        );
        let mut window = vec![1f32; 2 * 6];
        file.read(-2, 6, &mut window).unwrap();
        assert_eq!(&window[..6], &[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        file.read(997, 6, &mut window).unwrap();
        assert_eq!(&window[..6], &[997.0, 998.0, 999.0, 0.0, 0.0, 0.0]);
        assert_eq!(window[6 + 2], -999.0 / 2000.0);
        let dir = spill.path().to_owned();
        assert!(dir.exists());
        drop(file);
        drop(spill);
        assert!(!dir.exists(), "the spill folder goes with its owner");
        assert!(parent.path().join("out").exists());
    }
}
