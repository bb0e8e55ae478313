//! Decoding real files of every supported format, made in the test with ffmpeg from one
//! WAV reference, and checked against that reference sample by sample.

use std::path::{Path, PathBuf};
use std::process::Command;

use stemdeck_audio::{AudioError, decode_file, load_for_model};

const RATE: u32 = 44100;
const FRAMES: usize = 88200 + 1234; // not a multiple of any codec frame size

/// A test signal with sharp onsets, so that any misalignment shows.
fn reference_signal(rate: u32, frames: usize) -> Vec<Vec<f32>> {
    let f = |i: usize, phase: f32| {
        let t = i as f32 / rate as f32;
        let since_onset = t % 0.25;
        let burst = if since_onset < 0.007 {
            0.4 * (-since_onset * 735.0).exp()
        } else {
            0.0
        };
        0.3 * (2.0 * std::f32::consts::PI * 440.0 * t + phase).sin()
            + 0.1 * (2.0 * std::f32::consts::PI * 97.0 * t).sin()
            + burst
    };
    vec![
        (0..frames).map(|i| f(i, 0.0)).collect(),
        (0..frames).map(|i| f(i, 1.3)).collect(),
    ]
}

fn write_reference(dir: &Path, rate: u32, frames: usize) -> PathBuf {
    let path = dir.join(format!("reference_{rate}.wav"));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let sig = reference_signal(rate, frames);
    for (left, right) in sig[0].iter().zip(&sig[1]) {
        w.write_sample(*left).unwrap();
        w.write_sample(*right).unwrap();
    }
    w.finalize().unwrap();
    path
}

fn ffmpeg(input: &Path, output: &Path, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(output)
        .status()
        .expect("ffmpeg is needed for these tests (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed for {output:?}");
}

/// Best alignment lag (in frames) of `b` against `a`, searched in ±2200 frames (more than
/// any codec's delay) over a stretch that holds two onsets.
fn best_lag(a: &[f32], b: &[f32]) -> isize {
    let corr = |lag: isize| {
        (10000..24000)
            .map(|i| a[i] as f64 * b[(i as isize + lag) as usize] as f64)
            .sum::<f64>()
    };
    (-2200isize..=2200)
        .max_by(|&x, &y| corr(x).partial_cmp(&corr(y)).unwrap())
        .unwrap()
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|v| (*v as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// Encodes the reference with ffmpeg `args` into a `.ext` file, decodes it, and checks the
/// rate, the channels, the alignment (lag 0), the length and the level against the reference.
/// `exact_length`: the container states the audible length (everything but raw ADTS).
fn check_format(ext: &str, args: &[&str], lossless: bool, exact_length: bool) {
    check_format_at(RATE, FRAMES, ext, args, lossless, exact_length);
}

fn check_format_at(
    rate: u32,
    frames: usize,
    ext: &str,
    args: &[&str],
    lossless: bool,
    exact_length: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let reference_path = write_reference(dir.path(), rate, frames);
    let path = dir.path().join(format!("encoded.{ext}"));
    ffmpeg(&reference_path, &path, args);
    check_decoded(
        &path,
        rate,
        frames,
        &format!("{ext} {args:?}"),
        lossless,
        exact_length,
    );
}

/// Decodes `path` and checks it against the reference signal of `frames` at `rate`.
fn check_decoded(
    path: &Path,
    rate: u32,
    frames: usize,
    label: &str,
    lossless: bool,
    exact_length: bool,
) {
    let reference = reference_signal(rate, frames);
    let decoded = decode_file(path).unwrap_or_else(|e| panic!("{label}: {e}"));
    let probed = stemdeck_audio::decode::probe(path).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(probed.sample_rate, rate, "{label}: probe");
    assert_eq!(decoded.sample_rate, rate, "{label}");
    assert_eq!(decoded.num_channels(), 2, "{label}");
    let lag = best_lag(&reference[0], &decoded.channels[0]);
    let snr = snr_db(&reference[0], &decoded.channels[0]);
    println!(
        "{label}: {} frames (reference {frames}), lag {lag}, SNR {snr:.1} dB",
        decoded.frames()
    );
    assert_eq!(lag, 0, "{label}: decoded audio is shifted by {lag} frames");
    if exact_length {
        assert_eq!(decoded.frames(), frames, "{label}: gapless length");
    } else {
        assert!(
            decoded.frames() >= frames && decoded.frames() < frames + 2048,
            "{label}"
        );
    }
    let min_snr = if lossless { 80.0 } else { 15.0 };
    assert!(snr > min_snr, "{label}: SNR {snr}");
}

#[test]
fn wav_16_bit() {
    check_format("wav", &["-c:a", "pcm_s16le"], true, true);
}

#[test]
fn wav_24_bit() {
    check_format("wav", &["-c:a", "pcm_s24le"], true, true);
}

#[test]
fn wav_32_bit_float() {
    check_format("wav", &["-c:a", "pcm_f32le"], true, true);
}

#[test]
fn flac() {
    check_format("flac", &["-c:a", "flac"], true, true);
}

#[test]
fn alac_in_m4a() {
    check_format("m4a", &["-c:a", "alac"], true, true);
}

#[test]
fn mp3_with_gapless_lame_header() {
    check_format("mp3", &["-c:a", "libmp3lame", "-b:a", "256k"], false, true);
}

#[test]
fn ogg_vorbis() {
    check_format("ogg", &["-c:a", "libvorbis", "-q:a", "8"], false, true);
}

#[test]
fn aac_in_m4a_with_edit_list() {
    check_format("m4a", &["-c:a", "aac", "-b:a", "256k"], false, true);
}

#[test]
fn adts_aac() {
    // Raw ADTS carries no length, so its padded tail stays.
    check_format(
        "aac",
        &["-c:a", "aac", "-b:a", "256k", "-f", "adts"],
        false,
        false,
    );
}

/// A silent video track first, then the audio: the decoder must take the first audio track.
const WITH_VIDEO: [&str; 8] = [
    "-f",
    "lavfi",
    "-i",
    "color=c=black:s=32x32:r=5:d=3",
    "-map",
    "1:v",
    "-map",
    "0:a",
];

fn with_video<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    WITH_VIDEO
        .iter()
        .copied()
        .chain(rest.iter().copied())
        .collect()
}

/// Opus always runs at 48 kHz.
const OPUS_FRAMES: usize = 96000 + 1234;

#[test]
fn opus_in_ogg() {
    check_format_at(
        48000,
        OPUS_FRAMES,
        "opus",
        &["-c:a", "libopus", "-b:a", "192k"],
        false,
        true,
    );
}

#[test]
fn opus_in_webm() {
    check_format_at(
        48000,
        OPUS_FRAMES,
        "webm",
        &["-c:a", "libopus", "-b:a", "160k"],
        false,
        true,
    );
}

#[test]
fn opus_in_mkv() {
    check_format_at(
        48000,
        OPUS_FRAMES,
        "mkv",
        &["-c:a", "libopus", "-b:a", "160k"],
        false,
        true,
    );
}

#[test]
fn vp9_video_with_opus_in_webm() {
    let args = with_video(&[
        "-c:v",
        "libvpx-vp9",
        "-b:v",
        "50k",
        "-c:a",
        "libopus",
        "-b:a",
        "160k",
    ]);
    check_format_at(48000, OPUS_FRAMES, "webm", &args, false, true);
}

#[test]
fn flac_in_mkv() {
    check_format("mkv", &["-c:a", "flac"], true, true);
}

#[test]
fn vorbis_in_mka() {
    // ffmpeg states no padding for Vorbis in Matroska, so the encoder's tail stays.
    check_format("mka", &["-c:a", "libvorbis", "-q:a", "8"], false, false);
}

#[test]
fn h264_video_with_aac_in_mp4() {
    check_format(
        "mp4",
        &with_video(&["-c:v", "libx264", "-c:a", "aac", "-b:a", "256k"]),
        false,
        true,
    );
}

#[test]
fn mpeg4_video_with_aac_in_mov() {
    check_format(
        "mov",
        &with_video(&["-c:v", "mpeg4", "-c:a", "aac", "-b:a", "256k"]),
        false,
        true,
    );
}

#[test]
fn h264_video_with_aac_in_m4v() {
    let args = with_video(&[
        "-c:v", "libx264", "-c:a", "aac", "-b:a", "256k", "-f", "mp4",
    ]);
    check_format("m4v", &args, false, true);
}

#[test]
fn aiff() {
    check_format("aiff", &["-c:a", "pcm_s16be"], true, true);
}

#[test]
fn aiff_24_bit() {
    check_format("aif", &["-c:a", "pcm_s24be", "-f", "aiff"], true, true);
}

#[test]
fn aifc_from_sox() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write_reference(dir.path(), RATE, FRAMES);
    let aifc = dir.path().join("encoded.aifc");
    let status = Command::new("sox")
        .arg(&reference)
        .args(["-e", "signed-integer", "-b", "16"])
        .arg(&aifc)
        .status()
        .expect("sox is needed for this test (apt-get install sox)");
    assert!(status.success());
    check_decoded(&aifc, RATE, FRAMES, "aifc", true, true);
}

#[test]
fn caf_pcm() {
    check_format("caf", &["-c:a", "pcm_s16le"], true, true);
}

#[test]
fn alac_in_caf() {
    check_format("caf", &["-c:a", "alac"], true, true);
}

#[test]
fn a_video_without_audio_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("silent film.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("color=c=black:s=32x32:r=5:d=1")
        .args(["-c:v", "libx264"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let err = decode_file(&video).unwrap_err();
    assert!(matches!(err, AudioError::NoAudioTrack { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("the file has video but no audio track"),
        "{err}"
    );
}

#[test]
fn other_rates_are_resampled_to_44100_with_exact_length_and_no_shift() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_reference(dir.path(), 48000, 96000);
    let audio = load_for_model(&path, 44100).unwrap();
    assert_eq!(audio.sample_rate, 44100);
    assert_eq!(audio.frames(), 88200);
    let expected = reference_signal(44100, 88200);
    assert_eq!(best_lag(&expected[0], &audio.channels[0]), 0);
    // The 440 Hz tone survives; the bursts differ slightly because they are not band-limited.
    assert!(snr_db(&expected[0][2000..80000], &audio.channels[0][2000..80000]) > 10.0);
}

#[test]
fn mono_and_surround_files_become_stereo() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write_reference(dir.path(), RATE, 22050);
    let mono = dir.path().join("mono.flac");
    ffmpeg(&reference, &mono, &["-ac", "1"]);
    let decoded = decode_file(&mono).unwrap();
    assert_eq!(decoded.num_channels(), 2);
    assert_eq!(decoded.channels[0], decoded.channels[1]);
    let surround = dir.path().join("surround.wav");
    ffmpeg(
        &reference,
        &surround,
        &["-af", "pan=5.1|FL=c0|FR=c1|FC=c0|LFE=c1|BL=c0|BR=c1"],
    );
    let decoded = decode_file(&surround).unwrap();
    assert_eq!(decoded.num_channels(), 2);
    assert_eq!(decoded.frames(), 22050);
    assert!(decoded.peak() <= 1.0);
}

#[test]
fn bad_inputs_give_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write_reference(dir.path(), RATE, 44100);
    let bytes = std::fs::read(&reference).unwrap();
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.mp3");
    std::fs::write(&text, "these are my lyrics, not a song\n".repeat(50)).unwrap();
    let header_only = dir.path().join("header_only.wav");
    std::fs::write(&header_only, &bytes[..44]).unwrap();

    type Case<'a> = (PathBuf, fn(&AudioError) -> bool, &'a str);
    let cases: Vec<Case> = vec![
        (
            dir.path().join("missing.wav"),
            |e| matches!(e, AudioError::NotFound { .. }),
            "file not found",
        ),
        (
            empty,
            |e| matches!(e, AudioError::EmptyFile { .. }),
            "the file is empty",
        ),
        (
            text,
            |e| matches!(e, AudioError::NotAudio { .. }),
            "not an audio file",
        ),
        (
            truncated,
            |e| matches!(e, AudioError::Damaged { .. }),
            "truncated or damaged",
        ),
        (
            header_only,
            |e| matches!(e, AudioError::Damaged { .. } | AudioError::NoSamples { .. }),
            "notes",
        ),
        (
            dir.path().to_path_buf(),
            |e| matches!(e, AudioError::Unreadable { .. }),
            "folder",
        ),
    ];
    for (path, is_expected, words) in cases {
        let err = decode_file(&path).expect_err(&format!("{path:?} must be refused"));
        let message = err.to_string();
        println!("{message}");
        assert!(is_expected(&err), "{path:?}: unexpected error {err:?}");
        assert!(
            message.contains(&*path.to_string_lossy()),
            "the message must name the file: {message}"
        );
        if words != "notes" {
            assert!(message.contains(words), "{message}");
        }
    }
}
