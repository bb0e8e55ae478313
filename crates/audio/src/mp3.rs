//! MP3 through LAME (mp3lame-encoder), constant bitrate, with an ID3v2.4 tag for the tags
//! and LAME's Info frame first, whose encoder delay and padding let gapless decoders
//! (ffmpeg, symphonia, iTunes, foobar2000) return exactly the samples that were encoded.

use std::io::Write;
use std::path::Path;

use id3::TagLike;
use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushGap, MonoPcm, Quality};

use crate::buffer::AudioBuffer;
use crate::encode::write_atomically;
use crate::error::{AudioError, Result};
use crate::format::Tags;

/// Frames handed to LAME at a time.
const CHUNK_FRAMES: usize = 1 << 14;

/// Writes `audio` as a constant-bitrate MP3 at `path`, atomically.
pub fn write_mp3(path: &Path, audio: &AudioBuffer, kbps: u32, tags: &Tags) -> Result<()> {
    let bitrate = bitrate(kbps)?;
    if !(1..=2).contains(&audio.num_channels()) {
        return Err(AudioError::Unsupported(format!(
            "MP3 holds mono or stereo, not {} channels",
            audio.num_channels()
        )));
    }
    let mut encoded = encode(audio, bitrate).map_err(|reason| AudioError::Write {
        path: path.to_owned(),
        reason: format!("MP3 encoder: {reason}"),
    })?;
    let mut file_bytes = id3_tag(tags).map_err(|reason| AudioError::Write {
        path: path.to_owned(),
        reason,
    })?;
    file_bytes.append(&mut encoded);
    write_atomically(path, |mut file| {
        file.write_all(&file_bytes).map_err(|e| e.to_string())
    })
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

/// The MP3 frames, the first being LAME's Info frame filled in after the last sample.
fn encode(audio: &AudioBuffer, bitrate: Bitrate) -> std::result::Result<Vec<u8>, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} ({e})");
    let mut builder = Builder::new().ok_or("cannot start LAME (out of memory)")?;
    builder
        .set_num_channels(audio.num_channels() as u8)
        .map_err(|e| fail("channels", &e))?;
    builder
        .set_sample_rate(audio.sample_rate)
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
    let mut encoder = builder.build().map_err(|e| fail("settings", &e))?;

    let mut out = Vec::with_capacity(audio.frames() / 3 + 8192);
    let mut start = 0;
    while start < audio.frames() {
        let end = (start + CHUNK_FRAMES).min(audio.frames());
        out.reserve(mp3lame_encoder::max_required_buffer_size(end - start));
        let result = match audio.channels.as_slice() {
            [mono] => encoder.encode_to_vec(MonoPcm(&mono[start..end]), &mut out),
            [left, right] => encoder.encode_to_vec(
                DualPcm {
                    left: &left[start..end],
                    right: &right[start..end],
                },
                &mut out,
            ),
            _ => unreachable!("checked by the caller"),
        };
        result.map_err(|e| fail("encoding", &e))?;
        start = end;
    }
    out.reserve(mp3lame_encoder::max_required_buffer_size(0).max(7200));
    encoder
        .flush_to_vec::<FlushGap>(&mut out)
        .map_err(|e| fail("flushing", &e))?;

    // LAME reserved a placeholder frame of the same size at the start of the stream.
    let mut info = Vec::with_capacity(encoder.lame_tag_size());
    let written = encoder
        .lame_tag_encode_to_vec(&mut info)
        .ok_or("LAME gave no Info frame")?
        .get();
    if written > out.len() {
        return Err("LAME's Info frame is longer than the stream".into());
    }
    out[..written].copy_from_slice(&info);
    Ok(out)
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
