//! Loudness as mastering engineers measure it: integrated loudness (EBU R128 / ITU-R
//! BS.1770, in LUFS) and true peak (dBTP, between samples too), through the `ebur128`
//! crate.

use ebur128::{EbuR128, Mode};

use crate::Loudness;

pub(crate) struct LoudnessMeter {
    meter: Option<EbuR128>,
    channels: usize,
}

impl LoudnessMeter {
    pub(crate) fn new(channels: usize, sample_rate: u32) -> Self {
        // Only unsupported rates or channel counts fail here; such audio has no loudness.
        let meter = EbuR128::new(channels as u32, sample_rate, Mode::I | Mode::TRUE_PEAK).ok();
        Self { meter, channels }
    }

    pub(crate) fn push(&mut self, planar: &[&[f32]]) {
        if planar.len() != self.channels {
            return;
        }
        if let Some(meter) = &mut self.meter {
            let _ = meter.add_frames_planar_f32(planar);
        }
    }

    pub(crate) fn finish(&self) -> Loudness {
        let Some(meter) = &self.meter else {
            return Loudness::default();
        };
        let integrated = meter.loudness_global().ok().filter(|l| l.is_finite());
        let peak = (0..self.channels as u32)
            .filter_map(|c| meter.true_peak(c).ok())
            .fold(0f64, f64::max);
        Loudness {
            integrated_lufs: integrated.map(round_tenth),
            true_peak_dbtp: (peak > 0.0).then(|| round_tenth(20.0 * peak.log10())),
        }
    }
}

/// A tenth of a dB is finer than anyone hears, and keeps the stored numbers readable.
fn round_tenth(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}
