//! Encoder delay and padding that symphonia does not remove by itself.
//!
//! AAC encoders prepend "priming" samples (1024 or 2112) and pad the last frame. MP4
//! files say which samples are meant to be heard in the audio track's edit list
//! (`moov/trak/edts/elst`): playback starts at `media_time` and lasts `segment_duration`.
//! Without this, stems come out a few dozen milliseconds late against the source.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Priming of a raw ADTS AAC stream, which has no container to state it.
pub const ADTS_AAC_PRIMING: usize = 1024;

/// The audible span of an MP4 audio track, in frames at the track's sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Edit {
    pub delay: usize,
    pub duration: Option<u64>,
}

/// Reads the edit list of the first audio track, if `path` is an MP4/M4A file with one.
pub fn mp4_edit(path: &Path) -> Option<Mp4Edit> {
    mp4_edit_in(&mut File::open(path).ok()?)
}

/// [`mp4_edit`] of any seekable source; it is left at an unspecified position.
pub fn mp4_edit_in<R: Read + Seek>(source: &mut R) -> Option<Mp4Edit> {
    let moov = find_top_level_box(source, b"moov")?;
    let movie_timescale = child(&moov, b"mvhd").and_then(timescale)?;
    let mut rest = moov.as_slice();
    while let Some((kind, body, next)) = next_box(rest) {
        rest = next;
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(body, b"mdia") else {
            continue;
        };
        let is_audio = child(mdia, b"hdlr").is_some_and(|h| h.get(8..12) == Some(b"soun"));
        if !is_audio {
            continue;
        }
        let media_timescale = child(mdia, b"mdhd").and_then(timescale)?;
        let elst = child(body, b"edts").and_then(|e| child(e, b"elst"))?;
        return parse_elst(elst, movie_timescale, media_timescale);
    }
    None
}

fn parse_elst(elst: &[u8], movie_timescale: u32, media_timescale: u32) -> Option<Mp4Edit> {
    let version = *elst.first()?;
    let count = be_u32(elst.get(4..8)?) as usize;
    let entry_size = if version == 1 { 20 } else { 12 };
    let mut pos = 8;
    for _ in 0..count {
        let entry = elst.get(pos..pos + entry_size)?;
        pos += entry_size;
        let (segment_duration, media_time) = if version == 1 {
            (be_u64(&entry[0..8]), be_u64(&entry[8..16]) as i64)
        } else {
            (
                be_u32(&entry[0..4]) as u64,
                be_u32(&entry[4..8]) as i32 as i64,
            )
        };
        if media_time < 0 {
            continue; // an empty edit (a pause before the track); not a trim
        }
        let duration = (segment_duration > 0 && movie_timescale > 0).then(|| {
            (segment_duration as u128 * media_timescale as u128 / movie_timescale as u128) as u64
        });
        return Some(Mp4Edit {
            delay: media_time as usize,
            duration,
        });
    }
    None
}

fn timescale(header: &[u8]) -> Option<u32> {
    let offset = if *header.first()? == 1 { 20 } else { 12 };
    header.get(offset..offset + 4).map(be_u32)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Splits `data` into its first box `(type, body, rest)`.
fn next_box(data: &[u8]) -> Option<([u8; 4], &[u8], &[u8])> {
    let size = be_u32(data.get(0..4)?) as u64;
    let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let (header, size) = match size {
        0 => (8, data.len() as u64),
        1 => (16, be_u64(data.get(8..16)?)),
        s => (8, s),
    };
    let size = usize::try_from(size).ok()?;
    if size < header || size > data.len() {
        return None;
    }
    Some((kind, &data[header..size], &data[size..]))
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut rest = data;
    while let Some((k, body, next)) = next_box(rest) {
        if &k == kind {
            return Some(body);
        }
        rest = next;
    }
    None
}

/// Reads the body of a top-level box without loading the (possibly huge) media data.
fn find_top_level_box<R: Read + Seek>(file: &mut R, kind: &[u8; 4]) -> Option<Vec<u8>> {
    let len = file.seek(SeekFrom::End(0)).ok()?;
    let mut pos = 0u64;
    while pos.saturating_add(8) <= len {
        file.seek(SeekFrom::Start(pos)).ok()?;
        let mut header = [0u8; 16];
        file.read_exact(&mut header[..8]).ok()?;
        let mut size = be_u32(&header[0..4]) as u64;
        let mut header_len = 8;
        if size == 1 {
            file.read_exact(&mut header[8..16]).ok()?;
            size = be_u64(&header[8..16]);
            header_len = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < header_len {
            return None;
        }
        if &header[4..8] == kind {
            // A moov box is metadata: cap it so a corrupt size cannot exhaust memory.
            let body_len = size - header_len;
            if body_len > 256 << 20 || pos.checked_add(size).is_none_or(|end| end > len) {
                return None;
            }
            let mut body = vec![0u8; body_len as usize];
            file.read_exact(&mut body).ok()?;
            return Some(body);
        }
        // A corrupt size can be anything up to 2^64.
        pos = pos.checked_add(size)?;
    }
    None
}

/// Whether a RIFF/WAVE file leaves its length open: a `data` chunk of size `0xFFFFFFFF`
/// (or 0 with audio after it), as programs writing to a pipe leave it.
pub fn wav_length_unknown<R: Read + Seek>(source: &mut R) -> bool {
    let Ok(len) = source.seek(SeekFrom::End(0)) else {
        return false;
    };
    let mut pos = 12u64;
    let mut header = [0u8; 8];
    while pos + 8 <= len {
        if source.seek(SeekFrom::Start(pos)).is_err() || source.read_exact(&mut header).is_err() {
            return false;
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if &header[..4] == b"data" {
            return size == u32::MAX || (size == 0 && pos + 8 < len);
        }
        // Chunks are padded to an even size.
        pos += 8 + u64::from(size) + u64::from(size & 1);
    }
    false
}

/// The `DiscardPadding` of the last block of each Matroska/WebM track, in nanoseconds, by
/// track number: the encoder's padding at the end, which symphonia's demuxer reads but does
/// not apply. Empty when the file is not Matroska or no track's last block states one;
/// `None` for a layout this reader does not follow (clusters of unknown size, as when live).
pub fn matroska_end_paddings_ns<R: Read + Seek>(
    source: &mut R,
) -> Option<std::collections::HashMap<u64, u64>> {
    const EBML: u64 = 0x1A45_DFA3;
    const SEGMENT: u64 = 0x1853_8067;
    const CLUSTER: u64 = 0x1F43_B675;
    const SIMPLE_BLOCK: u64 = 0xA3;
    const BLOCK_GROUP: u64 = 0xA0;
    const BLOCK: u64 = 0xA1;
    const DISCARD_PADDING: u64 = 0x75A2;

    let len = source.seek(SeekFrom::End(0)).ok()?;
    source.seek(SeekFrom::Start(0)).ok()?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, source);
    let (id, size) = element_header(&mut reader)?;
    if id != EBML {
        return None;
    }
    reader.seek_relative(i64::try_from(size?).ok()?).ok()?;
    let (id, segment_size) = element_header(&mut reader)?;
    if id != SEGMENT {
        return None;
    }
    let mut pos = reader.stream_position().ok()?;
    let segment_end = segment_size.map_or(len, |s| pos.saturating_add(s).min(len));
    // The padding of each track's last block so far (0 for a block without one).
    let mut last = std::collections::HashMap::new();
    while pos < segment_end {
        let (id, size) = element_header(&mut reader)?;
        let size = size?;
        pos = reader.stream_position().ok()?;
        if id != CLUSTER {
            reader.seek_relative(i64::try_from(size).ok()?).ok()?;
            pos = pos.checked_add(size)?;
            continue;
        }
        let cluster_end = pos.checked_add(size)?;
        while pos < cluster_end {
            let (id, size) = element_header(&mut reader)?;
            let size = size?;
            let body = reader.stream_position().ok()?;
            match id {
                SIMPLE_BLOCK => {
                    last.insert(block_track(&mut reader)?, 0);
                }
                BLOCK_GROUP if size <= 1 << 24 => {
                    let mut group = vec![0u8; usize::try_from(size).ok()?];
                    reader.read_exact(&mut group).ok()?;
                    let (mut track, mut padding) = (None, 0);
                    let mut rest = group.as_slice();
                    while let Some((id, value, next)) = child_element(rest) {
                        match id {
                            BLOCK => track = block_track(&mut &value[..]),
                            DISCARD_PADDING if value.len() <= 8 => {
                                let mut n = if value.first().is_some_and(|b| b & 0x80 != 0) {
                                    -1i64
                                } else {
                                    0
                                };
                                for b in value {
                                    n = (n << 8) | i64::from(*b);
                                }
                                padding = n.max(0) as u64;
                            }
                            _ => {}
                        }
                        rest = next;
                    }
                    if let Some(track) = track {
                        last.insert(track, padding);
                    }
                }
                _ => {}
            }
            pos = body.checked_add(size)?;
            // Relative, so that the buffer is kept: a song has thousands of blocks.
            let here = reader.stream_position().ok()?;
            reader
                .seek_relative(i64::try_from(pos).ok()? - i64::try_from(here).ok()?)
                .ok()?;
        }
    }
    last.retain(|_, padding| *padding > 0);
    Some(last)
}

/// An EBML element's ID (with its length marker, as the specification writes IDs) and
/// size (`None` for "unknown"); `None` at the end or on malformed input.
fn element_header<R: Read>(reader: &mut R) -> Option<(u64, Option<u64>)> {
    let (id, _) = vint(reader, false)?;
    let (size, all_ones) = vint(reader, true)?;
    Some((id, (!all_ones).then_some(size)))
}

/// An EBML variable-length integer: with its marker for IDs, without it for sizes (then
/// also whether every value bit was one, EBML's "unknown").
fn vint<R: Read>(reader: &mut R, strip_marker: bool) -> Option<(u64, bool)> {
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).ok()?;
    let length = first[0].leading_zeros() as usize + 1;
    if length > 8 {
        return None;
    }
    let mut value = u64::from(first[0]);
    if strip_marker {
        value &= (1u64 << (8 - length)) - 1;
    }
    let mut rest = [0u8; 7];
    reader.read_exact(&mut rest[..length - 1]).ok()?;
    for b in &rest[..length - 1] {
        value = (value << 8) | u64::from(*b);
    }
    let all_ones = value == (1u64 << (7 * length)) - 1;
    Some((value, all_ones))
}

/// The track number a block's data starts with.
fn block_track<R: Read>(reader: &mut R) -> Option<u64> {
    vint(reader, true).map(|(n, _)| n)
}

/// Splits a master element's body into its first child `(id, body, rest)`.
fn child_element(data: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let mut cursor = data;
    let (id, size) = element_header(&mut cursor)?;
    let size = usize::try_from(size?).ok()?;
    if size > cursor.len() {
        return None;
    }
    Some((id, &cursor[..size], &cursor[size..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_list_version_0_gives_delay_and_duration_in_media_frames() {
        // One entry: 1000 ticks at a movie timescale of 1000 is one second of audio.
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 1];
        elst.extend_from_slice(&1000u32.to_be_bytes());
        elst.extend_from_slice(&1024u32.to_be_bytes());
        elst.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        let edit = parse_elst(&elst, 1000, 44100).unwrap();
        assert_eq!(
            edit,
            Mp4Edit {
                delay: 1024,
                duration: Some(44100)
            }
        );
    }

    #[test]
    fn empty_edits_are_skipped() {
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 2];
        for (dur, time) in [(500u32, -1i32), (1000, 2112)] {
            elst.extend_from_slice(&dur.to_be_bytes());
            elst.extend_from_slice(&time.to_be_bytes());
            elst.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        }
        assert_eq!(parse_elst(&elst, 1000, 48000).unwrap().delay, 2112);
    }
}
