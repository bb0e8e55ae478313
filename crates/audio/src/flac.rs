//! FLAC through flac-codec (pure Rust), with Vorbis comments for the tags.

use std::io::BufWriter;
use std::path::Path;

use flac_codec::encode::{FlacChannelWriter, Options};

use crate::buffer::AudioBuffer;
use crate::encode::{to_int, write_atomically};
use crate::error::Result;
use crate::format::{FlacDepth, Tags};

/// Frames handed to the encoder at a time, to bound the integer copy.
const CHUNK_FRAMES: usize = 1 << 16;

/// Writes `audio` as a FLAC file at `path`, atomically.
pub fn write_flac(path: &Path, audio: &AudioBuffer, depth: FlacDepth, tags: &Tags) -> Result<()> {
    write_atomically(path, |file| {
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
        let channels = u8::try_from(audio.num_channels())
            .ok()
            .filter(|c| (1..=8).contains(c))
            .ok_or_else(|| format!("FLAC holds 1 to 8 channels, not {}", audio.num_channels()))?;
        let mut writer = FlacChannelWriter::new(
            BufWriter::new(file),
            options,
            audio.sample_rate,
            depth.bits(),
            channels,
            Some(audio.frames() as u64),
        )
        .map_err(|e| e.to_string())?;
        let mut start = 0;
        while start < audio.frames() {
            let end = (start + CHUNK_FRAMES).min(audio.frames());
            let chunk: Vec<Vec<i32>> = audio
                .channels
                .iter()
                .map(|c| {
                    c[start..end]
                        .iter()
                        .map(|&v| to_int(v, depth.bits()))
                        .collect()
                })
                .collect();
            writer.write(&chunk).map_err(|e| e.to_string())?;
            start = end;
        }
        writer.finalize().map_err(|e| e.to_string())
    })
}
