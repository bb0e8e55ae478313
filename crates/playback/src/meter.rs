//! Level meters as a mixer shows them: a peak that falls back smoothly after each hit, and
//! an RMS level averaged over about 300 ms, both on a linear scale (1.0 is full scale).

use std::sync::atomic::{AtomicU32, Ordering};

/// How fast the peak falls back: by 1/e every 300 ms.
const PEAK_FALL_SECS: f32 = 0.3;
/// The RMS averaging time.
const RMS_WINDOW_SECS: f32 = 0.3;

/// One meter reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterLevel {
    pub peak: f32,
    pub rms: f32,
}

/// A meter's running state, updated by the renderer once per block it renders.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    peak: f32,
    mean_square: f32,
}

impl Meter {
    /// Takes one rendered block: its largest absolute sample and its mean square over
    /// `frames` frames at `rate`.
    pub fn take(&mut self, block_peak: f32, block_mean_square: f32, frames: usize, rate: u32) {
        let secs = frames as f32 / rate.max(1) as f32;
        let fall = (-secs / PEAK_FALL_SECS).exp();
        self.peak = block_peak.max(self.peak * fall);
        let keep = (-secs / RMS_WINDOW_SECS).exp();
        self.mean_square = block_mean_square + keep * (self.mean_square - block_mean_square);
    }

    pub fn level(&self) -> MeterLevel {
        MeterLevel {
            peak: self.peak,
            rms: self.mean_square.max(0.0).sqrt(),
        }
    }
}

/// A meter reading the UI thread can load while the renderer stores it.
#[derive(Debug, Default)]
pub(crate) struct SharedLevel {
    peak: AtomicU32,
    rms: AtomicU32,
}

impl SharedLevel {
    pub fn store(&self, level: MeterLevel) {
        self.peak.store(level.peak.to_bits(), Ordering::Relaxed);
        self.rms.store(level.rms.to_bits(), Ordering::Relaxed);
    }

    pub fn load(&self) -> MeterLevel {
        MeterLevel {
            peak: f32::from_bits(self.peak.load(Ordering::Relaxed)),
            rms: f32::from_bits(self.rms.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_sine_reads_its_amplitude_as_peak_and_amplitude_over_root_two_as_rms() {
        let mut meter = Meter::default();
        let rate = 44100;
        // One second of 512-frame blocks of a 0.5-amplitude sine.
        let block: Vec<f32> = (0..512)
            .map(|i| 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 441.0 / rate as f32).sin())
            .collect();
        let peak = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mean_square = block.iter().map(|v| v * v).sum::<f32>() / 512.0;
        for _ in 0..(rate / 512) {
            meter.take(peak, mean_square, 512, rate);
        }
        let level = meter.level();
        assert!((level.peak - 0.5).abs() < 0.005, "{level:?}");
        assert!((level.rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "{level:?}");
    }

    #[test]
    fn after_the_sound_stops_the_meter_falls_to_silence() {
        let mut meter = Meter::default();
        meter.take(1.0, 0.5, 4410, 44100);
        let hit = meter.level();
        for _ in 0..30 {
            meter.take(0.0, 0.0, 4410, 44100);
        }
        let after = meter.level();
        assert!(
            hit.peak == 1.0 && after.peak < 0.001,
            "{hit:?} then {after:?}"
        );
        assert!(after.rms < 0.01, "{after:?}");
    }
}
