//! Decoding any supported file to planar `f32` with symphonia, trimmed to the samples the
//! encoder meant to be heard (gapless), so that stems line up with the source.

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::buffer::AudioBuffer;
use crate::channels::to_stereo;
use crate::error::{AudioError, Result};
use crate::gapless;

/// A decoded file at its own sample rate, mapped to stereo.
pub fn decode_file(path: &Path) -> Result<AudioBuffer> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AudioError::NotFound {
            path: path.to_owned(),
        },
        _ => AudioError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let meta = file.metadata().map_err(|e| AudioError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if meta.is_dir() {
        return Err(AudioError::Unreadable {
            path: path.to_owned(),
            reason: "it is a folder".into(),
        });
    }
    if meta.len() == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_owned(),
        });
    }
    let edit = gapless::mp4_edit(path);

    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|_| {
            if looks_like_audio(path) {
                AudioError::Damaged {
                    path: path.to_owned(),
                    reason: "it has an audio header but no readable audio".into(),
                }
            } else {
                AudioError::NotAudio {
                    path: path.to_owned(),
                }
            }
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::NotAudio {
            path: path.to_owned(),
        })?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::NotAudio {
            path: path.to_owned(),
        })?
        .clone();
    let track_id = track.id;
    let is_adts = format.format_info().short_name == "aac";
    let expected_frames = track.num_frames;
    let (track_delay, track_padding) = (
        track.delay.unwrap_or(0) as usize,
        track.padding.unwrap_or(0) as usize,
    );
    let sample_rate = params.sample_rate.ok_or_else(|| AudioError::Damaged {
        path: path.to_owned(),
        reason: "it does not state its sample rate".into(),
    })?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|_| AudioError::UnsupportedCodec {
            path: path.to_owned(),
            codec: format!("{:?}", params.codec),
        })?;

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut scratch: Vec<Vec<f32>> = Vec::new();
    let mut packet_trimmed = false;
    let mut bad_packets = 0usize;
    let mut good_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(AudioError::Damaged {
                    path: path.to_owned(),
                    reason: "it ends in the middle of the audio".into(),
                });
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                return Err(AudioError::Damaged {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged packet in the middle is skipped, as players do; a file of nothing
            // but damaged packets is refused below.
            Err(SymphoniaError::DecodeError(_)) | Err(SymphoniaError::IoError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(e) => {
                return Err(AudioError::Damaged {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        good_packets += 1;
        scratch.clear();
        decoded.copy_to_vecs_planar::<f32>(&mut scratch);
        let frames = scratch.first().map_or(0, Vec::len);
        let (trim_start, trim_end) = (
            packet.trim_start.get() as usize,
            packet.trim_end.get() as usize,
        );
        packet_trimmed |= trim_start + trim_end > 0;
        // Decoders normally drop the trimmed frames themselves; trim only if this one did not.
        let untrimmed = trim_start + trim_end > 0
            && frames == packet.dur.get() as usize + trim_start + trim_end;
        let (start, end) = if untrimmed {
            (trim_start, frames - trim_end)
        } else {
            (0, frames)
        };
        if channels.is_empty() {
            channels = vec![Vec::new(); scratch.len()];
        }
        for (dst, src) in channels.iter_mut().zip(&scratch) {
            dst.extend_from_slice(&src[start..end]);
        }
    }
    if good_packets == 0 && bad_packets > 0 {
        return Err(AudioError::Damaged {
            path: path.to_owned(),
            reason: "no part of it could be decoded".into(),
        });
    }

    let decoded_frames = channels.first().map_or(0, Vec::len);
    // The container's own gapless information, when the demuxer did not apply it per packet.
    if !packet_trimmed {
        let (delay, keep) = match edit {
            Some(edit) => (edit.delay, edit.duration),
            // A raw ADTS stream says nothing about priming; AAC-LC encoders (ffmpeg, FDK,
            // and most others) prime with one frame of 1024 samples, which players keep as
            // silence. The tail padding cannot be known and stays (it is silence too).
            None if is_adts => (gapless::ADTS_AAC_PRIMING, None),
            None if track_delay + track_padding > 0 => (
                track_delay,
                Some(decoded_frames.saturating_sub(track_delay + track_padding) as u64),
            ),
            None => (0, None),
        };
        let keep = keep.map_or(usize::MAX, |k| k as usize);
        for channel in channels.iter_mut() {
            let start = delay.min(channel.len());
            channel.drain(..start);
            channel.truncate(keep);
        }
    }
    if let Some(expected) = expected_frames {
        let have = channels.first().map_or(0, Vec::len) as u64;
        // One packet's worth of slack: some encoders round their stated length.
        if have + 8192 < expected {
            return Err(AudioError::Damaged {
                path: path.to_owned(),
                reason: format!("it holds {have} of the {expected} frames its header announces"),
            });
        }
    }
    if channels.first().is_none_or(Vec::is_empty) {
        return Err(AudioError::NoSamples {
            path: path.to_owned(),
        });
    }
    Ok(AudioBuffer::new(
        sample_rate,
        to_stereo(channels, params.channels.as_ref()),
    ))
}

/// Whether the file starts like one of the containers we read, so that a probe failure
/// means damage rather than a file of another kind.
fn looks_like_audio(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 12];
    let Ok(n) = File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    head.starts_with(b"RIFF")
        || head.starts_with(b"fLaC")
        || head.starts_with(b"OggS")
        || head.starts_with(b"ID3")
        || head.get(4..8) == Some(b"ftyp")
        || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0)
}
