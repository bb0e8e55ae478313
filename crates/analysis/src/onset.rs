//! How much new sound starts at each moment: the spectral flux of a song, the rise in
//! log-compressed magnitude summed over frequency, a hundred times a second. Beats are
//! read off its peaks.

use crate::spectrum::Spectrum;

/// Window of the onset spectrum: about 23 ms at 44.1 kHz, short enough to place a drum hit.
const WINDOW: usize = 1024;
/// How much later than the sound itself its envelope peak falls (the window's reach
/// ahead and behind), measured on generated clicks.
pub(crate) const ONSET_LAG_SECS: f64 = 0.0;
/// Frequencies above this add little but cymbal wash to the onsets.
const TOP_HZ: f32 = 11_000.0;
/// Kicks and bass notes, which mark the beat where hi-hats subdivide it.
const LOW_HZ: f32 = 200.0;
/// How much more the low band's onsets count than the whole spectrum's.
const LOW_WEIGHT: f32 = 2.0;
/// Below this mean flux (per bin, of log-compressed magnitude) nothing starts: a held
/// tone or silence, whose envelope is numerical noise.
const SILENT_FLUX: f64 = 1e-4;

pub(crate) struct OnsetEnvelope {
    spectrum: Spectrum,
    previous: Vec<f32>,
    compressed: Vec<f32>,
    top_bin: usize,
    low_bin: usize,
    flux: Vec<f32>,
    low_flux: Vec<f32>,
    frame_rate: f64,
    started: bool,
}

impl OnsetEnvelope {
    pub(crate) fn new(sample_rate: u32) -> Self {
        let hop = (sample_rate as usize / 100).max(1);
        let spectrum = Spectrum::new(WINDOW, hop);
        let bins = spectrum.bins();
        let bin_of = |hz: f32| ((hz / sample_rate as f32 * WINDOW as f32) as usize).clamp(1, bins);
        let top_bin = bin_of(TOP_HZ);
        let low_bin = bin_of(LOW_HZ).min(top_bin);
        Self {
            spectrum,
            previous: vec![0.0; top_bin],
            compressed: vec![0.0; top_bin],
            top_bin,
            low_bin,
            flux: Vec::new(),
            low_flux: Vec::new(),
            frame_rate: sample_rate as f64 / hop as f64,
            started: false,
        }
    }

    pub(crate) fn push(&mut self, mono: &[f32]) {
        let Self {
            spectrum,
            previous,
            compressed,
            top_bin,
            low_bin,
            flux,
            low_flux,
            started,
            ..
        } = self;
        spectrum.push(mono, |magnitudes| {
            for (c, m) in compressed.iter_mut().zip(&magnitudes[..*top_bin]) {
                *c = m.ln_1p();
            }
            let rise = |range: std::ops::Range<usize>| -> f32 {
                if !*started {
                    return 0.0;
                }
                let n = range.len().max(1) as f32;
                compressed[range.clone()]
                    .iter()
                    .zip(&previous[range])
                    .map(|(c, p)| (c - p).max(0.0))
                    .sum::<f32>()
                    / n
            };
            flux.push(rise(0..*top_bin));
            low_flux.push(rise(0..*low_bin));
            *started = true;
            previous.copy_from_slice(compressed);
        });
    }

    /// Frames per second of [`Self::finish`]'s envelope; frame `t` is centred on second
    /// `t / frame_rate`.
    pub(crate) fn frame_rate(&self) -> f64 {
        self.frame_rate
    }

    /// The envelope: each band's flux with its slow level removed (what is left is where
    /// sound starts), scaled to unit loudness and summed, the low band weighted up. Empty
    /// when nothing starts anywhere.
    pub(crate) fn finish(self) -> Vec<f32> {
        let full = detrended(&self.flux);
        let low = detrended(&self.low_flux);
        let rms = |e: &[f32]| {
            (e.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / e.len().max(1) as f64).sqrt()
        };
        let (full_rms, low_rms) = (rms(&full), rms(&low));
        if full_rms < SILENT_FLUX {
            return Vec::new();
        }
        let low_scale = if low_rms >= SILENT_FLUX {
            LOW_WEIGHT / low_rms as f32
        } else {
            0.0
        };
        let full_scale = 1.0 / full_rms as f32;
        full.iter()
            .zip(&low)
            .map(|(f, l)| f * full_scale + l * low_scale)
            .collect()
    }
}

/// `flux` less its mean over the surrounding third of a second, never below zero.
fn detrended(flux: &[f32]) -> Vec<f32> {
    const HALF: usize = 16;
    let n = flux.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for v in flux {
        prefix.push(prefix.last().unwrap() + *v as f64);
    }
    (0..n)
        .map(|t| {
            let (a, b) = (t.saturating_sub(HALF), (t + HALF + 1).min(n));
            let mean = (prefix[b] - prefix[a]) / (b - a) as f64;
            (flux[t] - mean as f32).max(0.0)
        })
        .collect()
}
