//! What a musician wants to know about a separated song before playing along: its tempo
//! and beats (from the drums where there are drums), its key (from everything but the
//! drums), and how loud the mix and each stem are.
//!
//! I/O-free: a [`SongAnalyzer`] is fed the stems a block at a time, in step, and gives an
//! [`Analysis`] at the end, so an hour-long song needs no more memory than a short one.

mod key;
mod loudness;
mod onset;
mod spectrum;
mod tempo;

use serde::{Deserialize, Serialize};

pub use tempo::{MAX_BPM, MIN_BPM};

/// Everything measured about one song.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Analysis {
    pub tempo: Option<Tempo>,
    pub key: Option<Key>,
    /// Of all stems summed, as the song sounds.
    pub mix_loudness: Loudness,
    /// Of each stem, in the stems' order.
    pub stem_loudness: Vec<StemLoudness>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Tempo {
    /// Beats per minute, to a tenth.
    pub bpm: f64,
    /// When each beat falls, in seconds from the start.
    pub beats: Vec<f64>,
    /// The stem the beats were heard in ("drums", or "mix" without a drums stem).
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    Major,
    Minor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Key {
    /// Pitch class of the tonic: 0 is C, 9 is A.
    pub tonic: u8,
    pub mode: KeyMode,
    /// As a musician writes it: "A minor", "F# major".
    pub name: String,
    /// How well the song's pitch content matches the key's profile (correlation, 0 to 1).
    pub confidence: f32,
}

const NOTE_NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

impl Key {
    fn named(mut self) -> Self {
        let mode = match self.mode {
            KeyMode::Major => "major",
            KeyMode::Minor => "minor",
        };
        self.name = format!("{} {mode}", NOTE_NAMES[self.tonic as usize % 12]);
        self
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Loudness {
    /// Integrated loudness in LUFS; none for silence.
    pub integrated_lufs: Option<f64>,
    /// True peak in dBTP; none for silence.
    pub true_peak_dbtp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StemLoudness {
    pub stem: String,
    pub loudness: Loudness,
}

/// Reads a song's stems a block at a time and measures them.
pub struct SongAnalyzer {
    names: Vec<String>,
    channels: usize,
    rhythm_stem: Option<usize>,
    onsets: onset::OnsetEnvelope,
    chroma: key::Chroma,
    stem_meters: Vec<loudness::LoudnessMeter>,
    mix_meter: loudness::LoudnessMeter,
    mix: Vec<Vec<f32>>,
    mono: Vec<f32>,
}

impl SongAnalyzer {
    /// For stems named `names` (the beats come from one called "drums" when there is one),
    /// each with `channels` channels at `sample_rate`.
    pub fn new(names: &[String], channels: usize, sample_rate: u32) -> Self {
        Self {
            names: names.to_vec(),
            channels,
            rhythm_stem: names.iter().position(|n| n == "drums"),
            onsets: onset::OnsetEnvelope::new(sample_rate),
            chroma: key::Chroma::new(sample_rate),
            stem_meters: names
                .iter()
                .map(|_| loudness::LoudnessMeter::new(channels, sample_rate))
                .collect(),
            mix_meter: loudness::LoudnessMeter::new(channels, sample_rate),
            mix: vec![Vec::new(); channels],
            mono: Vec::new(),
        }
    }

    /// Adds the next frames of every stem, `stems[stem][channel][frame]`, all the same
    /// length.
    pub fn push(&mut self, stems: &[Vec<Vec<f32>>]) {
        let frames = stems.first().and_then(|s| s.first()).map_or(0, Vec::len);
        if frames == 0 || stems.len() != self.names.len() {
            return;
        }
        for channel in &mut self.mix {
            channel.clear();
            channel.resize(frames, 0.0);
        }
        // Pitch from everything but the drums: the key's notes, without their noise.
        let mut pitched: Vec<Vec<f32>> = vec![vec![0.0; frames]; self.channels];
        let mut any_pitched = false;
        for (s, stem) in stems.iter().enumerate() {
            let planar: Vec<&[f32]> = stem.iter().map(Vec::as_slice).collect();
            self.stem_meters[s].push(&planar);
            for (c, channel) in stem.iter().enumerate().take(self.channels) {
                for (m, v) in self.mix[c].iter_mut().zip(channel) {
                    *m += v;
                }
                if Some(s) != self.rhythm_stem {
                    any_pitched = true;
                    for (p, v) in pitched[c].iter_mut().zip(channel) {
                        *p += v;
                    }
                }
            }
        }
        let mix: Vec<&[f32]> = self.mix.iter().map(Vec::as_slice).collect();
        self.mix_meter.push(&mix);
        let rhythm: Vec<&[f32]> = match self.rhythm_stem {
            Some(s) => stems[s].iter().map(Vec::as_slice).collect(),
            None => mix.clone(),
        };
        spectrum::mono_into(&rhythm, &mut self.mono);
        self.onsets.push(&self.mono);
        let pitched: Vec<&[f32]> = if any_pitched {
            pitched.iter().map(Vec::as_slice).collect()
        } else {
            mix
        };
        spectrum::mono_into(&pitched, &mut self.mono);
        self.chroma.push(&self.mono);
    }

    pub fn finish(self) -> Analysis {
        let frame_rate = self.onsets.frame_rate();
        let from = match self.rhythm_stem {
            Some(s) => self.names[s].clone(),
            None => "mix".into(),
        };
        let key = self.chroma.key();
        let envelope = self.onsets.finish();
        let tempo = tempo::track(&envelope, frame_rate).map(|beats| Tempo {
            bpm: (beats.bpm * 10.0).round() / 10.0,
            beats: beats
                .frames
                .iter()
                .map(|&f| (f as f64 / frame_rate - onset::ONSET_LAG_SECS).max(0.0))
                .collect(),
            from,
        });
        Analysis {
            tempo,
            key,
            mix_loudness: self.mix_meter.finish(),
            stem_loudness: self
                .names
                .iter()
                .zip(&self.stem_meters)
                .map(|(name, meter)| StemLoudness {
                    stem: name.clone(),
                    loudness: meter.finish(),
                })
                .collect(),
        }
    }
}
