//! The file formats stems and mixes are written in, and the tags that say what each file is.

use std::path::Path;

use crate::buffer::AudioBuffer;
use crate::encode::PartialFile;
use crate::error::{AudioError, Result};
use crate::{flac, mp3, wav};

/// WAV sample format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WavFormat {
    #[default]
    Int16,
    Int24,
    Float32,
}

/// FLAC stores whole-number samples only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlacDepth {
    #[default]
    Bits16,
    Bits24,
}

impl FlacDepth {
    pub fn bits(self) -> u32 {
        match self {
            FlacDepth::Bits16 => 16,
            FlacDepth::Bits24 => 24,
        }
    }
}

/// The constant bitrates Stemdeck offers for MP3, lowest first.
pub const MP3_BITRATES_KBPS: [u32; 6] = [128, 160, 192, 224, 256, 320];
pub const DEFAULT_MP3_KBPS: u32 = 320;

/// How a file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Wav(WavFormat),
    Flac(FlacDepth),
    /// Constant bitrate, one of [`MP3_BITRATES_KBPS`].
    Mp3 {
        kbps: u32,
    },
}

impl Default for OutputFormat {
    fn default() -> Self {
        OutputFormat::Wav(WavFormat::Int16)
    }
}

impl OutputFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Wav(_) => "wav",
            OutputFormat::Flac(_) => "flac",
            OutputFormat::Mp3 { .. } => "mp3",
        }
    }

    /// Refuses settings no encoder can honour, before any work is done.
    pub fn validate(&self) -> Result<()> {
        match self {
            OutputFormat::Mp3 { kbps } if !MP3_BITRATES_KBPS.contains(kbps) => {
                Err(AudioError::Unsupported(format!(
                    "MP3 bitrate {kbps} kbps is not offered; choose 128, 160, 192, 224, 256 or 320"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// What a file holds, written as tags where the format has them (RIFF INFO in WAV, Vorbis
/// comments in FLAC, ID3v2.4 in MP3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    /// The song's title.
    pub title: Option<String>,
    /// The stem (`vocals`), or the mix (`drums+bass`).
    pub stem: Option<String>,
    /// Where the song came from: a file path or a link.
    pub source: Option<String>,
}

impl Tags {
    /// The track title players show: `Song (vocals)`, so that a folder of stems reads well
    /// in any library.
    pub fn track_title(&self) -> Option<String> {
        match (&self.title, &self.stem) {
            (Some(title), Some(stem)) => Some(format!("{title} ({stem})")),
            (Some(title), None) => Some(title.clone()),
            (None, Some(stem)) => Some(stem.clone()),
            (None, None) => None,
        }
    }
}

/// Writes `audio` at `path` in `format` with `tags`, atomically: the file appears under its
/// name only when complete.
pub fn write_audio(
    path: &Path,
    audio: &AudioBuffer,
    format: OutputFormat,
    tags: &Tags,
) -> Result<()> {
    format.validate()?;
    match format {
        OutputFormat::Wav(sample) => wav::write_wav(path, audio, sample, tags),
        OutputFormat::Flac(depth) => flac::write_flac(path, audio, depth, tags),
        OutputFormat::Mp3 { kbps } => mp3::write_mp3(path, audio, kbps, tags),
    }
}

/// A file written block by block, for audio too long to hold: under a temporary name beside
/// its target until [`AudioWriter::finish`] renames it into place. Dropped unfinished, it
/// removes its temporary file and leaves the target as it was. The bytes are those
/// [`write_audio`] writes for the same audio, tags included.
pub struct AudioWriter {
    // Declared first, so dropped first: the encoder lets go of the file before it goes.
    encoder: Encoder,
    partial: PartialFile,
    channels: usize,
    frames: u64,
}

enum Encoder {
    Wav(wav::WavStream),
    Flac(Box<flac::FlacStream>),
    Mp3(mp3::Mp3Stream),
}

impl AudioWriter {
    /// Starts writing `path`. `total_frames`, when known, lets FLAC state the length (and a
    /// seek table) in its header as [`write_audio`] does; the writer must then get exactly
    /// that many frames.
    pub fn create(
        path: &Path,
        format: OutputFormat,
        sample_rate: u32,
        channels: usize,
        tags: &Tags,
        total_frames: Option<u64>,
    ) -> Result<Self> {
        format.validate()?;
        if let OutputFormat::Mp3 { kbps } = format {
            mp3::Mp3Stream::check(kbps, channels)?;
        }
        let partial = PartialFile::create(path)?;
        let encoder = match format {
            OutputFormat::Wav(sample) => Encoder::Wav(wav::WavStream::new(
                &partial,
                sample,
                channels,
                sample_rate,
                tags,
            )?),
            OutputFormat::Flac(depth) => Encoder::Flac(Box::new(flac::FlacStream::new(
                &partial,
                depth,
                channels,
                sample_rate,
                tags,
                total_frames,
            )?)),
            OutputFormat::Mp3 { kbps } => Encoder::Mp3(mp3::Mp3Stream::new(
                &partial,
                kbps,
                channels,
                sample_rate,
                tags,
            )?),
        };
        Ok(Self {
            encoder,
            partial,
            channels,
            frames: 0,
        })
    }

    /// The file's final name.
    pub fn path(&self) -> &Path {
        self.partial.path()
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Appends `block`: planar, one `Vec` per channel, all the same length.
    pub fn write(&mut self, block: &[Vec<f32>]) -> Result<()> {
        let frames = block.first().map_or(0, Vec::len);
        if block.len() != self.channels || block.iter().any(|c| c.len() != frames) {
            return Err(self.partial.error(format!(
                "a block needs {} equally long channels",
                self.channels
            )));
        }
        match &mut self.encoder {
            Encoder::Wav(w) => w.write(block)?,
            Encoder::Flac(w) => w.write(block)?,
            Encoder::Mp3(w) => w.write(block)?,
        }
        self.frames += frames as u64;
        Ok(())
    }

    /// Completes the file and renames it into place.
    pub fn finish(self) -> Result<()> {
        let Self {
            encoder, partial, ..
        } = self;
        match encoder {
            Encoder::Wav(w) => w.finish()?,
            Encoder::Flac(w) => w.finish()?,
            Encoder::Mp3(w) => w.finish()?,
        }
        partial.commit()
    }
}
