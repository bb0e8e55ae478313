//! Decoding any supported file to planar `f32` with symphonia, trimmed to the samples the
//! encoder meant to be heard (gapless), so that stems line up with the source.
//!
//! [`open`] decodes as a stream, one packet at a time, so that a long file never has to be
//! in memory whole; [`decode_file`] collects that stream.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioDecoder, AudioDecoderOptions, CODEC_ID_NULL_AUDIO,
};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
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
    /// Samples that were not numbers, or absurdly loud, and were repaired.
    repaired: u64,
    /// The file does not state its length, so running out of bytes is its end.
    length_unknown: bool,
    finished: bool,
}

/// Opens `path` for decoding as a stream. Refuses missing, empty, unreadable and non-audio
/// files here, with the errors [`decode_file`] gives; damage further in comes from
/// [`DecodeStream::next_block`] when it is reached.
pub fn open(path: &Path) -> Result<DecodeStream> {
    let unreadable = |e: std::io::Error| AudioError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AudioError::NotFound {
            path: path.to_owned(),
        },
        _ => unreadable(e),
    })?;
    let meta = file.metadata().map_err(unreadable)?;
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
    open_seekable(file, meta.len(), path).map_err(|e| match e {
        SourceError::Io(e) => unreadable(e),
        SourceError::Audio(e) => e,
    })
}

/// [`open`] for a file already in memory, named `name` in messages (its extension is the
/// format hint): the entry point the decode fuzzer drives.
pub fn open_bytes(bytes: Vec<u8>, name: &Path) -> Result<DecodeStream> {
    if bytes.is_empty() {
        return Err(AudioError::EmptyFile {
            path: name.to_owned(),
        });
    }
    let len = bytes.len() as u64;
    open_seekable(Cursor::new(bytes), len, name).map_err(|e| match e {
        SourceError::Io(e) => AudioError::Unreadable {
            path: name.to_owned(),
            reason: e.to_string(),
        },
        SourceError::Audio(e) => e,
    })
}

/// A failure to read the bytes themselves, told apart from what the bytes hold.
enum SourceError {
    Io(std::io::Error),
    Audio(AudioError),
}

/// Reads what the container says of gapless trims, steps over a leading ID3v2 tag and
/// opens the decoder on `source` (`len` bytes, read from its start).
fn open_seekable<R: Read + Seek + Send + Sync + 'static>(
    mut source: R,
    len: u64,
    path: &Path,
) -> std::result::Result<DecodeStream, SourceError> {
    let mut head = [0u8; 12];
    let head_len = source.read(&mut head).map_err(SourceError::Io)?;
    let head = &head[..head_len];
    let container = ContainerGapless::read(&mut source, head);
    let start = id3v2_length(head).filter(|&n| n < len).unwrap_or(0);
    source
        .seek(SeekFrom::Start(start))
        .map_err(SourceError::Io)?;
    let source = Box::new(After::new(source, start, len));
    open_source(source, path, head, container).map_err(SourceError::Audio)
}

/// What a quick look at a file found: enough to accept it at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sample_rate: u32,
    /// Channels of the first decoded packet, before mapping to stereo.
    pub channels: usize,
}

/// Checks that `path` holds audio Stemdeck can decode: a container and codec probe plus
/// the first packet, without reading the rest. Damage further in is only found by decoding.
pub fn probe(path: &Path) -> Result<Probe> {
    let mut stream = open(path)?;
    // A file without a single packet of audio fails here with its reason.
    stream.next_block()?;
    Ok(Probe {
        sample_rate: stream.sample_rate(),
        channels: stream.channels,
    })
}

/// The decoders Stemdeck reads with: symphonia's, plus Opus through libopus (built in, so
/// users install nothing).
fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_audio_decoder::<symphonia_adapter_libopus::OpusDecoder>();
        registry
    })
}

/// What the container says of encoder delay and padding that symphonia does not apply.
#[derive(Debug, Default)]
struct ContainerGapless {
    /// An MP4 edit list.
    edit: Option<gapless::Mp4Edit>,
    /// Matroska's `DiscardPadding` of each track's last block, in nanoseconds.
    matroska_padding_ns: std::collections::HashMap<u64, u64>,
    /// A WAV that does not state its length (written to a pipe): its end is the file's.
    length_unknown: bool,
}

impl ContainerGapless {
    fn read<R: Read + Seek>(source: &mut R, head: &[u8]) -> Self {
        if head.starts_with(&MATROSKA_MAGIC) {
            return Self {
                matroska_padding_ns: gapless::matroska_end_paddings_ns(source).unwrap_or_default(),
                ..Default::default()
            };
        }
        if head.starts_with(b"RIFF") {
            return Self {
                length_unknown: gapless::wav_length_unknown(source),
                ..Default::default()
            };
        }
        Self {
            edit: gapless::mp4_edit_in(source),
            ..Default::default()
        }
    }
}

const MATROSKA_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

fn open_source(
    source: Box<dyn MediaSource>,
    path: &Path,
    head: &[u8],
    container: ContainerGapless,
) -> Result<DecodeStream> {
    let edit = container.edit;
    let length_unknown = container.length_unknown;
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = catch_unwind(AssertUnwindSafe(|| {
        symphonia::default::get_probe().probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
    }))
    .map_err(|_| AudioError::Damaged {
        path: path.to_owned(),
        reason: DECODER_GAVE_UP.into(),
    })?;
    let format = probed.map_err(|_| {
        if looks_like_audio(head) {
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
    let Some(track) = format.default_track(TrackType::Audio) else {
        let has_video = format.default_track(TrackType::Video).is_some();
        return Err(if has_video {
            AudioError::NoAudioTrack {
                path: path.to_owned(),
            }
        } else {
            AudioError::NotAudio {
                path: path.to_owned(),
            }
        });
    };
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
    let expected_frames = track.num_frames.filter(|_| !container.length_unknown);
    let (track_delay, track_padding) = (
        track.delay.unwrap_or(0) as usize,
        track.padding.unwrap_or(0) as usize,
    );
    let sample_rate = params.sample_rate.ok_or_else(|| AudioError::Damaged {
        path: path.to_owned(),
        reason: "it does not state its sample rate".into(),
    })?;
    if params.sample_rate == Some(0) {
        return Err(AudioError::Damaged {
            path: path.to_owned(),
            reason: "it states a sample rate of 0 Hz".into(),
        });
    }
    let mut params = params;
    if params.codec == CODEC_ID_OPUS && format.format_info().short_name == "ogg" {
        // Symphonia's Ogg reader already trims Opus pre-skip from the first packet (from
        // the granule positions); the libopus adapter would drop it a second time.
        zero_opus_pre_skip(&mut params);
    }
    let decoder = codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::UnsupportedCodec {
            path: path.to_owned(),
            codec: codec_name(params.codec, params.channels.as_ref(), &e),
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
            padding: match container.matroska_padding_ns.get(&u64::from(track_id)) {
                // Matroska states the last block's padding in nanoseconds.
                Some(&ns) => {
                    ((ns as u128 * sample_rate as u128 + 500_000_000) / 1_000_000_000) as usize
                }
                None => track_padding,
            },
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
        repaired: 0,
        length_unknown,
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
                let mut channels = to_stereo(frames, self.layout.as_ref());
                self.repaired += repair_samples(&mut channels);
                return Ok(Some(AudioBuffer::new(self.sample_rate, channels)));
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
            let next = catch_unwind(AssertUnwindSafe(|| self.format.next_packet()))
                .map_err(|_| self.damaged(DECODER_GAVE_UP))?;
            let packet = match next {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(None),
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    if self.length_unknown {
                        return Ok(None);
                    }
                    return Err(self.damaged("it ends in the middle of the audio"));
                }
                Err(SymphoniaError::ResetRequired) => return Ok(None),
                Err(e) => return Err(self.damaged(e.to_string())),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let (decoder, packet_ref) = (&mut self.decoder, &packet);
            // Moving the borrow in makes the closure FnOnce, so the buffer may outlive it.
            let decoded = catch_unwind(AssertUnwindSafe(move || {
                let decoder = decoder;
                decoder.decode(packet_ref)
            }));
            let Ok(decoded) = decoded else {
                return Err(AudioError::Damaged {
                    path: self.path.clone(),
                    reason: DECODER_GAVE_UP.into(),
                });
            };
            let decoded = match decoded {
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
            let mut channels = to_stereo(tail, self.layout.as_ref());
            self.repaired += repair_samples(&mut channels);
            rest = Some(AudioBuffer::new(self.sample_rate, channels));
        }
        if self.repaired > 0 {
            tracing::warn!(
                file = %self.path.display(),
                samples = self.repaired,
                "repaired float samples that were not numbers or beyond {MAX_SAMPLE}"
            );
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

/// Why a file is refused when the demuxer or decoder panics on it. Damaged data can drive
/// third-party decoders into states they do not expect (the fuzzer found an arithmetic
/// overflow in the FLAC predictor); such a panic is caught and the file refused, because
/// the decoder's state cannot be trusted after it.
const DECODER_GAVE_UP: &str = "its data is damaged in a way the decoder cannot get past";

/// The bytes of a leading ID3v2 tag (header, body and footer), when the file has one.
/// Decoding starts after it: Stemdeck does not read input tags, and a tag holding large
/// cover art would otherwise exhaust the probe's search for the audio.
fn id3v2_length(head: &[u8]) -> Option<u64> {
    if head.len() < 10 || !head.starts_with(b"ID3") || head[3] == 0xFF || head[4] == 0xFF {
        return None;
    }
    let size = head[6..10].iter().try_fold(0u64, |size, &b| {
        (b & 0x80 == 0).then_some((size << 7) | u64::from(b))
    })?;
    let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// A source seen from byte `start` on (0 for the whole of it).
struct After<R> {
    inner: R,
    start: u64,
    len: u64,
}

impl<R: Read + Seek> After<R> {
    /// `inner` must already be at `start`.
    fn new(inner: R, start: u64, len: u64) -> Self {
        Self { inner, start, len }
    }
}

impl<R: Read> Read for After<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R: Seek> Seek for After<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => SeekFrom::Start(self.start.saturating_add(n)),
            other => other,
        };
        let at = self.inner.seek(target)?;
        if at < self.start {
            self.inner.seek(SeekFrom::Start(self.start))?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the audio",
            ));
        }
        Ok(at - self.start)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for After<R> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len - self.start)
    }
}

/// Clears the pre-skip field of an `OpusHead` (bytes 10–11, little-endian).
fn zero_opus_pre_skip(params: &mut symphonia::core::codecs::audio::AudioCodecParameters) {
    if let Some(head) = params.extra_data.as_mut()
        && head.len() >= 12
        && head.starts_with(b"OpusHead")
    {
        head[10] = 0;
        head[11] = 0;
    }
}

/// The loudest sample passed on, +80 dBFS. Float files can hold anything; NaN, infinity or
/// values near the float range would turn every stem into NaN inside the model, while
/// real audio, however hot, stays far below this.
pub const MAX_SAMPLE: f32 = 1.0e4;

/// Sets samples that are not numbers to silence and clamps the rest to [`MAX_SAMPLE`];
/// returns how many were changed.
fn repair_samples(channels: &mut [Vec<f32>]) -> u64 {
    let mut repaired = 0;
    for sample in channels.iter_mut().flatten() {
        if !sample.is_finite() {
            *sample = 0.0;
            repaired += 1;
        } else if sample.abs() > MAX_SAMPLE {
            *sample = sample.clamp(-MAX_SAMPLE, MAX_SAMPLE);
            repaired += 1;
        }
    }
    repaired
}

/// Whether the file starts like one of the containers we read, so that a probe failure
/// means damage rather than a file of another kind.
fn looks_like_audio(head: &[u8]) -> bool {
    head.starts_with(b"RIFF")
        || head.starts_with(b"RF64")
        || head.starts_with(b"FORM")
        || head.starts_with(b"caff")
        || head.starts_with(b"fLaC")
        || head.starts_with(b"OggS")
        || head.starts_with(b"ID3")
        || head.starts_with(&MATROSKA_MAGIC)
        || head.get(4..8) == Some(b"ftyp")
        || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0)
}

/// A codec symphonia has no decoder for, by the name its users know it by.
fn codec_name(codec: AudioCodecId, channels: Option<&Channels>, error: &SymphoniaError) -> String {
    let known = [
        (CODEC_ID_AC3, "Dolby Digital (AC-3)"),
        (CODEC_ID_EAC3, "Dolby Digital Plus (E-AC-3)"),
        (CODEC_ID_AC4, "Dolby AC-4"),
        (CODEC_ID_TRUEHD, "Dolby TrueHD"),
        (CODEC_ID_DCA, "DTS"),
        (CODEC_ID_WMA, "Windows Media Audio"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_MUSEPACK, "Musepack"),
        (CODEC_ID_WAVPACK, "WavPack"),
        (CODEC_ID_MONKEYS_AUDIO, "Monkey's Audio"),
        (CODEC_ID_TTA, "TTA"),
        (CODEC_ID_ATRAC1, "ATRAC"),
        (CODEC_ID_ATRAC3, "ATRAC3"),
        (CODEC_ID_ATRAC3PLUS, "ATRAC3plus"),
        (CODEC_ID_ATRAC9, "ATRAC9"),
        (CODEC_ID_COOK, "RealAudio"),
        (CODEC_ID_ADPCM_G722, "G.722"),
        (CODEC_ID_ADPCM_G726, "G.726"),
    ];
    if let Some((_, name)) = known.iter().find(|(id, _)| *id == codec) {
        return (*name).to_string();
    }
    if codec == CODEC_ID_OPUS {
        let count = channels.map_or(0, Channels::count);
        return format!("Opus with {count} channels; Stemdeck reads mono and stereo Opus");
    }
    if codec == CODEC_ID_NULL_AUDIO {
        return "no codec stated".into();
    }
    match error {
        SymphoniaError::Unsupported(what) => format!("codec {codec}: {what}"),
        _ => format!("codec {codec}"),
    }
}
