//! Helpers shared by the end-to-end tests: where the shared data lives, WAV I/O, metrics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the repository, or `$STEMDECK_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("STEMDECK_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The real htdemucs weights. A test that asks for them runs only where they are meant
/// to be (see crates/cli/build.rs), so their absence is a failure.
pub fn real_weights() -> PathBuf {
    let path = shared_dir().join("models/htdemucs_955717e8_from_onnx.safetensors");
    assert!(
        path.is_file(),
        "the real htdemucs weights are not at {} (STEMDECK_SHARED_DIR points at the shared data)",
        path.display()
    );
    path
}

pub fn tiny_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demucs/tests/fixtures/tiny_htdemucs.fixture")
}

pub fn tiny_th_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demucs/tests/fixtures/tiny_htdemucs_th.fixture")
}

/// Planar f64 samples of a WAV file, scaled like soundfile (int16 / 32768).
pub fn read_wav(path: &Path) -> (u32, Vec<Vec<f64>>) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let interleaved: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.unwrap() as f64).collect(),
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.unwrap() as f64 / scale)
                .collect()
        }
    };
    let planar = (0..channels)
        .map(|c| {
            interleaved
                .iter()
                .skip(c)
                .step_by(channels)
                .copied()
                .collect()
        })
        .collect();
    (spec.sample_rate, planar)
}

pub fn write_wav(path: &Path, rate: u32, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            w.write_sample((c[i] * 32767.0).round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A short stereo test song: a kick on every beat, a bass line and a two-note chord.
pub fn test_song(rate: u32, seconds: f32) -> Vec<Vec<f32>> {
    let n = (rate as f32 * seconds) as usize;
    let tau = 2.0 * std::f32::consts::PI;
    let sample = |i: usize, pan: f32| {
        let t = i as f32 / rate as f32;
        let beat = t % 0.5;
        let kick = 0.5 * (-beat * 30.0).exp() * (tau * 55.0 * beat).sin();
        let bass = 0.2
            * (tau
                * if (t as usize).is_multiple_of(2) {
                    82.4
                } else {
                    110.0
                }
                * t)
                .sin();
        let chord = 0.1 * ((tau * 329.6 * t).sin() + (tau * 392.0 * t + pan).sin());
        kick + bass + chord
    };
    vec![
        (0..n).map(|i| sample(i, 0.0)).collect(),
        (0..n).map(|i| sample(i, 1.0)).collect(),
    ]
}

/// Plain SDR as `../shared/reference/sdr.py` computes it: estimate cut to the truth's length.
pub fn sdr(truth: &[Vec<f64>], estimate: &[Vec<f64>]) -> f64 {
    let (mut signal, mut noise) = (0.0, 0.0);
    for (t, e) in truth.iter().zip(estimate) {
        assert!(e.len() >= t.len(), "estimate shorter than truth");
        for (a, b) in t.iter().zip(e) {
            signal += a * a;
            noise += (a - b) * (a - b);
        }
    }
    10.0 * (signal / noise.max(1e-12) + 1e-12).log10()
}

/// SNR of `estimate` against `reference`, over their common length.
pub fn snr(reference: &[Vec<f64>], estimate: &[Vec<f64>]) -> f64 {
    let (mut signal, mut noise) = (0.0, 0.0);
    for (r, e) in reference.iter().zip(estimate) {
        for (a, b) in r.iter().zip(e) {
            signal += a * a;
            noise += (a - b) * (a - b);
        }
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}
