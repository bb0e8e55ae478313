//! The `stemdeck` binary on real music with the real htdemucs weights, against PyTorch
//! demucs 4.1.0: its output stems (SNR, in exact precision) and the SDR it reaches against
//! ground truth (in both precisions).
//! Ignored, with the reason, when `../shared` is not there and `STEMDECK_SHARED_DIR` is
//! unset (crates/cli/build.rs decides); with the variable set, missing data fails them.

mod common;

use std::path::Path;

use std::process::Command;
use stemdeck_demucs::{Checkpoint, Device, HTDemucs, parameter_shapes};

use common::*;

const SOURCES: [&str; 4] = ["drums", "bass", "other", "vocals"];

fn separate(weights: &Path, input: &Path, out: &Path, precision: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_stemdeck"))
        .args([
            "separate",
            "--float32",
            "--precision",
            precision,
            "--weights",
        ])
        .arg(weights)
        .arg("-o")
        .arg(out)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stemdeck failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// PyTorch demucs 4.1.0's SDR per source (drums, bass, other, vocals) on each clip.
const ROCK_80S: (&str, [f64; 4]) = (
    "musdb18_7s/music_delta_80s_rock",
    [14.546, 12.605, 8.946, 14.640],
);
const LITHIUM: (&str, [f64; 4]) = ("everything_is_free/Lithium", [14.672, 17.726, 5.331, 6.503]);
const FRANCIUM: (&str, [f64; 4]) = ("everything_is_free/Francium", [1.748, 0.002, 5.806, 7.027]);

fn check_sdr((clip, expected): (&str, [f64; 4]), precision: &str) {
    let weights = real_weights();
    let clip_dir = shared_dir().join("testdata").join(clip);
    let out = tempfile::tempdir().unwrap();
    separate(
        &weights,
        &clip_dir.join("mixture.wav"),
        out.path(),
        precision,
    );
    let mut line = String::new();
    for (source, want) in SOURCES.iter().zip(expected) {
        let (_, truth) = read_wav(&clip_dir.join(format!("{source}.wav")));
        let (rate, estimate) = read_wav(&out.path().join("mixture").join(format!("{source}.wav")));
        assert_eq!(rate, 44100);
        let got = sdr(&truth, &estimate);
        line += &format!(" {source}={got:.3}");
        assert!(
            (got - want).abs() <= 0.02,
            "{clip} {source} ({precision}): SDR {got:.3} dB, PyTorch {want:.3} dB"
        );
    }
    println!("{clip} ({precision}): SDR{line}");
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared (real weights and music): absent, and STEMDECK_SHARED_DIR is unset"
)]
fn music_delta_80s_rock_matches_pytorch_stems_and_sdr() {
    let weights = real_weights();
    let clip_dir = shared_dir().join("testdata/musdb18_7s/music_delta_80s_rock");
    let reference_dir = shared_dir().join("reference/outputs/music_delta_80s_rock");
    let out = tempfile::tempdir().unwrap();
    separate(&weights, &clip_dir.join("mixture.wav"), out.path(), "exact");
    let (_, mix) = read_wav(&clip_dir.join("mixture.wav"));
    for source in SOURCES {
        let (_, reference) = read_wav(&reference_dir.join(format!("{source}.wav")));
        let (_, ours) = read_wav(&out.path().join("mixture").join(format!("{source}.wav")));
        assert_eq!(
            ours[0].len(),
            mix[0].len(),
            "{source}: stems have the length of the mix"
        );
        let snr = snr(&reference, &ours);
        println!("80s rock {source}: SNR vs PyTorch {snr:.1} dB");
        assert!(snr >= 80.0, "{source}: SNR vs PyTorch {snr:.1} dB < 80 dB");
    }
    check_sdr(ROCK_80S, "exact");
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared (real weights and music): absent, and STEMDECK_SHARED_DIR is unset"
)]
fn lithium_sdr_matches_pytorch() {
    check_sdr(LITHIUM, "exact");
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared (real weights and music): absent, and STEMDECK_SHARED_DIR is unset"
)]
fn francium_sdr_matches_pytorch() {
    check_sdr(FRANCIUM, "exact");
}

/// bf16 multiplies change the waveform (far below 80 dB of PyTorch's) but not what the
/// separation is worth: every source's SDR stays within 0.02 dB of PyTorch's.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared (real weights and music): absent, and STEMDECK_SHARED_DIR is unset"
)]
fn fast_precision_keeps_pytorch_sdr_on_every_clip() {
    for clip in [ROCK_80S, LITHIUM, FRANCIUM] {
        check_sdr(clip, "fast");
    }
}

/// Against the list of the official htdemucs `state_dict` (name, dtype, shape per line).
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared (real weights and music): absent, and STEMDECK_SHARED_DIR is unset"
)]
fn the_inventory_of_the_real_htdemucs_is_its_official_state_dict() {
    let dir = shared_dir().join("models");
    let (tsv, weights) = (
        dir.join("htdemucs_955717e8_tensors.tsv"),
        dir.join("htdemucs_955717e8_from_onnx.safetensors"),
    );
    let checkpoint = Checkpoint::from_bytes(&std::fs::read(&weights).unwrap()).unwrap();
    let shapes = parameter_shapes(&checkpoint.config).unwrap();
    let listed: Vec<(String, String)> = std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect();
    assert_eq!(listed.len(), 533);
    assert_eq!(shapes.len(), listed.len());
    for (name, shape) in listed {
        assert_eq!(format!("{:?}", shapes[&name]), shape, "{name}");
    }
    HTDemucs::from_checkpoint_strict(&checkpoint, &Device::Cpu).unwrap();
}
