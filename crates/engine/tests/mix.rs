//! Mixing a finished job's stem files at the mixer's levels ("Export mix"): the weighted
//! sum, written in the job's format, with the same clip handling as stems.

use stemdeck_audio::{AudioBuffer, OutputFormat, Tags, WavFormat, decode_file, write_audio};
use stemdeck_engine::outputs::mix::mix_files;
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::pipeline::options::OutputOptions;

fn tone(freq: f32, amp: f32) -> AudioBuffer {
    let frames = 44100 + 777;
    let ch = |phase: f32| -> Vec<f32> {
        (0..frames)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 44100.0 + phase).sin())
            .collect()
    };
    AudioBuffer::new(44100, vec![ch(0.0), ch(0.5)])
}

fn stems(dir: &std::path::Path) -> (Vec<StemFile>, Vec<AudioBuffer>) {
    let audio = vec![tone(110.0, 0.5), tone(440.0, 0.3), tone(1250.0, 0.2)];
    let files = ["drums", "bass", "vocals"]
        .iter()
        .zip(&audio)
        .map(|(name, a)| {
            let path = dir.join(format!("{name}.wav"));
            write_audio(
                &path,
                a,
                OutputFormat::Wav(WavFormat::Float32),
                &Tags::default(),
            )
            .unwrap();
            StemFile::from_path(path)
        })
        .collect();
    (files, audio)
}

#[test]
fn the_exported_mix_is_the_level_weighted_sum_of_the_stem_files() {
    let dir = tempfile::tempdir().unwrap();
    let (files, audio) = stems(dir.path());
    let dest = dir.path().join("mix.wav");
    let output = OutputOptions {
        format: OutputFormat::Wav(WavFormat::Float32),
        ..Default::default()
    };
    let levels = [1.0, 0.5, 0.0];
    mix_files(&files, &levels, &dest, &output, &Tags::default()).unwrap();
    let mix = decode_file(&dest).unwrap();
    assert_eq!(mix.frames(), audio[0].frames());
    for c in 0..2 {
        for i in (0..mix.frames()).step_by(53) {
            let want = audio[0].channels[c][i] + 0.5 * audio[1].channels[c][i];
            assert!((mix.channels[c][i] - want).abs() < 1e-6, "frame {i}");
        }
    }
}

#[test]
fn a_loud_mix_is_rescaled_like_stems_and_a_silent_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = stems(dir.path());
    let dest = dir.path().join("loud.flac");
    let output = OutputOptions {
        format: OutputFormat::Flac(stemdeck_audio::FlacDepth::Bits24),
        ..Default::default()
    };
    // 0.5 + 0.3 + 0.2 at gain 1.5 peaks near 1.5: rescaled below full scale, not clipped.
    mix_files(&files, &[1.5, 1.5, 1.5], &dest, &output, &Tags::default()).unwrap();
    let mix = decode_file(&dest).unwrap();
    assert!(mix.peak() < 1.0 && mix.peak() > 0.9, "peak {}", mix.peak());

    let silent = dir.path().join("silent.flac");
    let err = mix_files(&files, &[0.0, 0.0, 0.0], &silent, &output, &Tags::default()).unwrap_err();
    assert!(err.to_string().contains("every stem is muted"), "{err}");
    assert!(!silent.exists());
}
