//! The two ends of a streaming apply: the mix it reads a window at a time, and the sink
//! that takes finished audio.

use super::Planar;
use crate::error::{DemucsError, Result};

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

pub(super) fn check_read_buffer(channels: usize, len: usize, out: &[f32]) -> Result<()> {
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
pub(super) fn zero_pad_copy(channel: &[f32], start: isize, out: &mut [f32]) {
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
    pub(super) stems: Vec<Planar>,
    pub(super) frames: usize,
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
