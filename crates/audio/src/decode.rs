//! Decoding any supported file to planar `f32` with symphonia, trimmed to the samples the
//! encoder meant to be heard (gapless), so that stems line up with the source.
//!
//! [`open`] decodes as a stream, one packet at a time, so that a long file never has to be
//! in memory whole; [`decode_file`] collects that stream.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::buffer::AudioBuffer;
use crate::channels::to_stereo;
use crate::error::{AudioError, Result};
use crate::gapless;

/// A decoded file at its own sample rate, mapped to stereo.
pub fn decode_file(path: &Path) -> Result<AudioBuffer> {
    let mut stream = open(path)?;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    while let Some(block) = stream.next_block()? {
        if channels.is_empty() {
            channels = vec![Vec::new(); block.num_channels()];
        }
        for (dst, src) in channels.iter_mut().zip(&block.channels) {
            dst.extend_from_slice(src);
        }
    }
    Ok(AudioBuffer::new(stream.sample_rate(), channels))
}

/// The encoder delay and padding the container states, applied when the demuxer does not
/// trim packets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerTrim {
    /// Drop the first `delay` frames, then keep at most `keep` (an MP4 edit list).
    Edit { delay: usize, keep: Option<usize> },
    /// Drop the first `delay` frames and the last `padding` (the track's own numbers).
    DelayAndPadding { delay: usize, padding: usize },
}

/// A file being decoded: blocks of planar stereo `f32` at the file's rate, in order, with
/// exactly the frames [`decode_file`] gives.
///
/// The gapless trim is the container's (MP4 edit list, the priming of raw ADTS, a track's
/// stated delay and padding) unless the demuxer trims packets itself (MP3 with a LAME
/// header, Ogg). Whether it does shows on the first decoded packet, which decides the start
/// of the trim; the end is decided with the last packet, so a held-back tail of `padding`
/// frames is all this buffers.
pub struct DecodeStream {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    layout: Option<Channels>,
    expected_frames: Option<u64>,
    trim: ContainerTrim,
    /// Channel count of the first decoded packet; every block has as many before mapping.
    channels: usize,
    scratch: Vec<Vec<f32>>,
    /// Whether any decoded packet came trimmed by the demuxer.
    packet_trimmed: bool,
    good_packets: usize,
    bad_packets: usize,
    /// Frames still to drop at the start (the container's delay).
    skip: usize,
    /// Frames still allowed by an edit list's duration.
    allowed: usize,
    /// The last frames decoded, held back while they may be the container's padding.
    tail: Vec<Vec<f32>>,
    tail_len: usize,
    emitted: u64,
    finished: bool,
}

/// Opens `path` for decoding as a stream. Refuses missing, empty, unreadable and non-audio
/// files here, with the errors [`decode_file`] gives; damage further in comes from
/// [`DecodeStream::next_block`] when it is reached.
pub fn open(path: &Path) -> Result<DecodeStream> {
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
    let format = symphonia::default::get_probe()
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
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|_| AudioError::UnsupportedCodec {
            path: path.to_owned(),
            codec: format!("{:?}", params.codec),
        })?;
    // The container's own gapless information, for when the demuxer does not apply it.
    let trim = match edit {
        Some(edit) => ContainerTrim::Edit {
            delay: edit.delay,
            keep: edit
                .duration
                .map(|d| usize::try_from(d).unwrap_or(usize::MAX)),
        },
        // A raw ADTS stream says nothing about priming; AAC-LC encoders (ffmpeg, FDK, and
        // most others) prime with one frame of 1024 samples, which players keep as silence.
        // The tail padding cannot be known and stays (it is silence too).
        None if is_adts => ContainerTrim::Edit {
            delay: gapless::ADTS_AAC_PRIMING,
            keep: None,
        },
        None => ContainerTrim::DelayAndPadding {
            delay: track_delay,
            padding: track_padding,
        },
    };
    Ok(DecodeStream {
        path: path.to_owned(),
        format,
        decoder,
        track_id,
        sample_rate,
        layout: params.channels.clone(),
        expected_frames,
        trim,
        channels: 0,
        scratch: Vec::new(),
        packet_trimmed: false,
        good_packets: 0,
        bad_packets: 0,
        skip: 0,
        allowed: usize::MAX,
        tail: Vec::new(),
        tail_len: 0,
        emitted: 0,
        finished: false,
    })
}

impl DecodeStream {
    /// The file's own sample rate, which every block has.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Frames the container announces, before any gapless trim, when it does.
    pub fn announced_frames(&self) -> Option<u64> {
        self.expected_frames
    }

    /// The next block of stereo audio (one packet's worth, never empty), `None` after the
    /// last. Errors are those of [`decode_file`]; a file that turns out to hold no audio,
    /// or far less than it announced, fails at its end.
    pub fn next_block(&mut self) -> Result<Option<AudioBuffer>> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let frames = match self.next_packet()? {
                Some(frames) => frames,
                None => {
                    self.finished = true;
                    return self.finish();
                }
            };
            if frames.first().is_some_and(|c| !c.is_empty()) {
                self.emitted += frames[0].len() as u64;
                return Ok(Some(AudioBuffer::new(
                    self.sample_rate,
                    to_stereo(frames, self.layout.as_ref()),
                )));
            }
        }
    }

    fn damaged(&self, reason: impl Into<String>) -> AudioError {
        AudioError::Damaged {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The frames of the next decoded packet that survive the trims (possibly none), in the
    /// file's channels; `None` at the end of the track.
    fn next_packet(&mut self) -> Result<Option<Vec<Vec<f32>>>> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(None),
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Err(self.damaged("it ends in the middle of the audio"));
                }
                Err(SymphoniaError::ResetRequired) => return Ok(None),
                Err(e) => return Err(self.damaged(e.to_string())),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                // A damaged packet in the middle is skipped, as players do; a file of nothing
                // but damaged packets is refused at the end.
                Err(SymphoniaError::DecodeError(_)) | Err(SymphoniaError::IoError(_)) => {
                    self.bad_packets += 1;
                    continue;
                }
                Err(e) => return Err(self.damaged(e.to_string())),
            };
            self.scratch.clear();
            decoded.copy_to_vecs_planar::<f32>(&mut self.scratch);
            let frames = self.scratch.first().map_or(0, Vec::len);
            let (trim_start, trim_end) = (
                packet.trim_start.get() as usize,
                packet.trim_end.get() as usize,
            );
            let trimmed = trim_start + trim_end > 0;
            if self.good_packets == 0 {
                self.start(trimmed);
            }
            self.good_packets += 1;
            self.packet_trimmed |= trimmed;
            // Decoders normally drop the trimmed frames themselves; trim only if this one
            // did not.
            let untrimmed = trimmed && frames == packet.dur.get() as usize + trim_start + trim_end;
            let (mut start, mut end) = if untrimmed {
                (trim_start, frames - trim_end)
            } else {
                (0, frames)
            };
            // The container's delay, then an edit list's duration.
            let dropped = self.skip.min(end - start);
            self.skip -= dropped;
            start += dropped;
            end = start + (end - start).min(self.allowed);
            self.allowed -= end - start;
            let block: Vec<Vec<f32>> = (0..self.channels)
                .map(|c| match self.scratch.get(c) {
                    Some(channel) => channel[start..end].to_vec(),
                    None => vec![0.0; end - start],
                })
                .collect();
            return Ok(Some(self.hold_back_padding(block)));
        }
    }

    /// Sets the container trim up on the first decoded packet: it applies unless the
    /// demuxer trims packets itself, which that packet shows.
    fn start(&mut self, first_packet_trimmed: bool) {
        self.channels = self.scratch.len();
        self.tail = vec![Vec::new(); self.channels];
        if first_packet_trimmed {
            return;
        }
        match self.trim {
            ContainerTrim::Edit { delay, keep } => {
                self.skip = delay;
                self.allowed = keep.unwrap_or(usize::MAX);
            }
            ContainerTrim::DelayAndPadding { delay, .. } => self.skip = delay,
        }
    }

    /// The frames that can go out now: with a stated padding still to drop, all but the
    /// last `padding` frames decoded so far.
    fn hold_back_padding(&mut self, block: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
        let padding = self.padding_to_hold();
        if padding == 0 && self.tail_len == 0 {
            return block;
        }
        // A tail held so far goes out first, all of it once nothing more is held back.
        for (tail, new) in self.tail.iter_mut().zip(block) {
            tail.extend(new);
        }
        self.tail_len = self.tail.first().map_or(0, Vec::len);
        let out = self.tail_len.saturating_sub(padding);
        self.tail_len -= out;
        self.tail
            .iter_mut()
            .map(|channel| channel.drain(..out).collect())
            .collect()
    }

    /// Frames that may be the track's stated padding, to hold until the end shows whether
    /// the demuxer trimmed packets (and so the padding) itself.
    fn padding_to_hold(&self) -> usize {
        match self.trim {
            ContainerTrim::DelayAndPadding { padding, .. } if !self.packet_trimmed => padding,
            _ => 0,
        }
    }

    /// The end of the track: the held-back tail, if it turned out not to be padding, and
    /// the checks on the whole file.
    fn finish(&mut self) -> Result<Option<AudioBuffer>> {
        if self.good_packets == 0 && self.bad_packets > 0 {
            return Err(self.damaged("no part of it could be decoded"));
        }
        let mut rest = None;
        if self.packet_trimmed && self.tail_len > 0 {
            let tail = std::mem::take(&mut self.tail);
            self.emitted += self.tail_len as u64;
            self.tail_len = 0;
            rest = Some(AudioBuffer::new(
                self.sample_rate,
                to_stereo(tail, self.layout.as_ref()),
            ));
        }
        if let Some(expected) = self.expected_frames {
            // One packet's worth of slack: some encoders round their stated length.
            if self.emitted + 8192 < expected {
                return Err(self.damaged(format!(
                    "it holds {} of the {expected} frames its header announces",
                    self.emitted
                )));
            }
        }
        if self.emitted == 0 {
            return Err(AudioError::NoSamples {
                path: self.path.clone(),
            });
        }
        Ok(rest)
    }
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
