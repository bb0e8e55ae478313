//! The key of a song: how much of each of the twelve pitch classes it holds over its whole
//! length (its chroma), compared with the Krumhansl–Kessler profiles of the 24 major and
//! minor keys. The best-correlating profile is the key.

use crate::spectrum::Spectrum;
use crate::{Key, KeyMode};

/// About 5 Hz per bin at 44.1 kHz: a semitone apart even at the bottom of the range.
/// The range is the fundamentals of bass, chords and melody; above it, harmonics (each
/// note's fifth and third above) outweigh the notes themselves.
const WINDOW: usize = 8192;
const LOWEST_HZ: f32 = 80.0;
const HIGHEST_HZ: f32 = 1_000.0;

/// Probe-tone ratings of each scale degree from the tonic (Krumhansl and Kessler, 1982).
const MAJOR_PROFILE: [f32; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR_PROFILE: [f32; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

pub(crate) struct Chroma {
    spectrum: Spectrum,
    /// For each spectrum bin in range: its pitch class and how close it is to it.
    bins: Vec<(usize, u8, f32)>,
    total: [f64; 12],
}

impl Chroma {
    pub(crate) fn new(sample_rate: u32) -> Self {
        let spectrum = Spectrum::new(WINDOW, WINDOW / 2);
        let bins = (1..spectrum.bins())
            .filter_map(|bin| {
                let hz = bin as f32 * sample_rate as f32 / WINDOW as f32;
                if !(LOWEST_HZ..=HIGHEST_HZ).contains(&hz) {
                    return None;
                }
                let midi = 69.0 + 12.0 * (hz / 440.0).log2();
                let nearest = midi.round();
                let closeness = 1.0 - 2.0 * (midi - nearest).abs();
                let class = (nearest as i32).rem_euclid(12) as u8;
                (closeness > 0.0).then_some((bin, class, closeness))
            })
            .collect();
        Self {
            spectrum,
            bins,
            total: [0.0; 12],
        }
    }

    pub(crate) fn push(&mut self, mono: &[f32]) {
        let Self {
            spectrum,
            bins,
            total,
        } = self;
        spectrum.push(mono, |magnitudes| {
            let mut frame = [0f32; 12];
            for &(bin, class, closeness) in bins.iter() {
                frame[class as usize] += magnitudes[bin] * closeness;
            }
            // Each moment counts the same, so a loud chorus does not outvote the verses.
            let loudest = frame.iter().fold(0f32, |m, v| m.max(*v));
            if loudest > 1e-3 {
                for (t, v) in total.iter_mut().zip(frame) {
                    *t += (v / loudest) as f64;
                }
            }
        });
    }

    pub(crate) fn key(&self) -> Option<Key> {
        let sum: f64 = self.total.iter().sum();
        if sum <= 0.0 {
            return None;
        }
        let chroma: Vec<f32> = self.total.iter().map(|v| (*v / sum) as f32).collect();
        let mut best: Option<(Key, f32)> = None;
        for mode in [KeyMode::Major, KeyMode::Minor] {
            let profile = match mode {
                KeyMode::Major => &MAJOR_PROFILE,
                KeyMode::Minor => &MINOR_PROFILE,
            };
            for tonic in 0..12u8 {
                let rotated: Vec<f32> = (0..12)
                    .map(|pc| profile[(pc + 12 - tonic as usize) % 12])
                    .collect();
                let r = correlation(&chroma, &rotated);
                if best.as_ref().is_none_or(|(_, s)| r > *s) {
                    best = Some((
                        Key {
                            tonic,
                            mode,
                            name: String::new(),
                            confidence: r,
                        },
                        r,
                    ));
                }
            }
        }
        best.map(|(key, _)| key.named())
    }
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        num += (x - ma) * (y - mb);
        da += (x - ma) * (x - ma);
        db += (y - mb) * (y - mb);
    }
    if da <= 0.0 || db <= 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}
