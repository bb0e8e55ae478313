//! WAV through hound, with a RIFF `LIST/INFO` chunk for the tags (hound writes none).

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use crate::buffer::AudioBuffer;
use crate::encode::{PartialFile, to_int};
use crate::error::{AudioError, Result};
use crate::format::{Tags, WavFormat};

impl WavFormat {
    fn spec(self, channels: u16, sample_rate: u32) -> hound::WavSpec {
        let (bits_per_sample, sample_format) = match self {
            WavFormat::Int16 => (16, hound::SampleFormat::Int),
            WavFormat::Int24 => (24, hound::SampleFormat::Int),
            WavFormat::Float32 => (32, hound::SampleFormat::Float),
        };
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample,
            sample_format,
        }
    }
}

/// Writes `audio` as a WAV file at `path`, atomically.
pub fn write_wav(path: &Path, audio: &AudioBuffer, format: WavFormat, tags: &Tags) -> Result<()> {
    let partial = PartialFile::create(path)?;
    let mut wav = WavStream::new(
        &partial,
        format,
        audio.num_channels(),
        audio.sample_rate,
        tags,
    )?;
    wav.write(&audio.channels)?;
    wav.finish()?;
    partial.commit()
}

/// A WAV file being written block by block into a [`PartialFile`]; the `LIST/INFO` chunk
/// goes after the audio when it is finished.
pub(crate) struct WavStream {
    writer: hound::WavWriter<BufWriter<std::fs::File>>,
    file: std::fs::File,
    format: WavFormat,
    tags: Tags,
    path: std::path::PathBuf,
}

impl WavStream {
    pub(crate) fn new(
        partial: &PartialFile,
        format: WavFormat,
        channels: usize,
        sample_rate: u32,
        tags: &Tags,
    ) -> Result<Self> {
        let spec = format.spec(channels as u16, sample_rate);
        let clone = || partial.file().try_clone().map_err(|e| partial.error(e));
        let writer =
            hound::WavWriter::new(BufWriter::new(clone()?), spec).map_err(|e| partial.error(e))?;
        Ok(Self {
            writer,
            file: clone()?,
            format,
            tags: tags.clone(),
            path: partial.path().to_owned(),
        })
    }

    /// Appends `block` (planar, one slice per channel).
    pub(crate) fn write(&mut self, block: &[Vec<f32>]) -> Result<()> {
        let frames = block.first().map_or(0, Vec::len);
        for i in 0..frames {
            for channel in block {
                let v = channel[i];
                match self.format {
                    WavFormat::Int16 => self.writer.write_sample(to_int(v, 16) as i16),
                    WavFormat::Int24 => self.writer.write_sample(to_int(v, 24)),
                    WavFormat::Float32 => self.writer.write_sample(v),
                }
                .map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    /// Completes the header and appends the tags.
    pub(crate) fn finish(self) -> Result<()> {
        let Self {
            writer,
            file,
            tags,
            path,
            ..
        } = self;
        writer.finalize().map_err(|e| AudioError::Write {
            path: path.clone(),
            source: e.into(),
        })?;
        append_info(file, &tags).map_err(|e| AudioError::Write {
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

/// Appends a `LIST/INFO` chunk after the audio and grows the RIFF size to cover it. Players
/// that ignore it still find the `fmt ` and `data` chunks where hound put them.
fn append_info(mut file: std::fs::File, tags: &Tags) -> std::io::Result<()> {
    let mut fields: Vec<(&[u8; 4], String)> = Vec::new();
    if let Some(title) = tags.track_title() {
        fields.push((b"INAM", title));
    }
    if let Some(song) = &tags.title {
        fields.push((b"IPRD", song.clone()));
    }
    let mut comment = Vec::new();
    if let Some(stem) = &tags.stem {
        comment.push(format!("stem: {stem}"));
    }
    if let Some(source) = &tags.source {
        comment.push(format!("source: {source}"));
    }
    if !comment.is_empty() {
        fields.push((b"ICMT", comment.join("; ")));
    }
    fields.push((b"ISFT", format!("Stemdeck {}", env!("CARGO_PKG_VERSION"))));

    let mut info = b"INFO".to_vec();
    for (id, text) in fields {
        let mut value = text.into_bytes();
        value.push(0);
        info.extend_from_slice(id);
        info.extend_from_slice(&(value.len() as u32).to_le_bytes());
        info.extend_from_slice(&value);
        if value.len() % 2 == 1 {
            info.push(0);
        }
    }
    let end = file.seek(SeekFrom::End(0))?;
    // Chunks start on even offsets.
    if end % 2 == 1 {
        file.write_all(&[0])?;
    }
    file.write_all(b"LIST")?;
    file.write_all(&(info.len() as u32).to_le_bytes())?;
    file.write_all(&info)?;
    let riff_size = file.seek(SeekFrom::End(0))? - 8;
    let riff_size = u32::try_from(riff_size)
        .map_err(|_| std::io::Error::other("the file is too long for WAV (over 4 GB)"))?;
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff_size.to_le_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags {
            title: Some("Song".into()),
            stem: Some("vocals".into()),
            source: Some("https://youtu.be/dQw4w9WgXcQ".into()),
        }
    }

    #[test]
    fn the_info_chunk_carries_the_tags_and_hound_still_reads_the_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocals.wav");
        let audio = AudioBuffer::new(44100, vec![vec![0.5, -0.5, 0.25], vec![0.0, 0.1, -1.0]]);
        write_wav(&path, &audio, WavFormat::Int24, &tags()).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff, bytes.len() - 8, "RIFF size covers the INFO chunk");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("INAM\u{e}\0\0\0Song (vocals)\0"), "{text:?}");
        assert!(text.contains("stem: vocals; source: https://youtu.be/dQw4w9WgXcQ"));

        let mut reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().bits_per_sample, 24);
        let samples: Vec<i32> = reader.samples::<i32>().map(|s| s.unwrap()).collect();
        assert_eq!(
            samples,
            vec![4194304, 0, -4194304, 838861, 2097152, -8388608]
        );
    }
}
