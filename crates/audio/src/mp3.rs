//! MP3 through LAME (mp3lame-encoder), constant bitrate, with an ID3v2.4 tag for the tags
//! and LAME's Info frame first, whose encoder delay and padding let gapless decoders
//! (ffmpeg, symphonia, iTunes, foobar2000) return exactly the samples that were encoded.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use id3::TagLike;
use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushGap, MonoPcm, Quality};

use crate::buffer::AudioBuffer;
use crate::encode::PartialFile;
use crate::error::{AudioError, Result};
use crate::format::Tags;

/// Frames handed to LAME at a time.
const CHUNK_FRAMES: usize = 1 << 14;

/// Writes `audio` as a constant-bitrate MP3 at `path`, atomically.
pub fn write_mp3(path: &Path, audio: &AudioBuffer, kbps: u32, tags: &Tags) -> Result<()> {
    Mp3Stream::check(kbps, audio.num_channels())?;
    let partial = PartialFile::create(path)?;
    let mut mp3 = Mp3Stream::new(
        &partial,
        kbps,
        audio.num_channels(),
        audio.sample_rate,
        tags,
    )?;
    mp3.write(&audio.channels)?;
    mp3.finish()?;
    partial.commit()
}

/// An MP3 file being written block by block into a [`PartialFile`]: the ID3 tag, then
/// LAME's frames as they come. LAME's first frame is a placeholder for its Info frame,
/// which is filled in once the last sample is encoded.
pub(crate) struct Mp3Stream {
    encoder: mp3lame_encoder::Encoder,
    file: BufWriter<std::fs::File>,
    /// Where the MP3 frames start, after the tag.
    stream_start: u64,
    stream_len: u64,
    buffer: Vec<u8>,
    path: PathBuf,
}

impl Mp3Stream {
    /// Refuses a bitrate or channel count MP3 cannot have, before any file is made.
    pub(crate) fn check(kbps: u32, channels: usize) -> Result<Bitrate> {
        let bitrate = bitrate(kbps)?;
        if !(1..=2).contains(&channels) {
            return Err(AudioError::Unsupported(format!(
                "MP3 holds mono or stereo, not {channels} channels"
            )));
        }
        Ok(bitrate)
    }

    pub(crate) fn new(
        partial: &PartialFile,
        kbps: u32,
        channels: usize,
        sample_rate: u32,
        tags: &Tags,
    ) -> Result<Self> {
        let bitrate = Self::check(kbps, channels)?;
        let encoder = encoder(channels, sample_rate, bitrate)
            .map_err(|reason| partial.error(format!("MP3 encoder: {reason}")))?;
        let tag = id3_tag(tags).map_err(|reason| partial.error(reason))?;
        let file = partial.file().try_clone().map_err(|e| partial.error(e))?;
        let mut file = BufWriter::new(file);
        file.write_all(&tag).map_err(|e| partial.error(e))?;
        Ok(Self {
            encoder,
            file,
            stream_start: tag.len() as u64,
            stream_len: 0,
            buffer: Vec::new(),
            path: partial.path().to_owned(),
        })
    }

    /// Appends `block` (planar: one slice for mono, two for stereo).
    pub(crate) fn write(&mut self, block: &[Vec<f32>]) -> Result<()> {
        let frames = block.first().map_or(0, Vec::len);
        let mut start = 0;
        while start < frames {
            let end = (start + CHUNK_FRAMES).min(frames);
            self.buffer.clear();
            self.buffer
                .reserve(mp3lame_encoder::max_required_buffer_size(end - start));
            let result = match block {
                [mono] => self
                    .encoder
                    .encode_to_vec(MonoPcm(&mono[start..end]), &mut self.buffer),
                [left, right] => self.encoder.encode_to_vec(
                    DualPcm {
                        left: &left[start..end],
                        right: &right[start..end],
                    },
                    &mut self.buffer,
                ),
                _ => return Err(self.error("a block of another channel count")),
            };
            result.map_err(|e| self.error(format!("MP3 encoder: encoding ({e})")))?;
            self.emit()?;
            start = end;
        }
        Ok(())
    }

    /// Flushes LAME and writes its Info frame over the placeholder.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.buffer.clear();
        self.buffer
            .reserve(mp3lame_encoder::max_required_buffer_size(0).max(7200));
        self.encoder
            .flush_to_vec::<FlushGap>(&mut self.buffer)
            .map_err(|e| self.error(format!("MP3 encoder: flushing ({e})")))?;
        self.emit()?;
        let mut info = Vec::with_capacity(self.encoder.lame_tag_size());
        let written = self
            .encoder
            .lame_tag_encode_to_vec(&mut info)
            .ok_or_else(|| self.error("MP3 encoder: LAME gave no Info frame"))?
            .get();
        if written as u64 > self.stream_len {
            return Err(self.error("MP3 encoder: LAME's Info frame is longer than the stream"));
        }
        let start = self.stream_start;
        let io = |e: std::io::Error| e.to_string();
        let patched = (|| {
            self.file.flush().map_err(io)?;
            let file = self.file.get_mut();
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            file.write_all(&info[..written]).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
            Ok::<(), String>(())
        })();
        patched.map_err(|reason| self.error(reason))
    }

    fn emit(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buffer)
            .map_err(|e| AudioError::Write {
                path: self.path.clone(),
                source: e.into(),
            })?;
        self.stream_len += self.buffer.len() as u64;
        Ok(())
    }

    fn error(&self, reason: impl Into<crate::error::WriteFailure>) -> AudioError {
        AudioError::Write {
            path: self.path.clone(),
            source: reason.into(),
        }
    }
}

fn bitrate(kbps: u32) -> Result<Bitrate> {
    Ok(match kbps {
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        224 => Bitrate::Kbps224,
        256 => Bitrate::Kbps256,
        320 => Bitrate::Kbps320,
        other => {
            return Err(AudioError::Unsupported(format!(
                "MP3 bitrate {other} kbps is not offered; choose 128, 160, 192, 224, 256 or 320"
            )));
        }
    })
}

/// LAME set up for constant bitrate with its Info frame.
fn encoder(
    channels: usize,
    sample_rate: u32,
    bitrate: Bitrate,
) -> std::result::Result<mp3lame_encoder::Encoder, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} ({e})");
    let mut builder = Builder::new().ok_or("cannot start LAME (out of memory)")?;
    builder
        .set_num_channels(channels as u8)
        .map_err(|e| fail("channels", &e))?;
    builder
        .set_sample_rate(sample_rate)
        .map_err(|e| fail("sample rate", &e))?;
    builder
        .set_brate(bitrate)
        .map_err(|e| fail("bitrate", &e))?;
    // LAME's -h: the quality every LAME front end recommends for CBR.
    builder
        .set_quality(Quality::NearBest)
        .map_err(|e| fail("quality", &e))?;
    // The Info (CBR Xing) frame carries the encoder delay and padding.
    builder
        .set_to_write_vbr_tag(true)
        .map_err(|e| fail("Info frame", &e))?;
    builder.build().map_err(|e| fail("settings", &e))
}

fn id3_tag(tags: &Tags) -> std::result::Result<Vec<u8>, String> {
    let mut tag = id3::Tag::new();
    if let Some(title) = tags.track_title() {
        tag.set_title(title);
    }
    if let Some(song) = &tags.title {
        tag.set_album(song.clone());
    }
    if let Some(stem) = &tags.stem {
        tag.add_frame(id3::frame::ExtendedText {
            description: "STEM".into(),
            value: stem.clone(),
        });
    }
    if let Some(source) = &tags.source {
        tag.add_frame(id3::frame::ExtendedText {
            description: "SOURCE".into(),
            value: source.clone(),
        });
    }
    tag.set_text("TSSE", format!("Stemdeck {}", env!("CARGO_PKG_VERSION")));
    let mut bytes = Vec::new();
    tag.write_to(&mut bytes, id3::Version::Id3v24)
        .map_err(|e| format!("cannot write the ID3 tag ({e})"))?;
    Ok(bytes)
}
