//! Where the mixer's audio comes from: stems that may still be growing (a separation in
//! progress writes them chunk by chunk) and are read a block at a time, so that playing
//! an hour-long song holds no more of it in memory than a fraction of a second.

use std::io;

/// Stereo stems of one song, all at the mixer's sample rate and of the same length.
///
/// Implementations are read from the mixer's feeder thread, never from the audio
/// callback, so they may do file I/O.
pub trait StemSource: Send + Sync {
    /// How many stems there are.
    fn stems(&self) -> usize;
    /// The song's whole length in frames, known before all of it exists.
    fn frames(&self) -> u64;
    /// How many frames from the start can be read now: the separated edge while a
    /// separation runs, [`StemSource::frames`] once it is done.
    fn edge(&self) -> u64;
    /// Reads `len` frames from `start` (which, with `len`, lies below the edge) into
    /// `out`, planar: channel `c` of stem `s` at `out[(s * 2 + c) * len ..][..len]`.
    fn read(&self, start: u64, len: usize, out: &mut [f32]) -> io::Result<()>;
}

/// One stem's audio: stereo, planar, at the mixer's sample rate.
#[derive(Debug, Clone)]
pub struct StemAudio {
    pub name: String,
    pub left: Vec<f32>,
    pub right: Vec<f32>,
}

/// Stems held in memory: short clips and tests. Shorter stems read as if padded with
/// silence to the longest.
#[derive(Debug, Clone)]
pub struct MemoryStems {
    stems: Vec<StemAudio>,
    frames: u64,
}

impl MemoryStems {
    pub fn new(stems: Vec<StemAudio>) -> Self {
        let frames = stems
            .iter()
            .map(|s| s.left.len().max(s.right.len()))
            .max()
            .unwrap_or(0) as u64;
        Self { stems, frames }
    }
}

impl StemSource for MemoryStems {
    fn stems(&self) -> usize {
        self.stems.len()
    }

    fn frames(&self) -> u64 {
        self.frames
    }

    fn edge(&self) -> u64 {
        self.frames
    }

    fn read(&self, start: u64, len: usize, out: &mut [f32]) -> io::Result<()> {
        check_read(self, start, len, out)?;
        let start = start as usize;
        for (s, stem) in self.stems.iter().enumerate() {
            for (c, channel) in [&stem.left, &stem.right].into_iter().enumerate() {
                let dest = &mut out[(s * 2 + c) * len..][..len];
                for (i, v) in dest.iter_mut().enumerate() {
                    *v = channel.get(start + i).copied().unwrap_or(0.0);
                }
            }
        }
        Ok(())
    }
}

/// The checks every [`StemSource::read`] makes: the range lies below the edge and `out`
/// has room for exactly that many frames of every stem.
pub fn check_read(source: &dyn StemSource, start: u64, len: usize, out: &[f32]) -> io::Result<()> {
    if out.len() != source.stems() * 2 * len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a read of {len} frames of {} stems needs {} values, got {}",
                source.stems(),
                source.stems() * 2 * len,
                out.len()
            ),
        ));
    }
    if start + len as u64 > source.edge() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "frames {start}..{} are not there yet (only {} are)",
                start + len as u64,
                source.edge()
            ),
        ));
    }
    Ok(())
}
