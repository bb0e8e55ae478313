//! FLAC through flac-codec (pure Rust), with Vorbis comments for the tags.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use flac_codec::encode::{FlacChannelWriter, Options};

use crate::buffer::AudioBuffer;
use crate::encode::{PartialFile, to_int};
use crate::error::{AudioError, Result};
use crate::format::{FlacDepth, Tags};

/// Frames handed to the encoder at a time, to bound the integer copy.
const CHUNK_FRAMES: usize = 1 << 16;

/// Writes `audio` as a FLAC file at `path`, atomically.
pub fn write_flac(path: &Path, audio: &AudioBuffer, depth: FlacDepth, tags: &Tags) -> Result<()> {
    let partial = PartialFile::create(path)?;
    let mut flac = FlacStream::new(
        &partial,
        depth,
        audio.num_channels(),
        audio.sample_rate,
        tags,
        Some(audio.frames() as u64),
    )?;
    flac.write(&audio.channels)?;
    flac.finish()?;
    partial.commit()
}

/// A FLAC file being written block by block into a [`PartialFile`].
pub(crate) struct FlacStream {
    writer: FlacChannelWriter<BufWriter<std::fs::File>>,
    bits: u32,
    path: PathBuf,
}

impl FlacStream {
    /// `total_frames`, when known, goes in the stream header up front (with a seek table),
    /// and the stream must then hold exactly that many frames.
    pub(crate) fn new(
        partial: &PartialFile,
        depth: FlacDepth,
        channels: usize,
        sample_rate: u32,
        tags: &Tags,
        total_frames: Option<u64>,
    ) -> Result<Self> {
        let mut options =
            Options::default().tag("ENCODER", format!("Stemdeck {}", env!("CARGO_PKG_VERSION")));
        if let Some(title) = tags.track_title() {
            options = options.tag("TITLE", title);
        }
        if let Some(song) = &tags.title {
            options = options.tag("ALBUM", song);
        }
        if let Some(stem) = &tags.stem {
            options = options.tag("STEM", stem);
        }
        if let Some(source) = &tags.source {
            options = options.tag("SOURCE", source);
        }
        let channels = u8::try_from(channels)
            .ok()
            .filter(|c| (1..=8).contains(c))
            .ok_or_else(|| partial.error(format!("FLAC holds 1 to 8 channels, not {channels}")))?;
        let file = partial.file().try_clone().map_err(|e| partial.error(e))?;
        let writer = FlacChannelWriter::new(
            BufWriter::new(file),
            options,
            sample_rate,
            depth.bits(),
            channels,
            total_frames,
        )
        .map_err(|e| partial.error(e))?;
        Ok(Self {
            writer,
            bits: depth.bits(),
            path: partial.path().to_owned(),
        })
    }

    /// Appends `block` (planar, one slice per channel).
    pub(crate) fn write(&mut self, block: &[Vec<f32>]) -> Result<()> {
        let frames = block.first().map_or(0, Vec::len);
        let mut start = 0;
        while start < frames {
            let end = (start + CHUNK_FRAMES).min(frames);
            let chunk: Vec<Vec<i32>> = block
                .iter()
                .map(|c| {
                    c[start..end]
                        .iter()
                        .map(|&v| to_int(v, self.bits))
                        .collect()
                })
                .collect();
            self.writer.write(&chunk).map_err(|e| self.error(e))?;
            start = end;
        }
        Ok(())
    }

    /// Writes the last frame and completes the stream header.
    pub(crate) fn finish(self) -> Result<()> {
        let path = self.path;
        self.writer.finalize().map_err(|e| AudioError::Write {
            path,
            source: e.into(),
        })
    }

    fn error(&self, e: impl Into<crate::error::WriteFailure>) -> AudioError {
        AudioError::Write {
            path: self.path.clone(),
            source: e.into(),
        }
    }
}
